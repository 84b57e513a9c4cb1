"""`shuffletvm inspect MODEL [--target T] [--dump-dir D]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_target_arguments, target_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None, help="zoo model name (default: shufflenet_v2_x1_0)")
    add_target_arguments(parser)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--onnx", type=Path, help="inspect this ONNX file instead of a zoo model")
    parser.add_argument("--dump-dir", type=Path, help="write the module's TVMScript after each phase here")


def execute(args: argparse.Namespace) -> int:
    from ..inspect import InspectConfig, format_report, inspect_model
    from ..models.registry import DEFAULT_MODEL, get_spec

    if args.model is not None:
        get_spec(args.model)
    report = inspect_model(InspectConfig(
        model=args.model or DEFAULT_MODEL, target=args.target, batch=args.batch, onnx=args.onnx,
        dump_dir=args.dump_dir, target_options=target_options(args),
    ))
    print(format_report(report))
    return 0
