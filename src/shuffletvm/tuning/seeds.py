"""Tuning starts from the hand-written schedules: before the search, each kernel a `schedules/` rule claims is
built and measured with the run's own builder and runner, and the result committed to the database as an
ordinary tuning record (its trace is the hand schedule's trace).

Two things follow. The build picks the fastest record per kernel, so a tuned kernel is never slower than the
hand schedule it started from, however short the search. And MetaSchedule's evolutionary search draws part of
its first population from the best records in the database, so the search starts at the hand schedule.
The hand schedule as it is now is measured for every kernel a run selects, those the log already covers too: a
hand schedule improved since a kernel's records were logged is a new trace, and without its own record the build
would keep the stale records over it (measured, session 22 on the Intel class: V2 1.0x at batch 8, tuned 14.3 ms
end to end against 12.9 with hand schedules only; its 14x14 depthwise conv 55 us with the log's record, 35 with
today's hand schedule).

KeepIdentityInPlace's stage-buffer convs get a second seed: the tuned schedule of the plain 1x1 conv they
replace (same blocks, a channel table in one read or store), replayed on them — a new workload then starts from
what the log already learnt for its twin, not from scratch.

At batch N > 1 every kernel gets a third: its batch-1 kernel's best record, replayed with the batch loop's
outermost tile widened from 1 to N (the images become more outer, parallel iterations of the batch-1
schedule). The search at batch N starts from poor schedules for the kernels whose batch-1 schedule tiles
small planes finely (measured, V2 1.0x at batch 8: the stem 2513 us with its own record of 48 trials vs 632 us
replayed from batch 1; the 58-channel 28x28 1x1 convs 324-395 us vs 116-125 us). Unlike the other seeds this
one is measured for kernels the log already covers, so a batch-N log catches up with its batch-1 records.

A kernel new to this target's log whose kernel a kindred CPU's log has tuned (same preset and SIMD width,
another CPU model: `database.kindred_log`) first gets that log's best records, replayed and measured here.

A kernel whose records already include a seed's trace is not measured again (resumed runs), except by
`--remeasure`, which measures the hand schedule's record again with the kernel's best ones (`remeasured`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .tasks import TuneTask, records_for

logger = logging.getLogger(__name__)


def hand_schedule(task: TuneTask, target: Any) -> tuple[str, Any] | None:
    """(rule name, schedule) of the first `schedules/` rule that claims the task's kernel."""
    from ..schedules import first_claim

    return first_claim(task.extracted.dispatched[0]["main"], target)


def hand_seeds(tasks: list[TuneTask], database: Any, target: Any) -> list[tuple[TuneTask, str, Any]]:
    """(task, rule name, schedule) for each task whose hand schedule, as it is now, is not among its records."""
    seeds = []
    for task in tasks:
        found = hand_schedule(task, target)
        if found is not None and not _recorded(task, found[1], database):
            seeds.append((task, *found))
    return seeds


def seed_plain_twins(tasks: list[TuneTask], database: Any, builder: Any, runner: Any, target: Any) -> int:
    """KeepIdentityInPlace's stage-buffer convs (kernels/stage_buffer_conv.py) are the plain 1x1 conv kernel
    with a channel table in its input read or output store, block for block: replay the plain conv's best
    record (if the database has one) on each, measure it and commit it. Returns how many were committed."""
    seeds = []
    for task in tasks:
        sch = plain_twin_schedule(task, database, target)
        if sch is not None and not _recorded(task, sch, database):
            seeds.append((task, "plain conv's record", sch))
    if seeds:
        logger.info("measuring %d stage-buffer convs with their plain conv's tuned schedule", len(seeds))
    return measure_and_commit(seeds, database, builder, runner, target)


def remeasured(tasks: list[TuneTask], database: Any, target: Any, k: int) -> list[tuple[TuneTask, str, Any]]:
    """(task, name, schedule) for each task's best `k` records, their traces replayed: measured and committed
    again, they are ranked by this run's runner (`TuneConfig.remeasure`). The task's hand schedule comes with
    them where the log holds it outside those `k`: its one time may have been taken while the machine was busy
    (session 23: V1 g3 2.0x's hand schedules timed while another process ran, several times their time), and a
    record never measured again keeps the build on slower tuned records (there: 6 of 27 kernels 1.1-2.0x their
    hand schedule's time). (A hand schedule the log does not hold yet is measured anyway: `hand_seeds`.)"""
    again = []
    for task in tasks if k > 0 else []:
        best = _replayed([task], database, k, "measured again")
        found = hand_schedule(task, target)
        if (found is not None and _recorded(task, found[1], database)
                and _trace_text(found[1].trace) not in {_trace_text(sch.trace) for _, _, sch in best}):
            best.append((task, f"hand schedule ({found[0]}), measured again", found[1]))
        again += best
    return again


