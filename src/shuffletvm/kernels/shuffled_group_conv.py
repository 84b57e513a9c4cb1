"""A grouped 1×1 convolution that reads its input through a channel shuffle (ShuffleNet V1's GConv after the
shuffle): the shuffle costs nothing, it is an index remap in the conv's input read.

    out[n, o, h, w] = sum_t  W[o, t] * x[n, perm(group(o) * Cg + t), h, w]
    perm(j) = (j % s) * (C / s) + j // s          (channel j of shuffle(x), `s` shuffle groups)

The compute is written like TOPI's grouped conv (block `group_conv2d_nchw`, reduction axes rc, ry, rx), so the
hand-written schedules and MetaSchedule treat it as the conv it is; it is left unscheduled here and carries
`op_pattern` OutEWiseFusable, so the bias / residual / ReLU after it fuse into the same kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx

OUT_EWISE_FUSABLE = 4  # relax OpPatternKind::kOutEWiseFusable


@dataclass(frozen=True)
class ShuffledGroupConvSpec:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    conv_groups: int
    shuffle_groups: int
    dtype: str = "float32"

    def input_channel(self, o: tirx.PrimExpr, rc: tirx.PrimExpr) -> tirx.PrimExpr:
        """The channel of x that output channel `o` reads at reduction step `rc`: its group's `rc`-th channel of
        shuffle(x), read through the shuffle."""
        per_group_in = i64(self.in_channels // self.conv_groups)
        j = tirx.floordiv(o, i64(self.out_channels // self.conv_groups)) * per_group_in + rc
        groups = i64(self.shuffle_groups)
        return tirx.floormod(j, groups) * i64(self.in_channels // self.shuffle_groups) + tirx.floordiv(j, groups)


def i64(value: int) -> tirx.IntImm:
    return tirx.IntImm("int64", value)  # as LegalizeOps writes shapes: FuseTIR merges buffers by type


def shuffled_group_conv(spec: ShuffledGroupConvSpec) -> tirx.PrimFunc:
    n_, c_, o_, h_, w_ = (i64(v) for v in (spec.batch, spec.in_channels, spec.out_channels, spec.height,
                                             spec.width))
    per_group_in = i64(spec.in_channels // spec.conv_groups)
    one, zero = i64(1), i64(0)
    data = te.placeholder((n_, c_, h_, w_), spec.dtype, name="data")
    weight = te.placeholder((o_, per_group_in, one, one), spec.dtype, name="weight")
    rc = te.reduce_axis((zero, per_group_in), name="rc")
    ry = te.reduce_axis((zero, one), name="ry")
    rx = te.reduce_axis((zero, one), name="rx")

    def compute(n, o, h, w):
        return te.sum(data[n, spec.input_channel(o, rc), h + ry, w + rx] * weight[o, rc, ry, rx],
                      axis=[rc, ry, rx])

    out = te.compute((n_, o_, h_, w_), compute, name="group_conv2d_nchw")
    func = te.create_prim_func([data, weight, out])
    # the conv's grouping, for passes that rewrite this kernel again (PackConv1x1Weights)
    return (func.without_attr("global_symbol").with_attr("op_pattern", OUT_EWISE_FUSABLE)
            .with_attr("shuffletvm.conv_groups", spec.conv_groups)
            .with_attr("shuffletvm.shuffle_groups", spec.shuffle_groups))
