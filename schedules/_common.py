"""What the schedule rules share: reading a legalized conv kernel, the target's vector width, and folding the
element-wise epilogue (bias, residual add, ReLU) into the block that writes the conv's result."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

CONV_BLOCKS = ("conv2d_nchw", "group_conv2d_nchw", "depthwise_conv2d_nchw")


@dataclass(frozen=True)
class ConvShape:
    """A legalized NCHW conv2d kernel: `conv` is its reduction block, loops (n, f, y, x, rc, ry, rx)."""

    block: str
    batch: int
    out_channels: int
    out_h: int
    out_w: int
    in_per_group: int  # reduction channels (rc)
    kernel_h: int
    kernel_w: int
    groups: int
    stride: int = 1  # along the width

    @property
    def depthwise(self) -> bool:
        return self.in_per_group == 1 and self.groups == self.out_channels


def conv_shape(sch: Any) -> ConvShape | None:
    """The conv block of the function `sch` works on, or None if it has none (or more than one)."""
    func = sch.mod["main"]
    names = [n for n in CONV_BLOCKS if find_block(sch, n) is not None]
    if len(names) != 1:
        return None
    block = sch.get(sch.get_sblock(names[0]))
    if len(block.iter_vars) != 7:
        return None
    extents = [int(iv.dom.extent) for iv in block.iter_vars]
    operands = conv_operands(block)
    if operands is None or len(operands[1].shape) != 4:
        return None
    data, weight = operands
    in_per_group = int(weight.shape[1])
    in_channels = int(data.shape[1])
    if in_channels % in_per_group or func is None:
        return None
    n, f, y, x, rc, ry, rx = extents
    return ConvShape(names[0], n, f, y, x, rc, ry, rx, in_channels // in_per_group, _stride_w(block, data))


def _stride_w(block: Any, data: Any) -> int:
    """The conv's stride along the width: the output column's coefficient in the input column it reads."""
    from tvm.sym import detect_linear_equation

    read = next(r for r in block.reads if r.source.same_as(data))
    coefficients = detect_linear_equation(read.region[3].min, [block.iter_vars[3].var])
    return int(coefficients[0]) if len(coefficients) == 2 else 1


def conv_operands(block: Any) -> tuple[Any, Any] | None:
    """(data, weight): the buffers a conv block multiplies. An int32 channel table a kernel indexes its input
    through (kernels/stage_buffer_conv.py's slots) is read too, but is an index, not an operand."""
    operands = [r.source for r in block.reads if "float" in str(r.source.dtype)]
    return (operands[0], operands[1]) if len(operands) == 2 else None


def find_block(sch: Any, name: str) -> Any | None:
    """The block called `name` in the function `sch` works on, or None if it has none."""
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing block
        return None


def vector_lanes(target: Any) -> int:
    """fp32 lanes of the target's widest SIMD register: AVX-512 16, AVX2 8, NEON 4. On x86, LLVM says whether the
    CPU it generates code for has AVX-512 (`mcpu`: a named CPU or a level such as x86-64-v4, plus `mattr`)."""
    keys = set(target.keys)
    if "gpu" in keys:
        return 1
    attrs = target.attrs
    triple = str(attrs["mtriple"]) if "mtriple" in attrs else ""
    if "aarch64" in triple or "arm" in keys:
        return 4
    if target.kind.name != "llvm":
        return 8
    mcpu = str(attrs["mcpu"]) if "mcpu" in attrs else ""
    mattr = tuple(str(a) for a in attrs["mattr"]) if "mattr" in attrs else ()
    return 16 if _llvm_has_avx512(triple, mcpu, mattr) else 8


@functools.cache
def _llvm_has_avx512(triple: str, mcpu: str, mattr: tuple[str, ...]) -> bool:
    from tvm.target import Target
    from tvm.target.codegen import target_has_features

    spec = {"kind": "llvm", **({"mtriple": triple} if triple else {}), **({"mcpu": mcpu} if mcpu else {}),
            **({"mattr": list(mattr)} if mattr else {})}
    return bool(target_has_features("avx512f", Target(spec)))


def tile_scope(target: Any) -> str:
    """The storage scope of a 1x1 conv's register tile (the accumulator `cache_write` makes) on a CPU target.

    TVM turns every allocation on a CPU that is not "global" into a TVMBackendAllocWorkspace call
    (tir.LowerTVMBuiltin; only a global one under 1 KB becomes a stack alloca). A "local" tile is therefore
    memory LLVM cannot promote to registers: it keeps the accumulators in registers through the reduction, then
    zeroes the tile in memory, stores them there and reads them back element by element to write NCHW (V1 g8's
    14x14 expand conv: 8 stores and about 60 scalar reloads a tile, beside 192 FMAs). A "global" tile is a stack
    alloca that LLVM promotes (SROA), so the write-back transposes in registers. MetaSchedule's CPU tiles are
    global too.

    Global on x86 with AVX2, where it was measured (Zen 3: `schedules/README.md`); "local" elsewhere, as before:
    with AVX-512 (Rocket Lake class) global tiles built the same time end to end (0.99-1.01x), and global
    depthwise and classifier tiles too 1.02-1.05x; NEON is unmeasured (it only runs emulated here)."""
    return "global" if target.kind.name == "llvm" and vector_lanes(target) == 8 else "local"  # NEON: 4, GPUs: 1


def pad_producer(sch: Any, conv: Any) -> Any | None:
    producers = [b for b in sch.get_producers(conv) if sch.get(b).name_hint.startswith("pad_temp")]
    return producers[0] if producers else None


def fold_epilogue(sch: Any, write_block: Any) -> Any:
    """Reverse-inline the element-wise consumers (bias, residual add, ReLU) of `write_block` into it, so one
    block writes the kernel's output. Returns that block."""
    while True:
        consumers = sch.get_consumers(write_block)
        if len(consumers) != 1:
            return write_block
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - not inlinable (e.g. a reduction consumer): stop here
            return write_block


def divisor_at_most(n: int, limit: int, multiple_of: int = 1) -> int:
    """The largest divisor of `n` that is <= limit, preferring multiples of `multiple_of`."""
    best = [d for d in range(limit, 0, -1) if n % d == 0 and d % multiple_of == 0]
    return best[0] if best else max(d for d in range(1, limit + 1) if n % d == 0)
