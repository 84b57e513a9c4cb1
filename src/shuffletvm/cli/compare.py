"""`shuffletvm compare MODEL --target x86 [--runtimes ...] [--batch N] [--threads N] [--json F] [--plot F.png]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bench.runtimes import RUNTIMES

    parser.add_argument("model", nargs="?", default="shufflenet_v2_x1_0", help="zoo model (default: %(default)s)")
    parser.add_argument("--target", default="x86", choices=["x86", "cuda"], help="where to measure (default: x86)")
    parser.add_argument("--runtimes", nargs="+", metavar="NAME", help=f"subset of: {', '.join(RUNTIMES)}")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, help="threads for every runtime (default: the target's cores)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per runtime per round (default: %(default)s)")
    parser.add_argument("--log-dir", type=Path, help="tuning log root for tvm-tuned (default: tuning_logs/)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--plot", type=Path, help="also write a PNG bar chart")


def execute(args: argparse.Namespace) -> int:
    from ..bench.compare import CompareConfig, compare, plot
    from ..fileio import check_writable, write_text_atomic
    from ..models.registry import get_spec

    get_spec(args.model)
    for path in (args.json, args.plot):
        if path is not None:
            check_writable(path)
    report = compare(CompareConfig(
        model=args.model, target=args.target, runtimes=args.runtimes, batch=args.batch, threads=args.threads,
        rounds=args.rounds, runs_per_round=args.runs, log_dir=args.log_dir,
    ))
    print(report.markdown())
    if args.json:
        write_text_atomic(report.to_json(), args.json)
    if args.plot:
        plot(report, args.plot)
    return 0
