"""The depthwise hand schedule at stride 2 (schedules/depthwise_conv3x3.py, `_tvm_vectors`): ShuffleNet's
stride-2 depthwise convs as the rule schedules them (plain loops, which LLVM's loop vectorizer vectorizes), with
TVM's own vectors as at stride 1 (the schedule before session 15), and unscheduled as TVM's stock pipeline
compiles them, timed in interleaved rounds, for AVX-512 and AVX2 (both run on an AVX-512 host).

    python benchmarks/depthwise_stride2.py [--rounds 15]

The kernels are depthwise conv + bias as TVM legalizes them; below `PARALLEL_MACS` the schedule keeps them on one
thread, so these times are one core's.
"""

from __future__ import annotations

import argparse

from depthwise_rows import TARGETS, _kernel, interleaved_medians, rule_timers  # beside this script
from kernels import _tvm_timer

SHAPES = [  # (channels, input size): V2 1.0x, V1 g3 1.0x, V1 g8 1.0x
    (24, 56), (58, 56), (116, 28), (232, 14), (60, 56), (120, 28), (240, 14), (96, 56),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from shuffletvm.schedules import depthwise_conv3x3
    from shuffletvm.targets import TargetOptions, resolve_target

    rule = depthwise_conv3x3._tvm_vectors
    rows = []
    for isa, mcpu in TARGETS.items():
        target = resolve_target("x86", TargetOptions(mcpu=mcpu)).tvm_target()
        for channels, size in SHAPES:
            func, kernel_args = _kernel(channels, size, 2)
            timers = {"stock": _tvm_timer(func, target, [a.copy() for a in kernel_args]),
                      **rule_timers(func, target, kernel_args, "_tvm_vectors",
                                    {"TVM vectors": lambda _stride, _lanes: True, "rule": rule})}
            medians = interleaved_medians(timers, args.rounds)
            stock, vectors, loops = medians["stock"], medians["TVM vectors"], medians["rule"]
            rows.append(f"| {isa} | {channels} x {size}x{size} | {stock:.1f} | {vectors:.1f} | {loops:.1f} | "
                        f"{loops / vectors:.2f}x | {loops / stock:.2f}x |")
    print(f"Depthwise 3x3 stride 2 + bias, medians of {args.rounds} interleaved rounds of 20 runs (us):\n")
    print("| ISA | input | stock | TVM vectors | rule (loops) | rule / vectors | rule / stock |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
