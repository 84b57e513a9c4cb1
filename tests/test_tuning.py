"""Tuning: tasks, per-target logs, resume and corruption handling, and short real tuning runs (x86 here, aarch64
on the emulated RPC device). Real tuning here is a few trials: it proves the path, not the speed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import tvm

from shuffletvm.errors import ShuffleTVMError
from shuffletvm.targets import TargetOptions, resolve_target
from shuffletvm.tuning.database import open_log
from shuffletvm.tuning.tasks import count_done, extract_tasks, lowered_models, model_tasks
from shuffletvm.tuning.tune import TuneConfig, tune

from .conftest import assert_user_error, cli

X86 = resolve_target("x86")


def _tasks(*models: str):
    target = X86.tvm_target()
    return model_tasks(list(models), 1, target)


@pytest.fixture(scope="module")
def tuned_log(tmp_path_factory) -> Path:
    """A real tuning log: three small kernels of V2 0.5x, 2 trials each; the two depthwise convs start from
    their hand-written schedule, which is measured and recorded first (on top of the trials)."""
    root = tmp_path_factory.mktemp("logs")
    result = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=2, log_dir=root,
                             kernels="^fused_conv2d_add$|^fused_conv2d2_add$|^mean$"))
    assert result.trials == 6 and result.failed == 0 and not result.stop_reason
    assert result.log.records_now() == 8  # 2 hand-schedule seeds + 6 searched trials
    return root


def test_tasks_are_deduplicated_across_models():
    small, large = _tasks("shufflenet_v2_x0_5"), _tasks("shufflenet_v2_x1_0")
    both = _tasks("shufflenet_v2_x0_5", "shufflenet_v2_x1_0")
    shared = len(small) + len(large) - len(both)
    assert shared >= 2  # the first depthwise conv (on the stem's 24 channels), the mean, the classifier
    assert sum(t.weight for t in both) == sum(t.weight for t in small) + sum(t.weight for t in large)


def test_data_movement_tasks_are_told_apart_and_capped():
    """V1's stride-2 concat is a data-movement task with a capped budget; V2's concat/shuffle/split kernels are
    hand-written by FuseConcatShuffleSplit and are not tasks at all."""
    tasks = _tasks("shufflenet_v1_g3_x0_5")
    concats = [t for t in tasks if "concatenate" in t.name]
    convs = [t for t in tasks if "conv2d" in t.name]
    assert concats and all(not t.compute for t in concats)
    assert convs and all(t.compute for t in convs)
    assert all(t.budget(64) == 1 for t in concats) and all(t.budget(64) == 64 for t in convs)
    # V2: no shuffle task left; the data-movement kernels are concats: the one before conv5 (whose shuffle conv5
    # reads through) and, on x86, the concat that starts each stage KeepIdentityInPlace keeps in one buffer (2 on
    # AVX-512; 1 on AVX2, whose layout phase packs the 14x14 stage's convs too)
    from .conftest import v2_stages_in_place

    v2_moves = [t.name for t in _tasks("shufflenet_v2_x0_5") if not t.compute]
    assert len(v2_moves) == 1 + v2_stages_in_place(X86.tvm_target()), v2_moves
    assert all("concatenate" in name for name in v2_moves), v2_moves


def test_cuda_kernels_are_unscheduled_tuning_tasks():
    """The stock CUDA legalize phase ends with dlight's default schedules, which mark every kernel scheduled and
    so hide it from MetaSchedule; shuffletvm's pipeline schedules after extraction, so CUDA has tasks."""
    import tvm_ffi

    from shuffletvm import tvm_compat

    target = resolve_target("cuda", TargetOptions(cuda_arch="sm_90")).tvm_target()
    lowered = lowered_models(["shufflenet_v2_x0_5"], 1, target)
    tasks = extract_tasks(lowered, target)
    unscheduled = {tvm_ffi.structural_hash(f) for f in lowered[0].functions.values()
                   if isinstance(f, tvm.tirx.PrimFunc) and not tvm_compat.is_scheduled(f)}
    assert len(tasks) == len(unscheduled) and sum(t.compute for t in tasks) >= 15


def _assert_computes_the_same(func, scheduled, args, target) -> None:
    """`scheduled` (a schedule of `func`) writes what `func` writes into its last argument, given `args`."""
    import numpy as np
    import tvm.runtime

    outputs = []
    for f in (func, scheduled):
        lib = tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target=target)
        tensors = [tvm.runtime.tensor(a.copy()) for a in args]
        lib(*tensors)
        outputs.append(tensors[-1].numpy())
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5 * np.abs(outputs[0]).max())


def test_stage_buffer_convs_are_tasks_and_start_from_their_plain_conv(tmp_path):
    """KeepIdentityInPlace's convs are tasks (the in-place one too, which MetaSchedule's extraction skips), and
    a record of the plain conv each replaces replays on it: the seed computes what the kernel computes."""
    import numpy as np
    from shuffletvm.schedules import first_claim
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from shuffletvm.tuning.seeds import plain_twin, plain_twin_schedule

    target = X86.tvm_target()
    tasks = [t for t in _tasks("shufflenet_v2_x0_5") if "gather" in t.name or "scatter" in t.name]
    from .conftest import v2_stages_in_place

    stages = v2_stages_in_place(target)
    assert stages and len(tasks) == 2 * stages and sum("scatter" in t.name for t in tasks) == stages
    database = ms.database.MemoryDatabase()
    rng = np.random.default_rng(0)
    for task in sorted(tasks, key=lambda t: "scatter" in t.name):  # a stage's gather and scatter share a twin
        func = task.extracted.dispatched[0]["main"]
        twin = plain_twin(func, target)
        twin_schedule = first_claim(twin, target)[1]
        if "gather" in task.name:
            assert plain_twin_schedule(task, database, target) is None  # nothing recorded for the twin yet
            database.commit_tuning_record(ms.database.TuningRecord(
                twin_schedule.trace, database.commit_workload(_normalize_mod(twin)), [1e-5], target,
                ArgInfo.from_prim_func(twin)))
        seed = plain_twin_schedule(task, database, target)
        assert seed is not None, task.name
        assert "\n".join(seed.trace.as_python()) == "\n".join(twin_schedule.trace.as_python())
        args = [rng.permutation(2 * int(a.shape[0]))[: int(a.shape[0])].astype("int32") if str(a.dtype) == "int32"
                else rng.standard_normal([int(v) for v in a.shape]).astype("float32") for a in ArgInfo.from_prim_func(func)]
        _assert_computes_the_same(func, seed.mod["main"], args, target)


