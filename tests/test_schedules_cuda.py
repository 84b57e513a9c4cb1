"""The CUDA 1x1 conv schedule (schedules/grouped_conv1x1.py's `_gpu`) without a GPU: it computes what the kernel
computes (run on the CPU with its thread loops serialised), its tiling fits every ShuffleNet shape, its shared
memory is exactly the tiles it stages (batch 1 and 8), and the CUDA code for every 1x1 conv of V2 1.0x and V1 g3
1.0x compiles with nvcc with its accumulators in registers. (On a GPU: benchmarks/gpu_kernels.py checks each
kernel's output against TVM's default schedule.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import tvm
from shuffletvm.schedules import grouped_conv1x1
from shuffletvm.schedules._common import ConvShape, conv_shape

from shuffletvm.targets import TargetOptions, resolve_target

CUDA = resolve_target("cuda", TargetOptions(cuda_arch="sm_90")).tvm_target()
X86 = resolve_target("x86").tvm_target()
SHARED_BYTES = 49152


def _conv1x1_kernels(models: list[str], batch: int = 1) -> list[tuple[str, tvm.tirx.PrimFunc, tvm.tirx.PrimFunc]]:
    """(name, kernel, CUDA schedule) of each 1x1 conv kernel of `models`, as the CUDA pipeline extracts them."""
    from shuffletvm.tuning.tasks import lowered_models

    out = []
    for model in models:
        for gvar, func in lowered_models([model], batch, CUDA)[0].functions.items():
            if isinstance(func, tvm.tirx.PrimFunc):
                sch = grouped_conv1x1.schedule(func, CUDA)
                if sch is not None:
                    out.append((f"{model.removeprefix('shufflenet_')}_{gvar.name_hint}", func, sch.mod["main"]))
    return out


def _on_cpu(func: tvm.tirx.PrimFunc) -> tvm.tirx.PrimFunc:
    """A CUDA-scheduled kernel made runnable on the CPU: block and thread loops become serial loops, shared and
    local buffers plain ones. Each thread then fetches its block's whole shared tile before its own update, which
    computes what the GPU computes for a schedule without races (TVM inserts the barriers): this checks the
    index arithmetic, predicates and tile regions, not the barriers."""
    text = re.sub(r'T\.thread_binding\(([^,]+), thread="[^"]+"(, annotations=\{[^}]*\})?\)', r"T.serial(\1)",
                  func.script())
    return tvm.script.from_source(re.sub(r'scope="(shared|local)"', 'scope="global"', text))


def _run_on_cpu(func: tvm.tirx.PrimFunc, args: list[np.ndarray]) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=X86)
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    return tensors[-1].numpy()


def test_cuda_1x1_schedule_computes_what_the_kernel_computes():
    """Every 1x1 conv of V2 0.5x and V1 g3 0.5x (plain, grouped, read through a folded shuffle; 7x7 to 56x56
    planes), bit for bit: each thread sums its outputs in the kernel's order."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(0)
    kernels = _conv1x1_kernels(["shufflenet_v2_x0_5", "shufflenet_v1_g3_x0_5"])
    assert len(kernels) >= 15, [name for name, *_ in kernels]
    for name, func, scheduled in kernels:
        args = [rng.standard_normal([int(s) for s in a.shape]).astype(np.float32) for a in ArgInfo.from_prim_func(func)]
        expected = _run_on_cpu(func, [a.copy() for a in args])
        np.testing.assert_array_equal(_run_on_cpu(_on_cpu(scheduled), [a.copy() for a in args]), expected, name)


