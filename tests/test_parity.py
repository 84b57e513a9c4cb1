"""All 24 variants through torch.export on x86 compute what PyTorch computes, and the parity CLI's verdict."""

from __future__ import annotations

import json

import pytest
from torch import nn

from shuffletvm.models import MODELS
from shuffletvm.models.registry import create_model
from shuffletvm.parity import ParityConfig, check_parity
from shuffletvm.passes.pack_conv1x1_weights import weight_block
from shuffletvm.passes.partition_rows_across_cores import cores_of
from shuffletvm.targets import resolve_target

from .conftest import assert_user_error, cli


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_parity_torch_export_x86(name):
    """Also the numerical check of the graph passes on every variant: the counters prove they fired."""
    report = check_parity(ParityConfig(model=name, target="x86", seeds=2))
    assert report.passed, [r.__dict__ for r in report.rows]
    assert all(r.top1_agree == 1.0 and r.top5_agree == 1.0 for r in report.rows)
    model = create_model(name)
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # One shuffle per unit (4 + 8 + 4). V1: each feeds a grouped 1x1 conv that reads through it. V2: 15 become
    # concat+shuffle+split kernels; the last feeds conv5 alone, which reads through it.
    folded, fused = {"shufflenet_v1_g1": (0, 0), "shufflenet_v1": (16, 0), "shufflenet_v2": (1, 15)}[
        "shufflenet_v1_g1" if name.startswith("shufflenet_v1_g1_") else name[:13]]
    assert report.pass_counts.get("FoldBatchNorm") == batch_norms
    assert report.pass_counts.get("FoldShuffleIntoGroupedConv", 0) == folded
    assert report.pass_counts.get("FuseConcatShuffleSplit", 0) == fused
    assert report.pass_counts.get("PackConv1x1Weights", 0) == _packable_convs(model), report.pass_counts
    assert report.pass_counts.get("KeepIdentityInPlace", 0) == _in_place_units(model), report.pass_counts
    # V2's dense 1x1 convs of the 28x28 and 14x14 stages split their parallel loops by rows on 2+ cores.
    if name.startswith("shufflenet_v2") and cores_of(resolve_target("x86").tvm_target()) > 1:
        assert report.pass_counts.get("PartitionRowsAcrossCores", 0) >= 1, report.pass_counts


def _in_place_units(model: nn.Module) -> int:
    """V2: the stride-1 units (3 + 7 + 3) keep their identity half in place, except in a stage whose 1x1 convs
    the layout policy packs (on AVX-512 the 7x7 stage). V1 has no identity half."""
    if not hasattr(model, "stage2"):
        return 0
    target = resolve_target("x86").tvm_target()
    units = 0
    for k, name in enumerate(("stage2", "stage3", "stage4")):
        stage = getattr(model, name)
        half = stage[1].branch2[0].out_channels
        plane = (28 >> k) ** 2
        units += (len(stage) - 1) * (weight_block(target, half, plane) is None)
    return units


def _packable_convs(model: nn.Module) -> int:
    """1x1 stride-1 convs whose output plane and channels the layout policy packs, found by running the model."""
    import torch

    target = resolve_target("x86").tvm_target()
    found = []

    def hook(conv, _inputs, output):
        if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0):
            plane = output.shape[2] * output.shape[3]
            found.append(weight_block(target, conv.out_channels // conv.groups, plane, conv.groups,
                                      conv.in_channels // conv.groups) is not None)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    for h in handles:
        h.remove()
    return sum(found)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "shufflenet_v1_g3_x0_5"])
def test_parity_batch_4_kernels_split_by_images(name):
    """At batch 4 on a CPU whose cores divide it, PartitionRowsAcrossCores gives each core whole images in every
    kernel it rewrites (grouped convs, pooling, the classifier too), and the module still computes what PyTorch
    computes. With the shipped log's batch-1 records replayed, 25 (V2 0.5x) and 28 (V1 g3 0.5x) kernels are split
    by images on the 2-core Zen 5; at least 20 whatever schedules a log holds."""
    cores = cores_of(resolve_target("x86").tvm_target())
    if cores < 2 or 4 % cores:
        pytest.skip(f"{cores} cores do not share 4 images evenly")
    report = check_parity(ParityConfig(model=name, batch=4, seeds=1))
    assert report.passed, [r.__dict__ for r in report.rows]
    counts = report.pass_counts
    assert counts["PartitionRowsAcrossCores.images"] == counts["PartitionRowsAcrossCores"] >= 20, counts


def test_parity_cli_prints_table_and_json(tmp_path):
    proc = cli("parity", "shufflenet_v1_g8_x0_5", "--seeds", "2", "--json", str(tmp_path / "p.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "PASS" in proc.stdout and proc.stdout.count("| 100% | 100% |") == 2
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["passed"] and len(data["rows"]) == 2 and data["rows"][0]["rel_err"] < 1e-4


def test_parity_cli_fails_past_tolerance():
    """A tolerance no fp32 compiler can meet: the verdict is FAIL and the exit code 1."""
    proc = cli("parity", "shufflenet_v2_x0_5", "--seeds", "1", "--rtol", "1e-12", "-q")
    assert proc.returncode == 1 and "FAIL" in proc.stdout


def test_parity_unknown_model():
    assert_user_error(cli("parity", "resnet50", "-q"), "unknown model 'resnet50'")


def test_parity_bad_seeds():
    assert_user_error(cli("parity", "shufflenet_v2_x0_5", "--seeds", "0", "-q"), "--seeds")
