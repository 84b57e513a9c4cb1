"""The compile pipeline as a list of named phases, read top to bottom.

Each phase is a `tvm.transform.Sequential`; a phase that does nothing for a configuration is an empty
Sequential, never an `if` in the middle. `make_pipeline` wraps the phases in one module pass that logs each
phase and, when asked, writes the module's TVMScript after it (`--dump-dir`).

The stock phases are TVM's own per-target lists (`tvm_compat.stock_passes`), so a build with no
ShuffleNet-specific option is exactly TVM's default pipeline: the "untuned, stock" baseline.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from . import tvm_compat
from .passes import (
    ApplyBatchOneRecords,
    ApplyHandSchedules,
    FoldBatchNorm,
    FoldShuffleIntoGroupedConv,
    FuseConcatShuffleSplit,
    FuseExpandDepthwise,
    FuseGroupedConvPair,
    FuseStemConvPool,
    KeepIdentityInPlace,
    PackConv1x1Weights,
    PackMatmulWeights,
    PartitionRowsAcrossCores,
    ProduceIntoConcat,
)
from .passes.partition_rows_across_cores import cores_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOptions:
    dump_dir: Path | None = None
    # A MetaSchedule database (see shuffletvm.tuning.database): its best records replace default kernels.
    database: Any = None
    # At batch N > 1: the model's kernels at batch 1 (lowered by these phases, by name), whose records replay on
    # the batch-N kernels the database has none for (passes/apply_batch_one_records.py).
    batch_one: dict[str, Any] | None = None
    # ... their records looked up here (the whole log; None: `database`), except for the kernels whose own
    # records the log's in_model.json set aside (their workload hashes), which keep their hand schedule.
    batch_one_database: Any = None
    hand_chosen: frozenset[str] = frozenset()
    # TVM's default pipeline as it ships, without shuffletvm's phases: the "untuned TVM" baseline.
    stock: bool = False
    # schedules/ for kernels without a tuning record (off: they keep TVM's default, unscheduled loops).
    hand_schedules: bool = True
    # Multi-core CPUs: dense kernels' parallel loops split by output rows (passes/partition_rows_across_cores.py).
    partition_rows: bool = True
    # ... and at batch N, a multiple of the cores, every kernel by images (off: the batch-1 rule at every batch).
    partition_images: bool = True
    # ... with grouped convs (V1) counted as dense (off: they keep their channel split).
    partition_grouped: bool = True
    # Dense kernels split by rows where their activations are at least this many times their weights (None: the
    # pass's default); a tuning log says which its records were measured with (TuningLog.rows_ratio).
    rows_ratio: float | None = None
    # CPUs: the kernels computing a channel concat's inputs write into its buffer; no concat kernel
    # (passes/produce_into_concat.py).
    produce_into_concat: bool = True
    # CPUs: the stem's conv -> ReLU -> max pool as one kernel, its conv output never in memory
    # (passes/fuse_stem_conv_pool.py).
    fuse_stem: bool = True
    # CPUs: a stride-2 unit's 1x1 conv -> ReLU -> depthwise conv as one kernel, the 1x1 conv's output never in
    # memory (passes/fuse_expand_depthwise.py).
    fuse_expand_depthwise: bool = True
    # CPUs: V1's grouped 1x1 conv ending a unit (+ residual) and the one starting the next as one kernel, chunk of
    # pixels by chunk, the first one's output read back from L2 (passes/fuse_grouped_conv_pair.py).
    fuse_grouped_conv_pair: bool = True
    # Filled in while the pipeline runs: one counter per shuffletvm pass (how often it fired), "kernels"
    # (TensorIR functions), "kernels_tuned" (found in the database), "kernels_hand" (hand-written, pre-scheduled).
    stats: Counter = field(default_factory=Counter)
    # Filled in too: each kernel's name -> its workload's structural hash as the tuning log writes it (the
    # first field of a database_workload.json line), taken before any schedule applies.
    workloads: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    name: str
    passes: tvm.transform.Pass


def phases(target: Any, options: PipelineOptions) -> list[Phase]:
    """The phases for `target` (a tvm.target.Target), in order."""
    stock = tvm_compat.stock_passes(target)
    return [
        # Route ops to libraries (sampling, sort/scan); nothing in ShuffleNet uses them.
        Phase("library-dispatch", tvm.transform.Sequential(stock["library_dispatch"])),
        # ShuffleNet graph rewrites (see passes/README.md): BatchNorm into conv weights; V1's shuffles read
        # through by the grouped conv after them; V2's concat + shuffle + split as one hand-written copy
        # kernel; on CPUs, the stem's conv + ReLU + max pool as one hand-written kernel. Any BatchNorm left
        # becomes a multiply-add.
        Phase("graph-optimize", tvm.transform.Sequential([
            FoldBatchNorm(options.stats),
            *([FuseStemConvPool(target, options.stats)] if options.fuse_stem else []),
            FoldShuffleIntoGroupedConv(options.stats),
            FuseConcatShuffleSplit(options.stats),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
        ])),
        # Where values live. Weights: 1x1 convs on small planes (7x7) get output-channel-blocked, pre-packed
        # weights on x86, where that measured faster than NCHW (passes/pack_conv1x1_weights.py), and the
        # classifier's in tiles of columns, each one contiguous (passes/pack_matmul_weights.py); activations stay
        # NCHW. Channels: V2's identity half stays where it is, one buffer per stage, the shuffles become
        # compile-time channel maps absorbed by the convs (passes/keep_identity_in_place.py; CPUs). Last, on CPUs,
        # each stride-2 unit's 1x1 conv + ReLU and the depthwise conv reading it as one hand-written kernel
        # (passes/fuse_expand_depthwise.py), and V1's grouped 1x1 conv ending a unit with the one starting the next
        # (passes/fuse_grouped_conv_pair.py).
        Phase("layout", tvm.transform.Sequential([
            PackConv1x1Weights(target, options.stats),
            PackMatmulWeights(target, options.stats),
            KeepIdentityInPlace(target, options.stats),
            *([FuseExpandDepthwise(target, options.stats)] if options.fuse_expand_depthwise else []),
            *([FuseGroupedConvPair(target, options.stats)] if options.fuse_grouped_conv_pair else []),
        ])),
        # Relax ops -> TensorIR, operator fusion: the kernels, unscheduled (what tuning sees).
        Phase("legalize", tvm.transform.Sequential(tvm_compat.without_default_schedules(stock["legalize"]))),
        # Each kernel's schedule: its tuning record if the database has one, else (at batch N) its batch-1
        # kernel's record replayed, else a hand-written schedule (schedules/), else on GPUs dlight's defaults
        # (on CPUs the fallback's parallel loops). Then, on multi-core CPUs, dense kernels split their parallel
        # loops by output rows, and at batch N every kernel by images, so each core reads the activations it
        # wrote (passes/partition_rows_across_cores.py). Last, on CPUs, the kernels computing a channel concat's
        # inputs write them into its buffer, and the concat kernel goes (passes/produce_into_concat.py).
        Phase("schedule", tvm.transform.Sequential(_schedule_passes(target, options))),
        # Dataflow blocks -> explicit calls; then memory planning and VM lowering.
        Phase("dataflow-lower", tvm.transform.Sequential(stock["dataflow_lower"])),
        Phase("finalize", tvm.transform.Sequential(stock["finalize"])),
    ]


def _schedule_passes(target: Any, options: PipelineOptions) -> list[tvm.transform.Pass]:
    passes = [_count_tuned_kernels(options)]
    if options.database is not None:
        passes.append(relax.transform.MetaScheduleApplyDatabase())
    if options.database is not None and options.batch_one:
        passes.append(ApplyBatchOneRecords(options.batch_one_database or options.database, options.batch_one,
                                           options.stats, options.hand_chosen))
    hand = [ApplyHandSchedules(options.stats)] if options.hand_schedules else []
    rows = ([PartitionRowsAcrossCores(cores_of(target), options.stats, images=options.partition_images,
                                      rows_ratio=options.rows_ratio, grouped=options.partition_grouped)]
            if options.partition_rows else [])
    concat = [ProduceIntoConcat(target, options.stats)] if options.produce_into_concat else []
    return passes + hand + tvm_compat.default_schedules(target) + rows + concat


def _count_tuned_kernels(options: PipelineOptions) -> tvm.transform.Pass:
    """Counts the module's TensorIR kernels and how many the database has a record for (the same lookup
    MetaScheduleApplyDatabase makes). Changes nothing."""

    @tvm.transform.module_pass(opt_level=0, name="CountTunedKernels")
    def _count(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

        from .tuning.database import workload_key

        target = tvm.target.Target.current()
        kernels = [(gv, f) for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
        options.stats["kernels"] = len(kernels)
        options.stats["kernels_hand"] = sum(tvm_compat.is_scheduled(f) for _, f in kernels)
        normalized = [(gv.name_hint, _normalize_mod(f)) for gv, f in kernels]  # what the database looks up
        options.workloads.update({name: workload_key(m) for (name, m), (_, f) in zip(normalized, kernels)
                                  if not tvm_compat.is_scheduled(f)})
        options.stats["kernels_tuned"] = sum(
            options.database.query_tuning_record(m, target, name) is not None for name, m in normalized
        ) if options.database is not None else 0
        return mod

    return _count


# Tuning sees the kernels as they stand after this phase (every phase up to it runs, `layout` included).
TUNING_LAST_PHASE = "legalize"


def run_phases(mod: tvm.IRModule, target: Any, options: PipelineOptions,
               until: str | None = None) -> Iterator[tuple[Phase, tvm.IRModule]]:
    """Run the phases in order, yielding the module after each (and writing it to `options.dump_dir`), and
    stop after phase `until`. The phases are built and run inside `with target` (some passes, such as
    MetaScheduleApplyDatabase, read the target when constructed) and inside the database's context."""
    if options.dump_dir is not None:
        options.dump_dir.mkdir(parents=True, exist_ok=True)
    with target, (options.database if options.database is not None else contextlib.nullcontext()):
        for index, phase in enumerate(phases(target, options)):
            start = time.perf_counter()
            mod = phase.passes(mod)
            logger.debug("phase %-16s %.2f s", phase.name, time.perf_counter() - start)
            if options.dump_dir is not None:
                (options.dump_dir / f"{index:02d}_{phase.name}.py").write_text(mod.script(show_meta=False))
            yield phase, mod
            if phase.name == until:
                return


