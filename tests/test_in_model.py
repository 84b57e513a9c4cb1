"""`shuffletvm choose` and the builds that apply its in_model.json (tuning/in_model.py).

The log here is made, not tuned: one kernel of V2 0.5x gets a record of its unscheduled TensorIR (serial scalar
loops) with a time that ranks it first, the way a record measured alone can rank first and still lose in the
model. Its real time in the model is several times the hand schedule's, so choosing must set it aside."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shuffletvm.build import BuildConfig, build
from shuffletvm.targets import resolve_target
from shuffletvm.tuning.database import CHOICES, open_log, workload_key

from .conftest import assert_user_error, cli, image

X86 = resolve_target("x86")
MODEL = "shufflenet_v2_x0_5"
KERNEL = "fused_conv2d1_add_relu"  # the first unit's branch-1 1x1 conv (24 -> 24 channels on 28x28)


def _kernel_task(batch: int = 1):
    from shuffletvm.tuning.tasks import model_tasks

    return next(t for t in model_tasks([MODEL], batch, X86.tvm_target()) if t.name == KERNEL)


def _workload_hash(task) -> str:
    return workload_key(task.extracted.dispatched[0])


@pytest.fixture(scope="module")
def naive_log(tmp_path_factory) -> Path:
    """A log whose only record is KERNEL unscheduled, at a time no schedule reaches (1 ns). (Its trace only looks
    the conv's loops up: MetaSchedule passes over a record with an empty trace.)"""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import find_anchor_sblock
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    root = tmp_path_factory.mktemp("logs")
    database = open_log(X86, root).database()
    mod = _kernel_task().extracted.dispatched[0]
    sch = Schedule(mod)
    sch.get_loops(sch.get_sblock(find_anchor_sblock(mod).name_hint))
    database.commit_tuning_record(ms.database.TuningRecord(
        sch.trace, database.commit_workload(mod), [1e-9], X86.tvm_target(), ArgInfo.from_prim_func(mod["main"])))
    assert open_log(X86, root, create=False).database().query_tuning_record(mod, X86.tvm_target(), KERNEL)
    return root


def _copy(log: Path, to: Path) -> Path:
    shutil.copytree(log, to)
    return to


def _outputs(path: Path, batch: int = 1) -> np.ndarray:
    from shuffletvm import runtime

    return runtime.load(path).run(image(batch))


def test_choose_sets_aside_a_record_that_loses_in_the_model(naive_log, tmp_path):
    root = _copy(naive_log, tmp_path / "logs")
    workload = _workload_hash(_kernel_task())
    before = build(BuildConfig(output=tmp_path / "before.so", model=MODEL, log_dir=root))
    assert before.kernels_tuned == 1 and before.kernels_hand_chosen == 0

    proc = cli("choose", MODEL, "--log-dir", str(root), "--rounds", "5", "-q")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {KERNEL} |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[-1] == "hand-written" and float(cells[5].rstrip("x")) < 0.5, row  # serial loops: far slower
    assert len([line for line in proc.stdout.splitlines() if line.startswith("| fused")]) == 1  # the only record
    checked = next(line for line in proc.stdout.splitlines() if "built with in_model.json" in line)
    assert checked.startswith(f"{MODEL}: ") and float(checked.split("end to end ")[1].split("x")[0]) < 1
    chosen = json.loads((root / X86.log_key / CHOICES).read_text())["hand_schedule"]
    assert list(chosen) == [workload] and chosen[workload]["kernel"] == KERNEL
    assert chosen[workload]["hand_us"] < chosen[workload]["record_us"]

    # the build leaves the record out: the kernel is hand-written, the module the hand-only build's
    after = build(BuildConfig(output=tmp_path / "after.so", model=MODEL, log_dir=root))
    hand = build(BuildConfig(output=tmp_path / "hand.so", model=MODEL, use_tuning_logs=False))
    assert (after.kernels_tuned, after.kernels_hand_chosen, after.kernels_hand) == (0, 1, hand.kernels_hand)
    np.testing.assert_array_equal(_outputs(after.path), _outputs(hand.path))
    ignored = build(BuildConfig(output=tmp_path / "ignored.so", model=MODEL, log_dir=root, in_model_choices=False))
    assert ignored.kernels_tuned == 1
    np.testing.assert_allclose(_outputs(ignored.path), _outputs(hand.path), rtol=1e-4, atol=1e-4)
    build_proc = cli("build", MODEL, "-o", str(tmp_path / "cli.so"), "--log-dir", str(root))
    line = next(line for line in build_proc.stdout.splitlines() if line.startswith("| kernels |"))
    assert "0 from tuning log" in line and "1 of the log's records set aside by its in_model.json" in line

    # the database a build opens has no record of the kernel; the one tuning opens still has it
    log = open_log(X86, root, create=False)
    assert len(log.database(with_choices=True).get_all_tuning_records()) == 0
    assert len(log.database().get_all_tuning_records()) == 1
    assert len(open_log(X86, root).database().get_all_tuning_records()) == 1


def test_a_batch_n_kernel_follows_its_own_choice_not_its_batch_1_twins(naive_log, tmp_path):
    """At batch 2 KERNEL has no record of its own and takes its batch-1 twin's (ApplyBatchOneRecords). A choice
    naming the batch-1 workload does not change that; one naming the batch-2 workload keeps the hand schedule."""
    counts = {}
    for name, workload in (("none", None), ("batch1", _workload_hash(_kernel_task(1))),
                           ("batch2", _workload_hash(_kernel_task(2)))):
        root = _copy(naive_log, tmp_path / name)
        if workload is not None:
            (root / X86.log_key / CHOICES).write_text(json.dumps({"hand_schedule": {workload: {"kernel": KERNEL}}}))
        result = build(BuildConfig(output=tmp_path / f"{name}.so", model=MODEL, batch=2, log_dir=root))
        counts[name] = (result.kernels_batch_one, result.kernels_hand_chosen)
    assert counts == {"none": (1, 0), "batch1": (1, 0), "batch2": (0, 1)}


def test_corrupt_choices_are_ignored_with_a_warning_and_kept(naive_log, tmp_path):
    root = _copy(naive_log, tmp_path / "logs")
    choices = root / X86.log_key / CHOICES
    choices.write_text('{"hand_schedule": {"123": ')
    proc = cli("build", MODEL, "-o", str(tmp_path / "m.so"), "--log-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "in_model.json' is corrupt: its choices are ignored" in proc.stderr and "Traceback" not in proc.stderr
    assert "1 from tuning log" in proc.stdout
    proc = cli("choose", MODEL, "--log-dir", str(root), "--rounds", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (choices.parent / (CHOICES + ".rejected")).read_text() == '{"hand_schedule": {"123": '
    assert "hand_schedule" in json.loads(choices.read_text())


def test_kernel_calls_records_one_inference(v2_small_module):
    from shuffletvm import runtime
    from shuffletvm.bench.sequence import kernel_calls, replay

    model = runtime.load(v2_small_module)
    calls = kernel_calls(model, image())
    count = len(calls)
    model.run(image())  # the hook stays on the VM, recording nothing more
    assert count == len(calls) > 20 and not any(name.startswith("vm.") for name, _f, _a in calls)
    in_sequence, warm = replay({"m": calls}, rounds=2)["m"]
    assert len(in_sequence) == len(warm) == count and min(in_sequence) > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--margin", "1.5"], "--margin must be a fraction"),
    (["--batch", "0"], "batch must be at least 1"),
    (["--target", "arm"], "target x86"),
    ([], "no tuning records"),
])
def test_choose_bad_input(tmp_path, args, message):
    assert_user_error(cli("choose", MODEL, "--log-dir", str(tmp_path), "-q", *args), message)
    assert not list(tmp_path.rglob(CHOICES))


def test_choose_unknown_model(naive_log):
    assert_user_error(cli("choose", "shufflenet_v9", "--log-dir", str(naive_log), "-q"), "shufflenet_v9")
    assert not (naive_log / X86.log_key / CHOICES).exists()


def test_tuning_a_kernel_with_a_choice_says_builds_keep_it(naive_log, tmp_path):
    """New records do not undo a choice: tuning a kernel in_model.json names says so (`choose` decides again)."""
    root = _copy(naive_log, tmp_path / "logs")
    (root / X86.log_key / CHOICES).write_text(
        json.dumps({"hand_schedule": {_workload_hash(_kernel_task()): {"kernel": KERNEL}}}))
    proc = cli("tune", MODEL, "--log-dir", str(root), "--kernels", f"^{KERNEL}$", "--trials", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "1 kernels tuned here have their records set aside by" in proc.stderr and KERNEL in proc.stderr
