"""Hand-written TensorIR schedules (see README.md), shipped inside the package as `shuffletvm.schedules`.

`RULES` are tried in order; each takes a PrimFunc and a target and returns a scheduled `s_tir.Schedule`, or
None for "not mine". `fallback` is the CPU catch-all for the kernels no rule claims."""

from __future__ import annotations

from . import depthwise_conv3x3, fallback, grouped_conv1x1, matmul

RULES = {
    "depthwise_conv3x3": depthwise_conv3x3.schedule,
    "grouped_conv1x1": grouped_conv1x1.schedule,
    "matmul": matmul.schedule,
}

__all__ = ["RULES", "fallback"]
