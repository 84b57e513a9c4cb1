"""The runtimes `shuffletvm compare` measures, as a table of name -> preparer.

A preparer gets the model, an example input, the thread count and a scratch folder, and returns a
`Prepared`: a function from a numpy batch to numpy logits, plus a note (precision, what was skipped). It raises
`Unavailable` when the runtime cannot run here (not installed, no GPU, no tuning log); compare reports that
and goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


class Unavailable(Exception):
    """This runtime cannot run here; the message says why."""


@dataclass
class Prepared:
    run: Callable[[np.ndarray], np.ndarray]
    note: str = ""


@dataclass
class Context:
    model: Any  # torch.nn.Module, eval mode
    name: str
    example: np.ndarray
    threads: int
    workdir: Path
    target: str = "x86"
    log_dir: Path | None = None
    _onnx: Path | None = None

    def onnx_file(self) -> Path:
        if self._onnx is None:
            import torch

            self._onnx = self.workdir / f"{self.name}.onnx"
            torch.onnx.export(self.model, (torch.from_numpy(self.example),), str(self._onnx), dynamo=True,
                              input_names=["input"], output_names=["logits"], opset_version=18)
        return self._onnx


# What each TVM row builds: (use tuning logs, shuffletvm's pipeline, hand-written schedules, note)
TVM_VARIANTS = {
    "tuned": (True, True, True, "shuffletvm passes, tuning log; hand schedules where no record"),
    "hand": (False, True, True, "shuffletvm passes + hand-written schedules, no tuning"),
    "passes": (False, True, False, "shuffletvm passes, TVM's default (unscheduled) kernels"),
    "untuned": (False, False, False, "TVM's default Relax pipeline, no tuning"),
}


def _tvm(ctx: Context, variant: str) -> Prepared:
    from ..build import BuildConfig, build
    from ..runtime import load

    logs, ours, hand, note = TVM_VARIANTS[variant]
    result = build(BuildConfig(
        output=ctx.workdir / f"tvm_{variant}.so", model=ctx.name, target=ctx.target, batch=ctx.example.shape[0],
        use_tuning_logs=logs, log_dir=ctx.log_dir, stock_pipeline=not ours, hand_schedules=hand,
    ))
    if logs and result.kernels_tuned == 0:
        batch = ctx.example.shape[0]
        raise Unavailable(f"no tuning record covers its kernels (run `shuffletvm tune {ctx.name} --batch {batch}`)")
    module = load(result.path)
    if logs:
        borrowed = result.tuning_log is not None and result.tuning_log.name != result.target.log_key
        source = f"{result.tuning_log.name}'s tuning log (another CPU)" if borrowed else "the tuning log"
        note = f"{result.kernels_tuned}/{result.kernels_total} kernels from {source}, {result.kernels_hand} hand-written"
    return Prepared(module.run, note)


def _torch_eager(ctx: Context) -> Prepared:
    import torch

    torch.set_num_threads(ctx.threads)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return ctx.model(torch.from_numpy(x)).numpy()

    return Prepared(run, f"torch {torch.__version__}")


def _torch_compile(ctx: Context) -> Prepared:
    import torch

    torch.set_num_threads(ctx.threads)
    compiled = torch.compile(ctx.model)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compiled(torch.from_numpy(x)).numpy()

    run(ctx.example)  # compile outside the timed rounds
    return Prepared(run, "inductor, default mode")


def _onnxruntime(ctx: Context) -> Prepared:
    try:
        import onnxruntime as ort
    except ImportError:
        raise Unavailable("onnxruntime is not installed") from None
    session = onnxruntime_session(ctx)
    return Prepared(lambda x: session.run(None, {"input": x})[0], f"onnxruntime {ort.__version__}, CPU EP")


def onnxruntime_session(ctx: Context, profile_prefix: Path | None = None) -> Any:
    """The ONNX Runtime CPU session `compare` measures (all graph optimizations, `ctx.threads` intra-op threads),
    profiling every node to files starting with `profile_prefix` where given."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = ctx.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(ctx.onnx_file()), options, providers=["CPUExecutionProvider"])


def _openvino(ctx: Context, precision: str | None) -> Prepared:
    try:
        import openvino as ov
    except ImportError:
        raise Unavailable("openvino is not installed") from None
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": ctx.threads}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(str(ctx.onnx_file()), "CPU", config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    actual = hint.to_string() if hasattr(hint, "to_string") else str(hint)
    if precision is None and actual == "f32":
        raise Unavailable(f"its default precision here is already {actual} (the fp32 row covers it)")
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return Prepared(run, f"openvino {ov.__version__.split('-')[0]}, precision {actual}")


def _torch_cuda(ctx: Context) -> Prepared:
    import torch

    if not torch.cuda.is_available():
        raise Unavailable("no CUDA GPU")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    model = ctx.model.cuda()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(x).cuda())
            return out.cpu().numpy()

    return Prepared(run, "cuDNN fp32 (TF32 off), benchmark mode")


def _tensorrt(ctx: Context) -> Prepared:
    """TensorRT 10 from the same ONNX file, fp32 (TF32 off), I/O through PyTorch CUDA tensors. Neither machine
    this was written on has TensorRT: this path has not run yet (the row says so when it does)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise Unavailable("TensorRT is not installed") from None
    import torch

    if not torch.cuda.is_available():
        raise Unavailable("no CUDA GPU")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(ctx.onnx_file().read_bytes()):
        raise Unavailable(f"TensorRT cannot parse the ONNX file: {parser.get_error(0).desc()}")
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise Unavailable("TensorRT failed to build an engine")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    x_gpu = torch.empty(tuple(engine.get_tensor_shape(inputs[0])), dtype=torch.float32, device="cuda")
    y_gpu = torch.empty(tuple(engine.get_tensor_shape(outputs[0])), dtype=torch.float32, device="cuda")
    context.set_tensor_address(inputs[0], x_gpu.data_ptr())
    context.set_tensor_address(outputs[0], y_gpu.data_ptr())
    stream = torch.cuda.current_stream()

    def run(x: np.ndarray) -> np.ndarray:
        x_gpu.copy_(torch.from_numpy(x))
        context.execute_async_v3(stream.cuda_stream)
        return y_gpu.cpu().numpy()  # synchronizes the stream

    return Prepared(run, f"TensorRT {trt.__version__} fp32 (TF32 off)")


# name -> (preparer, vendor?, targets it applies to)
RUNTIMES: dict[str, tuple[Callable[[Context], Prepared], bool, tuple[str, ...]]] = {
    "tvm-tuned": (lambda c: _tvm(c, "tuned"), False, ("x86", "cuda")),
    "tvm-hand": (lambda c: _tvm(c, "hand"), False, ("x86", "cuda")),
    "tvm-passes": (lambda c: _tvm(c, "passes"), False, ("x86", "cuda")),
    "tvm-untuned": (lambda c: _tvm(c, "untuned"), False, ("x86", "cuda")),
    "pytorch": (_torch_eager, True, ("x86",)),
    "torch-compile": (_torch_compile, True, ("x86",)),
    "onnxruntime": (_onnxruntime, True, ("x86",)),
    "openvino-fp32": (lambda c: _openvino(c, "f32"), True, ("x86",)),
    "openvino-default": (lambda c: _openvino(c, None), True, ("x86",)),
    "pytorch-cuda": (_torch_cuda, True, ("cuda",)),
    "tensorrt": (_tensorrt, True, ("cuda",)),
}


def set_thread_env(threads: int) -> None:
    """Thread counts that runtimes read once at start-up; call before any of them initialises."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
