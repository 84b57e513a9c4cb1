"""FuseGroupedConvPair: on CPUs, the grouped 1x1 conv that ends a ShuffleNet V1 unit (+ bias + residual + ReLU)
and the grouped 1x1 conv that starts the next unit (+ bias + ReLU) as one hand-written kernel
(kernels/grouped_conv_pair.py), computed a chunk of pixels at a time, so the second conv reads the sum back a
chunk at a time, just written (V1 g3: 150 KB), instead of the whole 0.75 MB activation from wherever the model's
other kernels left it.

Rewrites, in a dataflow block,

    out  = relu(add(add(K(y, W1), b1), residual))        # the residual either side; K a 1x1 conv2d or
    next = relu(add(conv2d(out, W2), b2))                # FoldShuffleIntoGroupedConv's shuffled_group_conv

(W1, W2 constant [C, C/g, 1, 1] and [Cn, C/gn, 1, 1], 1x1 stride 1 unpadded NCHW, b1, b2 constants as
FoldBatchNorm or the ONNX importer leave them) into

    pair = call_tir(grouped_conv_pair, [y, W1, b1, residual, W2, b2], [out's type, next's type])
    out  = pair[0]; next = pair[1]

at the binding of `out`, which keeps its other uses (the next unit's residual, a stride-2 unit's average pool);
`K`, the adds and the second conv must have no other use. Fires where the plane is whole vectors of pixels
(x86: V1's 28x28 stage, NEON: also 14x14) and the convs are still conv2d or FoldShuffleIntoGroupedConv's kernel:
V1 g3 and g8 1.0x 3 pairs each with AVX-512 (the stride-1 units after the first, and the last one with the next
stage's stride-2 unit), V1 g1 2 (its stride-2 units' first conv is FuseExpandDepthwise's). With AVX2 the layout
phase packs V1 g3's and g8's 1.0x 28x28 grouped convs first (PackConv1x1Weights), which leaves them no pair; the
0.5x ones and V1 g1 keep theirs (3, 3 and 2). V2 has no residual add and no such pair. Runs last in the `layout`
phase, after FuseExpandDepthwise, before operator fusion: the kernel is opaque and already scheduled, and its tasks
are the row bands PartitionRowsAcrossCores gives each core (attribute `shuffletvm.split_rows`), so the depthwise
conv after it still follows those rows.

Numerically: each output is its conv's sum in the reduction's order, the bias added after it, as the separate
kernels compute it: the models' outputs were bit-identical with and without the pass (V1 g1, g3, g8).

Measured on the 2-core Intel VM (tuning_logs/x86-rocketlake-2c), each model built from the tuned log with and
without the pass (`BuildConfig(fuse_grouped_conv_pair=...)`), `benchmarks/ab_modules.py A.so B.so --rounds 30
--runs 15` in both orders, paired ratios, outputs bit-identical: V1 g3 1.0x 0.917x / 0.922x, V1 g8 1.0x 0.935x /
0.916x, V1 g1 1.0x 0.964x / 0.944x end to end at batch 1 (session 36's kernel: the second conv reads the first's
output back, 10 cache lines a channel a chunk; session 35's, which copied each chunk into a buffer, ran 0.93x,
0.94-0.96x and 0.96-0.97x, and 1.014-1.027x the time of today's in the same runs). With session 35's kernel V1 g3's
three pairs replaced kernels that took 614 us of its 3.0 ms in sequence with 518-562 us (the replay of
`benchmarks/sequence_profile.py`, all three builds interleaved).

Counters: `FuseGroupedConvPair` (pairs fused), `.bytes` (the first conv's output read back by the second: no
longer read from memory or L2).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import GlobalVarPattern, TuplePattern, is_const, is_op, wildcard

from ..kernels.grouped_conv_pair import GroupedConvPairSpec, grouped_conv_pair
from ._shuffle_pattern import (
    conv_bias,
    float32_out,
    graph_functions,
    shape_of,
    shuffled_conv_grouping,
    unit_stride_nchw,
    use_counts,
)

FLOAT32 = "float32"


@tvm.ir.transform.module_pass(opt_level=0, name="FuseGroupedConvPair")
class FuseGroupedConvPair:
    """`counters["FuseGroupedConvPair"]` counts fused pairs, `.bytes` the first conv's output read back."""

    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()
        # the first conv, ending a unit: relu(add(add(K(y, W1), b1), residual))
        self.y, self.w1, self.kernel = wildcard(), is_const(), GlobalVarPattern()
        self.conv1 = is_op("relax.nn.conv2d")(self.y, self.w1)
        self.shuffled = is_op("relax.call_tir")(self.kernel, TuplePattern([self.y, self.w1]))
        self.b1_value, b1 = conv_bias()
        self.biased = is_op("relax.add")(self.conv1 | self.shuffled, b1)
        self.residual = wildcard()
        self.summed = is_op("relax.add")(self.biased, self.residual) | is_op("relax.add")(self.residual, self.biased)
        self.out = is_op("relax.nn.relu")(self.summed)
        # the second, starting the next unit: relu(add(conv2d(out, W2), b2))
        self.w2 = is_const()
        self.conv2 = is_op("relax.nn.conv2d")(wildcard(), self.w2)
        self.b2_value, b2 = conv_bias()
        self.added = is_op("relax.add")(self.conv2, b2)
        self.next = is_op("relax.nn.relu")(self.added)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if "cpu" not in set(self.target.keys):
            return mod
        from ..schedules._common import vector_lanes
        from .partition_rows_across_cores import cores_of

        self.mod, self.lanes, self.cores = mod, vector_lanes(self.target), cores_of(self.target)
        builder = relax.BlockBuilder(mod)
        self.kernels: dict[GroupedConvPairSpec, tvm.ir.GlobalVar] = {}
        changed = False
        for gvar, func in graph_functions(mod):
            plan = self._plan(func, builder)
            if plan:
                builder.update_func(gvar, _Rewriter(builder, plan).visit_expr(func))
                changed = True
        if not changed:
            return mod
        return relax.transform.DeadCodeElimination()(builder.get())  # the replaced convs and adds

    def _plan(self, func: relax.Function, builder: relax.BlockBuilder) -> dict[relax.Var, Any]:
        """Per binding to replace: ("pair", kernel, its arguments, the second conv's output var) at the first
        conv's output, ("drop",) at the second conv's output (bound with the first's)."""
        var2val = relax.analysis.get_var2val(func)
        bound = {value: var for var, value in var2val.items()}
        uses = use_counts(func)
        plan: dict[relax.Var, Any] = {}
        for block in func.body.blocks:
            if not isinstance(block, relax.DataflowBlock):
                continue
            for binding in block.bindings:
                if not isinstance(binding, relax.VarBinding):
                    continue
                found = self._pair(binding.var, binding.value, var2val, bound, uses)
                if found is None or found[0] in plan:
                    continue
                out, spec, args = found
                if spec not in self.kernels:
                    self.kernels[spec] = builder.add_func(grouped_conv_pair(spec, self.lanes, self.cores),
                                                          "grouped_conv_pair")
                plan[out] = ("pair", self.kernels[spec], args, binding.var)
                plan[binding.var] = ("drop",)
                self.counters[self.__class__.__name__] += 1
                self.counters[f"{self.__class__.__name__}.bytes"] += 4 * int(np.prod(shape_of(out)))
        return plan

    def _pair(self, var: relax.Var, value: relax.Expr, var2val: dict, bound: dict, uses: Counter) -> tuple | None:
        """(the first conv's output var, the kernel's spec, its arguments) where `var = value` is the second
        conv's ReLU of a fusable pair, else None. `var2val`: the function's bindings, `bound` the other way."""
        second = self.next.extract_matched_expr(value, var2val)
        if second is None:
            return None
        out = second[self.conv2].args[0]
        if not isinstance(out, relax.Var) or out not in var2val:
            return None
        first = self.out.extract_matched_expr(var2val[out], var2val)
        if first is None:
            return None
        conv1 = first[self.conv1] if self.conv1 in first else first[self.shuffled]
        inner = [conv1, first[self.biased], first[self.summed], second[self.conv2], second[self.added]]
        if not all(k in bound and uses[bound[k]] == 1 for k in inner):  # each a binding of its own, used once
            return None
        grouping = self._first_grouping(conv1, first)
        shape, next_shape = shape_of(out), shape_of(var)
        w1, w2 = first[self.w1].value.numpy(), second[self.w2].value.numpy()
        b1, b2 = first[self.b1_value].value.numpy(), second[self.b2_value].value.numpy()
        y_shape = shape_of(first[self.y])
        if (
            grouping is None or shape is None or next_shape is None or y_shape is None or len(shape) != 4
            or shape_of(first[self.residual]) != shape or not _conv1x1(second[self.conv2])
            or any(str(v.ty.dtype) != FLOAT32 for v in (out, var, first[self.y]))
        ):
            return None
        batch, channels, height, width = shape
        groups, shuffle_groups = grouping
        next_groups = int(second[self.conv2].attrs.groups)
        in_channels, next_channels = y_shape[1], next_shape[1]
        if (
            y_shape != [batch, in_channels, height, width] or next_shape != [batch, next_channels, height, width]
            or in_channels % groups or channels % next_groups
            or w1.shape != (channels, in_channels // groups, 1, 1) or b1.size != channels
            or w2.shape != (next_channels, channels // next_groups, 1, 1) or b2.size != next_channels
        ):
            return None
        spec = GroupedConvPairSpec(batch, in_channels, channels, height, width, groups, shuffle_groups,
                                   next_channels, next_groups)
        if spec.supported(self.lanes) is not None:
            return None
        # matched through the bindings, y and the residual are the values bound: the kernel reads their vars
        y, residual = (bound.get(first[p], first[p]) for p in (self.y, self.residual))
        args = [y, relax.const(w1.reshape(channels, -1)), relax.const(b1.reshape(-1)), residual,
                relax.const(w2.reshape(next_channels, -1)), relax.const(b2.reshape(-1))]
        return out, spec, args

    def _first_grouping(self, conv1: relax.Call, first: dict) -> tuple[int, int] | None:
        """(groups, shuffle groups) of the first conv: a 1x1 conv2d, or a shuffled_group_conv kernel not yet
        rewritten by another pass (PackConv1x1Weights' packed ones are left)."""
        if self.conv1 in first:
            return (int(conv1.attrs.groups), 1) if _conv1x1(conv1) else None
        return shuffled_conv_grouping(self.mod, first[self.kernel])


def _conv1x1(conv: relax.Call) -> bool:
    """A conv2d the kernel computes: 1x1 weights, stride 1, unpadded, NCHW/OIHW, float32 out."""
    weight = shape_of(conv.args[1])
    return unit_stride_nchw(conv.attrs) and float32_out(conv.attrs) and weight is not None and weight[2:] == [1, 1]


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, builder: relax.BlockBuilder, plan: dict[relax.Var, Any]) -> None:
        super().__init__(builder.get())
        self.plan = plan

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        action = self.plan.get(binding.var)
        if action is None:
            super().visit_var_binding_(binding)
            return
        if action[0] == "drop":  # bound with the first conv's output
            return
        _, kernel, args, next_var = action
        outputs = [relax.TensorType(shape_of(v), FLOAT32) for v in (binding.var, next_var)]
        pair = self.builder_.emit(relax.call_tir(kernel, [self.visit_expr(a) for a in args], outputs), "pair")
        for index, var in enumerate((binding.var, next_var)):
            emit = self.builder_.emit if isinstance(var, relax.DataflowVar) else self.builder_.emit_output
            self.set_var_remap(var, emit(relax.TupleGetItem(pair, index), var.name))