def test_batch_n_kernels_start_from_their_batch_1_record():
    """A batch-1 kernel's searched record replays on the same kernel at batch 3: the tile decisions are the
    batch-1 ones, except the batch loop's, whose outermost tile takes the 3 images; the result computes what
    the unscheduled batch-3 kernel computes."""
    import numpy as np
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.tuning.seeds import batch_twin_schedule, batch_twin_seeds, batch_twins

    target = X86.tvm_target()
    one = {t.name: t for t in _tasks("shufflenet_v2_x0_5")}
    three = {t.name: t for t in model_tasks(["shufflenet_v2_x0_5"], 3, target)}
    # the first unit's branch-1 1x1 conv (on x86 the stem conv is fused with its pool, and branch 2's 1x1 conv
    # with its depthwise conv: not tasks)
    stem, stem_one = three["fused_conv2d1_add_relu"], one["fused_conv2d1_add_relu"]
    func = stem.extracted.dispatched[0]["main"]
    assert batch_twins(func, stem_one.extracted.dispatched[0]["main"])
    assert not batch_twins(func, one["mean"].extracted.dispatched[0]["main"])
    database = ms.database.MemoryDatabase()
    assert batch_twin_schedule(stem, stem_one, database, target) is None  # nothing recorded at batch 1 yet
    context = ms.TuneContext(mod=stem_one.extracted.dispatched[0], target=target, space_generator="post-order-apply",
                             task_name=stem_one.name, rand_state=1)
    searched = context.generate_design_space()[0]
    database.commit_tuning_record(ms.database.TuningRecord(
        searched.trace, database.commit_workload(stem_one.extracted.dispatched[0]), [1e-5], target,
        ArgInfo.from_prim_func(stem_one.extracted.dispatched[0]["main"])))
    lifted = batch_twin_schedule(stem, stem_one, database, target)
    assert lifted is not None

    def tiles(trace):
        return [[int(f) for f in trace.decisions[i]] for i in trace.insts if i.kind.name == "SamplePerfectTile"]

    pairs = list(zip(tiles(searched.trace), tiles(lifted.trace), strict=True))
    widened = [(a, b) for a, b in pairs if a != b]
    assert len(widened) == 1 and widened[0][0][0] * 3 == widened[0][1][0] and widened[0][0][1:] == widened[0][1][1:]
    assert [seed[0].name for seed in batch_twin_seeds(list(three.values()), list(one.values()), database, target)] \
        == ["fused_conv2d1_add_relu"]
    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(v) for v in a.shape]).astype("float32") for a in ArgInfo.from_prim_func(func)]
    _assert_computes_the_same(func, lifted.mod["main"], args, target)


def test_tuning_at_batch_n_records_the_batch_1_schedules_once(tuned_log, tmp_path):
    """Tuning at batch 2 after batch 1 measures and records each kernel's batch-1 best schedule, replayed, as a
    batch-2 record, including kernels the log already covers at batch 2; a second run measures none again."""
    from shuffletvm.tuning.seeds import _trace_text, batch_twin_schedule
    from shuffletvm.tuning.tasks import records_for

    shutil.copytree(tuned_log / X86.log_key, tmp_path / X86.log_key)
    config = TuneConfig(models=["shufflenet_v2_x0_5"], batch=2, trials_per_task=1, log_dir=tmp_path,
                        kernels="^fused_conv2d_add$|^mean$")
    before = open_log(X86, tmp_path).records_now()
    first = tune(config)
    target = X86.tvm_target()
    database = first.log.database()
    one = {t.name: t for t in _tasks("shufflenet_v2_x0_5")}
    for task in first.tasks:
        lifted = batch_twin_schedule(task, one[task.name], database, target)
        assert lifted is not None, task.name
        assert _trace_text(lifted.trace) in [_trace_text(r.trace) for r in records_for(task, database)]
    after_first = first.log.records_now()
    assert after_first >= before + 2 + first.trials  # the two replayed schedules, on top of the trials
    again = tune(config)
    assert again.trials == 0 and again.log.records_now() == after_first


def test_remeasure_records_each_kernels_best_traces_again(tuned_log, tmp_path):
    """--remeasure N measures each kernel's best N records again with this run's runner: the same traces, their
    new times replacing the old ones (each schedule recorded once); nothing else is searched when the log covers
    the kernels."""
    from shuffletvm.tuning.seeds import _trace_text
    from shuffletvm.tuning.tasks import records_for

    shutil.copytree(tuned_log / X86.log_key, tmp_path / X86.log_key)
    log = open_log(X86, tmp_path)
    tasks = [t for t in _tasks("shufflenet_v2_x0_5") if t.name in ("fused_conv2d_add", "mean")]
    def records(task, database):
        return [(_trace_text(r.trace), sum(float(s) for s in r.run_secs) / len(r.run_secs))
                for r in records_for(task, database)]

    before = {t.name: records(t, log.database()) for t in tasks}
    result = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=1, log_dir=tmp_path,
                             kernels="^fused_conv2d_add$|^mean$", remeasure=2))
    assert result.trials == 0 and result.log.records_now() == log.records
    database = result.log.database()
    for task in tasks:
        after = records(task, database)
        added = [r for r in after if r not in before[task.name]]
        best_two = {trace for trace, _ in sorted(before[task.name], key=lambda r: r[1])[:2]}
        assert len(added) == 2 and {trace for trace, _ in added} == best_two
        assert sorted(trace for trace, _ in after) == sorted({trace for trace, _ in before[task.name]})


