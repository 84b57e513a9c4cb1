"""1×1 convolution with pre-packed weights (`kernels/packed_conv1x1.py`: weight [O/B, Cg, B]), NCHW activations.
The layout phase (`passes/pack_conv1x1_weights.py`) uses it for small planes (7×7) on x86.

CPU: the output channels are split into blocks of B (one vector) and the pixels of a plane fused into one
axis; a register tile of `VECTORS` blocks × `PIXELS` pixels accumulates in a `local` cache laid out
[pixel, channel] over all input channels of the group — each step one contiguous vector load of weights per
block and one broadcast input pixel per pixel, every lane its own sum (no reassociation) — then bias,
residual and ReLU are applied as the tile is written back to NCHW. Tiles run in parallel. Two blocks per tile
only with 32 vector registers (AVX-512: 2 x 7 accumulators; on AVX2 they spill: 788 vs 567 us for conv5).
Output channels padded to whole blocks (232 -> 240): the kernel's own accumulator is that cache, and the
write-back (the crop block) skips the padded channels.
"""

from __future__ import annotations

from typing import Any

from ..kernels.packed_conv1x1 import BLOCK_NAME, CROP_NAME
from ._common import conv_operands, divisor_at_most, find_block, fold_epilogue, vector_lanes

PIXELS = 7


def schedule(func: Any, target: Any) -> Any | None:
    from tvm import s_tir

    if "gpu" in target.keys:
        return None
    sch = s_tir.Schedule(func)
    conv = find_block(sch, BLOCK_NAME)
    if conv is None:
        return None
    block = sch.get(conv)
    operands = conv_operands(block)
    if operands is None:
        return None
    weight = operands[1]
    lanes_per_block = int(weight.shape[2])
    n, out_channels, height, width, _rc = (int(iv.dom.extent) for iv in block.iter_vars)
    vectors = 2 if vector_lanes(target) >= 16 and out_channels % (2 * lanes_per_block) == 0 else 1
    crop = find_block(sch, CROP_NAME)
    if crop is None:
        write = fold_epilogue(sch, sch.cache_write(conv, 0, "local"))
    else:  # channels padded to whole blocks: the kernel's accumulator is the tile, the crop writes the real ones
        sch.set_scope(conv, 0, "local")
        write = fold_epilogue(sch, crop)
    sch.transform_layout(conv, ("write", 0), lambda n, o, y, x: (n, y * width + x, o))
    sch.transform_block_layout(conv, lambda n, o, y, x, rc: (n, o, y * width + x, rc))
    sch.transform_block_layout(write, lambda n, o, y, x: (n, o, y * width + x))
    n, o, p, rc = sch.get_loops(conv)
    o0, o1, o2 = sch.split(o, [None, vectors, lanes_per_block])
    p0, p1 = sch.split(p, [None, divisor_at_most(height * width, PIXELS)])
    sch.reorder(n, o0, p0, rc, o1, p1, o2)
    sch.reverse_compute_at(write, p0)
    sch.unroll(o1)
    sch.unroll(p1)
    sch.vectorize(o2)
    sch.parallel(sch.fuse(n, o0, p0))
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch
