"""Parity of every zoo variant against PyTorch eager, each built as `shuffletvm build` builds it (shuffletvm's
pipeline; the target's tuning log, or a kindred CPU's, where it has records; hand schedules for the other kernels),
with its build time, where its kernels' schedules came from, and its latency.

    python benchmarks/parity_all.py [--target x86] [--frontend torch] [--seeds 3] [--out benchmarks/PARITY.md]

Writes a markdown table (and prints it). Latency is the module's median over 10 runs on this machine, one model
at a time: a sanity figure, not a benchmark (`shuffletvm compare` measures runtimes side by side).
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

from tqdm import tqdm

from shuffletvm import tvm_compat
from shuffletvm.fileio import write_text_atomic
from shuffletvm.models import MODELS
from shuffletvm.parity import ParityConfig, check_parity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="x86")
    parser.add_argument("--frontend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "PARITY.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    lines = [
        (f"# Parity: shuffletvm ({args.target}, {args.frontend} frontend, built as `shuffletvm build` builds it) "
         "vs PyTorch eager"),
        "",
        (f"Machine: {platform.machine()}, LLVM cpu `{tvm_compat.host_cpu_name()}`; {args.seeds} seeded inputs per "
         "model; random weights with calibrated, perturbed BatchNorm statistics. rel err = max|TVM - torch| / "
         "max|torch|. Kernels: all / scheduled by a tuning log record / by a hand-written schedule (the rest, "
         "pools, concats and the mean, by the fallback's parallel loops). Latency: median of 10 runs, batch 1, one "
         "model at a time (not a side-by-side benchmark)."),
        "",
        f"Reproduce: `python benchmarks/parity_all.py --target {args.target} --frontend {args.frontend} --seeds {args.seeds}`",
        "",
        "| model | max abs err | max rel err | top-1 agree | top-5 agree | kernels | build s | ms | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    started = time.perf_counter()
    for name in tqdm(args.models, desc="parity", unit="model"):
        report = check_parity(
            ParityConfig(model=name, target=args.target, frontend=args.frontend, seeds=args.seeds, time_repeat=10)
        )
        latency = f"{report.latency_ms:.1f}" if report.latency_ms is not None else "-"
        lines.append(
            f"| {name} | {max(r.max_abs_err for r in report.rows):.2e} | {report.max_rel_err:.2e} | "
            f"{min(r.top1_agree for r in report.rows):.0%} | {min(r.top5_agree for r in report.rows):.0%} | "
            f"{' / '.join(map(str, report.kernels))} | {report.build_s:.1f} | {latency} | "
            f"{'PASS' if report.passed else 'FAIL'} |"
        )
    lines += ["", f"Total wall time: {time.perf_counter() - started:.0f} s."]
    write_text_atomic("\n".join(lines) + "\n", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