def test_apply_batch_one_records_replays_batch_1_records_on_uncovered_kernels(tuned_log):
    """ApplyBatchOneRecords, at batch 2 with a log of batch-1 records: each kernel whose batch-1 namesake has a
    record becomes exactly that record replayed with the batch tile widened (and is marked scheduled); every
    other kernel is left as it was."""
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from shuffletvm import tvm_compat
    from shuffletvm.build import load_graph
    from shuffletvm.passes import ApplyBatchOneRecords
    from shuffletvm.pipeline import batch_one_kernels, lower_for_tuning
    from shuffletvm.tuning.seeds import replay_widened

    target = X86.tvm_target()
    database = open_log(X86, tuned_log, create=False).database()
    before = lower_for_tuning(load_graph("shufflenet_v2_x0_5", 2).mod, target)
    one = batch_one_kernels(load_graph("shufflenet_v2_x0_5", 1).mod, target)
    counters = Counter()
    with target:
        after = ApplyBatchOneRecords(database, one, counters)(before)
    covered = {"fused_conv2d_add", "fused_conv2d2_add", "mean"}
    assert counters["ApplyBatchOneRecords"] == len(covered)
    for gvar, func in before.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        if gvar.name_hint not in covered:
            assert after[gvar.name_hint].same_as(func), gvar.name_hint
            continue
        record = database.query_tuning_record(_normalize_mod(one[gvar.name_hint]), target, gvar.name_hint)
        expected = replay_widened(record.trace, _normalize_mod(func)).mod["main"]
        tvm.ir.assert_structural_equal(after[gvar.name_hint], expected.with_attr(tvm_compat.IS_SCHEDULED, True))


def test_batch_n_build_with_batch_1_records_keeps_parity(tuned_log, monkeypatch):
    """A batch-2 build with a log tuned at batch 1 only uses its records (the pass fired on the 3 kernels the
    log covers) and computes what PyTorch computes."""
    from shuffletvm.parity import ParityConfig, check_parity

    monkeypatch.setenv("SHUFFLETVM_TUNING_LOGS", str(tuned_log))
    report = check_parity(ParityConfig(model="shufflenet_v2_x0_5", batch=2, seeds=1))
    assert report.passed and report.pass_counts.get("ApplyBatchOneRecords") == 3, report.pass_counts


def test_cuda_preset_carries_what_metaschedule_needs():
    """MetaSchedule's CUDA rules read the GPU's limits from the target (a bare {"kind": "cuda"} fails at the
    first task: `missing attribute max_threads_per_block`); the preset's target generates design spaces."""
    from tvm.s_tir import meta_schedule as ms

    target = resolve_target("cuda", TargetOptions(cuda_arch="sm_90")).tvm_target()
    task = next(t for t in model_tasks(["shufflenet_v2_x0_5"], 1, target) if t.compute)
    context = ms.TuneContext(mod=task.extracted.dispatched[0], target=target, space_generator="post-order-apply",
                             search_strategy="evolutionary", task_name=task.name)
    assert context.generate_design_space()


def test_cuda_candidates_are_compiled_by_the_builders(tmp_path):
    """CUDA tuning compiles each candidate's kernels in the builders (one per core) and the runner's workers
    serve those fatbins to TVM's load-time compile; left to the load, the one runner worker would run nvcc for
    every candidate in turn. No GPU needed to check the host side: a hand-scheduled kernel is built through the
    tuner's builder, and a fresh process set up as the runner's workers are gets that fatbin for its source."""
    from shuffletvm import cuda_kernels
    from shuffletvm.tuning.seeds import hand_schedule
    from shuffletvm.tuning.tune import builder_and_runner
    from tvm.s_tir import meta_schedule as ms

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH (the CUDA toolkit; no GPU needed)")
    cuda = resolve_target("cuda", TargetOptions(cuda_arch="sm_90"))
    target = cuda.tvm_target()
    task = next(t for t in model_tasks(["shufflenet_v2_x0_5"], 1, target)
                if hand_schedule(t, target) is not None)
    _name, sch = hand_schedule(task, target)
    builder, _runner = builder_and_runner(cuda, None, None, 60, str(tmp_path))
    try:
        (result,) = builder.build([ms.builder.BuilderInput(sch.mod, target)])
    finally:
        builder.shutdown()
    assert result.error_msg is None, result.error_msg
    assert result.artifact_path.endswith(".so")  # linked by the builder too, not at load by the runner
    source = cuda_kernels.cuda_source(tvm.compile(sch.mod, target=target))
    fatbins = list((tmp_path / "cuda").glob("*.fatbin"))
    assert [f.name for f in fatbins] == [f"{cuda_kernels.source_sha(source)}.fatbin"]
    (tmp_path / "kernel.cu").write_text(source)
    serve = ("import sys; from pathlib import Path; import tvm_ffi; from shuffletvm import cuda_kernels; "
             "cuda_kernels.serve_compiled_in(sys.argv[1]); "
             "compile = tvm_ffi.get_global_func('tvm_callback_cuda_compile'); "
             "sys.stdout.buffer.write(bytes(compile(Path(sys.argv[2]).read_text())))")
    served = subprocess.run([sys.executable, "-c", serve, str(tmp_path / "cuda"), str(tmp_path / "kernel.cu")],
                            capture_output=True, timeout=300)
    assert served.returncode == 0, served.stderr.decode()[-2000:]
    assert served.stdout == fatbins[0].read_bytes() and served.stdout[:4] == bytes.fromhex("50ed55ba")  # fatbin


def test_log_is_per_target_and_stamped(tmp_path):
    log = open_log(X86, tmp_path)
    stamp = json.loads((log.path / "target.json").read_text())
    assert stamp["key"] == X86.log_key and log.path.name == X86.log_key
    other = resolve_target("x86", TargetOptions(mcpu=_other_cpu("skylake-avx512", "icelake-server")))
    shutil.copytree(log.path, tmp_path / other.log_key)
    with pytest.raises(ShuffleTVMError, match="holds records for target"):
        open_log(other, tmp_path)


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / X86.log_key).mkdir()
    (tmp_path / X86.log_key / "notes.txt").write_text("mine")
    with pytest.raises(ShuffleTVMError, match="not a shuffletvm tuning log"):
        open_log(X86, tmp_path)


