"""Prunes the shipped x86 tuning log to what builds of the benchmarked models use: their kernels only (and the
plain convs KeepIdentityInPlace's convs are seeded from), the `--keep` fastest records each (default 16). Run
after tuning, before committing the log. It measures nothing, so another machine class's log can be pruned from
any machine: `--mcpu znver3 --num-cores 2` prunes `tuning_logs/x86-znver3-2c` (default: this machine's).
`--restore REGEX --from LOG_ROOT`: the kernels whose names match take their records from the same target's log
under LOG_ROOT instead (a copy of `tuning_logs/` taken before a run whose new records of them were slower in the
built model: `benchmarks/kernel_profile.py MODEL --against LOG_ROOT` shows which).

    python benchmarks/prune_shipped_log.py [--keep 16] [--mcpu CPU --num-cores N] [--restore REGEX --from DIR]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import tvm_ffi
from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

from shuffletvm.errors import ShuffleTVMError
from shuffletvm.targets import TargetOptions, resolve_target
from shuffletvm.tuning.database import open_log, prune_log
from shuffletvm.tuning.seeds import plain_twin
from shuffletvm.tuning.tasks import model_tasks

SHIPPED = [(("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "shufflenet_v1_g8_x1_0"), 1),
           (("shufflenet_v2_x1_0",), 8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=int, default=16)
    parser.add_argument("--mcpu", help="the log's machine class (LLVM cpu name); default: this machine's")
    parser.add_argument("--num-cores", type=int, help="the log's cores; default: this machine's")
    parser.add_argument("--restore", metavar="REGEX", help="kernels (names, as `tune --kernels`) whose records "
                        "to take from --from's log instead")
    parser.add_argument("--from", dest="source", type=Path, metavar="LOG_ROOT",
                        help="the tuning log root to restore from")
    args = parser.parse_args()
    if (args.restore is None) != (args.source is None):
        parser.error("--restore and --from go together")
    target = resolve_target("x86", TargetOptions(mcpu=args.mcpu, num_cores=args.num_cores))
    tvm_target = target.tvm_target()
    tasks = [task for models, batch in SHIPPED for task in model_tasks(list(models), batch, tvm_target)]
    kernels = [(task.name, int(tvm_ffi.structural_hash(task.extracted.dispatched[0]))) for task in tasks]
    live = {key for _name, key in kernels}
    # and the plain convs KeepIdentityInPlace's convs replace: a retune seeds them from these (tuning/seeds.py)
    for task in tasks:
        twin = plain_twin(task.extracted.dispatched[0]["main"], tvm_target)
        if twin is not None:
            live.add(int(tvm_ffi.structural_hash(_normalize_mod(twin))))
    restore = None
    try:
        log = open_log(target)
        if args.restore is not None:
            restored = {key for name, key in kernels if re.search(args.restore, name)}
            if not restored:
                parser.error(f"no kernel of the shipped models matches --restore {args.restore!r}")
            restore = (open_log(target, args.source, create=False), restored)
            print(f"restoring the records of {len(restored)} kernels from {restore[0].path}")
        result = prune_log(log, args.keep, live, restore)
    except ShuffleTVMError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{log.path}: {result.records_before} -> {result.records_after} records, "
          f"{result.workloads_before} -> {result.workloads_after} kernels (kept {args.keep} per kernel)")


if __name__ == "__main__":
    main()
