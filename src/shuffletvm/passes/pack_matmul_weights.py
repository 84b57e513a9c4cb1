"""PackMatmulWeights: the layout phase, for the classifier. `matmul(x, W)` with a constant [K, N] weight (Relax's
`nn.Linear` is `matmul(x, permute_dims(W))`) on x86 gets its weights pre-packed in tiles of T output columns
([K, N] -> [N/T, K, T], at compile time): `kernels/packed_matmul.py`, scheduled by `schedules/matmul.py`, whose
register tile (`column_tile`: 5 vectors of 8 for 1000 classes) is T.

Why: k-major, a tile of T columns reads T floats from each of K rows 4 KB apart (N = 1000): a new page at almost
every step, which the hardware prefetchers do not follow. At batch 1 the classifier is the model's largest weight
(V2 1.0x: 4 MB of 9) and reads it once: memory-bound, so the access pattern is the kernel's time. Packed, each
tile's K x T weights are one contiguous run.

Measured on the Zen 3 class (AVX2, 2 cores), one kernel at a time, interleaved rounds, medians
(`benchmarks/classifier.py`; "flushed": every argument but the input evicted from cache before each call, the
classifier's usual state in a running model):

| classifier, batch 1 | warm: k-major, as built before | packed (T = 40) | flushed: k-major | packed |
|---|---:|---:|---:|---:|
| V2 0.5x, 1024 -> 1000 + bias | 155.2 us | 84.6 (0.55x) | 360.9 | 218.6 (0.61x) |
| V2 1.0x, the same kernel | 146.8 | 87.5 (0.60x) | 283.6 | 195.5 (0.69x) |
| V1 g3 1.0x, 960 -> 1000 | 146.7 | 99.3 (0.68x) | 535.2 | 214.1 (0.40x) |
| V1 g8 1.0x, 1536 -> 1000 | 169.8 | 107.7 (0.63x) | 374.9 | 287.1 (0.77x) |

At batch 8 (the images inside the tile): V2 1.0x 0.75x warm, 0.82x flushed; V1 g8 0.67x, 0.67x. Outputs identical
in every case. End to end, built with the shipped log, interleaved (`benchmarks/ab_modules.py --rounds 15`), outputs
identical: V1 g3 1.0x 0.942x, V2 0.5x 0.949x, V1 g8 1.0x 0.975x, V2 1.0x 0.985x; V2 1.0x at batch 8 1.002x (the
classifier is 2% of that run).

Not applied on aarch64 (speed cannot be measured here: emulated) nor on CUDA (threads over columns coalesce).
Exact: the same products summed in the same order.
Leaves unchanged: weights that are not constants, column counts the tile does not divide, other targets.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from ..kernels.packed_matmul import PackedMatmulSpec, pack_weight, packed_matmul
from ._shuffle_pattern import graph_functions, shape_of


def column_block(target: Any, columns: int) -> int | None:
    """Columns per packed tile for a classifier of `columns` outputs on `target` (the schedule's register tile), or
    None: keep [K, N] — where no vector of at least half a register divides the columns, or one tile holds them
    all."""
    from ..schedules._common import vector_lanes
    from ..schedules.matmul import column_tile

    keys = set(target.keys)
    if "cpu" not in keys or "arm_cpu" in keys:
        return None
    lanes = vector_lanes(target)
    width, vectors = column_tile(lanes, columns)
    return width * vectors if 2 * width >= lanes and width * vectors < columns else None


@tvm.ir.transform.module_pass(opt_level=0, name="PackMatmulWeights")
class PackMatmulWeights:
    """`counters["PackMatmulWeights"]` counts packed matmuls."""

    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()
        self.data, self.weight = wildcard(), is_const()
        self.transposed = is_op("relax.permute_dims")(self.weight)
        self.pattern = is_op("relax.matmul")(self.data, self.transposed | self.weight)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[PackedMatmulSpec, tvm.ir.GlobalVar] = {}
        for gvar, func in graph_functions(mod):
            self.builder.update_func(gvar, rewrite_call(self.pattern, self._rewrite, func))
        return relax.transform.DeadCodeElimination()(self.builder.get())  # the transposes of the packed weights

    def _rewrite(self, expr: relax.Call, matches: dict) -> relax.Expr:
        data, constant = matches[self.data], matches[self.weight].value
        shape = shape_of(data)
        weight = constant.numpy()
        if self.transposed in matches:
            axes = matches[self.transposed].attrs.axes
            if weight.ndim != 2 or axes is not None and [int(a) for a in axes] != [1, 0]:
                return expr
            weight = weight.T
        out_dtype = matches[self.pattern].attrs.out_dtype  # (`expr` may be the variable bound to the call)
        if (shape is None or len(shape) != 2 or weight.ndim != 2 or shape[1] != weight.shape[0]
                or str(constant.dtype) != "float32" or str(data.ty.dtype) != "float32"
                or out_dtype not in ("", None) and str(out_dtype) != "float32"):
            return expr
        rows, (depth, columns) = shape[0], weight.shape
        block = column_block(self.target, columns)
        if block is None:
            return expr
        spec = PackedMatmulSpec(rows, depth, columns, block)
        if spec not in self.kernels:
            self.kernels[spec] = self.builder.add_func(packed_matmul(spec), "matmul_packed")
        self.counters[self.__class__.__name__] += 1
        return relax.call_tir(self.kernels[spec], [data, relax.const(pack_weight(weight, block))],
                              relax.TensorType((rows, columns), "float32"))