def batch_one_kernels(mod: tvm.IRModule, target: Any) -> dict[str, Any]:
    """The TensorIR kernels of `mod` (a model imported at batch 1) as the phases up to `legalize` make them, by
    name: what ApplyBatchOneRecords replays batch-1 records from."""
    lowered = lower_for_tuning(mod, target)
    return {gv.name_hint: f for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}


def lower_for_tuning(mod: tvm.IRModule, target: Any, options: PipelineOptions | None = None) -> tvm.IRModule:
    """Run the phases before `schedule`: the TensorIR kernels they leave are what tuning sees and what the
    build later looks up in the database, so both must come from these same phases."""
    lowered = mod
    for _phase, lowered in run_phases(mod, target, options or PipelineOptions(), until=TUNING_LAST_PHASE):
        pass
    return lowered


def make_pipeline(target: Any, options: PipelineOptions | None = None) -> tvm.transform.Pass:
    options = options or PipelineOptions()

    @tvm.transform.module_pass(opt_level=0, name="ShuffleTVMPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        built = mod
        for _phase, built in run_phases(mod, target, options):
            pass
        return built

    return _pipeline


def compile_module(mod: tvm.IRModule, target: Any, options: PipelineOptions | None = None) -> Any:
    """Relax module -> executable (not yet linked)."""
    options = options or PipelineOptions()
    pipeline = relax.get_default_pipeline(target) if options.stock else make_pipeline(target, options)
    tvm_compat.prepare_codegen(target)
    with target:
        return relax.build(mod, target=target, relax_pipeline=pipeline)
