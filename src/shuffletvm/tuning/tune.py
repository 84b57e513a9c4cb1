"""`shuffletvm tune`: MetaSchedule with its XGBoost cost model, over the kernels of one or more models.

Flow: import -> lower to TensorIR (`pipeline.lower_for_tuning`) -> extract and de-duplicate tasks -> skip what
the target's log already covers -> tune data-movement kernels briefly, then compute kernels with the budget ->
records appended to `tuning_logs/<target>/` as they are measured. CPU candidates are measured locally; `arm`
(or any aarch64 target) candidates are cross-linked here and measured on a device behind an RPC tracker.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ShuffleTVMError
from ..targets import ResolvedTarget, TargetOptions, resolve_target
from .database import TuningLog, kindred_log, open_log, workload_key
from .pooled_builder import PooledBuilder
from .progress import ProgressCallback, TuneProgress
from .rpc import TrackerAddress, check_device
from .seeds import (
    batch_twin_seeds,
    hand_seeds,
    kindred_seeds,
    measure_and_commit,
    remeasured,
    seed_plain_twins,
)
from .tasks import TuneTask, count_done, extract_tasks, lowered_models, model_tasks

logger = logging.getLogger(__name__)

BUILDER_TIMEOUT_S = 600  # a builder worker's start-up alone can exceed LocalBuilder's default 30 s on 2 cores
RUNNER_TIMEOUT_S = 120
RPC_SESSION_TIMEOUT_S = 600  # candidates under qemu run thousands of times slower than on hardware
UNBOUNDED_TRIALS = 1_000_000
REMEASURE_ROUNDS = 3  # --remeasure: each record keeps its fastest of this many interleaved measurements
KINDRED_RECORDS = 8  # a kernel new to the log starts from this many of a kindred CPU's best records


@dataclass
class TuneConfig:
    models: list[str]
    target: str = "x86"
    trials_per_task: int | None = None  # default: 8 when no time budget is given
    time_budget_min: float | None = None
    rpc_tracker: str | None = None  # HOST:PORT
    rpc_key: str | None = None
    log_dir: Path | None = None  # default: tuning_logs/
    batch: int = 1
    target_options: TargetOptions = field(default_factory=TargetOptions)
    kernels: str | None = None  # regular expression: tune only kernels whose name matches
    rpc_timeout_s: float = RPC_SESSION_TIMEOUT_S  # per batch on the device; a device that stops answering fails it
    num_trials_per_iter: int = 16
    seed: int = 0
    # Measure each kernel's best N records again (same trace, this run's runner) before searching, the new times
    # replacing the old: ranks a log measured on another day, or by an older runner (before session 5: one
    # thread after a cache flush; before session 10: dense kernels not split across the cores as built).
    remeasure: int = 0
    # Kernels the log has no record of start from a kindred CPU's log under the same root (database.kindred_log):
    # its best KINDRED_RECORDS records of each, measured here. With no log of this SIMD width, another width's
    # (any_width): the kernels whose TIR does not depend on the width find their records there.
    from_kindred: bool = True
    # ... and so do kernels it has records of, with those of the kindred log's best records it has not measured:
    # a log seeded from another CPU's log picks up what that log's later tuning found.
    kindred_all: bool = False


@dataclass
class TuneResult:
    log: TuningLog
    tasks: list[TuneTask]
    trials: int
    failed: int
    seconds: float
    estimated_ms: float
    stop_reason: str | None
    skipped: int  # tasks the log already covered


def as_built(target: Any, rows_ratio: float | None = None,
             follow_planes: frozenset = frozenset()) -> Callable[[Any], Any]:
    """A candidate (an IRModule holding one scheduled kernel, `main`) as the build for `target` (a
    tvm.target.Target) runs it: split across its cores by PartitionRowsAcrossCores (`partition_alone`: dense
    kernels by rows, batch-N kernels by images, and channel-local kernels writing a plane of `follow_planes` as
    the producer they follow in the build). The pass runs after the schedules; without this, a dense kernel's
    records time its schedule's own split over output channels, a kernel the build never runs, and the best of
    them need not be the best once split by rows. `rows_ratio`: the log's (TuningLog.rows_ratio), None for the
    pass's default; `follow_planes`: the tuned models' (`following_planes`)."""
    from ..passes.partition_rows_across_cores import cores_of, partition_alone

    cores = cores_of(target)

    def rewrite(mod: Any) -> Any:
        func = partition_alone(mod["main"], cores, rows_ratio=rows_ratio, follow_planes=follow_planes)
        if func is None:
            return mod
        mod = mod.clone()
        mod.update_func(mod.get_global_var("main"), func)
        return mod

    return rewrite


def follow_planes_of(mods: list[Any], target: Any, rows_ratio: float | None) -> frozenset:
    """The planes into which the models (`mods`, lowered for tuning) have channel-local kernels follow their
    producer's rows, as the build for `target` with a log of `rows_ratio` splits them. The pass decides on
    scheduled kernels (a conv's reads are those of its input once its schedule inlined the padding): the kernels
    get their hand schedules first."""
    from ..passes import ApplyHandSchedules
    from ..passes.partition_rows_across_cores import cores_of, following_planes

    cores = cores_of(target)
    if cores < 2:  # one core (GPUs too): nothing is split
        return frozenset()
    with target:
        scheduled = [ApplyHandSchedules()(mod) for mod in mods]
    return frozenset().union(*(following_planes(mod, cores, rows_ratio=rows_ratio) for mod in scheduled))


def export_aarch64(mod: Any) -> str:
    """MetaSchedule export for aarch64 candidates: cross-link a .so on the host (the default .tar would need a
    compiler on the device)."""
    import os

    from .. import tvm_compat
    from ..targets import AARCH64_CXX

    path = os.path.join(tempfile.mkdtemp(prefix="shuffletvm-ms-"), "candidate.so")
    mod.export_library(path, fcompile=tvm_compat.cross_compiler(AARCH64_CXX))
    return path


def export_cuda(fatbin_dir: str, arch: str, mod: Any) -> str:
    """MetaSchedule export for CUDA candidates, run by the builders (one per host core): the kernels compiled by
    nvcc into `fatbin_dir` (keyed by their source) and the host code linked into a .so. The runner's workers
    serve these fatbins when TVM's load-time compile asks (cuda_kernels.serve_compiled_in); left to the load,
    every candidate's nvcc run (0.7 s each on the Intel class here) and link would run one after another in the
    one runner worker."""
    from .. import cuda_kernels

    source = cuda_kernels.cuda_source(mod)
    if source is not None:
        cuda_kernels.compile_into(Path(fatbin_dir), source, arch)
    path = os.path.join(tempfile.mkdtemp(prefix="shuffletvm-ms-"), "candidate.so")
    mod.export_library(path)
    return path


def _validate(config: TuneConfig, target: ResolvedTarget) -> TrackerAddress | None:
    if not config.models:
        raise ShuffleTVMError("name at least one model to tune")
    if config.trials_per_task is not None and config.trials_per_task <= 0:
        raise ShuffleTVMError(f"--trials must be positive, got {config.trials_per_task}")
    if config.time_budget_min is not None and config.time_budget_min <= 0:
        raise ShuffleTVMError(f"--time-budget must be positive minutes, got {config.time_budget_min:g}")
    if config.remeasure < 0:
        raise ShuffleTVMError(f"--remeasure must be 0 or more records per kernel, got {config.remeasure}")
    if target.device == "cuda":
        from ..targets import detect_cuda_arch

        if detect_cuda_arch() is None:
            raise ShuffleTVMError("tuning for cuda measures on a GPU, and there is none here; run it on a GPU machine")
    if target.arch == "aarch64":
        if not (config.rpc_tracker and config.rpc_key):
            raise ShuffleTVMError(
                "aarch64 candidates run on a device: pass --rpc-tracker HOST:PORT and --rpc-key KEY "
                "(`shuffletvm device` starts an emulated one)"
            )
        tracker = TrackerAddress.parse(config.rpc_tracker)
        check_device(tracker, config.rpc_key)
        return tracker
    if config.rpc_tracker or config.rpc_key:
        raise ShuffleTVMError(f"--rpc-tracker/--rpc-key are for remote devices; {target.name} runs here")
    return None


def builder_and_runner(target: ResolvedTarget, tracker: TrackerAddress | None, key: str | None,
                       rpc_timeout_s: float, artifact_dir: str, rows_ratio: float | None = None,
                       before_build: Callable[[int], None] | None = None,
                       follow_planes: frozenset = frozenset()) -> tuple[Any, Any]:
    """MetaSchedule's builder and runner for `target`: candidates built as the model builds them (`as_built`),
    exported for where they run (host, aarch64 over RPC through `tracker`/`key`, CUDA) and measured warm."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.support.popen_pool import PopenPoolExecutor

    # Warm: in a running model a kernel's input was just written by the kernel before it and the weights stay
    # in the last-level cache between inferences.
    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=100 if tracker is None else 0,
                                          enable_cpu_cache_flush=False)
    # CPU kernels build on the cores they are measured on; CUDA candidates are nvcc runs on the host, one per
    # core (export_cuda). (What kept a short CUDA tune on an H200 from reporting anything was MetaSchedule's
    # warm-up, every kernel's first batch generated before any is joined: progress.py.)
    cpu_builders = int(target.spec.get("num-cores", 2)) if target.device == "cpu" else (os.cpu_count() or 2)
    if target.device == "cpu" and tracker is None:
        # Candidates run on as many threads as the target's cores, as the built model does. Unset, TVM's pool
        # takes half the logical CPUs on x86 (it assumes hyper-threads): one thread on a 2-vCPU machine, so
        # every record before this line was a one-thread time (and cold), and the build picked V1 g8's expand conv
        # schedule that runs 71 us in the model over one that runs 36 us. The runner's workers inherit it.
        os.environ["TVM_NUM_THREADS"] = str(target.spec["num-cores"])
    workers = max(1, cpu_builders)
    rewrite = as_built(target.tvm_target(), rows_ratio, follow_planes)
    f_export, runner_init = (export_aarch64 if tracker else None), None
    if target.device == "cuda":
        from .. import cuda_kernels

        fatbins = os.path.join(artifact_dir, "cuda")
        f_export = functools.partial(export_cuda, fatbins, target.spec["arch"])
        runner_init = functools.partial(cuda_kernels.serve_compiled_in, fatbins)
    builder = PooledBuilder(max_workers=workers, timeout_sec=BUILDER_TIMEOUT_S, artifact_dir=artifact_dir,
                            f_export=f_export, rewrite=rewrite, before_build=before_build)
    if tracker is None:
        return builder, ms.runner.LocalRunner(timeout_sec=RUNNER_TIMEOUT_S, evaluator_config=evaluator,
                                              initializer=runner_init)
    rpc_config = ms.runner.RPCConfig(tracker_host=tracker.host, tracker_port=tracker.port, tracker_key=key,
                                     session_timeout_sec=rpc_timeout_s)
    runner = ms.runner.RPCRunner(rpc_config=rpc_config, evaluator_config=evaluator, max_workers=1)
    # RPCRunner's worker pool has no timeout: when the device dies, its tracker request blocks forever and so
    # does the tuner. A pool with the session timeout turns that into a failed trial (a TimeoutError).
    runner.pool.shutdown()
    runner.pool = PopenPoolExecutor(max_workers=1, timeout=rpc_timeout_s)
    return builder, runner


