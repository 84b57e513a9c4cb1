"""Does the compiled module compute what PyTorch computes?

Builds the model for a target, runs it on several seeded inputs next to PyTorch eager on the same weights
(random but realistic: BatchNorm statistics calibrated and perturbed, never identity), and reports per input:
max absolute error, relative error (max |TVM - torch| / max |torch|), and top-1 / top-5 agreement.
Modules for aarch64 run under qemu (see `emulation`) when this host is not aarch64.
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ShuffleTVMError
from .models.registry import DEFAULT_MODEL
from .targets import TargetOptions

logger = logging.getLogger(__name__)

# fp32 through ~50 layers with a different summation order: a few 1e-6 relative is typical. The bound is
# relative to the output's largest magnitude, so it is independent of the logits' scale.
DEFAULT_RTOL = 1e-4


@dataclass
class ParityConfig:
    model: str = DEFAULT_MODEL
    target: str = "x86"
    frontend: str = "torch"  # "torch" (torch.export) or "onnx"
    onnx_exporter: str = "dynamo"  # "dynamo" or "legacy" (TorchScript) torch.onnx exporter
    opset: int = 18
    batch: int = 1
    seeds: int = 3
    weights: Path | None = None
    rtol: float = DEFAULT_RTOL
    time_repeat: int = 0  # >0: also time the module this many times (host-runnable modules only)
    target_options: TargetOptions = field(default_factory=TargetOptions)


@dataclass
class ParityRow:
    seed: int
    max_abs_err: float
    rel_err: float
    top1_agree: float
    top5_agree: float


@dataclass
class ParityReport:
    model: str
    target: str
    frontend: str
    rtol: float
    rows: list[ParityRow]
    build_s: float
    note: str = ""
    latency_ms: float | None = None  # median, when timed
    pass_counts: dict[str, int] = field(default_factory=dict)  # graph passes that fired in the build
    kernels: tuple[int, int, int] = (0, 0, 0)  # the build's kernels: all, from the tuning log, hand-written

    @property
    def max_rel_err(self) -> float:
        return max(r.rel_err for r in self.rows)

    @property
    def passed(self) -> bool:
        return self.max_rel_err <= self.rtol


def compare_outputs(seed: int, ours: np.ndarray, ref: np.ndarray) -> ParityRow:
    if ours.shape != ref.shape:
        raise ShuffleTVMError(f"output shape {ours.shape} differs from PyTorch's {ref.shape}")
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    scale = max(float(np.abs(ref).max()), 1e-12)
    top1 = float(np.mean(ours.argmax(-1) == ref.argmax(-1)))
    k = min(5, ref.shape[-1])
    top5 = float(
        np.mean([len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k for a, b in zip(ours, ref)])
    )
    return ParityRow(seed, float(diff.max()), float(diff.max()) / scale, top1, top5)


def _inputs(shape: list[int], seeds: int) -> list[np.ndarray]:
    """ImageNet-normalised-like inputs: standard normal, seeded."""
    return [np.random.default_rng(seed).standard_normal(shape).astype(np.float32) for seed in range(seeds)]


def _export_onnx(model, batch: int, path: Path, exporter: str, opset: int) -> None:
    import torch

    example = (torch.zeros(batch, 3, 224, 224),)
    kwargs = dict(opset_version=opset, input_names=["input"], output_names=["logits"])
    if exporter not in ("dynamo", "legacy"):
        raise ShuffleTVMError(f"unknown ONNX exporter '{exporter}'; use dynamo or legacy")
    torch.onnx.export(model, example, str(path), dynamo=exporter == "dynamo", **kwargs)


def _run_emulated(module: Path, inputs: list[np.ndarray], workdir: Path) -> list[np.ndarray]:
    from .emulation import Aarch64Emulator

    emulator = Aarch64Emulator.require()
    names = []
    for i, x in enumerate(inputs):
        np.save(workdir / f"in{i}.npy", x)
        names.append(f"in{i}")
    script = (
        "import sys, numpy as np\n"
        "from shuffletvm.runtime import load\n"
        "m = load(sys.argv[1])\n"
        "for name in sys.argv[3:]:\n"
        "    np.save(f'{sys.argv[2]}/{name}.out.npy', m.run(np.load(f'{sys.argv[2]}/{name}.npy')))\n"
    )
    proc = emulator.run_python(["-c", script, str(module), str(workdir), *names])
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ShuffleTVMError(f"the aarch64 module failed under qemu: {tail[:200]}")
    return [np.load(workdir / f"{name}.out.npy") for name in names]


def runs_emulated(arch: str) -> bool:
    return arch == "aarch64" and platform.machine() != "aarch64"


def run_module(path: Path, arch: str, inputs: list[np.ndarray], workdir: Path) -> list[np.ndarray]:
    """Run a built module on this host, or under qemu when it is for aarch64 and this host is not."""
    if runs_emulated(arch):
        return _run_emulated(path, inputs, workdir)
    from .runtime import load

    module = load(path)
    return [module.run(x) for x in inputs]


def check_parity(config: ParityConfig) -> ParityReport:
    import torch

    from .build import BuildConfig, build
    from .models.registry import create_model

    if config.seeds < 1:
        raise ShuffleTVMError(f"--seeds must be at least 1, got {config.seeds}")
    model = create_model(config.model, config.weights)
    with tempfile.TemporaryDirectory(prefix="shuffletvm-parity-") as tmp:
        workdir = Path(tmp)
        onnx_path = None
        if config.frontend == "onnx":
            onnx_path = workdir / f"{config.model}.onnx"
            _export_onnx(model, config.batch, onnx_path, config.onnx_exporter, config.opset)
        elif config.frontend != "torch":
            raise ShuffleTVMError(f"unknown frontend '{config.frontend}'; use torch or onnx")
        build_config = BuildConfig(
            output=workdir / "model.so", model=config.model, target=config.target, batch=config.batch,
            weights=config.weights if onnx_path is None else None, onnx=onnx_path,
            target_options=config.target_options,
        )
        result = build(build_config)
        build_s = result.import_s + result.compile_s + result.export_s
        inputs = _inputs(result.input_shape, config.seeds)
        with torch.no_grad():
            refs = [model(torch.from_numpy(x)).numpy() for x in inputs]
        outs = run_module(result.path, result.target.arch, inputs, workdir)
        latency_ms = None
        if config.time_repeat > 0 and not runs_emulated(result.target.arch):
            from .runtime import load

            latency_ms = 1e3 * float(np.median(load(result.path).time_run(inputs[0], repeat=config.time_repeat)))
    rows = [compare_outputs(seed, out, ref) for seed, (out, ref) in enumerate(zip(outs, refs))]
    note = "ran under qemu-user (emulated aarch64)" if runs_emulated(result.target.arch) else ""
    return ParityReport(
        config.model, result.target.name, config.frontend, config.rtol, rows, build_s, note, latency_ms,
        result.pass_counts, (result.kernels_total, result.kernels_tuned, result.kernels_hand),
    )


def report_json(report: ParityReport) -> str:
    return json.dumps(
        {
            "model": report.model, "target": report.target, "frontend": report.frontend, "rtol": report.rtol,
            "passed": report.passed, "rows": [r.__dict__ for r in report.rows],
        },
        indent=2,
    )
