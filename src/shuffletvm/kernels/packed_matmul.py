"""The classifier's matmul with its weights pre-packed in column tiles, so each tile streams contiguously.

    weight[j // T, k, j % T] = W[k, j]                      ([K, N] -> [N / T, K, T])
    out[i, j] = sum_k  x[i, k] * weight[j // T, k, j % T]

Relax computes `nn.Linear` as `matmul(x, permute_dims(W))`, the transpose folded into a [K, N] constant: a
register tile of T columns then reads T floats of each of the K rows, one row every 4 KB (N = 1000) — a new page
at almost every step, which the hardware prefetchers do not follow, and the weights (4 MB) come from memory or L3
at batch 1. Packed, a tile's K x T weights are one contiguous run. The schedule (`schedules/matmul.py`) is the
plain matmul's with the tile fixed to T. See `passes/pack_matmul_weights.py` for the measurements.

Block `matmul_packed`, reduction axis k; op_pattern OutEWiseFusable so the bias add fuses after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .shuffled_group_conv import OUT_EWISE_FUSABLE, i64

BLOCK_NAME = "matmul_packed"


@dataclass(frozen=True)
class PackedMatmulSpec:
    rows: int  # M: the batch
    depth: int  # K: the classifier's input features
    columns: int  # N: the classes
    block: int  # T: columns per tile, dividing N
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.block <= 0 or self.columns % self.block:
            raise ValueError(f"tiles of {self.block} columns must divide the {self.columns} columns")


def pack_weight(weight: np.ndarray, block: int) -> np.ndarray:
    """[K, N] -> [N / block, K, block]."""
    depth, columns = weight.shape
    return np.ascontiguousarray(weight.reshape(depth, columns // block, block).transpose(1, 0, 2))


def packed_matmul(spec: PackedMatmulSpec) -> tirx.PrimFunc:
    m_, k_, n_, t_ = (i64(v) for v in (spec.rows, spec.depth, spec.columns, spec.block))
    data = te.placeholder((m_, k_), spec.dtype, name="data")
    weight = te.placeholder((i64(spec.columns // spec.block), k_, t_), spec.dtype, name="weight")
    k = te.reduce_axis((i64(0), k_), name="k")
    out = te.compute((m_, n_), lambda i, j: te.sum(
        data[i, k] * weight[tirx.floordiv(j, t_), k, tirx.floormod(j, t_)], axis=[k]), name=BLOCK_NAME)
    func = te.create_prim_func([data, weight, out])
    return (func.without_attr("global_symbol").with_attr("op_pattern", OUT_EWISE_FUSABLE)
            .with_attr("shuffletvm.packed_block", spec.block))
