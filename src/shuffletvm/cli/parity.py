"""`shuffletvm parity MODEL --target TARGET [--frontend torch|onnx]`: exits 1 past the tolerance."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_target_arguments, target_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..parity import DEFAULT_RTOL

    parser.add_argument("model", nargs="?", default="shufflenet_v2_x1_0", help="zoo model name (default: %(default)s)")
    add_target_arguments(parser)
    parser.add_argument("--frontend", choices=["torch", "onnx"], default="torch", help="import path (default: torch)")
    parser.add_argument("--onnx-exporter", choices=["dynamo", "legacy"], default="dynamo",
                        help="torch.onnx exporter for --frontend onnx (default: dynamo)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset for --frontend onnx (default: 18)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeded random inputs (default: 3)")
    parser.add_argument("--weights", type=Path, help="a state_dict file instead of random weights")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help="fail past this max |TVM - torch| / max |torch| (default: %(default)g)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")


def execute(args: argparse.Namespace) -> int:
    from ..parity import ParityConfig, check_parity, report_json

    config = ParityConfig(
        model=args.model, target=args.target, frontend=args.frontend, onnx_exporter=args.onnx_exporter,
        opset=args.opset, batch=args.batch, seeds=args.seeds, weights=args.weights, rtol=args.rtol,
        target_options=target_options(args),
    )
    report = check_parity(config)
    print(f"parity: {report.model} on {report.target} via {report.frontend}"
          + (f" ({report.note})" if report.note else ""))
    print("| seed | max abs err | rel err  | top-1 agree | top-5 agree |")
    print("|-----:|------------:|---------:|------------:|------------:|")
    for row in report.rows:
        print(f"| {row.seed} | {row.max_abs_err:.3e} | {row.rel_err:.3e} | {row.top1_agree:.0%} | {row.top5_agree:.0%} |")
    verdict = "PASS" if report.passed else "FAIL"
    print(f"{verdict}: max rel err {report.max_rel_err:.3e} (tolerance {report.rtol:g})")
    if args.json:
        from ..fileio import write_text_atomic

        write_text_atomic(report_json(report), args.json)
    return 0 if report.passed else 1
