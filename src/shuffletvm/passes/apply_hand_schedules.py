"""ApplyHandSchedules: hand-written TensorIR schedules (`schedules/`) for the kernels no tuning record covers.

Runs in the pipeline's `schedule` phase after `MetaScheduleApplyDatabase`, which marks the kernels it
scheduled `tirx.is_scheduled`; every other kernel is offered to the rules in `shuffletvm.schedules.RULES`
(depthwise 3×3 conv, grouped/ungrouped 1×1 conv) in order, and on CPUs the rest to `schedules.fallback`
(parallel outer loops). A rule returns None for "not mine"; a rule that fails on a kernel it claimed is a bug
in the rule and is raised, not hidden. On GPUs dlight's default schedules take what is left afterwards.

Counters: `ApplyHandSchedules` (kernels a rule scheduled), `ApplyHandSchedules.fallback`.
Numerically exact: a schedule reorders loops, it does not reassociate sums (each vector lane is its own sum).
"""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import tirx


@tvm.ir.transform.module_pass(opt_level=0, name="ApplyHandSchedules")
class ApplyHandSchedules:
    def __init__(self, counters: Counter | None = None, fallback: bool = True) -> None:
        self.counters = counters if counters is not None else Counter()
        self.fallback = fallback

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        from ..schedules import RULES, fallback

        target = tvm.target.Target.current(allow_none=False)
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
                continue
            for name, rule in RULES.items():
                sch = rule(func, target)
                if sch is not None:
                    updates[gvar] = sch.mod["main"]
                    self.counters[self.__class__.__name__] += 1
                    self.counters[f"{self.__class__.__name__}.{name}"] += 1
                    break
            else:
                sch = fallback.schedule(func, target) if self.fallback else None
                if sch is not None:
                    updates[gvar] = sch.mod["main"]
                    self.counters[f"{self.__class__.__name__}.fallback"] += 1
        if not updates:
            return mod
        mod = mod.clone()
        for gvar, func in updates.items():
            mod.update_func(gvar, func.with_attr("tirx.is_scheduled", True))
        return mod
