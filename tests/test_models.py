"""The model zoo against the papers: channel counts, MACs, parameters, and torchvision's layout."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from shuffletvm.errors import ShuffleTVMError
from shuffletvm.models import MODELS, ShuffleV1Unit, ShuffleV2Unit, channel_shuffle, create_model, model_cost
from shuffletvm.models.shufflenet_v1 import STAGE_OUT_CHANNELS as V1_CHANNELS

from .conftest import cli

V1_NAMES = [n for n in MODELS if n.startswith("shufflenet_v1")]
V2_NAMES = [n for n in MODELS if n.startswith("shufflenet_v2")]

# torchvision's published parameter counts (exact) and the V2 paper's Table 5 MFLOPs (= MACs).
V2_PARAMS = {"0_5": 1_366_792, "1_0": 2_278_604, "1_5": 3_503_624, "2_0": 7_393_996}
V2_PAPER_MMACS = {"0_5": 41, "1_0": 146, "1_5": 299, "2_0": 591}
# megvii-model/ShuffleNet-Series' reported FLOPs (= MACs) for its g3 and g8 configs.
V1_MEGVII_MMACS = {
    (3, "0_5"): 38, (3, "1_0"): 138, (3, "1_5"): 292, (3, "2_0"): 524,
    (8, "0_5"): 40, (8, "1_0"): 138, (8, "1_5"): 290, (8, "2_0"): 522,
}
# V1 paper, Table 2: ShuffleNet 1x for each group count.
V1_PAPER_1X_MMACS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}


def test_zoo_has_24_variants():
    assert len(V1_NAMES) == 20 and len(V2_NAMES) == 4
    for g in (1, 2, 3, 4, 8):
        for w in ("0_5", "1_0", "1_5", "2_0"):
            assert f"shufflenet_v1_g{g}_x{w}" in MODELS


@pytest.mark.parametrize("name", V1_NAMES)
def test_v1_every_channel_count_divides_by_its_groups(name):
    spec = MODELS[name]
    model = spec.build()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    grouped = [c for c in convs if 1 < c.groups < c.in_channels]
    if spec.groups > 1:
        assert grouped, "a grouped V1 must have grouped 1x1 convs"
    for conv in convs:
        assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0, conv
    for unit in (m for m in model.modules() if isinstance(m, ShuffleV1Unit)):
        mid = unit.branch_main_1[0].out_channels
        assert mid % spec.groups == 0
        assert unit.branch_main_2[0].out_channels % spec.groups == 0
    assert len([m for m in model.modules() if isinstance(m, ShuffleV1Unit)]) == 16  # stages of 4, 8, 4


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_v1_stage2_first_pointwise_conv_is_not_grouped(groups):
    model = MODELS[f"shufflenet_v1_g{groups}_x1_0"].build()
    first_unit = model.features[0]
    assert first_unit.branch_main_1[0].groups == 1
    assert model.features[1].branch_main_1[0].groups == groups
    assert isinstance(first_unit.branch_proj, nn.AvgPool2d)


def test_v1_table1_channels():
    assert [V1_CHANNELS[(g, "1_0")][1] for g in (1, 2, 3, 4, 8)] == [144, 200, 240, 272, 384]


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_v1_1x_macs_match_paper_table2(groups):
    macs = model_cost(MODELS[f"shufflenet_v1_g{groups}_x1_0"].build()).macs / 1e6
    assert macs == pytest.approx(V1_PAPER_1X_MMACS[groups], rel=0.02)


@pytest.mark.parametrize("key", list(V1_MEGVII_MMACS))
def test_v1_macs_match_megvii_reference(key):
    groups, width = key
    macs = model_cost(MODELS[f"shufflenet_v1_g{groups}_x{width}"].build()).macs / 1e6
    assert macs == pytest.approx(V1_MEGVII_MMACS[key], rel=0.015)


@pytest.mark.parametrize("width", list(V2_PARAMS))
def test_v2_params_and_macs_match_torchvision_and_paper(width):
    cost = model_cost(MODELS[f"shufflenet_v2_x{width}"].build())
    assert cost.params == V2_PARAMS[width]
    assert cost.macs / 1e6 == pytest.approx(V2_PAPER_MMACS[width], rel=0.02)


def test_v2_state_dict_uses_torchvision_keys():
    keys = set(MODELS["shufflenet_v2_x1_0"].build().state_dict())
    for key in ("conv1.0.weight", "conv1.1.running_var", "stage2.0.branch1.0.weight", "stage2.0.branch1.2.weight",
                "stage2.0.branch2.3.weight", "stage2.3.branch2.5.weight", "stage3.7.branch2.6.bias",
                "stage4.0.branch1.3.num_batches_tracked", "conv5.0.weight", "fc.weight", "fc.bias"):
        assert key in keys, key
    pattern = re.compile(r"^(conv1\.[01]|conv5\.[01]|fc|stage[234]\.\d+\.branch[12]\.\d)\.\w+$")
    assert all(pattern.match(k) for k in keys)
    assert not any(k.startswith("stage2.1.branch1") for k in keys)  # stride-1 units have an empty branch1


def test_channel_shuffle_is_the_papers_permutation():
    x = torch.arange(12.0).reshape(1, 12, 1, 1)
    out = channel_shuffle(x, 3).flatten().tolist()
    # channels [g0: 0..3][g1: 4..7][g2: 8..11] interleave: 0, 4, 8, 1, 5, 9, ...
    assert out == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]


def test_units_check_their_arguments():
    with pytest.raises(ValueError, match="stride"):
        ShuffleV2Unit(24, 48, 3)
    with pytest.raises(ValueError, match="divisible"):
        ShuffleV1Unit(240, 240, groups=8, stride=1)
    with pytest.raises(ValueError, match="inp == out"):
        ShuffleV1Unit(240, 480, groups=3, stride=1)


def test_unknown_model_is_a_user_error():
    with pytest.raises(ShuffleTVMError, match="shuffletvm models"):
        create_model("shufflenet_v3")


def test_random_weights_have_realistic_batchnorm():
    model = create_model("shufflenet_v2_x0_5", seed=1)
    bn = model.stage3[2].branch2[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 224, 224))
    assert torch.isfinite(logits).all() and logits.abs().max() < 1e4
    again = create_model("shufflenet_v2_x0_5", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_models_cli_lists_all_variants_with_cost():
    proc = cli("models")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| shufflenet_")]
    assert len(rows) == 24
    v2 = next(r for r in rows if r.startswith("| shufflenet_v2_x1_0 "))
    assert "144.9" in v2 and "2.279" in v2
    assert len([r for r in cli("models", "--family", "v2").stdout.splitlines() if r.startswith("| shufflenet_")]) == 4
