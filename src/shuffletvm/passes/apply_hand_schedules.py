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

from .. import tvm_compat


@tvm.ir.transform.module_pass(opt_level=0, name="ApplyHandSchedules")
class ApplyHandSchedules:
    def __init__(self, counters: Counter | None = None) -> None:
        self.counters = counters if counters is not None else Counter()

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        from ..schedules import fallback, first_claim

        target = tvm.target.Target.current(allow_none=False)
        name = self.__class__.__name__
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc) or tvm_compat.is_scheduled(func):
                continue
            claim = first_claim(func, target)
            if claim is not None:
                rule, sch = claim
                self.counters[name] += 1
                self.counters[f"{name}.{rule}"] += 1
            else:
                sch = fallback.schedule(func, target)
                if sch is None:
                    continue
                self.counters[f"{name}.fallback"] += 1
            updates[gvar] = sch.mod["main"]
        if not updates:
            return mod
        mod = mod.clone()
        for gvar, func in updates.items():
            mod.update_func(gvar, func.with_attr(tvm_compat.IS_SCHEDULED, True))
        return mod
