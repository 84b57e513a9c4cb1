"""aarch64 modules run for real under qemu-user, with the aarch64 TVM runtime, and agree with x86 and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from shuffletvm.build import BuildConfig, build
from shuffletvm.parity import ParityConfig, check_parity, run_module
from shuffletvm.runtime import load

from .conftest import image

pytestmark = pytest.mark.arm


@pytest.mark.parametrize("name", ["shufflenet_v1_g3_x1_0", "shufflenet_v2_x1_0"])
def test_arm_parity_under_emulation(emulator, name):
    """Also the hand-written NEON schedules' numerical check on aarch64: the counters show they were used."""
    report = check_parity(ParityConfig(model=name, target="arm", seeds=2))
    assert "qemu" in report.note
    assert report.passed, [r.__dict__ for r in report.rows]
    assert all(r.top1_agree == 1.0 for r in report.rows)
    for rule in ("depthwise_conv3x3", "grouped_conv1x1", "matmul"):
        assert report.pass_counts.get(f"ApplyHandSchedules.{rule}", 0) >= 1, report.pass_counts


def test_arm_output_matches_x86_build(emulator, tmp_path):
    name = "shufflenet_v2_x0_5"
    arm = build(BuildConfig(output=tmp_path / "arm.so", model=name, target="arm"))
    x86 = build(BuildConfig(output=tmp_path / "x86.so", model=name, target="x86"))
    assert arm.target.arch == "aarch64"
    inputs = [image(seed=s) for s in range(2)]
    arm_out = run_module(arm.path, "aarch64", inputs, tmp_path)
    x86_out = [load(x86.path).run(x) for x in inputs]
    for a, b in zip(arm_out, x86_out):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_run_cli_under_emulation(emulator, tmp_path):
    """`python -m shuffletvm run` itself, executed by the aarch64 interpreter."""
    out = build(BuildConfig(output=tmp_path / "arm.so", model="shufflenet_v1_g8_x0_5", target="arm")).path
    np.save(tmp_path / "x.npy", image())
    proc = emulator.run_python(["-m", "shuffletvm", "run", str(out), "--input", str(tmp_path / "x.npy"),
                                "--output", str(tmp_path / "y.npy"), "--top", "1"])
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "y.npy").shape == (1, 1000)
    check = emulator.run_python(["-c", "import platform; print(platform.machine())"], with_package=False)
    assert check.stdout.strip() == "aarch64"