def test_shipped_logs_are_stamped_and_whole():
    """Every log shipped under tuning_logs/ is stamped for the preset target its folder is named after, opens with
    no corrupt line, and MetaSchedule reads all its records (a build of that class applies them)."""
    from shuffletvm.tuning.database import _stamped_target, default_log_root

    root = default_log_root()
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(folders) >= 5
    for folder in folders:
        target = _stamped_target(folder)
        assert target is not None and target.log_key == folder.name, folder
        log = open_log(target, root, create=False)  # read-only: nothing on disk changes
        assert log.records and log.rejected == 0 and not list(folder.glob("*.rejected")), folder
        database = log.database()
        assert len(database) == log.records and len(database.get_all_tuning_records()) == log.records, folder


def test_unwritable_log_dir():
    with pytest.raises(ShuffleTVMError, match="cannot create tuning log folder"):
        open_log(X86, Path("/proc/shuffletvm-logs"))


def test_build_applies_log_and_reports_counts(tuned_log, tmp_path):
    proc = cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path / "m.so"), "--log-dir", str(tuned_log))
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("| kernels |"))
    total, tuned = (int(v) for v in line.split("|")[2].split(" from")[0].split(": "))
    assert tuned == 3 and total > tuned and "hand-written" in line
    off = cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path / "m2.so"), "--log-dir", str(tuned_log),
              "--no-tuning-logs")
    assert f"| kernels | {total}: 0 from" in off.stdout


def test_log_rows_ratio_sets_which_dense_kernels_the_build_splits_by_rows(tuned_log, tmp_path):
    """A log's target.json may say which dense kernels are split by rows (`rows_ratio`, activations to
    weights): its records were measured so. V2 1.0x's 14x14 1x1 convs (activations 1.7-3.4x their weights) are
    split at 1.5, not at the default; a value that is not a positive number is one clear error."""
    from shuffletvm.build import BuildConfig, build

    counts = {}
    for ratio in (None, 1.5):
        root = tmp_path / f"logs-{ratio}"
        shutil.copytree(tuned_log, root)
        manifest = root / X86.log_key / "target.json"
        if ratio is not None:
            manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "rows_ratio": ratio}))
        assert open_log(X86, root, create=False).rows_ratio == ratio
        result = build(BuildConfig(output=tmp_path / f"m-{ratio}.so", model="shufflenet_v2_x1_0", log_dir=root))
        counts[ratio] = result.pass_counts["PartitionRowsAcrossCores"]
    # the 14x14 gather, scatter and stride-1 1x1 convs, and the three channel-local kernels into that plane that
    # follow them (the stride-2 and stride-1 depthwise convs, the concat)
    assert counts[1.5] == counts[None] + 6
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "rows_ratio": -1}))
    proc = cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path / "bad.so"), "--log-dir", str(root), "-q")
    assert_user_error(proc, "rows_ratio must be a positive number")
    assert not (tmp_path / "bad.so").exists()


def test_tuned_build_keeps_parity(tuned_log, monkeypatch):
    from shuffletvm.parity import ParityConfig, check_parity

    monkeypatch.setenv("SHUFFLETVM_TUNING_LOGS", str(tuned_log))
    report = check_parity(ParityConfig(model="shufflenet_v2_x0_5", seeds=2))
    assert report.passed and all(r.top1_agree == 1.0 for r in report.rows)


def test_resume_skips_what_the_log_covers(tuned_log):
    log = open_log(X86, tuned_log)
    tasks = [t for t in _tasks("shufflenet_v2_x0_5") if t.name in ("mean", "fused_conv2d_add")]
    count_done(tasks, log.database())
    assert tasks and all(t.done_trials >= 1 for t in tasks)
    before = log.records_now()
    again = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=2, log_dir=tuned_log, kernels="^mean$"))
    assert again.skipped == 1 and again.trials == 0 and again.log.records_now() == before


def test_prune_keeps_the_best_records_of_live_kernels(tuned_log, tmp_path):
    import tvm_ffi

    from shuffletvm.tuning.database import prune_log
    from shuffletvm.tuning.tasks import records_for

    shutil.copytree(tuned_log / X86.log_key, tmp_path / X86.log_key)
    log = open_log(X86, tmp_path)
    tasks = {t.name: t for t in _tasks("shufflenet_v2_x0_5")}
    best_before = float(records_for(tasks["fused_conv2d_add"], log.database(), 1)[0].run_secs[0])
    live = {int(tvm_ffi.structural_hash(tasks[name].extracted.dispatched[0]))
            for name in ("fused_conv2d_add", "mean")}
    result = prune_log(log, 1, live)
    assert (result.workloads_before, result.workloads_after) == (3, 2) and result.records_after == 2
    pruned = open_log(X86, tmp_path, create=False)
    database = pruned.database()
    assert pruned.records == 2 and not list((tmp_path).glob("*.pruning")) and not list(tmp_path.glob("*.old"))
    assert float(records_for(tasks["fused_conv2d_add"], database, 1)[0].run_secs[0]) == best_before
    assert not records_for(tasks["fused_conv2d2_add"], database)
    with pytest.raises(ShuffleTVMError, match="keep at least 1"):
        prune_log(pruned, 0)


def test_prune_restores_kernels_records_from_another_log(tuned_log, tmp_path):
    """`restore`: the kernels named take their records from another log of the target (a copy from before a run
    whose records of them were slower in the built model), the others keep theirs; a source without records of
    one of them changes nothing."""
    import tvm_ffi

    from shuffletvm.tuning.database import prune_log
    from shuffletvm.tuning.tasks import records_for

    for name in ("now", "before"):
        shutil.copytree(tuned_log / X86.log_key, tmp_path / name / X86.log_key)
    tasks = {t.name: t for t in _tasks("shufflenet_v2_x0_5")}
    conv = int(tvm_ffi.structural_hash(tasks["fused_conv2d_add"].extracted.dispatched[0]))
    before = open_log(X86, tmp_path / "before")
    prune_log(before, 1)  # the copy from before: one record of each kernel
    log = open_log(X86, tmp_path / "now")
    counts = {name: len(records_for(task, log.database())) for name, task in tasks.items()}
    assert counts["fused_conv2d_add"] > 1 and counts["fused_conv2d2_add"] > 1
    best_before = records_for(tasks["fused_conv2d_add"], open_log(X86, tmp_path / "before").database())[0]

    prune_log(log, 16, restore=(open_log(X86, tmp_path / "before", create=False), {conv}))
    database = open_log(X86, tmp_path / "now", create=False).database()
    restored = records_for(tasks["fused_conv2d_add"], database)
    assert len(restored) == 1 and str(restored[0].trace) == str(best_before.trace)
    assert len(records_for(tasks["fused_conv2d2_add"], database)) == counts["fused_conv2d2_add"]

    files = {p.name: p.read_bytes() for p in (tmp_path / "now" / X86.log_key).iterdir()}
    with pytest.raises(ShuffleTVMError, match="has no records of 1 of the 1 kernels to restore; nothing changed"):
        prune_log(open_log(X86, tmp_path / "now"), 16, restore=(open_log(X86, tmp_path / "none", create=False), {conv}))
    assert {p.name: p.read_bytes() for p in (tmp_path / "now" / X86.log_key).iterdir()} == files


