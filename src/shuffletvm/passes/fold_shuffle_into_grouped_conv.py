"""FoldShuffleIntoGroupedConv: a channel shuffle whose only consumer is a 1×1 (grouped) conv becomes an index
remap in that conv's input read — no data moves for the shuffle at all.

ShuffleNet V1 (Zhang et al. 2018, §3.1) shuffles channels between the depthwise conv and the second grouped 1×1
conv of every unit. A shuffle cannot be folded into a grouped conv's *weights* (the permuted conv reads every
input group, so it is no longer grouped), and moving it up through the depthwise conv and BN (per-channel ops)
only lands it on the first grouped conv's output, with the same problem. What does work is reading through it:
the conv kernel `kernels.shuffled_group_conv` loads channel `perm(j)` where the plain conv loads `j`. Vendor
runtimes execute the shuffle as a transpose kernel; here it disappears.

Rewrites `conv2d(shuffle(x), W)` with constant W, 1×1 kernel, stride 1, no padding, NCHW / OIHW, into
`call_tir(shuffled_group_conv, [x, W])`. Exact: the same products summed in the same order.

Leaves unchanged: a shuffle with another consumer (it would still be computed), any other conv (3×3,
strided, padded, other layouts), and chains that are not a channel shuffle. Run after FoldBatchNorm (so the
conv is bare) and before FuseConcatShuffleSplit (which takes the shuffles left, V2's).
"""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call

from ..kernels.shuffled_group_conv import ShuffledGroupConvSpec, shuffled_group_conv
from ._shuffle_pattern import (Bindings, channel_shuffle, graph_functions, shape_of, shuffle_patterns,
                               unit_stride_nchw)


@tvm.ir.transform.module_pass(opt_level=0, name="FoldShuffleIntoGroupedConv")
class FoldShuffleIntoGroupedConv:
    """`counters["FoldShuffleIntoGroupedConv"]` counts folded shuffles, `.bytes` the copy traffic avoided."""

    def __init__(self, counters: Counter | None = None) -> None:
        self.counters = counters if counters is not None else Counter()
        self.first, self.transpose, self.shuffle = shuffle_patterns()
        self.weight = is_const()
        self.conv = is_op("relax.nn.conv2d")(self.shuffle, self.weight)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[ShuffledGroupConvSpec, tvm.ir.GlobalVar] = {}
        for gvar, func in graph_functions(mod):
            self.bindings = Bindings(func)
            self.builder.update_func(gvar, rewrite_call(self.conv, self._rewrite, func))
        return self.builder.get()

    def _rewrite(self, expr: relax.Call, matches: dict) -> relax.Expr:
        first, transpose, shuffle = matches[self.first], matches[self.transpose], matches[self.shuffle]
        chain = channel_shuffle(first, transpose, shuffle)
        if chain is None or not all(self.bindings.single_use(v) for v in (first, transpose, shuffle)):
            return expr
        source, shuffle_groups, (batch, channels, height, width) = chain
        attrs = expr.attrs
        weight = shape_of(matches[self.weight])
        if (
            not unit_stride_nchw(attrs) or weight is None or weight[2:] != [1, 1]
            or (attrs.out_dtype not in ("", None) and str(attrs.out_dtype) != str(shuffle.ty.dtype))
        ):
            return expr
        spec = ShuffledGroupConvSpec(batch, channels, weight[0], height, width, int(attrs.groups), shuffle_groups,
                                     str(shuffle.ty.dtype))
        if spec not in self.kernels:
            self.kernels[spec] = self.builder.add_func(shuffled_group_conv(spec), "shuffled_group_conv")
        self.counters[self.__class__.__name__] += 1
        self.counters[f"{self.__class__.__name__}.bytes"] += 2 * batch * channels * height * width * 4
        return relax.call_tir(self.kernels[spec], [source, matches[self.weight]],
                              relax.TensorType((batch, weight[0], height, width), spec.dtype))
