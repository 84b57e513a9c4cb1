"""Built modules side by side: two or more `.so` files of the same model and batch (e.g. built before and after a
change, `git stash` between the two `shuffletvm build`s), timed in interleaved rounds in one process, and their
outputs compared with the first's. The machine is shared: compare within a run. "Paired" is the median over rounds
of each round's ratio to the first module's time in that round: a neighbour's load that comes and goes over a run
moves both times of a round together, so it moves that ratio less than the ratio of the medians.

    python benchmarks/ab_modules.py BEFORE.so AFTER.so [MORE.so ...] [--rounds 15] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np


def main() -> None:
    from shuffletvm.runtime import aligned_array, load  # load() runs on the cores the module was built for

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20, help="runs per round and module (one timed sample)")
    args = parser.parse_args()
    if len(args.modules) < 2:
        parser.error("give at least two modules")
    modules = {path: load(path) for path in args.modules}
    first = next(iter(modules.values()))
    if any(m.input_shape != first.input_shape for m in modules.values()):
        parser.error("the modules take different input shapes")
    x = aligned_array(np.random.default_rng(0).standard_normal(first.input_shape).astype(first.input_dtype))
    reference = first.run(x)
    times: dict[Path, list[float]] = {path: [] for path in modules}
    for _ in range(args.rounds):
        for path, module in modules.items():
            times[path].extend(module.time_run(x, repeat=1, number=args.runs))
    base = statistics.median(times[args.modules[0]])
    print(f"input {list(first.input_shape)}, {args.rounds} interleaved rounds of {args.runs} runs, medians\n")
    print("| module | median ms | vs first | paired | max abs diff vs first |")
    print("|---|---:|---:|---:|---:|")
    for path, module in modules.items():
        median = statistics.median(times[path])
        paired = statistics.median(t / f for t, f in zip(times[path], times[args.modules[0]], strict=True))
        diff = float(np.abs(module.run(x) - reference).max())
        print(f"| {path.name} | {median * 1e3:.3f} | {median / base:.3f}x | {paired:.3f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
