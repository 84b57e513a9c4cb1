"""Writes benchmarks/RESULTS.md: `shuffletvm compare` for the models and batch sizes users ask about — TVM's
stock pipeline, + shuffletvm's passes, + hand-written schedules, tuned, and the vendor runtimes — plus a
warm per-kernel profile of the tuned modules (what holds them back) and the per-kernel table of benchmarks/kernels.py.

    python benchmarks/results.py [--rounds 10] [--runs 10] [--kernel-rounds 5] [--out benchmarks/RESULTS.md]
                                 [--runtimes NAME ...]

`--runtimes` measures a subset (the TVM stock and passes rows and torch.compile take most of the time on a slow
machine: 10-12 min a row there, the stock batch-8 row alone about 50 s a round); `--kernel-rounds 0` skips the
per-kernel table.

Everything is measured in this one run, on this machine, with its tuning log in tuning_logs/. The results of an
earlier machine class (another CPU, another log) are kept beside it as RESULTS-<log key>.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from kernel_profile import profile  # benchmarks/kernel_profile.py, beside this script
from kernels import collect, measure, table  # benchmarks/kernels.py, beside this script

from shuffletvm import tvm_compat
from shuffletvm.bench.compare import CompareConfig, compare, plot
from shuffletvm.fileio import write_text_atomic
from shuffletvm.targets import resolve_target
from shuffletvm.tuning.database import open_log

ROWS = [("shufflenet_v2_x0_5", 1), ("shufflenet_v2_x1_0", 1), ("shufflenet_v1_g3_x1_0", 1),
        ("shufflenet_v1_g8_x1_0", 1), ("shufflenet_v2_x1_0", 8)]
HERE = Path(__file__).parent
RUNTIMES = ["tvm-tuned", "tvm-hand", "tvm-passes", "tvm-untuned", "pytorch", "torch-compile", "onnxruntime",
            "openvino-fp32", "openvino-default"]
# Sections after this line come from other benchmarks (identity_in_place.py, ...); a rerun keeps them as they are.
KEPT = "<!-- sections below: other benchmarks' results, kept by results.py -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kernel-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--runtimes", nargs="+", default=RUNTIMES, choices=RUNTIMES, metavar="NAME")
    args = parser.parse_args()

    target = resolve_target("x86")
    log = open_log(target, create=False)
    started = time.perf_counter()
    sections, summary = [], []
    runtimes = ["tvm-tuned", *(r for r in args.runtimes if r != "tvm-tuned")]  # the summary is about tuned
    for model, batch in ROWS:
        report = compare(CompareConfig(model=model, batch=batch, runtimes=runtimes, rounds=args.rounds,
                                       runs_per_round=args.runs))
        if (model, batch) == ("shufflenet_v2_x1_0", 1):
            plot(report, args.out.parent / args.out.name.replace("RESULTS", "compare_v2_x1_0").replace(".md", ".png"))
        best = report.best_vendor()
        row = {r.runtime: r for r in report.rows}

        def ms(name: str, row: dict = row) -> str:
            return f"{row[name].median_ms:.2f}" if name in row and row[name].median_ms else "-"

        def ratio(name: str, row: dict = row, best: object = best) -> str:
            measured = name in row and row[name].median_ms and best
            return f"{row[name].median_ms / best.median_ms:.2f}x" if measured else "-"

        summary.append(f"| {model} | {batch} | {ms('tvm-tuned')} | {ms('tvm-hand')} | {ms('tvm-passes')} | "
                       f"{ms('tvm-untuned')} | {best.runtime} {best.median_ms:.2f} | {ratio('tvm-tuned')} | "
                       f"{ratio('tvm-hand')} | {row['tvm-tuned'].note} |")
        sections += [f"### {model}, batch {batch}", "", report.markdown(), ""]
        if row["tvm-tuned"].median_ms:
            sections += [*profile(model, batch, top=8), ""]
    if args.kernel_rounds > 0:
        kernel_rows, _ = collect()
        measure(kernel_rows, args.kernel_rounds)
        sections += ["## Per kernel: TVM default vs hand-written schedule vs tuned vs PyTorch", "",
                     "Every depthwise 3x3 and 1x1 conv kernel of V2 1.0x and V1 g3 1.0x (with its fused bias / "
                     f"residual / ReLU), medians of {args.kernel_rounds} rounds of 20 runs, TVM variants interleaved, "
                     "PyTorch after them (`python benchmarks/kernels.py`).", "", *table(kernel_rows), ""]
    others = sorted(p for p in HERE.glob("RESULTS*.md") if p.resolve() != args.out.resolve())
    lines = [
        "# Tuned TVM vs untuned TVM vs vendor runtimes (x86)",
        "",
        f"Machine: {platform.machine()}, LLVM cpu `{tvm_compat.host_cpu_name()}`, {target.spec['num-cores']} cores "
        "(a shared 2-core VM: medians of interleaved rounds; compare ratios, not absolute numbers, across runs).",
        f"Tuning log: `{log.path.relative_to(HERE.parent) if log.path.is_relative_to(HERE.parent) else log.path}`, "
        f"{log.records} records over {log.workloads} kernels.",
        "",
        f"Reproduce: `python benchmarks/results.py --rounds {args.rounds} --runs {args.runs}"
        f"{'' if args.kernel_rounds == 5 else f' --kernel-rounds {args.kernel_rounds}'}"
        f"{'' if args.out.resolve() == (HERE / 'RESULTS.md').resolve() else f' --out benchmarks/{args.out.name}'}"
        f"{'' if args.runtimes == RUNTIMES else ' --runtimes ' + ' '.join(args.runtimes)}` (each row is "
        "`shuffletvm compare MODEL --batch N`).",
        *(["", "Other machine classes, each with its own log: " + ", ".join(
            f"[{p.name}]({p.name})" for p in others) + "."] if others else []),
        "",
        "TVM rows, all in the same run: **tuned** (tuning log; hand schedules where no record), **hand** "
        "(shuffletvm's passes + hand-written schedules, no tuning), **passes** (shuffletvm's passes, TVM's default "
        "unscheduled kernels), **stock** (TVM's default Relax pipeline).",
        "",
        "| model | batch | TVM tuned ms | TVM hand ms | TVM passes ms | TVM stock ms | best fp32 vendor ms | "
        "tuned / best vendor | hand / best vendor | kernels |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
        *summary,
        "",
        *sections,
        f"Measured in {time.perf_counter() - started:.0f} s.",
    ]
    previous = args.out.read_text() if args.out.exists() else ""
    if KEPT in previous:
        lines += ["", KEPT + previous.split(KEPT, 1)[1].rstrip("\n")]
    write_text_atomic("\n".join(lines) + "\n", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
