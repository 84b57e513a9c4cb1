"""KeepIdentityInPlace: ShuffleNet V2's identity half is never copied — one buffer per stage, each unit's branch
writes its output into the channels its input half came from, and the shuffles become channel bookkeeping.

A V2 unit of stride 1 (Ma et al. 2018, Fig. 3c) splits its input channels in halves, leaves the first alone,
runs the second through 1×1 conv → depthwise 3×3 → 1×1 conv, concatenates both halves and shuffles them. After
FuseConcatShuffleSplit that is one copy kernel per unit, moving every channel, although half of them (the
identity half) only change position. Here, per stage:

    buf = concat(a, b)                                   the stride-2 unit's two branches, once per stage
    x2 = gather(buf, slots_k)   (inside the first 1×1 conv: it reads its input channels from `slots_k`)
    ...depthwise 3×3...
    buf = scatter(buf, slots_k)  (the last 1×1 conv + bias + ReLU, in place: `call_tir_inplace` writes its
                                  output channels where x2 was; the identity half is not touched)

Where each logical channel sits is tracked at compile time: a map P from the channels of the (virtual)
shuffled tensor to buffer channels. The stage starts with P = s (the shuffle's own channel map: the concat is
stored unshuffled); a unit's second half sits at slots_k = P[C/2:], its output goes to the same slots, so the
unshuffled concat of the unit's halves has map P and the next shuffled tensor P∘s. The stage's consumers read the
buffer through the final map, absorbed into their constant weights (no kernel changes): 1×1 convs and the
next stage's depthwise conv get permuted input channels (the depthwise conv's output then stays permuted through
its bias and ReLU until the 1×1 conv after it absorbs it), and conv5 — which reads the last concat through the
folded shuffle — gets its weight columns permuted so that the same shuffled read lands on the right channels.

Per stage this removes every concat + shuffle + split kernel and the final shuffle and adds one plain concat
(V2 1.0x on AVX-512: stages 2 and 3, 12 copy kernels -> 2 concats; on aarch64 all three stages). Exact: the
same products in the same order; only where values live changes.

Applies to chains of FuseConcatShuffleSplit kernels (two inputs, groups 2, split in halves) whose halves feed
nothing else, whose second half feeds one NCHW 1×1 conv and whose next concat takes `relu(conv1x1(...) + bias)`
of a branch that reads that conv's output; a stage whose end has a consumer the map cannot be absorbed into is
left entirely as it was. Not applied:
- to a stage whose 1×1 convs the layout phase packed (x86: the 7×7 stage; AVX2 also 14×14): vectorized over
  output channels, a scatter store puts every lane in another channel plane. Measured on V2 1.0x's 7×7 stage
  (232 -> 232, the packed conv's tuned schedule replayed on each): scatter conv 91 us, gather conv 57 us, against
  42 us for the packed conv — more than the copy kernel they would remove. That stage keeps its concat+shuffle+split kernels.
- on GPUs: the in-place kernels have no GPU schedule (the copy kernels there measured 3.6-6 us each).
Run after PackConv1x1Weights (it reads the weight layout the layout phase chose).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import GenericConst  # 0.27: what relax.const makes

from ..kernels.stage_buffer_conv import BufferConvSpec, gather_conv1x1, scatter_conv1x1
from ._shuffle_pattern import graph_functions, shape_of, unit_stride_nchw


def shuffle_map(channels: int, groups: int) -> np.ndarray:
    """s[j]: the channel of the unshuffled tensor that channel j of its channel shuffle holds."""
    j = np.arange(channels)
    return (j % groups) * (channels // groups) + j // groups


@dataclass
class _Unit:
    split: relax.Var  # the concat+shuffle+split kernel's result this unit's input halves come from
    first: relax.Var  # its first 1x1 conv (reads the second half)
    output: relax.Var  # relu(add(last 1x1 conv, bias)): the branch's output
    add: relax.Var  # add(last 1x1 conv, bias)
    last: relax.Var  # the last 1x1 conv
    bias: relax.Expr


@dataclass
class _Chain:
    start: relax.Var  # the first split kernel's result (the stride-2 unit's concat)
    channels: int
    units: list[_Unit] = field(default_factory=list)
    end: relax.Var | None = None  # the shuffled or concatenated tensor after the last unit
    end_maps: dict[relax.Var, tuple] = field(default_factory=dict)  # consumer -> (how, what) it reads


@tvm.ir.transform.module_pass(opt_level=0, name="KeepIdentityInPlace")
class KeepIdentityInPlace:
    """`counters["KeepIdentityInPlace"]` counts units whose identity half stays in place; `.bytes` the copy
    traffic removed (net of the one concat per stage)."""

    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if "cpu" not in set(self.target.keys):
            return mod
        self.mod = mod
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[tuple[str, BufferConvSpec], tvm.ir.GlobalVar] = {}
        changed = False
        for gvar, func in graph_functions(mod):
            graph = _Graph(func)
            chains = [c for c in (self._chain(graph, v) for v in graph.order) if c is not None]
            if chains:
                self.builder.update_func(gvar, _Rewriter(self, graph, chains).rewrite(func))
                changed = True
        if not changed:
            return mod
        return relax.transform.DeadCodeElimination()(self.builder.get())

    # -- recognising a stage -------------------------------------------------------------------------------

    def _split_kernel(self, graph: _Graph, var: relax.Var) -> tuple[int, bool] | None:
        """(channels, split in halves) if `var` is a two-input, groups-2 concat+shuffle(+split) kernel's result."""
        call = graph.value.get(var)
        attrs = self._kernel_attrs(call, "shuffletvm.concat_channels")
        if attrs is None or int(attrs["shuffletvm.shuffled_with"]) != 2:
            return None
        halves = [int(c) for c in attrs["shuffletvm.concat_channels"]]
        ranges = [int(r) for r in attrs["shuffletvm.out_ranges"]]
        channels = sum(halves)
        if len(halves) != 2 or halves[0] != halves[1]:
            return None
        if ranges == [0, channels // 2, channels // 2, channels]:
            return channels, True
        return (channels, False) if ranges == [0, channels] else None

    def _kernel_attrs(self, call: Any, key: str) -> Any:
        if not _is_op(call, "relax.call_tir") or not isinstance(call.args[0], tvm.ir.GlobalVar):
            return None
        func = self.mod[call.args[0]]
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is None or key not in func.attrs:
            return None
        return func.attrs

    def _chain(self, graph: _Graph, start: relax.Var) -> _Chain | None:
        found = self._split_kernel(graph, start)
        if found is None or not found[1]:
            return None
        inputs = graph.value[start].args[1].fields
        if isinstance(inputs[0], relax.Var) and graph.item_of(inputs[0]) is not None:
            return None  # not the first split of a stage
        chain = _Chain(start, found[0])
        split = start
        while True:
            unit = self._unit(graph, split)
            if unit is None:
                return None
            chain.units.append(unit)
            first_half = graph.item(split, 0)
            nxt = graph.single_user(first_half)
            if nxt is None or graph.single_user(unit.output) != nxt:
                return None
            found = self._split_kernel(graph, nxt)
            args = _concatenated(graph.value[nxt]) if found is not None or _is_op(graph.value[nxt], "relax.concat") \
                else None
            if args is None or len(args) != 2 or not (args[0].same_as(first_half) and args[1].same_as(unit.output)):
                return None
            if found is not None and found[1]:
                split = nxt
                continue
            chain.end = nxt
            return chain if self._end(graph, chain) else None

    def _unit(self, graph: _Graph, split: relax.Var) -> _Unit | None:
        halves = [graph.item(split, k) for k in (0, 1)]
        if any(h is None for h in halves) or any(len(graph.users[h]) != 1 for h in halves):
            return None
        first = graph.users[halves[1]][0]
        if self._conv1x1(graph.value.get(first), halves[1]) is None:
            return None
        # the branch output: relu(add(conv1x1(t), bias)), each step used once, t computed from `first`
        nxt = graph.single_user(halves[0])  # the next split kernel, or the stage's last shuffle / concat
        if nxt is None or nxt not in graph.value:
            return None
        inputs = _concatenated(graph.value[nxt])
        if inputs is None or len(inputs) != 2 or not isinstance(inputs[1], relax.Var):
            return None
        relu_var = inputs[1]
        relu = graph.value.get(relu_var)
        if not _is_op(relu, "relax.nn.relu") or len(graph.users[relu_var]) != 1:
            return None
        add_var = relu.args[0]
        add = graph.value.get(add_var)
        if not _is_op(add, "relax.add") or len(graph.users[add_var]) != 1:
            return None
        conv_var, bias = add.args
        conv = graph.value.get(conv_var)
        channels = shape_of(relu_var)
        if (conv is None or len(graph.users[conv_var]) != 1 or not isinstance(bias, GenericConst)
                or channels is None or list(bias.value.shape) != [1, channels[1], 1, 1]):
            return None
        data = self._conv1x1_data(conv)
        if data is None or not graph.depends_on(data, first):
            return None
        return _Unit(split, first, relu_var, add_var, conv_var, bias)

    def _conv1x1_data(self, call: Any) -> relax.Expr | None:
        """The input of a 1x1 / stride 1 / ungrouped NCHW conv with constant weights, or None. (Not one whose
        weights the layout phase packed: see the module docstring.)"""
        if _is_op(call, "relax.nn.conv2d"):
            weight = call.args[1]
            if (unit_stride_nchw(call.attrs) and int(call.attrs.groups) == 1 and isinstance(weight, GenericConst)
                    and list(weight.value.shape[2:]) == [1, 1] and str(weight.value.dtype) == "float32"):
                return call.args[0]
        return None

    def _conv1x1(self, call: Any, data: relax.Var) -> relax.Expr | None:
        found = self._conv1x1_data(call)
        return found if found is not None and found.same_as(data) else None

    def _packed(self, call: Any) -> bool:
        """A layout-phase packed 1x1 kernel call: ungrouped, not reading through a shuffle, constant weights."""
        attrs = self._kernel_attrs(call, "shuffletvm.packed_block")
        return (attrs is not None and int(attrs["shuffletvm.conv_groups"]) == 1
                and int(attrs["shuffletvm.shuffle_groups"]) == 1 and isinstance(call.args[1].fields[1], GenericConst))

    def _end(self, graph: _Graph, chain: _Chain) -> bool:
        """Can every consumer of the stage's last tensor read the buffer through the final map instead?"""
        end = chain.end
        channels = chain.channels
        users = graph.users[end]
        if not users:
            return False
        if _is_op(graph.value[end], "relax.concat"):  # conv5 reading the unshuffled concat through the shuffle
            if len(users) != 1:
                return False
            call = graph.value.get(users[0])
            groups = self._shuffled_conv_groups(call)
            if groups is None or not call.args[1].fields[0].same_as(end):
                return False
            chain.end_maps[users[0]] = ("shuffled", groups)
            return True
        permuted = [end]
        while permuted:  # tensors whose channels the map permutes, and what each consumer does with them
            var = permuted.pop()
            for user in graph.users[var]:
                call = graph.value.get(user)  # None: the function returns it
                if self._conv_reading(call, var, channels):
                    chain.end_maps.setdefault(user, ("conv", var))
                elif self._depthwise(call, var, channels) or (
                        _is_op(call, "relax.add") and call.args[0].same_as(var)
                        and isinstance(call.args[1], GenericConst)
                        and list(call.args[1].value.shape) == [1, channels, 1, 1]) or (
                        _is_op(call, "relax.nn.relu") and call.args[0].same_as(var)):
                    chain.end_maps[user] = ("per-channel", var)
                    permuted.append(user)
                else:
                    return False
        return True

    def _shuffled_conv_groups(self, call: Any) -> int | None:
        """Shuffle groups of an ungrouped conv kernel that reads through a folded shuffle (OIHW or packed)."""
        attrs = self._kernel_attrs(call, "shuffletvm.shuffle_groups")
        if attrs is None or int(attrs["shuffletvm.conv_groups"]) != 1 \
                or not isinstance(call.args[1].fields[1], GenericConst):
            return None
        return int(attrs["shuffletvm.shuffle_groups"])

    def _conv_reading(self, call: Any, var: relax.Var, channels: int) -> bool:
        """A conv with constant weights, groups 1, that reads all of `var`'s channels (any kernel size/stride)."""
        if _is_op(call, "relax.nn.conv2d"):
            attrs = call.attrs
            return (call.args[0].same_as(var) and isinstance(call.args[1], GenericConst)
                    and attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and int(attrs.groups) == 1
                    and call.args[1].value.shape[1] == channels)
        return self._packed(call) and call.args[1].fields[0].same_as(var)

    def _depthwise(self, call: Any, var: relax.Var, channels: int) -> bool:
        if not _is_op(call, "relax.nn.conv2d"):
            return False
        attrs = call.attrs
        return (call.args[0].same_as(var) and isinstance(call.args[1], GenericConst)
                and attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW"
                and int(attrs.groups) == channels and call.args[1].value.shape[0] == channels)

    # -- kernels -------------------------------------------------------------------------------------------

    def kernel(self, kind: str, spec: BufferConvSpec) -> tvm.ir.GlobalVar:
        if (kind, spec) not in self.kernels:
            make = gather_conv1x1 if kind == "gather" else scatter_conv1x1
            self.kernels[kind, spec] = self.builder.add_func(make(spec), f"conv1x1_{kind}")
        return self.kernels[kind, spec]


class _Graph:
    """One function's bindings: values, users (in program order) and tuple items."""

    def __init__(self, func: relax.Function) -> None:
        self.value: dict[relax.Var, Any] = {}
        self.users: dict[relax.Var, list[relax.Var]] = {}
        self.order: list[relax.Var] = []
        for block in func.body.blocks:
            for binding in block.bindings:
                if not isinstance(binding, relax.VarBinding):
                    continue
                var = binding.var
                self.order.append(var)
                self.value[var] = binding.value
                self.users.setdefault(var, [])
                for used in _vars_in(binding.value):
                    self.users.setdefault(used, []).append(var)
        for used in _vars_in(func.body.body):
            self.users.setdefault(used, []).append(None)

    def item(self, var: relax.Var, index: int) -> relax.Var | None:
        found = [u for u in self.users.get(var, []) if isinstance(self.value.get(u), relax.TupleGetItem)
                 and self.value[u].index == index]
        return found[0] if len(found) == 1 else None

    def item_of(self, var: relax.Var) -> relax.Var | None:
        value = self.value.get(var)
        return value.tuple_value if isinstance(value, relax.TupleGetItem) else None

    def single_user(self, var: relax.Var) -> relax.Var | None:
        users = self.users.get(var, [])
        return users[0] if len(users) == 1 else None

    def depends_on(self, expr: relax.Expr, var: relax.Var) -> bool:
        stack, seen = [expr], set()
        while stack:
            current = stack.pop()
            for used in _vars_in(current) if not isinstance(current, relax.Var) else [current]:
                if used.same_as(var):
                    return True
                if used not in seen and used in self.value:
                    seen.add(used)
                    stack.append(self.value[used])
        return False


def _vars_in(expr: Any) -> list[relax.Var]:
    found: list[relax.Var] = []
    relax.analysis.post_order_visit(expr, lambda e: found.append(e) if isinstance(e, relax.Var) else None)
    return found


def _concatenated(call: Any) -> list[relax.Expr] | None:
    """What a concat, or a (concat+shuffle+split) kernel call, concatenates."""
    if _is_op(call, "relax.call_tir") and isinstance(call.args[1], relax.Tuple):
        return list(call.args[1].fields)
    if _is_op(call, "relax.concat") and isinstance(call.args[0], relax.Tuple) and int(call.attrs.axis) in (1, -3):
        return list(call.args[0].fields)
    return None


def _is_op(call: Any, name: str) -> bool:
    return isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == name


def _permute_inputs(weight: np.ndarray, slot_of: np.ndarray) -> np.ndarray:
    """Weights over logical input channels (axis 1) -> over buffer channels: column slot_of[j] = column j."""
    return _permute_channels(weight, slot_of, 1)


def _permute_channels(values: np.ndarray, slot_of: np.ndarray, axis: int) -> np.ndarray:
    out = np.empty_like(values)
    index = [slice(None)] * values.ndim
    index[axis] = slot_of
    out[tuple(index)] = values
    return out


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    """Rebuilds the function with the chains' bindings replaced (what they no longer need is left for DCE)."""

    def __init__(self, owner: KeepIdentityInPlace, graph: _Graph, chains: list[_Chain]) -> None:
        super().__init__(owner.builder.get())
        self.owner, self.graph = owner, graph
        self.actions: dict[relax.Var, Any] = {}
        self.dropped: set[relax.Var] = set()  # bindings only the replaced ones used
        for chain in chains:
            self._plan(chain)

    def rewrite(self, func: relax.Function) -> relax.Function:
        return self.visit_expr(func)

    def _plan(self, chain: _Chain) -> None:
        owner, channels = self.owner, chain.channels
        half = channels // 2
        shuffle = shuffle_map(channels, 2)
        a, b = self.graph.value[chain.start].args[1].fields
        self.actions[chain.start] = lambda: relax.op.concat([self.visit_expr(a), self.visit_expr(b)], axis=1)
        buf = chain.start
        slot_of = shuffle.copy()  # P: channel j of the unit's (virtual) shuffled input is at buffer channel P[j]
        for unit in chain.units:
            self.dropped.update([self.graph.item(unit.split, 0), self.graph.item(unit.split, 1), unit.add, unit.last])
            if unit.split is not chain.start:
                self.dropped.add(unit.split)
            slots = slot_of[half:].astype("int32")
            self.actions[unit.first] = self._gather(unit, buf, slots, channels)
            self.actions[unit.output] = self._scatter(unit, buf, slots, channels)
            buf = unit.output
            slot_of = slot_of[shuffle]  # the unshuffled concat of the unit's halves has map P; shuffled, P o s
            owner.counters[owner.__class__.__name__] += 1
        self.dropped.add(chain.end)
        if _is_op(self.graph.value[chain.end], "relax.concat"):
            slot_of = self._unshuffled(slot_of, shuffle)
        n, _c, h, w = shape_of(a)
        plane = 2 * 4 * n * h * w  # bytes one channel costs a copy kernel (read + write)
        # removed: one split kernel per unit and the last shuffle (or concat); added: the stage's concat
        owner.counters[f"{owner.__class__.__name__}.bytes"] += plane * channels * len(chain.units)
        for user, how in chain.end_maps.items():
            self.actions[user] = self._absorb(user, how, chain.end, buf, slot_of)

    @staticmethod
    def _unshuffled(slot_of: np.ndarray, shuffle: np.ndarray) -> np.ndarray:
        """The map of the unshuffled concat, from the map of its shuffle (P o s -> P)."""
        out = np.empty_like(slot_of)
        out[shuffle] = slot_of
        return out

    def _gather(self, unit: _Unit, buf: relax.Var, slots: np.ndarray, channels: int) -> Any:
        weight = self.graph.value[unit.first].args[1]
        n, c, h, w = shape_of(self.graph.item(unit.split, 1))
        out = shape_of(unit.first)
        gvar = self.owner.kernel("gather", BufferConvSpec(n, c, out[1], h, w, channels))
        return lambda: relax.call_tir(gvar, [self.visit_expr(buf), relax.const(slots), weight],
                                      relax.TensorType(out, "float32"))

    def _scatter(self, unit: _Unit, buf: relax.Var, slots: np.ndarray, channels: int) -> Any:
        last = self.graph.value[unit.last]
        weight = last.args[1]
        data = self.owner._conv1x1_data(last)
        n, c, h, w = shape_of(data)
        out = shape_of(unit.output)
        gvar = self.owner.kernel("scatter", BufferConvSpec(n, c, out[1], h, w, channels))
        return lambda: relax.call_tir_inplace(
            gvar, [self.visit_expr(data), weight, unit.bias, relax.const(slots), self.visit_expr(buf)], [4],
            relax.TensorType([n, channels, h, w], "float32"))

    def _absorb(self, user: relax.Var, how: tuple, end: relax.Var, buf: relax.Var, slot_of: np.ndarray) -> Any:
        """The consumer `user` of the stage's last tensor (or of a per-channel op after it) rewritten to read the
        buffer, its constants permuted by `slot_of` (logical channel j -> buffer channel)."""
        call = self.graph.value[user]
        kind, detail = how
        out_ty = call.ty_args[0] if call.ty_args else call.ty
        if kind == "shuffled":  # conv5: input j reads concat[g(j)]; concat channel q sits at slot_of[q]
            g = shuffle_map(len(slot_of), detail)
            lands = np.argsort(g)[slot_of[g]]  # the input j' whose shuffled read finds j's value in the buffer
            weight = relax.const(_permute_inputs(call.args[1].fields[1].value.numpy(), lands))
            return lambda: relax.call_tir(call.args[0], [self.visit_expr(buf), weight], out_ty)

        def source() -> relax.Expr:
            return self.visit_expr(buf) if detail.same_as(end) else self.visit_expr(detail)

        if kind == "conv":
            if _is_op(call, "relax.nn.conv2d"):
                weight = relax.const(_permute_inputs(call.args[1].value.numpy(), slot_of))
                return lambda: relax.Call(call.op, [source(), weight], call.attrs, call.ty_args)
            weight = relax.const(_permute_inputs(call.args[1].fields[1].value.numpy(), slot_of))
            return lambda: relax.call_tir(call.args[0], [source(), weight], out_ty)
        # per channel, the output keeps the buffer's order: depthwise conv (weights by channel), bias, ReLU
        if _is_op(call, "relax.nn.conv2d"):
            weight = relax.const(_permute_channels(call.args[1].value.numpy(), slot_of, 0))
            return lambda: relax.Call(call.op, [source(), weight], call.attrs, call.ty_args)
        if _is_op(call, "relax.add"):
            bias = relax.const(_permute_channels(call.args[1].value.numpy(), slot_of, 1))
            return lambda: relax.op.add(source(), bias)
        return lambda: relax.op.nn.relu(source())

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if binding.var in self.dropped:
            return
        action = self.actions.get(binding.var)
        if action is None:
            super().visit_var_binding_(binding)
            return
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        new = emit(action(), binding.var.name)
        self.set_var_remap(binding.var, new)
