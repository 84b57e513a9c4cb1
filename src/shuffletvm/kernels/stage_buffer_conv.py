"""1×1 convolutions that read their input channels from, or write their output channels into, chosen channels
("slots") of a stage buffer: how `passes/keep_identity_in_place.py` lets ShuffleNet V2's identity half stay
where it is.

    gather:   out[n, o, h, w]        = sum_t  W[o, t] * buf[n, slots[t], h, w]
    scatter:  buf[n, slots[o], h, w] = relu(sum_t W[o, t] * x[n, t, h, w] + bias[o])     (in place on buf)

`slots` is an int32 tensor (a compile-time constant of the graph, not of the kernel), so every unit of a stage
shares one kernel per shape whatever its channel placement. A slot is clamped into the buffer, so the kernel
stays in bounds whatever table it is given (MetaSchedule measures kernels with random inputs).

Weights are OIHW ([O, Cin, 1, 1], block `conv2d_nchw`, reduction axes rc, ry, rx: what
`schedules/grouped_conv1x1.py` schedules). Their blocks are the plain conv kernel's as operator fusion leaves it
(`pad_temp` -> `conv2d_nchw` -> `T_add` -> `compute`), with the gather in `pad_temp` and the scatter in
`compute`'s store, so a tuning record of the plain conv replays on them (`tuning/seeds.py`). There is no
packed-weight variant: vectorized over output channels, the scatter store lands each lane in another channel
plane (measured on a 7x7 stage: 91 us against 42 for the plain packed conv; see the pass). The gather kernel is `op_pattern` OutEWiseFusable
(its bias and ReLU fuse after it, as for any conv); the scatter kernel carries bias and ReLU itself and is
opaque, since it is called in place (`call_tir_inplace`), which operator fusion does not merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvm import te, tirx

from . import OPAQUE
from .shuffled_group_conv import OUT_EWISE_FUSABLE, i64

CONV_BLOCK = "conv2d_nchw"


@dataclass(frozen=True)
class BufferConvSpec:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    buffer_channels: int  # the stage buffer's channels (gather: the input's, scatter: the output's)
    dtype: str = "float32"


def role(dtypes: list[str]) -> str | None:
    """"gather" or "scatter" if these are a stage-buffer conv kernel's parameter dtypes, else None. The int32
    table says which: gather (buf, slots, weight[, bias, ...], out) — operator fusion appends the epilogue's
    operands —, scatter (x, weight, bias, slots, buf)."""
    if "int32" not in dtypes:
        return None
    return {1: "gather", 3: "scatter"}.get(dtypes.index("int32"))


def _slot(table: Any, index: Any, channels: int) -> Any:
    return tirx.max(tirx.min(table[index].astype("int64"), i64(channels - 1)), i64(0))


def gather_conv1x1(spec: BufferConvSpec) -> tirx.PrimFunc:
    """(buf [N, Cbuf, H, W], slots [Cin] int32, weight) -> out [N, O, H, W]."""
    n_, c_, o_, h_, w_ = (i64(v) for v in (spec.batch, spec.buffer_channels, spec.out_channels, spec.height,
                                             spec.width))
    data = te.placeholder((n_, c_, h_, w_), spec.dtype, name="data")
    slots = te.placeholder((i64(spec.in_channels),), "int32", name="slots")
    weight = te.placeholder((o_, i64(spec.in_channels), i64(1), i64(1)), spec.dtype, name="weight")
    rc = te.reduce_axis((i64(0), i64(spec.in_channels)), name="rc")
    ry = te.reduce_axis((i64(0), i64(1)), name="ry")
    rx = te.reduce_axis((i64(0), i64(1)), name="rx")
    # as TOPI's conv2d: a pad_temp stage (here: the gather) read by the conv
    pad = te.compute((n_, i64(spec.in_channels), h_, w_),
                     lambda n, c, h, w: data[n, _slot(slots, c, spec.buffer_channels), h, w], name="pad_temp")

    def compute(n, o, h, w):
        return te.sum(pad[n, rc, h + ry, w + rx] * weight[o, rc, ry, rx], axis=[rc, ry, rx])

    out = te.compute((n_, o_, h_, w_), compute, name=CONV_BLOCK)
    func = te.create_prim_func([data, slots, weight, out])
    return (func.without_attr("global_symbol").with_attr("op_pattern", OUT_EWISE_FUSABLE)
            .with_attr("shuffletvm.stage_buffer", "gather"))


def scatter_conv1x1(spec: BufferConvSpec) -> tirx.PrimFunc:
    """(x [N, Cin, H, W], weight, bias [1, O, 1, 1], slots [O] int32, buf [N, Cbuf, H, W]) -> buf, written in
    place (argument 4) at channels `slots` only."""
    from tvm.script import tirx as T

    n_, ci, co, h_, w_, cb = (T.int64(v) for v in (spec.batch, spec.in_channels, spec.out_channels, spec.height,
                                                    spec.width, spec.buffer_channels))
    dtype, top = spec.dtype, T.int64(spec.buffer_channels - 1)
    one, zero = T.int64(1), T.int64(0)

    @T.prim_func(private=True, s_tir=True)
    def kernel(data: T.Buffer((n_, ci, h_, w_), dtype), weight: T.Buffer((co, ci, one, one), dtype),
               bias: T.Buffer((one, co, one, one), dtype), slots: T.Buffer((co,), "int32"),
               buf: T.Buffer((n_, cb, h_, w_), dtype)):
        pad_temp = T.sblock_alloc_buffer((n_, ci, h_, w_), dtype)
        conv = T.sblock_alloc_buffer((n_, co, h_, w_), dtype)
        biased = T.sblock_alloc_buffer((n_, co, h_, w_), dtype)
        for n, c, h, w in T.grid(n_, ci, h_, w_):
            with T.sblock("pad_temp"):
                v_n, v_c, v_h, v_w = T.axis.remap("SSSS", [n, c, h, w])
                pad_temp[v_n, v_c, v_h, v_w] = data[v_n, v_c, v_h, v_w]
        for n, o, h, w, rc, ry, rx in T.grid(n_, co, h_, w_, ci, one, one):
            with T.sblock("conv2d_nchw"):
                v_n, v_o, v_h, v_w, v_rc, v_ry, v_rx = T.axis.remap("SSSSRRR", [n, o, h, w, rc, ry, rx])
                with T.init():
                    conv[v_n, v_o, v_h, v_w] = T.cast(0, dtype)
                conv[v_n, v_o, v_h, v_w] = conv[v_n, v_o, v_h, v_w] + pad_temp[v_n, v_rc, v_h + v_ry, v_w + v_rx] \
                    * weight[v_o, v_rc, v_ry, v_rx]
        for n, o, h, w in T.grid(n_, co, h_, w_):
            with T.sblock("T_add"):
                v_n, v_o, v_h, v_w = T.axis.remap("SSSS", [n, o, h, w])
                biased[v_n, v_o, v_h, v_w] = conv[v_n, v_o, v_h, v_w] + bias[zero, v_o, zero, zero]
        for n, o, h, w in T.grid(n_, co, h_, w_):
            with T.sblock("compute"):
                v_n, v_o, v_h, v_w = T.axis.remap("SSSS", [n, o, h, w])
                buf[v_n, T.max(T.min(T.Cast("int64", slots[v_o]), top), zero), v_h, v_w] = T.max(
                    biased[v_n, v_o, v_h, v_w], T.cast(0, dtype))

    return (kernel.with_attr("op_pattern", OPAQUE).with_attr("tirx.noalias", True)
            .with_attr("shuffletvm.stage_buffer", "scatter"))
