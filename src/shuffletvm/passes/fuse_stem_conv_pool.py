"""FuseStemConvPool: on CPUs, the stem's conv -> bias -> ReLU -> max pool runs as one kernel, and its conv output,
the largest activation of the network, is never written to memory.

Both ShuffleNets open with a 3x3 stride-2 conv (BatchNorm folded into it: conv + bias), a ReLU and a 3x3
stride-2 max pool. The stock pipeline makes that two kernels, and the pool reads back the [N, C, H/2, W/2]
tensor the conv just wrote: 1.2 MB per image at 224x224 with 24 channels. The kernel
(`kernels/stem_conv_pool.py`) keeps three conv rows per core and pools them as they come.

Measured on the 2-core Intel VM (`x86-rocketlake-2c`), 2 threads: V2 1.0x's stem kernel alone 81-89 us warm at
batch 1, where the tuned conv ran 120 us warm (150 in the model) before its pool; the models with and without
the pass, interleaved (`benchmarks/sequence_profile.py MODEL --without stem`): V2 1.0x 0.97x, V2 0.5x 0.94x,
V1 g3 0.97x end to end at batch 1, V2 1.0x 0.93x at batch 8 (13.10 vs 14.02 ms).

Rewrites `max_pool2d(relu(add(conv2d(x, W), b)))` with constant W [C, Cin, 3, 3] and a constant bias b of C
values, shaped [1, C, 1, 1] or [C, 1, 1] (FoldBatchNorm's; the ONNX importer's `reshape(B, [1, C, 1, 1])` too),
conv stride 2, padding 1, no dilation, one group, pool 3x3 stride 2 padding 1 without ceil mode, NCHW / OIHW,
float32, into `call_tir(stem_conv_pool, [x, W as [Cin, 3, 3, C], b as [C]])`. Not bit-exact: the
kernel starts each sum at the bias (faster than adding it after, see the kernel) and sums channel, row, column
in that order, where a tuned conv sums in the order its schedule chose; the outputs agree to float rounding.

Leaves unchanged: GPU targets, a conv, add or ReLU result used elsewhere, other kernel sizes, strides,
paddings, layouts or dtypes, shapes the kernel does not take (`StemSpec.supported`: an odd conv output, a
channel count not a multiple of 4). Run after FoldBatchNorm (which makes the conv + bias).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from ..kernels.stem_conv_pool import StemSpec, pack_weight, stem_conv_pool
from ._shuffle_pattern import Bindings, conv_bias, graph_functions, ints, shape_of


def _stem_conv(attrs: Any) -> bool:
    return (attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW"
            and ints(attrs.strides) == [2, 2] and ints(attrs.padding) == [1, 1, 1, 1]
            and ints(attrs.dilation) == [1, 1] and int(attrs.groups) == 1
            and (attrs.out_dtype in ("", None) or str(attrs.out_dtype) == "float32"))


def _stem_pool(attrs: Any) -> bool:
    return (ints(attrs.pool_size) == [3, 3] and ints(attrs.strides) == [2, 2]
            and ints(attrs.padding) == [1, 1, 1, 1] and ints(attrs.dilation) == [1, 1] and not attrs.ceil_mode
            and attrs.layout == "NCHW" and attrs.out_layout == "NCHW")


@tvm.ir.transform.module_pass(opt_level=0, name="FuseStemConvPool")
class FuseStemConvPool:
    """`counters["FuseStemConvPool"]` counts fused stems, `.bytes` the conv output's write and read avoided."""

    def __init__(self, target: Any, counters: Counter | None = None) -> None:
        self.target = target
        self.counters = counters if counters is not None else Counter()
        self.data, self.weight = wildcard(), is_const()
        self.bias_value, self.bias = conv_bias()
        self.conv = is_op("relax.nn.conv2d")(self.data, self.weight)
        self.add = is_op("relax.add")(self.conv, self.bias)
        self.relu = is_op("relax.nn.relu")(self.add)
        self.pool = is_op("relax.nn.max_pool2d")(self.relu)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if "cpu" not in set(self.target.keys):
            return mod
        self.builder = relax.BlockBuilder(mod)
        self.kernels: dict[StemSpec, tvm.ir.GlobalVar] = {}
        for gvar, func in graph_functions(mod):
            self.bindings = Bindings(func)
            self.builder.update_func(gvar, rewrite_call(self.pool, self._rewrite, func))
        return self.builder.get()

    def _rewrite(self, expr: relax.Call, matches: dict) -> relax.Expr:
        from ..schedules._common import vector_lanes
        from .partition_rows_across_cores import cores_of

        conv, add, relu = matches[self.conv], matches[self.add], matches[self.relu]
        if not all(isinstance(v, relax.Call) for v in (expr, conv, add, relu)):  # a var bound to the pool's result
            return expr
        shape, out = shape_of(matches[self.data]), shape_of(expr)
        weight, bias = matches[self.weight].value.numpy(), matches[self.bias_value].value.numpy()
        bias_shape = shape_of(matches[self.bias])
        if (
            shape is None or len(shape) != 4 or weight.ndim != 4 or weight.shape[2:] != (3, 3)
            or weight.shape[1] != shape[1] or bias.size != weight.shape[0]
            or bias_shape not in ([1, weight.shape[0], 1, 1], [weight.shape[0], 1, 1])
            or not _stem_conv(conv.attrs) or not _stem_pool(expr.attrs)
            or not all(self.bindings.single_use(v) for v in (conv, add, relu))
        ):
            return expr
        batch, channels, height, width = shape
        spec = StemSpec(batch, channels, height, width, int(weight.shape[0]), str(matches[self.data].ty.dtype))
        if spec.supported() is not None or out != list(spec.out_shape) or str(weight.dtype) != spec.dtype:
            return expr
        if spec not in self.kernels:
            kernel = stem_conv_pool(spec, vector_lanes(self.target), cores_of(self.target))
            self.kernels[spec] = self.builder.add_func(kernel, "stem_conv_pool")
        conv_height, conv_width = spec.conv_shape
        self.counters[self.__class__.__name__] += 1
        conv_bytes = batch * spec.out_channels * conv_height * conv_width * 4
        self.counters[f"{self.__class__.__name__}.bytes"] += 2 * conv_bytes  # written, then read back
        args = [matches[self.data], relax.const(pack_weight(weight)), relax.const(bias.reshape(-1))]
        return relax.call_tir(self.kernels[spec], args, relax.TensorType(spec.out_shape, spec.dtype))
