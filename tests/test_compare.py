"""`shuffletvm compare`: real runtimes side by side, each checked against PyTorch in the same run."""

from __future__ import annotations

import json

import pytest

from shuffletvm.bench.compare import CompareConfig, compare

from .conftest import assert_user_error, cli


def test_compare_runs_every_runtime_and_checks_outputs(tmp_path):
    proc = cli("compare", "shufflenet_v1_g8_x0_5", "--runtimes", "tvm-untuned", "pytorch", "onnxruntime",
               "openvino-fp32", "--rounds", "2", "--runs", "2", "--threads", "2",
               "--json", str(tmp_path / "c.json"), "--plot", str(tmp_path / "c.png"), "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    rows = {r["runtime"]: r for r in data["rows"]}
    assert set(rows) == {"tvm-untuned", "pytorch", "onnxruntime", "openvino-fp32"}
    for row in rows.values():
        assert row["median_ms"] > 0 and row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["rel_err"] < 1e-4, row
    assert "precision f32" in rows["openvino-fp32"]["note"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tvm-untuned |" in proc.stdout and "vs best fp32 vendor" in proc.stdout


def test_tvm_tuned_without_log_is_reported_not_fatal(tmp_path):
    report = compare(CompareConfig(model="shufflenet_v2_x0_5", runtimes=["tvm-tuned", "pytorch"], rounds=1,
                                   runs_per_round=1, log_dir=tmp_path))
    tuned = next(r for r in report.rows if r.runtime == "tvm-tuned")
    assert tuned.median_ms is None and "no tuning record covers" in tuned.note


@pytest.mark.parametrize(
    "args, message",
    [(["--runtimes", "tflite"], "unknown runtime"), (["--rounds", "0"], "at least 1"), (["--threads", "0"], "--threads")],
)
def test_compare_bad_input(args, message):
    assert_user_error(cli("compare", "shufflenet_v2_x0_5", "-q", *args), message)


def test_compare_unwritable_plot():
    assert_user_error(cli("compare", "shufflenet_v2_x0_5", "--plot", "/nonexistent-dir/c.png", "-q"), "does not exist")
