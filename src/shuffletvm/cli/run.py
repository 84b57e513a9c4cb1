"""`shuffletvm run OUT.so --input x.npy [--output y.npy] [--top 5]`: TVM runtime only, no torch."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", type=Path, help="a .so written by `shuffletvm build`")
    parser.add_argument("--input", type=Path, required=True, help=".npy array of the module's input shape")
    parser.add_argument("--output", type=Path, help="write the logits here (.npy)")
    parser.add_argument("--top", type=int, default=5, help="print the best K classes per image (default: 5; 0: none)")


def execute(args: argparse.Namespace) -> int:
    from ..errors import ShuffleTVMError
    from ..runtime import load, load_input, save_array_atomic, top_k

    if args.top < 0:
        raise ShuffleTVMError(f"--top must be 0 or more, got {args.top}")
    module = load(args.module)
    logits = module.run(load_input(args.input))
    if args.output is not None:
        save_array_atomic(logits, args.output)
    if args.top:
        print("| image | rank | class | probability |")
        print("|------:|-----:|------:|------------:|")
        for image, best in enumerate(top_k(logits, args.top)):
            for rank, (cls, prob) in enumerate(best, 1):
                print(f"| {image} | {rank} | {cls} | {prob:.4f} |")
    return 0
