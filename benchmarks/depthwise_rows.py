"""The depthwise hand schedule's row vectors (schedules/depthwise_conv3x3.py, `_row_vector`): each plane size of
ShuffleNet's depthwise convs scheduled as the rule cuts its rows, and with every row one vector (the schedule
before session 14), timed in interleaved rounds, for AVX-512 and AVX2 (both run on an AVX-512 host).

    python benchmarks/depthwise_rows.py [--rounds 15]

Stride 1 only: at stride 2 the x86 rule vectorizes no row (`benchmarks/depthwise_stride2.py`). The kernels are
depthwise conv + bias as TVM legalizes them; below `PARALLEL_MACS` the schedule keeps them on one
thread, so these times are one core's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from kernels import _tvm_timer

SHAPES = [  # (channels, input size, stride)
    (24, 28, 1), (58, 28, 1), (96, 28, 1), (116, 28, 1), (116, 14, 1), (232, 7, 1),
]
TARGETS = {"AVX-512": "skylake-avx512", "AVX2": "haswell"}


def _kernel(channels: int, size: int, stride: int) -> tuple[object, list[np.ndarray]]:
    from tvm import te, topi

    x = te.placeholder((1, channels, size, size), name="x")
    w = te.placeholder((channels, 1, 3, 3), name="w")
    b = te.placeholder((1, channels, 1, 1), name="b")
    out = topi.add(topi.nn.group_conv2d_nchw(x, w, stride, 1, 1, channels), b)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(d) for d in t.shape]).astype(np.float32) for t in (x, w, b, out)]
    return te.create_prim_func([x, w, b, out]), args


def rule_timers(func: object, target: object, args: list[np.ndarray], rule: str,
                variants: dict[str, Callable]) -> dict[str, Callable[[], float]]:
    """A timer per variant of the depthwise schedule, each scheduled with `depthwise_conv3x3.<rule>` replaced by
    that variant (the module's own restored after)."""
    from shuffletvm.schedules import depthwise_conv3x3

    original = getattr(depthwise_conv3x3, rule)
    timers = {}
    try:
        for label, variant in variants.items():
            setattr(depthwise_conv3x3, rule, variant)
            sch = depthwise_conv3x3.schedule(func, target)
            timers[label] = _tvm_timer(sch.mod["main"], target, [a.copy() for a in args])
    finally:
        setattr(depthwise_conv3x3, rule, original)
    return timers


def interleaved_medians(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each timer's median over `rounds` rounds in which every timer runs once, in turn."""
    times: dict[str, list[float]] = {label: [] for label in timers}
    for _ in range(rounds):
        for label, timer in timers.items():
            times[label].append(timer())
    return {label: float(np.median(t)) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from shuffletvm.schedules import depthwise_conv3x3
    from shuffletvm.schedules._common import vector_lanes
    from shuffletvm.targets import TargetOptions, resolve_target

    rule = depthwise_conv3x3._row_vector
    rows = []
    for isa, mcpu in TARGETS.items():
        target = resolve_target("x86", TargetOptions(mcpu=mcpu)).tvm_target()
        lanes = vector_lanes(target)
        for channels, size, stride in SHAPES:
            func, kernel_args = _kernel(channels, size, stride)
            width = (size - 1) // stride + 1
            timers = rule_timers(func, target, kernel_args, "_row_vector",
                                 {"whole row": lambda w, _lanes: w, "rule": rule})
            medians = interleaved_medians(timers, args.rounds)
            whole, cut = medians["whole row"], medians["rule"]
            vector = rule(width, lanes)
            rows.append(f"| {isa} | {channels} x {size}x{size}, stride {stride} | {width} | "
                        f"{'one' if vector == width else f'{width // vector} of {vector}'} | {whole:.1f} | {cut:.1f} | "
                        f"{cut / whole:.2f}x |")
    print(f"Depthwise 3x3 + bias, hand schedule, medians of {args.rounds} interleaved rounds of 20 runs (us):\n")
    print("| ISA | input | row | rule's vectors | one row vector | rule | rule / one |")
    print("|---|---|---:|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
