"""Tuning starts from the hand-written schedules: before the search, each kernel a `schedules/` rule claims is
built and measured with the run's own builder and runner, and the result committed to the database as an
ordinary tuning record (its trace is the hand schedule's trace).

Two things follow. The build picks the fastest record per kernel, so a tuned kernel is never slower than the
hand schedule it started from, however short the search. And MetaSchedule's evolutionary search draws part of
its first population from the best records in the database, so the search starts at the hand schedule.

A kernel whose records already include its hand schedule's trace is not measured again (resumed runs).
"""

from __future__ import annotations

import logging
from typing import Any

from .tasks import TuneTask, records_for

logger = logging.getLogger(__name__)


def hand_schedule(task: TuneTask, target: Any) -> tuple[str, Any] | None:
    """(rule name, schedule) of the first `schedules/` rule that claims the task's kernel."""
    from ..schedules import first_claim

    return first_claim(task.extracted.dispatched[0]["main"], target)


def seed_hand_schedules(tasks: list[TuneTask], database: Any, builder: Any, runner: Any, target: Any) -> int:
    """Measure and commit the hand schedule of every task without records; returns how many were committed."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    seeds = []
    for task in tasks:
        found = hand_schedule(task, target)
        if found is None:
            continue
        trace = _trace_text(found[1].trace)
        if any(_trace_text(record.trace) == trace for record in records_for(task, database)):
            continue
        seeds.append((task, *found))
    if not seeds:
        return 0
    logger.info("measuring the hand-written schedules of %d kernels as the search's starting points", len(seeds))
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, _, sch in seeds])
    inputs, measured = [], []
    for (task, name, sch), result in zip(seeds, built):
        if result.error_msg:
            logger.warning("hand schedule %s for %s did not build: %s", name, task.name, result.error_msg.splitlines()[0])
            continue
        args_info = ArgInfo.from_prim_func(task.extracted.dispatched[0]["main"])
        inputs.append(ms.runner.RunnerInput(result.artifact_path, target.kind.name if target.kind.name != "llvm"
                                            else "cpu", args_info))
        measured.append((task, name, sch, args_info))
    committed = 0
    for (task, name, sch, args_info), future in zip(measured, runner.run(inputs)):
        result = future.result()
        if result.error_msg or not result.run_secs:
            logger.warning("hand schedule %s for %s did not run: %s", name, task.name,
                           (result.error_msg or "no timing").splitlines()[0])
            continue
        workload = database.commit_workload(task.extracted.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(
            trace=sch.trace, workload=workload, run_secs=result.run_secs, target=target, args_info=args_info,
        ))
        committed += 1
    return committed


def _trace_text(trace: Any) -> str:
    return "\n".join(trace.as_python(remove_postproc=True))
