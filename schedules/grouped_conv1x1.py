"""Grouped 1×1 convolution (V1's groups 2–8) and the ungrouped 1×1 (V2, V1 g1, both models' last conv), NCHW.

Per group, a 1×1 conv is a GEMM: out[f, p] = sum_c W[f, c] * in[group(f) * Cg + c, p] over the H*W pixels p.
CPU (x86 AVX-512/AVX2, aarch64 NEON): the pixels of a plane are fused into one axis (the accumulator and the
conv iterate over p = y*W + x, so a tile is any run of pixels, not a rectangle), and a register tile of
output channels × pixels (`pixel_tile`) is accumulated in a cache over all input channels of the group —
each step one broadcast weight times one contiguous vector of pixels per output channel, so every vector lane
is its own sum (no reassociation) — then bias, residual and ReLU are applied as the tile is written. Tiles run
in parallel. The tile on x86: the most whole vectors of pixels (4, 2 or 1, dividing the plane) that leave room
for `MIN_TILE_CHANNELS` channels within `ACCUMULATORS` (30 of AVX-512's 32 registers, 12 of AVX2's 16, which
has no broadcast operand), then as many channels of one group as fit (`tile_channels`): a divisor of its output
channels, or, for an ungrouped conv, the fewest equal tiles with the last one partial where that holds more (V2
1.0x's 58 channels divide by 2 and 29 only: 6 at most with AVX2 is 6, 6, ..., 4, not 2). The partial tile's
channels past the last are predicated off, and the tiles of channels are unrolled, so that the predicate is a
constant in each copy: inside the reduction loop, LLVM kept the predicated accumulators in memory (a load, FMA
and store per step). Grouped convs take a divisor of a group's channels where one makes `MIN_TILE_CHANNELS`
(rows: `MIN_ROW_ACCUMULATORS`), else partial tiles too (`_group_axis`): V1 g4's convs, whose groups hold 17, 34
or 62 channels, and some of g2's got 1 or 2 channels a tile before. Over all channels, reverse_compute_at bounds
a tile's write by the output's channels, not its group's, so the write of a group's partial tile would reach into
the next group, which another task computes; the conv, its accumulator and the write iterate over (group, channel of the
group) instead, so that a tile and its write end at its group's last channel. Measured on the Zen 3 class (AVX2),
V1 g4 1.0x with hand schedules, old and new built modules' kernels replayed in sequence in interleaved rounds
(20), outputs bit-identical (session 31): 544 -> 136 @14x14 (34 a group, 2 x 1 -> 6 x 1) 0.51x, 272 -> 68 @28x28
(17 a group, 1 x 2 vectors -> 6 x 2) 0.35x, 1088 -> 272 @7x7 (68 a group, 4 x 1 -> 14 x 1 rows) 0.72x, the
others 0.53-0.78x; end to end (`benchmarks/ab_modules.py --rounds 15 --runs 10`, paired): V1 g4 1.0x 0.756x
(6.01 -> 4.49 ms), g4 2.0x 0.914x, g2 0.5x 0.801x, g2 1.0x 0.979x; V1 g3/g8 1.0x and V2 unchanged (their
schedules identical). Measured on the Intel class (AVX-512, and AVX2
code on it), one kernel at a time, interleaved, outputs identical (`benchmarks/conv1x1_tiles.py`, session 20),
against session 19's rule (16 accumulators with AVX-512, divisors only): with AVX-512, V2 1.0x's 58-channel
convs at 28x28 0.35-0.38x (29 channels x 1 vector: 58 -> 58 67-82 -> 25-31 us), its 116 0.58x, V2 2.0x's 122
(2 x 61: 25 x 1, partial) 0.33-0.36x, V2 1.5x 0.69-0.85x, V1 g3/g8 and V2 0.5x 0.82-1.02x; with AVX2 (6 x 2,
partial), V2 1.0x 0.41-0.74x, 1.5x 0.59-0.76x, 2.0x 0.40-0.76x, the grouped convs unchanged. End to end, hand
schedules only (`benchmarks/ab_modules.py`), bit-identical outputs: V2 1.0x 0.936x (AVX2 code 0.948x), V2 2.0x
0.881x, V2 0.5x, V1 g3, V1 g8 1.006-1.014x (noise). Session 19's rule against session 18's (4 channels x up to
4 vectors): V1 g3/g8 1.0x's 28x28 convs 0.31-0.79x with AVX-512, 0.60-0.90x with AVX2.
Planes whose rows are not whole vectors (14x14, `_row_tiles`): the tile is output channels × rows, each row one
vector (AVX-512: 14 of 16 lanes) or two (AVX2: 2 × 7), unrolled. `row_tile` takes the most rows (2, then 1) whose
tile fills `MIN_ROW_ACCUMULATORS` accumulators within `ROW_REGISTERS` (a row of input takes registers too:
(channels + 1) × rows × vectors of a row), with channels a divisor of a group's, else the fewest equal tiles
with a partial last one (unrolled, as above). AVX-512: V2 1.0x's 116 channels (4 × 29) 13 × 2,
the last tile of 12; 232 8 × 2; V1 g3 10 × 2. AVX2: 6 × 1 (2 rows would leave 2 channels). Against session 20's
rule (a divisor of at most 8 channels × 2 rows, on AVX2 4 × 2 × 2 vectors: 16 accumulators and 4 inputs in 16
registers), alone (`benchmarks/conv1x1_tiles.py --path rows`, session 21): AVX2 code 0.56-0.71x, AVX-512 V2 2.0x's
244 0.63-0.93x, V1 and V2 0.5x/1.5x 0.93-0.99x; end to end, hand schedules only, bit-identical outputs: V2 1.0x
0.953x (AVX2 code 0.888x), V2 2.0x 0.942x, V2 0.5x/1.5x and V1 g3/g8 0.986-1.006x (noise). One row of 29 channels
(a divisor) was faster alone on 116 (0.81-0.93x) but slower in the model (V2 1.0x 1.05x end to end): it loads a
broadcast weight for every FMA, two rows for every other.
aarch64 (NEON) keeps `F_TILE` channels × up to `VECTORS_PER_TILE` vectors (16 of its 32 registers): speed is not
measured here (emulated).

GPU (CUDA, `_gpu`): at batch 1 these GEMMs are tiny (about 5 MFLOP, a few thousand to 180k outputs), so the
kernel is latency-bound: what matters is that many loads are in flight and that all of the GPU's ~130 SMs have
work. A thread accumulates up to `GPU_CHANNELS_PER_THREAD` output channels of one pixel in registers (in the
kernel's order: no reassociation); a block is `channel_threads` rows × `pixel_threads` consecutive pixels of one
image and one group (consecutive threads, consecutive pixels: coalesced loads and stores; the pixels are whole
rows or an equal part of one, so that their input tile is exact). The reduction runs in chunks of input
channels: each chunk's weight tile [block channels × chunk] — and its input tile [chunk × block pixels] where
several channel rows share it and the input channel is affine in the reduction (not read through a folded
shuffle, whose tiles' bounding boxes are 2-3x the channels) — is fetched into shared memory by all threads, every
load issued before the first is waited for; then the chunk's FMAs run unrolled `GPU_UNROLL` steps at a time.
`gpu_tiles` picks the tile: first enough blocks (`GPU_MIN_BLOCKS`, about one per SM) of at least two warps, then
the most channels per thread; the chunk is the longest that fits shared memory. Session 3's rule (one thread per
output, a serial reduction reading global memory, so most likely one memory latency per input channel) took
11-37 us per 5 MFLOP conv on an H200; this one 3.6-9.5 us, faster than dlight's on all 20 1x1 kernels of V2 1.0x
and V1 g3 1.0x (V2's 116->116 @14x14: 4.2 vs 8.5 us; conv5 18.7 vs 62.4; benchmarks/GPU.md, session 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._common import conv_shape, divisor_at_most, fold_epilogue, pad_producer, tile_scope, vector_lanes

F_TILE = 4  # NEON: output channels per tile
VECTORS_PER_TILE = 4  # NEON, and the most on x86: pixels per tile, about this many vectors
ACCUMULATORS = {16: 30, 8: 12}  # x86 vector lanes -> a tile's accumulator registers (of 32 / 16)
MIN_TILE_CHANNELS = 4  # x86: the most vectors of pixels that leave a tile this many channels
ROW_TILE_ROWS = 2  # the most: row tiles (H*W not a multiple of the vector width) are channels x rows
ROW_REGISTERS = {16: 30, 8: 15}  # x86 lanes -> registers for a row tile's accumulators and rows of input (AVX2:
                                 # one of its 16 holds the broadcast weight)
MIN_ROW_ACCUMULATORS = 12  # x86: the most rows a tile whose channels fill this many accumulators
ROW_TILE_CHANNELS = 8  # NEON: a row tile's channels (a divisor), x up to ROW_TILE_ROWS rows
# CUDA (`_gpu`, `gpu_tiles`)
GPU_CHANNELS_PER_THREAD = 4  # at most: output channels a thread accumulates (of one pixel)
GPU_PIXEL_THREADS = 64  # at most: consecutive pixels of one image, one per thread (whole rows or an equal part of
                        # one, so that a block's inputs are exactly its pixels)
GPU_THREADS = 256  # at most per block
GPU_MIN_BLOCKS = 128  # about one per SM (A100 108, H100/H200 132): smaller tiles until there are this many
GPU_UNROLL = 32  # reduction steps unrolled: straight-line loads and FMAs
GPU_STAGE_INPUTS = True  # inputs through shared memory where several rows of channel threads read them
GPU_SHARED_BYTES = 49152  # where the target does not say


def schedule(func: Any, target: Any) -> Any | None:
    """A scheduled `s_tir.Schedule` for a (grouped) non-depthwise conv kernel, or None: not mine."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    shape = conv_shape(sch)
    if shape is None or shape.depthwise or (shape.kernel_h, shape.kernel_w) != (1, 1):
        return None
    conv = sch.get_sblock(shape.block)
    if "gpu" in target.keys:
        return _gpu(sch, conv, shape, target)
    return _cpu(sch, conv, shape, vector_lanes(target), tile_scope(target))