def _batch_one_tasks(config: TuneConfig, target: Any) -> list[TuneTask]:
    """The same models' kernels at batch 1, whose records seed the batch-N kernels (seeds.batch_twin_seeds)."""
    return model_tasks(config.models, 1, target)


def tune(config: TuneConfig) -> TuneResult:
    target = resolve_target(config.target, config.target_options)
    tracker = _validate(config, target)
    try:
        pattern = re.compile(config.kernels or "")
    except re.error as err:
        raise ShuffleTVMError(f"--kernels is not a valid regular expression: {err}") from None
    log = open_log(target, config.log_dir)
    database = log.database()
    tvm_target = target.tvm_target()
    lowered = lowered_models(config.models, config.batch, tvm_target)
    tasks = extract_tasks(lowered, tvm_target)
    follow_planes = follow_planes_of(lowered, tvm_target, log.rows_ratio)
    if config.kernels:
        tasks = [t for t in tasks if pattern.search(t.name)]
        if not tasks:
            raise ShuffleTVMError(f"no kernel of {', '.join(config.models)} matches --kernels '{config.kernels}'")
    count_done(tasks, database)

    per_task = config.trials_per_task or (UNBOUNDED_TRIALS if config.time_budget_min else 8)
    todo = [t for t in tasks if t.budget(per_task) > 0]
    skipped = len(tasks) - len(todo)
    logger.info("%d distinct kernels, %d covered by %s, %d to tune", len(tasks), skipped, log.path, len(todo))
    compute = [t for t in tasks if t.compute]
    again = remeasured(compute, database, tvm_target, config.remeasure)
    logged = [t for t in todo if t.compute and t.done_trials > 0]
    if logged and not config.remeasure:
        # A record keeps the time it was measured in: on a shared VM whose speed moves 2-3x between days, a new
        # candidate then competes with an old record's old time (benchmarks/RESULTS-x86-rocketlake-2c.md).
        logger.warning("%d kernels to tune have records measured in earlier runs; --remeasure N measures their "
                       "best N again first, so new candidates compete with this run's times", len(logged))
    # --kindred-all: every selected kernel, covered or not (as with hand schedules: `--trials 1 --kindred-all`
    # measures another CPU's best records beside this log's, nothing searched); else the kernels new to the log
    new = compute if config.kindred_all else [t for t in todo if t.compute and t.done_trials == 0]
    # read only if needed; with no log of this SIMD width, the kernels that are the same TIR at another width
    kindred = kindred_log(target, config.log_dir, any_width=True) if config.from_kindred and new else None
    borrowed = kindred_seeds(new, kindred.database(), KINDRED_RECORDS, database) if kindred else []
    if borrowed:
        logger.info("%d %s start from %d of %s's records (another CPU)", len({id(t) for t, _, _ in borrowed}),
                    "selected kernels" if config.kindred_all else f"kernels new to {log.path}", len(borrowed),
                    kindred.path)
    lifted = (batch_twin_seeds(compute, _batch_one_tasks(config, tvm_target), database, tvm_target)
              if config.batch > 1 else [])
    hand = hand_seeds(compute, database, tvm_target)
    started = time.monotonic()
    progress = TuneProgress(
        names=[t.name for t in todo], weights=[t.weight for t in todo],
        planned=None if config.time_budget_min else sum(t.budget(per_task) for t in todo),
        deadline=started + 60 * config.time_budget_min if config.time_budget_min else None,
        emulated=tracker is not None and tracker.host in ("127.0.0.1", "localhost"),
    )
    if todo or lifted or again or borrowed or hand:
        work_dir = tempfile.mkdtemp(prefix="shuffletvm-tune-")
        threads_before = os.environ.get("TVM_NUM_THREADS")
        builder, runner = builder_and_runner(target, tracker, config.rpc_key, config.rpc_timeout_s, work_dir,
                                             log.rows_ratio, before_build=progress.before_build,
                                             follow_planes=follow_planes)
        try:
            if again:
                database = _measure_again(again, log, database, builder, runner, tvm_target)
            _measure_starting_points(todo, borrowed, lifted, hand, database, builder, runner, tvm_target, config.batch,
                                     rounds=REMEASURE_ROUNDS if again else 1)
            _search(todo, per_task, config, progress, builder, runner, database)
        finally:
            builder.shutdown()
            shutil.rmtree(work_dir, ignore_errors=True)
            if threads_before is None:
                os.environ.pop("TVM_NUM_THREADS", None)
            else:
                os.environ["TVM_NUM_THREADS"] = threads_before
    if progress.stop_reason == "interrupted":
        logger.warning("interrupted: %d records kept in %s; run the same command to resume", log.records_now(), log.path)
        raise KeyboardInterrupt
    count_done(tasks, database)
    if todo or lifted or again or borrowed or hand:
        _warn_of_earlier_choices(tasks, log)
    if progress.stop_reason and progress.stop_reason != "time budget reached":
        raise ShuffleTVMError(f"tuning stopped: {progress.stop_reason}; {log.records_now()} records kept in {log.path}")
    return TuneResult(log, tasks, progress.trials, progress.failed, time.monotonic() - started,
                      progress.estimate_ms(), progress.stop_reason, skipped)


