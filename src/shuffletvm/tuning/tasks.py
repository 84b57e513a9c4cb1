"""Tuning tasks: the distinct TensorIR kernels of one or more models, and how many trials each still needs.

Tasks are extracted after the pipeline's `legalize` phase (`pipeline.lower_for_tuning`), exactly as the build
will look them up. MetaSchedule's database identifies a workload by structural hash, so a kernel that two
models share (V2 0.5x and 1.0x share their stem, for instance) is one workload: a task whose workload already
has enough valid records in the target's database is skipped.

Hand-written kernels that the graph passes insert (the fused concat/shuffle/split) are already scheduled and
are not tasks. Other data-movement kernels (padding, element-wise ops left unfused) have a design space of
one candidate; MetaSchedule cannot spend a per-task budget on them and its scheduler then keeps picking them
without progress (0 new samples each round). They get `DATA_MOVEMENT_TRIALS` trial, in a pass of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATA_MOVEMENT_TRIALS = 1


@dataclass
class TuneTask:
    name: str
    weight: int  # how many times the model calls this kernel
    flops: float
    compute: bool  # has a reduction (conv, matmul, pooling, mean); else pure data movement / element-wise
    extracted: Any  # ms.ExtractedTask
    done_trials: int = 0  # valid records already in the database

    def budget(self, trials_per_task: int) -> int:
        cap = trials_per_task if self.compute else min(trials_per_task, DATA_MOVEMENT_TRIALS)
        return max(cap - self.done_trials, 0)


def _has_reduction(mod: Any) -> bool:
    from tvm.s_tir.analysis import find_anchor_sblock

    anchor = find_anchor_sblock(mod)
    return anchor is not None and any(int(iv.iter_type) == 2 for iv in anchor.iter_vars)  # 2: CommReduce


def _hand_written(mod: Any) -> bool:
    """Kernels a shuffletvm pass inserted already scheduled: nothing to tune."""
    from .. import tvm_compat

    return any(tvm_compat.is_scheduled(f) for f in mod.functions.values())


def extract_tasks(mods: list[Any], target: Any) -> list[TuneTask]:
    """Distinct tasks across `mods` (already lowered for tuning); weights add up across models."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    by_hash: dict[int, TuneTask] = {}
    for mod in mods:
        for extracted in ms.relax_integration.extract_tasks(mod, target) + _in_place_tasks(mod, target):
            workload = extracted.dispatched[0]
            if _hand_written(workload):
                continue
            key = int(tvm_ffi.structural_hash(workload))
            if key in by_hash:
                by_hash[key].weight += int(extracted.weight)
                continue
            by_hash[key] = TuneTask(
                name=extracted.task_name, weight=int(extracted.weight), flops=float(estimate_tir_flops(workload)),
                compute=_has_reduction(workload), extracted=extracted,
            )
    return sorted(by_hash.values(), key=lambda t: (not t.compute, -t.flops * t.weight))


def lowered_models(models: list[str], batch: int, target: Any) -> list[Any]:
    """The built-in models named, at `batch`, through the pipeline's phases up to tuning (`lower_for_tuning`)."""
    from ..build import load_graph
    from ..pipeline import lower_for_tuning

    return [lower_for_tuning(load_graph(name, batch).mod, target) for name in models]


def model_tasks(models: list[str], batch: int, target: Any) -> list[TuneTask]:
    """The distinct tasks of the built-in models named, at `batch`, for `target` (a tvm.target.Target)."""
    return extract_tasks(lowered_models(models, batch, target), target)


def _in_place_tasks(mod: Any, target: Any) -> list[Any]:
    """Tasks for the kernels called with `call_tir_inplace` (KeepIdentityInPlace's scatter convs), which
    MetaSchedule's extraction does not visit; normalised as it normalises the others, as the build looks them up."""
    from collections import Counter

    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from ..tvm_compat import op_calls

    calls = Counter(call.args[0] for call in op_calls(mod) if call.op.name == "relax.call_tir_inplace")
    tasks = []
    for gvar, count in calls.items():
        normalized = _normalize_mod(mod[gvar])
        tasks.append(ms.ExtractedTask(gvar.name_hint, normalized, target, [normalized], count))
    return tasks


def records_for(task: TuneTask, database: Any, k: int = 1 << 20) -> list[Any]:
    """The database's best `k` valid records for the task's workload, fastest first (none if it is unknown)."""
    workload_mod = task.extracted.dispatched[0]
    if not database.has_workload(workload_mod):
        return []
    return list(database.get_top_k(database.commit_workload(workload_mod), k))


def count_done(tasks: list[TuneTask], database: Any) -> None:
    """Set each task's `done_trials` from the valid records the database already holds for its workload."""
    for task in tasks:
        task.done_trials = len(records_for(task, database))
