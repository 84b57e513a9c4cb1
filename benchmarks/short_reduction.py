"""AVX2's short-reduction tile for grouped 1x1 convs (schedules/packed_conv1x1.py `short_tile`) and the layout it
brings to 28x28 (passes/pack_conv1x1_weights.py `SHORT_MAX_PLANE`), one kernel at a time, interleaved rounds:

- tile: every packed kernel of the V1 models that `short_tile` takes, scheduled with the rule of `tile` (short_tile
  off) and as it is, outputs compared;
- layout: the models' 28x28 1x1 convs with hand schedules, built with SHORT_MAX_PLANE off (NCHW) and as it is
  (packed), each kernel's median. The kernels of the two builds differ by name; the table pairs them by shape.

    python benchmarks/short_reduction.py [--rounds 25] [--models shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0]

The host's own target: on an AVX-512 host neither applies.
"""

from __future__ import annotations

import argparse

import numpy as np
from kernel_profile import conv1x1_label, kernel_timers, scheduled_module  # benchmarks/, beside this script
from packed_tiles import rule_against


def tile_rows(models: list[str], rounds: int, target: object) -> list[str]:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.build import load_graph
    from shuffletvm.pipeline import lower_for_tuning
    from shuffletvm.schedules import packed_conv1x1 as rule
    from shuffletvm.schedules._common import vector_lanes
    from shuffletvm.tvm_compat import KERNEL_CALL_OPS, op_calls

    rows = []
    for model in models:
        mod = lower_for_tuning(load_graph(model, 1).mod, target)
        calls = [c.args[0].name_hint for c in op_calls(mod) if c.op.name in KERNEL_CALL_OPS]
        for name in sorted({n for n in calls if "packed" in n}):
            func = mod[name]
            rng = np.random.default_rng(0)
            args = [rng.standard_normal([int(s) for s in a.shape]).astype(np.float32)
                    for a in ArgInfo.from_prim_func(func)]
            data, weight = args[0].shape, args[1].shape
            groups, plane = data[1] // weight[1], data[2] * data[3]
            short = rule.short_tile(vector_lanes(target), weight[1], weight[0] // groups, plane, groups)
            if short is None:
                continue
            before, now = rule_against(rule, "short_tile", lambda *_a: None, func, target, args, rounds)
            rows.append(f"| {model} | {conv1x1_label(data, weight)} @{data[2]}x{data[3]}, "
                        f"{weight[1]} deep | {calls.count(name)} | {short[0]} x {short[1]} | {before:.1f} | "
                        f"{now:.1f} | {now / before:.2f}x |")
    return rows


def layout_rows(models: list[str], rounds: int) -> list[str]:
    from shuffletvm.passes import pack_conv1x1_weights as policy

    rows = []
    for model in models:
        saved = dict(policy.SHORT_MAX_PLANE)
        policy.SHORT_MAX_PLANE.clear()
        try:
            nchw, target = scheduled_module(model, 1, tuned=False)
        finally:
            policy.SHORT_MAX_PLANE.update(saved)
        packed, _ = scheduled_module(model, 1, tuned=False)
        builds = {label: [k for k in kernel_timers(mod, target) if _is_28x28_1x1(k.args)]
                  for label, mod in (("NCHW", nchw), ("as built", packed))}
        for _ in range(rounds):
            for kernels in builds.values():
                for k in kernels:
                    k.times.append(k.evaluator(*k.args).median * 1e6)
        by_shape = {label: {conv1x1_label(k.args[0].shape, k.args[1].shape): k for k in kernels}
                    for label, kernels in builds.items()}
        for shape, old in by_shape["NCHW"].items():
            new = by_shape["as built"].get(shape)
            if new is not None:
                layout = "packed" if len(new.args[1].shape) == 3 else "NCHW"
                rows.append(f"| {model} | {shape} | {old.calls} | {layout} | {old.us:.1f} | {new.us:.1f} | "
                            f"{new.us / old.us:.2f}x |")
    return rows


def _is_28x28_1x1(args: list) -> bool:
    if len(args) < 3 or len(args[0].shape) != 4 or args[0].shape[2] != 28 or args[-1].shape[2] != 28:
        return False
    weight = args[1].shape
    return len(weight) == 3 or (len(weight) == 4 and tuple(weight[2:]) == (1, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--models", nargs="+", default=["shufflenet_v1_g3_x1_0", "shufflenet_v1_g8_x1_0"])
    args = parser.parse_args()

    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.targets import resolve_target

    set_thread_env(2)
    target = resolve_target("x86").tvm_target()
    print(f"`{target.attrs.get('mcpu', '')}`, 2 threads, hand schedules, medians of {args.rounds} interleaved rounds "
          "of 20 runs (us)\n")
    print("| model | conv | calls | short tile | tile rule | short tile | ratio |\n|---|---|---:|---|---:|---:|---:|")
    print("\n".join(tile_rows(args.models, args.rounds, target)))
    print("\n| model | 28x28 conv | calls | as built | NCHW | as built | ratio |\n|---|---|---:|---|---:|---:|---:|")
    print("\n".join(layout_rows(args.models, args.rounds)))


if __name__ == "__main__":
    main()
