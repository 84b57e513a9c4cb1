"""Depthwise 3×3 convolution (stride 1 and 2), NCHW: every V1 and V2 unit has one.

CPU (x86 AVX-512/AVX2, aarch64 NEON): one (image, channel) plane at a time. The padded input plane is built
for it (it stays in L1), each output row is accumulated in registers (a `local` cache) over the 9 unrolled
taps, then bias and any ReLU/residual are applied as the row is written. A row is one vector where LLVM splits
it cleanly into registers: it fits one (14 or 7 lanes on AVX-512, widened to a register), or what is left after
whole registers is a power of two (28 on AVX2: 8 + 8 + 8 + 4). Else, on x86, it is computed as equal vectors of
at most a register (28 on AVX-512: two of 14; 14 on AVX2: two of 7): for 16 + 12 or 8 + 6 LLVM builds the
operands from scalar inserts (the weight broadcasts, each tap). Measured (`benchmarks/depthwise_rows.py`, one
thread): AVX-512, 28x28 planes (24-116 channels) 0.80-0.81x the time of one 28-lane vector; AVX2, 14x14 0.88x.
As 16 + 12 lanes (`loop_partition`) the rows were faster still in a trial, but the blocks `loop_partition`
adds hide the row loop from PartitionRowsAcrossCores. At stride 2 on x86 the schedule vectorizes nothing
(`_tvm_vectors`): a TVM vector of every other input column is built from element inserts, while LLVM's loop
vectorizer, given whole rows as plain loops, mostly loads whole registers and deinterleaves them. Measured
(`benchmarks/depthwise_stride2.py`, one thread, ShuffleNet's eight stride-2 shapes): 0.37-0.61x the time of
TVM's vectors on AVX-512, 0.40-0.57x on AVX2; 0.59-0.73x the stock kernel on AVX-512, 0.65-1.01x on AVX2.
No reduction runs inside a vector lane, so no fast-math reassociation is needed. Planes run in parallel only
when the kernel has at least `PARALLEL_MACS` multiply-adds: ShuffleNet's depthwise convs at batch 1 are 0.1-0.8
M MACs, a few microseconds, less than waking a thread pool costs (the tuned schedules MetaSchedule finds for
them are single-threaded too).

GPU (CUDA): one thread per output element, a thread block per group of planes; the 9 taps unrolled.
"""

from __future__ import annotations

from typing import Any

from ._common import conv_shape, divisor_at_most, fold_epilogue, pad_producer, vector_lanes

GPU_THREADS = 128
PARALLEL_MACS = 2_000_000


def schedule(func: Any, target: Any) -> Any | None:
    """A scheduled `s_tir.Schedule` for a depthwise 3×3 conv kernel, or None: not mine."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    shape = conv_shape(sch)
    if shape is None or not shape.depthwise or (shape.kernel_h, shape.kernel_w) != (3, 3):
        return None
    conv = sch.get_sblock(shape.block)
    if "gpu" in target.keys:
        return _gpu(sch, conv, shape)
    return _cpu(sch, conv, shape, vector_lanes(target))


def _cpu(sch: Any, conv: Any, shape: Any, lanes: int) -> Any:
    pad = pad_producer(sch, conv)
    write = fold_epilogue(sch, sch.cache_write(conv, 0, "local"))
    n, f, y, x, rc, ry, rx = sch.get_loops(conv)
    vectors = _tvm_vectors(shape.stride, lanes)
    vector = _row_vector(shape.out_w, lanes) if vectors else shape.out_w  # plain loops: whole rows, for LLVM
    x0, x = sch.split(x, [None, vector])
    sch.reorder(n, f, y, rc, ry, rx, x0, x)
    plane = sch.fuse(n, f)
    sch.reverse_compute_at(write, y)
    if pad is not None:
        sch.compute_at(pad, plane)
        if vectors:
            sch.vectorize(sch.get_loops(pad)[-1])
    sch.unroll(ry)
    sch.unroll(rx)
    if vectors:
        sch.vectorize(x)  # before the init is split off: vectorize checks the block is a complete reduction
        sch.vectorize(sch.split(sch.get_loops(write)[-1], [None, vector])[1])
    if shape.batch * shape.out_channels * shape.out_h * shape.out_w * 9 >= PARALLEL_MACS:
        sch.parallel(plane)
    init = sch.decompose_reduction(conv, rc)
    if vectors:
        sch.vectorize(sch.get_loops(init)[-1])
    return sch


def _tvm_vectors(stride: int, lanes: int) -> bool:
    """Whether the schedule vectorizes the rows itself. Not at stride 2 on x86: TVM's vector of every other
    input column is built from element inserts, while LLVM's loop vectorizer, given the plain loops, loads whole
    registers and deinterleaves them (AVX-512, 58 channels 56x56: 180 `vinsertps` and 102 `vmovss` in the
    kernel, against none and 27 `vpermps`). NEON keeps TVM's vectors (nothing measured there)."""
    return stride == 1 or lanes < 8


def _row_vector(width: int, lanes: int) -> int:
    """The lanes of the vectors an output row is computed in: the whole row where LLVM splits it cleanly into
    registers (it fits one, or what is left after whole registers is a power of two), else, on x86, equal vectors
    of at most a register (AVX-512: 28 as two of 14; AVX2: 14 as two of 7). NEON keeps the whole row (nothing
    measured there)."""
    rest = width % lanes
    if width <= lanes or lanes < 8 or rest & (rest - 1) == 0:
        return width
    return divisor_at_most(width, lanes)


def _gpu(sch: Any, conv: Any, shape: Any) -> Any:
    pad = pad_producer(sch, conv)
    if pad is not None:
        sch.compute_inline(pad)
    write = fold_epilogue(sch, sch.cache_write(conv, 0, "local"))
    n, f, y, x, rc, ry, rx = sch.get_loops(conv)
    fused = sch.fuse(n, f, y, x)
    bx, tx = sch.split(fused, [None, GPU_THREADS])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.reverse_compute_at(write, tx)
    sch.decompose_reduction(conv, rc)
    sch.unroll(ry)
    sch.unroll(rx)
    return sch
