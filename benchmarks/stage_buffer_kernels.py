"""KeepIdentityInPlace's stage-buffer convs, one kernel at a time: each one's hand schedule, the tuned schedule of
the plain 1x1 conv it replaces replayed on it (the seed tuning starts from, tuning/seeds.py), its own best record,
and that plain conv's best record on the plain conv itself — interleaved rounds of TVM's time_evaluator.

    python benchmarks/stage_buffer_kernels.py [--model shufflenet_v2_x1_0] [--batch 1] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from kernels import _arg, _tvm_timer  # benchmarks/kernels.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shufflenet_v2_x1_0")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from shuffletvm.bench.runtimes import set_thread_env

    set_thread_env(2)
    from shuffletvm.schedules import first_claim
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from shuffletvm.targets import resolve_target
    from shuffletvm.tuning.database import open_log
    from shuffletvm.tuning.seeds import plain_twin, plain_twin_schedule
    from shuffletvm.tuning.tasks import model_tasks

    target = resolve_target("x86")
    tvm_target = target.tvm_target()
    database = open_log(target, create=False).database()
    rng = np.random.default_rng(0)
    timers: dict[tuple[str, str], object] = {}
    for task in model_tasks([args.model], args.batch, tvm_target):
        func = task.extracted.dispatched[0]["main"]
        twin = plain_twin(func, tvm_target)
        if twin is None:
            continue
        operands = [_arg([int(s) for s in a.shape], str(a.dtype), rng) for a in ArgInfo.from_prim_func(func)]
        plain_operands = [_arg([int(s) for s in a.shape], str(a.dtype), rng) for a in ArgInfo.from_prim_func(twin)]
        schedules = {"hand": first_claim(func, tvm_target)[1], "plain record replayed": plain_twin_schedule(
            task, database, tvm_target), "own record": database.query_schedule(task.extracted.dispatched[0],
                                                                                tvm_target, task.name)}
        for column, sch in schedules.items():
            if sch is not None:
                timers[task.name, column] = _tvm_timer(sch.mod["main"], tvm_target, operands)
        plain = database.query_schedule(_normalize_mod(twin), tvm_target, task.name)
        if plain is not None:
            timers[task.name, "plain conv, its record"] = _tvm_timer(plain.mod["main"], tvm_target, plain_operands)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
    for _ in range(args.rounds):
        for key, timer in timers.items():
            times[key].append(timer())
    columns = ["hand", "plain record replayed", "own record", "plain conv, its record"]
    names = sorted({name for name, _ in timers})
    print(f"{args.model}, batch {args.batch}: medians of {args.rounds} rounds, us\n")
    print("| kernel | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        cells = [f"{statistics.median(times[name, c]):.1f}" if (name, c) in times else "-" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
