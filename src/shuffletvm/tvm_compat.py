"""Every TVM call that changed between releases, in one place, so that the next upgrade touches this file.

Written against apache-tvm 0.27 (Relax graph IR, `tvm.s_tir`, `tvm.support.cc`); Relay, AutoTVM,
auto_scheduler and tvmc no longer exist. Heavy compiler imports are deferred to the functions that need them,
so that `shuffletvm.runtime` can import this module in a process that has only the TVM runtime library.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import tvm

TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post1"  # 0.1.15.x segfaults when saving TIR nodes (ToJSONGraph), killing MetaSchedule


def make_target(spec: dict[str, Any], host: dict[str, Any] | None = None) -> "tvm.target.Target":
    """TVM 0.27 takes targets as JSON-like dicts; `"llvm -mcpu=..."` strings are rejected."""
    import tvm

    return tvm.target.Target(spec, host=host) if host is not None else tvm.target.Target(spec)


def host_cpu_name() -> str:
    """LLVM's name for this machine's CPU (e.g. `znver5`, `sapphirerapids`)."""
    import tvm

    return str(tvm.target.codegen.llvm_get_system_cpu())


def x86_cpu_names() -> list[str]:
    """The CPU names this TVM's LLVM knows for x86-64 (`-mcpu`); LLVM warns about any other and falls back to
    `generic`, which would build without the vector width the name promised."""
    import tvm

    return [str(name) for name in tvm.target.codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm"}))]


def from_exported_program(exported: Any) -> "tvm.IRModule":
    from tvm.relax.frontend.torch import from_exported_program as _import

    return _import(exported, keep_params_as_input=False)


def from_onnx(model: Any, shape: dict[str, list[int]]) -> "tvm.IRModule":
    from tvm.relax.frontend.onnx import from_onnx as _import

    return _import(model, shape_dict=shape, keep_params_in_input=False)


def stock_passes(target: Any) -> dict[str, list[Any]]:
    """TVM's default Relax pipeline for `target`, as its four stock phases. Taken from the backend's own
    `pipeline` module: 0.27's `tvm.relax.pipeline.dataflow_lower_passes` fails for llvm because
    `backend.cpu_generic` does not re-export it."""
    if target.kind.name == "cuda":
        from tvm.relax.backend.cuda import pipeline as backend
    elif target.kind.name == "llvm":
        from tvm.relax.backend.cpu_generic import pipeline as backend
    else:
        raise ValueError(f"no stock pipeline for target kind {target.kind.name}")
    return {
        "library_dispatch": backend.library_dispatch_passes(target),
        "legalize": backend.legalize_passes(target),
        "dataflow_lower": backend.dataflow_lower_passes(target),
        "finalize": backend.finalize_passes(target),
    }


def without_default_schedules(passes: list[Any]) -> list[Any]:
    """The stock CUDA legalize phase ends with dlight's `ApplyDefaultSchedule`; shuffletvm schedules kernels in
    its own `schedule` phase (tuning records, then hand schedules, then dlight), so it is taken out here."""
    return [p for p in passes if "ApplyDefaultSchedule" not in type(p).__name__ and "dlight" not in str(p.info.name)]


def default_schedules(target: Any) -> list[Any]:
    """dlight's default GPU schedules (what the stock CUDA pipeline applies) for kernels nothing else covered."""
    if target.kind.name != "cuda":
        return []
    from tvm.s_tir import dlight as dl

    return [dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
                                    dl.gpu.Fallback())]


def prepare_codegen(target: Any) -> None:
    """Make CUDA kernels compile at build time. TVM compiles them through `tvm_callback_cuda_compile`, which
    exists only once `tvm.support.nvcc` is imported; without it the `.so` keeps CUDA *source* (fmt 'cuda') that
    the deployed runtime would have to compile, which a runtime-only install cannot. The callback defaults to
    NVRTC through the `cuda-bindings` package; where that is absent, nvcc (on PATH) writes a fatbin."""
    if target.kind.name != "cuda":
        return
    import importlib.util

    from . import cuda_kernels

    cuda_kernels.enable_build_time_compile()
    if importlib.util.find_spec("cuda") is None:
        os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")


def output_shape(func: Any) -> list[int]:
    """Static shape of a Relax function's (first) output. 0.27 renamed `struct_info` to `ty`."""
    ty = func.ret_ty
    while hasattr(ty, "fields"):  # torch.export returns a 1-tuple
        ty = ty.fields[0]
    return [int(v) for v in ty.shape.values]


