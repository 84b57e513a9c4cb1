"""`shuffletvm tune MODEL... --target TARGET [--trials N | --time-budget MINUTES] [--rpc-tracker HOST:PORT --rpc-key KEY]
[--log-dir DIR]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_target_arguments, target_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="zoo model names; shared kernels are tuned once")
    add_target_arguments(parser)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=int, help="trials per kernel (default: 8; data-movement kernels get 2)")
    budget.add_argument("--time-budget", type=float, metavar="MINUTES", help="tune until this much time has passed")
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", help="tracker of the device that measures (arm)")
    parser.add_argument("--rpc-key", metavar="KEY", help="device key at the tracker")
    parser.add_argument("--log-dir", type=Path, help="tuning log root (default: the repository's tuning_logs/)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--kernels", metavar="REGEX", help="tune only kernels whose name matches (e.g. conv2d)")
    parser.add_argument("--remeasure", type=int, default=0, metavar="N",
                        help="first measure each kernel's best N records again; their new times replace the "
                             "old (a record keeps the time of the day and build that measured it)")
    kindred = parser.add_mutually_exclusive_group()
    kindred.add_argument("--no-kindred", action="store_true",
                         help="do not start kernels new to this target's log from another CPU's log (same ISA)")
    kindred.add_argument("--kindred-all", action="store_true",
                         help="start every selected kernel, tuned or not, from another CPU's best records this log "
                              "has not measured (that log was tuned further since this one was seeded from it; with "
                              "--trials 1, they are measured beside this log's records and nothing is searched)")


def execute(args: argparse.Namespace) -> int:
    from ..tuning.tune import TuneConfig, tune

    result = tune(TuneConfig(
        models=args.models, target=args.target, trials_per_task=args.trials, time_budget_min=args.time_budget,
        rpc_tracker=args.rpc_tracker, rpc_key=args.rpc_key, log_dir=args.log_dir, batch=args.batch, kernels=args.kernels,
        remeasure=args.remeasure, from_kindred=not args.no_kindred, kindred_all=args.kindred_all,
        target_options=target_options(args),
    ))
    emulated = " (emulated device: timings prove the path, not ARM speed)" if args.rpc_tracker and \
        args.rpc_tracker.split(":")[0] in ("127.0.0.1", "localhost") else ""
    print(f"| kernel | kind | calls | MFLOP | records |{emulated}")
    print("|---|---|---:|---:|---:|")
    for task in result.tasks:
        kind = "compute" if task.compute else "data movement"
        print(f"| {task.name} | {kind} | {task.weight} | {task.flops / 1e6:.2f} | {task.done_trials} |")
    print(f"\n{len(result.tasks)} kernels ({result.skipped} already covered), {result.trials} trials "
          f"({result.failed} failed) in {result.seconds / 60:.1f} min; log: {result.log.path} "
          f"({result.log.records_now()} records)" + (f"; stopped: {result.stop_reason}" if result.stop_reason else ""))
    return 0
