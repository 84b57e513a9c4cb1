"""Target presets: a short name -> the TVM target, where the module runs, and how its `.so` is linked.

| preset | TVM target                                               | runs on        | linked with             |
|--------|----------------------------------------------------------|----------------|-------------------------|
| x86    | llvm, this machine's CPU (`mcpu`) and core count         | this host      | the host C++ compiler   |
| arm    | llvm, aarch64-linux-gnu, +neon (`--mcpu cortex-a72`, ...) | aarch64 Linux  | aarch64-linux-gnu-g++   |
| cuda   | cuda, `arch` from the GPU here (or `--cuda-arch`), generic x86-64 host | NVIDIA GPU | the host C++ compiler |

Any other `--target` value is taken as a raw TVM target in JSON, e.g. `{"kind":"llvm","mcpu":"skylake-avx512"}`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from . import tvm_compat
from .errors import ShuffleTVMError

ARM_MCPUS = ["generic", "cortex-a53", "cortex-a55", "cortex-a72", "cortex-a76", "neoverse-n1", "neoverse-v1"]
AARCH64_CXX = "aarch64-linux-gnu-g++"
DEFAULT_CUDA_ARCH = "sm_80"
CUDA_HOST = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
# LLVM's names of AMD's x86 cores (prefixes); every other named x86 CPU but the generic levels is Intel's
AMD_X86_CPUS = ("znver", "bdver", "btver", "amdfam", "barcelona", "athlon", "opteron", "k6", "k8", "geode")
GENERIC_X86_CPUS = ("generic", "x86-64", "i386", "i486", "i586", "i686")
# Limits every NVIDIA GPU since Volta shares (TVM's own nvidia/* tags carry the same values). MetaSchedule's
# CUDA rules and its VerifyGPUCode check read them from the target and refuse to tune without them.
CUDA_LIMITS = {"max_threads_per_block": 1024, "max_shared_memory_per_block": 49152, "registers_per_block": 65536,
               "thread_warp_size": 32}


@dataclass(frozen=True)
class TargetOptions:
    """What a user may say about a target beyond its preset name."""

    mcpu: str | None = None
    num_cores: int | None = None
    cuda_arch: str | None = None


@dataclass(frozen=True)
class ResolvedTarget:
    name: str  # preset name, or "custom"
    spec: dict[str, Any]  # the TVM target as JSON
    host: dict[str, Any] | None
    device: str  # "cpu" or "cuda": where the module's kernels run
    arch: str  # "x86_64" or "aarch64": the machine the .so is for
    cross_compiler: str | None = None  # the C++ driver that links the .so; None: TVM's host default
    notes: list[str] = field(default_factory=list)

    def tvm_target(self) -> Any:
        return tvm_compat.make_target(self.spec, self.host)

    def export_compiler(self) -> Callable[..., None] | None:
        if self.cross_compiler is None:
            return None
        if shutil.which(self.cross_compiler) is None:
            raise ShuffleTVMError(
                f"the {self.name} target links with '{self.cross_compiler}', which is not installed; "
                "run scripts/setup.sh (or apt-get install g++-aarch64-linux-gnu)"
            )
        return tvm_compat.cross_compiler(self.cross_compiler)

    @property
    def log_key(self) -> str:
        """The tuning log folder name: what changes code generation (preset, cpu or GPU architecture)."""
        if self.name == "cuda":
            return f"cuda-{self.spec['arch']}"
        if self.name in ("x86", "arm"):
            return f"{self.name}-{self.spec['mcpu']}-{self.spec['num-cores']}c"
        digest = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:10]
        return f"custom-{self.spec.get('kind', 'unknown')}-{digest}"

    def json(self) -> str:
        return json.dumps({"target": self.spec, "host": self.host}, sort_keys=True)

    @property
    def vendor(self) -> str | None:
        """Whose design the x86 CPU is, by LLVM's name: "amd" or "intel"; None for a generic x86-64 level and
        every other target. Tuned records bake in the chip's caches and how its cores share data, which follow
        the vendor's designs: the kindred rule ranks a log of the same vendor before another's (after one of
        the same core count and one of the same CPU)."""
        mcpu = str(self.spec.get("mcpu", "")) if self.name == "x86" else ""
        if not mcpu or mcpu.startswith(GENERIC_X86_CPUS):
            return None
        return "amd" if mcpu.startswith(AMD_X86_CPUS) else "intel"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _x86(opts: TargetOptions) -> ResolvedTarget:
    if opts.mcpu is not None and opts.mcpu not in (known := tvm_compat.x86_cpu_names()):
        near = difflib.get_close_matches(opts.mcpu, known, n=3) or [
            cpu for cpu in ("skylake-avx512", "sapphirerapids", "znver4") if cpu in known]
        raise ShuffleTVMError(f"unknown x86 cpu '{opts.mcpu}': not one of LLVM's names (e.g. {', '.join(near)}); "
                              "leave --mcpu out for this machine's")
    spec = {"kind": "llvm", "mcpu": opts.mcpu or tvm_compat.host_cpu_name(), "num-cores": opts.num_cores or _cpu_count()}
    return ResolvedTarget("x86", spec, None, "cpu", "x86_64")


def _arm(opts: TargetOptions) -> ResolvedTarget:
    mcpu = opts.mcpu or "generic"
    if mcpu not in ARM_MCPUS:
        raise ShuffleTVMError(f"unknown ARM cpu '{mcpu}'; choose one of {', '.join(ARM_MCPUS)}")
    spec = {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": mcpu,
        "mattr": ["+neon"],
        "num-cores": opts.num_cores or 4,
    }
    return ResolvedTarget("arm", spec, None, "cpu", "aarch64", cross_compiler=AARCH64_CXX)


def detect_cuda_arch() -> str | None:
    """`sm_XY` of GPU 0 from nvidia-smi, or None where there is no GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
    except (subprocess.SubprocessError, OSError):
        return None
    return f"sm_{out[0].replace('.', '')}" if out else None