def _cpu(sch: Any, conv: Any, shape: Any, lanes: int, scope: str) -> Any:
    pad = pad_producer(sch, conv)
    if pad is not None:
        sch.compute_inline(pad)
    write = fold_epilogue(sch, sch.cache_write(conv, 0, scope))
    if (shape.out_h * shape.out_w) % lanes == 0:
        _fused_pixel_tiles(sch, conv, write, shape, lanes)
    else:  # 14x14, 7x7 on AVX-512: a pixel tile would need an odd vector length, which LLVM handles badly
        _row_tiles(sch, conv, write, shape, lanes)
    return sch


def _group_axis(sch: Any, conv: Any, write: Any, shape: Any, pixels: Any) -> None:
    """The conv, its accumulator and the write iterate over (group, channel in the group) instead of channels,
    `pixels` mapping (y, x) to the pixel axes: a tile of channels that does not divide a group's then ends at
    its group's last channel (predicated), and so does its write (split over all channels, the write of a
    group's partial tile would reach into the next group, which another task computes). The blocks first, then
    the accumulator, whose indices then simplify to (group, channel)."""
    per_group = shape.out_channels // shape.groups
    sch.transform_block_layout(conv, lambda n, f, y, x, rc, ry, rx: (n, f // per_group, f % per_group,
                                                                     *pixels(y, x), rc, ry, rx))
    sch.transform_block_layout(write, lambda n, f, y, x: (n, f // per_group, f % per_group, *pixels(y, x)))
    sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, f // per_group, f % per_group, *pixels(y, x)))


def _fused_pixel_tiles(sch: Any, conv: Any, write: Any, shape: Any, lanes: int) -> None:
    width = shape.out_w
    channels, pixels = pixel_tile(shape.out_channels, shape.groups, shape.out_h * width, lanes)
    by_group = _group_tiles(shape, channels, lanes)
    if by_group:
        _group_axis(sch, conv, write, shape, lambda y, x: (y * width + x,))
        n, group, f, p, rc, ry, rx = sch.get_loops(conv)
        outer = [n, group]
    else:
        sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, f, y * width + x))
        sch.transform_block_layout(conv, lambda n, f, y, x, rc, ry, rx: (n, f, y * width + x, rc, ry, rx))
        sch.transform_block_layout(write, lambda n, f, y, x: (n, f, y * width + x))
        n, f, p, rc, ry, rx = sch.get_loops(conv)
        outer = [n]
    p0, p1 = sch.split(p, [None, pixels])
    f0, f1 = sch.split(f, [None, channels])
    _place_tiles(sch, conv, write, outer, f0, p0, [rc, ry, rx], [f1, p1], [f1],
                 by_group or shape.out_channels % channels != 0)


