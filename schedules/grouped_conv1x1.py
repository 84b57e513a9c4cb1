"""Grouped 1×1 convolution (V1's groups 2–8) and the ungrouped 1×1 (V2, V1 g1, both models' last conv), NCHW.

Per group, a 1×1 conv is a GEMM: out[f, p] = sum_c W[f, c] * in[group(f) * Cg + c, p] over the H*W pixels p.
CPU (x86 AVX-512/AVX2, aarch64 NEON): the pixels of a plane are fused into one axis (the accumulator and the
conv iterate over p = y*W + x, so a tile is any run of pixels, not a rectangle), and a register tile of
`F_TILE` output channels × `P_TILE` pixels (a divisor of H*W, a multiple of the vector width where one exists,
at most `VECTORS_PER_TILE` vectors) is accumulated in a `local` cache over all input channels of the group —
each step one broadcast weight times one contiguous vector of pixels per output channel, so every vector lane
is its own sum (no reassociation) — then bias, residual and ReLU are applied as the tile is written. Tiles run
in parallel. The accumulators take F_TILE x VECTORS_PER_TILE = 16 registers (AVX-512 and NEON have 32).

GPU (CUDA): one thread per output element, the reduction over input channels in a register.
"""

from __future__ import annotations

from typing import Any

from ._common import conv_shape, divisor_at_most, fold_epilogue, pad_producer, vector_lanes

F_TILE = 4
VECTORS_PER_TILE = 4  # pixels per tile: about this many vectors
ROW_TILE_CHANNELS = 8  # row tiles (H*W not a multiple of the vector width): channels x rows of one vector each
ROW_TILE_ROWS = 2
GPU_THREADS = 128


def schedule(func: Any, target: Any) -> Any | None:
    """A scheduled `s_tir.Schedule` for a (grouped) non-depthwise conv kernel, or None: not mine."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    shape = conv_shape(sch)
    if shape is None or shape.depthwise or (shape.kernel_h, shape.kernel_w) != (1, 1):
        return None
    conv = sch.get_sblock(shape.block)
    if "gpu" in target.keys:
        return _gpu(sch, conv)
    return _cpu(sch, conv, shape, vector_lanes(target))


def _cpu(sch: Any, conv: Any, shape: Any, lanes: int) -> Any:
    pad = pad_producer(sch, conv)
    if pad is not None:
        sch.compute_inline(pad)
    write = fold_epilogue(sch, sch.cache_write(conv, 0, "local"))
    if (shape.out_h * shape.out_w) % lanes == 0:
        _fused_pixel_tiles(sch, conv, write, shape, lanes)
    else:  # 14x14, 7x7 on AVX-512: a pixel tile would need an odd vector length, which LLVM handles badly
        _row_tiles(sch, conv, write, shape, lanes)
    return sch


def _fused_pixel_tiles(sch: Any, conv: Any, write: Any, shape: Any, lanes: int) -> None:
    width = shape.out_w
    sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, f, y * width + x))
    sch.transform_block_layout(conv, lambda n, f, y, x, rc, ry, rx: (n, f, y * width + x, rc, ry, rx))
    sch.transform_block_layout(write, lambda n, f, y, x: (n, f, y * width + x))
    n, f, p, rc, ry, rx = sch.get_loops(conv)
    f0, f1 = sch.split(f, [None, divisor_at_most(shape.out_channels, F_TILE)])
    p0, p1 = sch.split(p, [None, divisor_at_most(shape.out_h * width, lanes * VECTORS_PER_TILE, lanes)])
    sch.reorder(n, f0, p0, rc, ry, rx, f1, p1)
    sch.reverse_compute_at(write, p0)
    _finish(sch, conv, write, rc, outer=[n, f0, p0], unrolled=[f1], vector=p1)


def _row_tiles(sch: Any, conv: Any, write: Any, shape: Any, lanes: int) -> None:
    n, f, y, x, rc, ry, rx = sch.get_loops(conv)
    f0, f1 = sch.split(f, [None, divisor_at_most(shape.out_channels, ROW_TILE_CHANNELS)])
    rows = divisor_at_most(shape.out_h, ROW_TILE_ROWS)
    y0, y1 = sch.split(y, [None, rows])
    sch.reorder(n, f0, y0, rc, ry, rx, f1, y1, x)
    sch.reverse_compute_at(write, y0)
    unrolled = [f1, y1]
    if shape.out_w > lanes >= 8 and shape.out_w % lanes:
        # A row wider than the register and not a multiple of it: LLVM splits a 14-wide vector very badly on
        # AVX2 (1x1 conv 116->116 at 14x14: 638 us, as two 7-wide vectors 93 us; AVX-512 holds 14 in one).
        x0, x = sch.split(x, [None, divisor_at_most(shape.out_w, lanes)])
        unrolled.append(x0)
    _finish(sch, conv, write, rc, outer=[n, f0, y0], unrolled=unrolled, vector=x)


def _finish(sch: Any, conv: Any, write: Any, rc: Any, outer: list, unrolled: list, vector: Any) -> None:
    for loop in unrolled:
        sch.unroll(loop)
    sch.vectorize(vector)  # before the init is split off: vectorize checks the block is a complete reduction
    sch.vectorize(sch.get_loops(write)[-1])
    sch.parallel(sch.fuse(*outer))
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])


def _gpu(sch: Any, conv: Any) -> Any:
    pad = pad_producer(sch, conv)
    if pad is not None:
        sch.compute_inline(pad)
    write = fold_epilogue(sch, sch.cache_write(conv, 0, "local"))
    n, f, y, x, rc, *_ = sch.get_loops(conv)
    bx, tx = sch.split(sch.fuse(n, f, y, x), [None, GPU_THREADS])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.reverse_compute_at(write, tx)
    sch.decompose_reduction(conv, rc)
    return sch
