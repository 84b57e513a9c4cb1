"""A MetaSchedule measure callback that shows progress and enforces the run's limits.

Progress: trials done of planned, the task just measured and its best latency, and the estimated end-to-end
latency so far (sum over measured tasks of calls x best kernel time). Limits: a time budget, and a device that
stops answering (every trial of several consecutive batches failing to run) ends the run instead of spinning.

MetaSchedule's task schedulers generate, build and start every task's first batch before they join (measure
callback) any: a warm-up that takes minutes where candidates are slow to generate (CUDA: ~25 s a kernel on 2
cores, VerifyGPUCode rejecting most samples; V2 1.0x has 19 kernels). A limit checked only in the measure
callback then waits for the whole warm-up: on an H200 a 2-minute tune reported no result before its step was
killed after 4.5 (benchmarks/GPU.md). So the builder also asks, before each batch of the search
(`before_build`), and the run stops there, every batch already sent being joined and committed first.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

logger = logging.getLogger(__name__)

DEAD_DEVICE_BATCHES = 3
EXHAUSTED_ROUNDS = 3  # rounds in a row in which a task's search produced no new candidate


class StopTuning(Exception):
    """Raised from the measure callback to end a tuning run early."""


@dataclass
class TuneProgress:
    names: list[str]
    weights: list[int]
    planned: int | None  # None: open-ended (a time budget)
    deadline: float | None = None  # time.monotonic() value
    emulated: bool = False
    trials: int = 0
    failed: int = 0
    best_s: dict[int, float] = field(default_factory=dict)
    stop_reason: str | None = None
    interrupted: bool = False
    scheduler: Any = None  # the task scheduler searching now (tune._search); None while seeds are measured
    group_size: int = 0  # tasks in that scheduler
    batches: int = 0  # batches that scheduler sent to the builder
    _failed_batches: int = 0
    _empty_rounds: dict[int, int] = field(default_factory=dict)
    _last_error: str = ""
    _bar: Any = None
    _flushing: bool = False

    def open(self) -> None:
        from tqdm import tqdm

        note = " [emulated device: timings prove the path, not speed]" if self.emulated else ""
        self._bar = tqdm(total=self.planned, unit="trial", desc=f"tuning{note}", dynamic_ncols=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def estimate_ms(self) -> float:
        return 1e3 * sum(self.weights[i] * s for i, s in self.best_s.items())

    def interrupt(self, *_signal_args: Any) -> None:
        """SIGINT handler: stop before the next batch is built or at the next result, the batches in flight
        joined and their records committed. A KeyboardInterrupt raised at an arbitrary point would be swallowed
        by MetaSchedule's worker pools; a second Ctrl-C aborts at once. It exits the process there and then: the
        handler runs inside a Python callback of MetaSchedule's C++ loop, where an exception aborts the process
        with a crash dump. Nothing is lost: every record was appended to the log as it was measured, and none is
        being written while Python runs."""
        if self.interrupted:
            sys.stderr.write("shuffletvm tune: aborted; every record measured so far is kept, run the same "
                             "command to resume\n")
            sys.stderr.flush()
            os._exit(130)
        self.interrupted = True
        logger.warning("stopping once the batches in flight are measured (Ctrl-C again to abort now)")

    def before_build(self, count: int) -> None:
        """The builder calls this before building each batch of candidates. During the search, a run that is out
        of time or interrupted stops here, after joining the batches in flight (their records committed), instead
        of waiting for the next measure callback, which the warm-up can put minutes away. Each scheduler's first
        batch (data movement, compute) is always built: a budget spent on seeds still searches a little."""
        if self.scheduler is None:  # seeds and remeasurement: not the search
            return
        self.batches += 1
        if self.batches > 1:
            reason = "interrupted" if self.interrupted else "time budget reached" if self._out_of_time() else None
            if reason:
                self._stop_after_joining(self.scheduler, reason)
        if self._bar is not None and self.batches <= self.group_size:
            self._bar.set_postfix_str(f"warm-up: first batch of kernel {self.batches}/{self.group_size} ({count} "
                                      "candidates) sent; results come once every kernel has one")

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def update(self, scheduler: Any, task_id: int, runner_results: list[Any], local_id: int | None = None) -> None:
        """`task_id` indexes `names`; `local_id` is the task's index in `scheduler` (the task scheduler that
        measured it), when that differs."""
        local_id = task_id if local_id is None else local_id
        if self.interrupted and not self._flushing:
            self._stop_after_joining(scheduler, "interrupted", local_id)
        if not runner_results:  # the search found nothing new: a small space, exhausted
            self._empty_rounds[task_id] = self._empty_rounds.get(task_id, 0) + 1
            if self._empty_rounds[task_id] >= EXHAUSTED_ROUNDS and not scheduler.tasks_[local_id].is_terminated:
                logger.debug("task %s exhausted its design space", self.names[task_id])
                scheduler.terminate_task(local_id)  # no trial was added, so the scheduler will not do it too
            return
        self._empty_rounds[task_id] = 0
        ok = [r for r in runner_results if r.error_msg is None and r.run_secs]
        self.trials += len(runner_results)
        self.failed += len(runner_results) - len(ok)
        for result in ok:
            secs = sum(float(s) for s in result.run_secs) / len(result.run_secs)
            if secs < self.best_s.get(task_id, float("inf")):
                self.best_s[task_id] = secs
        errors = [r.error_msg for r in runner_results if r.error_msg is not None]
        if runner_results and len(errors) == len(runner_results):
            self._failed_batches += 1
            self._last_error = str(errors[-1]).strip().splitlines()[-1][:200] if str(errors[-1]).strip() else ""
        else:
            self._failed_batches = 0
        if self._bar is not None:
            self._bar.update(len(runner_results))
            best = self.best_s.get(task_id)
            best_text = f"best {1e3 * best:.3f} ms" if best else "no valid run yet"
            self._bar.set_postfix_str(
                f"[Task {task_id + 1:>2}/{len(self.names)}] {self.names[task_id][:28]} {best_text} | "
                f"est. {self.estimate_ms():.2f} ms ({len(self.best_s)}/{len(self.names)} tasks)"
            )
        if self._failed_batches >= DEAD_DEVICE_BATCHES:
            self.stop(scheduler, f"the device failed every trial of {DEAD_DEVICE_BATCHES} batches in a row "
                                 f"(last error: {self._last_error or 'none reported'})")
        elif self._out_of_time() and not self._flushing:
            self._stop_after_joining(scheduler, "time budget reached", local_id)

    def _stop_after_joining(self, scheduler: Any, reason: str, joining: int | None = None) -> None:
        self._flush(scheduler, joining)
        self.stop(scheduler, reason)

    def _flush(self, scheduler: Any, joining: int | None = None) -> None:
        """Commit the batches already sent to the runner before stopping: MetaSchedule joins a task's batch only
        when it picks the task again, so at a stop most batches of the warm-up are still in flight. Joining them
        here runs the database callback for each; this callback only counts them. `joining`: the task whose
        join is running this callback (its batch is committed by that join)."""
        self._flushing = True
        try:
            for other, record in enumerate(scheduler.tasks_):
                if other != joining and record.runner_futures is not None and not record.is_terminated:
                    scheduler.join_running_task(other)
        finally:
            self._flushing = False

    def stop(self, scheduler: Any, reason: str) -> None:
        """End the run: raised through MetaSchedule's C++ loop and caught by `tune`, after the database
        callback has committed this batch. (Terminating tasks from here instead races the scheduler, which
        terminates a task that reached its budget right after the callbacks, and fails a check.)"""
        self.stop_reason = reason
        logger.info("stopping: %s", reason)
        raise StopTuning(reason)


@derived_object
class ProgressCallback(PyMeasureCallback):
    def __init__(self, progress: TuneProgress) -> None:
        super().__init__()
        self.progress = progress

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.progress.update(task_scheduler, task_id, list(runner_results))
