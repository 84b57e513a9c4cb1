"""The building blocks of ShuffleNet V1 and V2, as reusable modules.

`channel_shuffle` is written exactly as the graph should contain it — reshape, transpose, reshape — because the
compiler passes in `shuffletvm.passes` look for that chain.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet V1 §3.1: view channels as (groups, C/groups), transpose, flatten back."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height, width)
    x = x.transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class ChannelShuffle(nn.Module):
    """`channel_shuffle` as a module, for building graphs by hand (and for tests)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)


def _conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
    ]


class ShuffleV1Unit(nn.Module):
    """ShuffleNet V1 unit (Fig. 2b stride 1, Fig. 2c stride 2).

    GConv1x1 -> BN -> ReLU -> channel shuffle -> DWConv3x3 -> BN -> GConv1x1 -> BN, then
    stride 1: ReLU(x + main), stride 2: concat(AvgPool3x3s2(x), ReLU(main)).
    `first_group=False` makes the first 1x1 conv ungrouped (the first unit of stage 2: its input has too few
    channels). Layout follows megvii-model/ShuffleNet-Series (`branch_main_1`, `branch_main_2`, `branch_proj`).
    """

    def __init__(self, inp: int, out: int, *, groups: int, stride: int, first_group: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride == 1 and inp != out:
            raise ValueError(f"a stride-1 unit needs inp == out, got {inp} and {out}")
        main_out = out - inp if stride == 2 else out
        mid = out // 4
        first_groups = groups if first_group else 1
        checked = {"bottleneck": mid, "main-branch output": main_out}
        if first_groups > 1:
            checked["input"] = inp
        for name, value in checked.items():
            if value % groups != 0:
                raise ValueError(f"{name} channels ({value}) must be divisible by groups ({groups})")
        self.stride = stride
        self.groups = groups
        self.branch_main_1 = nn.Sequential(
            *_conv_bn(inp, mid, 1, groups=first_groups),
            nn.ReLU(inplace=True),
            *_conv_bn(mid, mid, 3, stride=stride, groups=mid),
        )
        self.branch_main_2 = nn.Sequential(*_conv_bn(mid, main_out, 1, groups=groups))
        self.branch_proj = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.branch_main_2(out)
        if self.stride == 1:
            return F.relu(x + out)
        return torch.cat((self.branch_proj(x), F.relu(out)), 1)


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit (Fig. 3c basic, Fig. 3d downsampling), torchvision's `InvertedResidual` layout.

    stride 1: split channels in half, transform the second half, concat, shuffle (groups=2).
    stride 2: both branches see the whole input and halve the resolution, concat, shuffle.
    """

    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if out % 2 != 0:
            raise ValueError(f"output channels must be even, got {out}")
        branch = out // 2
        if stride == 1 and inp != branch << 1:
            raise ValueError(f"a stride-1 unit needs inp == out, got {inp} and {out}")
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                *_conv_bn(inp, inp, 3, stride=stride, groups=inp),
                *_conv_bn(inp, branch, 1),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            *_conv_bn(inp if stride > 1 else branch, branch, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(branch, branch, 3, stride=stride, groups=branch),
            *_conv_bn(branch, branch, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)
