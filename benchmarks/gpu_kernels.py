"""Per-kernel benchmark on a CUDA GPU: every depthwise 3x3 and 1x1 (grouped or not) conv kernel of V2 1.0x and
V1 g3 1.0x at batch 1, each with its fused bias / residual / ReLU epilogue, taken after the pipeline's legalize
phase (as `shuffletvm tune` extracts them) and measured side by side:

- dlight: TVM's default GPU schedules (what the stock CUDA pipeline applies);
- hand: the schedules/ rule (grouped_conv1x1.py's `_gpu`, depthwise_conv3x3.py's CUDA branch);
- hand-b64, hand-direct: two variants of the 1x1 rule, for the record of its design — GPU_MIN_BLOCKS = 64
  (bigger tiles, fewer blocks) and GPU_STAGE_INPUTS = False (inputs read from global memory, not staged);
- cudnn: the same conv + bias (+ residual) (+ ReLU) in PyTorch eager, fp32, TF32 off, cudnn.benchmark on (V1's
  shuffled convs without their channel shuffle, which TVM folds into the conv's input read).

Each variant's kernels are compiled as one module (one nvcc run). Times: TVM's time_evaluator (CUDA events
around NUMBER back-to-back calls) and CUDA events around as many PyTorch calls; medians of interleaved rounds.
Every hand kernel's output is compared with dlight's on the same inputs.

    python benchmarks/gpu_kernels.py [--rounds 7] [--out-dir DIR]     writes gpu_kernels.md and gpu_kernels.json
    python benchmarks/gpu_kernels.py --build-only                      compiles every column; needs no GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("gpu_kernels")
MODELS = ("shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0")
NUMBER = 200  # back-to-back calls per timing
VARIANTS = {  # 1x1 rule constants -> values, per variant (the depthwise kernels use the plain hand rule)
    "hand-b64": {"GPU_MIN_BLOCKS": 64},
    "hand-direct": {"GPU_STAGE_INPUTS": False},
}
COLUMNS = ("dlight", "hand", *VARIANTS, "cudnn")


@dataclass
class Kernel:
    name: str
    calls: dict[str, int]  # model -> times the model calls it
    kind: str  # "1x1" or "dw3x3"
    shape: str
    func: Any
    args: list[np.ndarray]
    stride: int
    groups: int
    tiles: str = ""
    times: dict[str, list[float]] = field(default_factory=dict)
    rel_err: dict[str, float] = field(default_factory=dict)

    def median(self, column: str) -> float | None:
        return float(np.median(self.times[column])) if self.times.get(column) else None


def extract(target: Any) -> list[Kernel]:
    from kernels import conv_tasks  # benchmarks/kernels.py, beside this script
    from shuffletvm.schedules import grouped_conv1x1
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(0)
    kernels: dict[int, Kernel] = {}
    for model, task, func, shape in conv_tasks(MODELS, target):
        key = hash(task.extracted.dispatched[0])
        if key in kernels:
            kernels[key].calls[model] = kernels[key].calls.get(model, 0) + task.weight
            continue
        args = [rng.standard_normal([int(s) for s in a.shape]).astype(np.float32)
                for a in ArgInfo.from_prim_func(func)]
        in_h, in_c = args[0].shape[2], args[0].shape[1]
        if shape.kernel_h == 1:
            stride, kind = in_h // shape.out_h, "1x1"
            tiles = grouped_conv1x1.gpu_tiles(shape)
            tiles_text = (f"{tiles.channels_per_thread}ch x {tiles.channel_threads}x{tiles.pixel_threads} thr, "
                          f"k {tiles.chunk}/{shape.in_per_group}, {tiles.blocks(shape)} blk")
        else:
            stride, kind, tiles_text = (in_h - 1) // (shape.out_h - 1) if shape.out_h > 1 else 1, "dw3x3", ""
        group = f" g{shape.groups}" if kind == "1x1" and shape.groups > 1 else ""
        desc = f"{kind}{group} s{stride} {in_c}->{shape.out_channels} @{shape.out_h}x{shape.out_w}"
        kernels[key] = Kernel(task.name, {model: task.weight}, kind, desc, func, args, stride, shape.groups,
                              tiles_text)
    return sorted(kernels.values(), key=lambda k: (k.kind, k.shape))


@contextlib.contextmanager
def _constants(module: Any, values: dict[str, Any]) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def schedulers(target: Any) -> dict[str, Callable[[Kernel], Any | None]]:
    """Column -> function from a kernel to its scheduled PrimFunc (None: the column does not cover it)."""
    import tvm
    from shuffletvm.schedules import first_claim, grouped_conv1x1

    from shuffletvm import tvm_compat

    def dlight(kernel: Kernel) -> Any:
        with target:
            mod = tvm.transform.Sequential(tvm_compat.default_schedules(target))(tvm.IRModule({"main": kernel.func}))
        return mod["main"]

    def hand(kernel: Kernel) -> Any | None:
        claim = first_claim(kernel.func, target)
        return claim[1].mod["main"] if claim is not None else None

    def variant(values: dict[str, Any]) -> Callable[[Kernel], Any | None]:
        def schedule(kernel: Kernel) -> Any | None:
            if kernel.kind != "1x1":
                return None
            with _constants(grouped_conv1x1, values):
                sch = grouped_conv1x1.schedule(kernel.func, target)
            return sch.mod["main"] if sch is not None else None
        return schedule

    return {"dlight": dlight, "hand": hand, **{name: variant(v) for name, v in VARIANTS.items()}}


def build(kernels: list[Kernel], schedule: Callable[[Kernel], Any | None], target: Any) -> dict[int, Callable]:
    """All kernels `schedule` covers in one module; kernel index -> function of the runtime module."""
    import tvm

    funcs = {}
    for i, kernel in enumerate(kernels):
        func = schedule(kernel)
        if func is not None:
            funcs[f"k{i}"] = func.with_attr("global_symbol", f"k{i}")
    if not funcs:
        return {}
    lib = tvm.compile(tvm.IRModule(funcs), target=target).jit()
    return {int(name[1:]): lib for name in funcs}


def tvm_timers(kernels: list[Kernel], column: str, libs: dict[int, Any], reference: dict[int, np.ndarray]) -> dict:
    import tvm

    dev = tvm.cuda(0)
    timers = {}
    for i, lib in libs.items():
        kernel = kernels[i]
        tensors = [tvm.runtime.tensor(a, device=dev) for a in kernel.args]
        lib[f"k{i}"](*tensors)
        out = tensors[-1].numpy()
        if column == "dlight":
            reference[i] = out
        elif i in reference:
            kernel.rel_err[column] = float(np.abs(out - reference[i]).max() / max(np.abs(reference[i]).max(), 1e-30))
        evaluator = lib.time_evaluator(f"k{i}", dev, number=NUMBER, repeat=1)
        timers[i] = (lambda ev=evaluator, ts=tensors: ev(*ts).mean * 1e6)
    return timers


def torch_timer(kernel: Kernel) -> Callable[[], float]:
    import torch
    from kernels import torch_conv  # benchmarks/kernels.py, beside this script

    x, w, b = (torch.from_numpy(a).cuda() for a in kernel.args[:3])
    residual = torch.from_numpy(kernel.args[3]).cuda() if len(kernel.args) > 4 else None
    run = torch_conv(x, w, b, residual, kernel.stride, kernel.groups, "relu" in kernel.name)

    def timer() -> float:
        with torch.inference_mode():
            run()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(NUMBER):
                run()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / NUMBER * 1e3

    return timer


def measure(kernels: list[Kernel], timers: dict[str, dict[int, Callable[[], float]]], rounds: int) -> None:
    for _ in range(rounds):
        for i, kernel in enumerate(kernels):
            for column in COLUMNS:
                if i in timers.get(column, {}):
                    kernel.times.setdefault(column, []).append(timers[column][i]())


def table(kernels: list[Kernel]) -> list[str]:
    head = " | ".join(f"{c} us" for c in COLUMNS)
    lines = [f"| kernel | shape | calls V2/V1 | hand 1x1 tiling | {head} | hand / dlight | hand err |",
             "|---|---|---|---|" + "---:|" * len(COLUMNS) + "---:|---:|"]
    for k in kernels:
        med = {c: k.median(c) for c in COLUMNS}
        cells = " | ".join(f"{med[c]:.1f}" if med[c] is not None else "-" for c in COLUMNS)
        ratio = f"{med['hand'] / med['dlight']:.2f}" if med["hand"] and med["dlight"] else "-"
        err = f"{k.rel_err['hand']:.0e}" if "hand" in k.rel_err else "-"
        calls = "/".join(str(k.calls.get(m, 0)) for m in MODELS)
        lines.append(f"| {k.name} | {k.shape} | {calls} | {k.tiles or '-'} | {cells} | {ratio} | {err} |")
    for model in MODELS:
        for kind in ("1x1", "dw3x3"):
            rows = [k for k in kernels if k.kind == kind and k.calls.get(model)]
            sums = []
            for c in COLUMNS:  # a variant that does not cover a kernel counts the hand rule's time for it
                fallback = "hand" if c in VARIANTS else c
                values = [(k.median(c) if k.median(c) is not None else k.median(fallback)) for k in rows]
                sums.append(f"**{sum(v * k.calls[model] for v, k in zip(values, rows)):.0f}**"
                            if all(v is not None for v in values) else "-")
            lines.append(f"| **{model.removeprefix('shufflenet_')} {kind}: sum over calls** | | | | "
                         + " | ".join(sums) + " | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    parser.add_argument("--build-only", action="store_true", help="compile every column, measure nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import tvm

    from shuffletvm import tvm_compat
    from shuffletvm.fileio import write_text_atomic
    from shuffletvm.targets import resolve_target

    started = time.perf_counter()
    target = resolve_target("cuda").tvm_target()
    tvm_compat.prepare_codegen(target)
    kernels = extract(target)
    log.info("%d kernels extracted after %.0f s", len(kernels), time.perf_counter() - started)
    timers: dict[str, dict[int, Callable[[], float]]] = {}
    reference: dict[int, np.ndarray] = {}
    for column, schedule in schedulers(target).items():
        libs: dict[int, Any] = {}
        try:
            libs = build(kernels, schedule, target)
            if not args.build_only:
                timers[column] = tvm_timers(kernels, column, libs, reference)
        except Exception as err:  # noqa: BLE001 - one failed column must not lose the others
            log.error("%s: %s", column, str(err).strip().splitlines()[-1][:300])
        log.info("%s: %d kernels built after %.0f s", column, len(libs), time.perf_counter() - started)
    if args.build_only:
        return
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    timers["cudnn"] = {i: torch_timer(k) for i, k in enumerate(kernels)}
    measure(kernels, timers, args.rounds)
    device = torch.cuda.get_device_name()
    lines = [
        f"# Per-kernel on {device}: dlight vs hand-written CUDA schedules vs cuDNN",
        "",
        (f"Depthwise 3x3 and 1x1 conv kernels of {' and '.join(MODELS)} (each with its fused epilogue), batch 1; "
         f"medians of {args.rounds} interleaved rounds of {NUMBER} back-to-back calls (device time per call, "
         f"launch included). TVM {tvm.__version__}, torch {torch.__version__}; target arch "
         f"{target.attrs['arch']}. Hand err: max |hand - dlight| / max |dlight|."),
        "",
        f"Reproduce: `python benchmarks/gpu_kernels.py --rounds {args.rounds}`",
        "",
        *table(kernels),
        "",
        f"Measured in {time.perf_counter() - started:.0f} s.",
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic("\n".join(lines) + "\n", args.out_dir / "gpu_kernels.md")
    record = {
        "device": device, "tvm": tvm.__version__, "torch": torch.__version__, "arch": str(target.attrs["arch"]),
        "rounds": args.rounds, "number": NUMBER, "variants": VARIANTS,
        "kernels": [{"name": k.name, "kind": k.kind, "shape": k.shape, "calls": k.calls, "hand_tiling": k.tiles,
                     "median_us": {c: k.median(c) for c in COLUMNS}, "rel_err_vs_dlight": k.rel_err}
                    for k in kernels],
    }
    write_text_atomic(json.dumps(record, indent=1) + "\n", args.out_dir / "gpu_kernels.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
