"""Which weight layout wins for the 1x1 convs, per x86 vector width: NCHW weights (schedules/grouped_conv1x1.py,
vectorized over pixels) vs weights pre-packed in output-channel blocks (kernels/packed_conv1x1.py +
schedules/packed_conv1x1.py, vectorized over output channels). Hand schedules both, one kernel at a time
(no epilogue), batch 1, the 7x7 and 14x14 1x1 convs of V2 1.0x and V1 g3 1.0x. Each target's variants are
measured interleaved, medians of the rounds. AVX2 runs as AVX2 code on this (AVX-512) CPU. "padded": an
ungrouped conv's channels rounded up to whole registers (232 -> 240), its crop block writing the real ones.
The policy this decides is `passes/pack_conv1x1_weights.py` (MAX_PLANE, MIN_BLOCK, `weight_block`).

    python benchmarks/layout.py [--rounds 10] [--out benchmarks/LAYOUT.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
# (label, in, out, conv groups, shuffle groups read through, plane side)
SHAPES = [
    ("V2 1.0x conv5 (reads the last shuffle)", 464, 1024, 1, 2, 7),
    ("V2 1.0x stage 4 1x1", 232, 232, 1, 1, 7),
    ("V2 1.0x stage 3 1x1", 116, 116, 1, 1, 14),
    ("V1 g3 1.0x stage 4 first GConv", 960, 240, 3, 1, 7),
    ("V1 g3 1.0x stage 4 second GConv (reads the shuffle)", 240, 960, 3, 3, 7),
    ("V1 g3 1.0x stage 3 first GConv", 480, 120, 3, 1, 14),
    ("V1 g3 1.0x stage 3 second GConv (reads the shuffle)", 120, 480, 3, 3, 14),
]
TARGETS = {"AVX-512": None, "AVX2": "haswell"}


def _timer(sch, target, args: list[np.ndarray]):
    import tvm
    import tvm.runtime

    lib = tvm.compile(sch.mod, target=target).jit()
    tensors = [tvm.runtime.tensor(a) for a in args]
    evaluator = lib.time_evaluator("main", tvm.cpu(), number=50, repeat=1)
    return lambda: evaluator(*tensors).median * 1e6, lambda: (lib["main"](*tensors), tensors[-1].numpy())[1]


def variants(shape: tuple, target) -> dict[str, tuple]:
    """name -> (timer, result) of the NCHW and of every packed block width the target's policy could pick."""
    from shuffletvm.schedules import grouped_conv1x1
    from shuffletvm.schedules import packed_conv1x1 as packed_rule
    from shuffletvm.schedules._common import vector_lanes

    from shuffletvm.kernels.packed_conv1x1 import PackedConv1x1Spec, pack_weight, packed_conv1x1
    from shuffletvm.kernels.shuffled_group_conv import ShuffledGroupConvSpec, shuffled_group_conv
    from shuffletvm.passes.pack_conv1x1_weights import MIN_BLOCK

    _, cin, cout, groups, shuffle, side = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, cin, side, side)).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups, 1, 1)).astype(np.float32)
    out = np.zeros((1, cout, side, side), np.float32)
    found = {}
    nchw = shuffled_group_conv(ShuffledGroupConvSpec(1, cin, cout, side, side, groups, shuffle))
    found["NCHW"] = _timer(grouped_conv1x1.schedule(_main(nchw), target), target, [x, w, out])
    lanes = vector_lanes(target)
    for block in (lanes, lanes // 2):
        padded_ok = block == lanes and groups == 1 and lanes // 2 >= MIN_BLOCK and cout % (lanes // 2) == 0
        if block < MIN_BLOCK or (cout // groups) % block and not padded_ok:
            continue
        func = packed_conv1x1(PackedConv1x1Spec(1, cin, cout, side, side, groups, shuffle, block=block))
        padded = " padded" if cout % block else ""
        found[f"packed B{block}{padded}"] = _timer(packed_rule.schedule(_main(func), target), target,
                                                   [x, pack_weight(w, block), out.copy()])
    return found


def _main(func):
    return func.with_attr("global_symbol", "main")


def main() -> None:
    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.fileio import write_text_atomic
    from shuffletvm.targets import TargetOptions, resolve_target

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "LAYOUT.md")
    args = parser.parse_args()
    threads = int(resolve_target("x86").spec["num-cores"])
    set_thread_env(threads)
    started = time.perf_counter()
    rows = []
    for label, mcpu in TARGETS.items():
        target = resolve_target("x86", TargetOptions(mcpu=mcpu) if mcpu else None).tvm_target()
        for shape in SHAPES:
            found = variants(shape, target)
            reference = found["NCHW"][1]()
            for name, (_, result) in found.items():
                np.testing.assert_allclose(result(), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
            times = {name: [] for name in found}
            for _ in range(args.rounds):
                for name, (timer, _) in found.items():
                    times[name].append(timer())
            medians = {name: statistics.median(v) for name, v in times.items()}
            best = min(medians, key=medians.get)
            cells = " / ".join(f"{n} {t:.0f}" for n, t in medians.items())
            rows.append(f"| {label} | {shape[0]} {shape[1]}->{shape[2]}, g{shape[3]} @{shape[5]}x{shape[5]} | "
                        f"{cells} | **{best}** ({medians['NCHW'] / medians[best]:.2f}x) |")
            print(rows[-1], flush=True)
    lines = [
        "# Weight layout of the 1x1 convs: NCHW vs pre-packed output-channel blocks (x86)",
        "",
        f"Hand schedules, one kernel each, batch 1, {threads} threads; medians of {args.rounds} interleaved rounds "
        "of 50 runs, in us. AVX2 = AVX2 code on this AVX-512 CPU. Shared machine: compare within a row.",
        "",
        f"Reproduce: `python benchmarks/layout.py --rounds {args.rounds}`",
        "",
        "| target | conv | us | faster (vs NCHW) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Measured in {time.perf_counter() - started:.0f} s. Policy (passes/pack_conv1x1_weights.py, MAX_PLANE): "
        "pack 7x7 planes with AVX-512, 7x7 and 14x14 with AVX2, where a block of 16 or 8 divides the output "
        "channels per group; an ungrouped conv that half a register divides is padded to whole registers.",
    ]
    write_text_atomic("\n".join(lines) + "\n", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
