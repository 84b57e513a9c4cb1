"""`shuffletvm choose MODEL... [--batch N] [--log-dir DIR] [--rounds N] [--margin F]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_target_arguments, target_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="zoo model names; a kernel they share is timed in each")
    add_target_arguments(parser)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--log-dir", type=Path, help="tuning log root (default: the repository's tuning_logs/)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved replays of both builds (default: 30)")
    parser.add_argument("--margin", type=float, default=0.03,
                        help="how much faster (a fraction) the hand schedule must run to be chosen (default: 0.03)")


def execute(args: argparse.Namespace) -> int:
    from ..tuning.in_model import ChooseConfig, choose

    result = choose(ChooseConfig(models=args.models, target=args.target, target_options=target_options(args),
                                 batch=args.batch, log_dir=args.log_dir, rounds=args.rounds, margin=args.margin))
    print("| kernel | models | calls | log's record us | hand-written us | hand / record | chosen |")
    print("|---|---|---:|---:|---:|---:|---|")
    for c in result.choices:
        print(f"| {c.kernel} | {', '.join(c.models)} | {c.calls} | {c.record_us:.0f} | {c.hand_us:.0f} | "
              f"{c.hand_us / c.record_us:.2f}x | {'hand-written' if c.hand else 'record'} |")
    print("\nEach kernel in sequence in the running model: the median of each call over the rounds, summed.")
    for model, (record_ms, hand_ms) in result.end_to_end_ms.items():
        print(f"{model}: end to end {record_ms:.2f} ms with the log's records, {hand_ms:.2f} ms hand-written only")
    for model, ratio in result.checked.items():
        print(f"{model}: built with in_model.json, end to end {ratio:.3f}x the time without it (15 interleaved "
              "rounds, paired)")
    print(f"{sum(c.hand for c in result.choices)} of {len(result.choices)} kernels take their hand-written schedule; "
          f"builds apply {result.log / 'in_model.json'}")
    return 0
