"""`shuffletvm build MODEL --target TARGET -o OUT.so`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_target_arguments, target_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None, help="zoo model name (see `shuffletvm models`); "
                        "with --onnx, only a label (default: shufflenet_v2_x1_0, or the ONNX file's name)")
    add_target_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .so to write")
    parser.add_argument("--batch", type=int, help="batch size (default: 1, or the ONNX file's)")
    parser.add_argument("--weights", type=Path, help="a state_dict file, e.g. a torchvision checkpoint")
    parser.add_argument("--onnx", type=Path, help="build this ONNX file instead of a zoo model")
    parser.add_argument("--dump-dir", type=Path, help="write the module's TVMScript after each pipeline phase here")
    parser.add_argument("--no-tuning-logs", action="store_true", help="ignore tuning logs: TVM's default schedules")
    parser.add_argument("--log-dir", type=Path, help="tuning log root (default: the repository's tuning_logs/)")


def execute(args: argparse.Namespace) -> int:
    from ..build import BuildConfig, build
    from ..models.registry import DEFAULT_MODEL, get_spec

    if args.model is not None:
        get_spec(args.model)
    config = BuildConfig(
        output=args.output, model=args.model or DEFAULT_MODEL, target=args.target, batch=args.batch,
        weights=args.weights, onnx=args.onnx, target_options=target_options(args), dump_dir=args.dump_dir,
        use_tuning_logs=not args.no_tuning_logs, log_dir=args.log_dir,
    )
    result = build(config)
    print(f"| module | {result.path} |")
    print("|---|---|")
    print(f"| model | {result.model} |")
    print(f"| target | {result.target.name}: {result.target.json()} |")
    print(f"| input | {result.input_shape} float32 |")
    print(f"| output | {result.output_shape} |")
    default = result.kernels_total - result.kernels_tuned - result.kernels_hand
    lifted = f" ({result.kernels_batch_one} with their batch-1 record)" if result.kernels_batch_one else ""
    chosen = (f"; {result.kernels_hand_chosen} of the log's records set aside by its in_model.json (the hand "
              "schedule ran faster in the model)" if result.kernels_hand_chosen else "")
    print(f"| kernels | {result.kernels_total}: {result.kernels_tuned} from tuning log "
          f"{result.tuning_log or '(none for this target)'}{lifted}, {result.kernels_hand} hand-written, "
          f"{default} default{chosen} |")
    print(f"| size | {result.size_bytes / 1e6:.1f} MB |")
    print(f"| time | import {result.import_s:.1f} s, compile {result.compile_s:.1f} s, export {result.export_s:.1f} s |")
    return 0
