"""Where each kernel's hand schedule ranks among its tuning log's records: the log's best time, and the rank and
time of the record that is the hand schedule as it is now (none: the log does not hold it; `shuffletvm tune
--remeasure N` measures it beside the best N records).

    python benchmarks/hand_rank.py MODEL [MODEL ...] [--batch 1] [--log-dir ROOT]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--log-dir", type=Path, help="tuning log root (default: tuning_logs/)")
    args = parser.parse_args()

    from shuffletvm.targets import resolve_target
    from shuffletvm.tuning.database import open_log
    from shuffletvm.tuning.seeds import _trace_text, hand_schedule
    from shuffletvm.tuning.tasks import model_tasks, records_for

    target = resolve_target("x86")
    tvm_target = target.tvm_target()
    log = open_log(target, args.log_dir, create=False)
    database = log.database()
    print(f"{log.path}, batch {args.batch}\n\n| kernel | records | best us | hand schedule's rank | its us |\n"
          "|---|---:|---:|---:|---:|")
    for task in model_tasks(args.models, args.batch, tvm_target):
        records = records_for(task, database)
        found = hand_schedule(task, tvm_target)
        if not task.compute or not records or found is None:
            continue
        hand = _trace_text(found[1].trace)
        rank = next((i for i, r in enumerate(records) if _trace_text(r.trace) == hand), None)
        best = float(records[0].run_secs[0]) * 1e6
        rest = "- | -" if rank is None else f"{rank} | {float(records[rank].run_secs[0]) * 1e6:.1f}"
        print(f"| {task.name} | {len(records)} | {best:.1f} | {rest} |")


if __name__ == "__main__":
    main()
