"""Writes benchmarks/RESULTS.md: `shuffletvm compare` for the models and batch sizes users ask about, plus a
per-kernel profile of the tuned modules (what holds them back).

    python benchmarks/results.py [--rounds 10] [--runs 10] [--out benchmarks/RESULTS.md]

Everything is measured in this one run, on this machine, with the tuning log in tuning_logs/.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from shuffletvm import tvm_compat
from shuffletvm.bench.compare import CompareConfig, compare, plot
from shuffletvm.build import BuildConfig, build
from shuffletvm.fileio import write_text_atomic
from shuffletvm.targets import resolve_target
from shuffletvm.tuning.database import open_log

ROWS = [("shufflenet_v2_x0_5", 1), ("shufflenet_v2_x1_0", 1), ("shufflenet_v1_g3_x1_0", 1),
        ("shufflenet_v1_g8_x1_0", 1), ("shufflenet_v2_x1_0", 8)]
HERE = Path(__file__).parent


def kernel_profile(model: str, batch: int, top: int = 8) -> list[str]:
    """The tuned module's slowest kernels, from the Relax VM's profiler."""
    import tvm
    import tvm.runtime.vm

    with tempfile.TemporaryDirectory() as tmp:
        result = build(BuildConfig(output=Path(tmp) / "m.so", model=model, batch=batch))
        vm = tvm.runtime.vm.VirtualMachine(tvm_compat.load_module(str(result.path)), tvm.cpu(), profile=True)
        x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(result.input_shape).astype("float32"))
        for _ in range(3):
            vm["main"](x)
        report = json.loads(vm.profile("main", x).json())
    calls: dict[str, float] = {}
    for call in report["calls"]:
        name = call["Name"]["string"]
        calls[name] = calls.get(name, 0.0) + call["Duration (us)"]["microseconds"]
    total = sum(calls.values())
    lines = ["| kernel | us | share |", "|---|---:|---:|"]
    for name, us in sorted(calls.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {name} | {us:.0f} | {us / total:.0%} |")
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
        if best and tuned.median_ms:
            summary.append(f"| {model} | {batch} | {tuned.median_ms:.2f} | {untuned.median_ms:.2f} | "
                           f"{best.runtime} {best.median_ms:.2f} | {tuned.median_ms / best.median_ms:.2f}x | "
                           f"{tuned.note} |")
        sections += [f"### {model}, batch {batch}", "", report.markdown(), ""]
        if tuned.median_ms:
            sections += ["Slowest kernels of the tuned module (Relax VM profiler, one run):", "",
                         *kernel_profile(model, batch), ""]
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