def test_time_budget_ends_the_warm_up_and_keeps_its_batches(tmp_path):
    """A budget that ends during MetaSchedule's warm-up (every kernel's first batch is started before any is
    joined) stops it before the next batch is built, and the batch already sent is joined and committed: the
    run's first batch (16 trials of the heavier kernel) is searched and kept, the second kernel gets none."""
    from shuffletvm.tuning.tasks import records_for

    result = tune(TuneConfig(models=["shufflenet_v2_x0_5"], time_budget_min=0.02, log_dir=tmp_path,
                             kernels="^fused_conv2d_add$|^fused_conv2d2_add$", num_trials_per_iter=16))
    assert result.stop_reason == "time budget reached"
    assert result.trials == 16 and len(result.log.database().get_all_tuning_records()) == 18  # + 2 seeds
    database = result.log.database()
    assert len(records_for(result.tasks[0], database)) == 17 - result.failed  # its seed and its batch
    assert len(records_for(result.tasks[1], database)) == 1  # its seed only


def test_searching_logged_kernels_without_remeasure_warns(tuned_log, tmp_path):
    """Records keep the time of the run that measured them: searching kernels that have records, without
    --remeasure, says so; with it, the best records are measured again first and nothing is said."""
    shutil.copytree(tuned_log, tmp_path, dirs_exist_ok=True)
    args = ["tune", "shufflenet_v2_x0_5", "--log-dir", str(tmp_path), "--kernels", "^fused_conv2d_add$", "-q"]
    plain = cli(*args, "--trials", "4")
    assert plain.returncode == 0, plain.stderr
    assert "1 kernels to tune have records measured in earlier runs; --remeasure N" in plain.stderr
    again = cli(*args, "--trials", "5", "--remeasure", "2")
    assert again.returncode == 0, again.stderr
    assert "measured in earlier runs" not in again.stderr


def test_tuning_starts_from_the_hand_schedule_once(tuned_log):
    """The depthwise kernels' hand schedules are records of their own in the log (so the build can never pick a
    searched candidate slower than them), and seeding again finds them there and measures nothing."""
    from shuffletvm.tuning.seeds import _trace_text, hand_schedule, hand_seeds
    from shuffletvm.tuning.tasks import records_for

    log = open_log(X86, tuned_log)
    database = log.database()
    target = X86.tvm_target()
    tasks = [t for t in _tasks("shufflenet_v2_x0_5") if t.name in ("fused_conv2d_add", "fused_conv2d2_add")]
    assert len(tasks) == 2
    for task in tasks:
        rule, sch = hand_schedule(task, target)
        assert rule == "depthwise_conv3x3"
        traces = [_trace_text(r.trace) for r in records_for(task, database)]
        assert _trace_text(sch.trace) in traces and len(traces) >= 2
    assert hand_seeds(tasks, database, target) == []


def test_a_covered_kernels_changed_hand_schedule_is_measured(tmp_path, monkeypatch):
    """A hand schedule that changed since a kernel's records were logged (here: there was none then) is measured
    and recorded by the next run that selects the kernel, though the log covers it and nothing is searched:
    else the build would keep the stale records over a faster hand schedule."""
    from shuffletvm.tuning import seeds

    config = TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=1, log_dir=tmp_path,
                        kernels="^fused_conv2d_add$")
    with monkeypatch.context() as patched:
        patched.setattr(seeds, "hand_schedule", lambda task, target: None)
        first = tune(config)
    assert first.trials == 1 and first.log.records_now() == 1
    again = tune(config)
    assert again.trials == 0 and again.skipped == 1 and again.log.records_now() == 2
    (task,) = again.tasks
    rule, sch = seeds.hand_schedule(task, X86.tvm_target())
    assert rule == "depthwise_conv3x3" and seeds._recorded(task, sch, again.log.database())


def test_remeasure_measures_a_slow_logged_hand_schedule_again(tmp_path):
    """--remeasure N measures a kernel's hand-schedule record again with its best N records, though it is not
    among them: a hand schedule once timed while the machine was busy (here: 1 s) would otherwise stay behind
    slower tuned records for good, and the build would pick one of them over it."""
    from dataclasses import replace

    from shuffletvm.tuning import seeds
    from shuffletvm.tuning.tasks import records_for

    config = TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=2, log_dir=tmp_path,
                        kernels="^fused_conv2d_add$")
    first = tune(config)
    assert first.log.records_now() >= 2
    records = first.log.path / "database_tuning_record.json"
    lines = records.read_text().splitlines()
    busy = json.loads(lines[0])  # the hand schedule: measured before the search
    busy[1][1] = [1.0]
    records.write_text("\n".join([json.dumps(busy, separators=(",", ":")), *lines[1:]]) + "\n")
    (task,) = first.tasks
    _rule, hand = seeds.hand_schedule(task, X86.tvm_target())

    def hand_seconds() -> list[float]:
        return [float(r.run_secs[0]) for r in records_for(task, first.log.database())
                if seeds._trace_text(r.trace) == seeds._trace_text(hand.trace)]

    assert hand_seconds() == [1.0]
    assert seeds._trace_text(records_for(task, first.log.database(), 1)[0].trace) != seeds._trace_text(hand.trace)
    again = tune(replace(config, remeasure=1))
    assert again.trials == 0
    (seconds,) = hand_seconds()
    assert seconds < 0.01  # measured again (a 3x3 depthwise conv at 28x28: tens of microseconds), the 1 s gone


