"""The stem as one kernel on CPUs: 3x3 conv, stride 2, pad 1 (BatchNorm folded into its weights and bias) ->
ReLU -> 3x3 max pool, stride 2, pad 1. ShuffleNet V1 and V2 both begin so (V1 Table 1, V2 Table 5).

Run as two kernels, the conv writes a [N, C, H/2, W/2] activation that the pool reads back at once: 1.2 MB per
image at 224x224 and 24 channels, 9.6 MB at batch 8 (where the pool ran 272 us warm, 470 us in the model on the
2-core Intel VM: `benchmarks/sequence_profile.py`). Here the conv rows live in a ring of three rows per core:
pool row `py` needs conv rows `2py-1, 2py, 2py+1`, and row `2py-1` is the one computed for `py - 1`, so each
step computes two new conv rows into ring slots `row % 3` and pools them. Every conv row is computed once
(twice only at a core's first row).

    for task in parallel(N * bands):              # image n, band of pool rows [p0, p1)
      conv row 2*p0 - 1 -> ring                   # (none for p0 = 0)
      for py in [p0, p1):
        conv rows 2py, 2py+1 -> ring              # conv: acc[J pixels][C channels] += x * wt, C vectorized
        stage[px][c] = max(0, max over the 3x3 window of ring)    # pool, ReLU
        out[n, :, py, :] = stage transposed

ReLU commutes with max and the pool pads with -inf, so the ReLU is applied once, after the window's max (the
stage starts at 0). Weights are taken as [Cin, 3, 3, C] (`pack_weight`, done once at compile time), so the
innermost loop is a vector of output channels: `J` pixels of `C` channels are the accumulators, `J` chosen so
they fit in vector registers, the channels in vectors of the target's width (`vector_lanes`) and what is left.
Bands: `cores // gcd(N, cores)` per image, so every core gets the same rows (batch 1: each core half the
image's rows, band `i` on core `i`, as PartitionRowsAcrossCores splits the dense kernels after it; batch N, a
multiple of the cores: whole images).

Hand-written and already scheduled (`tirx.is_scheduled`): not a tuning task. CPUs only; on GPUs the two
kernels stay, with their own schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import tirx

from .. import tvm_compat
from . import OPAQUE

ACCUMULATORS = 14  # vector registers for the accumulators (of 16 with AVX2 / 32 with AVX-512 and NEON)
MAX_PIXELS = 8  # pixels per register block: 7 measured best with 24 channels in 16 + 8 lanes (AVX-512)


@dataclass(frozen=True)
class StemSpec:
    batch: int
    in_channels: int
    height: int  # the input's
    width: int
    out_channels: int
    dtype: str = "float32"

    @property
    def conv_shape(self) -> tuple[int, int]:
        return (self.height - 1) // 2 + 1, (self.width - 1) // 2 + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        ch, cw = self.conv_shape
        return self.batch, self.out_channels, (ch - 1) // 2 + 1, (cw - 1) // 2 + 1

    def supported(self) -> str | None:
        """Why the kernel cannot compute this stem, or None. The ring and the window's columns assume an even
        conv output (224 -> 112 -> 56); the channel vectors a multiple of 4 (every ShuffleNet stem: 12-48)."""
        ch, cw = self.conv_shape
        if ch % 2 or cw % 2:
            return f"odd conv output {ch}x{cw}"
        if self.out_channels % 4:
            return f"{self.out_channels} channels, not a multiple of 4"
        if self.dtype != "float32":
            return f"dtype {self.dtype}"
        return None


def channel_vectors(channels: int, lanes: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(full vectors of `lanes` channels, then the (start, length) pieces of 8 and 4 channels left: with a
    multiple of 4 channels, at most two)."""
    full, start, pieces = channels // lanes, channels // lanes * lanes, []
    for length in (8, 4):
        if length < lanes and channels - start >= length:
            pieces.append((start, length))
            start += length
    return full, tuple(pieces)


