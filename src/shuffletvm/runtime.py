"""Load and run a built `.so` with the TVM runtime alone: no torch, no ONNX, no TVM compiler needed.

Works with `TVM_USE_RUNTIME_LIB=1` (only libtvm_runtime loaded), and under qemu on aarch64.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import tvm_compat
from .errors import ShuffleTVMError
from .fileio import atomic_output

METADATA_FUNCTION = "shuffletvm_metadata"


@dataclass
class DeployedModel:
    path: Path
    metadata: dict[str, Any]
    _vm: Any
    _device: Any

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.metadata["input_shape"])

    @property
    def input_dtype(self) -> str:
        return str(self.metadata["input_dtype"])

    def check_input(self, x: np.ndarray) -> None:
        if x.dtype != np.dtype(self.input_dtype):
            raise ShuffleTVMError(
                f"input dtype is {x.dtype}, but {self.path.name} takes {self.input_dtype}; convert it with "
                f"x.astype('{self.input_dtype}')"
            )
        if tuple(x.shape) != self.input_shape:
            raise ShuffleTVMError(
                f"input shape is {tuple(x.shape)}, but {self.path.name} takes {self.input_shape} "
                "(rebuild with --batch N for another batch size)"
            )

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's output for input `x`. On the CPU, an `x` from `aligned_array` is read where it lies; any
        other array is first copied into memory TVM allocates (V2 1.0x, 2 cores: ~0.1 ms of a 2.5 ms run)."""
        out = self._vm["main"](self._input_tensor(x))
        while not hasattr(out, "numpy"):  # the torch.export frontend returns a 1-tuple
            out = out[0]
        return out.numpy()

    def time_run(self, x: np.ndarray, repeat: int = 10, number: int = 1) -> list[float]:
        """Seconds per run, `repeat` samples of `number` runs each, with the VM's own timer."""
        self._vm.set_input("main", self._input_tensor(x))
        timer = self._vm.time_evaluator("invoke_stateful", self._device, number=number, repeat=repeat)
        return list(timer("main").results)

    def _input_tensor(self, x: np.ndarray) -> Any:
        self.check_input(x)
        if self.metadata.get("device", "cpu") == "cpu" and _aligned(x):
            return tvm_compat.view_as_tvm_tensor(x)
        return tvm_compat.to_tvm_tensor(np.ascontiguousarray(x), self._device)


def aligned_array(x: np.ndarray) -> np.ndarray:
    """A copy of `x` in memory a CPU module reads in place (C-contiguous, aligned as TVM aligns its own tensors):
    what to fill and pass to `DeployedModel.run` when the input is reused, as a deployment's input buffer is."""
    x = np.asarray(x)
    alignment = tvm_compat.TENSOR_ALIGNMENT
    raw = np.empty(x.nbytes + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def _aligned(x: np.ndarray) -> bool:
    return bool(x.flags.c_contiguous) and x.ctypes.data % tvm_compat.TENSOR_ALIGNMENT == 0


def load(path: str | Path) -> DeployedModel:
    path = Path(path)
    if not path.is_file():
        raise ShuffleTVMError(f"module '{path}' does not exist; build one with `shuffletvm build`")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise ShuffleTVMError(f"cannot read '{path}': {err.strerror}") from None
    if magic != b"\x7fELF":
        raise ShuffleTVMError(f"'{path}' is not a shared library; build one with `shuffletvm build`")
    try:
        module = tvm_compat.load_module(str(path))
    except OSError as err:  # the CUDA runtime library cannot load (no NVIDIA driver here)
        raise ShuffleTVMError(f"'{path}' needs a GPU runtime that cannot load here ({err}); run it on its device") from None
    except Exception as err:  # dlopen errors: wrong architecture, missing symbols, ...
        last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise ShuffleTVMError(f"cannot load '{path}' with the TVM runtime: {last[:200]}") from None
    try:
        vm, device = tvm_compat.make_vm(module, "cpu")
        metadata = json.loads(str(vm[METADATA_FUNCTION]()))
    except Exception:
        raise ShuffleTVMError(f"'{path}' was not built by shuffletvm (no {METADATA_FUNCTION}); rebuild it") from None
    device_kind = metadata.get("device", "cpu")
    if device_kind == "cpu":
        use_build_cores(metadata)
    else:
        try:
            vm, device = tvm_compat.make_vm(module, device_kind)
        except Exception as err:
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            raise ShuffleTVMError(f"'{path}' needs a {device_kind} device: {last[:200]}") from None
    return DeployedModel(path, metadata, vm, device)


def use_build_cores(metadata: dict[str, Any]) -> None:
    """Run on the cores the module was built for (its target's num-cores, at most the CPUs this process may
    use) unless TVM_NUM_THREADS says otherwise. TVM's own default is half the logical CPUs on x86 (it assumes
    hyper-threads): one thread on a 2-vCPU machine, half the speed the kernels were scheduled and tuned for.
    Takes effect if no parallel kernel has run in this process yet (TVM starts its thread pool then)."""
    cores = metadata.get("target", {}).get("num-cores")
    if cores and "TVM_NUM_THREADS" not in os.environ:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["TVM_NUM_THREADS"] = str(max(1, min(int(cores), available)))


def load_input(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ShuffleTVMError(f"input file '{path}' does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:
        raise ShuffleTVMError(f"'{path}' is not a readable .npy array ({str(err)[:120]})") from None


def save_array_atomic(array: np.ndarray, path: str | Path) -> None:
    with atomic_output(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def top_k(logits: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per batch item, the k best classes and their softmax probabilities."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    order = np.argsort(-logits, axis=-1)[:, :k]
    return [[(int(c), float(probs[i, c])) for c in row] for i, row in enumerate(order)]