def test_corrupt_and_truncated_lines_are_skipped_counted_and_kept(tuned_log, tmp_path):
    root = tmp_path / "logs"
    shutil.copytree(tuned_log, root)
    records = root / X86.log_key / "database_tuning_record.json"
    good = records.read_text().splitlines()
    records.write_text("\n".join(good) + "\n{not json\n[99999, []]\n" + good[0][: len(good[0]) // 2])
    damaged = records.read_bytes()
    readonly = open_log(X86, root, create=False)  # as a build opens it: nothing on disk changes
    assert readonly.rejected == 3 and readonly.records == len(good) and records.read_bytes() == damaged
    assert len(readonly.database().get_all_tuning_records()) == len(good)
    log = open_log(X86, root)
    assert log.rejected == 3 and log.records == len(good)
    rejected = (root / X86.log_key / "database_tuning_record.json.rejected").read_text().splitlines()
    assert len(rejected) == 3 and rejected[0] == "{not json"
    assert len(log.database().get_all_tuning_records()) == len(good)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials must be positive"),
        (["--time-budget", "0"], "--time-budget must be positive"),
        (["--time-budget", "-3"], "--time-budget must be positive"),
        (["--remeasure", "-1"], "--remeasure must be 0 or more"),
        (["--kernels", "no_such_kernel"], "matches --kernels"),
        (["--kernels", "("], "not a valid regular expression"),
        (["--target", "arm"], "pass --rpc-tracker"),
        (["--target", "arm", "--rpc-tracker", "127.0.0.1:1", "--rpc-key", "k"], "no RPC tracker answers"),
        (["--target", "arm", "--rpc-tracker", "nonsense", "--rpc-key", "k"], "HOST:PORT"),
        (["--rpc-tracker", "127.0.0.1:9190", "--rpc-key", "k"], "runs here"),
    ],
)
def test_tune_bad_input(tmp_path, args, message):
    assert_user_error(cli("tune", "shufflenet_v2_x0_5", "--log-dir", str(tmp_path), "-q", *args), message)


def test_tune_log_dir_of_another_target(tmp_path):
    other = resolve_target("x86", TargetOptions(mcpu=_other_cpu("skylake-avx512", "icelake-server")))
    open_log(other, tmp_path)
    (tmp_path / other.log_key).rename(tmp_path / X86.log_key)
    proc = cli("tune", "shufflenet_v2_x0_5", "--log-dir", str(tmp_path), "--trials", "1", "-q")
    assert_user_error(proc, "holds records for target")


def _stamped_as(log_folder: Path, root: Path, target) -> Path:
    """A copy of a log folder under `root`, stamped for `target` (as if tuned on that CPU)."""
    folder = root / target.log_key
    shutil.copytree(log_folder, folder)
    (folder / "target.json").write_text(json.dumps({"key": target.log_key, "target": target.spec}))
    return folder


def _other_cpu(*names: str) -> str:
    """The first of `names` that is not this host's CPU (a test's "other CPU" must not be the host's own)."""
    return next(name for name in names if name != X86.spec.get("mcpu"))


def _avx512_host() -> bool:
    from shuffletvm.schedules._common import vector_lanes

    return vector_lanes(X86.tvm_target()) == 16


def _same_simd_cpu(vendor: str = "intel") -> str:
    """Another LLVM CPU of `vendor` with this host's SIMD width (the kindred rule needs it; the host may be any)."""
    if vendor == "amd":
        return _other_cpu("znver4", "znver5") if _avx512_host() else _other_cpu("znver2", "znver3")
    return _other_cpu("skylake-avx512", "icelake-server") if _avx512_host() else _other_cpu("haswell", "broadwell")


def test_kindred_log_is_the_closest_cpu_of_the_same_isa(tuned_log, tmp_path):
    """A target without a log of its own finds another CPU's of the same preset and SIMD width, the same core
    count first; logs of another SIMD width, another machine or another core count rank below or never."""
    from shuffletvm.tuning.database import kindred_log

    source = tuned_log / X86.log_key
    cores = X86.spec["num-cores"]
    same_isa = resolve_target("x86", TargetOptions(mcpu=_same_simd_cpu()))
    other_isa = resolve_target("x86", TargetOptions(mcpu="haswell" if _avx512_host() else "znver4"))
    more_cores = resolve_target("x86", TargetOptions(num_cores=cores + 2))
    for target in (other_isa, more_cores, resolve_target("arm", TargetOptions(num_cores=cores))):
        _stamped_as(source, tmp_path, target)
    assert kindred_log(X86, tmp_path).target.log_key == more_cores.log_key
    _stamped_as(source, tmp_path, same_isa)
    found = kindred_log(X86, tmp_path)
    assert found.target.log_key == same_isa.log_key and not found.writable and found.records == 8
    assert kindred_log(X86, tmp_path / "absent") is None
    assert kindred_log(other_isa, tmp_path) is None  # its own log is no kindred log, and no other has its width
    # ... but a search may start from another width's records: the same width first, then the same cores
    assert kindred_log(X86, tmp_path, any_width=True).target.log_key == same_isa.log_key
    assert kindred_log(other_isa, tmp_path, any_width=True).target.log_key == same_isa.log_key  # not more_cores
    assert kindred_log(resolve_target("cuda", TargetOptions(cuda_arch="sm_90")), tmp_path) is None


