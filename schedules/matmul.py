"""The classifier: out[i, j] = sum_k x[i, k] * W[k, j] (+ bias), W stored k-major (Relax folds the
transpose of `nn.Linear`'s weight into the constant), so a row of W is contiguous in j — or, on x86, packed in
tiles of T columns (`kernels/packed_matmul.py`: weight [N/T, K, T], block `matmul_packed`), so a tile's weights
are one contiguous run.

CPU: output columns in tiles of `vectors` vectors (`column_tile`), each tile's accumulators in registers over
all k — one broadcast x[i, k] times `vectors` contiguous vectors of W per step, every lane its own sum; tiles in
parallel. Memory-bound at batch 1 (W is 4 MB for 1024x1000): the point is to stream W once, in order. The packed
kernel's tile is its pack's T; the images loop inside it, so at batch N a tile's weights (K x T) are read from
memory once and from cache N - 1 times.
"""

from __future__ import annotations

from typing import Any

from ..kernels.packed_matmul import BLOCK_NAME as PACKED
from ._common import divisor_at_most, find_block, fold_epilogue, vector_lanes

TILE_VECTORS = 8  # at most this many accumulator vectors in a tile (AVX2: 16 registers, 8 left for the rest)


def column_tile(lanes: int, columns: int) -> tuple[int, int]:
    """(lanes per vector, vectors) of a matmul's register tile over `columns` output columns: the widest vector
    that divides them, and the most vectors up to `TILE_VECTORS` that divide theirs (1000 classes with 8 lanes:
    5 x 8; 4 x 8 would leave 3 dividing nothing but 1)."""
    width = next(w for w in (lanes, lanes // 2, lanes // 4, 1) if w >= 1 and columns % w == 0)
    return width, divisor_at_most(columns // width, TILE_VECTORS)


def schedule(func: Any, target: Any) -> Any | None:
    from tvm import s_tir

    if "gpu" in target.keys:
        return None
    sch = s_tir.Schedule(func)
    matmul = find_block(sch, "matmul")
    packed = matmul is None
    if packed:
        matmul = find_block(sch, PACKED)
    if matmul is None:
        return None
    block = sch.get(matmul)
    if len(block.iter_vars) != 3 or [int(iv.iter_type) for iv in block.iter_vars] != [0, 0, 2]:
        return None
    # the packed kernel's tile is its pack's T (weight [N/T, K, T]), which the pass took from `column_tile` too
    columns = int(block.reads[1].source.shape[2]) if packed else int(block.iter_vars[1].dom.extent)
    width, vectors = column_tile(vector_lanes(target), columns)
    write = fold_epilogue(sch, sch.cache_write(matmul, 0, "local"))
    i, j, k = sch.get_loops(matmul)
    j0, j1, j2 = sch.split(j, [None, vectors, width])
    if packed:
        sch.reorder(j0, i, k, j1, j2)
        sch.reverse_compute_at(write, i)
    else:
        sch.reorder(i, j0, k, j1, j2)
        sch.reverse_compute_at(write, j0)
    sch.unroll(j1)
    sch.vectorize(j2)
    sch.vectorize(sch.get_loops(write)[-1])
    sch.parallel(j0 if packed else sch.fuse(i, j0))
    init = sch.decompose_reduction(matmul, k)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch
