"""A built model's kernels replayed call by call, as the running model calls them.

Each kernel call of one inference is recorded with the VM's instrument hook (its function and its argument
tensors, as memory planning placed them); replaying the sequence times every call with the cache state the
calls before it left ("in sequence"), and again right after itself ("warm"). Per-kernel tuning measures the
warm time; the difference is what a kernel pays for where its inputs are (another core's cache, L3, memory).
Used by `shuffletvm choose` (tuning/in_model.py) and benchmarks/sequence_profile.py.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np

Call = tuple[str, Any, list[Any]]  # kernel name, function, arguments


def kernel_calls(model: Any, x: np.ndarray) -> list[Call]:
    """(kernel name, function, arguments) of every kernel call of one inference of `model` (a DeployedModel).
    Only that inference is recorded: the hook stays on the VM but records nothing after it."""
    calls: list[Call] = []
    recording = True

    def record(func: Any, name: str, before: bool, _ret: Any, *args: Any) -> int:
        if recording and before and not name.startswith("vm."):  # not the VM's builtins (allocation, tuples)
            calls.append((name, func, list(args)))
        return 0

    model.run(x)
    model._vm.set_instrument(record)
    model.run(x)
    recording = False
    return calls


def replay(calls: dict[str, list[Call]], rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Median seconds per call of each build's sequence: in sequence, and warm (the call repeated at once). The
    builds take turns round by round, so a shared machine's drift weighs on both alike."""
    clock = time.perf_counter
    in_sequence = {label: defaultdict(list) for label in calls}
    warm = {label: defaultdict(list) for label in calls}
    for _ in range(rounds):
        for label, sequence in calls.items():
            for i, (_name, func, args) in enumerate(sequence):
                start = clock()
                func(*args)
                in_sequence[label][i].append(clock() - start)
            for i, (_name, func, args) in enumerate(sequence):
                func(*args)
                start = clock()
                func(*args)
                warm[label][i].append(clock() - start)
    return {label: ([float(np.median(in_sequence[label][i])) for i in range(len(sequence))],
                    [float(np.median(warm[label][i])) for i in range(len(sequence))])
            for label, sequence in calls.items()}
