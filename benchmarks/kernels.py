"""Per-kernel benchmark: every depthwise 3x3 and 1x1 (grouped or not) conv kernel of V1 g3 1.0x and V2 1.0x,
four ways, measured side by side in one run (interleaved rounds, medians):

- stock: the kernel as TVM legalizes it, with TVM's default (no) schedule;
- hand: the schedules/ rule for it;
- tuned: the tuning log's best record for it (tuning_logs/<target>/), if any;
- PyTorch: the same conv + bias (+ residual) (+ ReLU) in PyTorch eager, same thread count.

    python benchmarks/kernels.py [--rounds 5] [--out benchmarks/KERNELS.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
MODELS = ("shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0")


@dataclass
class KernelRow:
    name: str
    models: set[str]
    calls: int
    shape: str
    timers: dict[str, Callable[[], float]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)


def _tvm_timer(func: Any, target: Any, args: list[np.ndarray]) -> Callable[[], float]:
    return _tvm_compiled(func, target, args)[0]


def _tvm_compiled(func: Any, target: Any, args: list[np.ndarray]) -> tuple[Callable[[], float], Any, list[Any]]:
    """`func` built for `target`: a timer (us per call, median of 20 runs) on `args` as TVM tensors, the module,
    and those tensors (the last one the output)."""
    import tvm
    import tvm.runtime

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target).jit()
    tensors = [tvm.runtime.tensor(a) for a in args]
    evaluator = lib.time_evaluator("main", tvm.cpu(), number=20, repeat=1)
    return (lambda: evaluator(*tensors).median * 1e6), lib, tensors


def _arg(shape: list[int], dtype: str, rng: Any) -> np.ndarray:
    """A random argument; an int32 one is a stage-buffer channel table (KeepIdentityInPlace's convs):
    distinct channels of a buffer twice its length."""
    if dtype == "int32":
        return rng.permutation(2 * shape[0])[: shape[0]].astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)


def _conv_args(args: list[np.ndarray]) -> list[np.ndarray]:
    """The kernel's arguments as the plain conv's (input, weight, bias, [residual,] output): a gather conv
    (buf, slots, weight, ...) reads channels `slots` of buf; a scatter conv (x, weight, bias, slots, buf) writes
    into buf."""
    from shuffletvm.kernels.stage_buffer_conv import role

    kind = role([str(a.dtype) for a in args])
    if kind == "gather":
        return [args[0][:, args[1]], *args[2:]]
    return [args[0], args[1], args[2], args[4]] if kind == "scatter" else args


def torch_conv(x: Any, w: Any, b: Any, residual: Any, stride: int, groups: int, relu: bool) -> Callable[[], Any]:
    """The kernel's computation in PyTorch: conv + bias (+ residual) (+ ReLU)."""
    import torch.nn.functional as F

    pad = w.shape[-1] // 2

    def run() -> Any:
        y = F.conv2d(x, w, b.reshape(-1), stride=stride, padding=pad, groups=groups)
        if residual is not None:
            y = y + residual
        return F.relu(y) if relu else y

    return run


def _torch_timer(name: str, args: list[np.ndarray], stride: int, groups: int) -> Callable[[], float]:
    import torch

    x, w, b = (torch.from_numpy(a) for a in args[:3])
    residual = torch.from_numpy(args[3]) if len(args) > 4 else None
    run = torch_conv(x, w, b, residual, stride, groups, "relu" in name)

    def timer() -> float:
        with torch.inference_mode():
            run()
            start = time.perf_counter()
            for _ in range(20):
                run()
            return (time.perf_counter() - start) / 20 * 1e6

    return timer


def conv_tasks(models: tuple[str, ...], target: Any) -> Iterator[tuple[str, Any, Any, Any]]:
    """(model, task, kernel, conv shape) for every 1x1 and depthwise 3x3 conv task of `models` at batch 1."""
    from shuffletvm.schedules._common import conv_shape
    from tvm import s_tir

    from shuffletvm.tuning.tasks import model_tasks

    for model in models:
        for task in model_tasks([model], 1, target):
            func = task.extracted.dispatched[0]["main"]
            shape = conv_shape(s_tir.Schedule(func))
            if shape is None or (shape.kernel_h, shape.kernel_w) not in ((1, 1), (3, 3)) or (
                    shape.kernel_h == 3 and not shape.depthwise):
                continue
            yield model, task, func, shape


def collect(target_name: str = "x86") -> tuple[list[KernelRow], Any]:
    from shuffletvm.schedules import first_claim
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.targets import resolve_target
    from shuffletvm.tuning.database import open_log

    target = resolve_target(target_name)
    tvm_target = target.tvm_target()
    log = open_log(target, create=False)
    database = log.database() if log.records else None
    rows: dict[int, KernelRow] = {}
    rng = np.random.default_rng(0)
    for model, task, func, shape in conv_tasks(MODELS, tvm_target):
        key = hash(task.extracted.dispatched[0])
        if key in rows:
            rows[key].models.add(model)
            continue
        args = [_arg([int(s) for s in a.shape], str(a.dtype), rng) for a in ArgInfo.from_prim_func(func)]
        conv = _conv_args(args)
        in_h = conv[0].shape[2]
        stride = in_h // shape.out_h if shape.kernel_h == 1 else (in_h + 2 - 3) // (shape.out_h - 1) if shape.out_h > 1 else 1
        groups = conv[0].shape[1] // conv[1].shape[1]
        kind = "dw3x3" if shape.depthwise else f"1x1 g{groups}"
        desc = f"{kind} s{stride} {conv[0].shape[1]}->{shape.out_channels} @{shape.out_h}x{shape.out_w}"
        row = KernelRow(task.name, {model}, task.weight, desc)
        row.timers["stock"] = _tvm_timer(func, tvm_target, args)
        claim = first_claim(func, tvm_target)
        if claim is not None:
            row.timers["hand"] = _tvm_timer(claim[1].mod["main"], tvm_target, args)
        if database is not None:
            sch = database.query_schedule(task.extracted.dispatched[0], tvm_target, task.name)
            if sch is not None:
                row.timers["tuned"] = _tvm_timer(sch.mod["main"], tvm_target, args)
        row.timers["pytorch"] = _torch_timer(task.name, conv, stride, groups)
        rows[key] = row
    return list(rows.values()), log


def measure(rows: list[KernelRow], rounds: int) -> None:
    """TVM's variants interleaved, then PyTorch on its own: run between TVM kernels, PyTorch's OpenMP workers
    keep spinning on the same cores after each call and slow TVM's parallel kernels down (and TVM's pool
    PyTorch's), which would measure the two runtimes fighting rather than the kernels."""
    for phase in (lambda name: name != "pytorch", lambda name: name == "pytorch"):
        for _ in range(rounds):
            for row in rows:
                for name, timer in row.timers.items():
                    if phase(name):
                        row.times.setdefault(name, []).append(timer())


def table(rows: list[KernelRow]) -> list[str]:
    columns = ["stock", "hand", "tuned", "pytorch"]
    lines = ["| kernel | shape | calls | " + " | ".join(f"{c} us" for c in columns) + " | hand / stock | tuned / pytorch |",
             "|---|---|---:|" + "---:|" * len(columns) + "---:|---:|"]
    totals = dict.fromkeys(columns, 0.0)
    for row in sorted(rows, key=lambda r: r.shape):
        med = {c: float(np.median(row.times[c])) if c in row.times else None for c in columns}
        for c in columns:
            if med[c] is not None:
                totals[c] += med[c] * row.calls
        cells = " | ".join(f"{med[c]:.1f}" if med[c] is not None else "-" for c in columns)
        hand = f"{med['stock'] / med['hand']:.1f}x faster" if med["hand"] else "-"
        tuned = f"{med['tuned'] / med['pytorch']:.2f}" if med["tuned"] else "-"
        models = "+".join(sorted(m.removeprefix("shufflenet_") for m in row.models))
        lines.append(f"| {row.name} ({models}) | {row.shape} | {row.calls} | {cells} | {hand} | {tuned} |")
    lines.append("| **sum over calls** | | | " + " | ".join(f"**{totals[c]:.0f}**" for c in columns) + " | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "KERNELS.md")
    args = parser.parse_args()
    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.fileio import write_text_atomic
    from shuffletvm.targets import resolve_target

    threads = int(resolve_target("x86").spec["num-cores"])
    set_thread_env(threads)
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    rows, log = collect()
    measure(rows, args.rounds)
    lines = [
        "# Per-kernel: TVM default vs hand-written schedule vs tuned vs PyTorch (x86)",
        "",
        f"Depthwise 3x3 and 1x1 conv kernels of {' and '.join(MODELS)} (each with its fused bias / residual / "
        f"ReLU epilogue), batch 1, {threads} threads; medians of {args.rounds} rounds of 20 runs (TVM's variants "
        "interleaved, PyTorch after them: their thread pools would otherwise contend). "
        f"Tuned = best record in `{log.path.name}` ({log.records} records). "
        "Shared machine: compare within a row.",
        "",
        f"Reproduce: `python benchmarks/kernels.py --rounds {args.rounds}`",
        "",
        *table(rows),
        "",
        f"Measured in {time.perf_counter() - started:.0f} s.",
    ]
    write_text_atomic("\n".join(lines) + "\n", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
