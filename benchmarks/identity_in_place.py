"""What KeepIdentityInPlace buys end to end: V2 built with and without it, hand-scheduled and tuned, timed in
interleaved rounds in one process (the machine is shared: compare within a run).

    python benchmarks/identity_in_place.py [--models shufflenet_v2_x1_0 ...] [--batch 1] [--rounds 15]
        [--out benchmarks/IN_PLACE.md]   (appends its table)

Without the pass, a V2 build keeps FuseConcatShuffleSplit's copy kernels (the pipeline before this pass).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def build_variants(model: str, batch: int, workdir: Path) -> dict[str, object]:
    import tvm

    from shuffletvm import pipeline
    from shuffletvm.build import BuildConfig, build
    from shuffletvm.runtime import load

    modules = {}
    original = pipeline.KeepIdentityInPlace
    for in_place in (False, True):
        pipeline.KeepIdentityInPlace = original if in_place else (lambda *_: tvm.transform.Sequential([]))
        for logs in (False, True):
            name = f"{'tuned' if logs else 'hand'} {'in place' if in_place else 'copies'}"
            result = build(BuildConfig(output=workdir / f"{model}_b{batch}_{name.replace(' ', '_')}.so", model=model, batch=batch,
                                       use_tuning_logs=logs))
            modules[name] = load(result.path)
            print(f"  built {name}: {result.kernels_tuned}/{result.kernels_total} kernels from the log, "
                  f"KeepIdentityInPlace {result.pass_counts.get('KeepIdentityInPlace', 0)}", flush=True)
    pipeline.KeepIdentityInPlace = original
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["shufflenet_v2_x1_0", "shufflenet_v2_x0_5"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, help="append the table (markdown) to this file")
    args = parser.parse_args()

    from shuffletvm.bench.runtimes import set_thread_env

    set_thread_env(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            print(f"{model}, batch {args.batch}", flush=True)
            modules = build_variants(model, args.batch, Path(tmp))
            x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
            outputs = {name: m.run(x) for name, m in modules.items()}
            ref = outputs["hand copies"]
            for name, out in outputs.items():
                assert np.allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max()), name
            times: dict[str, list[float]] = {name: [] for name in modules}
            for _ in range(args.rounds):
                for name, module in modules.items():
                    module.run(x)
                    start = time.perf_counter()
                    for _ in range(args.runs):
                        module.run(x)
                    times[name].append((time.perf_counter() - start) / args.runs * 1e3)
            med = {name: statistics.median(t) for name, t in times.items()}
            for kind in ("hand", "tuned"):
                before, after = med[f"{kind} copies"], med[f"{kind} in place"]
                rows.append((model, args.batch, kind, before, after, after / before))
    command = (f"python benchmarks/identity_in_place.py --models {' '.join(args.models)} --batch {args.batch} "
               f"--rounds {args.rounds} --runs {args.runs}")
    lines = [f"`{command}` (medians of interleaved rounds, 2 threads):", "",
             "| model | batch | schedules | copies ms | in place ms | in place / copies |", "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {model} | {batch} | {kind} | {before:.3f} | {after:.3f} | {ratio:.2f} |"
              for model, batch, kind, before, after, ratio in rows]
    print("\n" + "\n".join(lines))
    if args.out is not None:
        with args.out.open("a") as f:
            f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
