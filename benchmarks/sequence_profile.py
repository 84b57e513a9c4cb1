"""Kernels inside the running model vs warm on their own, and the model built with and without
PartitionRowsAcrossCores (or, `--without images`, without its batch-N rule only; `--without concat`, without
ProduceIntoConcat; `--without stem`, without FuseStemConvPool; `--without expand` / `pair`, without
FuseExpandDepthwise / FuseGroupedConvPair; `--without tuning`, with hand schedules only;
`--against LOG_ROOT`, with another tuning log), timed in interleaved rounds.

Each kernel call of one inference is recorded with the VM's instrument hook (its function and its argument
tensors, as memory planning placed them), then the whole sequence is replayed call by call: "in sequence" is a
kernel's time there, with the cache state the kernels before it left; "warm" is its time when called a second
time right after itself. The difference is what a kernel pays for where its inputs are (another core's cache,
L3, memory), which per-kernel tuning does not see.

    python benchmarks/sequence_profile.py shufflenet_v2_x1_0 [--batch 1] [--rounds 30] [--top 10]
        [--without pass|images|grouped|concat|stem|expand|pair|tuning | --against LOG_ROOT] [--sort cache|difference]
        [--log-dir LOG_ROOT]

Two logs, kernel by kernel in sequence (which records lose in the model what they won warm):
`--against ROOT` with ROOT holding a copy of the other log (another CPU's is applied as the kindred log).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

WITHOUT = {  # --without: the other build's options, and what it is
    "pass": ({"partition_rows": False}, "without PartitionRowsAcrossCores"),
    "images": ({"partition_images": False}, "with the batch-1 rule at every batch"),
    "grouped": ({"partition_grouped": False}, "with grouped convs split by channels"),
    "concat": ({"produce_into_concat": False}, "without ProduceIntoConcat"),
    "stem": ({"fuse_stem": False}, "without FuseStemConvPool"),
    "expand": ({"fuse_expand_depthwise": False}, "without FuseExpandDepthwise"),
    "pair": ({"fuse_grouped_conv_pair": False}, "without FuseGroupedConvPair"),
    "tuning": ({"use_tuning_logs": False}, "with hand schedules only"),
}
SORT = {  # --sort: the table's first rows
    "cache": lambda row: row[1] - row[0],  # what the other build's kernels pay in sequence over warm, most first
    "difference": lambda row: row[0] - row[2],  # in sequence, as built slower than the other build, most first
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--top", type=int, default=10)
    other_build = parser.add_mutually_exclusive_group()
    other_build.add_argument("--without", choices=list(WITHOUT), default="pass",
                             help="the other build: " + "; ".join(f"{k}: {v[1]}" for k, v in WITHOUT.items()))
    other_build.add_argument("--against", type=Path, metavar="LOG_ROOT",
                             help="the other build: the same pipeline with the tuning logs under LOG_ROOT (e.g. a "
                                  "root holding only another CPU's log, which the kindred rule then applies)")
    parser.add_argument("--log-dir", type=Path, default=None, help="tuning log root (default: tuning_logs/)")
    parser.add_argument("--sort", choices=list(SORT), default="cache",
                        help="first the kernels that pay most in sequence over warm, or those the build as built "
                             "runs slower in sequence than the other")
    args = parser.parse_args()
    if args.against:
        without, other = {"log_dir": args.against}, f"with the logs under {args.against}"
        headers = ("against", "own")
    else:
        without, other = WITHOUT[args.without]
        headers = ("without", "with")
    from shuffletvm import runtime
    from shuffletvm.bench.sequence import kernel_calls, replay
    from shuffletvm.build import BuildConfig, build

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for label, options in (("rows", {}), ("channels", without)):
            paths[label] = Path(tmp) / f"{label}.so"
            build(BuildConfig(output=paths[label], model=args.model, batch=args.batch,
                              **{"log_dir": args.log_dir, **options}))
        models = {label: runtime.load(path) for label, path in paths.items()}
        x = np.random.default_rng(0).random(models["rows"].input_shape, dtype=np.float32)
        # which core runs what changes no sum; the fused stem and tuned kernels sum in their own order (rounding)
        ours, other_out = models["rows"].run(x), models["channels"].run(x)
        reordered = args.against or args.without in ("stem", "tuning")
        tolerance = 1e-4 * np.abs(other_out).max() if reordered else 0
        np.testing.assert_allclose(ours, other_out, rtol=0, atol=tolerance)
        agree = "identical" if np.array_equal(ours, other_out) else f"within {np.abs(ours - other_out).max():.1e}"
        end_to_end: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for label, model in models.items():
                end_to_end[label].append(float(np.median(model.time_run(x, repeat=10))))
        calls = {label: kernel_calls(model, x) for label, model in models.items()}
        profiles = replay(calls, args.rounds)
        names = [name for name, _f, _a in calls["rows"]]

    rows_ms, channels_ms = (np.median(end_to_end[k]) * 1e3 for k in ("rows", "channels"))
    print(f"{args.model}, batch {args.batch}, {args.rounds} interleaved rounds: end to end {rows_ms:.2f} ms as "
          f"built, {channels_ms:.2f} ms {other} ({rows_ms / channels_ms:.2f}x); outputs {agree}.\n")
    if names != [name for name, _f, _a in calls["channels"]]:  # other kernels: totals only
        for label, title in (("rows", "as built"), ("channels", other)):
            print(f"{title}: {len(calls[label])} kernel calls, {sum(profiles[label][0]) * 1e3:.2f} ms in sequence, "
                  f"{sum(profiles[label][1]) * 1e3:.2f} ms warm")
        return
    other_head, own_head = headers
    print(f"| kernel | calls | {other_head}: in sequence us | {other_head}: warm us | {own_head}: in sequence us | "
          f"{own_head}: warm us |")
    print("|---|---:|---:|---:|---:|---:|")
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for i, name in enumerate(names):
        row = totals[name]
        row[0] += profiles["channels"][0][i] * 1e6
        row[1] += profiles["channels"][1][i] * 1e6
        row[2] += profiles["rows"][0][i] * 1e6
        row[3] += profiles["rows"][1][i] * 1e6
    for name, row in sorted(totals.items(), key=lambda kv: SORT[args.sort](kv[1]))[:args.top]:
        print(f"| {name} | {names.count(name)} | {row[0]:.0f} | {row[1]:.0f} | {row[2]:.0f} | {row[3]:.0f} |")
    sums = [sum(row[k] for row in totals.values()) / 1e3 for k in range(4)]
    print(f"| all {len(totals)} kernels | {len(names)} | {sums[0]:.2f} ms | {sums[1]:.2f} ms | {sums[2]:.2f} ms | "
          f"{sums[3]:.2f} ms |")


if __name__ == "__main__":
    main()
