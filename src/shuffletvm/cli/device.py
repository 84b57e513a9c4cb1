"""`shuffletvm device [--port P] [--key KEY]`: an emulated aarch64 device for trying the ARM tuning flow without
ARM hardware — a TVM RPC tracker on 127.0.0.1 and TVM's RPC server under qemu-user, registered with it."""

from __future__ import annotations

import argparse
import signal
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..tuning.rpc import DEFAULT_KEY

    parser.add_argument("--port", type=int, default=9190, help="tracker port on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--key", default=DEFAULT_KEY, help="device key (default: %(default)s)")


def execute(args: argparse.Namespace) -> int:
    from ..errors import ShuffleTVMError
    from ..tuning.rpc import EmulatedDevice, free_port

    if not 0 < args.port < 65536:
        raise ShuffleTVMError(f"--port must be 1-65535, got {args.port}")
    # SIGTERM (kill, timeout, a service manager) must stop the tracker and server too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    device = EmulatedDevice(tracker_port=args.port or free_port(), key=args.key).start()
    print(f"emulated aarch64 device ready: --rpc-tracker {device.tracker} --rpc-key {device.key}")
    print("timings on it prove the path, not ARM speed; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        device.stop()
