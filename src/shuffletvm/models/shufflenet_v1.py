"""ShuffleNet V1 (Zhang et al., CVPR 2018), per Table 1 of the paper and megvii-model/ShuffleNet-Series.

Conv3x3/2 -> MaxPool3x3/2 -> stages 2, 3, 4 (4, 8, 4 units; the first of each has stride 2) -> global average
pool -> FC. The first 1x1 conv of stage 2 is not grouped; there is no softmax inside the model.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import ShuffleV1Unit

STAGE_REPEATS = [4, 8, 4]

# Output channels of [conv1, stage2, stage3, stage4] per (groups, width).
# 1.0x is Table 1 of the paper; g3 and g8 at every width are megvii's reference configs. For g1/g2/g4 the stage
# widths are Table 1 scaled by the width and rounded to the nearest multiple of 4*groups (so that the 1/4
# bottleneck divides by the group count); conv1 follows megvii: 12 (16 for g8) at 0.5x, 24, 24, 48 above.
STAGE_OUT_CHANNELS: dict[tuple[int, str], list[int]] = {
    (1, "0_5"): [12, 72, 144, 288],
    (1, "1_0"): [24, 144, 288, 576],
    (1, "1_5"): [24, 216, 432, 864],
    (1, "2_0"): [48, 288, 576, 1152],
    (2, "0_5"): [12, 104, 208, 416],
    (2, "1_0"): [24, 200, 400, 800],
    (2, "1_5"): [24, 304, 608, 1216],
    (2, "2_0"): [48, 400, 800, 1600],
    (3, "0_5"): [12, 120, 240, 480],
    (3, "1_0"): [24, 240, 480, 960],
    (3, "1_5"): [24, 360, 720, 1440],
    (3, "2_0"): [48, 480, 960, 1920],
    (4, "0_5"): [12, 144, 288, 576],
    (4, "1_0"): [24, 272, 544, 1088],
    (4, "1_5"): [24, 416, 832, 1664],
    (4, "2_0"): [48, 544, 1088, 2176],
    (8, "0_5"): [16, 192, 384, 768],
    (8, "1_0"): [24, 384, 768, 1536],
    (8, "1_5"): [24, 576, 1152, 2304],
    (8, "2_0"): [48, 768, 1536, 3072],
}


class ShuffleNetV1(nn.Module):
    def __init__(self, stage_out_channels: list[int], groups: int, num_classes: int = 1000) -> None:
        super().__init__()
        if len(stage_out_channels) != 4:
            raise ValueError(f"expected 4 channel counts (conv1 + 3 stages), got {stage_out_channels}")
        if groups not in (1, 2, 3, 4, 8):
            raise ValueError(f"groups must be one of 1, 2, 3, 4, 8, got {groups}")
        self.groups = groups
        conv1_out = stage_out_channels[0]
        self.first_conv = nn.Sequential(
            nn.Conv2d(3, conv1_out, 3, 2, 1, bias=False),
            nn.BatchNorm2d(conv1_out),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        units: list[nn.Module] = []
        inp = conv1_out
        for stage, (repeats, out) in enumerate(zip(STAGE_REPEATS, stage_out_channels[1:])):
            for i in range(repeats):
                stride = 2 if i == 0 else 1
                units.append(
                    ShuffleV1Unit(inp, out, groups=groups, stride=stride, first_group=not (stage == 0 and i == 0))
                )
                inp = out
        self.features = nn.Sequential(*units)
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(inp, num_classes, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.first_conv(x))
        x = self.globalpool(self.features(x))
        return self.classifier(x.flatten(1))


def shufflenet_v1(groups: int, width: str, num_classes: int = 1000) -> ShuffleNetV1:
    key = (groups, width)
    if key not in STAGE_OUT_CHANNELS:
        raise ValueError(f"no ShuffleNet V1 config for groups={groups}, width={width}")
    return ShuffleNetV1(STAGE_OUT_CHANNELS[key], groups, num_classes)
