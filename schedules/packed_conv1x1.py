"""1×1 convolution with pre-packed weights (`kernels/packed_conv1x1.py`: weight [O/B, Cg, B]), NCHW activations.
The layout phase (`passes/pack_conv1x1_weights.py`) uses it for small planes (7×7, and 14×14 with AVX2) on x86,
and with AVX2 for grouped convs with a short reduction up to 28×28.

CPU: the output channels are split into blocks of B (one vector) and the pixels of a plane fused into one
axis; a register tile of `vectors` blocks × `pixels` pixels accumulates in a cache laid out
[pixel, channel] over all input channels of the group — each step one contiguous vector load of weights per
block and one broadcast input pixel per pixel, every lane its own sum (no reassociation) — then bias,
residual and ReLU are applied as the tile is written back to NCHW. Output channels padded to whole blocks
(232 -> 240): the kernel's own accumulator is that cache, and the write-back (the crop block) skips the padded
channels.

The tile, by register file (`tile`):
- 32 vector registers (AVX-512): 2 or 3 blocks of one group (one broadcast pixel serves them all) × 7 pixels,
  up to 21 accumulators; one block × 7 pixels where neither divides a group's blocks.
- 16 (AVX2): about `ACCUMULATORS` accumulators, 4, 3 or 2 blocks of one group × 3, 4 or 6 pixels — 4 where 4
  divides the plane (14x14), else the last tile predicated (49 = 16 x 3 + 1), or none where the kernel computes the
  plane in whole tiles (its `pixels`: the pass pads V1 g3's shuffled convs, whose predicate LLVM leaves inside the
  reduction loop; `register_tile` is what both read); one block × 7 pixels where no such
  count divides a group's blocks. Two blocks × 7 pixels spill (14 accumulators, 2 weights and a broadcast: 17
  registers; conv5 788 vs 567 us). Measured on the class it ships for (Zen 3, below); on the Intel class, AVX2
  code (`benchmarks/packed_tiles.py --mcpu haswell`) took 0.68-0.97x session 16's time on six of ten convs and
  1.12-1.25x on four (V2's 232 and 96 channels, V1's 7x7 compress convs): an Intel AVX2 class would want its own
  measurement.
- AVX2, a grouped conv whose reduction is short (at most `SHORT_REDUCTION` input channels per group: V1's 14x14
  and 28x28 expand convs, 12-40 deep) on a plane that 4 divides: 2 blocks × 4 pixels (`short_tile`), the
  reduction unrolled whole, and each channel of the tile written back as one 4-pixel vector. The 4 × 3 tile these convs got before is
  predicated on 14x14 (196 = 3 × 65 + 1), and the predicate inside the reduction loop kept 8 of its 12
  accumulators in memory (a load, an FMA and a store per step, in the assembly); its write-back was 96 scalar
  stores, next to a 40-step reduction; and a conv reading through the shuffle divides by the groups at every step,
  which the unrolled reduction spreads over straight-line code. Measured on the Zen 3 class, one kernel at a time,
  25 interleaved rounds, outputs agreeing (session 27): V1 g3 1.0x 120 -> 480 g3 145.5 -> 83.9 us, 120 -> 240
  68.6 -> 48.2; V1 g8 1.0x 192 -> 1536 g8 139.7 -> 87.7, 192 -> 384 80.7 -> 38.3. Not taken: 1 × 7 tiles on 7x7
  planes (V1 g3 1.0x 240 -> 960 0.81-0.84x the time, V1 g8 1.0x 384 -> 1536 1.29-1.30x), ungrouped convs (V2
  0.5x's 48 -> 48 @14x14, 1.54-1.64x).
The blocks of channels run in parallel, each core walking its blocks' pixel tiles in order, where every core then
gets the same number of blocks or at least `TASKS_PER_CORE`; else the tiles do (with AVX-512 a multi-block tile
is kept even then: V2 1.0x's 15 blocks of 232 -> 232 as 3-block tiles, 5 of them, the 35 tiles in parallel).
  Measured on the 2-core AVX-512 Intel class (rocketlake), one kernel at a time, warm, 15 interleaved rounds,
  medians, outputs identical, against session 16's tile (2 blocks if the block count is even, else 1; tiles in
  parallel): V2 1.0x conv5 204 -> 195 us, 232 -> 232 23.3 -> 22.1 (at batch 8: 199 -> 160), V2 0.5x 96 -> 96
  6.6 -> 5.2, its conv5 133 -> 124, V1 g3 1.0x 240 -> 960 35.3 -> 33.3, V1 g8 1.0x 1536 -> 192 (3 blocks of 8
  per group) 24.2 -> 19.2, 192 -> 1536 25.3 -> 21.6; 4 x 6 tiles were within noise of 2 x 7, 3 x 7 slower than
  2 x 7 where both divide (`benchmarks/packed_tiles.py`).
  Measured on the 2-core AVX2 Zen 3, one kernel at a time, warm, interleaved rounds, outputs identical: with
  one block × 7 pixels, blocks rather than tiles in parallel took 148 / 108 / 110 us instead of 220 / 135 / 122
  (three V1 g8 1.0x convs); with the tiles above too, V2 1.0x conv5 (464 -> 1024 @7x7, 4 x 3) 745 -> 524 us,
  V1 g8 1.0x 768 -> 192 @14x14 (3 blocks per group, 3 x 4) 108 -> 76 us; the packed convs of V2 0.5x / 1.0x and
  V1 g3 / g8 1.0x, each times its calls, 9.8 -> 7.9 ms; end to end with hand schedules only
  (`benchmarks/ab_modules.py`), V2 1.0x 5.81 -> 5.49 ms, V1 g8 1.0x 6.88 -> 6.11 ms.
"""

