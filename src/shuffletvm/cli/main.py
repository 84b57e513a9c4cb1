"""`shuffletvm` command line: parse, validate, call the Python API. A subcommand's module (and with it torch or
the TVM compiler) is imported only when that subcommand runs, so `shuffletvm run` works with the TVM runtime
alone."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings
from typing import NoReturn, Sequence

from .. import __version__
from ..errors import ShuffleTVMError

COMMANDS: dict[str, str] = {
    "models": "list the ShuffleNet variants with their MACs and parameter counts",
    "build": "compile a model into a self-contained .so for x86, arm or cuda",
    "run": "run a built .so on an input .npy with the TVM runtime alone",
    "parity": "compare a compiled model with PyTorch on seeded inputs",
    "inspect": "operator and kernel counts and bytes moved by data movement after each pipeline phase",
    "tune": "auto-tune a model's kernels with MetaSchedule; records go to tuning_logs/<target>/",
    "choose": "time each tuned kernel in the running model against its hand-written schedule; keep the faster",
    "device": "start an emulated aarch64 device (RPC tracker + server under qemu) for ARM tuning",
    "compare": "measure tuned and untuned TVM against PyTorch, ONNX Runtime and OpenVINO side by side",
}


def _setup_logging(verbosity: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity < 2:  # torch.export and torch.onnx are chatty about their own deprecations
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("shuffletvm").setLevel(level)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error here (argparse prints the usage block
    first); `--help` still prints it all."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _top_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shuffletvm",
        description="ShuffleNet V1/V2 compiled with TVM (Relax) into self-contained modules.",
        epilog="Run `shuffletvm COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"shuffletvm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbose", help="warnings only")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] not in COMMANDS:
        top.parse_args(argv)  # prints help or the usage error, and exits
        return 2
    command = importlib.import_module(f"shuffletvm.cli.{argv[0]}")
    parser = _Parser(prog=f"shuffletvm {argv[0]}", description=COMMANDS[argv[0]])
    command.add_arguments(parser)
    common_options(parser)
    args = parser.parse_args(argv[1:])
    _setup_logging(args.verbose)
    try:
        return int(command.execute(args) or 0)
    except ShuffleTVMError as err:
        print(f"shuffletvm {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shuffletvm {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not a user error: still one line unless -vv asks for the traceback
        if args.verbose >= 2:
            traceback.print_exc()
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(f"shuffletvm {argv[0]}: internal error: {type(err).__name__}: {first} (-vv shows the traceback; "
              "please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
