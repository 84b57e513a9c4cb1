"""A (grouped) 1×1 convolution with its weights pre-packed in output-channel blocks, for small feature maps.

    weight[o // B, t, o % B] = W[o, t]                      (OIHW [O, Cg, 1, 1] -> [O / B, Cg, B])
    out[n, o, h, w] = sum_t  weight[o // B, t, o % B] * x[n, perm(group(o) * Cg + t), h, w]

Activations stay NCHW; only the constant weights change layout, at compile time. A schedule can then
vectorize over B consecutive output channels with one contiguous load per input channel and broadcast each
input pixel — what a 7x7 plane needs, where 49 pixels do not fill 16-lane vectors (see
`passes/pack_conv1x1_weights.py` for the measurements and the policy). `perm` is a channel shuffle read
through (`shuffle_groups` > 1, from FoldShuffleIntoGroupedConv) or the identity (1).

Ungrouped, the output channels need not be a whole number of blocks: the weights are then zero-padded to one
(232 -> 240 channels with B = 16), the kernel accumulates all padded channels into an intermediate and a second
block (`conv1x1_packed_crop`) writes the real ones — so a schedule keeps full-width vectors where half-width ones
divided the channels (measured in `passes/pack_conv1x1_weights.py`) — or padded by `blocks` to more blocks, so that
a register tile of several blocks divides them (AVX2: 232 channels as 30 blocks of 8, not 29). Whole blocks get
the one-block kernel they always had (its workload, and so its tuning records, unchanged).

A plane the schedule's register tile of pixels does not divide (AVX2's 4 x 3 tile on 7x7: 49 = 16 x 3 + 1) is
computed in whole tiles (`pixels`): the accumulation is flat over the padded plane (51 pixels), the pixels past the
plane read its last one (`min(p, HW - 1)`: computed, never written), and the crop block writes the real ones. So
no tile is predicated inside the reduction, which kept most of the tile's accumulators in memory.

Block `conv1x1_packed`, reduction axis rc; op_pattern OutEWiseFusable so bias / residual / ReLU fuse after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .shuffled_group_conv import OUT_EWISE_FUSABLE, ShuffledGroupConvSpec, i64

BLOCK_NAME = "conv1x1_packed"
CROP_NAME = "conv1x1_packed_crop"


@dataclass(frozen=True)
class PackedConv1x1Spec(ShuffledGroupConvSpec):
    block: int = 16  # output channels per weight block (divides out_channels / conv_groups, or conv_groups is 1)
    blocks: int = 0  # weight blocks, ungrouped only: more than the whole blocks of out_channels pads further (0: as many)
    pixels: int = 0  # the plane computed in whole tiles of this many pixels, the last clamped (0: the plane as it is)

    def __post_init__(self) -> None:
        if self.conv_groups != 1 and (self.out_channels // self.conv_groups) % self.block:
            raise ValueError(f"blocks of {self.block} must divide the {self.out_channels // self.conv_groups} "
                             "output channels of a group")
        if self.blocks and (self.conv_groups != 1 or self.blocks * self.block < self.out_channels):
            raise ValueError(f"{self.blocks} blocks of {self.block} cannot hold {self.out_channels} channels "
                             f"in {self.conv_groups} groups")

    @property
    def padded_plane(self) -> int:
        """The pixels the accumulation holds: the plane rounded up to whole tiles of `pixels`."""
        return _padded(self.height * self.width, self.pixels or 1)

    @property
    def padded_out_channels(self) -> int:
        """The output channels rounded up to whole blocks (or `blocks` of them): what the weights and the
        accumulation hold."""
        return _padded(self.out_channels, self.block, self.blocks)


def _padded(channels: int, block: int, blocks: int = 0) -> int:
    return max(-(-channels // block), blocks) * block


def pack_weight(weight: np.ndarray, block: int, blocks: int = 0) -> np.ndarray:
    """OIHW [O, Cg, 1, 1] -> [ceil(O / block) (or `blocks`), Cg, block], the channels past O zero."""
    out_channels, per_group = weight.shape[:2]
    padded = _padded(out_channels, block, blocks)
    rows = np.zeros((padded, per_group), weight.dtype)
    rows[:out_channels] = weight.reshape(out_channels, per_group)
    return np.ascontiguousarray(rows.reshape(padded // block, block, per_group).transpose(0, 2, 1))


def packed_conv1x1(spec: PackedConv1x1Spec) -> tirx.PrimFunc:
    n_, c_, o_, h_, w_ = (i64(v) for v in (spec.batch, spec.in_channels, spec.out_channels, spec.height,
                                             spec.width))
    per_group_in, block = i64(spec.in_channels // spec.conv_groups), i64(spec.block)
    data = te.placeholder((n_, c_, h_, w_), spec.dtype, name="data")
    padded = i64(spec.padded_out_channels)
    weight = te.placeholder((i64(spec.padded_out_channels // spec.block), per_group_in, block), spec.dtype,
                            name="weight")
    rc = te.reduce_axis((i64(0), per_group_in), name="rc")
    whole = spec.padded_out_channels == spec.out_channels
    plane = spec.height * spec.width

    def compute(n, o, h, w):
        group_of = o if whole else i64(0)  # padded: ungrouped (the spec checks it), a padded channel is in group 0
        w_o = weight[tirx.floordiv(o, block), rc, tirx.floormod(o, block)]
        return te.sum(data[n, spec.input_channel(group_of, rc), h, w] * w_o, axis=[rc])

    if spec.padded_plane != plane:  # pixels past the plane read its last one: computed, never written
        def flat(n, o, p):
            last = tirx.min(p, i64(plane - 1))
            return compute(n, o, tirx.floordiv(last, w_), tirx.floormod(last, w_))

        acc = te.compute((n_, padded, i64(spec.padded_plane)), flat, name=BLOCK_NAME)
        out = te.compute((n_, o_, h_, w_), lambda n, o, h, w: acc[n, o, h * w_ + w], name=CROP_NAME)
    elif whole:
        out = te.compute((n_, o_, h_, w_), compute, name=BLOCK_NAME)
    else:
        acc = te.compute((n_, padded, h_, w_), compute, name=BLOCK_NAME)
        out = te.compute((n_, o_, h_, w_), lambda n, o, h, w: acc[n, o, h, w], name=CROP_NAME)
    func = te.create_prim_func([data, weight, out])
    return (func.without_attr("global_symbol").with_attr("op_pattern", OUT_EWISE_FUSABLE)
            .with_attr("shuffletvm.packed_block", spec.block).with_attr("shuffletvm.conv_groups", spec.conv_groups)
            .with_attr("shuffletvm.shuffle_groups", spec.shuffle_groups))