def _group_tiles(shape: Any, channels: int, lanes: int) -> bool:
    """x86: a grouped conv whose tile of `channels` does not divide a group's output channels, so that its tiles
    are a group's, the last one partial (`_group_axis`). NEON's tile divides the output's channels (tiles may
    span groups), as before: unmeasured."""
    return lanes in ACCUMULATORS and shape.groups > 1 and (shape.out_channels // shape.groups) % channels != 0


def pixel_tile(out_channels: int, groups: int, plane: int, lanes: int) -> tuple[int, int]:
    """(output channels, pixels) of a fused-pixel register tile for a conv of `out_channels` in `groups` groups
    over a plane of `plane` pixels, a multiple of `lanes`: see the module docstring."""
    budget = ACCUMULATORS.get(lanes)
    if budget is None:
        return divisor_at_most(out_channels, F_TILE), divisor_at_most(plane, lanes * VECTORS_PER_TILE, lanes)
    out_per_group, vectors = out_channels // groups, plane // lanes
    counts = [v for v in (4, 2, 1) if v <= VECTORS_PER_TILE and vectors % v == 0]
    for partial in (groups == 1, True):  # grouped: divisors, unless none makes MIN_TILE_CHANNELS
        tiles = [(tile_channels(out_per_group, budget // v, partial), v) for v in counts]
        found = next(((f, v) for f, v in tiles if f >= MIN_TILE_CHANNELS), None)
        if found is not None:
            return found[0], found[1] * lanes
    channels, per_tile = max(tiles)
    return channels, per_tile * lanes


def tile_channels(channels: int, limit: int, partial: bool) -> int:
    """At most `limit` of `channels` (a group's): the largest divisor, or where `partial`, as many of the fewest
    equal tiles, the last one partial, if that is more (58 channels, 6 at most: 6, not 2; 80, 30 at most: 27)."""
    divisor = divisor_at_most(channels, limit)
    tiles = -(-channels // limit)
    return max(divisor, -(-channels // tiles)) if partial else divisor


def _row_tiles(sch: Any, conv: Any, write: Any, shape: Any, lanes: int) -> None:
    channels, rows = row_tile(shape.out_channels, shape.groups, shape.out_h, shape.out_w, lanes)
    by_group = _group_tiles(shape, channels, lanes)
    if by_group:
        _group_axis(sch, conv, write, shape, lambda y, x: (y, x))
        n, group, f, y, x, rc, ry, rx = sch.get_loops(conv)
        outer = [n, group]
    else:
        n, f, y, x, rc, ry, rx = sch.get_loops(conv)
        outer = [n]
    f0, f1 = sch.split(f, [None, channels])
    y0, y1 = sch.split(y, [None, rows])
    unrolled, row = [f1, y1], [x]
    if shape.out_w > lanes >= 8 and shape.out_w % lanes:
        # A row wider than the register and not a multiple of it: LLVM splits a 14-wide vector very badly on
        # AVX2 (1x1 conv 116->116 at 14x14: 638 us, as two 7-wide vectors 93 us; AVX-512 holds 14 in one).
        row = sch.split(x, [None, divisor_at_most(shape.out_w, lanes)])
        unrolled.append(row[0])
    _place_tiles(sch, conv, write, outer, f0, y0, [rc, ry, rx], [f1, y1, *row], unrolled,
                 by_group or shape.out_channels % channels != 0)


def row_tile(out_channels: int, groups: int, height: int, width: int, lanes: int) -> tuple[int, int]:
    """(output channels, rows) of a row register tile for a conv of `out_channels` in `groups` groups over a
    `height` x `width` plane whose rows are not whole vectors: see the module docstring."""
    registers = ROW_REGISTERS.get(lanes)
    if registers is None:
        return divisor_at_most(out_channels, ROW_TILE_CHANNELS), divisor_at_most(height, ROW_TILE_ROWS)
    per_group = out_channels // groups
    per_row = -(-width // divisor_at_most(width, lanes))  # vectors a row takes (AVX2: 14 as 2 x 7)
    for rows in (r for r in range(ROW_TILE_ROWS, 0, -1) if height % r == 0):
        limit = registers // (rows * per_row) - 1  # each row's vectors of input take registers too
        for channels in (divisor_at_most(per_group, limit), tile_channels(per_group, limit, partial=True)):
            if channels * rows * per_row >= MIN_ROW_ACCUMULATORS:
                return channels, rows
    return channels, rows  # none holds that many: one row, the most channels


def _place_tiles(sch: Any, conv: Any, write: Any, outer: list, f0: Any, pixels0: Any, reduction: list, inner: list,
                 unrolled: list, partial: bool) -> None:
    """The tiles' loops: the tiles of channels (`f0`; of a group, where `outer` ends with the groups' loop) and of
    pixels (`pixels0`) in parallel, then the reduction, then the tile (`inner`: `unrolled` loops and the vector
    last), written at the pixels' tile. Where the last tile of channels is partial its channels past the last are
    predicated off, and the tiles of channels are unrolled inside the pixels', the write at each, so that each
    predicate is a constant there and the partial tile's accumulators stay in registers (a predicate inside the
    reduction loop makes LLVM keep them in memory)."""
    if partial:
        sch.reorder(*outer, pixels0, f0, *reduction, *inner)
        sch.reverse_compute_at(write, f0)
        _finish(sch, conv, write, reduction[0], outer=[*outer, pixels0], unrolled=[*unrolled, f0], vector=inner[-1])
    else:
        sch.reorder(*outer, f0, pixels0, *reduction, *inner)
        sch.reverse_compute_at(write, pixels0)
        _finish(sch, conv, write, reduction[0], outer=[*outer, f0, pixels0], unrolled=unrolled, vector=inner[-1])


def _finish(sch: Any, conv: Any, write: Any, rc: Any, outer: list, unrolled: list, vector: Any) -> None:
    for loop in unrolled:
        sch.unroll(loop)
    sch.vectorize(vector)  # before the init is split off: vectorize checks the block is a complete reduction
    sch.vectorize(sch.get_loops(write)[-1])
    sch.parallel(sch.fuse(*outer))
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])


def _gpu(sch: Any, conv: Any, shape: Any, target: Any) -> Any | None:
    """CUDA: per group a GEMM tiled for shared memory (see the module docstring). None for a conv block that
    reads more than its input and weight (an index table)."""
    block = sch.get(conv)
    if len(block.reads) != 2:
        return None
    t = gpu_tiles(shape, int(target.attrs.get("max_shared_memory_per_block", GPU_SHARED_BYTES)),
                  _channel_is_affine(block))
    pad = pad_producer(sch, conv)
    if pad is not None:
        sch.compute_inline(pad)
    write = fold_epilogue(sch, sch.cache_write(conv, 0, "local"))
    n, f, y, x, rc, ry, rx = sch.get_loops(conv)
    group, f = sch.split(f, [shape.groups, shape.out_channels // shape.groups])
    f0, f1, f2 = sch.split(f, [None, t.channel_threads, t.channels_per_thread])  # f0 may overhang: predicated
    p0, p1 = sch.split(sch.fuse(y, x), [None, t.pixel_threads])
    k0, k1 = sch.split(rc, [None, t.chunk])
    k1, k2 = sch.split(k1, [None, divisor_at_most(t.chunk, GPU_UNROLL)])
    sch.reorder(group, f0, n, p0, f1, p1, k0, ry, rx, k1, k2, f2)
    sch.bind(f1, "threadIdx.y")
    sch.bind(p1, "threadIdx.x")
    sch.reverse_compute_at(write, p1)
    # The step's weights [block channels, chunk], and its inputs [chunk, block pixels] where more than one row
    # of channel threads reads them (one row reads each input once: straight from global memory, coalesced).
    for operand in (0, 1) if t.stage_input else (1,):
        stage = sch.cache_read(conv, operand, "shared")
        sch.compute_at(stage, k0)
        fetch, ty, tx = sch.split(sch.fuse(*_loops_below(sch, stage, k0)),
                                  [None, t.channel_threads, t.pixel_threads])
        sch.bind(ty, "threadIdx.y")
        sch.bind(tx, "threadIdx.x")
        sch.unroll(fetch)  # the step's loads issued back to back, then waited for once
    # Bound only now, the staged tiles' regions being computed from separate block loops: exact. The channel
    # block and the group stay grid dimensions of their own, so that shared memory is compacted to the tiles.
    sch.bind(sch.fuse(n, p0), "blockIdx.x")
    sch.bind(f0, "blockIdx.y")
    sch.bind(group, "blockIdx.z")
    sch.unroll(k2)
    sch.unroll(f2)
    sch.decompose_reduction(conv, k0)
    return sch


def _channel_is_affine(block: Any) -> bool:
    """Whether the input channel the conv reads is affine in the reduction channel rc (not so through a folded
    channel shuffle: perm(j) = (j % s) * C/s + j // s, whose tiles' bounding boxes are 2-3x the channels)."""
    from tvm import sym

    rc = block.iter_vars[4].var
    return len(sym.detect_linear_equation(block.reads[0].region[1].min, [rc])) == 2


def _loops_below(sch: Any, block: Any, loop: Any) -> list:
    loops = sch.get_loops(block)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    return loops[at + 1:]


@dataclass(frozen=True)
class GpuTiles:
    """A CUDA tiling of a 1x1 conv: a thread computes `channels_per_thread` output channels of one pixel; a
    block has `channel_threads` x `pixel_threads` threads (pixels fastest), all in one group; the reduction runs
    in steps of `chunk` input channels."""

    channels_per_thread: int
    channel_threads: int
    pixel_threads: int
    chunk: int = 0
    stage_input: bool = False  # inputs through shared memory too (where several rows of channel threads read them)

    @property
    def threads(self) -> int:
        return self.channel_threads * self.pixel_threads

    @property
    def block_channels(self) -> int:
        return self.channel_threads * self.channels_per_thread

    def blocks(self, shape: Any) -> int:
        per_group = shape.out_channels // shape.groups
        plane = shape.out_h * shape.out_w
        return shape.groups * shape.batch * -(-per_group // self.block_channels) * (plane // self.pixel_threads)


def gpu_tiles(shape: Any, shared_bytes: int = GPU_SHARED_BYTES, affine_input: bool = True) -> GpuTiles:
    """The tiling `_gpu` uses for `shape`. At batch 1 these convs are far too small to fill a GPU, so the first
    aim is parallelism — GPU_MIN_BLOCKS blocks of at least two warps — then more channels per thread (more
    FMAs per load), less padding, more threads; the chunk is the longest that fits shared memory."""
    per_group = shape.out_channels // shape.groups
    tx = max(d for d in range(1, GPU_PIXEL_THREADS + 1) if _row_aligned(d, shape))
    candidates = [GpuTiles(tf, cth, tx)
                  for tf in range(1, GPU_CHANNELS_PER_THREAD + 1) if per_group % tf == 0
                  for cth in range(1, min(per_group // tf, GPU_THREADS // tx) + 1)
                  if shape.groups == 1 or per_group % (tf * cth) == 0]  # an overhanging block: only without groups

    def preference(t: GpuTiles) -> tuple:
        padded = -(-per_group // t.block_channels) * t.block_channels
        return min(t.blocks(shape), GPU_MIN_BLOCKS), min(t.threads, 64), t.channels_per_thread, -padded, t.threads

    best = max(candidates, key=preference)
    stage_input = GPU_STAGE_INPUTS and best.channel_threads > 1 and affine_input
    per_channel = 4 * (best.block_channels + (best.pixel_threads if stage_input else 0))  # bytes per chunk step
    k = shape.in_per_group
    chunk = max([c for c in range(1, k + 1) if k % c == 0 and c * per_channel <= shared_bytes] or [1])
    return GpuTiles(best.channels_per_thread, best.channel_threads, best.pixel_threads, chunk, stage_input)


def _row_aligned(pixels: int, shape: Any) -> bool:
    """Whether runs of `pixels` pixels tile an image in whole rows or equal parts of one row: then a run's input
    tile is exactly its pixels (not the bounding box of the rows it touches)."""
    plane, width = shape.out_h * shape.out_w, shape.out_w
    return plane % pixels == 0 and (pixels % width == 0 or width % pixels == 0)
