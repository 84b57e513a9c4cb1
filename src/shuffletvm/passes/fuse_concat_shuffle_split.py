"""FuseConcatShuffleSplit: concat -> channel shuffle -> channel split as one data-movement kernel.

ShuffleNet V2 (Ma et al. 2018, §2 guideline G4 and §3) notes that Concat, Channel Shuffle and Channel Split
are element-wise data movement and proposes merging them into one operation. Both importers emit the shuffle as
`reshape(N, C, H, W -> N, g, C/g, H, W)`, `permute_dims([0, 2, 1, 3, 4])`, `reshape(-> N, C, H, W)`; V2
concatenates two branches before it and splits channels after it (torch.export: `split`; ONNX after the
importer's repair: one `strided_slice` per half). This pass replaces, longest match first,

    split(shuffle(concat(a, b, ...)))          -> call_tir(kernel, [a, b, ...])  (a tuple, one tensor per part)
    strided_slice(shuffle(concat(...)), C)     -> call_tir(kernel, [...])        (one kernel per slice)
    shuffle(concat(a, b, ...)) / shuffle(x)    -> call_tir(kernel, [...])        (V2 stage ends, V1)

with the hand-written kernel of `shuffletvm.kernels.channel_shuffle` (one read and one write per element).
Numerically exact: values are copied, never computed.

Near misses stay as they are: a reshape/permute chain that is not a channel shuffle (another permutation, a
grouping that does not divide the channels), a concat or split on another axis, strided slices with a stride
or on another axis, and any intermediate (concat, reshape, transposed or shuffled tensor) that has a consumer
outside the chain — the split is then not fused, so no tensor is computed twice.

Needs: static shapes, NCHW; run after FoldBatchNorm and before LegalizeOps (it reads the target from the
enclosing `with target`).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, rewrite_call, wildcard

from ..kernels.channel_shuffle import ShuffleSpec, concat_shuffle_split
from ._shuffle_pattern import Bindings, channel_shuffle, graph_functions
from ._shuffle_pattern import shape_of as _shape


@tvm.ir.transform.module_pass(opt_level=0, name="FuseConcatShuffleSplit")
class FuseConcatShuffleSplit:
    """Fuse channel shuffles with the concat before and the split after them; `counters` counts rewrites
    (`FuseConcatShuffleSplit`) and bytes the fused kernels move (`FuseConcatShuffleSplit.bytes`)."""

    def __init__(self, counters: Counter | None = None) -> None:
        self.counters = counters if counters is not None else Counter()
        self.source = wildcard()
        self.concat = is_op("relax.concat")(wildcard())
        self.first = is_op("relax.reshape")(self.concat | self.source, wildcard())
        self.transpose = is_op("relax.permute_dims")(self.first)
        self.shuffle = is_op("relax.reshape")(self.transpose, wildcard())
        self.split = is_op("relax.split")(self.shuffle)
        self.slice = is_op("relax.strided_slice")(self.shuffle, wildcard(), wildcard(), wildcard(), wildcard())
        self.slice_no_strides = is_op("relax.strided_slice")(self.shuffle, wildcard(), wildcard(), wildcard())

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        self.target = tvm.target.Target.current(allow_none=False)
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[ShuffleSpec, tvm.ir.GlobalVar] = {}
        for gvar, func in graph_functions(mod):
            for pattern in (self.split, self.slice, self.slice_no_strides, self.shuffle):
                self.bindings = Bindings(func)
                self.slice_uses = Counter(  # per variable: how many channel slices read it
                    value.args[0] for value in self.bindings.var_of if self._is_channel_slice(value)
                )
                func = rewrite_call(pattern, self._rewrite, func)
            self.builder.update_func(gvar, func)
        return self.builder.get()

    def _is_channel_slice(self, value: Any) -> bool:
        return (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                and value.op.name == "relax.strided_slice" and isinstance(value.args[0], relax.Var)
                and self._channel_ranges(value, None) is not None)

    def _rewrite(self, expr: relax.Expr, matches: dict) -> relax.Expr:
        first, transpose, shuffle = matches[self.first], matches[self.transpose], matches[self.shuffle]
        chain = channel_shuffle(first, transpose, shuffle)
        if chain is None:
            return expr
        source, groups, (batch, channels, height, width) = chain
        inputs = [source]
        concat = matches.get(self.concat)
        if concat is not None and source.same_as(self.bindings.var_of.get(concat)):
            if int(concat.attrs.axis) not in (1, -3) or not isinstance(concat.args[0], relax.Tuple):
                return expr
            parts = [_shape(t) for t in concat.args[0].fields]
            if any(s is None or len(s) != 4 or [s[0], s[2], s[3]] != [batch, height, width] for s in parts):
                return expr
            if self.bindings.single_use(concat):
                inputs = list(concat.args[0].fields)
        # Everything between the inputs and the shuffled tensor must feed nothing else.
        if not (self.bindings.single_use(first) and self.bindings.single_use(transpose)):
            return expr
        if expr.same_as(shuffle):
            ranges = [(0, channels)]
        else:
            # A split must be the shuffled tensor's only consumer; slices may be several, all channel slices.
            var = self.bindings.var_of.get(shuffle)
            if var is None or self.bindings.uses[var] != (1 if expr.op.name == "relax.split" else self.slice_uses[var]):
                return expr
            ranges = self._channel_ranges(expr, channels)
            if ranges is None:
                return expr
        spec = ShuffleSpec(batch, height, width, tuple(_shape(x)[1] for x in inputs), groups, tuple(ranges),
                           str(shuffle.ty.dtype))
        call = relax.call_tir(self._kernel(spec), inputs, [
            relax.TensorType((batch, stop - start, height, width), spec.dtype) for start, stop in ranges
        ])
        self.counters[self.__class__.__name__] += 1
        self.counters[f"{self.__class__.__name__}.bytes"] += spec.bytes_moved()
        if isinstance(expr.ty, relax.TupleType):
            return call
        return relax.TupleGetItem(call, 0) if isinstance(call.ty, relax.TupleType) else call

    @staticmethod
    def _channel_ranges(expr: relax.Call, channels: int | None) -> list[tuple[int, int]] | None:
        if expr.op.name == "relax.split":
            if int(expr.attrs.axis) not in (1, -3):
                return None
            sections = expr.attrs.indices_or_sections
            if isinstance(sections, (int, tvm.tirx.IntImm)):
                count = int(sections)
                if channels % count:
                    return None
                cuts = [channels // count * k for k in range(1, count)]
            else:
                cuts = [int(c) for c in sections]
            bounds = [0, *cuts, channels]
            return list(itertools.pairwise(bounds))
        # strided_slice(x, axes, begin, end[, strides]) with constant tuples
        try:
            axes, begin, end = ([int(v.value) for v in arg.fields] for arg in expr.args[1:4])
            strides = [int(v.value) for v in expr.args[4].fields] if len(expr.args) > 4 else [1]
        except (AttributeError, TypeError):
            return None
        if axes not in ([1], [-3]) or strides != [1]:
            return None
        channels = channels if channels is not None else _shape(expr.args[0])[1]
        start, stop = max(begin[0], 0), min(end[0], channels)
        return [(start, stop)] if start < stop else None

    def _kernel(self, spec: ShuffleSpec) -> tvm.ir.GlobalVar:
        if spec not in self.kernels:
            name = "concat_shuffle_split" if len(spec.in_channels) > 1 else "channel_shuffle"
            self.kernels[spec] = self.builder.add_func(concat_shuffle_split(spec, self.target), name)
        return self.kernels[spec]
