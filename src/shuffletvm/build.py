"""Model -> Relax -> compiled, self-contained `.so`.

The `.so` carries its own weights (constants) and a `shuffletvm_metadata` function that returns the input
name, shape and dtype as JSON, so `shuffletvm run` needs nothing beside it. It is written to a temporary file in
the output's folder and renamed into place: an interrupted or failed build never leaves a half-written module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, cuda_kernels, tvm_compat
from .errors import ShuffleTVMError
from .fileio import atomic_output, check_writable
from .frontend.graph import ImportedGraph
from .models.registry import DEFAULT_MODEL
from .pipeline import PipelineOptions, batch_one_kernels, compile_module
from .targets import ResolvedTarget, TargetOptions, resolve_target

logger = logging.getLogger(__name__)

from .runtime import METADATA_FUNCTION


@dataclass
class BuildConfig:
    output: Path
    model: str = DEFAULT_MODEL
    target: str = "x86"
    batch: int | None = None  # None: the ONNX file's batch, else 1
    weights: Path | None = None
    onnx: Path | None = None
    target_options: TargetOptions = field(default_factory=TargetOptions)
    dump_dir: Path | None = None
    use_tuning_logs: bool = True  # apply tuning_logs/<target>/, or where it has none a kindred CPU's log
    in_model_choices: bool = True  # ... except the records of kernels its in_model.json gives the hand schedule
    log_dir: Path | None = None  # tuning log root; default: tuning_logs/
    stock_pipeline: bool = False  # TVM's own default Relax pipeline, for "untuned TVM" baselines
    hand_schedules: bool = True  # schedules/ for kernels no tuning record covers
    partition_rows: bool = True  # multi-core CPUs: dense kernels split their parallel loops by output rows
    partition_images: bool = True  # ... and at batch N (a multiple of the cores) every kernel by images
    partition_grouped: bool = True  # ... and grouped convs (V1) as the dense ones
    produce_into_concat: bool = True  # CPUs: a concat's inputs written into its buffer by their kernels
    fuse_stem: bool = True  # CPUs: the stem's conv -> ReLU -> max pool as one kernel
    fuse_expand_depthwise: bool = True  # CPUs: a stride-2 unit's 1x1 conv -> depthwise conv as one kernel
    fuse_grouped_conv_pair: bool = True  # CPUs: V1's grouped 1x1 conv ending a unit and the next one's first


@dataclass
class BuildResult:
    path: Path
    model: str
    target: ResolvedTarget
    input_shape: list[int]
    output_shape: list[int]
    import_s: float
    compile_s: float
    export_s: float
    kernels_total: int = 0
    kernels_tuned: int = 0  # kernels whose schedule came from the tuning log
    kernels_batch_one: int = 0  # of those, batch-N kernels scheduled with their batch-1 kernel's record
    tuning_log: Path | None = None
    kernels_hand: int = 0  # hand-written: inserted by the graph passes or scheduled by a schedules/ rule
    pass_counts: dict[str, int] = field(default_factory=dict)  # how often each shuffletvm pass fired
    kernels_hand_chosen: int = 0  # kernels whose log records in_model.json set aside (hand or default schedule)
    workloads: dict[str, str] = field(default_factory=dict)  # kernel name -> workload hash (PipelineOptions)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def load_graph(model: str, batch: int | None = None, weights: Path | None = None, onnx: Path | None = None) -> ImportedGraph:
    """Import from the model zoo (torch.export) or from an ONNX file."""
    if batch is not None and batch < 1:
        raise ShuffleTVMError(f"batch must be at least 1, got {batch}")
    if onnx is not None:
        if weights is not None:
            raise ShuffleTVMError("--weights applies to zoo models; an ONNX file carries its own weights")
        from .frontend.onnx import import_onnx

        return import_onnx(onnx, batch)
    from .frontend.torch_export import import_torch
    from .models.registry import create_model, get_spec

    get_spec(model)  # an unknown name fails here, before torch builds anything
    return import_torch(create_model(model, weights), batch or 1, model)


def attach_metadata(graph: ImportedGraph, target: ResolvedTarget) -> list[int]:
    output_shape = tvm_compat.output_shape(graph.mod["main"])
    graph.mod[METADATA_FUNCTION] = tvm_compat.metadata_function(
        METADATA_FUNCTION,
        {
            "model": graph.name,
            "source": graph.source,
            "input_name": graph.input_name,
            "input_shape": graph.input_shape,
            "input_dtype": graph.input_dtype,
            "output_shape": output_shape,
            "device": target.device,
            "arch": target.arch,
            "target": target.spec,
            "shuffletvm_version": __version__,
        }
    )
    return output_shape


def export_atomic(executable: Any, path: Path, target: ResolvedTarget) -> None:
    """Link the `.so` beside `path`, embed compiled CUDA kernels for GPU targets, then rename into place."""
    fcompile = target.export_compiler()
    source = cuda_kernels.cuda_source(executable) if target.device == "cuda" else None
    fatbin = cuda_kernels.compile_fatbin(source, target.spec["arch"]) if source else None
    with atomic_output(path, mode=0o755) as tmp:
        if fcompile is None:
            executable.export_library(str(tmp))
        else:
            executable.export_library(str(tmp), fcompile=fcompile)
        if source and fatbin:
            cuda_kernels.embed(tmp, source, fatbin)


def build(config: BuildConfig) -> BuildResult:
    output = Path(config.output)
    check_writable(output)
    target = resolve_target(config.target, config.target_options)
    for note in target.notes:
        logger.warning(note)

    start = time.perf_counter()
    graph = load_graph(config.model, config.batch, config.weights, config.onnx)
    output_shape = attach_metadata(graph, target)
    import_s = time.perf_counter() - start
    logger.info("imported %s via %s in %.1f s (input %s)", graph.name, graph.source, import_s, graph.input_shape)

    database, whole_log, log_path, rows_ratio, hand_chosen = None, None, None, None, {}
    if config.use_tuning_logs:
        from .tuning.database import kindred_log, open_log

        log = open_log(target, config.log_dir, create=False)
        if not log.records:
            log = kindred_log(target, config.log_dir) or log
            if log.records:
                logger.warning("no tuning log for %s: using %s's, tuned on another CPU (`shuffletvm tune` tunes "
                               "for this one, starting from it)", target.log_key, log.target.log_key)
        if log.records:
            database, log_path, rows_ratio = log.database(config.in_model_choices), log.path, log.rows_ratio
            hand_chosen = log.hand_chosen if config.in_model_choices else {}
            whole_log = log.database() if hand_chosen and graph.input_shape[0] > 1 else None
    start = time.perf_counter()
    batch_one = _batch_one(config, graph, target) if database is not None and graph.input_shape[0] > 1 else None
    options = PipelineOptions(dump_dir=config.dump_dir, database=database, batch_one=batch_one,
                              batch_one_database=whole_log, hand_chosen=frozenset(hand_chosen),
                              stock=config.stock_pipeline, hand_schedules=config.hand_schedules,
                              partition_rows=config.partition_rows, partition_images=config.partition_images,
                              partition_grouped=config.partition_grouped,
                              rows_ratio=rows_ratio, produce_into_concat=config.produce_into_concat,
                              fuse_stem=config.fuse_stem,
                              fuse_expand_depthwise=config.fuse_expand_depthwise,
                              fuse_grouped_conv_pair=config.fuse_grouped_conv_pair)
    executable = compile_module(graph.mod, target.tvm_target(), options)
    compile_s = time.perf_counter() - start
    stats = options.stats
    # hand-written: kernels the graph passes inserted already scheduled, plus those a schedules/ rule took
    lifted = stats["ApplyBatchOneRecords"]
    total, tuned = stats["kernels"], stats["kernels_tuned"] + lifted
    hand = stats["kernels_hand"] + stats["ApplyHandSchedules"]
    chosen = sum(workload in hand_chosen for workload in options.workloads.values())
    passes = {k: v for k, v in stats.items() if not k.startswith("kernels")}
    logger.info("compiled for %s in %.1f s: %d kernels: %d from %s%s, %d hand-written, %d with default schedules%s",
                target.name, compile_s, total, tuned, log_path or "no tuning log",
                f" ({lifted} with their batch-1 record)" if lifted else "", hand, total - tuned - hand,
                f"; {chosen} records set aside by in_model.json" if chosen else "")
    if passes:
        logger.info("graph passes: %s", ", ".join(f"{k} {v}" for k, v in sorted(passes.items())))

    start = time.perf_counter()
    export_atomic(executable, output, target)
    export_s = time.perf_counter() - start
    logger.info("wrote %s (%.1f MB) in %.1f s", output, output.stat().st_size / 1e6, export_s)
    return BuildResult(output, graph.name, target, graph.input_shape, output_shape, import_s, compile_s, export_s,
                       total, tuned, lifted, log_path, hand, passes, chosen, dict(options.workloads))


def _batch_one(config: BuildConfig, graph: ImportedGraph, target: ResolvedTarget) -> dict[str, Any] | None:
    """The model's kernels at batch 1, for ApplyBatchOneRecords (None where the model has no batch-1 form: an
    ONNX file with a fixed batch)."""
    if config.stock_pipeline or target.device != "cpu":
        return None
    try:
        one = load_graph(config.model, 1, None, config.onnx)  # the weights do not change the kernels
    except ShuffleTVMError:
        return None
    logger.info("batch %d: the batch-1 kernels' records apply where batch %d has none", graph.input_shape[0],
                graph.input_shape[0])
    return batch_one_kernels(one.mod, target.tvm_target())
