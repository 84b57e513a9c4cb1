"""How long one runtime's threads hold the cores after its turn: `compare` measures runtimes in interleaved rounds
and does not time the first run of each turn. Here, after a few runs of runtime A, runtime B's next runs are timed
one by one (medians over rounds, per position): where B's first run is slow and the others are not, one untimed
run is enough.

    python benchmarks/turn_overlap.py [--model shufflenet_v1_g8_x1_0] [--rounds 25]

Session 30 on the Zen 3 class (2 threads, V1 g8), two runs: tvm-tuned's first run after ONNX Runtime's took 42
and 44 ms (its later ones 3.0-3.3 and 5.2-5.7 ms, tvm-tuned after itself 5.5): ONNX Runtime's pool spins after each
run, and TVM's pool waits for a worker that shares a core with the spinning thread. ONNX Runtime's first run after
TVM's: 3.67 and 4.31 ms, then 3.0-3.5 and 3.8-3.9.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shufflenet_v1_g8_x1_0")
    parser.add_argument("--runtimes", nargs=2, default=["tvm-tuned", "onnxruntime"])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from shuffletvm.bench.runtimes import RUNTIMES, Context, set_thread_env
    from shuffletvm.models.registry import create_model
    from shuffletvm.runtime import aligned_array

    set_thread_env(args.threads)
    x = aligned_array(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(create_model(args.model), args.model, x, args.threads, Path(tmp), "x86", None)
        ready = {name: RUNTIMES[name][0](ctx) for name in args.runtimes}
        for runtime in ready.values():
            for _ in range(10):
                runtime.run(x)
        a, b = args.runtimes
        for first, second in ((a, b), (b, a), (a, a), (b, b)):
            positions: list[list[float]] = [[] for _ in range(8)]
            for _ in range(args.rounds):
                for _ in range(5):
                    ready[first].run(x)
                for times in positions:
                    start = time.perf_counter()
                    ready[second].run(x)
                    times.append(1e3 * (time.perf_counter() - start))
            print(f"{second} after {first}, ms by run: " + " ".join(f"{np.median(t):.2f}" for t in positions))


if __name__ == "__main__":
    main()