def cross_compiler(compiler: str) -> Callable[..., None]:
    from tvm.support import cc

    return cc.cross_compiler(compiler)


def string_constant(value: str) -> Any:
    import tvm

    return tvm.ir.StringImm(value)


def metadata_function(name: str, metadata: dict[str, Any]) -> Any:
    """A public Relax function with no parameters that returns `metadata` as a JSON string: embedded in the
    `.so`, it tells the runtime what input the module expects without any file beside it. Without a
    `global_symbol` the pipeline's dead-code elimination would drop it."""
    from tvm import relax

    func = relax.Function([], string_constant(json.dumps(metadata, sort_keys=True)))
    return func.with_attr("global_symbol", name)


def load_module(path: str) -> Any:
    """dlopen an exported module. CUDA kernels need libtvm_runtime_cuda.so, which `TVM_USE_RUNTIME_LIB=1` does
    not load, and TVM's load-time compile callback, which shuffletvm answers with the kernels it compiled at
    build time (see `cuda_kernels`)."""
    import tvm

    from . import cuda_kernels

    if cuda_kernels.serve_embedded_kernels(Path(path)):
        load_runtime_extension("cuda")
    return tvm.runtime.load_module(path)


def load_runtime_extension(name: str) -> None:
    """Load `libtvm_runtime_<name>.so` (cuda, extra) from the tvm package; its static initialisers register its
    module loaders and functions. Raises OSError where it cannot load (no NVIDIA driver, for cuda)."""
    import tvm

    ctypes.CDLL(str(Path(tvm.__file__).parent / "lib" / f"libtvm_runtime_{name}.so"), mode=ctypes.RTLD_GLOBAL)


def make_vm(module: Any, device_kind: str) -> tuple[Any, Any]:
    import tvm
    import tvm.runtime.vm

    device = tvm.runtime.device(device_kind, 0)
    return tvm.runtime.vm.VirtualMachine(module, device), device


def to_tvm_tensor(array: Any, device: Any) -> Any:
    import tvm

    return tvm.runtime.tensor(array, device)


# The alignment TVM's allocator gives every tensor, which its kernels may assume of their arguments
# (tvm-ffi's `kAllocAlignment`; `from_dlpack` refuses less).
TENSOR_ALIGNMENT = 64


def view_as_tvm_tensor(array: Any) -> Any:
    """A host numpy array as a TVM tensor on the CPU, sharing its memory (no copy): it must be C-contiguous and
    `TENSOR_ALIGNMENT`-aligned. The tensor keeps the array alive."""
    import tvm

    return tvm.runtime.from_dlpack(array)


def tir_expr_classes() -> dict[str, type]:
    """TIR expression classes: 0.27 moved them into `tvm.ir` (a buffer load is `tvm.ir.expr.TensorLoad`;
    `tirx.BufferLoad` is a constructor function, not a class) and block statements into `tvm.s_tir`."""
    import tvm.ir.expr
    import tvm.ir.prim.expr
    from tvm import s_tir, tirx

    return {
        "load": tvm.ir.expr.TensorLoad, "call": tvm.ir.expr.Call, "select": tvm.ir.prim.expr.Select,
        "imm": (tvm.ir.prim.expr.IntImm, tvm.ir.prim.expr.FloatImm), "store": tirx.BufferStore,
        "seq": tirx.SeqStmt, "if": tirx.IfThenElse, "block_realize": s_tir.SBlockRealize, "block": s_tir.SBlock,
    }


IF_THEN_ELSE = "prim.if_then_else"  # 0.27's name for TIR's lazy select (was tir.if_then_else)
IS_SCHEDULED = "tirx.is_scheduled"  # 0.27's PrimFunc attribute (was tir.is_scheduled): dlight and MetaSchedule skip


def is_scheduled(func: Any) -> bool:
    """A PrimFunc that carries a schedule already (hand-written, from a tuning record, or dlight's)."""
    return func.attrs is not None and bool(func.attrs.get(IS_SCHEDULED, False))


KERNEL_CALL_OPS = ("relax.call_tir", "relax.call_tir_inplace")


def op_calls(mod: Any) -> list[Any]:
    """Every call of a Relax operator in the module's Relax functions, in post order. A kernel launch is one
    whose `op.name` is in KERNEL_CALL_OPS; its `args[0]` is the TensorIR function's GlobalVar."""
    import tvm
    from tvm import relax

    calls: list[Any] = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            calls.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return calls
