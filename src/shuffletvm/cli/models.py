"""`shuffletvm models`: the model zoo with MACs and parameters."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=["v1", "v2"], help="only this family")


def execute(args: argparse.Namespace) -> int:
    from ..models.registry import MODELS, model_cost

    rows = []
    for name, spec in MODELS.items():
        if args.family and spec.family != args.family:
            continue
        cost = model_cost(spec.build())
        groups = str(spec.groups) if spec.family == "v1" else "-"
        rows.append(f"| {name:<24} | {spec.family} | {spec.width:>5.1f}x | {groups:>6} | {cost.macs / 1e6:>8.1f} | {cost.params / 1e6:>8.3f} |")
    print("| model                    | family | width | groups | MMACs    | M params |")
    print("|--------------------------|--------|-------|--------|----------|----------|")
    print("\n".join(rows))
    return 0
