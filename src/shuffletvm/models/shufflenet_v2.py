"""ShuffleNet V2 (Ma et al., ECCV 2018) with torchvision's module layout and state_dict keys, so that a
torchvision checkpoint (`shufflenet_v2_x1_0-5666bf0f80.pth` and friends) loads unchanged."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import ShuffleV2Unit

STAGE_REPEATS = [4, 8, 4]

# Output channels of [conv1, stage2, stage3, stage4, conv5] per width (Table 5 of the paper).
STAGE_OUT_CHANNELS: dict[str, list[int]] = {
    "0_5": [24, 48, 96, 192, 1024],
    "1_0": [24, 116, 232, 464, 1024],
    "1_5": [24, 176, 352, 704, 1024],
    "2_0": [24, 244, 488, 976, 2048],
}


class ShuffleNetV2(nn.Module):
    def __init__(self, stages_repeats: list[int], stages_out_channels: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        inp = stages_out_channels[0]
        self.conv1 = nn.Sequential(nn.Conv2d(3, inp, 3, 2, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name, repeats, out in zip(["stage2", "stage3", "stage4"], stages_repeats, stages_out_channels[1:4]):
            units = [ShuffleV2Unit(inp, out, 2)] + [ShuffleV2Unit(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            inp = out
        last = stages_out_channels[-1]
        self.conv5 = nn.Sequential(nn.Conv2d(inp, last, 1, 1, 0, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x).mean([2, 3])
        return self.fc(x)


def shufflenet_v2(width: str, num_classes: int = 1000) -> ShuffleNetV2:
    if width not in STAGE_OUT_CHANNELS:
        raise ValueError(f"no ShuffleNet V2 config for width={width}")
    return ShuffleNetV2(STAGE_REPEATS, STAGE_OUT_CHANNELS[width], num_classes)
