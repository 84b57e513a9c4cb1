"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse

from ..targets import ARM_MCPUS, TargetOptions


def add_target_arguments(parser: argparse.ArgumentParser, default: str = "x86") -> None:
    parser.add_argument("--target", default=default, help="x86, arm, cuda, or a TVM target as JSON (default: %(default)s)")
    parser.add_argument("--mcpu", help=f"CPU to tune code for (x86: LLVM's names; arm: {', '.join(ARM_MCPUS)})")
    parser.add_argument("--num-cores", type=int, help="cores the module may use (default: this machine's; arm: 4)")
    parser.add_argument("--cuda-arch", help="sm_XY for the cuda target (default: the GPU here, else sm_80)")


def target_options(args: argparse.Namespace) -> TargetOptions:
    return TargetOptions(mcpu=args.mcpu, num_cores=args.num_cores, cuda_arch=args.cuda_arch)
