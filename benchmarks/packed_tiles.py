"""The packed 1x1 conv's register tile (schedules/packed_conv1x1.py, `tile`): ShuffleNet's packed convs
scheduled with the rule's tile and with session 16's (2 blocks if the block count is even, else 1, x 7 pixels,
the tiles in parallel), timed in interleaved rounds (which runs first alternating), outputs compared.

    python benchmarks/packed_tiles.py [--rounds 15] [--mcpu haswell]

The host's own width by default (the weight blocks are the layout phase's for the target). With
`--mcpu haswell` an AVX-512 host runs AVX2 code: it shows the tile's effect, not the AVX2 class's times.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
from kernels import _tvm_compiled  # benchmarks/kernels.py, beside this script

SHAPES = [  # (label, batch, in channels, out channels, conv groups, shuffle groups read through, plane side)
    ("V2 1.0x conv5", 1, 464, 1024, 1, 2, 7),
    ("V2 1.0x stage 4", 1, 232, 232, 1, 1, 7),
    ("V2 0.5x stage 4", 1, 96, 96, 1, 1, 7),
    ("V2 0.5x conv5", 1, 192, 1024, 1, 2, 7),
    ("V1 g3 1.0x stage 4", 1, 960, 240, 3, 1, 7),
    ("V1 g3 1.0x stage 4", 1, 240, 960, 3, 3, 7),
    ("V1 g8 1.0x stage 4", 1, 1536, 192, 8, 1, 7),
    ("V1 g8 1.0x stage 4", 1, 192, 1536, 8, 8, 7),
    ("V2 1.0x conv5", 8, 464, 1024, 1, 2, 7),
    ("V2 1.0x stage 4", 8, 232, 232, 1, 1, 7),
]


def session_16_tile(lanes: int, blocks: int, _groups: int, plane: int, _tasks: int, _cores: int) -> tuple:
    from shuffletvm.schedules._common import divisor_at_most

    return (2 if lanes >= 16 and blocks % 2 == 0 else 1), divisor_at_most(plane, 7), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mcpu", default=None, help="LLVM cpu (default: this host's)")
    args = parser.parse_args()

    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.kernels.packed_conv1x1 import PackedConv1x1Spec, pack_weight, packed_conv1x1
    from shuffletvm.passes.pack_conv1x1_weights import weight_block, weight_blocks
    from shuffletvm.schedules import packed_conv1x1 as rule
    from shuffletvm.schedules._common import vector_lanes
    from shuffletvm.targets import TargetOptions, resolve_target

    set_thread_env(2)
    target = resolve_target("x86", TargetOptions(mcpu=args.mcpu, num_cores=2)).tvm_target()
    lanes = vector_lanes(target)
    rows = []
    for label, batch, cin, cout, groups, shuffle, side in SHAPES:
        block = weight_block(target, cout // groups, side * side, groups)
        blocks = weight_blocks(target, cout, block, groups)
        func = packed_conv1x1(PackedConv1x1Spec(batch, cin, cout, side, side, groups, shuffle, block=block,
                                                blocks=blocks))
        rng = np.random.default_rng(0)
        weight = rng.standard_normal((cout, cin // groups, 1, 1)).astype(np.float32)
        kernel_args = [rng.standard_normal((batch, cin, side, side)).astype(np.float32),
                       pack_weight(weight, block, blocks), np.zeros((batch, cout, side, side), np.float32)]
        old, new = rule_against(rule, "tile", session_16_tile, func, target, kernel_args, args.rounds)
        count = blocks or -(-cout // block)
        vectors, pixels, by_blocks = rule.tile(lanes, count, groups, side * side, batch, 2)
        rows.append(f"| {label}, {cin} -> {cout}{f' g{groups}' if groups > 1 else ''}, batch {batch} | "
                    f"{count} of {block} | {vectors} x {pixels}, {'blocks' if by_blocks else 'tiles'} in parallel | "
                    f"{old:.1f} | {new:.1f} | {new / old:.2f}x |")
    print(f"Packed 1x1 conv (7x7 plane), `{target.attrs.get('mcpu', '')}`, 2 threads, hand schedule, medians of "
          f"{args.rounds} interleaved rounds of 20 runs (us):\n")
    print("| conv | weight blocks | rule's tile | session 16 | rule | rule / session 16 |")
    print("|---|---|---|---:|---:|---:|")
    print("\n".join(rows))


def rule_against(module: Any, name: str, earlier: Callable, func: Any, target: Any, kernel_args: list[np.ndarray],
                 rounds: int) -> tuple[float, float]:
    """Medians (us) of `func` scheduled by `module.schedule` with `module.<name>` replaced by `earlier`, and with
    it as it is, timed in alternating interleaved rounds; their outputs on `kernel_args` must agree."""
    timers, outputs = [], []
    for tile in (earlier, getattr(module, name)):
        original = getattr(module, name)
        setattr(module, name, tile)
        try:
            scheduled = module.schedule(func, target).mod["main"]
        finally:
            setattr(module, name, original)
        timer, output = _compiled(scheduled, target, [a.copy() for a in kernel_args])
        timers.append(timer)
        outputs.append(output)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5 * np.abs(outputs[0]).max())
    return _alternating_medians(*timers, rounds)


def _compiled(func: object, target: object, args: list[np.ndarray]) -> tuple[Callable[[], float], np.ndarray]:
    """A timer (us per call, median of 20 runs) of `func` built for `target`, and its output on `args`."""
    timer, lib, tensors = _tvm_compiled(func, target, args)
    lib["main"](*tensors)
    return timer, tensors[-1].numpy()


def _alternating_medians(first: Callable[[], float], second: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Both timers' medians over `rounds` rounds, each round running both, which first alternating."""
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            times[i].append((first, second)[i]())
    return float(np.median(times[0])), float(np.median(times[1]))


if __name__ == "__main__":
    main()
