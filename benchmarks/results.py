"""Writes benchmarks/RESULTS.md: `shuffletvm compare` for the models and batch sizes users ask about, plus a
per-kernel profile of the tuned modules (what holds them back).

    python benchmarks/results.py [--rounds 10] [--runs 10] [--out benchmarks/RESULTS.md]

Everything is measured in this one run, on this machine, with the tuning log in tuning_logs/.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from shuffletvm import tvm_compat
from shuffletvm.bench.compare import CompareConfig, compare, plot
from shuffletvm.fileio import write_text_atomic
from shuffletvm.targets import resolve_target
from shuffletvm.tuning.database import open_log

ROWS = [("shufflenet_v2_x0_5", 1), ("shufflenet_v2_x1_0", 1), ("shufflenet_v1_g3_x1_0", 1),
        ("shufflenet_v1_g8_x1_0", 1), ("shufflenet_v2_x1_0", 8)]
HERE = Path(__file__).parent


def kernel_profile(model: str, batch: int, top: int = 8) -> list[str]:
    """The tuned module's most expensive kernels: calls x best time measured by MetaSchedule (the tuning log's
    top record per kernel). TVM 0.27's runtime VM has no per-kernel profiler."""
    from shuffletvm.tuning.tasks import extract_tasks, records_for
    from shuffletvm.tuning.tune import _lowered

    target = resolve_target("x86")
    tvm_target = target.tvm_target()
    database = open_log(target, create=False).database()
    rows, untuned = [], 0
    for task in extract_tasks(_lowered([model], batch, tvm_target), tvm_target):
        best_records = records_for(task, database, 1)
        if not best_records:
            untuned += 1
            continue
        best = float(np.mean([float(s) for s in best_records[0].run_secs]))
        rows.append((task.weight * best * 1e6, task))
    total = sum(us for us, _ in rows)
    lines = [f"Estimated kernel time {total / 1e3:.2f} ms (sum of calls x best measured time"
             + (f"; {untuned} kernels without a record" if untuned else "") + "):", "",
             "| kernel | kind | calls | us (all calls) | share |", "|---|---|---:|---:|---:|"]
    for us, task in sorted(rows, key=lambda r: -r[0])[:top]:
        kind = "compute" if task.compute else "data movement"
        lines.append(f"| {task.name} | {kind} | {task.weight} | {us:.0f} | {us / total:.0%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()

    target = resolve_target("x86")
    log = open_log(target, create=False)
    started = time.perf_counter()
    sections, summary = [], []
    for model, batch in ROWS:
        report = compare(CompareConfig(model=model, batch=batch, rounds=args.rounds, runs_per_round=args.runs))
        if (model, batch) == ("shufflenet_v2_x1_0", 1):
            plot(report, HERE / "compare_v2_x1_0.png")
        best = report.best_vendor()
        tuned = next(r for r in report.rows if r.runtime == "tvm-tuned")
        untuned = next(r for r in report.rows if r.runtime == "tvm-untuned")
        tuned_ms = f"{tuned.median_ms:.2f}" if tuned.median_ms else "-"
        ratio = f"{tuned.median_ms / best.median_ms:.2f}x" if tuned.median_ms and best else "-"
        summary.append(f"| {model} | {batch} | {tuned_ms} | {untuned.median_ms:.2f} | "
                       f"{best.runtime} {best.median_ms:.2f} | {ratio} | {tuned.note} |")
        sections += [f"### {model}, batch {batch}", "", report.markdown(), ""]
        if tuned.median_ms:
            sections += [*kernel_profile(model, batch), ""]
    lines = [
        "# Tuned TVM vs untuned TVM vs vendor runtimes (x86)",
        "",
        f"Machine: {platform.machine()}, LLVM cpu `{tvm_compat.host_cpu_name()}`, {target.spec['num-cores']} cores "
        "(a shared 2-core VM: medians of interleaved rounds; compare ratios, not absolute numbers, across runs).",
        f"Tuning log: `{log.path.relative_to(HERE.parent) if log.path.is_relative_to(HERE.parent) else log.path}`, "
        f"{log.records} records over {log.workloads} kernels.",
        "",
        f"Reproduce: `python benchmarks/results.py --rounds {args.rounds} --runs {args.runs}` (each row is "
        "`shuffletvm compare MODEL --batch N`).",
        "",
        "| model | batch | TVM tuned ms | TVM untuned ms | best fp32 vendor ms | tuned / best vendor | kernels tuned |",
        "|---|---:|---:|---:|---|---:|---|",
        *summary,
        "",
        *sections,
        f"Measured in {time.perf_counter() - started:.0f} s.",
    ]
    write_text_atomic("\n".join(lines) + "\n", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