def pixels_per_block(conv_width: int, registers_per_pixel: int) -> int:
    """The most pixels (at most MAX_PIXELS, dividing the conv row) whose accumulators fit ACCUMULATORS."""
    limit = max(1, min(MAX_PIXELS, ACCUMULATORS // registers_per_pixel))
    return next(j for j in range(limit, 0, -1) if conv_width % j == 0)


def pack_weight(weight: np.ndarray) -> np.ndarray:
    """OIHW [C, Cin, 3, 3] -> [Cin, 3, 3, C]: a vector of output channels per tap."""
    return np.ascontiguousarray(weight.transpose(1, 2, 3, 0))


def stem_conv_pool(spec: StemSpec, lanes: int, cores: int) -> tirx.PrimFunc:
    """(x [N, Cin, H, W], packed weight [Cin, 3, 3, C], bias [C]) -> out [N, C, PH, PW], scheduled for a CPU with
    `lanes`-wide float vectors and `cores` cores."""
    from tvm.script import tirx as T

    reason = spec.supported()
    if reason is not None:
        raise ValueError(f"stem_conv_pool: {reason}")
    n_, ci_, h_, w_, c_ = spec.batch, spec.in_channels, spec.height, spec.width, spec.out_channels
    _, _, ph_, pw_ = spec.out_shape
    cw_ = spec.conv_shape[1]
    full, pieces = channel_vectors(c_, lanes)
    (s1, l1), (s2, l2) = (pieces + ((0, 1), (0, 1)))[:2]  # unused pieces: (0, 1), never emitted
    j_ = pixels_per_block(cw_, full + len(pieces))
    bands = cores // math.gcd(n_, cores)
    rows = -(-ph_ // bands)
    dtype = spec.dtype

    @T.macro
    def channels(op, *args):  # `op(c, *args)` for every channel c: `full` vectors of `lanes`, then the pieces left
        if full > 0:
            for v in T.unroll(full):
                for c in T.vectorized(lanes):
                    op(v * lanes + c, *args)
        if len(pieces) > 0:
            for c in T.vectorized(l1):
                op(s1 + c, *args)
        if len(pieces) > 1:
            for c in T.vectorized(l2):
                op(s2 + c, *args)

    @T.macro
    def init(c, acc, j, bias):  # the bias first: measured 81-89 us against 105 adding it at the store
        acc[j, c] = bias[c]

    @T.macro
    def fma(c, acc, j, value, wt, ci, ky, kx):
        acc[j, c] = acc[j, c] + value * wt[ci, ky, kx, c]

    @T.macro
    def store(c, ring, slot, px, acc, j):
        ring[slot, px, c] = acc[j, c]

    @T.macro
    def zero(c, stage, px):  # the ReLU: the window's max starts at 0
        stage[px, c] = T.cast(0, dtype)

    @T.macro
    def pool(c, stage, px, ring, slot, col):
        stage[px, c] = T.max(stage[px, c], ring[slot, col, c])

    @T.macro
    def conv_row(x, wt, bias, ring, acc, n, cy):
        for block in range(cw_ // j_):
            for j in T.unroll(j_):
                channels(init, acc, j, bias)
            for ci in range(ci_):
                for ky in T.unroll(3):
                    iy = 2 * cy - 1 + ky
                    if iy >= 0 and iy < h_:
                        for kx in T.unroll(3):
                            for j in T.unroll(j_):
                                ix = 2 * (block * j_ + j) - 1 + kx
                                value = T.if_then_else(ix >= 0, x[n, ci, iy, T.max(ix, 0)], T.cast(0, dtype))
                                channels(fma, acc, j, value, wt, ci, ky, kx)
            for j in T.unroll(j_):
                channels(store, ring, cy % 3, block * j_ + j, acc, j)

    @T.prim_func(private=True, s_tir=True)
    def kernel(x: T.Buffer((n_, ci_, h_, w_), dtype), wt: T.Buffer((ci_, 3, 3, c_), dtype),
               bias: T.Buffer((c_,), dtype), out: T.Buffer((n_, c_, ph_, pw_), dtype)):
        with T.sblock("root"):
            for task in T.parallel(n_ * bands):
                ring = T.alloc_buffer((3, cw_, c_), dtype)
                acc = T.alloc_local((j_, c_), dtype)
                stage = T.alloc_buffer((pw_, c_), dtype)
                n = task // bands
                p0 = task % bands * rows
                p1 = T.min(p0 + rows, ph_)
                # step 0: conv row 2*p0 - 1; step s > 0: conv rows 2py, 2py + 1 and pool row py = p0 + s - 1
                for step in range(p1 - p0 + 1):
                    for half in range(T.if_then_else(step == 0, 1, 2)):
                        cy = T.if_then_else(step == 0, 2 * p0 - 1, 2 * (p0 + step - 1) + half)
                        if cy >= 0:
                            conv_row(x, wt, bias, ring, acc, n, cy)
                    if step > 0:
                        py = p0 + step - 1
                        a = (2 * py) % 3
                        b = (2 * py + 1) % 3
                        d = (2 * py + 2) % 3  # row 2py - 1
                        for px in range(pw_):
                            channels(zero, stage, px)
                            channels(pool, stage, px, ring, a, 2 * px)
                            channels(pool, stage, px, ring, a, 2 * px + 1)
                            channels(pool, stage, px, ring, b, 2 * px)
                            channels(pool, stage, px, ring, b, 2 * px + 1)
                            if px > 0:
                                channels(pool, stage, px, ring, a, 2 * px - 1)
                                channels(pool, stage, px, ring, b, 2 * px - 1)
                            if py > 0:
                                channels(pool, stage, px, ring, d, 2 * px)
                                channels(pool, stage, px, ring, d, 2 * px + 1)
                                if px > 0:
                                    channels(pool, stage, px, ring, d, 2 * px - 1)
                        for c in range(c_):
                            for px in T.vectorized(pw_):
                                out[n, c, py, px] = stage[px, c]

    return kernel.with_attrs({tvm_compat.IS_SCHEDULED: True, "op_pattern": OPAQUE, "tirx.noalias": True})
