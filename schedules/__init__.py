"""Hand-written TensorIR schedules (see README.md), shipped inside the package as `shuffletvm.schedules`.

`RULES` are tried in order; each takes a PrimFunc and a target and returns a scheduled `s_tir.Schedule`, or
None for "not mine". `fallback` is the CPU catch-all for the kernels no rule claims."""

from __future__ import annotations

from typing import Any

from . import depthwise_conv3x3, fallback, grouped_conv1x1, matmul, packed_conv1x1

RULES = {
    "depthwise_conv3x3": depthwise_conv3x3.schedule,
    "grouped_conv1x1": grouped_conv1x1.schedule,
    "packed_conv1x1": packed_conv1x1.schedule,
    "matmul": matmul.schedule,
}

__all__ = ["RULES", "fallback", "first_claim"]


def first_claim(func: Any, target: Any) -> tuple[str, Any] | None:
    """(rule name, schedule) of the first rule in `RULES` that claims `func`, or None."""
    for name, rule in RULES.items():
        sch = rule(func, target)
        if sch is not None:
            return name, sch
    return None
