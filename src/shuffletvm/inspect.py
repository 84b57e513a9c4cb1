"""What the compile pipeline does to a model, phase by phase: operator and kernel counts, and the bytes that
pure data-movement operations move (`shuffletvm inspect`).

Counted per phase:
- `ops`: Relax operator calls (`call_tir` excluded), by operator name;
- `launches` / `kernels`: `call_tir` and `call_tir_inplace` calls and the distinct TensorIR functions they call;
- `data_movement` / `bytes_moved`: calls that only copy values (concat, transpose, split, slices, and TensorIR
  kernels whose every store is a load, a select between loads or a constant) and what they read plus write:
  2 x output bytes. Reshapes are views and move nothing; copies of constants (the classifier's transposed
  weight) are folded at compile time and not counted.
The pipeline's own phases are run here one after another, exactly as `build` runs them (dumps per phase with
`--dump-dir`), up to `schedule`: the later phases lower the same kernels into VM calls.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ShuffleTVMError

logger = logging.getLogger(__name__)

COPY_OPS = {"relax.concat", "relax.permute_dims", "relax.split", "relax.strided_slice", "relax.take"}
LAST_PHASE = "schedule"


@dataclass
class InspectConfig:
    model: str
    target: str = "x86"
    batch: int = 1
    onnx: Path | None = None
    dump_dir: Path | None = None
    target_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhaseStats:
    phase: str
    ops: Counter
    launches: int
    kernels: int
    data_movement: int
    bytes_moved: int

    @property
    def op_count(self) -> int:
        return sum(self.ops.values())


@dataclass
class InspectReport:
    model: str
    target: str
    phases: list[PhaseStats]
    pass_counts: dict[str, int]


def _tensor_bytes(ty: Any) -> int:
    import tvm
    from tvm import relax

    if isinstance(ty, relax.TupleType):
        return sum(_tensor_bytes(f) for f in ty.fields)
    elements = 1
    for v in ty.shape.values:
        elements *= int(v)
    return elements * tvm.DataType(ty.dtype).bits // 8


def copies_only(func: Any) -> bool:
    """True if every store of the TensorIR function writes a loaded value (or a select between loaded values,
    or a constant): the kernel moves data and computes nothing."""
    import tvm

    from . import tvm_compat

    node = tvm_compat.tir_expr_classes()
    if_then_else = tvm.ir.Op.get(tvm_compat.IF_THEN_ELSE)

    def is_copy(value: Any) -> bool:
        if isinstance(value, (node["load"], *node["imm"])):
            return True
        if isinstance(value, node["select"]):
            return is_copy(value.true_value) and is_copy(value.false_value)
        if isinstance(value, node["call"]) and value.op.same_as(if_then_else):
            return is_copy(value.args[1]) and is_copy(value.args[2])
        return False

    stores: list[bool] = []

    def walk(stmt: Any) -> None:  # TVM 0.27's Python API has no TIR visitor; the statement kinds kernels use
        if stmt is None:
            return
        if isinstance(stmt, node["store"]):
            stores.append(is_copy(stmt.value))
        elif isinstance(stmt, node["seq"]):
            for child in stmt.seq:
                walk(child)
        elif isinstance(stmt, node["block_realize"]):
            walk(stmt.block)
        elif isinstance(stmt, node["block"]):
            if stmt.init is not None:
                stores.append(False)  # a reduction
            walk(stmt.body)
        elif isinstance(stmt, node["if"]):
            walk(stmt.then_case)
            walk(stmt.else_case)
        elif hasattr(stmt, "body"):  # For, LetStmt, AttrStmt, Allocate, DeclBuffer, ...
            walk(stmt.body)
        else:
            stores.append(False)  # unknown: do not call it a copy

    walk(func.body)
    return bool(stores) and all(stores)


def phase_stats(phase: str, mod: Any) -> PhaseStats:
    from tvm import relax
    from tvm.ir.expr import GenericConst  # 0.27's relax constant (relax.const returns one)

    from .tvm_compat import KERNEL_CALL_OPS, op_calls

    ops: Counter = Counter()
    launches, moving, moved = 0, 0, 0
    called: set[str] = set()
    for call in op_calls(mod):
        if call.op.name in KERNEL_CALL_OPS:
            launches += 1
            callee = call.args[0]
            called.add(callee.name_hint)
            if copies_only(mod[callee]):
                moving += 1
                moved += 2 * _tensor_bytes(call.ty)
            continue
        ops[call.op.name] += 1
        constant = all(isinstance(a, GenericConst) for a in call.args if isinstance(a, relax.Expr))
        if call.op.name in COPY_OPS and not constant:  # a copy of constants is folded at compile time
            moving += 1
            moved += 2 * _tensor_bytes(call.ty)
    return PhaseStats(phase, ops, launches, len(called), moving, moved)


def inspect_model(config: InspectConfig) -> InspectReport:
    from .build import load_graph
    from .pipeline import PipelineOptions, run_phases
    from .targets import resolve_target

    target = resolve_target(config.target, config.target_options)
    graph = load_graph(config.model, config.batch, None, config.onnx)
    tvm_target = target.tvm_target()
    if config.dump_dir is not None and config.dump_dir.exists() and not config.dump_dir.is_dir():
        raise ShuffleTVMError(f"--dump-dir '{config.dump_dir}' exists and is not a folder")
    options = PipelineOptions(dump_dir=config.dump_dir)
    stats = [phase_stats("imported", graph.mod)]
    for phase, mod in run_phases(graph.mod, tvm_target, options, until=LAST_PHASE):
        stats.append(phase_stats(phase.name, mod))
    passes = {k: v for k, v in options.stats.items() if not k.startswith("kernels")}
    return InspectReport(graph.name, target.name, stats, passes)


def format_report(report: InspectReport) -> str:
    lines = [
        f"{report.model} on {report.target}",
        "",
        "| after phase | Relax ops | kernel launches | distinct kernels | data-movement calls | bytes moved |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in report.phases:
        lines.append(f"| {s.phase} | {s.op_count} | {s.launches} | {s.kernels} | {s.data_movement} | "
                     f"{s.bytes_moved / 1e6:.2f} MB |")
    first = report.phases[0]
    top = ", ".join(f"{name.removeprefix('relax.')} {n}" for name, n in first.ops.most_common(8))
    lines += ["", f"imported ops: {top}"]
    if report.pass_counts:
        lines.append("passes fired: " + ", ".join(f"{k} {v}" for k, v in sorted(report.pass_counts.items())))
    return "\n".join(lines)
