"""FoldBatchNorm: inference-mode BatchNorm folded into the weights of the convolution before it.

    y = gamma * (conv(x, W) - mean) / sqrt(var + eps) + beta
      = conv(x, W * s) + (beta - mean * s),        s = gamma / sqrt(var + eps)   (per output channel)

Rewrites `batch_norm(conv2d(x, W), gamma, beta, mean, var)[0]` with every parameter a constant, NCHW data,
OIHW kernel, `axis=1`, into `conv2d(x, W') + b'` with W' and b' computed here in float64 and stored as float32
constants. Numerically this rounds W*s once instead of rounding conv and scale separately: the difference from
the unfolded graph is within float32 rounding (≈1e-7 relative). TVM's own `FoldBatchnormToConv2D` emits the
arithmetic as graph ops and relies on constant folding afterwards; this pass leaves nothing to fold and counts
what it did.

Needs: weights bound as constants (the importers do this). Run before `DecomposeOpsForInference`, which would
otherwise turn every remaining BatchNorm into a multiply-add epilogue. Leaves unchanged: BatchNorm after
anything but a conv2d, training-mode BatchNorm, other layouts, non-constant parameters.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import TupleGetItemPattern, is_const, is_op, rewrite_call, wildcard


@relax.transform.function_pass(opt_level=0, name="FoldBatchNorm")
class FoldBatchNorm:
    """Fold constant inference BatchNorm into the preceding conv2d; `counters["FoldBatchNorm"]` counts folds."""

    def __init__(self, counters: Counter | None = None) -> None:
        self.counters = counters if counters is not None else Counter()
        self.data = wildcard()
        self.weight = is_const()
        self.conv = is_op("relax.nn.conv2d")(self.data, self.weight)
        self.gamma, self.beta, self.mean, self.var = is_const(), is_const(), is_const(), is_const()
        self.bn = is_op("relax.nn.batch_norm")(self.conv, self.gamma, self.beta, self.mean, self.var)
        self.pattern = TupleGetItemPattern(self.bn, 0)

    def transform_function(self, func: relax.Function, _mod: tvm.IRModule, _ctx: tvm.transform.PassContext):
        if func.attrs is not None and func.attrs.get("Primitive", 0):
            return func
        return rewrite_call(self.pattern, self._rewrite, func)

    def _rewrite(self, expr: relax.Expr, matches: dict) -> relax.Expr:
        conv, bn = matches[self.conv], matches[self.bn]
        if (
            conv.attrs.data_layout != "NCHW" or conv.attrs.kernel_layout != "OIHW"
            or conv.attrs.out_layout != "NCHW" or int(bn.attrs.axis) != 1 or bool(bn.attrs.training)
            or not bn.attrs.center or not bn.attrs.scale
        ):
            return expr
        weight = matches[self.weight].value.numpy()
        if weight.dtype != np.float32:
            return expr
        gamma, beta, mean, var = (matches[p].value.numpy().astype(np.float64)
                                  for p in (self.gamma, self.beta, self.mean, self.var))
        scale = gamma / np.sqrt(var + float(bn.attrs.epsilon))
        folded_weight = (weight.astype(np.float64) * scale[:, None, None, None]).astype(np.float32)
        folded_bias = (beta - mean * scale).astype(np.float32).reshape(1, -1, 1, 1)
        out = relax.Call(conv.op, [matches[self.data], relax.const(folded_weight)], conv.attrs)
        self.counters[self.__class__.__name__] += 1
        return relax.op.add(out, relax.const(folded_bias))
