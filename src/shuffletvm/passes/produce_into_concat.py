"""ProduceIntoConcat: the kernels that compute a channel concat's inputs write them straight into their channels
of the concat's buffer, and the concat kernel goes.

ShuffleNet concatenates at the start of every stage: V1's stride-2 unit joins the 3x3 average pool of its input
with its branch (`concat(avg_pool(x), relu(gconv(...)))`), V2's stride-2 unit its two branches (and on CPUs,
after KeepIdentityInPlace, that concat is the stage's one buffer). After scheduling, each such concat is a copy
kernel that reads both tensors and writes them again, 2 x 4 bytes per element, and the next kernel reads what the
copy wrote, not what the producers wrote.

Runs last in the `schedule` phase, on CPUs, on the kernels as scheduled (tuning records still match: the
producers are looked up before this pass changes them):

    a = call_tir(f, xs)            [N, Ca, H, W]        full = call_tir(f', xs)                 [N, Ca+Cb, H, W]
    b = call_tir(g, ys)            [N, Cb, H, W]   ->   c = call_tir_inplace(g', (ys, full))    [N, Ca+Cb, H, W]
    c = call_tir(concat, (a, b))   [N, Ca+Cb, H, W]

`f'` is `f` with its output buffer made an intermediate and a copy block `full[n, c + off, h, w] = out[n, c, h,
w]` appended, then that block inlined into the block that writes `out` (`reverse_compute_inline`): the producer
writes `full` at the channel offset, in its own loops, under its own schedule. The first producer in program
order allocates the buffer (writing only its channels); each later one writes its channels in place
(`call_tir_inplace`), at the concat's position. Every channel of `full` is written: the producers' channel ranges
are exactly the concat's, taken from the concat kernel itself.

Which concats: a kernel whose single store copies, under conditions, loads of its inputs at the store's indices
shifted along axis 1 by each input's offset (a legalized `concat(axis=1)`, however scheduled), whose inputs are
distinct kernel results (`call_tir`) used by nothing else. Left as they are: an input with another user (it
must keep its own tensor), a function parameter or constant, the same tensor twice, an in-place kernel's result,
and a producer whose output is written by a reduction block (nothing to inline into; the concat stays).

Measured on the 2-core Intel VM of `tuning_logs/x86-rocketlake-2c` (`benchmarks/sequence_profile.py MODEL
--without concat`: the same build with and without, interleaved, outputs identical), end to end at batch 1:
V2 0.5x 0.96x, V2 1.0x 0.99x, V1 g3 0.98x, V1 g8 0.98x (20 rounds); at batch 8, V2 1.0x 0.97x, V1 g8 0.96x
(10 rounds). V1 g8's three concats took 85 us of 2.19 ms in sequence.

Not on GPUs: there each concat is one ~3.6 us launch (benchmarks/GPU.md) and the rewrite is not measured there.

Counter: `ProduceIntoConcat` (concat kernels removed), `ProduceIntoConcat.bytes` (their traffic, read + write).
Numerically exact: each value is computed by the same kernel and only stored elsewhere.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax, s_tir, tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize

from ..tvm_compat import IF_THEN_ELSE, tir_expr_classes
from ._shuffle_pattern import graph_functions, shape_of, use_counts

CHANNELS = 1  # the concat axis this pass takes (NCHW)
EXPR = tir_expr_classes()


@dataclass(frozen=True)
class _Concat:
    var: relax.Var  # the concat's result
    producers: list[relax.Var]  # its inputs, in program order
    offsets: dict[relax.Var, int]  # each input's first channel in the concat
    shape: list[int]  # the concat's shape


@tvm.ir.transform.module_pass(opt_level=0, name="ProduceIntoConcat")
class ProduceIntoConcat:
    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if "cpu" not in set(self.target.keys):
            return mod
        builder = relax.BlockBuilder(mod)
        kernels: dict[tuple, tvm.ir.GlobalVar] = {}
        changed = False
        for gvar, func in graph_functions(mod):
            plan = self._plan(mod, func, builder, kernels)
            if plan:
                builder.update_func(gvar, _Rewriter(builder, plan).visit_expr(func))
                changed = True
        if not changed:
            return mod
        return relax.transform.DeadCodeElimination()(builder.get())

    def _plan(self, mod: tvm.IRModule, func: relax.Function, builder: relax.BlockBuilder,
              kernels: dict[tuple, tvm.ir.GlobalVar]) -> dict[relax.Var, Any]:
        """Per binding to replace: ("alloc", concat, call) for the first producer, ("drop",) for the others,
        ("concat", concat, [(producer, call)]) for the concat."""
        values: dict[relax.Var, Any] = {}
        order: dict[relax.Var, int] = {}
        for block in func.body.blocks:
            for binding in block.bindings:
                if isinstance(binding, relax.VarBinding):
                    order[binding.var] = len(order)
                    values[binding.var] = binding.value
        uses = use_counts(func)
        plan: dict[relax.Var, Any] = {}
        for var, value in values.items():
            concat = _as_concat(mod, var, value, values, uses, order)
            if concat is None or any(p in plan for p in concat.producers):
                continue
            rewritten = []
            for producer in concat.producers:
                call = values[producer]
                key = (call.args[0], tuple(concat.shape), concat.offsets[producer])
                if key not in kernels:
                    func_into = write_into(_kernel(mod, call), concat.shape, concat.offsets[producer])
                    if func_into is None:
                        break
                    kernels[key] = builder.add_func(func_into, f"{call.args[0].name_hint}_into_concat")
                rewritten.append((producer, relax.Call(call.op, [kernels[key], *call.args[1:]], call.attrs,
                                                       call.ty_args)))
            else:
                first, *rest = rewritten
                plan[first[0]] = ("alloc", concat, first[1])
                plan.update({producer: ("drop",) for producer, _ in rest})
                plan[var] = ("concat", concat, rest)
                name = self.__class__.__name__
                self.counters[name] += 1
                self.counters[f"{name}.bytes"] += 2 * 4 * math.prod(concat.shape)
        return plan


def _as_concat(mod: tvm.IRModule, var: relax.Var, value: Any, values: dict[relax.Var, Any], uses: Counter,
               order: dict[relax.Var, int]) -> _Concat | None:
    callee = _kernel(mod, value)
    shape = shape_of(var)
    if callee is None or shape is None or not isinstance(value.args[1], relax.Tuple):
        return None
    inputs = list(value.args[1].fields)
    offsets = channel_concat_offsets(callee)
    if offsets is None or len(offsets) != len(inputs) or len(set(inputs)) != len(inputs):
        return None
    for producer in inputs:
        if (not isinstance(producer, relax.Var) or producer not in values or uses[producer] != 1
                or _kernel(mod, values[producer]) is None or shape_of(producer) is None):
            return None
    producers = sorted(inputs, key=order.__getitem__)
    return _Concat(var, producers, dict(zip(inputs, offsets)), shape)


def _kernel(mod: tvm.IRModule, value: Any) -> tirx.PrimFunc | None:
    """The TensorIR function `value` calls if it is a plain `call_tir` (one output, no extra TIR arguments)."""
    if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.call_tir"
            and len(value.args) == 2 and isinstance(value.args[0], tvm.ir.GlobalVar)):
        return None
    func = mod[value.args[0]]
    return func if isinstance(func, tirx.PrimFunc) else None


def channel_concat_offsets(func: tirx.PrimFunc) -> list[int] | None:
    """The channel offset of each input if `func` (inputs..., output) is a concat along axis 1, else None: its one
    store writes the output at indices I with a value that is, under conditions (if_then_else / select), a load
    of each input at I shifted along axis 1 by the channels of the inputs before it."""
    *inputs, output = func.params
    ndim = len(output.shape)
    if len(inputs) < 2 or ndim <= CHANNELS or any(len(b.shape) != ndim or b.dtype != output.dtype for b in inputs):
        return None
    try:
        dims = [[int(d) for d in b.shape] for b in (*inputs, output)]
    except TypeError:
        return None
    if any(d[:CHANNELS] + d[CHANNELS + 1:] != dims[-1][:CHANNELS] + dims[-1][CHANNELS + 1:] for d in dims[:-1]):
        return None
    offsets = [sum(d[CHANNELS] for d in dims[:i]) for i in range(len(inputs))]
    if offsets[-1] + dims[-2][CHANNELS] != dims[-1][CHANNELS]:
        return None
    stores = _stores(func.body)
    if stores is None or len(stores) != 1 or not stores[0].buffer.same_as(output):
        return None
    store = stores[0]
    leaves: list[Any] = []
    if not _selected_loads(store.value, leaves):
        return None
    analyzer = tvm.sym.Analyzer()
    seen = set()
    for load in leaves:
        which = [i for i, b in enumerate(inputs) if load.source.same_as(b)]
        if len(which) != 1:
            return None
        shift = [0] * ndim
        shift[CHANNELS] = offsets[which[0]]
        if not all(analyzer.can_prove_equal(l + s, i) for l, s, i in zip(load.indices, shift, store.indices)):
            return None
        seen.add(which[0])
    return offsets if len(seen) == len(inputs) else None


def _stores(stmt: Any) -> list[Any] | None:
    """Every BufferStore of a kernel made of loops, sequences, blocks and conditions; None if it holds anything
    else (then it is no plain copy)."""
    if isinstance(stmt, tirx.BufferStore):
        return [stmt]
    if isinstance(stmt, tirx.For):
        return _stores(stmt.body)
    if isinstance(stmt, SBlockRealize):
        return _stores(stmt.block)
    if isinstance(stmt, SBlock):
        if stmt.init is not None or stmt.alloc_buffers or stmt.match_buffers:
            return None
        return _stores(stmt.body)
    children = (list(stmt.seq) if isinstance(stmt, tirx.SeqStmt) else
                [stmt.then_case] + ([stmt.else_case] if stmt.else_case is not None else [])
                if isinstance(stmt, tirx.IfThenElse) else None)
    if children is None:
        return None
    found: list[Any] = []
    for child in children:
        below = _stores(child)
        if below is None:
            return None
        found += below
    return found


def _selected_loads(expr: Any, leaves: list[Any]) -> bool:
    """Collect the loads `expr` chooses between; False if it computes anything."""
    if isinstance(expr, EXPR["load"]):
        leaves.append(expr)
        return True
    if isinstance(expr, EXPR["select"]):
        return _selected_loads(expr.true_value, leaves) and _selected_loads(expr.false_value, leaves)
    if isinstance(expr, EXPR["call"]) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == IF_THEN_ELSE:
        return _selected_loads(expr.args[1], leaves) and _selected_loads(expr.args[2], leaves)
    return False


def write_into(func: tirx.PrimFunc, shape: list[int], offset: int) -> tirx.PrimFunc | None:
    """`func` (inputs..., output) with its output written into channels [offset, offset + C) of a `shape` buffer
    that replaces the output parameter; None where no block writing the output can take the copy inlined."""
    out = func.params[-1]
    if not isinstance(func.body, SBlockRealize) or len(out.shape) != len(shape):
        return None
    root = func.body.block
    index = [str(s.ty.dtype) for s in out.shape]
    full = tirx.decl_buffer([tirx.IntImm(dtype, extent) for dtype, extent in zip(index, shape)], out.dtype,
                            name=f"{out.name}_concat", layout=None if out.ty.layout is None else "default")
    loop_vars = [tirx.Var(f"ax{i}", dtype) for i, dtype in enumerate(index)]
    iters = [tirx.IterVar(tvm.ir.Range.from_min_extent(tirx.IntImm(dtype, 0), extent), tirx.Var(f"v{i}", dtype), 0)
             for i, (dtype, extent) in enumerate(zip(index, out.shape))]
    src = [iv.var for iv in iters]
    dst = [v + tirx.IntImm(str(v.ty.dtype), offset) if axis == CHANNELS and offset else v for axis, v in enumerate(src)]

    def region(buffer: Any, indices: list[Any]) -> Any:
        one = [tvm.ir.Range.from_min_extent(i, tirx.IntImm(str(i.ty.dtype), 1)) for i in indices]
        return tirx.BufferRegion(buffer, one)

    copy = SBlock(iters, [region(out, src)], [region(full, dst)], "write_into_concat",
                  tirx.BufferStore(full, tirx.BufferLoad(out, src), dst))
    nest: Any = SBlockRealize(loop_vars, tirx.IntImm("bool", True), copy)
    for var, extent in reversed(list(zip(loop_vars, out.shape))):
        nest = tirx.For(var, tirx.IntImm(str(var.ty.dtype), 0), extent, tirx.ForKind.SERIAL, nest)
    body = SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, tirx.SeqStmt([root.body, nest]),
                  root.init, [*root.alloc_buffers, out], root.match_buffers, root.annotations)
    staged = tirx.PrimFunc([*func.params[:-1], full], SBlockRealize(func.body.iter_values, func.body.predicate,
                                                                     body), func.ret_type, func.attrs)
    sch = s_tir.Schedule(staged)
    try:
        sch.reverse_compute_inline(sch.get_sblock("write_into_concat"))
    except s_tir.ScheduleError:
        return None
    return sch.mod["main"]


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, builder: relax.BlockBuilder, plan: dict[relax.Var, Any]) -> None:
        super().__init__(builder.get())
        self.plan = plan
        self.full: dict[relax.Var, relax.Var] = {}  # concat -> the buffer its first producer allocated

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        action = self.plan.get(binding.var)
        if action is None:
            super().visit_var_binding_(binding)
            return
        if action[0] == "drop":
            return
        concat = action[1]
        ty = relax.TensorType(concat.shape, binding.var.ty.dtype)
        if action[0] == "alloc":
            call = action[2]
            self.full[concat.var] = self.builder_.emit(
                relax.call_tir(call.args[0], [self.visit_expr(a) for a in call.args[1].fields], ty),
                f"{binding.var.name}_concat")
            return
        buffer = self.full[concat.var]
        for index, (producer, call) in enumerate(action[2]):
            args = [self.visit_expr(a) for a in call.args[1].fields]
            value = relax.call_tir_inplace(call.args[0], [*args, buffer], [len(args)], ty)
            last = index == len(action[2]) - 1
            if not last:
                buffer = self.builder_.emit(value, f"{producer.name}_concat")
                continue
            emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
            self.set_var_remap(binding.var, emit(value, binding.var.name))