def _shufflenet_1x1_shapes() -> list[ConvShape]:
    """Every 1x1 conv of the 24 ShuffleNets, at batch 1 and 8 (channels from the models' stage tables)."""
    from shuffletvm.models.registry import V1_GROUPS, WIDTHS
    from shuffletvm.models.shufflenet_v1 import STAGE_OUT_CHANNELS as V1_CHANNELS
    from shuffletvm.models.shufflenet_v2 import STAGE_OUT_CHANNELS as V2_CHANNELS

    convs = set()  # (in, out, plane, groups)
    for width in WIDTHS:
        c = V2_CHANNELS[width]  # [stem, stage2, stage3, stage4, conv5]
        for stage, plane in enumerate((28, 14, 7)):
            half = c[stage + 1] // 2
            convs |= {(c[stage], half, plane * 2, 1), (c[stage], half, plane, 1), (half, half, plane, 1)}
        convs.add((c[3], c[4], 7, 1))
        for groups in V1_GROUPS:
            c = V1_CHANNELS[(groups, width)]  # [stem, stage2, stage3, stage4]
            for stage, plane in enumerate((28, 14, 7)):
                mid, first = c[stage + 1] // 4, 1 if stage == 0 else groups
                convs |= {(c[stage], mid, plane * 2, first), (c[stage + 1], mid, plane, groups),
                          (mid, c[stage + 1] - c[stage], plane, groups), (mid, c[stage + 1], plane, groups)}
    return [ConvShape("conv2d_nchw", batch, cout, plane, plane, cin // g, 1, 1, g)
            for cin, cout, plane, g in sorted(convs) if cin % g == 0 and cout % g == 0 for batch in (1, 8)]


def test_cuda_1x1_tiling_fits_every_shufflenet_conv():
    shapes = _shufflenet_1x1_shapes()
    assert len(shapes) > 150
    for shape in shapes:
        t = grouped_conv1x1.gpu_tiles(shape, SHARED_BYTES)
        per_group, plane, px = shape.out_channels // shape.groups, shape.out_h * shape.out_w, t.pixel_threads
        assert t.threads <= grouped_conv1x1.GPU_THREADS and per_group % t.channels_per_thread == 0, (shape, t)
        assert shape.in_per_group % t.chunk == 0, (shape, t)
        # a block's pixels are whole rows of one image or an equal part of one row: its input tile is exact
        assert plane % px == 0 and (px % shape.out_w == 0 or shape.out_w % px == 0), (shape, t)
        assert shape.groups == 1 or per_group % t.block_channels == 0, (shape, t)  # no block spans two groups
        staged = t.block_channels + (t.pixel_threads if t.stage_input else 0)
        assert 4 * t.chunk * staged <= SHARED_BYTES, (shape, t)
        outputs = shape.batch * shape.out_channels * plane
        assert t.blocks(shape) >= min(grouped_conv1x1.GPU_MIN_BLOCKS, outputs // 256), (shape, t)


def _tiles(func: tvm.tirx.PrimFunc) -> grouped_conv1x1.GpuTiles:
    """The tiling `_gpu` chooses for `func`."""
    sch = tvm.s_tir.Schedule(func)
    shape = conv_shape(sch)
    return grouped_conv1x1.gpu_tiles(shape, SHARED_BYTES,
                                     grouped_conv1x1._channel_is_affine(sch.get(sch.get_sblock(shape.block))))


def _cuda_source(kernels: list) -> str:
    """The kernels' CUDA code, checked: per thread `channels_per_thread` accumulators, and shared memory of
    exactly the staged tiles (a region analysis that loses track of a tile gives a bounding box, often over the
    48 KB a block may have)."""
    funcs = {name: scheduled.with_attr("global_symbol", name) for name, _, scheduled in kernels}
    source = tvm.tirx.build(tvm.IRModule(funcs), target=CUDA).imports[0].inspect_source()
    for name, func, _ in kernels:
        kernel = re.search(rf"{name}_kernel\([^)]*\) {{(.*?)\n}}\n", source, re.DOTALL)
        assert kernel is not None, name
        t = _tiles(func)
        assert re.findall(r"float \w+_local_ptr\[(\d+)\]", kernel.group(1)) == [str(t.channels_per_thread)], name
        shared = sum(int(n) for n in re.findall(r"__shared__ alignas\(\d+\) float \w+\[(\d+)\]", kernel.group(1)))
        assert shared == t.chunk * (t.block_channels + (t.pixel_threads if t.stage_input else 0)), (name, t, shared)
        assert 4 * shared <= SHARED_BYTES, (name, shared)
    return source


def test_cuda_1x1_tiles_are_exact_at_batch_8():
    """Batch 8 (one image per block): V1 g3 0.5x's plain, grouped and shuffled 1x1 convs."""
    kernels = _conv1x1_kernels(["shufflenet_v1_g3_x0_5"], batch=8)
    assert len(kernels) >= 10
    _cuda_source(kernels)


def test_cuda_1x1_kernels_compile_with_nvcc(tmp_path):
    """The 1x1 convs of V2 1.0x and V1 g3 1.0x as one CUDA file, compiled for sm_90: no spills, no stack (the
    accumulators stay in registers)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH (the CUDA toolkit; no GPU needed)")
    kernels = _conv1x1_kernels(["shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0"])
    assert len(kernels) >= 18, [name for name, *_ in kernels]
    (tmp_path / "kernels.cu").write_text(_cuda_source(kernels))
    proc = subprocess.run([nvcc, "-cubin", "-arch=sm_90", "-O3", "-Xptxas", "-v", "-o", str(tmp_path / "k.cubin"),
                           str(tmp_path / "kernels.cu")], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", proc.stderr)
    assert len(frames) == len(kernels) and all(f == ("0", "0", "0") for f in frames), proc.stderr[-2000:]
