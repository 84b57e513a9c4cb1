"""A 1x1 conv (+ bias + ReLU) and the stride-2 3x3 depthwise conv (+ bias) that reads it, as one kernel on CPUs.

Every ShuffleNet stride-2 unit starts its main branch so (V1 Figure 2c, V2 Figure 3d): the 1x1 conv writes a
[N, C, H, W] activation at the input's resolution, and the depthwise conv reads it back at once to produce
[N, C, H/2, W/2]. At the 56x56 stage that activation is 0.73-0.75 MB per image (V2 1.0x: 58 channels, V1 g3: 60),
and in a running model it is written to memory that the rest of the previous inference pushed out of the core's
caches: on the 2-core Intel VM the 56x56 conv alone runs 30 us warm and 72-100 us in the model
(`benchmarks/sequence_profile.py`, `benchmarks/vendor_layers.py`). Here the 1x1 conv's rows live in a ring of
three rows per core, as the stem's conv rows do (`kernels/stem_conv_pool.py`): depthwise row `oy` needs conv rows
`2oy-1, 2oy, 2oy+1`, row `2oy-1` is the one computed for `oy - 1`, so each step computes two new rows into ring
slots `row % 3` and convolves them.

    for task in parallel(N * bands):              # image n, band of output rows [p0, p1)
      conv row 2*p0 - 1 -> ring                   # (zeros for p0 = 0: the depthwise conv's top padding)
      for oy in [p0, p1):
        conv rows 2oy, 2oy+1 -> ring              # acc[J pixels][B channel vectors] += x * w1, ReLU at the store
        stage[ox][c] = b2 + sum of the 3x3 window of ring (stride 2)      # vectorized over channels
        out[n, :, oy, :] = stage transposed

The ring holds channels innermost (`[3, W + 1, Cp]`): the 1x1 conv is an outer product per input channel (a
broadcast pixel times vectors of output channels, `J x B` accumulators that fit the registers), and the
depthwise conv's taps at stride 2 are whole vectors of channels, no deinterleaving. Column 0 stays zero (the
left padding), so no tap tests a bound; the channels are zero-padded to whole vectors (`Cp`; 58 -> 64), their
weights and biases zero, and never stored. Weights are packed once at compile time (`pack_weights`): the 1x1
conv's as [Cin, Cp], the depthwise conv's as [3, 3, Cp]. Bands: `cores // gcd(N, cores)` per image (batch 1 on
2 cores: each core half the output rows, the conv row above its band computed on both), whole images at
batch N a multiple of the cores.

Alone, warm, 2 threads on the 2-core Intel VM: V2 1.0x's 56x56 pair (24 -> 58 channels) 54-58 us, where the
tuned 1x1 conv alone ran 30 us warm and 70-100 in the model; the 28x28 pair (116 -> 116) 100-110 us. In the
models: passes/fuse_expand_depthwise.py.

Hand-written and already scheduled (`tirx.is_scheduled`): not a tuning task. CPUs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import tirx

from .. import tvm_compat
from . import OPAQUE, registers


@dataclass(frozen=True)
class ExpandDepthwiseSpec:
    batch: int
    in_channels: int
    height: int  # the 1x1 conv's plane (the input's)
    width: int
    channels: int  # the 1x1 conv's output channels, each its own depthwise filter's
    dtype: str = "float32"

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.channels, self.height // 2, self.width // 2

    def supported(self) -> str | None:
        """Why the kernel cannot compute this pair, or None. An even plane: the depthwise conv's last window
        ends on the plane's last row and column (no bottom or right padding read)."""
        if self.height % 2 or self.width % 2:
            return f"odd plane {self.height}x{self.width}"
        if self.dtype != "float32":
            return f"dtype {self.dtype}"
        return None


def padded_channels(channels: int, lanes: int) -> int:
    return -(-channels // lanes) * lanes


def conv_tile(vectors: int, width: int, lanes: int) -> tuple[int, int]:
    """(B channel vectors, J pixels) of the 1x1 conv's register tile: B divides the vectors, J the row, J x B
    accumulators plus B weight vectors within the registers (one left for the broadcast pixel), the most reuse
    (J B / (J + B): each weight vector serves J pixels, each pixel B vectors), then the most accumulators."""
    budget = registers(lanes) - 1
    tiles = [(b, j) for b in range(1, vectors + 1) if vectors % b == 0
             for j in range(1, width + 1) if width % j == 0 and j * b + b <= budget]
    return max(tiles, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), t[0] * t[1]))


