"""Built modules side by side: two or more `.so` files of the same model and batch (e.g. built before and after a
change, `git stash` between the two `shuffletvm build`s), timed in interleaved rounds in one process, and their
outputs compared with the first's. The machine is shared: compare within a run. "Paired" is the median over rounds
of each round's ratio to the first module's time in that round: a neighbour's load that comes and goes over a run
moves both times of a round together, so it moves that ratio less than the ratio of the medians.

    python benchmarks/ab_modules.py BEFORE.so AFTER.so [MORE.so ...] [--rounds 15] [--runs 20] [--kernels]

`--kernels`: then each module's kernel calls of one inference replayed in sequence (`sequence_profile.py`'s
replay), the modules taking turns round by round, summed by kernel name: the kernels whose time differs from the
first module's.
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
    parser.add_argument("--kernels", action="store_true", help="also the kernels in sequence, by name")
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
    if args.kernels:
        _kernel_table(modules, x, args.rounds)


def _kernel_table(modules: dict, x: np.ndarray, rounds: int, least_us: float = 5.0) -> None:
    """Each module's kernels in sequence and warm (`sequence_profile.replay`), summed over the calls of each kernel
    name, beside the first module's: the names whose time in sequence differs by at least `least_us`."""
    from collections import defaultdict

    from shuffletvm.bench.sequence import kernel_calls, replay

    calls = {path.name: list(kernel_calls(module, x)) for path, module in modules.items()}
    medians = replay(calls, rounds)
    sums: dict[str, dict[str, list[float]]] = {}
    for label, sequence in calls.items():
        sums[label] = defaultdict(lambda: [0, 0.0, 0.0])
        for (name, _func, _args), in_sequence, warm in zip(sequence, *medians[label], strict=True):
            sums[label][name][0] += 1
            sums[label][name][1] += in_sequence * 1e6
            sums[label][name][2] += warm * 1e6
    first, *others = calls
    first_total = sum(v[1] for v in sums[first].values())
    print(f"\nkernels in sequence (warm), us, {rounds} interleaved rounds; names whose time differs by "
          f"{least_us:g} us or more\n")
    print("| module | kernel | calls | first's | this | ratio | first's warm | this warm |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label in others:
        shared = [n for n in sums[label] if n in sums[first]]
        for name in sorted(shared, key=lambda n: sums[label][n][1] - sums[first][n][1]):
            (count, seq, warm), (_, seq0, warm0) = sums[label][name], sums[first][name]
            if abs(seq - seq0) >= least_us:
                print(f"| {label} | {name} | {count} | {seq0:.0f} | {seq:.0f} | {seq / seq0:.2f}x | {warm0:.0f} | "
                      f"{warm:.0f} |")
        count, total = sum(v[0] for v in sums[label].values()), sum(v[1] for v in sums[label].values())
        print(f"| {label} | all kernels | {count} | {first_total:.0f} | {total:.0f} | {total / first_total:.2f}x | | |")


if __name__ == "__main__":
    main()
