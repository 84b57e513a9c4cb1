"""One kernel for concat -> channel shuffle -> channel split (ShuffleNet V2 §2, guideline G4).

The shuffled tensor is never built. Output channel `j` of the shuffle (groups `g`, `C` channels) is channel
`(j % g) * (C / g) + j // g` of the concatenation, and every (n, channel) plane of an output is one contiguous
copy of one input plane: one read and one write per element. The input a plane comes from is picked with
`if_then_else` on the channel, which is loop-invariant for the plane, so the copy loop itself stays a straight
contiguous (vectorizable) loop; indices into the inputs not taken are clamped, so no branch can read out of
bounds.

Schedules: CPU — (n, channel) planes in parallel, each plane a contiguous loop LLVM vectorizes; GPU — one
thread per element. The kernel carries `tirx.is_scheduled`, so dlight and MetaSchedule leave it alone, and
`op_pattern` opaque, so operator fusion keeps it a kernel of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tvm
from tvm import te, tirx

from .. import tvm_compat
from . import OPAQUE

GPU_THREADS = 256


@dataclass(frozen=True)
class ShuffleSpec:
    """What the kernel computes: inputs concatenated on channels, shuffled with `groups`, outputs are the
    channel ranges `[start, stop)` of the shuffled tensor."""

    batch: int
    height: int
    width: int
    in_channels: tuple[int, ...]
    groups: int
    out_ranges: tuple[tuple[int, int], ...]
    dtype: str = "float32"

    @property
    def channels(self) -> int:
        return sum(self.in_channels)

    def source_channel(self, j: int) -> tuple[int, int]:
        """(input index, channel in that input) of shuffled channel `j` — the reference the kernel follows."""
        per_group = self.channels // self.groups
        q = (j % self.groups) * per_group + j // self.groups
        for k, c in enumerate(self.in_channels):
            if q < c:
                return k, q
            q -= c
        raise IndexError(j)

    def bytes_moved(self) -> int:
        elements = sum(stop - start for start, stop in self.out_ranges) * self.batch * self.height * self.width
        return 2 * elements * tvm.DataType(self.dtype).bits // 8


def _check(spec: ShuffleSpec) -> None:
    if spec.groups < 1 or spec.channels % spec.groups:
        raise ValueError(f"{spec.channels} channels cannot be shuffled in {spec.groups} groups")
    for start, stop in spec.out_ranges:
        if not 0 <= start < stop <= spec.channels:
            raise ValueError(f"output range [{start}, {stop}) outside {spec.channels} channels")


def _compute(spec: ShuffleSpec) -> tuple[list[te.Tensor], list[te.Tensor]]:
    n_, h_, w_ = spec.batch, spec.height, spec.width
    inputs = [te.placeholder((n_, c, h_, w_), spec.dtype, name=f"x{k}") for k, c in enumerate(spec.in_channels)]
    per_group = spec.channels // spec.groups
    offsets = [sum(spec.in_channels[:k]) for k in range(len(inputs))]

    def shuffled(n: Any, j: Any, h: Any, w: Any) -> Any:
        q = tirx.floormod(j, spec.groups) * per_group + tirx.floordiv(j, spec.groups)

        def read(k: int) -> Any:
            channel = tirx.max(tirx.min(q - offsets[k], spec.in_channels[k] - 1), 0)
            return inputs[k][n, channel, h, w]

        value = read(len(inputs) - 1)
        for k in reversed(range(len(inputs) - 1)):
            value = tirx.if_then_else(q < offsets[k] + spec.in_channels[k], read(k), value)
        return value

    def output(p: int, start: int, stop: int) -> te.Tensor:
        return te.compute((n_, stop - start, h_, w_), lambda n, i, h, w: shuffled(n, start + i, h, w), name=f"y{p}")

    return inputs, [output(p, start, stop) for p, (start, stop) in enumerate(spec.out_ranges)]


def _schedule_cpu(sch: Any, blocks: list[Any]) -> None:
    for block in blocks:
        n, c, h, w = sch.get_loops(block)
        sch.parallel(sch.fuse(n, c))
        sch.fuse(h, w)


def _schedule_gpu(sch: Any, blocks: list[Any]) -> None:
    for block in blocks:
        fused = sch.fuse(*sch.get_loops(block))
        bx, tx = sch.split(fused, [None, GPU_THREADS])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")


def concat_shuffle_split(spec: ShuffleSpec, target: Any) -> tirx.PrimFunc:
    """The scheduled PrimFunc for `spec` on `target` (inputs first, then one buffer per output range)."""
    from tvm import s_tir

    _check(spec)
    inputs, outputs = _compute(spec)
    func = te.create_prim_func([*inputs, *outputs])
    sch = s_tir.Schedule(func)
    blocks = [sch.get_sblock(t.op.name) for t in outputs]
    gpu = "gpu" in target.keys
    (_schedule_gpu if gpu else _schedule_cpu)(sch, blocks)
    func = sch.mod["main"]
    return func.without_attr("global_symbol").with_attrs({
        tvm_compat.IS_SCHEDULED: True, "op_pattern": OPAQUE,
        # what it computes, for passes that rewrite it again (KeepIdentityInPlace)
        "shuffletvm.concat_channels": list(spec.in_channels), "shuffletvm.shuffled_with": spec.groups,
        "shuffletvm.out_ranges": [c for r in spec.out_ranges for c in r],
    })
