"""`shuffletvm build` and `shuffletvm run`: one self-contained .so, run by the TVM runtime alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from shuffletvm.models import create_model
from shuffletvm.runtime import aligned_array, load

from .conftest import REPO, assert_user_error, cli, image


def test_build_writes_one_self_contained_module(v2_small_module):
    assert v2_small_module.is_file() and v2_small_module.stat().st_size > 1_000_000
    assert [p.name for p in v2_small_module.parent.iterdir()] == [v2_small_module.name]  # no params or temp files
    module = load(v2_small_module)
    assert module.input_shape == (1, 3, 224, 224) and module.metadata["model"] == "shufflenet_v2_x0_5"
    x = image()
    with torch.no_grad():
        ref = create_model("shufflenet_v2_x0_5")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(module.run(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_aligned_input_is_read_in_place_and_left_as_it_was(v2_small_module):
    module = load(v2_small_module)
    x = aligned_array(image(seed=2))
    unaligned = np.empty(x.size + 1, np.float32)[1:].reshape(x.shape)  # 4 bytes past numpy's alignment
    unaligned[...] = x
    assert x.ctypes.data % 64 == 0 and unaligned.ctypes.data % 64 != 0
    # read where it lies (the tensor is a view of x's memory), or copied into a tensor of TVM's own
    assert np.from_dlpack(module._input_tensor(x)).ctypes.data == x.ctypes.data
    assert np.from_dlpack(module._input_tensor(unaligned)).ctypes.data != unaligned.ctypes.data
    before = x.copy()
    np.testing.assert_array_equal(module.run(x), module.run(unaligned))
    np.testing.assert_array_equal(x, before)
    assert module.time_run(x, repeat=2) and np.array_equal(x, before)


def test_run_cli_writes_logits_and_prints_top_k(v2_small_module, tmp_path):
    x = image(seed=4)
    np.save(tmp_path / "x.npy", x)
    proc = cli("run", str(v2_small_module), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"), "--top", "3")
    assert proc.returncode == 0, proc.stderr
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, load(v2_small_module).run(x))
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 0 |")]
    assert len(rows) == 3 and f"| {int(y.argmax())} |" in rows[0]


def test_module_runs_where_torch_cannot_be_imported(v2_small_module, tmp_path):
    """A fresh interpreter with torch blocked and only the TVM runtime library loaded."""
    x = image(seed=5)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "from shuffletvm.cli.main import main\n"
        f"rc = main(['run', {str(v2_small_module)!r}, '--input', {str(tmp_path / 'x.npy')!r}, "
        f"'--output', {str(tmp_path / 'y.npy')!r}, '--top', '1'])\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "import tvm.base\n"
        "assert tvm.base._RUNTIME_ONLY, 'compiler library was loaded'\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), load(v2_small_module).run(x))


def test_loaded_module_runs_on_the_cores_it_was_built_for(v2_small_module):
    """Without TVM_NUM_THREADS, TVM's pool would take half the logical CPUs (one on a 2-vCPU machine); a loaded
    module runs on its target's num-cores (capped at the CPUs this process may use), and the variable, when
    set, wins."""
    script = (
        "import json, os, tvm\n"
        "from shuffletvm.runtime import load\n"
        f"module = load({str(v2_small_module)!r})\n"
        "print(json.dumps([module.metadata['target']['num-cores'], len(os.sched_getaffinity(0)), "
        "tvm.get_global_func('runtime.NumThreads')()]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    cores, available, threads = json.loads(proc.stdout.splitlines()[-1])
    assert threads == min(cores, available)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                          env={**env, "TVM_NUM_THREADS": "1"})
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1])[2] == 1, proc.stderr


def test_build_dump_dir_writes_every_phase(tmp_path):
    proc = cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path / "m.so"), "--dump-dir", str(tmp_path / "dump"), "-q")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert names == ["00_library-dispatch.py", "01_graph-optimize.py", "02_layout.py", "03_legalize.py",
                     "04_schedule.py", "05_dataflow-lower.py", "06_finalize.py"]
    assert "R.nn.conv2d" in (tmp_path / "dump" / "00_library-dispatch.py").read_text()
    assert "conv1x1_packed" in (tmp_path / "dump" / "02_layout.py").read_text()
    assert "T.prim_func" in (tmp_path / "dump" / "03_legalize.py").read_text()


def test_batch_8_build(tmp_path):
    out = tmp_path / "b8.so"
    assert cli("build", "shufflenet_v1_g3_x0_5", "--batch", "8", "-o", str(out), "-q").returncode == 0
    module = load(out)
    x = image(8)
    with torch.no_grad():
        ref = create_model("shufflenet_v1_g3_x0_5")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(module.run(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_cuda_module_builds_without_a_gpu(tmp_path):
    """Kernels are generated by TVM, compiled by nvcc into a fatbin and embedded: no GPU, no JIT at load."""
    from shuffletvm.cuda_kernels import read_embedded

    out = tmp_path / "cuda.so"
    proc = cli("build", "shufflenet_v2_x0_5", "--target", "cuda", "--cuda-arch", "sm_90", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    # the hand-written CUDA schedules compiled: 6 fused shuffle kernels + depthwise and 1x1 conv rules
    kernels = next(line for line in proc.stdout.splitlines() if line.startswith("| kernels |"))
    assert int(kernels.split(", ")[1].split()[0]) >= 15, kernels
    embedded = read_embedded(out)
    assert embedded is not None, "no compiled CUDA kernels embedded"
    _sha, fatbin = embedded
    assert fatbin[:4] == b"\x50\xed\x55\xba" and b"sm_90" in fatbin  # fatbin magic; SASS for sm_90 inside
    assert b"__global__" in out.read_bytes()  # TVM's CUDA source module, which the embedded fatbin answers for
    assert read_embedded(REPO / "pyproject.toml") is None
    if shutil.which("nvidia-smi") is None:
        np.save(tmp_path / "x.npy", image())
        assert_user_error(cli("run", str(out), "--input", str(tmp_path / "x.npy")), "run it on its device")


# ---- bad input: one line, non-zero exit, nothing on disk lost --------------------------------------------------


def test_unknown_model(tmp_path):
    assert_user_error(cli("build", "shufflenet_v9", "-o", str(tmp_path / "m.so"), "-q"), "unknown model 'shufflenet_v9'")


def test_unknown_target(tmp_path):
    assert_user_error(cli("build", "shufflenet_v2_x0_5", "--target", "tpu", "-o", str(tmp_path / "m.so"), "-q"),
                      "unknown target 'tpu'")


def test_output_folder_missing(tmp_path):
    assert_user_error(cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path / "no" / "m.so"), "-q"), "does not exist")


def test_output_is_a_directory(tmp_path):
    assert_user_error(cli("build", "shufflenet_v2_x0_5", "-o", str(tmp_path), "-q"), "is a directory")


def test_unwritable_output(tmp_path):
    # /proc refuses new files even for root: the failure comes at the final write, after compiling.
    assert_user_error(cli("build", "shufflenet_v2_x0_5", "-o", "/proc/shuffletvm-test.so", "-q"), "cannot write")


def test_failed_export_keeps_the_previous_module(tmp_path):
    """The arm target's linker is missing from PATH: the build fails at export, the old file stays whole."""
    out = tmp_path / "m.so"
    out.write_bytes(b"previous build")
    env = {"PATH": os.path.dirname(sys.executable)}
    proc = cli("build", "shufflenet_v2_x0_5", "--target", "arm", "-o", str(out), "-q", env=env)
    assert_user_error(proc, "aarch64-linux-gnu-g++")
    assert out.read_bytes() == b"previous build" and [p.name for p in tmp_path.iterdir()] == ["m.so"]


