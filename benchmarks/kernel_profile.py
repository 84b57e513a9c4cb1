"""Warm per-kernel profile of a built model: every TensorIR kernel of the module exactly as `build` schedules it
(tuning record, else hand-written schedule, else fallback), compiled on its own and timed warm (its inputs
already in cache, as in a running model), times the number of calls. The kernel sum next to the end-to-end
time shows what the VM adds between kernels. (TVM 0.27's runtime VM has no per-kernel profiler; the tuning
log's records are measured cold, which overstates weight-heavy kernels.)

    python benchmarks/kernel_profile.py shufflenet_v2_x1_0 [--batch 8] [--top 12] [--rounds 5]
        [--against OTHER_LOG_ROOT]   # the same model built with another tuning log, timed interleaved with it
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kernels import _arg  # benchmarks/kernels.py, beside this script


@dataclass
class KernelTime:
    name: str
    calls: int
    evaluator: Any
    args: list[Any]
    times: list[float] = field(default_factory=list)

    @property
    def us(self) -> float:
        return float(np.median(self.times))


def scheduled_module(model: str, batch: int, target_name: str = "x86", tuned: bool = True,
                     log_root: Path | None = None) -> tuple[Any, Any]:
    """The model's module after the `schedule` phase (the kernels `build` compiles) and the TVM target; the
    tuning log under `log_root` (default: tuning_logs/)."""
    from shuffletvm.build import load_graph
    from shuffletvm.pipeline import PipelineOptions, run_phases
    from shuffletvm.targets import resolve_target
    from shuffletvm.tuning.database import open_log

    target = resolve_target(target_name)
    tvm_target = target.tvm_target()
    log = open_log(target, log_root, create=False)
    database = log.database() if tuned and log.records else None
    *_, (_phase, scheduled) = run_phases(load_graph(model, batch).mod, tvm_target, PipelineOptions(database=database),
                                         until="schedule")
    return scheduled, tvm_target


def kernel_calls(mod: Any) -> Counter:
    from shuffletvm.tvm_compat import KERNEL_CALL_OPS, op_calls

    return Counter(call.args[0].name_hint for call in op_calls(mod) if call.op.name in KERNEL_CALL_OPS)


def conv1x1_label(data: Any, weight: Any) -> str:
    """'C -> O gG' for a 1x1 conv kernel from its data and weight shapes, the weight OIHW or packed ([O/B, Cg, B])."""
    out = weight[0] * weight[2] if len(weight) == 3 else weight[0]
    return f"{data[1]} -> {out} g{data[1] // weight[1]}"


def kernel_timers(mod: Any, target: Any, number: int = 20) -> list[KernelTime]:
    import tvm
    import tvm.runtime
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(0)
    rows = []
    for name, calls in kernel_calls(mod).items():
        func = mod[name]
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target).jit()
        args = [tvm.runtime.tensor(_arg([int(s) for s in a.shape], str(a.dtype), rng))
                for a in ArgInfo.from_prim_func(func)]
        rows.append(KernelTime(name, calls, lib.time_evaluator("main", tvm.cpu(), number=number, repeat=1), args))
    return rows


def measure(rows: list[KernelTime], rounds: int) -> None:
    for _ in range(rounds):
        for row in rows:
            row.times.append(row.evaluator(*row.args).median * 1e6)


def table(rows: list[KernelTime], top: int) -> list[str]:
    total = sum(r.us * r.calls for r in rows)
    lines = [f"Kernel time {total / 1e3:.2f} ms (sum over calls of each kernel's warm median, {len(rows)} kernels):",
             "", "| kernel | calls | us / call | us (all calls) | share |", "|---|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: -r.us * r.calls)[:top]:
        lines.append(f"| {row.name} | {row.calls} | {row.us:.1f} | {row.us * row.calls:.0f} | "
                     f"{row.us * row.calls / total:.0%} |")
    return lines


def profile(model: str, batch: int, rounds: int = 5, top: int = 12) -> list[str]:
    mod, target = scheduled_module(model, batch)
    rows = kernel_timers(mod, target)
    measure(rows, rounds)
    return table(rows, top)


def against(model: str, batch: int, other_root: Path, rounds: int = 5) -> list[str]:
    """Kernel time with the tuning log in tuning_logs/ vs with the one under `other_root`, both modules' kernels
    timed in interleaved rounds; the kernels whose time differs by more than 10%."""
    this = kernel_timers(*scheduled_module(model, batch))
    other = kernel_timers(*scheduled_module(model, batch, log_root=other_root))
    for _ in range(rounds):
        measure(this, 1)
        measure(other, 1)
    total_this, total_other = (sum(r.us * r.calls for r in rows) for rows in (this, other))
    lines = [f"Kernel time {total_this / 1e3:.2f} ms with tuning_logs/, {total_other / 1e3:.2f} ms with {other_root} "
             f"({total_this / total_other:.2f}x); kernels that differ by more than 10%:", "",
             f"| kernel | calls | us / call, tuning_logs/ | us / call, {other_root} |", "|---|---:|---:|---:|"]
    for mine, theirs in zip(this, other, strict=True):
        if abs(mine.us - theirs.us) > 0.1 * theirs.us:
            lines.append(f"| {mine.name} | {mine.calls} | {mine.us:.1f} | {theirs.us:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--against", type=Path, metavar="LOG_ROOT", help="compare with the tuning log under LOG_ROOT")
    args = parser.parse_args()
    from shuffletvm.bench.runtimes import set_thread_env
    from shuffletvm.targets import resolve_target

    set_thread_env(int(resolve_target("x86").spec["num-cores"]))
    started = time.perf_counter()
    lines = (against(args.model, args.batch, args.against, args.rounds) if args.against
             else profile(args.model, args.batch, args.rounds, args.top))
    print(f"{args.model}, batch {args.batch}: " + "\n".join(lines))
    print(f"\nMeasured in {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
