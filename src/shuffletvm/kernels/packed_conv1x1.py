"""A (grouped) 1×1 convolution with its weights pre-packed in output-channel blocks, for small feature maps.

    weight[o // B, t, o % B] = W[o, t]                      (OIHW [O, Cg, 1, 1] -> [O / B, Cg, B])
    out[n, o, h, w] = sum_t  weight[o // B, t, o % B] * x[n, perm(group(o) * Cg + t), h, w]

Activations stay NCHW; only the constant weights change layout, at compile time. A schedule can then
vectorize over B consecutive output channels with one contiguous load per input channel and broadcast each
input pixel — what a 7x7 plane needs, where 49 pixels do not fill 16-lane vectors (see
`passes/pack_conv1x1_weights.py` for the measurements and the policy). `perm` is a channel shuffle read
through (`shuffle_groups` > 1, from FoldShuffleIntoGroupedConv) or the identity (1).

Block `conv1x1_packed`, reduction axis rc; op_pattern OutEWiseFusable so bias / residual / ReLU fuse after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .shuffled_group_conv import OUT_EWISE_FUSABLE, ShuffledGroupConvSpec, i64

BLOCK_NAME = "conv1x1_packed"


@dataclass(frozen=True)
class PackedConv1x1Spec(ShuffledGroupConvSpec):
    block: int = 16  # output channels per weight block (divides out_channels / conv_groups)


def pack_weight(weight: np.ndarray, block: int) -> np.ndarray:
    """OIHW [O, Cg, 1, 1] -> [O / block, Cg, block]."""
    out_channels, per_group = weight.shape[:2]
    return np.ascontiguousarray(weight.reshape(out_channels // block, block, per_group).transpose(0, 2, 1))


def packed_conv1x1(spec: PackedConv1x1Spec) -> tirx.PrimFunc:
    n_, c_, o_, h_, w_ = (i64(v) for v in (spec.batch, spec.in_channels, spec.out_channels, spec.height,
                                             spec.width))
    per_group_in, block = i64(spec.in_channels // spec.conv_groups), i64(spec.block)
    data = te.placeholder((n_, c_, h_, w_), spec.dtype, name="data")
    weight = te.placeholder((i64(spec.out_channels // spec.block), per_group_in, block), spec.dtype, name="weight")
    rc = te.reduce_axis((i64(0), per_group_in), name="rc")

    def compute(n, o, h, w):
        return te.sum(data[n, spec.input_channel(o, rc), h, w] * weight[tirx.floordiv(o, block), rc, tirx.floormod(o, block)],
                      axis=[rc])

    out = te.compute((n_, o_, h_, w_), compute, name=BLOCK_NAME)
    func = te.create_prim_func([data, weight, out])
    return (func.without_attr("global_symbol").with_attr("op_pattern", OUT_EWISE_FUSABLE)
            .with_attr("shuffletvm.packed_block", spec.block).with_attr("shuffletvm.conv_groups", spec.conv_groups)
            .with_attr("shuffletvm.shuffle_groups", spec.shuffle_groups))
