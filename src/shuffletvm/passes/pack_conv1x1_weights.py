"""PackConv1x1Weights: the layout phase. A 1×1 conv on a small plane gets its weights pre-packed in blocks of
output channels ([O, Cg, 1, 1] -> [O/B, Cg, B], at compile time); activations stay NCHW.

Why: in NCHW a 1×1 conv vectorizes over pixels. A 7×7 plane has 49 of them, which fill 16-lane (AVX-512)
vectors badly, and conv5 of V2 (464 -> 1024) is the single most expensive kernel of the model. With the
weights packed, the kernel (`kernels/packed_conv1x1.py`, scheduled by `schedules/packed_conv1x1.py`)
vectorizes over B consecutive output channels instead: one contiguous weight load per input channel, one
broadcast per pixel. What the vendor runtimes do with NCHW16c and pre-packed weights, restricted to the
weights, so no layout conversion or shuffle rewriting is needed anywhere else in the graph.

Which layout wins, per target (`benchmarks/layout.py` -> `benchmarks/LAYOUT.md`: hand schedules, one kernel at
a time, this 2-core Zen 5, AVX2 as AVX2 code on it), NCHW us / packed us:

| 1x1 conv | AVX-512 | AVX2 |
|---|---:|---:|
| V2 1.0x conv5 464 -> 1024 @7x7 (reads the last shuffle) | 319 / 101 (B16) | 328 / 274 (B8) |
| V2 1.0x stage 4, 232 -> 232 @7x7 | 36 / 27 (B8) | 37 / 30 (B8) |
| V1 g3 1.0x stage 4, 240 -> 960 g3 @7x7 (reads the shuffle) | 54 / 20 (B16) | 56 / 48 (B8) |
| V1 g3 1.0x stage 3, 480 -> 120 g3 @14x14 | 19 / 41 (B8) | 61 / 42 (B8) |
| V1 g3 1.0x stage 3, 120 -> 480 g3 @14x14 (reads the shuffle) | 26 / 27 (B16) | 70 / 61 (B8) |

So the policy is per vector width (`MAX_PLANE`): with AVX-512, pack 7x7 planes only (14x14 has 12 full
vectors of pixels and NCHW wins there); with AVX2, pack 7x7 and 14x14 planes. B = the vector width or half
of it, at least 8, dividing the output channels per group — except that an ungrouped conv half a register
divides gets whole registers, its weights zero-padded to whole blocks (V2 1.0x's 232 -> 240 channels, 3% more
work): on the Intel class (`benchmarks/LAYOUT-x86-rocketlake-2c.md`) 232 -> 232 @7x7 takes 37 us in blocks
of 8 and 26 us padded to blocks of 16 (NCHW 44). Which convs are packed does not change, only how wide.
Grouped convs keep the half register (ShuffleNet's grouped 7x7 convs all divide by 16 at width 1.0).
With AVX2, whose register tile is several blocks (`schedules/packed_conv1x1.py`), an ungrouped conv whose whole
blocks none of its tile sizes divides gets one more (`weight_blocks`): V2 1.0x's 232 -> 232 as 30 blocks of 8, in
3 x 4 tiles, not 29 in 1 x 7 — on the Zen 3 class, unfused, 89.6 -> 74.5 us @7x7 and 238 -> 216 us @14x14 with
3% more work (interleaved rounds, medians).
With AVX2 a grouped conv whose reduction is short and whose blocks the short-reduction tile divides
(`schedules/packed_conv1x1.py` `short_tile`: 2 blocks x 4 pixels, at most 80 input channels a group) is packed on
planes up to 28x28 too (`SHORT_MAX_PLANE`): V1's 28x28 expand convs, g3 60 -> 240 (20 deep) and g8 96 -> 384 (12
deep), whose NCHW kernels divide by the groups at every step of their short reduction to read through the shuffle.
On the Zen 3 class, one kernel at a time, hand schedules (session 27): g3 94 us packed against 160-164 NCHW (tuned
record, hand), g8 115 against 142-188; the same kernels' other 28x28 convs, packed with the ordinary tile, gained
nothing (g8 384 -> 192 157 vs 161, g3 240 -> 120 164 vs 150-154) and stay NCHW. End to end, built with the shipped
log (these kernels then from their hand schedule), interleaved, outputs identical: V1 g3 0.894x, V1 g8 0.949x.
With AVX2 the register tile's 3 or 4 pixels do not divide a 7x7 plane, and the last tile is predicated. Where the
conv reads through a shuffle of 3 groups (V1 g3), LLVM leaves that predicate inside the reduction loop, and 8 of the
tile's 12 accumulators go through memory at every step (a load, the FMA, a store, in the assembly); with a shuffle
of 2 or 8 groups (a shift and a mask) or none, it versions the loop, 12 register accumulators for the whole tiles
and a loop of its own for the last one. So a conv reading through a shuffle whose group count is not a power of two
is computed over its plane padded to whole tiles (`tile_pixels`: 51 pixels, the last two reading pixel 48;
kernels/packed_conv1x1.py `pixels`). Measured on the Zen 3 class with every AVX2 7x7 packed conv padded, hand
schedules, one kernel at a time, 15 interleaved rounds, outputs identical (`benchmarks/padded_plane.py --every
--log-dir COPY`, a copy of the log before), padded against predicated hand / predicated as the log scheduled it: in
two runs, V1 g3 1.0x 240 -> 960 g3 0.65-0.80x / 0.71-0.72x (66.7 us against 102.5 / 94.1 in the second), 240 -> 480
g3 0.57-0.60x / 0.80-0.84x; every other conv 0.95-1.10x (V1 g3 960 -> 240 1.02-1.06x, V1 g8 0.95-1.10x, V2
0.98-1.10x: the padded pixels' 4-10% more work where the predicate cost nothing), so they stay as they were. End to
end, built with the log otherwise as it was, interleaved (`benchmarks/ab_modules.py --rounds 20`), outputs
identical: V1 g3 1.0x 0.97x; V1 g8 and V2 build the same kernels as before.
Not applied on aarch64 (speed cannot be measured here: emulated) nor on CUDA (threads over pixels coalesce;
no measurement says otherwise).

Rewrites, on constant weights: `conv2d(x, W)` 1×1 / stride 1 / no padding / NCHW-OIHW, and the
`shuffled_group_conv` kernels FoldShuffleIntoGroupedConv made (their grouping read from the PrimFunc's
attributes), into `call_tir(packed_conv1x1, [x, pack(W)])`. Exact: the same products summed in the same order
(a padded channel's sum is computed and never written).
Leaves unchanged: larger planes (but for those short grouped convs), channel counts no block divides, other
convs, GPU and ARM targets.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import GlobalVarPattern, TuplePattern, is_const, is_op, rewrite_call, wildcard

from ..kernels.packed_conv1x1 import PackedConv1x1Spec, pack_weight, packed_conv1x1
from ._shuffle_pattern import float32_out, graph_functions, shape_of, shuffled_conv_grouping, unit_stride_nchw

MAX_PLANE = {16: 64, 8: 196}  # vector lanes -> largest plane (pixels) packed: measured, table above
SHORT_MAX_PLANE = {8: 784}  # AVX2: a grouped conv the short-reduction tile takes is packed up to this plane
MIN_BLOCK = 8  # blocks of 16 and 8 channels were measured; narrower ones were not
MIN_BLOCKS_PADDED = 8  # AVX2: an extra block for the register tile adds at most 1/8 of the work
PAD_TO_TILES = True  # a plane the register tile's pixels do not divide may be computed in whole tiles (`tile_pixels`)
PAD_EVEN_SHUFFLES = False  # ... also where the conv reads no shuffle or one of 2^k groups (measured; not taken)


def weight_block(target: Any, out_per_group: int, plane: int, groups: int = 1, in_per_group: int = 0) -> int | None:
    """Output channels per weight block for a 1x1 conv on `target`, or None: keep NCHW weights. A block may
    leave a remainder only in an ungrouped conv (the weights are then zero-padded to whole blocks).
    `in_per_group`: the conv's input channels per group (0: not known), which make a grouped conv's reduction
    short or not."""
    from ..schedules._common import vector_lanes
    from ..schedules.packed_conv1x1 import short_tile

    keys = set(target.keys)
    if "cpu" not in keys or "arm_cpu" in keys:
        return None
    lanes = vector_lanes(target)
    if plane > MAX_PLANE.get(lanes, 0):
        short = (in_per_group > 0 and plane <= SHORT_MAX_PLANE.get(lanes, 0) and out_per_group % lanes == 0
                 and short_tile(lanes, in_per_group, out_per_group // lanes, plane, groups) is not None)
        return lanes if short else None
    block = next((b for b in (lanes, lanes // 2) if b >= MIN_BLOCK and out_per_group % b == 0), None)
    return lanes if block is not None and groups == 1 else block  # ungrouped: padded to whole registers


def weight_blocks(target: Any, out_channels: int, block: int, groups: int = 1) -> int:
    """The blocks of a conv's packed weights, padded past its whole blocks or not (0: not). With 16 vector
    registers (AVX2) the schedule's register tile is several blocks of one group (`schedules/packed_conv1x1.py`
    AVX2_TILE_BLOCKS); an ungrouped conv whose blocks no tile divides, at least `MIN_BLOCKS_PADDED` of them, gets one
    more block of zero channels: V2 1.0x's 232 channels as 30 blocks of 8 (3 x 4 tiles), not 29 (1 x 7)."""
    from ..schedules._common import vector_lanes
    from ..schedules.packed_conv1x1 import AVX2_TILE_BLOCKS

    whole = -(-out_channels // block)
    if groups != 1 or vector_lanes(target) >= 16 or whole < MIN_BLOCKS_PADDED:
        return 0
    return 0 if any(whole % v == 0 for v in AVX2_TILE_BLOCKS) else whole + 1


def tile_pixels(target: Any, spec: PackedConv1x1Spec) -> int:
    """The pixels of the schedule's register tile (`schedules/packed_conv1x1.py` `register_tile`) where they do not
    divide the plane and the conv reads through a shuffle of a group count not a power of two, so that the kernel
    pads the plane to whole tiles (AVX2's 4 x 3 tile on 7x7: 51 pixels); else 0. Why only there: see the module."""
    from ..schedules._common import vector_lanes
    from ..schedules.packed_conv1x1 import register_tile
    from .partition_rows_across_cores import cores_of

    groups = spec.shuffle_groups
    if not PAD_TO_TILES or groups & (groups - 1) == 0 and not PAD_EVEN_SHUFFLES:  # none (1), or a shift and a mask
        return 0
    plane, conv_groups = spec.height * spec.width, spec.conv_groups
    pixels = register_tile(vector_lanes(target), spec.block, spec.in_channels // conv_groups,
                           spec.padded_out_channels // spec.block, conv_groups, plane, spec.batch, cores_of(target))[1]
    return pixels if plane % pixels else 0


@tvm.ir.transform.module_pass(opt_level=0, name="PackConv1x1Weights")
class PackConv1x1Weights:
    """`counters["PackConv1x1Weights"]` counts packed convs."""

    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()
        self.data, self.weight = wildcard(), is_const()
        self.conv = is_op("relax.nn.conv2d")(self.data, self.weight)
        self.kernel, self.tir_data, self.tir_weight = GlobalVarPattern(), wildcard(), is_const()
        self.call_tir = is_op("relax.call_tir")(self.kernel, TuplePattern([self.tir_data, self.tir_weight]))
        self.pattern = self.conv | self.call_tir

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        self.mod = mod
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[PackedConv1x1Spec, tvm.ir.GlobalVar] = {}
        for gvar, func in graph_functions(mod):
            self.builder.update_func(gvar, rewrite_call(self.pattern, self._rewrite, func))
        return relax.transform.DeadCodeElimination()(self.builder.get())  # the replaced shuffled kernels

    def _rewrite(self, expr: relax.Call, matches: dict) -> relax.Expr:
        found = self._conv(expr, matches) if self.conv in matches else self._shuffled(expr, matches)
        if found is None:
            return expr
        data, weight, conv_groups, shuffle_groups = found
        shape, wshape = shape_of(data), list(weight.value.shape)
        if shape is None or len(shape) != 4 or wshape[2:] != [1, 1] or str(weight.value.dtype) != "float32":
            return expr
        batch, channels, height, width = shape
        out_channels = wshape[0]
        block = weight_block(self.target, out_channels // conv_groups, height * width, conv_groups,
                             channels // conv_groups)
        if block is None:
            return expr
        blocks = weight_blocks(self.target, out_channels, block, conv_groups)
        spec = PackedConv1x1Spec(batch, channels, out_channels, height, width, conv_groups, shuffle_groups,
                                 block=block, blocks=blocks)
        spec = dataclasses.replace(spec, pixels=tile_pixels(self.target, spec))
        if spec not in self.kernels:
            self.kernels[spec] = self.builder.add_func(packed_conv1x1(spec), "conv1x1_packed")
        self.counters[self.__class__.__name__] += 1
        packed = relax.const(pack_weight(weight.value.numpy(), block, blocks))
        return relax.call_tir(self.kernels[spec], [data, packed],
                              relax.TensorType((batch, out_channels, height, width), "float32"))

    def _conv(self, expr: relax.Call, matches: dict) -> tuple | None:
        attrs = expr.attrs
        if not unit_stride_nchw(attrs) or not float32_out(attrs):
            return None
        return matches[self.data], matches[self.weight], int(attrs.groups), 1

    def _shuffled(self, expr: relax.Call, matches: dict) -> tuple | None:
        gvar = matches[self.kernel]
        if any(gvar.same_as(v) for v in self.kernels.values()):  # rewrite_call revisits what it produced
            return None
        grouping = shuffled_conv_grouping(self.mod, gvar)
        if grouping is None:
            return None
        return matches[self.tir_data], matches[self.tir_weight], *grouping
