"""A MetaSchedule builder whose worker processes outlive one batch.

`LocalBuilder` starts a fresh process pool for every batch, to dodge a slow memory leak in long-lived workers.
Each worker then imports TVM (a 250 MB compiler library) before building anything: on a 2-core machine that is
about 25 s per batch, far more than building the candidates, and small batches (a data-movement kernel has one
candidate) pay it every time. This builder keeps its pool and recycles it every `recycle_every` batches, which
bounds the leak; the build and export steps are LocalBuilder's own. Every artifact goes under `artifact_dir`
(the tuning run's work folder, removed when it ends): LocalBuilder leaves each candidate's .tar and .so in a
folder of its own under /tmp, and nothing removes them (9 GB here after a few sessions of tuning).

`rewrite`, if given, turns each candidate module into what is built and measured (tuning/tune.py: the
rewrite PartitionRowsAcrossCores gives the kernel in the build), in this process, before the workers build it.
`before_build`, if given, is called with the batch's size before each batch (TuneProgress.before_build: the
search's time budget and Ctrl-C are checked there); an exception it raises ends the tuning run.
"""

from __future__ import annotations

from typing import Any, Callable

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder import local_builder as _local
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind


@derived_object
class PooledBuilder(PyBuilder):
    def __init__(self, max_workers: int, timeout_sec: float, artifact_dir: str,
                 f_export: Callable[..., str] | None = None, recycle_every: int = 32,
                 rewrite: Callable[[Any], Any] | None = None,
                 before_build: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.rewrite = rewrite
        self.before_build = before_build
        self.artifact_dir = artifact_dir
        self.max_workers = max_workers
        self.timeout_sec = timeout_sec
        self.f_export = f_export
        self.recycle_every = recycle_every
        self._pool: PopenPoolExecutor | None = None
        self._batches = 0

    def _executor(self) -> PopenPoolExecutor:
        if self._pool is None or self._batches >= self.recycle_every:
            self.shutdown()
            self._pool = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec)
            self._batches = 0
        self._batches += 1
        return self._pool

    def build(self, build_inputs: list[Any]) -> list[BuilderResult]:
        if self.before_build is not None:
            self.before_build(len(build_inputs))
        pool = self._executor()
        rewrite = self.rewrite or (lambda mod: mod)
        jobs = [(None, self.f_export, rewrite(b.mod), b.target, _local._serialize_params(b.params))
                for b in build_inputs]
        results = []
        artifact_dir = self.artifact_dir

        def build_one(job: tuple) -> str:
            import tempfile  # in the worker: the export step makes its folder with mkdtemp

            tempfile.tempdir = artifact_dir
            return _local._worker_func(*job)

        for outcome in pool.map_with_error_catching(build_one, jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"PooledBuilder: timeout, killed after {self.timeout_sec} s"))
                self.shutdown()  # a killed worker leaves the pool short: start afresh next batch
            else:
                results.append(BuilderResult(None, f"PooledBuilder: an exception occurred\n{outcome.value}"))
        return results

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
