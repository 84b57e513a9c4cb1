"""`--weights`: torchvision-layout state_dicts load; anything else is refused with one line."""

from __future__ import annotations

import os

import pytest
import torch

from shuffletvm.errors import ShuffleTVMError
from shuffletvm.models import create_model

from .conftest import assert_user_error, cli


class _RunsCode:
    """A pickle that would run a command when loaded without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_state_dict_roundtrip(tmp_path):
    source = create_model("shufflenet_v2_x0_5", seed=7)
    path = tmp_path / "v2.pth"
    torch.save(source.state_dict(), path)
    loaded = create_model("shufflenet_v2_x0_5", weights=path, seed=0)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))


def test_checkpoint_wrapped_in_state_dict_key_and_dataparallel_prefix(tmp_path):
    source = create_model("shufflenet_v1_g3_x0_5", seed=3)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = create_model("shufflenet_v1_g3_x0_5", weights=path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.0.weight": _RunsCode(str(marker))}, path)
    with pytest.raises(ShuffleTVMError, match="safely") as refused:
        create_model("shufflenet_v2_x0_5", weights=path)
    assert not marker.exists()
    assert "GLOBAL" in str(refused.value) and "Weights only load failed" not in str(refused.value)  # torch's reason


def test_weights_for_another_architecture(tmp_path):
    path = tmp_path / "v1.pth"
    torch.save(create_model("shufflenet_v1_g8_x0_5").state_dict(), path)
    with pytest.raises(ShuffleTVMError, match="is not for shufflenet_v2_x0_5"):
        create_model("shufflenet_v2_x0_5", weights=path)


def test_weights_for_another_width_name_the_shape_mismatch(tmp_path):
    path = tmp_path / "v2_1x.pth"
    torch.save(create_model("shufflenet_v2_x1_0").state_dict(), path)
    with pytest.raises(ShuffleTVMError, match="wrong shape"):
        create_model("shufflenet_v2_x0_5", weights=path)


def test_corrupt_weights_file(tmp_path):
    """Bytes torch.save never wrote, and a checkpoint cut short: torch's reason in one line, not its paragraphs on
    the `weights_only` default."""
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ShuffleTVMError, match=r"cannot load weights .* \(not a file torch.save wrote"):
        create_model("shufflenet_v2_x0_5", weights=path)
    saved = tmp_path / "saved.pth"
    torch.save(create_model("shufflenet_v2_x0_5").state_dict(), saved)
    path.write_bytes(saved.read_bytes()[:4096])
    with pytest.raises(ShuffleTVMError, match=r"cannot load weights .* \(PytorchStreamReader failed") as cut:
        create_model("shufflenet_v2_x0_5", weights=path)
    assert "\n" not in str(cut.value)


def test_cli_bad_weights_leave_existing_output_untouched(tmp_path):
    out = tmp_path / "model.so"
    out.write_bytes(b"previous build")
    path = tmp_path / "v1.pth"
    torch.save(create_model("shufflenet_v1_g8_x0_5").state_dict(), path)
    proc = cli("build", "shufflenet_v2_x0_5", "--weights", str(path), "-o", str(out), "-q")
    assert_user_error(proc, "is not for shufflenet_v2_x0_5")
    assert out.read_bytes() == b"previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.so", "v1.pth"]


def test_cli_missing_weights_file(tmp_path):
    proc = cli("build", "shufflenet_v2_x0_5", "--weights", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "m.so"), "-q")
    assert_user_error(proc, "does not exist")
