"""Shared fixtures. ARM tests run under qemu-user; CI installs what they need (scripts/setup.sh), so there a
missing emulator is a failure, not a skip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m shuffletvm ARGS` as a user would, quietly (-q keeps INFO logs off stderr)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "shuffletvm", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """One line on stderr naming the problem, a non-zero exit, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert re.match(r"shuffletvm( [a-z]+)?: error: ", lines[0]), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def image(batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="session")
def emulator():
    from shuffletvm.emulation import Aarch64Emulator

    found = Aarch64Emulator.find()
    if found is None:
        message = "aarch64 emulator missing: run scripts/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def v2_small_module(tmp_path_factory) -> Path:
    """shufflenet_v2_x0_5 built for this host once per session."""
    out = tmp_path_factory.mktemp("modules") / "v2_x0_5.so"
    proc = cli("build", "shufflenet_v2_x0_5", "--target", "x86", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    return out


def packs_plane(target, size: int) -> bool:
    """Whether the layout phase packs the 1x1 convs of a size x size plane for `target` (its own rule,
    `weight_block`; x86 AVX2 up to 14x14, AVX-512 7x7); where it does, KeepIdentityInPlace leaves the stage's
    copies alone."""
    from shuffletvm.passes.pack_conv1x1_weights import weight_block

    return weight_block(target, 64, size * size) is not None  # 64 channels: whole blocks at every width


def v2_stages_in_place(target) -> int:
    """V2 stages KeepIdentityInPlace keeps in one buffer on an x86 `target`: those of its 28x28 and 14x14 stages
    whose 1x1 convs are not packed (AVX-512: both; AVX2: the 28x28 one)."""
    return sum(not packs_plane(target, size) for size in (28, 14))
