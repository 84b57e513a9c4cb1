"""The classifier: out[i, j] = sum_k x[i, k] * W[k, j] (+ bias), W stored k-major (Relax folds the
transpose of `nn.Linear`'s weight into the constant), so a row of W is contiguous in j.

CPU: output columns in tiles of `UNROLL` vectors, each tile's accumulators in registers over all k — one
broadcast x[i, k] times `UNROLL` contiguous vectors of W per step, every lane its own sum; tiles in parallel.
Memory-bound at batch 1 (W is 4 MB for 1024x1000): the point is to stream W once, in order.
"""

from __future__ import annotations

from typing import Any

from ._common import divisor_at_most, find_block, fold_epilogue, vector_lanes

UNROLL = 4


def schedule(func: Any, target: Any) -> Any | None:
    from tvm import s_tir

    if "gpu" in target.keys:
        return None
    sch = s_tir.Schedule(func)
    matmul = find_block(sch, "matmul")
    if matmul is None:
        return None
    block = sch.get(matmul)
    if len(block.iter_vars) != 3 or [int(iv.iter_type) for iv in block.iter_vars] != [0, 0, 2]:
        return None
    columns = int(block.iter_vars[1].dom.extent)
    lanes = vector_lanes(target)
    width = next(w for w in (lanes, lanes // 2, lanes // 4, 1) if w >= 1 and columns % w == 0)
    unroll = divisor_at_most(columns // width, UNROLL)
    write = fold_epilogue(sch, sch.cache_write(matmul, 0, "local"))
    i, j, k = sch.get_loops(matmul)
    j0, j1, j2 = sch.split(j, [None, unroll, width])
    sch.reorder(i, j0, k, j1, j2)
    sch.reverse_compute_at(write, j0)
    sch.unroll(j1)
    sch.vectorize(j2)
    sch.vectorize(sch.get_loops(write)[-1])
    sch.parallel(sch.fuse(i, j0))
    init = sch.decompose_reduction(matmul, k)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch
