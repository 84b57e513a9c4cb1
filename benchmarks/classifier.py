"""The classifier kernel with its weights packed in column tiles (passes/pack_matmul_weights.py) against the k-major
kernel it replaces, scheduled as `build` scheduled it before (the tuning log's record, else the hand schedule), one
kernel at a time, interleaved rounds, outputs compared.

    python benchmarks/classifier.py [--models shufflenet_v2_x1_0 ...] [--batch 1] [--rounds 15]

Two times per kernel: warm (its weights in cache from the call before) and flushed (every argument but the input
evicted from the caches before each call: TVM's `cache_flush_cpu_non_first_arg`), which is closer to a running
model, where the 13 MB of weights and activations between two classifier calls push its 4 MB out.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
from kernel_profile import scheduled_module  # benchmarks/, beside this script

MODELS = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "shufflenet_v1_g8_x1_0"]


@contextmanager
def _unpacked() -> Iterator[None]:
    from shuffletvm.passes import pack_matmul_weights

    with mock.patch.object(pack_matmul_weights, "column_block", lambda *_: None):
        yield


def _classifier(mod) -> object:
    import tvm

    names = [gv.name_hint for gv, f in mod.functions.items()
             if isinstance(f, tvm.tirx.PrimFunc) and "matmul" in gv.name_hint]
    if len(names) != 1:
        raise SystemExit(f"expected one classifier kernel, found {names}")
    return mod[names[0]]


def _args(func, weight: np.ndarray, bias: np.ndarray, data: np.ndarray) -> list[np.ndarray]:
    """The kernel's arguments by shape: the input, the weight ([K, N] or packed [N/T, K, T]), the bias, the output."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_matmul import pack_weight

    infos = ArgInfo.from_prim_func(func)
    args = []
    for info in infos[:-1]:
        shape = tuple(int(s) for s in info.shape)
        if shape == data.shape:
            args.append(data)
        elif shape == weight.shape:
            args.append(weight)
        elif len(shape) == 3:
            args.append(pack_weight(weight, shape[2]))
        else:
            args.append(bias.reshape(shape))
    return [*args, np.zeros([int(s) for s in infos[-1].shape], np.float32)]


def rows(model: str, batch: int, rounds: int) -> list[str]:
    import tvm
    import tvm.runtime

    with _unpacked():
        before, target = scheduled_module(model, batch)
    after, _ = scheduled_module(model, batch)
    kernels = {"k-major, as built before": _classifier(before), "packed": _classifier(after)}
    depth, columns = _shapes(kernels["k-major, as built before"])
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((depth, columns)).astype(np.float32)
    bias = rng.standard_normal(columns).astype(np.float32)
    data = rng.standard_normal((batch, depth)).astype(np.float32)
    timers, outputs = {}, {}
    for label, func in kernels.items():
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target).jit()
        args = [tvm.runtime.tensor(a) for a in _args(func, weight, bias, data)]
        lib["main"](*args)
        outputs[label] = args[-1].numpy()
        timers[label] = (args, lib.time_evaluator("main", tvm.cpu(), number=20, repeat=1),
                         lib.time_evaluator("main", tvm.cpu(), number=1, repeat=20,
                                            f_preproc="cache_flush_cpu_non_first_arg"))
    first, second = outputs.values()
    if not np.array_equal(first, second):
        raise SystemExit(f"{model}: outputs differ ({np.abs(first - second).max():.2e})")
    times: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in timers}
    for _ in range(rounds):
        for label, (args, warm, flushed) in timers.items():
            times[label][0].append(warm(*args).median * 1e6)
            times[label][1].append(flushed(*args).median * 1e6)
    (warm_b, flushed_b), (warm_a, flushed_a) = ([float(np.median(t)) for t in pair] for pair in times.values())
    return [(f"| {model} | {depth} -> {columns} | {warm_b:.1f} | {warm_a:.1f} | {warm_a / warm_b:.2f}x | "
            f"{flushed_b:.1f} | {flushed_a:.1f} | {flushed_a / flushed_b:.2f}x |")]


def _shapes(func) -> tuple[int, int]:
    """(K, N) of a k-major classifier kernel: its weight's shape."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return next(tuple(int(s) for s in a.shape) for a in ArgInfo.from_prim_func(func)[1:] if len(a.shape) == 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    lines = [(f"Classifier kernels, batch {args.batch}, {args.rounds} interleaved rounds, medians (us); outputs "
             "identical."), "",
             "| model | K -> N | warm, k-major | warm, packed | ratio | flushed, k-major | flushed, packed | ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model in args.models:
        lines += rows(model, args.batch, args.rounds)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
