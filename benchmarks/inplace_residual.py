"""Would V1's residual kernels gain from writing their output over their residual input? A built module's kernel
sequence replayed two ways in interleaved rounds: as built, and with every packed conv + bias + residual add + ReLU
kernel writing into its residual input's buffer (every later read of its output aliased to that buffer), so no
output line is fetched before it is written. The logits of the two replays are compared.

    python benchmarks/inplace_residual.py MODULE.so [--rounds 20]

Session 30 on the Zen 3 class (modules from `shuffletvm build MODEL -o M.so`), logits identical: V1 g8 0.970-1.010x
(median 0.976x, five runs), V1 g3 1.004-1.057x (three runs). Not worth an in-place pass yet.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import numpy as np

from shuffletvm.bench.sequence import kernel_calls


def residual_in_place(calls: list[tuple[str, Any, list[Any]]]) -> list[tuple[str, Any, list[Any]]]:
    """The calls with each residual kernel's output argument replaced by its residual input, and every later
    argument that held that output replaced too, until the memory plan writes a new value into its storage."""
    alias: dict[tuple[int, tuple[int, ...]], Any] = {}
    rewritten = []
    for name, func, args in calls:
        alias.pop((args[-1].data_ptr(), tuple(args[-1].shape)), None)  # storage reused: a new value lives there
        args = [alias.get((a.data_ptr(), tuple(a.shape)), a) if hasattr(a, "data_ptr") else a for a in args]
        if "packed" in name and name.count("_add") >= 2 and "relu" in name:
            residual, output = args[-2], args[-1]
            if tuple(residual.shape) == tuple(output.shape):
                alias[(output.data_ptr(), tuple(output.shape))] = residual
                args = [*args[:-1], residual]
        rewritten.append((name, func, args))
    return rewritten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    from shuffletvm import runtime

    model = runtime.load(args.module)
    x = np.random.default_rng(0).random(model.input_shape, dtype=np.float32)
    built = kernel_calls(model, x)
    sequences = {"as built": built, "in place": residual_in_place(built)}
    totals: dict[str, list[float]] = defaultdict(list)
    for r in range(args.rounds):
        for label in sequences if r % 2 == 0 else list(sequences)[::-1]:
            for _ in range(5):
                start = time.perf_counter()
                for _name, func, call_args in sequences[label]:
                    func(*call_args)
                totals[label].append(time.perf_counter() - start)
    before, after = (float(np.median(totals[k])) * 1e3 for k in sequences)
    logits = [seq[-1][2][-1].numpy() for seq in sequences.values()]
    print(f"{args.module}: kernel sequence {before:.3f} ms as built, {after:.3f} ms with residuals in place "
          f"({after / before:.3f}x); logits differ by at most {float(np.abs(logits[0] - logits[1]).max()):.1e}")


if __name__ == "__main__":
    main()