def test_kindred_log_prefers_the_same_vendor_over_more_records(tuned_log, tmp_path):
    """Among logs of the same width and core count, one tuned on a CPU of this host's vendor (Intel or AMD) comes
    before another vendor's, even with fewer records; between logs of one vendor, the most records still win."""
    from shuffletvm.tuning.database import kindred_log, open_log

    avx512 = _avx512_host()
    cpus = {vendor: _same_simd_cpu(vendor) for vendor in ("intel", "amd")}
    assert X86.vendor in cpus and X86.spec["mcpu"] not in cpus.values()
    other_vendor = {"intel": "amd", "amd": "intel"}[X86.vendor]
    same, other = (resolve_target("x86", TargetOptions(mcpu=cpus[v])) for v in (X86.vendor, other_vendor))
    assert (same.vendor, other.vendor) == (X86.vendor, other_vendor)
    larger = _stamped_as(tuned_log / X86.log_key, tmp_path, other) / "database_tuning_record.json"
    larger.write_text(larger.read_text() * 2)  # twice the records
    assert kindred_log(X86, tmp_path).target.log_key == other.log_key
    _stamped_as(tuned_log / X86.log_key, tmp_path, same)
    found = kindred_log(X86, tmp_path)
    assert found.target.log_key == same.log_key and found.records == 8
    assert open_log(other, tmp_path, create=False).records == 16
    # a generic x86-64 level (x86-64-v4 has AVX-512) has no vendor: the most records win
    generic = resolve_target("x86", TargetOptions(mcpu="x86-64-v4" if avx512 else "x86-64-v3"))
    assert generic.vendor is None and kindred_log(generic, tmp_path).target.log_key == other.log_key


def test_kindred_log_prefers_the_same_cpu_with_other_cores_over_its_vendor(tuned_log, tmp_path):
    """With no log of this core count, a log tuned on this very CPU (LLVM name) with other cores comes before
    another CPU of the same vendor, even one with more records (a 4-core Zen 4 takes the 2-core Zen 4 log, not
    the Zen 5 one); the core count still ranks first."""
    from shuffletvm.tuning.database import kindred_log, open_log

    cores = X86.spec["num-cores"]
    sibling = _same_simd_cpu(X86.vendor)
    kin = resolve_target("x86", TargetOptions(mcpu=sibling, num_cores=cores))
    assert kin.vendor == X86.vendor and kin.spec["mcpu"] != X86.spec["mcpu"]
    larger = _stamped_as(tuned_log / X86.log_key, tmp_path, kin) / "database_tuning_record.json"
    larger.write_text(larger.read_text() * 2)  # twice the records
    _stamped_as(tuned_log / X86.log_key, tmp_path, X86)
    assert open_log(kin, tmp_path, create=False).records == 16
    more_cores = resolve_target("x86", TargetOptions(num_cores=cores + 2))  # this CPU, a core count with no log
    assert kindred_log(more_cores, tmp_path).target.log_key == X86.log_key  # not the larger sibling's
    # the same core count still comes first: another CPU's log of that count beats this CPU's of another
    kin_same_cores = _stamped_as(tuned_log / X86.log_key, tmp_path,
                                 resolve_target("x86", TargetOptions(mcpu=sibling, num_cores=cores + 2)))
    assert kindred_log(more_cores, tmp_path).target.log_key == kin_same_cores.name


def test_build_without_a_log_of_its_own_uses_a_kindred_cpus(tuned_log, tmp_path):
    """A build for a CPU no log was tuned on applies a kindred CPU's records, says so, and never writes there."""
    kindred = _stamped_as(tuned_log / X86.log_key, tmp_path / "logs",
                          resolve_target("x86", TargetOptions(mcpu=_same_simd_cpu())))
    before = {f.name: f.read_bytes() for f in kindred.iterdir()}
    proc = cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path / "m.so"), "--log-dir", str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stderr
    assert f"no tuning log for {X86.log_key}: using {kindred.name}'s, tuned on another CPU" in proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("| kernels |"))
    assert f": 3 from tuning log {kindred}," in line
    assert {f.name: f.read_bytes() for f in kindred.iterdir()} == before
    assert not (tmp_path / "logs" / X86.log_key).exists()


def test_new_log_starts_from_a_kindred_cpus_best_records(tuned_log, tmp_path):
    """Tuning a CPU whose log is empty first measures a kindred CPU's best records of each new kernel here and
    records them (same traces, this machine's times); a second run measures none again; --no-kindred none."""
    from shuffletvm.tuning.seeds import _trace_text
    from shuffletvm.tuning.tasks import records_for

    kindred = _stamped_as(tuned_log / X86.log_key, tmp_path / "logs",
                          resolve_target("x86", TargetOptions(mcpu=_same_simd_cpu())))
    kindred_db = open_log(resolve_target("x86", TargetOptions(mcpu=_same_simd_cpu())), tmp_path / "logs",
                          create=False).database()
    config = TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=1, log_dir=tmp_path / "logs",
                        kernels="^fused_conv2d_add$|^mean$")
    first = tune(config)
    database = first.log.database()
    for task in first.tasks:
        theirs = {_trace_text(r.trace): [float(t) for t in r.run_secs] for r in records_for(task, kindred_db)}
        ours = {_trace_text(r.trace): [float(t) for t in r.run_secs] for r in records_for(task, database)}
        assert theirs and set(theirs) <= set(ours), task.name
        assert all(ours[trace] != theirs[trace] for trace in theirs)  # measured here, not copied
    again = tune(config)
    assert again.trials == 0 and again.log.records_now() == first.log.records_now()
    assert kindred.joinpath("database_tuning_record.json").read_text().count("\n") == 8

    _stamped_as(tuned_log / X86.log_key, tmp_path / "alone",
                resolve_target("x86", TargetOptions(mcpu=_same_simd_cpu())))
    alone = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=1, log_dir=tmp_path / "alone",
                            kernels="^mean$", from_kindred=False))
    assert alone.log.records_now() == 1  # its one trial: mean has no hand schedule, the kindred records unused
    proc = cli("tune", "shufflenet_v2_x0_5", "--log-dir", str(tmp_path / "alone"), "--kernels", "^mean$",
               "--trials", "2", "--no-kindred", "-q")
    assert proc.returncode == 0, proc.stderr
    assert open_log(X86, tmp_path / "alone").records_now() == 2