def _warn_of_earlier_choices(selected: list[TuneTask], log: TuningLog) -> None:
    """New records do not undo in_model.json: builds keep the hand schedule chosen there until `choose` runs again."""
    chosen = [t.name for t in selected if workload_key(t.extracted.dispatched[0]) in log.hand_chosen]
    if chosen:
        logger.warning("%d kernels tuned here have their records set aside by %s (%s); builds keep their hand "
                       "schedule until `shuffletvm choose` runs again", len(chosen), log.choice_file,
                       ", ".join(chosen[:4]) + (", ..." if len(chosen) > 4 else ""))


def _measure_again(again: list[tuple], log: TuningLog, database: Any, builder: Any, runner: Any,
                   target: Any) -> Any:
    """--remeasure: the best records measured again, their new times replacing the old
    (`replace_earlier_times`). Returns the database opened again, without the old times."""
    logger.info("measuring %d records of %d kernels again", len(again), len({id(t) for t, _, _ in again}))
    before = log.records_now()
    done = measure_and_commit(again, database, builder, runner, target, rounds=REMEASURE_ROUNDS)
    logger.info("%d records measured again, replacing %d earlier times of theirs", done,
                log.replace_earlier_times(before))
    return log.database()


def _measure_starting_points(todo: list[TuneTask], borrowed: list[tuple], lifted: list[tuple], hand: list[tuple],
                             database: Any, builder: Any, runner: Any, target: Any, batch: int, rounds: int) -> None:
    """Records measured before the search (tuning/seeds.py): a kindred CPU's best records, the batch-1
    schedules at batch N, the hand-written schedules (of every selected kernel, covered or not) and the
    stage-buffer convs' plain twins; the kindred records and hand schedules with as many rounds as --remeasure
    gives the records they compete with. Seeds are records on top of the trial budgets: counting them as trials
    would let MetaSchedule's uniform per-task cap hand one kernel's share to another."""
    if borrowed:
        done = measure_and_commit(borrowed, database, builder, runner, target, rounds=rounds)
        logger.info("%d records of a kindred CPU's log measured here", done)
    if lifted:
        logger.info("measuring %d kernels with their batch-1 kernel's tuned schedule", len(lifted))
        done = measure_and_commit(lifted, database, builder, runner, target)
        logger.info("%d batch-%d kernels recorded with their batch-1 schedule", done, batch)
    if hand:
        covered = len({id(t) for t, _, _ in hand} - {id(t) for t in todo})
        logger.info("measuring the hand-written schedules of %d kernels as the search's starting points%s", len(hand),
                    f" ({covered} covered by the log, which lacks their hand schedule as it is now: changed or "
                    "pruned since)" if covered else "")
        done = measure_and_commit(hand, database, builder, runner, target, rounds=rounds)
        logger.info("%d kernels start from their hand-written schedule", done)
    twins = seed_plain_twins([t for t in todo if t.compute], database, builder, runner, target)
    if twins:
        logger.info("%d stage-buffer convs start from their plain conv's tuned schedule", twins)


