"""The grouped 1x1 conv that ends a ShuffleNet V1 unit (+ bias + residual + ReLU) and the grouped 1x1 conv that
starts the next unit (+ bias + ReLU), as one kernel on CPUs, a chunk of pixels at a time.

V1's stride-1 unit (Zhang et al. 2018, Figure 2b) ends `relu(x + GConv(shuffle(DWConv(GConv(x)))))`, and the next
unit's first GConv reads that sum at once. At the 28x28 stage the sum is 0.75 MB per image (V1 g3: 240
channels), written by one kernel and read back whole by the next, and in a running model the second kernel pays
for where the kernels before it left its data: on the 2-core Intel VM, V1 g3's 28x28 compress conv (240 -> 60, 3
groups) ran 39-43 us warm, 48 us right after the conv that wrote its input, 96 us after the eight kernels before
it, and 80-100 us in the model's sequence (kernel calls replayed as in `benchmarks/sequence_profile.py`). Here
each core runs both convs over a chunk of its pixels: the first conv's output for every channel is written out
(the next unit's residual) and the second conv reads that chunk of it back at once, from L2.

    for task in parallel(N * bands):             # image n, the pixel tiles whose first row is in the band
      for chunk in band:                         # `chunk` tiles of `lanes` consecutive pixels (y * W + x)
        for each block of T1 output channels:    # within one group
          for tile in chunk:
            acc[T1][lanes] = sum over the group's inputs t of W1[o, t] * y[n, perm(group * Cg1 + t), tile]
            out[n, o, tile] = relu(acc + b1 + residual[n, o, tile])
        for each block of T2 output channels of the second conv:
          for tile in chunk:
            next[n, o, tile] = relu(sum over its group's inputs t of W2[o, t] * out[n, group * Cg2 + t, tile] + b2)

The first conv reads its input through the channel shuffle before it (`perm`, as kernels/shuffled_group_conv.py
does: no data moves for it). Each accumulator is a vector of `lanes` pixels and each step one broadcast weight
times one vector (every lane its own sum, in the reduction's order, as the separate kernels sum), `T` channels of
one group at a time, `T` the largest divisor of a group's output channels that fits the accumulator registers
(schedules/grouped_conv1x1.py's `ACCUMULATORS`). A chunk is `CHUNK_LINES` (10) cache lines of each channel's
plane (16 lanes: 10 tiles, 160 pixels), so each channel's loads and stores run along its plane for several lines,
which the prefetchers follow, and the second conv reads the chunk back from L2 (V1 g3's 240 channels: 150 KB,
g8's 384: 240 KB). Measured on the 2-core Intel VM, end to end, paired (`benchmarks/ab_modules.py`, 30 rounds,
both orders where quoted as a range; outputs bit-identical):
- The first version copied each chunk into a per-core buffer, [channels, chunk pixels], which the second conv read
  instead of `out`, with chunks of at most 256 KB of it (V1 g3 17 tiles, g8 10, g1 25). One tile a chunk ran
  slower: V1 g8 0.99-1.00x against the separate kernels, V1 g3 0.94-0.95x; 7 tiles 0.99x and 0.93x; 10-17 tiles
  0.96x and 0.93x; a whole band (25 tiles) 0.995x and 0.92x.
- Reading `out` back instead (one store a vector fewer, half the footprint in L2), same chunks: V1 g8
  0.968-0.979x the time of the buffered kernel, V1 g3 0.998-0.999x, V1 g1 (a whole band a chunk)
  1.006-1.014x.
- Then chunks of 5, 8, 10, 12, 17 and 25 tiles: V1 g8 10 best (5: 1.04x, 25: 1.02x); V1 g3 10 0.982-0.989x the
  time of 17; V1 g1 8-12 0.98x the time of 25, 17 0.99x.

The bands are the rows PartitionRowsAcrossCores gives each core (`band(h) = min(h // ceil(H / bands), bands - 1)`
of a tile's first row), so the depthwise conv after the kernel, which follows those rows, reads what its own core
wrote; at batch N a multiple of the cores, whole images.

V1 g3's 28x28 pairs replayed in the model's sequence (`shuffletvm.bench.sequence.replay`, 15 rounds): 74-125 us
against 150-158 for the two tuned kernels each replaces, warm 62-65 against 77 (the last, whose second conv feeds
the next stage's 120 channels: 105 and 86 against 155 and 106); passes/fuse_grouped_conv_pair.py has the models'
numbers.

Needs a plane of whole vectors of pixels (x86: 28x28; NEON also 14x14). x86's 14x14 stage was tried and left to
the separate kernels: with the plane's last tile overlapping the one before it, V1 g3's seven 14x14 pairs made the
model 1.12-1.13x slower end to end with the buffered kernel (above) and 1.19x with this one (paired, both
orders); each buffered pair ran 118 us warm against 87 for the two tuned kernels (10 channels x 2 rows of 14 pixels
a tile), and a buffered variant with such row tiles still took 105 us alone (1 to 7 rows a tile tried, 105-133 us).

Hand-written and already scheduled (`tirx.is_scheduled`): not a tuning task. CPUs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import tirx

from .. import tvm_compat
from . import OPAQUE, SPLIT_ROWS, registers

CHUNK_LINES = 10  # cache lines of each channel's plane a chunk covers (prefetched runs; read back from L2)


@dataclass(frozen=True)
class GroupedConvPairSpec:
    batch: int
    in_channels: int  # the first conv's input (the depthwise conv's output)
    channels: int  # the first conv's output, the residual's and the second conv's input
    height: int
    width: int
    groups: int  # the first conv's
    shuffle_groups: int  # of the shuffle the first conv reads through (1: none)
    next_channels: int  # the second conv's output
    next_groups: int
    dtype: str = "float32"

    def supported(self, lanes: int) -> str | None:
        """Why the kernel cannot compute this pair with `lanes`-wide vectors, or None."""
        if (self.height * self.width) % lanes:
            return f"plane {self.height}x{self.width} not whole vectors of {lanes} pixels"
        if self.dtype != "float32":
            return f"dtype {self.dtype}"
        for channels, groups, outputs in ((self.in_channels, self.groups, self.channels),
                                          (self.channels, self.next_groups, self.next_channels)):
            if channels % groups or outputs % groups:
                return f"{channels} -> {outputs} channels in {groups} groups"
        if self.in_channels % self.shuffle_groups:
            return f"{self.in_channels} channels shuffled in {self.shuffle_groups} groups"
        return None


def accumulators(lanes: int) -> int:
    """Accumulator registers of a tile: x86 as the hand-written grouped conv schedule takes them (AVX2 keeps
    registers for the broadcast weights it has no memory operand for), NEON all but 4 of its 32."""
    from ..schedules.grouped_conv1x1 import ACCUMULATORS

    return ACCUMULATORS.get(lanes, registers(lanes) - 4)


def channel_tile(group_outputs: int, lanes: int) -> int:
    """Output channels accumulated at once: the largest divisor of a group's output channels that fits."""
    budget = accumulators(lanes)
    return max(t for t in range(1, min(group_outputs, budget) + 1) if group_outputs % t == 0)


