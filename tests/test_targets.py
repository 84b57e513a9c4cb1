"""The target preset table and raw TVM target JSON."""

from __future__ import annotations

import pytest

from shuffletvm.errors import ShuffleTVMError
from shuffletvm.targets import TargetOptions, resolve_target


def test_x86_detects_host_cpu_and_cores():
    target = resolve_target("x86")
    assert target.spec["kind"] == "llvm" and target.spec["mcpu"] and target.spec["num-cores"] >= 1
    assert target.device == "cpu" and target.arch == "x86_64" and target.cross_compiler is None
    assert str(target.tvm_target().kind.name) == "llvm"


def test_arm_is_cross_compiled_aarch64_with_neon():
    target = resolve_target("arm", TargetOptions(mcpu="cortex-a72"))
    tvm_target = target.tvm_target()
    assert str(tvm_target.attrs["mtriple"]) == "aarch64-linux-gnu"
    assert "+neon" in [str(a) for a in tvm_target.attrs["mattr"]]
    assert target.cross_compiler == "aarch64-linux-gnu-g++" and target.arch == "aarch64"


def test_cuda_without_gpu_uses_given_or_default_arch():
    spec = resolve_target("cuda", TargetOptions(cuda_arch="sm_90")).spec
    assert spec["kind"] == "cuda" and spec["arch"] == "sm_90" and spec["max_shared_memory_per_block"] == 49152
    assert resolve_target("cuda").device == "cuda"


def test_raw_json_target():
    target = resolve_target('{"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 4}')
    assert target.name == "custom" and target.spec["mcpu"] == "skylake-avx512"
    arm = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}')
    assert arm.arch == "aarch64" and arm.cross_compiler == "aarch64-linux-gnu-g++"


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("riscv", TargetOptions(), "unknown target 'riscv'"),
        ("{not json", TargetOptions(), "does not parse"),
        ('{"mcpu": "x"}', TargetOptions(), 'needs a "kind"'),
        ('{"kind": "vulkan"}', TargetOptions(), "not supported"),
        ('{"kind": "llvm", "bogus-key": 1}', TargetOptions(), "TVM rejects"),
        ("arm", TargetOptions(mcpu="cortex-z9"), "unknown ARM cpu"),
        ("x86", TargetOptions(mcpu="skylake-avx521"), "unknown x86 cpu 'skylake-avx521'.*e.g. skylake-avx512"),
        ("x86", TargetOptions(num_cores=0), "--num-cores must be at least 1, got 0"),
        ("arm", TargetOptions(num_cores=-2), "--num-cores must be at least 1, got -2"),
        ("cuda", TargetOptions(cuda_arch="90"), "sm_XY"),
        ("cuda", TargetOptions(cuda_arch="sm_8"), "sm_XY"),  # TVM's codegen would fail on it mid-build
        ("cuda", TargetOptions(cuda_arch="sm_08"), "sm_XY"),
        ('{"kind": "cuda", "arch": "sm_1"}', TargetOptions(), "sm_XY"),
    ],
)
def test_bad_targets(name, options, message):
    with pytest.raises(ShuffleTVMError, match=message):
        resolve_target(name, options)
