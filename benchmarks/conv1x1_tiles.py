"""The NCHW 1x1 conv's register tiles (schedules/grouped_conv1x1.py): every distinct 1x1 conv kernel of the models
that takes one path, scheduled with the rule's tile and with an earlier one, timed in interleaved rounds (which
runs first alternating), outputs compared. `--path pixels` (planes a multiple of the vector width: 28x28 and
larger; `pixel_tile`) against session 19's (the same rule within 16 accumulators with AVX-512, divisors only);
`--path rows` (14x14; `row_tile`) against session 20's (a divisor of at most 8 channels x 2 rows).

    python benchmarks/conv1x1_tiles.py [--path rows] [--rounds 9] [--mcpu haswell] [--models shufflenet_v2_x1_0 ...]

With `--mcpu haswell` an AVX-512 host runs AVX2 code: it shows the tile's effect, not an AVX2 class's times.
"""

from __future__ import annotations

import argparse

import numpy as np
from kernels import _arg
from packed_tiles import rule_against

MODELS = ["shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "shufflenet_v1_g8_x1_0"]


def session_19_tile(out_channels: int, groups: int, plane: int, lanes: int) -> tuple[int, int]:
    """Session 19's tile: the rule's, within 16 accumulators with AVX-512 (12 with AVX2, unchanged)."""
    from shuffletvm.schedules._common import divisor_at_most

    budget, vectors = {16: 16, 8: 12}[lanes], plane // lanes
    tiles = [(divisor_at_most(out_channels // groups, budget // v), v) for v in (4, 2, 1) if vectors % v == 0]
    channels, per_tile = next(((f, v) for f, v in tiles if f >= 4), max(tiles))
    return channels, per_tile * lanes


def session_20_row_tile(out_channels: int, groups: int, height: int, width: int, lanes: int) -> tuple[int, int]:
    """Session 20's row tile: a divisor of at most 8 output channels x a divisor of at most 2 rows."""
    from shuffletvm.schedules._common import divisor_at_most

    return divisor_at_most(out_channels, 8), divisor_at_most(height, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=["pixels", "rows"], default="pixels")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--mcpu", default=None, help="LLVM cpu (default: this host's)")
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()

    import tvm
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.build import load_graph
    from shuffletvm.pipeline import lower_for_tuning
    from shuffletvm.schedules import grouped_conv1x1 as rule
    from shuffletvm.schedules._common import conv_shape, vector_lanes
    from shuffletvm.targets import TargetOptions, resolve_target

    set_thread_env(2)
    target = resolve_target("x86", TargetOptions(mcpu=args.mcpu, num_cores=2)).tvm_target()
    lanes = vector_lanes(target)
    pixels = args.path == "pixels"
    name, earlier, who = (("pixel_tile", session_19_tile, "session 19") if pixels
                          else ("row_tile", session_20_row_tile, "session 20"))
    rows, seen = [], set()
    for model in args.models:
        mod = lower_for_tuning(load_graph(model, 1).mod, target)
        for gvar, func in mod.functions.items():
            shape = conv_shape(s_tir.Schedule(func)) if isinstance(func, tvm.tirx.PrimFunc) else None
            if (shape is None or shape.depthwise or (shape.kernel_h, shape.kernel_w) != (1, 1)
                    or ((shape.out_h * shape.out_w) % lanes == 0) != pixels or func.script() in seen
                    or rule.schedule(func, target) is None):
                continue
            seen.add(func.script())
            rng = np.random.default_rng(0)
            kernel_args = [_arg([int(d) for d in a.shape], str(a.dtype), rng) for a in ArgInfo.from_prim_func(func)]
            old, new = rule_against(rule, name, earlier, func, target, kernel_args, args.rounds)
            if pixels:
                plane = shape.out_h * shape.out_w
                tiles = [f"{c} x {p // lanes}" for c, p in (f(shape.out_channels, shape.groups, plane, lanes)
                                                           for f in (earlier, rule.pixel_tile))]
            else:
                tiles = [f"{c} x {r}" for c, r in (f(shape.out_channels, shape.groups, shape.out_h, shape.out_w, lanes)
                                                  for f in (earlier, rule.row_tile))]
            rows.append(f"| {model.removeprefix('shufflenet_')} {gvar.name_hint} | "
                        f"{shape.in_per_group * shape.groups} -> {shape.out_channels}"
                        f"{f' g{shape.groups}' if shape.groups > 1 else ''} @{shape.out_h}x{shape.out_w} | "
                        + " | ".join(tiles) + f" | {old:.1f} | {new:.1f} | {new / old:.2f}x |")
    print(f"NCHW 1x1 conv, {'fused-pixel' if pixels else 'row'} tiles, `{target.attrs.get('mcpu', '')}`, 2 threads, "
          f"hand schedule, medians of {args.rounds} interleaved rounds of 20 runs (us); tiles as channels x "
          f"{'vectors of pixels' if pixels else 'rows'}:\n")
    print(f"| kernel | conv | {who}'s tile | rule's tile | {who} | rule | rule / {who} |")
    print("|---|---|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