def kindred_seeds(tasks: list[TuneTask], kindred: Any, k: int, database: Any) -> list[tuple[TuneTask, str, Any]]:
    """(task, name, schedule) for the best `k` records of each task in `kindred`, another CPU's database
    (`database.kindred_log`), replayed on it, less the schedules this target's `database` already holds: a
    kernel new to this target's log starts from what was learnt for it elsewhere, measured here, rather than
    from its hand schedule alone; a kernel it has tuned picks up only what the kindred log has learnt since
    (`TuneConfig.kindred_all`)."""
    seeds = _replayed(tasks, kindred, k, "kindred CPU's record")
    return [(task, name, sch) for task, name, sch in seeds if not _recorded(task, sch, database)]


def _replayed(tasks: list[TuneTask], database: Any, k: int, name: str) -> list[tuple[TuneTask, str, Any]]:
    from tvm import s_tir

    again = []
    for task in tasks if k > 0 else []:
        for record in records_for(task, database, k):
            sch = s_tir.Schedule(task.extracted.dispatched[0])
            record.trace.apply_to_schedule(sch, remove_postproc=False)
            again.append((task, name, sch))
    return again


def batch_twin_seeds(tasks: list[TuneTask], batch_one: list[TuneTask], database: Any,
                     target: Any) -> list[tuple[TuneTask, str, Any]]:
    """(task, name, schedule) for each of `tasks` (kernels at batch N) whose batch-1 kernel (in `batch_one`: the
    same kernel of the same models at batch 1) has a record this task's records do not already include."""
    by_name = {t.name: t for t in batch_one}
    seeds = []
    for task in tasks:
        twin = by_name.get(task.name)
        if twin is None or not batch_twins(task.extracted.dispatched[0]["main"], twin.extracted.dispatched[0]["main"]):
            continue
        sch = batch_twin_schedule(task, twin, database, target)
        if sch is not None and not _recorded(task, sch, database):
            seeds.append((task, "batch-1 record", sch))
    return seeds


def batch_twin_schedule(task: TuneTask, twin: TuneTask, database: Any, target: Any) -> Any | None:
    """The best record of `twin` (the batch-1 kernel) replayed on `task`'s kernel (`replay_widened`)."""
    best = records_for(twin, database, 1)
    if not best:
        return None
    return replay_widened(best[0].trace, task.extracted.dispatched[0], task.name)


def replay_widened(trace: Any, mod: Any, name: str = "") -> Any | None:
    """A batch-1 kernel's trace replayed on the same kernel at batch N (`mod`): every tile decision whose loop
    is longer here (the batch loop) puts the extra factor in its outermost tile. None if it does not replay."""
    from tvm import s_tir

    sch = s_tir.Schedule(mod)

    def widen_outer_tile(inst: Any, inputs: list[Any], _attrs: list[Any], decision: Any) -> Any:
        if inst.kind.name != "SamplePerfectTile":
            return decision
        factors = [int(f) for f in decision]
        extent, product = int(sch.get(inputs[0]).extent), int(np.prod(factors))
        if extent != product and extent % product == 0:
            factors[0] *= extent // product
        return factors

    try:
        trace.apply_to_schedule(sch, remove_postproc=False, decision_provider=widen_outer_tile)
    except Exception as err:  # noqa: BLE001 - TVM's own error types; the caller has other schedules
        logger.debug("the batch-1 schedule does not replay on %s: %s", name, str(err).splitlines()[0])
        return None
    return sch


