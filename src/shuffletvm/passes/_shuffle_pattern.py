"""What the graph passes share: the Relax functions they rewrite, dataflow bindings, a conv's integer attributes
and bias, and the channel-shuffle chain as both importers emit it, checked."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tvm import relax, tirx
from tvm.relax.dpl import is_const, is_op, wildcard


def graph_functions(mod: Any) -> list[tuple[Any, relax.Function]]:
    """(GlobalVar, function) for the module's Relax functions a graph pass rewrites: not the primitive functions
    operator fusion makes, nor TensorIR kernels."""
    return [(gvar, func) for gvar, func in mod.functions.items() if isinstance(func, relax.Function)
            and not (func.attrs is not None and func.attrs.get("Primitive", 0))]


def shape_of(expr: relax.Expr) -> list[int] | None:
    """Static shape of a tensor expression, or None."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return [int(v) for v in ty.shape.values]
    except (TypeError, AttributeError):
        return None


def ints(values: Any) -> list[int]:
    """An op attribute's integers (strides, padding, pool size) as Python ints."""
    return [int(v) for v in values]


def conv_bias() -> tuple[Any, Any]:
    """(the constant, the pattern of a conv's bias: that constant as FoldBatchNorm leaves it, or as the ONNX
    importer writes a Conv's bias, `reshape(B, [1, C, 1, 1])`)."""
    value = is_const()
    return value, value | is_op("relax.reshape")(value, wildcard())


def unit_stride_nchw(attrs: Any) -> bool:
    """A conv2d's attributes say NCHW data / OIHW weights / NCHW output, stride 1, no padding, no dilation: the
    convs the 1x1 rewrites take (the kernel size is the weight's shape to say)."""
    return (attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW"
            and [int(v) for v in attrs.strides] == [1, 1] and not any(int(v) for v in attrs.padding)
            and [int(v) for v in attrs.dilation] == [1, 1])


def float32_out(attrs: Any) -> bool:
    """A conv2d's output dtype is float32, or left unset (its input's)."""
    return attrs.out_dtype in ("", None) or str(attrs.out_dtype) == "float32"


def shuffled_conv_grouping(mod: Any, gvar: Any) -> tuple[int, int] | None:
    """(conv groups, shuffle groups) of kernel `gvar` of `mod` where it is FoldShuffleIntoGroupedConv's
    shuffled_group_conv as that pass inserts it (not yet packed by PackConv1x1Weights), else None."""
    kernel = mod[gvar]
    attrs = kernel.attrs if isinstance(kernel, tirx.PrimFunc) else None
    if attrs is None or "shuffletvm.shuffle_groups" not in attrs or "shuffletvm.packed_block" in attrs:
        return None
    return int(attrs["shuffletvm.conv_groups"]), int(attrs["shuffletvm.shuffle_groups"])


def use_counts(func: relax.Function) -> Counter:
    """How many times each variable is used in `func`."""
    uses: Counter = Counter()

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Var):
            uses[expr] += 1

    relax.analysis.post_order_visit(func.body, visit)
    return uses


class Bindings:
    """One function's dataflow: the variable each value is bound to, and how often each variable is used.
    Pattern matches are values; whether an intermediate feeds anything else is a property of its variable."""

    def __init__(self, func: relax.Function) -> None:
        self.var_of: dict[Any, relax.Var] = {}
        self.uses = use_counts(func)
        relax.analysis.post_order_visit(func.body, self._collect)

    def _collect(self, expr: Any) -> None:
        if isinstance(expr, relax.SeqExpr):
            for block in expr.blocks:
                for binding in block.bindings:
                    if isinstance(binding, relax.VarBinding):
                        self.var_of[binding.value] = binding.var

    def single_use(self, value: relax.Expr) -> bool:
        var = self.var_of.get(value)
        return var is not None and self.uses[var] == 1


def shuffle_patterns(source: Any = None) -> tuple[Any, Any, Any]:
    """(first reshape, permute_dims, last reshape) patterns of `reshape -> permute_dims -> reshape`."""
    first = is_op("relax.reshape")(source if source is not None else wildcard(), wildcard())
    transpose = is_op("relax.permute_dims")(first)
    return first, transpose, is_op("relax.reshape")(transpose, wildcard())


def channel_shuffle(first: relax.Call, transpose: relax.Call, shuffle: relax.Call):
    """(input, groups, NCHW shape) if the three calls are a channel shuffle with groups >= 2, else None:
    (N, C, H, W) -> (N, g, C/g, H, W) -> axes [0, 2, 1, 3, 4] -> (N, C, H, W)."""
    source = first.args[0]
    in_shape, grouped, out_shape = shape_of(source), shape_of(first), shape_of(shuffle)
    if in_shape is None or grouped is None or out_shape is None or len(in_shape) != 4 or len(grouped) != 5:
        return None
    batch, channels, height, width = in_shape
    groups = grouped[1]
    axes = [int(a) for a in transpose.attrs.axes] if transpose.attrs.axes is not None else None
    if (
        axes != [0, 2, 1, 3, 4] or out_shape != in_shape or groups < 2
        or grouped != [batch, groups, channels // groups, height, width] or groups * grouped[2] != channels
    ):
        return None
    return source, groups, in_shape
