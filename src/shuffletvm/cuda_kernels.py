"""CUDA kernels compiled at build time and carried inside the `.so`.

The PyPI TVM wheel's CUDA code generator stores CUDA C *source* in the module (format 'cuda') and compiles it
when the module is loaded, through the Python callback `tvm_callback_cuda_compile`. A deployment machine with
only the TVM runtime cannot run that callback (it needs TVM's compiler library), and compiling at every load
costs seconds. So `shuffletvm build` compiles the kernels here with nvcc into a fatbin (SASS for the target
architecture plus PTX for newer GPUs), stores it in an ELF section of the `.so`, and at load time
`shuffletvm.runtime` answers the callback with that fatbin — after checking that the source it is asked to
compile is the one the fatbin was made from (SHA-256). No GPU is needed to build; no compiler to run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .errors import ShuffleTVMError

SECTION = ".shuffletvm_cuda"
_HEADER = struct.Struct("<8s64sQ")  # magic, sha256 of the CUDA source (hex), fatbin length
_MAGIC = b"STVMCU01"
NVCC_FLAGS = ["-O3", "--expt-relaxed-constexpr", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__"]


def cuda_source(executable: Any) -> str | None:
    """The CUDA C source of a built executable's (or runtime module's) kernels, or None for a CPU build."""
    pending = [getattr(executable, "mod", executable)]
    while pending:
        module = pending.pop()
        if module.kind == "cuda":
            return str(module.inspect_source())
        pending.extend(module.imports)
    return None


def compile_fatbin(source: str, arch: str) -> bytes:
    """nvcc -> fatbin with SASS for `arch` (sm_XY) and PTX for forward compatibility."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise ShuffleTVMError("building for cuda needs nvcc on PATH (the CUDA toolkit); no GPU is needed")
    sm = arch.removeprefix("sm_")
    with tempfile.TemporaryDirectory(prefix="shuffletvm-nvcc-") as tmp:
        src, out = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.fatbin"
        src.write_text(source)
        cmd = [nvcc, "--fatbin", *NVCC_FLAGS, "-gencode", f"arch=compute_{sm},code=[sm_{sm},compute_{sm}]",
               "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ShuffleTVMError(f"nvcc failed to compile the CUDA kernels for {arch}: {tail[:200]}")
        return out.read_bytes()


def embed(library: Path, source: str, fatbin: bytes) -> None:
    """Add the fatbin as a non-loaded ELF section of `library` (in place)."""
    blob = _HEADER.pack(_MAGIC, source_sha(source).encode(), len(fatbin)) + fatbin
    objcopy = shutil.which("objcopy")
    if objcopy is None:
        raise ShuffleTVMError("building for cuda needs objcopy (binutils) to embed the compiled kernels")
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(blob)
        f.flush()
        proc = subprocess.run([objcopy, "--add-section", f"{SECTION}={f.name}", "--set-section-flags",
                               f"{SECTION}=readonly,contents", str(library)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ShuffleTVMError(f"objcopy could not embed the CUDA kernels: {proc.stderr.strip()[:200]}")


def read_embedded(library: Path) -> tuple[str, bytes] | None:
    """(source sha256, fatbin) from `library`'s section, or None. A minimal ELF64 little-endian reader."""
    data = Path(library).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_offset = sections[shstrndx][4]
    for name_offset, _type, _flags, _addr, offset, size, *_ in sections:
        end = data.index(b"\0", strtab_offset + name_offset)
        if data[strtab_offset + name_offset : end].decode() == SECTION:
            magic, sha, length = _HEADER.unpack_from(data, offset)
            if magic != _MAGIC or _HEADER.size + length > size:
                return None
            return sha.decode(), data[offset + _HEADER.size : offset + _HEADER.size + length]
    return None


_CALLBACK = "tvm_callback_cuda_compile"
_SERVED: dict[str, bytes] = {}  # sha256 of CUDA source -> fatbin, for every library loaded in this process
_FOLDERS: list[Path] = []  # folders of `<sha256>.fatbin` files (serve_compiled_in)
_BUILD_TIME_CALLBACK: list[Any] = []  # TVM's own compile callback, when its compiler is loaded in this process
_ANSWERING: list[bool] = []  # non-empty once _compile_callback holds the callback's name


def source_sha(code: str) -> str:
    return hashlib.sha256(str(code).encode()).hexdigest()


def _compile_callback(code: str) -> bytes:
    sha = source_sha(code)
    if sha in _SERVED:
        return _SERVED[sha]
    for folder in _FOLDERS:
        compiled = folder / f"{sha}.fatbin"
        if compiled.is_file():
            return compiled.read_bytes()
    if _BUILD_TIME_CALLBACK:  # a build in this process (TVM's codegen compiles through the same callback)
        return _BUILD_TIME_CALLBACK[0](code)
    raise RuntimeError("this module's CUDA kernels were not compiled at build time; rebuild it with shuffletvm")


def _answer_compile_callback() -> None:
    """Put _compile_callback under TVM's callback name (once per process); what held the name before (TVM's
    compiler, when loaded) answers whatever source it does not serve."""
    import tvm_ffi

    if _ANSWERING:
        return
    previous = tvm_ffi.get_global_func(_CALLBACK, allow_missing=True)
    if previous is not None:
        _BUILD_TIME_CALLBACK.append(previous)
    tvm_ffi.register_global_func(_CALLBACK, _compile_callback, override=True)
    _ANSWERING.append(True)


def enable_build_time_compile() -> None:
    """Before a CUDA build: TVM's compile callback (`tvm.support.nvcc`, NVRTC or nvcc) must be registered. If a
    module was loaded in this process first, ours holds the name: TVM's is registered beneath it and ours
    hands it every source it does not serve."""
    import sys

    import tvm_ffi

    if "tvm.support.nvcc" in sys.modules:
        return
    answering = bool(_ANSWERING)
    if answering:
        tvm_ffi.remove_global_func(_CALLBACK)
        _ANSWERING.clear()
    import tvm.support.nvcc  # noqa: F401 - registers tvm_callback_cuda_compile

    if answering:
        _answer_compile_callback()


def serve_embedded_kernels(library: Path) -> bool:
    """Make TVM's load-time CUDA compile callback answer with the kernels embedded in `library` (keyed by the
    SHA-256 of their source, so several modules can be loaded in one process). Returns whether `library` had
    any. Source without matching kernels is refused, never compiled behind the user's back; where TVM's compiler
    is loaded too, its own callback stays in charge of other source, so later builds in this process work."""
    embedded = read_embedded(library)
    if embedded is None:
        return False
    _answer_compile_callback()
    sha, fatbin = embedded
    _SERVED[sha] = fatbin
    return True


def compile_into(folder: Path, source: str, arch: str) -> Path:
    """nvcc -> `folder/<sha256 of source>.fatbin` (written whole, then renamed: a reader never sees part)."""
    path = folder / f"{source_sha(source)}.fatbin"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(compile_fatbin(source, arch))
        os.replace(partial, path)
    return path


def serve_compiled_in(folder: str | Path) -> None:
    """Make TVM's load-time CUDA compile callback in this process answer with the fatbins `compile_into` wrote
    in `folder`, keyed by source; other source goes to TVM's own callback (tuning: its runner's workers import
    TVM's compiler). MetaSchedule's CUDA candidates are compiled by the builders, one per core, instead of one
    after another when the runner loads them."""
    enable_build_time_compile()  # TVM's callback registered first, kept as the fallback
    _answer_compile_callback()
    if Path(folder) not in _FOLDERS:
        _FOLDERS.append(Path(folder))
