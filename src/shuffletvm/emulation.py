"""An aarch64 machine without ARM hardware: qemu-user running a Debian arm64 Python with aarch64 TVM wheels.

`scripts/setup_aarch64_sysroot.sh` builds the userland; this module finds it and runs Python in it. Timings
taken under emulation prove that the path works, never how fast a real ARM core is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ShuffleTVMError

DEFAULT_ROOT = Path(os.environ.get("SHUFFLETVM_AARCH64_ROOT", Path.home() / ".cache" / "shuffletvm" / "aarch64"))
QEMU = "qemu-aarch64"
EMULATED_TIMING_NOTE = "emulated aarch64 (qemu-user): timings prove the path, not ARM speed"


@dataclass(frozen=True)
class Aarch64Emulator:
    root: Path

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / "python3.11"

    @classmethod
    def find(cls, root: Path | None = None) -> "Aarch64Emulator | None":
        emulator = cls(Path(root or DEFAULT_ROOT))
        ready = (emulator.root / ".complete-v1").exists() and emulator.python.exists()
        return emulator if ready and shutil.which(QEMU) else None

    @classmethod
    def require(cls, root: Path | None = None) -> "Aarch64Emulator":
        emulator = cls.find(root)
        if emulator is None:
            raise ShuffleTVMError(
                f"no aarch64 emulator at {root or DEFAULT_ROOT}: run scripts/setup.sh (installs qemu-user and the "
                "aarch64 sysroot) or set SHUFFLETVM_AARCH64_ROOT"
            )
        return emulator

    def env(self, pythonpath: list[Path]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(
            QEMU_LD_PREFIX=str(self.sysroot),
            PYTHONHOME=str(self.sysroot / "usr"),
            PYTHONPATH=os.pathsep.join(str(p) for p in [*pythonpath, self.site]),
            PYTHONNOUSERSITE="1",
            TVM_USE_RUNTIME_LIB="1",  # the aarch64 site ships the TVM runtime only
        )
        return env

    def run_python(self, args: list[str], timeout: float = 600, with_package: bool = True) -> subprocess.CompletedProcess:
        """Run `python3.11 ARGS` under qemu; with `with_package`, this package is importable there."""
        with tempfile.TemporaryDirectory(prefix="shuffletvm-a64-") as tmp:
            paths: list[Path] = []
            if with_package:
                # Only the pure-Python package goes on the path, never the host's site-packages beside it.
                (Path(tmp) / "shuffletvm").symlink_to(Path(__file__).resolve().parent)
                paths.append(Path(tmp))
            cmd = [QEMU, str(self.python), *args]
            return subprocess.run(cmd, env=self.env(paths), capture_output=True, text=True, timeout=timeout)
