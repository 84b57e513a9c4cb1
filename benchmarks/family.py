"""Every zoo model at batch 1 against the vendor runtimes, as a user gets it without tuning it: `shuffletvm
compare MODEL --runtimes tvm-tuned tvm-hand onnxruntime openvino-fp32` for each, one markdown row a model. The
tuned row uses this machine's shipped log, which covers the benchmarked models' kernels (RESULTS*.md) and only
the kernels other models share with them; "hand" is shuffletvm's passes and hand-written schedules alone.
Each model is its own `compare` run (interleaved rounds within it): compare ratios, not milliseconds, across rows.

    python benchmarks/family.py [--family v1|v2] [--rounds 5] [--runs 8]
"""

from __future__ import annotations

import argparse
import time

from shuffletvm.bench.compare import CompareConfig, RuntimeRow, compare
from shuffletvm.models.registry import MODELS, model_cost

RUNTIMES = ["tvm-tuned", "tvm-hand", "onnxruntime", "openvino-fp32"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["v1", "v2"], default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for name, spec in MODELS.items():
        if args.family and spec.family != args.family:
            continue
        report = compare(CompareConfig(model=name, runtimes=RUNTIMES, rounds=args.rounds, runs_per_round=args.runs))
        by_name = {r.runtime: r for r in report.rows}
        best = report.best_vendor()
        tuned, hand = by_name["tvm-tuned"], by_name["tvm-hand"]
        macs = model_cost(spec.build()).macs / 1e6
        logged = tuned.note.split(" kernels")[0] if tuned.median_ms else "0"
        rows.append(f"| {name} | {macs:.0f} | {_ms(hand)} | {_ms(tuned)} | {logged} | {best.runtime} "
                    f"{best.median_ms:.2f} | {_ratio(hand, best)} | {_ratio(tuned, best)} |")
    print("| model | MMACs | TVM hand ms | TVM tuned ms | kernels from the log | best fp32 vendor ms | "
          "hand / vendor | tuned / vendor |")
    print("|---|---:|---:|---:|---|---|---:|---:|")
    print("\n".join(rows))
    print(f"\nMeasured in {time.perf_counter() - started:.0f} s.")


def _ms(row: RuntimeRow) -> str:
    return f"{row.median_ms:.2f}" if row.median_ms else "-"


def _ratio(row: RuntimeRow, best: RuntimeRow | None) -> str:
    return f"{row.median_ms / best.median_ms:.2f}x" if row.median_ms and best else "-"


if __name__ == "__main__":
    main()
