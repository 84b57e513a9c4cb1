"""TVM RPC for tuning on a remote device: tracker checks, and an emulated aarch64 device for machines without ARM
hardware (TVM's RPC server running under qemu-user, registered with a tracker on 127.0.0.1).

The RPC server re-executes its own interpreter for its worker process; inside qemu without binfmt that
interpreter is an aarch64 binary the host cannot exec, so the server is told its interpreter is a wrapper script
that runs qemu. It loads libtvm_runtime_extra.so (the runner's random fill lives there) since under emulation
only the TVM runtime library is present.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..emulation import Aarch64Emulator
from ..errors import ShuffleTVMError

logger = logging.getLogger(__name__)

DEFAULT_KEY = "aarch64-emulated"


@dataclass(frozen=True)
class TrackerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "TrackerAddress":
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ShuffleTVMError(f"--rpc-tracker must be HOST:PORT, got '{text}'")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def tracker_summary(tracker: TrackerAddress, timeout: float = 10) -> dict:
    """The tracker's queue status; a clear error when nothing answers."""
    from tvm import rpc

    try:
        with socket.create_connection((tracker.host, tracker.port), timeout=timeout):
            pass
        return rpc.connect_tracker(tracker.host, tracker.port).summary()
    except (OSError, RuntimeError) as err:
        raise ShuffleTVMError(
            f"no RPC tracker answers at {tracker} ({getattr(err, 'strerror', None) or err}); start one with "
            "`python -m tvm.exec.rpc_tracker` or `shuffletvm device`"
        ) from None


def check_device(tracker: TrackerAddress, key: str) -> int:
    """Number of free devices registered under `key`; an error when there is none."""
    queue = tracker_summary(tracker).get("queue_info", {})
    info = queue.get(key)
    if not info or int(info.get("free", 0)) < 1:
        known = ", ".join(f"{k} ({v.get('free', 0)} free)" for k, v in queue.items()) or "none"
        raise ShuffleTVMError(f"no free device with key '{key}' at tracker {tracker}; registered keys: {known}")
    return int(info["free"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmulatedDevice:
    """A tracker and one aarch64 RPC server under qemu, on 127.0.0.1. Use as a context manager, or `start()`
    and `stop()`."""

    tracker_port: int = 0
    key: str = DEFAULT_KEY
    emulator: Aarch64Emulator | None = None
    workdir: Path | None = None
    _procs: list[subprocess.Popen] | None = None

    @property
    def tracker(self) -> TrackerAddress:
        return TrackerAddress("127.0.0.1", self.tracker_port)

    def start(self, timeout: float = 120) -> "EmulatedDevice":
        emulator = self.emulator or Aarch64Emulator.require()
        self.tracker_port = self.tracker_port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="shuffletvm-rpc-"))
        wrapper = self.workdir / "python-aarch64"
        wrapper.write_text(f'#!/bin/sh\nexec qemu-aarch64 "{emulator.python}" "$@"\n')
        wrapper.chmod(0o755)
        extra = emulator.site / "tvm" / "lib" / "libtvm_runtime_extra.so"
        server_port = free_port()
        boot = (
            "import sys, runpy\n"
            f"sys.executable = {str(wrapper)!r}\n"
            f"sys.argv = ['rpc_server', '--tracker', '127.0.0.1:{self.tracker_port}', '--key', {self.key!r},\n"
            f"            '--host', '127.0.0.1', '--port', '{server_port}', '--port-end', '{server_port + 100}',\n"
            f"            '--load-library', {str(extra)!r}]\n"
            "runpy.run_module('tvm.exec.rpc_server', run_name='__main__')\n"
        )
        tracker_log = open(self.workdir / "tracker.log", "w")
        server_log = open(self.workdir / "server.log", "w")
        tracker = subprocess.Popen(
            [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(self.tracker_port),
             "--port-end", str(self.tracker_port + 1)],
            stdout=tracker_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._procs = [tracker]
        self._wait(lambda: self._answers(), timeout, "the RPC tracker did not start")
        server = subprocess.Popen(
            ["qemu-aarch64", str(emulator.python), "-c", boot], env=emulator.env([]),
            stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._procs.append(server)
        self._wait(lambda: self._registered(), timeout, f"the emulated device did not register (see {self.workdir})")
        logger.info("emulated aarch64 device '%s' registered at tracker %s", self.key, self.tracker)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.tracker_port), timeout=1):
                return True
        except OSError:
            return False

    def _registered(self) -> bool:
        try:
            return check_device(self.tracker, self.key) > 0
        except ShuffleTVMError:
            return False

    def _wait(self, ready, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self._procs or []):
                break
            time.sleep(0.5)
        self.stop()
        raise ShuffleTVMError(message)

    def stop(self) -> None:
        """Signal each process group, not just its leader: the tracker and the server each run a worker
        process that would otherwise outlive them."""
        for proc in reversed(self._procs or []):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
                if sig == signal.SIGTERM:
                    time.sleep(0.5)  # let the group's other members act on SIGTERM before the SIGKILL sweep
        self._procs = []

    def __enter__(self) -> "EmulatedDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
