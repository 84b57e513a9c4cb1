"""The CPU catch-all for kernels no hand rule claims (stem conv, pooling, the classifier, element-wise ops
left unfused): their outer spatial loops run in parallel, the innermost loop is left to LLVM's vectorizer.
Without it an untuned kernel is one serial loop nest. On GPUs, dlight's default schedules play this role."""

from __future__ import annotations

from typing import Any

from ._common import find_block

SPATIAL = 0  # IterVar.iter_type: data parallel
MIN_PARALLEL = 8  # fuse outer spatial loops until at least this many iterations run in parallel


def schedule(func: Any, target: Any) -> Any | None:
    from tvm import s_tir

    if "gpu" in target.keys:
        return None
    sch = s_tir.Schedule(func)
    changed = False
    root = find_block(sch, "root")
    for block in sch.get_child_blocks(root) if root is not None else []:
        loops = sch.get_loops(block)
        iters = sch.get(block).iter_vars
        if not loops or len(loops) != len(iters):
            continue
        outer = []
        extent = 1
        for loop, iv in zip(loops, iters):
            if int(iv.iter_type) != SPATIAL or extent >= MIN_PARALLEL:
                break
            outer.append(loop)
            extent *= int(iv.dom.extent)
        if not outer or extent < 2:
            continue
        try:
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
            changed = True
        except Exception:  # noqa: BLE001 - e.g. loops not affine to the block's iterators: leave it
            continue
    return sch if changed else None
