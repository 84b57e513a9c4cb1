"""`shuffletvm compare`: every runtime on the same model, input and thread count, measured in interleaved rounds.

Each round runs every runtime `runs_per_round` times in turn, so a noisy neighbour on a shared machine hits
all runtimes alike; per runtime we report the median and the 10th/90th percentiles over all timed runs, after
warm-up runs that are not timed. Each runtime's turn in a round starts with one untimed run: the runtime before
it leaves its threads spinning for a while (ONNX Runtime's and OpenMP's pools spin after each run), which the
first run of a turn would pay for. Every runtime's output is checked against PyTorch eager in the same run.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ShuffleTVMError
from ..models.registry import DEFAULT_MODEL
from .runtimes import RUNTIMES, Context, Unavailable, set_thread_env

logger = logging.getLogger(__name__)

DEFAULT_RUNTIMES = ["tvm-tuned", "tvm-hand", "tvm-untuned", "pytorch", "torch-compile", "onnxruntime", "openvino-fp32",
                    "openvino-default"]


@dataclass
class CompareConfig:
    model: str = DEFAULT_MODEL
    target: str = "x86"
    runtimes: list[str] | None = None
    batch: int = 1
    threads: int | None = None  # default: the target's core count
    rounds: int = 10
    runs_per_round: int = 10
    warmup: int = 5
    log_dir: Path | None = None


@dataclass
class RuntimeRow:
    runtime: str
    vendor: bool
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    rel_err: float | None = None
    note: str = ""


@dataclass
class CompareReport:
    model: str
    target: str
    batch: int
    threads: int
    rows: list[RuntimeRow] = field(default_factory=list)

    def best_vendor(self, fp32_only: bool = True) -> RuntimeRow | None:
        rows = [r for r in self.rows if r.vendor and r.median_ms is not None]
        if fp32_only:
            rows = [r for r in rows if r.runtime != "openvino-default"]
        return min(rows, key=lambda r: r.median_ms) if rows else None

    def markdown(self) -> str:
        best = self.best_vendor()
        lines = [
            f"{self.model}, batch {self.batch}, {self.threads} threads, target {self.target}",
            "",
            "| runtime | median ms | p10 ms | p90 ms | vs best fp32 vendor | max rel err vs PyTorch | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.rows:
            if r.median_ms is None:
                lines.append(f"| {r.runtime} | - | - | - | - | - | {r.note} |")
                continue
            ratio = f"{r.median_ms / best.median_ms:.2f}x" if best else "-"
            lines.append(f"| {r.runtime} | {r.median_ms:.3f} | {r.p10_ms:.3f} | {r.p90_ms:.3f} | {ratio} | "
                         f"{r.rel_err:.1e} | {r.note} |")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _default_threads(target: str) -> int:
    from ..targets import resolve_target

    return int(resolve_target(target).spec.get("num-cores", 1)) if target != "cuda" else 1


def compare(config: CompareConfig) -> CompareReport:
    from tqdm import tqdm

    names = config.runtimes or [n for n in DEFAULT_RUNTIMES if config.target in RUNTIMES[n][2]]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise ShuffleTVMError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    if config.rounds < 1 or config.runs_per_round < 1 or config.batch < 1:
        raise ShuffleTVMError("--rounds, --runs and --batch must be at least 1")
    if config.target not in ("x86", "cuda"):
        raise ShuffleTVMError(f"compare measures on this machine: target x86 or cuda, not '{config.target}'")
    threads = config.threads if config.threads is not None else _default_threads(config.target)
    if threads < 1:
        raise ShuffleTVMError(f"--threads must be at least 1, got {threads}")
    set_thread_env(threads)

    import torch

    from ..models.registry import create_model
    from ..parity import compare_outputs
    from ..runtime import aligned_array

    model = create_model(config.model)
    # in memory TVM's CPU modules read in place, as a deployment's input buffer would be (all runtimes get it)
    x = aligned_array(np.random.default_rng(0).standard_normal((config.batch, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    report = CompareReport(config.model, config.target, config.batch, threads)
    prepared = {}
    with tempfile.TemporaryDirectory(prefix="shuffletvm-compare-") as tmp:
        ctx = Context(model, config.model, x, threads, Path(tmp), config.target, config.log_dir)
        for name in tqdm(names, desc="preparing", unit="runtime"):
            prepare, vendor, _targets = RUNTIMES[name]
            row = RuntimeRow(name, vendor)
            report.rows.append(row)
            try:
                ready = prepare(ctx)
            except Unavailable as why:
                row.note = f"skipped: {why}"
                continue
            row.note = ready.note
            row.rel_err = compare_outputs(0, ready.run(x), reference).rel_err
            prepared[name] = ready
        samples: dict[str, list[float]] = {name: [] for name in prepared}
        for name, ready in prepared.items():
            for _ in range(config.warmup):
                ready.run(x)
        for _ in tqdm(range(config.rounds), desc="measuring", unit="round"):
            for name, ready in prepared.items():
                ready.run(x)  # the first run of a turn, while the last runtime's threads still spin: not timed
                for _ in range(config.runs_per_round):
                    start = time.perf_counter()
                    ready.run(x)
                    samples[name].append(1e3 * (time.perf_counter() - start))
    for row in report.rows:
        if row.runtime in samples:
            values = np.array(samples[row.runtime])
            row.median_ms, row.p10_ms, row.p90_ms = (float(np.percentile(values, q)) for q in (50, 10, 90))
    return report


def plot(report: CompareReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import atomic_output

    rows = [r for r in report.rows if r.median_ms is not None]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    names = [r.runtime for r in rows]
    medians = [r.median_ms for r in rows]
    errors = [[r.median_ms - r.p10_ms for r in rows], [r.p90_ms - r.median_ms for r in rows]]
    colors = ["tab:orange" if r.runtime.startswith("tvm") else "tab:blue" for r in rows]
    ax.barh(names, medians, xerr=errors, color=colors, capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("latency, ms (median; whiskers p10-p90)")
    ax.set_title(f"{report.model}, batch {report.batch}, {report.threads} threads ({report.target})")
    for i, row in enumerate(rows):
        ax.text(row.p90_ms, i, f"  {row.median_ms:.2f}", va="center")
    fig.tight_layout()
    with atomic_output(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