def _check_cuda_arch(arch: str) -> None:
    """`sm_` and the compute capability's major and minor digits (sm_80, sm_90, sm_120): TVM reads them back from
    the name, and a single digit fails deep in its CUDA code generation."""
    if not re.fullmatch(r"sm_[1-9]\d?\d", arch):
        raise ShuffleTVMError(f"CUDA architecture '{arch}' is not of the form sm_XY (e.g. sm_80, sm_90)")


def _cuda(opts: TargetOptions) -> ResolvedTarget:
    notes = []
    arch = opts.cuda_arch or detect_cuda_arch()
    if arch is None:
        arch = DEFAULT_CUDA_ARCH
        notes.append(f"no GPU found here: building for {arch}; pass --cuda-arch sm_XY for another GPU")
    _check_cuda_arch(arch)
    # The host side only launches kernels; a generic x86-64 host keeps the .so portable across GPU servers.
    spec = {"kind": "cuda", "arch": arch, **CUDA_LIMITS}
    return ResolvedTarget("cuda", spec, dict(CUDA_HOST), "cuda", "x86_64", notes=notes)


PRESETS: dict[str, Callable[[TargetOptions], ResolvedTarget]] = {"x86": _x86, "arm": _arm, "cuda": _cuda}


def resolve_target(name: str, opts: TargetOptions | None = None) -> ResolvedTarget:
    """A preset name (`x86`, `arm`, `cuda`) or a raw TVM target as JSON."""
    opts = opts or TargetOptions()
    if opts.num_cores is not None and opts.num_cores < 1:
        raise ShuffleTVMError(f"--num-cores must be at least 1, got {opts.num_cores}")
    if name in PRESETS:
        return PRESETS[name](opts)
    if not name.lstrip().startswith("{"):
        raise ShuffleTVMError(f"unknown target '{name}'; use one of {', '.join(PRESETS)} or a TVM target as JSON")
    try:
        spec = json.loads(name)
    except json.JSONDecodeError as err:
        raise ShuffleTVMError(f"target JSON does not parse: {err.msg} at column {err.colno}") from None
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ShuffleTVMError('a target in JSON needs a "kind", e.g. {"kind":"llvm","mcpu":"skylake-avx512"}')
    host = spec.pop("host", None)
    try:
        target = tvm_compat.make_target(spec, host)
    except Exception as err:  # TVM raises its own error types for bad keys and values
        raise ShuffleTVMError(f"TVM rejects target {json.dumps(spec)}: {str(err).strip().splitlines()[-1]}") from None
    kind = target.kind.name
    if kind not in ("llvm", "cuda"):
        raise ShuffleTVMError(f"target kind '{kind}' is not supported; use llvm or cuda")
    if kind == "cuda" and "arch" in spec:
        _check_cuda_arch(str(spec["arch"]))
    triple = str(spec.get("mtriple", ""))
    arch = "aarch64" if triple.startswith("aarch64") else "x86_64"
    device = "cuda" if kind == "cuda" else "cpu"
    if kind == "cuda" and host is None:
        host = dict(CUDA_HOST)
    return ResolvedTarget("custom", spec, host, device, arch, AARCH64_CXX if arch == "aarch64" else None)