@pytest.mark.parametrize(
    "args, message",
    [((), "required: COMMAND"), (("bogus",), "invalid choice: 'bogus'"), (("tune",), "required: models"),
     (("build", "shufflenet_v2_x0_5", "--batch", "x"), "invalid int value: 'x'"),
     (("tune", "shufflenet_v2_x0_5", "--trials", "1", "--time-budget", "1"), "not allowed with argument --trials")],
)
def test_usage_errors_are_one_line(args, message):
    """argparse's own errors (a missing or unknown argument) read like every other error: one line, exit 2."""
    proc = cli(*args)
    assert_user_error(proc, message, "--help`")
    assert proc.stdout == ""


def test_bad_batch(tmp_path):
    assert_user_error(cli("build", "shufflenet_v2_x0_5", "--batch", "0", "-o", str(tmp_path / "m.so"), "-q"), "batch")


@pytest.mark.parametrize(
    "array, message",
    [(np.zeros((1, 3, 112, 112), np.float32), "input shape"), (np.zeros((1, 3, 224, 224), np.float64), "dtype")],
)
def test_run_wrong_input(v2_small_module, tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    (tmp_path / "y.npy").write_bytes(b"keep me")
    proc = cli("run", str(v2_small_module), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert_user_error(proc, message)
    assert (tmp_path / "y.npy").read_bytes() == b"keep me"


def test_run_input_not_npy(v2_small_module, tmp_path):
    (tmp_path / "x.npy").write_text("not an array")
    assert_user_error(cli("run", str(v2_small_module), "--input", str(tmp_path / "x.npy")), "not a readable .npy")


def test_run_pickled_object_array_refused(v2_small_module, tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_user_error(cli("run", str(v2_small_module), "--input", str(tmp_path / "x.npy")), "not a readable .npy")


def test_run_missing_or_foreign_module(tmp_path):
    np.save(tmp_path / "x.npy", image())
    assert_user_error(cli("run", str(tmp_path / "none.so"), "--input", str(tmp_path / "x.npy")), "does not exist")
    (tmp_path / "text.so").write_text("hello")
    assert_user_error(cli("run", str(tmp_path / "text.so"), "--input", str(tmp_path / "x.npy")), "not a shared library")


def test_run_module_built_for_aarch64_on_x86(tmp_path):
    out = tmp_path / "arm.so"
    assert cli("build", "shufflenet_v2_x0_5", "--target", "arm", "-o", str(out), "-q").returncode == 0
    np.save(tmp_path / "x.npy", image())
    assert_user_error(cli("run", str(out), "--input", str(tmp_path / "x.npy")), "cannot load")


def test_wheel_ships_schedules_and_tuning_logs(tmp_path):
    """A non-editable install must find the hand-written schedules and the shipped tuning logs too."""
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("shuffletvm-*.whl"))).namelist()
    for module in ("depthwise_conv3x3", "grouped_conv1x1", "matmul", "fallback"):
        assert f"shuffletvm/schedules/{module}.py" in names
    shipped = [n for n in names if n.startswith("shuffletvm/tuning_logs/x86-")]
    assert any(n.endswith("/database_tuning_record.json") for n in shipped), shipped
    assert any(n.endswith("/target.json") for n in shipped)


def test_cuda_builds_after_a_cuda_module_is_served(tmp_path):
    """`compare` on a GPU builds, loads, builds again in one process. Loading installs shuffletvm's answer to
    TVM's compile callback (the embedded kernels); on a GPU machine the next build compiles its new kernels
    through that same callback, which must hand them to TVM's compiler (found on an H200: the second build
    failed). Without a GPU the build does not reach the callback, so the callback is called directly, in both
    orders (build -> serve -> compile, serve -> build -> compile), each in a fresh interpreter."""
    kernel = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] = 1.0f; }'
    build = (f"r = build(BuildConfig(output=Path({str(tmp_path / 'a.so')!r}), model='shufflenet_v2_x0_5', "
             "target='cuda', target_options=TargetOptions(cuda_arch='sm_90'), use_tuning_logs=False))\n")
    serve = f"assert cuda_kernels.serve_embedded_kernels(Path({str(tmp_path / 'a.so')!r}))\n"
    compile_new = ("import tvm, tvm_ffi\nwith tvm.target.Target({'kind': 'cuda', 'arch': 'sm_90'}):\n"
                   f"    assert len(bytes(tvm_ffi.get_global_func('tvm_callback_cuda_compile')({kernel!r}))) > 100\n")
    head = ("from pathlib import Path\nfrom shuffletvm.build import BuildConfig, build\n"
            "from shuffletvm import cuda_kernels\nfrom shuffletvm.targets import TargetOptions\n")
    for script in (head + build + serve + compile_new, head + serve + build + compile_new):
        proc = subprocess.run([sys.executable, "-c", script + "print('ok')"], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-1500:]
