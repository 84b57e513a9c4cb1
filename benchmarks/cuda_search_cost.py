"""What one MetaSchedule search batch costs on the host for CUDA kernels, without a GPU: per kernel, the
evolutionary search's candidate generation (its first batch: sampling, 4 evolve iterations, VerifyGPUCode) and
the tuner's builder (nvcc in the builders, export_cuda). Their sum over the kernels is the warm-up before the
first measured result of `shuffletvm tune --target cuda` (every kernel's first batch is generated before any
is joined; tuning/progress.py).

    python benchmarks/cuda_search_cost.py shufflenet_v2_x1_0 --kernels 4
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="shufflenet_v2_x1_0")
    parser.add_argument("--kernels", type=int, default=4, help="the heaviest N compute kernels (default 4)")
    parser.add_argument("--cuda-arch", default="sm_90")
    parser.add_argument("--trials-per-iter", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from tvm.s_tir import meta_schedule as ms

    from shuffletvm.targets import TargetOptions, resolve_target
    from shuffletvm.tuning.tasks import model_tasks
    from shuffletvm.tuning.tune import builder_and_runner

    cuda = resolve_target("cuda", TargetOptions(cuda_arch=args.cuda_arch))
    target = cuda.tvm_target()
    tasks = [t for t in model_tasks([args.model], 1, target) if t.compute]
    work = tempfile.mkdtemp(prefix="shuffletvm-cuda-cost-")
    builder, _runner = builder_and_runner(cuda, None, None, 60, work)
    rows = []
    try:
        for task in tasks[: args.kernels]:
            context = ms.TuneContext(mod=task.extracted.dispatched[0], target=target,
                                     space_generator="post-order-apply", search_strategy="evolutionary",
                                     task_name=task.name, rand_state=0, num_threads="physical",
                                     logger=logging.getLogger("cuda_search_cost"))
            started = time.perf_counter()
            spaces = context.generate_design_space()
            context.search_strategy.pre_tuning(
                max_trials=64, num_trials_per_iter=args.trials_per_iter, design_spaces=spaces,
                database=ms.database.MemoryDatabase(), cost_model=ms.CostModel.create("xgb"))
            candidates = context.search_strategy.generate_measure_candidates() or []
            generate_s = time.perf_counter() - started
            inputs = [ms.builder.BuilderInput(c.sch.mod, target) for c in candidates]
            if not rows:  # the builders' first batch also starts them and imports TVM there: not timed
                builder.build(inputs)
                shutil.rmtree(os.path.join(work, "cuda"))  # its fatbins: the timed batch compiles them again
            started = time.perf_counter()
            results = builder.build(inputs)
            build_s = time.perf_counter() - started
            failed = sum(r.error_msg is not None for r in results)
            rows.append((task.name, len(candidates), generate_s, build_s, failed))
    finally:
        builder.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.model} on {args.cuda_arch}, host: {os.cpu_count()} CPUs; {len(tasks)} compute kernels\n")
    print("| kernel | candidates | generate s | build s (nvcc) | build failures |")
    print("|---|---:|---:|---:|---:|")
    for name, count, gen, build, failed in rows:
        print(f"| {name} | {count} | {gen:.1f} | {build:.1f} | {failed} |")
    gen = sum(r[2] for r in rows) / len(rows)
    build = sum(r[3] for r in rows) / len(rows)
    print(f"\nmean per kernel: generate {gen:.1f} s, build {build:.1f} s; warm-up for {len(tasks)} kernels "
          f"about {len(tasks) * (gen + build) / 60:.1f} min before the first result")


if __name__ == "__main__":
    main()