from __future__ import annotations

from typing import Any

from ..kernels.packed_conv1x1 import BLOCK_NAME, CROP_NAME
from ..passes.partition_rows_across_cores import cores_of
from ._common import conv_operands, divisor_at_most, find_block, fold_epilogue, tile_scope, vector_lanes

PIXELS = 7  # a tile's pixels with AVX-512, and a one-block tile's with AVX2
SHORT_REDUCTION = 80  # AVX2: a group's input channels up to this many make a short reduction (see `short_tile`)
SHORT_TILES = ((2, 4),)  # AVX2, short reductions: (blocks, pixels), the first that divides a group's blocks and
# the plane
ACCUMULATORS = 12  # AVX2 (16 registers): a tile's accumulator registers, leaving room for weights and a broadcast
TASKS_PER_CORE = 4  # blocks of channels in parallel if each core gets this many, or all the same number
# Blocks of a tile, the first that divides a group's blocks (and runs balanced): with 32 registers, with 16
AVX512_TILE_BLOCKS = (2, 3)
AVX2_TILE_BLOCKS = (4, 3, 2)


def tile(lanes: int, blocks: int, groups: int, plane: int, tasks_per_block: int, cores: int) -> tuple[int, int, bool]:
    """(blocks per tile, pixels per tile, whether only the blocks of channels run in parallel) for a packed
    conv of `blocks` weight blocks in `groups` groups over a plane of `plane` pixels; `tasks_per_block`: the
    images (batch) each block of channels is computed for."""
    wide = lanes >= 16

    def balanced(vectors: int) -> bool:
        return _balanced(tasks_per_block * blocks // vectors, cores)

    def pixels(vectors: int) -> int:
        if wide or vectors == 1:
            return divisor_at_most(plane, PIXELS)
        return 4 if vectors <= 3 and plane % 4 == 0 else ACCUMULATORS // vectors

    per_group = blocks // groups
    dividing = [v for v in (AVX512_TILE_BLOCKS if wide else AVX2_TILE_BLOCKS) if per_group % v == 0]
    for vectors in dividing:
        if balanced(vectors):
            return vectors, pixels(vectors), True
    if wide and dividing:
        return dividing[0], pixels(dividing[0]), False
    return 1, pixels(1), balanced(1)


def short_tile(lanes: int, reduction: int, blocks_per_group: int, plane: int, groups: int) -> tuple[int, int] | None:
    """(blocks, pixels) of the tile of a grouped conv whose reduction is short, or None: the rule of `tile`
    applies."""
    if lanes != 8 or groups == 1 or reduction > SHORT_REDUCTION:
        return None
    return next(((v, p) for v, p in SHORT_TILES if blocks_per_group % v == 0 and plane % p == 0), None)


def register_tile(lanes: int, lanes_per_block: int, reduction: int, blocks: int, groups: int, plane: int,
                  batch: int, cores: int) -> tuple[int, int, bool, bool]:
    """(blocks per tile, pixels per tile, whether only the blocks of channels run in parallel, whether it is the
    short-reduction tile) of a packed conv: `short_tile` where it applies, else the rule of `tile`."""
    short = short_tile(lanes, reduction, blocks // groups, plane, groups) if lanes_per_block == lanes else None
    if short is None:
        return (*tile(lanes, blocks, groups, plane, batch, cores), False)
    return short[0], short[1], _balanced(batch * blocks // short[0], cores), True


def _balanced(tasks: int, cores: int) -> bool:
    return tasks % cores == 0 or tasks >= TASKS_PER_CORE * cores


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
    data, weight = operands
    lanes_per_block = int(weight.shape[2])
    n = int(block.iter_vars[0].dom.extent)
    out_channels = int(block.iter_vars[1].dom.extent)
    groups, reduction = int(data.shape[1]) // int(weight.shape[1]), int(weight.shape[1])
    width, plane = int(data.shape[3]), int(data.shape[2]) * int(data.shape[3])
    blocks, lanes = out_channels // lanes_per_block, vector_lanes(target)
    vectors, pixels, blocks_in_parallel, short = register_tile(lanes, lanes_per_block, reduction, blocks, groups,
                                                               plane, n, cores_of(target))
    crop = find_block(sch, CROP_NAME)
    if crop is None:
        write = fold_epilogue(sch, sch.cache_write(conv, 0, tile_scope(target)))
    else:  # channels padded to whole blocks, or the plane to whole tiles: the kernel's accumulator is the tile,
        sch.set_scope(conv, 0, tile_scope(target))  # the crop writes the real ones
        write = fold_epilogue(sch, crop)
    if len(block.iter_vars) == 5:  # (n, o, y, x, rc); a plane padded to whole tiles is flat already
        sch.transform_layout(conv, ("write", 0), lambda n, o, y, x: (n, y * width + x, o))
        sch.transform_block_layout(conv, lambda n, o, y, x, rc: (n, o, y * width + x, rc))
    else:
        sch.transform_layout(conv, ("write", 0), lambda n, o, p: (n, p, o))
    sch.transform_block_layout(write, lambda n, o, y, x: (n, o, y * width + x))
    n, o, p, rc = sch.get_loops(conv)
    o0, o1, o2 = sch.split(o, [None, vectors, lanes_per_block])
    p0, p1 = sch.split(p, [None, pixels])  # a last tile past the plane is predicated, unless the kernel pads it
    sch.reorder(n, o0, p0, rc, o1, p1, o2)
    sch.reverse_compute_at(write, p0)
    sch.unroll(o1)
    sch.unroll(p1)
    sch.vectorize(o2)
    if short:  # the reduction unrolled whole; the write, a vector of the tile's pixels per channel
        sch.unroll(rc)
        write_channels, write_pixels = sch.get_loops(write)[-2:]
        sch.unroll(write_channels)
        sch.vectorize(write_pixels)
    sch.parallel(sch.fuse(n, o0) if blocks_in_parallel else sch.fuse(n, o0, p0))
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch
