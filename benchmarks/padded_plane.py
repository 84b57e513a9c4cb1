"""A packed 1x1 conv computed over its plane padded to whole register tiles (passes/pack_conv1x1_weights.py
`tile_pixels`, AVX2's 4 x 3 tile on 7x7: 51 pixels) against the same conv with its last tile predicated, one kernel
at a time, hand schedules, interleaved rounds, outputs compared.

    python benchmarks/padded_plane.py [--rounds 25] [--models shufflenet_v2_x1_0 ...] [--log-dir ROOT] [--every]

With `--log-dir`, a third column: the predicated kernels as that tuning log schedules them (a copy of the log taken
before the padding changed these kernels' workloads), what the padded hand schedule replaces in a tuned build.

The host's own target: on an AVX-512 host every tile divides the plane and nothing is padded.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from kernel_profile import conv1x1_label, kernel_calls, scheduled_module  # benchmarks/, beside this script

MODELS = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "shufflenet_v1_g8_x1_0"]


@contextmanager
def _policy(pad: bool, every: bool) -> Iterator[None]:
    from shuffletvm.passes import pack_conv1x1_weights as policy

    policy.PAD_TO_TILES, policy.PAD_EVEN_SHUFFLES = pad, every
    try:
        yield
    finally:
        policy.PAD_TO_TILES, policy.PAD_EVEN_SHUFFLES = True, False


def rows(model: str, rounds: int, runs: int, log_root: Path | None, every: bool = False) -> list[str]:
    import tvm
    import tvm.runtime
    import tvm_ffi
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    builds = {}  # label -> scheduled module; the padded build last
    for label, pad, tuned in (("predicated", False, False), ("predicated, tuned", False, True),
                              ("padded", True, False)):
        if tuned and log_root is None:
            continue
        with _policy(pad, every):
            builds[label], target = scheduled_module(model, 1, tuned=tuned, log_root=log_root)
    kernels = {label: {_shape(mod[name]): (name, calls) for name, calls in kernel_calls(mod).items()
                       if "packed" in name} for label, mod in builds.items()}
    out = []
    for shape, (_name, calls) in kernels["padded"].items():
        if any(shape not in k for k in kernels.values()):
            continue
        funcs = [builds[label][k[shape][0]] for label, k in kernels.items()]
        if tvm_ffi.structural_equal(funcs[0], funcs[-1]):  # both hand-scheduled: the same kernel, not padded
            continue
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal([int(s) for s in a.shape]).astype(np.float32)
                  for a in ArgInfo.from_prim_func(funcs[0])]
        timers, outputs = [], []
        for func in funcs:
            lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target).jit()
            args = [tvm.runtime.tensor(a) for a in arrays]
            lib["main"](*args)
            outputs.append(args[-1].numpy())
            timers.append(lib.time_evaluator("main", tvm.cpu(), number=runs, repeat=1))
        np.testing.assert_array_equal(outputs[0], outputs[-1])  # the same products in the same order
        for other in outputs[1:-1]:  # a tuned schedule may sum in another order
            np.testing.assert_allclose(other, outputs[0], rtol=1e-4, atol=1e-4 * np.abs(outputs[0]).max())
        times: list[list[float]] = [[] for _ in timers]
        for _ in range(rounds):
            args = [tvm.runtime.tensor(a) for a in arrays]
            for timer, got in zip(timers, times, strict=True):
                got.append(timer(*args).median * 1e6)
        medians = [float(np.median(t)) for t in times]
        out.append(f"| {model} | {shape} | {calls} | " + " | ".join(f"{m:.1f}" for m in medians)
                   + f" | {medians[-1] / medians[0]:.2f}x |"
                   + (f" {medians[-1] / medians[1]:.2f}x |" if len(medians) == 3 else ""))
    return out


def _shape(func: object) -> str:
    """A packed conv's channels (from its weight), groups and plane."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    data, weight = ([int(s) for s in a.shape] for a in ArgInfo.from_prim_func(func)[:2])
    return f"{conv1x1_label(data, weight)} @{data[2]}x{data[3]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--runs", type=int, default=20, help="runs per timing")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--log-dir", type=Path, help="also the predicated kernels as this tuning log root schedules "
                        "them (a log from before the padding, e.g. a copy of tuning_logs/)")
    parser.add_argument("--every", action="store_true", help="pad every conv the tile does not divide, as measured "
                        "before padding was kept to uneven shuffles (pack_conv1x1_weights.py PAD_EVEN_SHUFFLES)")
    args = parser.parse_args()

    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.targets import resolve_target

    set_thread_env(2)
    target = resolve_target("x86").tvm_target()
    print(f"`{target.attrs.get('mcpu', '')}`, 2 threads, hand schedules, medians of {args.rounds} interleaved rounds "
          f"of {args.runs} runs (us), outputs identical\n")
    tuned = " predicated, tuned |" if args.log_dir else ""
    print(f"| model | packed conv | calls | predicated |{tuned} padded | padded / predicated |"
          + (" padded / tuned |" if args.log_dir else "") + "\n|---|---|---:|" + "---:|" * (3 + 2 * bool(args.log_dir)))
    for model in args.models:
        print("\n".join(rows(model, args.rounds, args.runs, args.log_dir, args.every)), flush=True)


if __name__ == "__main__":
    main()