def pack_weights(conv_weight: np.ndarray, conv_bias: np.ndarray, dw_weight: np.ndarray, dw_bias: np.ndarray,
                 lanes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OIHW [C, Cin, 1, 1], [C], [C, 1, 3, 3], [C] -> [Cin, Cp], [Cp], [3, 3, Cp], [Cp], channels zero-padded
    to whole vectors of `lanes`."""
    channels, in_channels = conv_weight.shape[:2]
    cp = padded_channels(channels, lanes)
    w1 = np.zeros((in_channels, cp), conv_weight.dtype)
    w1[:, :channels] = conv_weight.reshape(channels, in_channels).T
    wd = np.zeros((3, 3, cp), dw_weight.dtype)
    wd[:, :, :channels] = dw_weight.reshape(channels, 3, 3).transpose(1, 2, 0)
    b1, b2 = (np.pad(b.reshape(-1), (0, cp - channels)) for b in (conv_bias, dw_bias))
    return w1, b1, wd, b2


def expand_depthwise(spec: ExpandDepthwiseSpec, lanes: int, cores: int) -> tirx.PrimFunc:
    """(x [N, Cin, H, W], w1 [Cin, Cp], b1 [Cp], wd [3, 3, Cp], b2 [Cp]) -> out [N, C, H/2, W/2] =
    depthwise3x3_stride2(relu(conv1x1(x, w1) + b1), wd) + b2, scheduled for a CPU with `lanes`-wide float
    vectors and `cores` cores."""
    from tvm.script import tirx as T

    reason = spec.supported()
    if reason is not None:
        raise ValueError(f"expand_depthwise: {reason}")
    n_, ci_, h_, w_, c_ = spec.batch, spec.in_channels, spec.height, spec.width, spec.channels
    _, _, oh_, ow_ = spec.out_shape
    cp_ = padded_channels(c_, lanes)
    vectors = cp_ // lanes
    b_, j_ = conv_tile(vectors, w_, lanes)
    bands = cores // math.gcd(n_, cores)
    rows = -(-oh_ // bands)
    dtype = spec.dtype

    @T.macro
    def conv_row(x, w1, b1, ring, acc, n, y, slot):  # ring[slot, 1 + px, :] = relu(x[n, :, y, px] . w1 + b1)
        for cb in range(vectors // b_):
            for block in range(w_ // j_):
                for j in T.unroll(j_):
                    for v in T.unroll(b_):
                        for c in T.vectorized(lanes):
                            acc[j, v * lanes + c] = b1[(cb * b_ + v) * lanes + c]
                for ci in range(ci_):
                    for j in T.unroll(j_):
                        for v in T.unroll(b_):
                            for c in T.vectorized(lanes):
                                acc[j, v * lanes + c] = (acc[j, v * lanes + c]
                                                         + x[n, ci, y, block * j_ + j] * w1[ci, (cb * b_ + v) * lanes + c])
                for j in T.unroll(j_):
                    for v in T.unroll(b_):
                        for c in T.vectorized(lanes):
                            ring[slot, 1 + block * j_ + j, (cb * b_ + v) * lanes + c] = T.max(
                                acc[j, v * lanes + c], T.cast(0, dtype))

    @T.macro
    def zero_row(ring, slot):  # the depthwise conv's top padding
        for col in range(w_ + 1):
            for c in T.vectorized(cp_):
                ring[slot, col, c] = T.cast(0, dtype)

    @T.macro
    def window(stage, ring, wd, b2, ox, k, r0, r1, r2):  # the depthwise conv at output pixel ox, channel k
        # (k an expression, substituted: bound by a Let inside the vectorized loop, TVM 0.27 computed wrong sums)
        stage[ox, k] = (b2[k]
                        + wd[0, 0, k] * ring[r0, 2 * ox, k] + wd[0, 1, k] * ring[r0, 2 * ox + 1, k]
                        + wd[0, 2, k] * ring[r0, 2 * ox + 2, k] + wd[1, 0, k] * ring[r1, 2 * ox, k]
                        + wd[1, 1, k] * ring[r1, 2 * ox + 1, k] + wd[1, 2, k] * ring[r1, 2 * ox + 2, k]
                        + wd[2, 0, k] * ring[r2, 2 * ox, k] + wd[2, 1, k] * ring[r2, 2 * ox + 1, k]
                        + wd[2, 2, k] * ring[r2, 2 * ox + 2, k])

    @T.prim_func(private=True, s_tir=True)
    def kernel(x: T.Buffer((n_, ci_, h_, w_), dtype), w1: T.Buffer((ci_, cp_), dtype), b1: T.Buffer((cp_,), dtype),
               wd: T.Buffer((3, 3, cp_), dtype), b2: T.Buffer((cp_,), dtype),
               out: T.Buffer((n_, c_, oh_, ow_), dtype)):
        with T.sblock("root"):
            for task in T.parallel(n_ * bands):
                ring = T.alloc_buffer((3, w_ + 1, cp_), dtype)
                acc = T.alloc_local((j_, b_ * lanes), dtype)
                stage = T.alloc_buffer((ow_, cp_), dtype)
                n = task // bands
                p0 = task % bands * rows
                p1 = T.min(p0 + rows, oh_)
                for slot in range(3):  # column 0: the left padding
                    for c in T.vectorized(cp_):
                        ring[slot, 0, c] = T.cast(0, dtype)
                # step 0: conv row 2*p0 - 1; step s > 0: conv rows 2oy, 2oy + 1 and output row oy = p0 + s - 1
                for step in range(p1 - p0 + 1):
                    for half in range(T.if_then_else(step == 0, 1, 2)):
                        y = T.if_then_else(step == 0, 2 * p0 - 1, 2 * (p0 + step - 1) + half)
                        if y >= 0:
                            conv_row(x, w1, b1, ring, acc, n, y, y % 3)
                        else:
                            zero_row(ring, 2)
                    if step > 0:
                        oy = p0 + step - 1
                        r0 = (2 * oy + 2) % 3  # row 2oy - 1
                        r1 = (2 * oy) % 3
                        r2 = (2 * oy + 1) % 3
                        for v in range(vectors):
                            for ox in range(ow_):
                                for c in T.vectorized(lanes):
                                    window(stage, ring, wd, b2, ox, v * lanes + c, r0, r1, r2)
                        for c in range(c_):
                            for ox in T.vectorized(ow_):
                                out[n, c, oy, ox] = stage[ox, c]

    return kernel.with_attrs({tvm_compat.IS_SCHEDULED: True, "op_pattern": OPAQUE, "tirx.noalias": True})