def chunk_tiles(lanes: int, tiles: int) -> int:
    """Pixel tiles per chunk: `CHUNK_LINES` cache lines of a channel's plane, at most `tiles` (a band's)."""
    return max(1, min(tiles, CHUNK_LINES * 64 // (lanes * 4)))


def grouped_conv_pair(spec: GroupedConvPairSpec, lanes: int, cores: int, chunk: int | None = None) -> tirx.PrimFunc:
    """(y [N, Cin, H, W], w1 [C, Cin/g], b1 [C], residual [N, C, H, W], w2 [Cn, C/gn], b2 [Cn]) ->
    (out [N, C, H, W] = relu(gconv1x1(shuffle(y), w1) + b1 + residual),
     next [N, Cn, H, W] = relu(gconv1x1(out, w2) + b2)), for a CPU with `lanes`-wide float vectors and `cores`
    cores."""
    from tvm.script import tirx as T

    reason = spec.supported(lanes)
    if reason is not None:
        raise ValueError(f"grouped_conv_pair: {reason}")
    n_, ci_, c_, h_, w_, cn_ = (spec.batch, spec.in_channels, spec.channels, spec.height, spec.width,
                                spec.next_channels)
    cg1, og1 = ci_ // spec.groups, c_ // spec.groups  # the first conv's inputs and outputs per group
    cg2, og2 = c_ // spec.next_groups, cn_ // spec.next_groups
    t1, t2 = channel_tile(og1, lanes), channel_tile(og2, lanes)
    s_, per_shuffle = spec.shuffle_groups, ci_ // spec.shuffle_groups
    tiles = h_ * w_ // lanes
    bands = cores // math.gcd(n_, cores)
    band_rows = -(-h_ // bands)
    dtype = spec.dtype

    # expressions of Python ints, or of the script's variables as it is parsed
    def start(band):  # the band's first tile: the first whose first pixel is in its rows (past the last band: all)
        return (band * band_rows * w_ + lanes - 1) // lanes

    widest = max(min(start(band + 1), tiles) - start(band) for band in range(bands))
    chunk = chunk or chunk_tiles(lanes, widest)
    chunks = -(-widest // chunk)

    def shuffled(j):  # channel j of shuffle(y), (N, s, C/s) -> (N, C/s, s)
        return j % s_ * per_shuffle + j // s_

    def tile(band, first, k):  # the band's chunk `first`, its tile k
        return start(band) + first * chunk + k

    def mine(band, first, k):
        return tile(band, first, k) < T.min(start(band + 1), tiles)

    def row(band, first, k, p):  # pixel p of the tile
        return (tile(band, first, k) * lanes + p) // w_

    def col(band, first, k, p):
        return (tile(band, first, k) * lanes + p) % w_

    @T.macro
    def zero(acc, channels):
        for o in T.unroll(channels):
            for p in T.vectorized(lanes):
                acc[o, p] = T.cast(0, dtype)

    @T.prim_func(private=True, s_tir=True)
    def kernel(y: T.Buffer((n_, ci_, h_, w_), dtype), w1: T.Buffer((c_, cg1), dtype), b1: T.Buffer((c_,), dtype),
               residual: T.Buffer((n_, c_, h_, w_), dtype), w2: T.Buffer((cn_, cg2), dtype),
               b2: T.Buffer((cn_,), dtype), out: T.Buffer((n_, c_, h_, w_), dtype),
               nxt: T.Buffer((n_, cn_, h_, w_), dtype)):
        with T.sblock("root"):
            for task in T.parallel(n_ * bands):
                acc = T.alloc_local((max(t1, t2), lanes), dtype)
                n = task // bands
                band = task % bands
                for first in range(chunks):
                    for block in range(c_ // t1):
                        for k in range(chunk):
                            if mine(band, first, k):
                                zero(acc, t1)
                                for t in range(cg1):
                                    for o in T.unroll(t1):
                                        for p in T.vectorized(lanes):
                                            acc[o, p] = acc[o, p] + y[
                                                n, shuffled(block * t1 // og1 * cg1 + t), row(band, first, k, p),
                                                col(band, first, k, p)] * w1[block * t1 + o, t]
                                for o in T.unroll(t1):
                                    for p in T.vectorized(lanes):
                                        out[n, block * t1 + o, row(band, first, k, p), col(band, first, k, p)] = T.max(
                                            acc[o, p] + b1[block * t1 + o] + residual[
                                                n, block * t1 + o, row(band, first, k, p), col(band, first, k, p)],
                                            T.cast(0, dtype))
                    for block in range(cn_ // t2):
                        for k in range(chunk):
                            if mine(band, first, k):
                                zero(acc, t2)
                                for t in range(cg2):
                                    for o in T.unroll(t2):
                                        for p in T.vectorized(lanes):
                                            acc[o, p] = acc[o, p] + out[
                                                n, block * t2 // og2 * cg2 + t, row(band, first, k, p),
                                                col(band, first, k, p)] * w2[block * t2 + o, t]
                                for o in T.unroll(t2):
                                    for p in T.vectorized(lanes):
                                        nxt[n, block * t2 + o, row(band, first, k, p), col(band, first, k, p)] = T.max(
                                            acc[o, p] + b2[block * t2 + o], T.cast(0, dtype))

    return kernel.with_attrs({tvm_compat.IS_SCHEDULED: True, "op_pattern": OPAQUE, "tirx.noalias": True,
                              SPLIT_ROWS: True})