def test_kindred_all_starts_tuned_kernels_from_what_the_kindred_log_learnt_since(tuned_log, tmp_path):
    """--kindred-all: a kernel this log has records of also starts from the kindred log's best records, but only
    from those this log does not hold (the kindred CPU tuned further after this log was seeded from it): those
    are measured here, the shared ones are not measured again; a kernel its trial budget covers too, then with no
    search. Without the flag a tuned kernel gets none."""
    from shuffletvm.tuning.seeds import _trace_text
    from shuffletvm.tuning.tasks import records_for

    other = resolve_target("x86", TargetOptions(mcpu=_same_simd_cpu()))
    _stamped_as(tuned_log / X86.log_key, tmp_path, X86)
    _stamped_as(tuned_log / X86.log_key, tmp_path, other)
    kernel = "^fused_conv2d_add$"
    further = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=6, log_dir=tmp_path, kernels=kernel,
                              target_options=TargetOptions(mcpu=_same_simd_cpu()), from_kindred=False))
    assert further.trials >= 2 and further.log.path.name == other.log_key
    (task,) = further.tasks
    theirs = {_trace_text(r.trace) for r in records_for(task, open_log(other, tmp_path).database(), 8)}
    before = [_trace_text(r.trace) for r in records_for(task, open_log(X86, tmp_path).database())]
    learnt = theirs - set(before)
    assert learnt and theirs & set(before)

    records = open_log(X86, tmp_path).records_now()
    plain = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=len(before) + 1, log_dir=tmp_path,
                            kernels=kernel))
    assert plain.trials == 1 and plain.log.records_now() == records + 1  # its trial, no kindred record
    before = [_trace_text(r.trace) for r in records_for(task, plain.log.database())]
    learnt = theirs - set(before)
    assert learnt
    covered = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=1, log_dir=tmp_path, kernels=kernel,
                              kindred_all=True))
    assert covered.skipped == 1 and covered.trials == 0  # covered: measured beside its records, nothing searched
    after = [_trace_text(r.trace) for r in records_for(task, covered.log.database())]
    assert learnt <= set(after)
    assert len(after) == len(before) + len(learnt)  # shared records were not measured again
    assert all(after.count(trace) == before.count(trace) for trace in theirs & set(before))
    before = after
    result = tune(TuneConfig(models=["shufflenet_v2_x0_5"], trials_per_task=len(before) + 1, log_dir=tmp_path,
                             kernels=kernel, kindred_all=True))
    after = [_trace_text(r.trace) for r in records_for(task, result.log.database())]
    assert result.trials >= 1 and len(after) == len(before) + result.trials  # all of theirs held now: none again
    proc = cli("tune", "shufflenet_v2_x0_5", "--log-dir", str(tmp_path), "--kindred-all", "--no-kindred", "-q")
    assert proc.returncode != 0 and "not allowed with argument" in proc.stderr


# ---- aarch64 through a real RPC tracker and an emulated device -----------------------------------------------


@pytest.mark.arm
def test_arm_tuning_through_emulated_rpc_device(emulator, tmp_path):
    from shuffletvm.tuning.rpc import EmulatedDevice

    with EmulatedDevice(emulator=emulator) as device:
        result = tune(TuneConfig(models=["shufflenet_v2_x0_5"], target="arm", trials_per_task=2, log_dir=tmp_path,
                                 rpc_tracker=str(device.tracker), rpc_key=device.key,
                                 kernels="^mean$|^fused_conv2d2_add$"))
    assert result.trials >= 2 and result.failed == 0, result
    log = open_log(resolve_target("arm"), tmp_path)
    assert log.path.name.startswith("arm-") and log.records >= 2


@pytest.mark.arm
def test_arm_key_without_device(emulator):
    from shuffletvm.tuning.rpc import EmulatedDevice

    with EmulatedDevice(emulator=emulator) as device:
        proc = cli("tune", "shufflenet_v2_x0_5", "--target", "arm", "--rpc-tracker", str(device.tracker),
                   "--rpc-key", "raspberry-pi", "-q")
    assert_user_error(proc, "no free device with key 'raspberry-pi'")


@pytest.mark.arm
def test_device_dying_mid_tune_stops_with_records_kept(emulator, tmp_path):
    from shuffletvm.tuning.rpc import EmulatedDevice

    device = EmulatedDevice(emulator=emulator).start()
    records = tmp_path / resolve_target("arm").log_key / "database_tuning_record.json"

    def kill_server_after_first_record() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if records.exists() and records.read_text().strip():
                os.killpg(device._procs[-1].pid, 9)  # the RPC server and its worker die; the tracker stays
                return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_server_after_first_record, daemon=True)
    killer.start()
    try:
        with pytest.raises(ShuffleTVMError, match="device failed every trial"):
            tune(TuneConfig(models=["shufflenet_v2_x0_5"], target="arm", trials_per_task=8, log_dir=tmp_path,
                            rpc_tracker=str(device.tracker), rpc_key=device.key, kernels="^mean$|^fused_conv2d2_add$",
                            rpc_timeout_s=20, num_trials_per_iter=1))
    finally:
        device.stop()
    kept = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    assert kept, "finished records must survive"


# ---- stopping a tuner: Ctrl-C stops with the batches in flight kept, SIGKILL loses no finished record -------


def _start_tune(log_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shuffletvm", "tune", "shufflenet_v2_x0_5", "--trials", "64",
         "--kernels", "^fused_conv2d2_add$", "--log-dir", str(log_dir), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_records(records: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and records.read_text().strip():
            return
        time.sleep(0.5)
    raise AssertionError("no record was written")


@pytest.mark.parametrize("sig", [signal.SIGINT, "SIGINT twice", signal.SIGKILL])
def test_stopping_the_tuner_keeps_every_finished_record(tmp_path, sig):
    """Ctrl-C stops with the batches in flight measured and kept; Ctrl-C twice at once (one line, no crash
    dump: an exception in MetaSchedule's callbacks aborts the process); SIGKILL at any point. Every finished
    record is kept."""
    records = tmp_path / X86.log_key / "database_tuning_record.json"
    proc = _start_tune(tmp_path)
    try:
        _wait_for_records(records, proc)
        if sig == "SIGINT twice":  # the hand schedule's record is in: the search (16 candidates to build) starts
            time.sleep(3)
            proc.send_signal(signal.SIGINT)
            time.sleep(1)
        proc.send_signal(signal.SIGINT if sig == "SIGINT twice" else sig)
        _out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    log = open_log(X86, tmp_path, create=False)
    assert log.records >= 1 and log.rejected <= 1  # SIGKILL may tear the line being written; it is skipped
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
        assert log.rejected == 0
    if sig == "SIGINT twice":
        assert proc.returncode == 130 and "aborted; every record measured so far is kept" in err, err
        assert "Traceback" not in err and "Segfault" not in err and log.rejected == 0