def _search(todo: list[TuneTask], per_task: int, config: TuneConfig, progress: TuneProgress, builder: Any,
            runner: Any, database: Any) -> None:
    """MetaSchedule's search: data-movement kernels first, with their small fixed budget and plain trace
    sampling (evolutionary search over a space of one or two candidates only burns time); then compute
    kernels. Stops at the time budget or on Ctrl-C (progress.stop_reason) with every measured record kept.
    What `ms.tune_tasks` does, with the task scheduler held: the progress joins its batches in flight at a stop."""
    from tvm.s_tir import meta_schedule as ms

    progress.open()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, progress.interrupt) if in_main_thread else None
    try:
        groups = [([t for t in todo if not t.compute], "replay-trace"), ([t for t in todo if t.compute], "evolutionary")]
        for group, strategy in groups:
            if not group or progress.stop_reason:
                continue
            contexts, weights = _tune_contexts(group, strategy, config.seed)
            offset = todo.index(group[0])
            progress_cb = ProgressCallback(_Offset(progress, offset))
            scheduler = ms.TaskScheduler.create("gradient")
            progress.scheduler, progress.group_size, progress.batches = scheduler, len(group), 0
            try:
                scheduler.tune(
                    tasks=contexts, task_weights=weights,
                    max_trials_global=sum(t.budget(per_task) for t in group),
                    max_trials_per_task=max(t.budget(per_task) for t in group),
                    num_trials_per_iter=config.num_trials_per_iter, builder=builder, runner=runner,
                    # The default callbacks commit records to the database; ours runs after them.
                    measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), progress_cb],
                    database=database,
                    cost_model=ms.CostModel.create("xgb", num_tuning_cores=contexts[0].num_threads, tree_method="auto"),
                )
            except Exception:  # our StopTuning arrives wrapped in TVM's error type
                if progress.stop_reason is None:
                    raise
            finally:
                progress.scheduler = None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
        progress.close()