def batch_twins(func: Any, batch_one: Any) -> bool:
    """Whether `batch_one` is `func` at batch 1: same parameters, only the leading dimension of some (the
    activations) 1 instead of N."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    params, twin_params = ArgInfo.from_prim_func(func), ArgInfo.from_prim_func(batch_one)
    if len(params) != len(twin_params):
        return False
    for param, twin in zip(params, twin_params):
        shape, twin_shape = [int(d) for d in param.shape], [int(d) for d in twin.shape]
        if str(param.dtype) != str(twin.dtype) or len(shape) != len(twin_shape) or shape[1:] != twin_shape[1:]:
            return False
        if shape[:1] != twin_shape[:1] and twin_shape[:1] != [1]:
            return False
    return True


def plain_twin_schedule(task: TuneTask, database: Any, target: Any) -> Any | None:
    """The database's best schedule of the plain conv `task`'s stage-buffer conv is made from, replayed on it."""
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    func = task.extracted.dispatched[0]["main"]
    twin = plain_twin(func, target)
    if twin is None:
        return None
    record = database.query_tuning_record(_normalize_mod(twin), target, task.name)
    if record is None:
        return None
    sch = s_tir.Schedule(task.extracted.dispatched[0])
    try:
        record.trace.apply_to_schedule(sch, remove_postproc=False)
    except Exception as err:  # noqa: BLE001 - TVM's own error types; the search still starts from the hand schedule
        logger.debug("the plain conv's schedule does not replay on %s: %s", task.name, str(err).splitlines()[0])
        return None
    return sch


def plain_twin(func: Any, target: Any) -> Any | None:
    """The fused conv + bias + ReLU kernel the pipeline makes of the plain 1x1 conv this stage-buffer conv
    replaces (built the same way: a one-conv graph through the pipeline's phases), or None: not one."""
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from ..kernels.stage_buffer_conv import role
    from ..pipeline import lower_for_tuning

    params = ArgInfo.from_prim_func(func)
    shapes = [[int(v) for v in p.shape] for p in params]
    kind = role([str(p.dtype) for p in params])
    if kind is None:
        return None
    n, _c, h, w = shapes[0]
    cin, cout = (shapes[1][0], shapes[-1][1]) if kind == "gather" else (shapes[0][1], shapes[2][1])
    x = relax.Var("x", relax.TensorType((n, cin, h, w), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, relax.const(np.zeros((cout, cin, 1, 1), np.float32))))
            out = bb.emit_output(relax.op.nn.relu(relax.op.add(conv, relax.const(np.zeros((1, cout, 1, 1), np.float32)))))
        bb.emit_func_output(out)
    lowered = lower_for_tuning(bb.get(), target)
    kernels = [f for f in lowered.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    if len(kernels) != 1:
        return None
    # OIHW weights, as the stage-buffer convs have (the layout phase packs none of the convs it replaces)
    return kernels[0] if len(ArgInfo.from_prim_func(kernels[0])[1].shape) == 4 else None


def _recorded(task: TuneTask, sch: Any, database: Any) -> bool:
    trace = _trace_text(sch.trace)
    return any(_trace_text(record.trace) == trace for record in records_for(task, database))


def measure_and_commit(seeds: list[tuple], database: Any, builder: Any, runner: Any, target: Any,
                       rounds: int = 1, chunk: int = 32) -> int:
    """Build and measure (task, name, schedule) seeds with the run's builder and runner; commit those that ran,
    `chunk` at a time (a stopped run keeps what it measured). With `rounds` > 1 the chunk is measured that many
    times in turn and each record keeps its fastest round: this machine's slow phases only ever add time, and a
    candidate measured once inside one loses to worse ones measured outside it."""
    from tqdm import tqdm

    committed = 0
    with tqdm(total=len(seeds), unit="record", desc="starting points", dynamic_ncols=True,
              disable=len(seeds) <= chunk) as bar:
        for i in range(0, len(seeds), chunk):
            committed += _measure_and_commit(seeds[i:i + chunk], database, builder, runner, target, rounds)
            bar.update(len(seeds[i:i + chunk]))
    return committed


def _measure_and_commit(seeds: list[tuple], database: Any, builder: Any, runner: Any, target: Any,
                        rounds: int) -> int:
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    if not seeds:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, _, sch in seeds])
    inputs, measured = [], []
    for (task, name, sch), result in zip(seeds, built):
        if result.error_msg:
            logger.warning("seed (%s) for %s did not build: %s", name, task.name, result.error_msg.splitlines()[0])
            continue
        args_info = ArgInfo.from_prim_func(task.extracted.dispatched[0]["main"])
        inputs.append(ms.runner.RunnerInput(result.artifact_path, target.kind.name if target.kind.name != "llvm"
                                            else "cpu", args_info))
        measured.append((task, name, sch, args_info))
    best: list[float | None] = [None] * len(measured)
    for _ in range(rounds):
        for index, future in enumerate(runner.run(inputs)):
            result = future.result()
            task, name = measured[index][:2]
            if result.error_msg or not result.run_secs:
                logger.warning("seed (%s) for %s did not run: %s", name, task.name,
                               (result.error_msg or "no timing").splitlines()[0])
                continue
            seconds = sum(float(s) for s in result.run_secs) / len(result.run_secs)
            best[index] = seconds if best[index] is None else min(best[index], seconds)
    committed = 0
    for (task, _name, sch, args_info), seconds in zip(measured, best):
        if seconds is None:
            continue
        workload = database.commit_workload(task.extracted.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(
            trace=sch.trace, workload=workload, run_secs=[seconds], target=target, args_info=args_info,
        ))
        committed += 1
    return committed


def _trace_text(trace: Any) -> str:
    return "\n".join(trace.as_python(remove_postproc=True))
