"""FuseExpandDepthwise: on CPUs, a stride-2 unit's 1x1 conv -> bias -> ReLU -> 3x3 stride-2 depthwise conv -> bias
runs as one kernel, and the 1x1 conv's output, at the unit's input resolution, is never written to memory.

Every ShuffleNet stride-2 unit opens its main branch so. At the 56x56 stage (the first unit after the stem) the
1x1 conv writes 0.73-0.75 MB per image that the depthwise conv reads back at once, and in a running model that
write goes to memory the previous inference pushed out of cache: V1 g3's conv ran 30 us warm, 72-100 us in the
model on the 2-core Intel VM, where ONNX Runtime's ran 65 (`benchmarks/vendor_layers.py`). The kernel
(`kernels/expand_depthwise.py`) keeps three conv rows per core and convolves them as they come.

Measured with and without, interleaved, both orders (`benchmarks/ab_modules.py`, the tuned log, x86-rocketlake-2c,
2 threads): V2 0.5x 0.963-0.971x, V2 1.0x 0.950-0.955x, V1 g3 0.976-0.982x, V1 g8 0.983-0.986x end to end at batch
1, V2 1.0x 0.911-0.922x at batch 8. On the 56x56 stage alone V2 gained less (1.0x 0.972x, 0.5x 0.983x): every plane.

Rewrites `add(conv2d(relu(add(conv2d(x, W1), b1)), Wd), b2)` with constant W1 [C, Cin, 1, 1] (stride 1, no
padding, one group), Wd [C, 1, 3, 3] (stride 2, padding 1, C groups), constant biases b1, b2 of C values shaped
[1, C, 1, 1] or [C, 1, 1] (FoldBatchNorm's; the ONNX importer's `reshape(B, [1, C, 1, 1])` too), NCHW / OIHW,
float32, an even plane, into `call_tir(expand_depthwise, [x, W1 as [Cin, Cp], b1, Wd as [3, 3, Cp], b2])` (C
zero-padded to whole vectors: Cp). Not bit-exact: the kernel starts each sum at its bias and sums the depthwise
window row by row, where the unfused kernels sum in their schedules' order.

Leaves unchanged: GPU targets, an intermediate (conv, bias add, ReLU, depthwise conv) used elsewhere, other kernel
sizes, strides, paddings, groups, layouts or dtypes, an odd plane (`ExpandDepthwiseSpec.supported`). Run after
KeepIdentityInPlace (whose channel maps the 1x1 conv's weights absorb first) and PackConv1x1Weights (a packed
conv is not matched).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from ..kernels.expand_depthwise import ExpandDepthwiseSpec, expand_depthwise, pack_weights
from ._shuffle_pattern import Bindings, conv_bias, float32_out, graph_functions, ints, shape_of


def _nchw(attrs: Any) -> bool:
    return (attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW"
            and ints(attrs.dilation) == [1, 1] and float32_out(attrs))


def _expand_conv(attrs: Any) -> bool:
    return _nchw(attrs) and ints(attrs.strides) == [1, 1] and ints(attrs.padding) == [0, 0, 0, 0] \
        and int(attrs.groups) == 1


def _depthwise_conv(attrs: Any, channels: int) -> bool:
    return _nchw(attrs) and ints(attrs.strides) == [2, 2] and ints(attrs.padding) == [1, 1, 1, 1] \
        and int(attrs.groups) == channels


@tvm.ir.transform.module_pass(opt_level=0, name="FuseExpandDepthwise")
class FuseExpandDepthwise:
    """`counters["FuseExpandDepthwise"]` counts fused pairs, `.bytes` the 1x1 conv output's write and read
    avoided."""

    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()
        self.data, self.w1, self.wd = wildcard(), is_const(), is_const()
        self.b1_value, self.b1 = conv_bias()
        self.b2_value, self.b2 = conv_bias()
        self.expand = is_op("relax.nn.conv2d")(self.data, self.w1)
        self.add1 = is_op("relax.add")(self.expand, self.b1)
        self.relu = is_op("relax.nn.relu")(self.add1)
        self.depthwise = is_op("relax.nn.conv2d")(self.relu, self.wd)
        self.add2 = is_op("relax.add")(self.depthwise, self.b2)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if "cpu" not in set(self.target.keys):
            return mod
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[ExpandDepthwiseSpec, tvm.ir.GlobalVar] = {}
        for gvar, func in graph_functions(mod):
            self.bindings = Bindings(func)
            self.builder.update_func(gvar, rewrite_call(self.add2, self._rewrite, func))
        return self.builder.get()

    def _rewrite(self, expr: relax.Call, matches: dict) -> relax.Expr:
        from ..schedules._common import vector_lanes
        from .partition_rows_across_cores import cores_of

        inner = [matches[p] for p in (self.expand, self.add1, self.relu, self.depthwise)]
        if not all(isinstance(v, relax.Call) for v in (expr, *inner)):  # a var bound to the last add's result
            return expr
        expand, _add1, _relu, depthwise = inner
        shape, out = shape_of(matches[self.data]), shape_of(expr)
        w1, wd = matches[self.w1].value.numpy(), matches[self.wd].value.numpy()
        b1, b2 = matches[self.b1_value].value.numpy(), matches[self.b2_value].value.numpy()
        channels = w1.shape[0] if w1.ndim == 4 else -1
        if (
            shape is None or len(shape) != 4 or w1.ndim != 4 or w1.shape[1:] != (shape[1], 1, 1)
            or wd.shape != (channels, 1, 3, 3) or b1.size != channels or b2.size != channels
            or shape_of(matches[self.b1]) not in ([1, channels, 1, 1], [channels, 1, 1])
            or shape_of(matches[self.b2]) not in ([1, channels, 1, 1], [channels, 1, 1])
            or not _expand_conv(expand.attrs) or not _depthwise_conv(depthwise.attrs, channels)
            or not all(self.bindings.single_use(v) for v in inner)
        ):
            return expr
        batch, in_channels, height, width = shape
        spec = ExpandDepthwiseSpec(batch, in_channels, height, width, channels, str(matches[self.data].ty.dtype))
        if spec.supported() is not None or out != list(spec.out_shape) or {str(w1.dtype), str(wd.dtype)} != {spec.dtype}:
            return expr
        lanes = vector_lanes(self.target)
        if spec not in self.kernels:
            self.kernels[spec] = self.builder.add_func(expand_depthwise(spec, lanes, cores_of(self.target)),
                                                       "expand_depthwise")
        self.counters[self.__class__.__name__] += 1
        self.counters[f"{self.__class__.__name__}.bytes"] += 2 * batch * channels * height * width * 4
        args = [matches[self.data], *(relax.const(a) for a in pack_weights(w1, b1, wd, b2, lanes))]
        return relax.call_tir(self.kernels[spec], args, relax.TensorType(spec.out_shape, spec.dtype))