def _tune_contexts(group: list[TuneTask], strategy: str, seed: int) -> tuple[list[Any], list[float]]:
    """MetaSchedule tune contexts for `group`, each with a plain Python logger. (`extracted_tasks_to_tune_contexts`
    builds its loggers by re-parameterising the process's logging configuration, which breaks as soon as any
    handler there is unnamed, e.g. under pytest.)"""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import fork_seed

    contexts = [
        ms.TuneContext(
            mod=task.extracted.dispatched[0], target=task.extracted.target, space_generator="post-order-apply",
            search_strategy=strategy, task_name=task.name, rand_state=rand_state, num_threads="physical",
            logger=logging.getLogger(f"tvm.s_tir.meta_schedule.task.{task.name}"),
        ).clone()
        for task, rand_state in zip(group, fork_seed(seed, n=len(group)))
    ]
    return contexts, [float(task.weight) for task in group]  # calls summed over all the models tuned


class _Offset:
    """Maps a group's task ids onto the run-wide progress (groups are tuned by separate schedulers)."""

    def __init__(self, progress: TuneProgress, offset: int) -> None:
        self.progress, self.offset = progress, offset

    def update(self, scheduler: Any, task_id: int, runner_results: list[Any]) -> None:
        self.progress.update(scheduler, task_id + self.offset, runner_results, local_id=task_id)
