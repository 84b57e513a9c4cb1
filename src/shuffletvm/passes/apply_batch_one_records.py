"""ApplyBatchOneRecords: at batch N, a kernel with no tuning record of its own takes its batch-1 kernel's record,
replayed with the batch loop's outermost tile taking the N images.

Runs in the pipeline's `schedule` phase after `MetaScheduleApplyDatabase` (kernels it scheduled carry
`tirx.is_scheduled` and are left alone) and before `ApplyHandSchedules`. It needs the same model lowered at
batch 1 (`batch_one`: the kernels the pipeline's phases up to `legalize` make of it, by name), which
`build` gives it when the batch is above 1 and a tuning log is applied. A kernel is taken when its batch-1
namesake has the same parameters but for the leading dimension of the activations (`seeds.batch_twins`) and
the database has a record for it; the replay is the one the tuner seeds batch-N searches with
(`seeds.replay_widened`). Where the trace does not replay the kernel is left to the hand-written schedules.

Why: a log tuned at batch 1 covered no kernel of a batch-4 build, which then ran on hand schedules; measured
at batch 8 the batch-1 records replayed ran the stem in 676 us against a hand or cold-started 2.5 ms.

A kernel whose own record the log's `in_model.json` set aside (`hand_chosen`: its workload hashes) keeps the
hand-written schedule it was chosen for; the batch-1 records come from the whole log, so a batch-1 kernel's
choice does not decide its batch-N twin's.

Counter: `ApplyBatchOneRecords` (kernels scheduled from a batch-1 record).
Numerically exact: the replay reorders and splits loops as the batch-1 schedule does (tests/test_tuning.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import tvm
from tvm import tirx

from .. import tvm_compat


@tvm.ir.transform.module_pass(opt_level=0, name="ApplyBatchOneRecords")
class ApplyBatchOneRecords:
    def __init__(self, database: Any, batch_one: dict[str, Any], counters: Counter | None = None,
                 hand_chosen: frozenset[str] = frozenset()) -> None:
        self.database, self.batch_one, self.hand_chosen = database, batch_one, hand_chosen
        self.counters = counters if counters is not None else Counter()

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

        from ..tuning.database import workload_key
        from ..tuning.seeds import batch_twins, replay_widened

        target = tvm.target.Target.current(allow_none=False)
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc) or tvm_compat.is_scheduled(func):
                continue
            twin = self.batch_one.get(gvar.name_hint)
            if twin is None or not batch_twins(func, twin):
                continue
            if self.hand_chosen and workload_key(_normalize_mod(func)) in self.hand_chosen:
                continue
            record = self.database.query_tuning_record(_normalize_mod(twin), target, gvar.name_hint)
            if record is None:
                continue
            sch = replay_widened(record.trace, _normalize_mod(func), gvar.name_hint)
            if sch is not None:
                updates[gvar] = sch.mod["main"]
        if not updates:
            return mod
        self.counters[self.__class__.__name__] += len(updates)
        mod = mod.clone()
        for gvar, func in updates.items():
            mod.update_func(gvar, func.with_attr(tvm_compat.IS_SCHEDULED, True))
        return mod
