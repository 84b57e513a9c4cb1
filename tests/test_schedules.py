"""Hand-written schedules (schedules/): each rule claims its kernels, leaves others, and computes exactly what
the unscheduled kernel computes — on x86 here, on aarch64 under qemu (test_arm.py builds with them), and its
CUDA variant compiles (test_build_run.py)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import tvm
from shuffletvm.schedules import RULES, fallback
from tvm.s_tir.stmt import SBlockRealize

from shuffletvm.targets import TargetOptions, resolve_target

X86 = resolve_target("x86").tvm_target()


def _kernels(model: str, fuse_stem: bool = True) -> list[tuple[str, tvm.tirx.PrimFunc]]:
    """The model's unscheduled kernels on x86 as tuning sees them (`fuse_stem=False`: with the stem's conv and
    max pool, which FuseStemConvPool otherwise replaces with its hand-written kernel)."""
    from shuffletvm.build import load_graph
    from shuffletvm.pipeline import PipelineOptions, lower_for_tuning

    mod = lower_for_tuning(load_graph(model, 1).mod, X86, PipelineOptions(fuse_stem=fuse_stem))
    return [(gv.name_hint, f) for gv, f in mod.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc) and not f.attrs.get("tirx.is_scheduled", False)]


@pytest.fixture(scope="module")
def kernels():
    return _kernels("shufflenet_v2_x0_5") + _kernels("shufflenet_v1_g3_x0_5", fuse_stem=False)


def _run(func: tvm.tirx.PrimFunc, args: list[np.ndarray]) -> np.ndarray:
    import tvm.runtime

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=X86)
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    return tensors[-1].numpy()


def _arg(info, rng) -> np.ndarray:
    """A random argument; an int32 one is a channel table (KeepIdentityInPlace's kernels): distinct channels."""
    shape = [int(s) for s in info.shape]
    if str(info.dtype) == "int32":
        return rng.permutation(2 * shape[0])[: shape[0]].astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)


def _claims(func: tvm.tirx.PrimFunc) -> list[str]:
    return [name for name, rule in RULES.items() if rule(func, X86) is not None]


def test_each_kernel_is_claimed_by_at_most_one_rule_and_every_rule_fires(kernels):
    fired: Counter = Counter()
    for name, func in kernels:
        claims = _claims(func)
        assert len(claims) <= 1, (name, claims)
        fired.update(claims)
    # V2 0.5x + V1 g3 0.5x: depthwise 3x3 (stride 1 and 2), 1x1 convs (grouped and not), the classifier
    # (packed: the 1x1 convs of the 7x7 stage, whose weights the layout phase packed)
    assert fired["depthwise_conv3x3"] >= 8 and fired["grouped_conv1x1"] >= 8 and fired["matmul"] == 2, fired
    assert fired["packed_conv1x1"] >= 3, fired
    # KeepIdentityInPlace's convs reading / writing stage-buffer channels are the same convs to the rules
    in_place = {name: _claims(func) for name, func in kernels if "gather" in name or "scatter" in name}
    from .conftest import v2_stages_in_place

    stages = v2_stages_in_place(X86)
    assert len(in_place) >= 2 * stages and all(c == ["grouped_conv1x1"] for c in in_place.values()), in_place


def test_rules_say_not_mine():
    kernels = _kernels("shufflenet_v2_x0_5", fuse_stem=False)
    assert {"fused_conv2d_add_relu", "max_pool2d"} <= {name for name, _ in kernels}
    for name, func in kernels:
        claims = _claims(func)
        if "max_pool" in name or "mean" in name:
            assert not claims, (name, claims)
        if name == "fused_conv2d_add_relu":  # the 3x3 stride-2 stem: dense, not depthwise, not 1x1
            assert not claims


@pytest.mark.parametrize("rule", list(RULES) + ["fallback"])
def test_schedule_computes_what_the_kernel_computes(kernels, rule):
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(0)
    checked = 0
    for name, func in kernels:
        if rule == "fallback":
            if _claims(func):
                continue
            sch = fallback.schedule(func, X86)
        else:
            sch = RULES[rule](func, X86)
        if sch is None:
            continue
        args = [_arg(a, rng) for a in ArgInfo.from_prim_func(func)]
        expected = _run(func, [a.copy() for a in args])
        got = _run(sch.mod["main"], [a.copy() for a in args])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(), err_msg=name)
        checked += 1
    assert checked >= (2 if rule in ("matmul", "fallback") else 3 if rule == "packed_conv1x1" else 8), checked


def test_schedules_target_the_vector_width():
    from shuffletvm.schedules._common import vector_lanes

    def lanes(mcpu: str, *mattr: str) -> int:
        spec = {"kind": "llvm", "mcpu": mcpu, **({"mattr": list(mattr)} if mattr else {})}
        return vector_lanes(resolve_target(json.dumps(spec)).tvm_target())

    # LLVM decides, so CPUs no list named and generic levels get their width too
    assert [lanes(c) for c in ("skylake-avx512", "znver4", "emeraldrapids", "x86-64-v4", "diamondrapids")] == [16] * 5
    assert [lanes(c) for c in ("haswell", "znver3", "alderlake", "x86-64-v3", "x86-64")] == [8] * 5
    assert lanes("haswell", "+avx512f") == 16 and lanes("skylake-avx512", "-avx512f") == 8
    assert vector_lanes(resolve_target("x86", TargetOptions(mcpu="skylake-avx512")).tvm_target()) == 16
    assert vector_lanes(resolve_target("arm").tvm_target()) == 4


def test_row_tiles_on_avx2_split_rows_wider_than_a_register():
    """14-wide rows (14x14 planes) as two 7-wide vectors on AVX2: LLVM legalizes one 14-wide vector very badly
    there (measured 638 vs 93 us); the result is the same."""
    from shuffletvm.schedules import grouped_conv1x1

    from shuffletvm.kernels.shuffled_group_conv import ShuffledGroupConvSpec, shuffled_group_conv
    from shuffletvm.targets import TargetOptions

    avx2 = resolve_target("x86", TargetOptions(mcpu="haswell")).tvm_target()
    func = shuffled_group_conv(ShuffledGroupConvSpec(1, 24, 16, 14, 14, 1, 1))
    sch = grouped_conv1x1.schedule(func, avx2)
    vectorized = [int(sch.get(loop).extent) for loop in sch.get_loops(sch.get_sblock("group_conv2d_nchw_update"))
                  if int(sch.get(loop).kind) == 2]  # ForKind.VECTORIZED
    assert vectorized == [7], vectorized
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32) for s in ((1, 24, 14, 14), (16, 24, 1, 1), (1, 16, 14, 14))]
    np.testing.assert_allclose(_run(sch.mod["main"], [a.copy() for a in args]), _run(func, [a.copy() for a in args]),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("mcpu", "spec", "tile"), [
    # V1 g3 1.0x, 60 -> 240 in 3 groups @28x28 reading the shuffle: 49 vectors of 16 pixels, one per tile, so
    # 20 channels of a group (80; a divisor within 30 accumulators)
    ("skylake-avx512", (1, 60, 240, 28, 28, 3, 3), (20, 1)),
    # V1 g8 1.0x, 96 -> 360 in 8 groups: 45 channels a group, 15 of them
    ("skylake-avx512", (1, 96, 360, 28, 28, 8, 8), (15, 1)),
    # V2 1.0x's 58 -> 58 @28x28: 29 channels x 1 vector, 29 of 32 registers
    ("skylake-avx512", (1, 58, 58, 28, 28, 1, 1), (29, 1)),
    # V2 2.0x's 122 -> 122 @28x28 (122 = 2 x 61): 5 tiles of 25 channels, the last one of 22
    ("skylake-avx512", (1, 122, 122, 28, 28, 1, 1), (25, 1)),
    # V1 g3's 24 -> 60 @56x56: 4 vectors of pixels leave room for 7 channels: 9 tiles, the last one of 4
    ("skylake-avx512", (1, 24, 60, 56, 56, 1, 1), (7, 4)),
    # AVX2, 12 accumulators: 4 vectors would leave 3 channels, so 2 vectors x 6 channels
    ("haswell", (1, 24, 60, 56, 56, 1, 1), (6, 2)),
    # V2's 58 channels divide by 2 and 29 only: 10 tiles of 6 channels, the last one of 4 (was 2 x 4)
    ("haswell", (1, 24, 58, 56, 56, 1, 1), (6, 2)),
    ("haswell", (1, 58, 58, 28, 28, 1, 1), (6, 2)),
    # grouped: a divisor of the group's channels (20) where one makes 4 channels
    ("haswell", (1, 240, 60, 28, 28, 3, 3), (5, 2)),
    # V1 g4 1.0x's 272 -> 68 in 4 groups: 17 channels a group, whose divisors (1, 17) make no tile: 3 tiles of 6
    # channels a group, the last one of 5 (was 1 channel x 2 vectors)
    ("haswell", (1, 272, 68, 28, 28, 4, 4), (6, 2)),
])
def test_conv1x1_pixel_tiles_fill_the_accumulators(mcpu, spec, tile):
    """NCHW 1x1 convs on planes of whole vectors: the tile (channels x vectors of pixels, unrolled x
    vectorized) fills the accumulators of the register file with channels of one group; where a group's channels
    are not a multiple of the tile's (ungrouped convs; grouped ones whose divisors make no tile), the tiles of
    channels are unrolled too, so that the partial tile's predicate depends on unrolled loops only (a constant
    once unrolled: inside the reduction loop it would keep its accumulators in memory), and a grouped conv's
    partial tile writes its group's channels only; what it computes."""
    from shuffletvm.schedules._common import vector_lanes

    unrolled, vectorized, target = _scheduled_conv1x1_loops(mcpu, spec)
    per_group, (channels, vectors) = spec[2] // spec[5], tile
    assert unrolled == ([channels] if per_group % channels == 0 else [-(-per_group // channels), channels]), unrolled
    assert vectorized == [vectors * vector_lanes(target)]


def _scheduled_conv1x1_loops(mcpu: str, spec: tuple) -> tuple[list[int], list[int], object]:
    """The extents of the unrolled and of the vectorized loops around the accumulation of the 1x1 conv kernel
    `spec` (ShuffledGroupConvSpec's fields) as grouped_conv1x1 schedules it for `mcpu`, and the target; checked on
    the way: the accumulation's predicate (a partial tile's) depends on unrolled loops only, and the scheduled
    kernel computes what the unscheduled one does."""
    from shuffletvm.schedules import grouped_conv1x1

    from shuffletvm.kernels.shuffled_group_conv import ShuffledGroupConvSpec, shuffled_group_conv
    from shuffletvm.targets import TargetOptions

    target = resolve_target("x86", TargetOptions(mcpu=mcpu)).tvm_target()
    func = shuffled_group_conv(ShuffledGroupConvSpec(*spec))
    batch, cin, cout, h, w, groups, _ = spec
    sch = grouped_conv1x1.schedule(func, target)
    update = sch.get_sblock("group_conv2d_nchw_update")
    loops = [sch.get(loop) for loop in sch.get_loops(update)]
    unrolled = [lp for lp in loops if lp.kind == tvm.tirx.ForKind.UNROLLED]
    realize = sch.get(sch.get_loops(update)[-1]).body
    assert isinstance(realize, SBlockRealize)
    predicate_vars = {v.name for v in tvm.tirx.analysis.undefined_vars(realize.predicate)}
    assert predicate_vars <= {lp.loop_var.name for lp in unrolled}, realize.predicate
    writes = _output_writes(sch)
    assert writes
    for predicate in writes if groups > 1 else []:
        # a grouped conv's partial tile writes its group's channels only, not up to the output's last (the last
        # tile of a group would write the first channels of the next, which another task computes)
        unconditional = isinstance(predicate, tvm.tirx.IntImm) and bool(predicate.value)
        assert unconditional or f"< T.int64({cout // groups})" in str(predicate), predicate
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32)
            for s in ((batch, cin, h, w), (cout, cin // groups, 1, 1), (batch, cout, h, w))]
    np.testing.assert_allclose(_run(sch.mod["main"], [a.copy() for a in args]), _run(func, [a.copy() for a in args]),
                               rtol=1e-5, atol=1e-5)
    return ([int(lp.extent) for lp in unrolled],
            [int(lp.extent) for lp in loops if lp.kind == tvm.tirx.ForKind.VECTORIZED], target)


def _output_writes(sch) -> list:
    """The predicates of the blocks that write the scheduled kernel's output (its last parameter)."""
    output = sch.mod["main"].params[-1]
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    return [sch.get(sch.get_loops(b)[-1]).body.predicate for b in blocks
            if any(w.source.same_as(output) for w in sch.get(b).writes)]


@pytest.mark.parametrize(("mcpu", "spec", "tile"), [
    # V2 1.0x's 116 -> 116 @14x14 (116 = 4 x 29): a divisor would be 4 channels x 2 rows (8 accumulators), so 9
    # tiles of 13 channels x 2 rows, the last one of 12
    ("skylake-avx512", (1, 116, 116, 14, 14, 1, 1), (13, 2)),
    # V2 2.0x's 244 (4 x 61): 18 tiles of 14 channels, the last one of 6
    ("skylake-avx512", (1, 244, 244, 14, 14, 1, 1), (14, 2)),
    # V2 1.0x's 232 -> 232: a divisor that fills 16 accumulators, 8 channels x 2 rows
    ("skylake-avx512", (1, 232, 232, 14, 14, 1, 1), (8, 2)),
    # V1 g3: 10 of a group's 80 channels x 2 rows
    ("skylake-avx512", (1, 120, 240, 14, 14, 3, 3), (10, 2)),
    # AVX2: a 14-wide row is 2 registers; 2 rows would leave 2 channels: 6 channels x 1 row, the last tile of 116
    # with 2
    ("haswell", (1, 116, 116, 14, 14, 1, 1), (6, 1)),
    # grouped: 40 channels a group, whose divisors within 6 make 5 (10 accumulators): 7 tiles of 6 channels a
    # group, the last one of 4
    ("haswell", (1, 120, 120, 14, 14, 3, 3), (6, 1)),
    # V1 g4 1.0x's 544 -> 136 in 4 groups (34 = 2 x 17 a group): a divisor would be 2 channels, so 6 tiles of 6
    # channels a group, the last one of 4 (was 2 channels x 1 row); with AVX-512, 3 tiles of 12 x 2 rows, the
    # last of 10
    ("haswell", (1, 136, 136, 14, 14, 4, 4), (6, 1)),
    ("skylake-avx512", (1, 136, 136, 14, 14, 4, 4), (12, 2)),
])
def test_conv1x1_row_tiles_fill_the_accumulators(mcpu, spec, tile):
    """NCHW 1x1 convs on planes that are not whole vectors (14x14): the tile (channels x rows, unrolled, each row
    one or two vectors) takes the most rows whose channels hold `MIN_ROW_ACCUMULATORS` accumulators, a divisor of
    a group's channels, else the fewest equal tiles with a partial last one, whose predicate depends on unrolled
    loops only (a grouped conv's: of each group, its write bounded by the group); what it computes."""
    unrolled, vectorized, _ = _scheduled_conv1x1_loops(mcpu, spec)
    per_group, (channels, rows) = spec[2] // spec[5], tile
    split_row = [2] if mcpu == "haswell" else []  # 14 wide as 2 x 7
    tiles = [] if per_group % channels == 0 else [-(-per_group // channels)]
    assert unrolled == [*tiles, channels, rows, *split_row], unrolled
    assert vectorized == [7 if split_row else 14]


@pytest.mark.parametrize("mcpu, lanes, rows", [
    ("skylake-avx512", 16, {28: 14, 14: 14, 32: 32}),
    ("haswell", 8, {28: 28, 14: 7, 32: 32}),
])
def test_depthwise_rows_llvm_cannot_split_cleanly_are_computed_as_equal_vectors(mcpu, lanes, rows):
    """A row that is not one register, nor whole registers plus a power of two (28 wide on AVX-512: 16 + 12; 14
    wide on AVX2: 8 + 6), as equal vectors of at most a register, in the accumulation, its init and the write:
    LLVM builds such a vector's operands from scalar inserts. Other rows stay one vector (28x28 planes, 14x14,
    32x32). Each computes what the unscheduled kernel does."""
    from shuffletvm.schedules import depthwise_conv3x3
    from shuffletvm.schedules._common import vector_lanes
    from tvm import te, topi

    from shuffletvm.targets import TargetOptions

    target = resolve_target("x86", TargetOptions(mcpu=mcpu)).tvm_target()
    assert vector_lanes(target) == lanes
    rng = np.random.default_rng(0)
    for channels, size, stride in ((24, 28, 1), (16, 14, 1), (16, 32, 1)):
        x = te.placeholder((1, channels, size, size), name="x")
        w = te.placeholder((channels, 1, 3, 3), name="w")
        b = te.placeholder((1, channels, 1, 1), name="b")
        out = topi.add(topi.nn.group_conv2d_nchw(x, w, stride, 1, 1, channels), b)
        func = te.create_prim_func([x, w, b, out])
        sch = depthwise_conv3x3.schedule(func, target)
        width = (size - 1) // stride + 1
        # the accumulation, its init, the write
        assert _vector_loops(sch.mod["main"], but="pad_temp") == [rows[width]] * 3, (channels, size, stride)
        args = [rng.standard_normal([int(d) for d in t.shape]).astype(np.float32) for t in (x, w, b, out)]
        got, expected = (_run(f, [a.copy() for a in args]) for f in (sch.mod["main"], func))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mcpu, vectorized", [("skylake-avx512", False), ("haswell", False), ("neon", True)])
def test_depthwise_stride_2_rows_are_left_to_llvm_on_x86(mcpu, vectorized):
    """At stride 2 on x86 the schedule vectorizes no loop (a TVM vector of every other input column is built
    from element inserts; LLVM vectorizes the plain loops, with deinterleaving loads where it can: measured in
    benchmarks/depthwise_stride2.py); NEON keeps its row vectors. Stride 1 keeps them everywhere. Each computes
    what the unscheduled kernel does."""
    from shuffletvm.schedules import depthwise_conv3x3
    from tvm import te, topi

    from shuffletvm.targets import TargetOptions

    target = (resolve_target("arm").tvm_target() if mcpu == "neon"
              else resolve_target("x86", TargetOptions(mcpu=mcpu)).tvm_target())
    rng = np.random.default_rng(0)
    for stride in (2, 1):
        x = te.placeholder((1, 8, 28, 28), name="x")
        w = te.placeholder((8, 1, 3, 3), name="w")
        b = te.placeholder((1, 8, 1, 1), name="b")
        out = topi.add(topi.nn.group_conv2d_nchw(x, w, stride, 1, 1, 8), b)
        func = te.create_prim_func([x, w, b, out])
        scheduled = depthwise_conv3x3.schedule(func, target).mod["main"]
        assert bool(_vector_loops(scheduled, but="")) == (vectorized or stride == 1), (mcpu, stride)
        if mcpu == "neon":
            continue  # aarch64 code: built and run under emulation in test_arm.py
        args = [rng.standard_normal([int(d) for d in t.shape]).astype(np.float32) for t in (x, w, b, out)]
        got, expected = (_run(f, [a.copy() for a in args]) for f in (scheduled, func))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_packed_conv_padded_to_whole_registers_accumulates_full_vectors():
    """232 output channels on a 7x7 plane (V2 1.0x's last stage) with AVX-512: the weights padded to 240, the
    accumulation and its init 16 lanes wide; the write-back, with the bias and ReLU folded in, skips the 8
    padded channels. The fused kernel as the pipeline leaves it computes what it did unscheduled."""
    from shuffletvm.schedules import packed_conv1x1
    from tvm import relax
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_conv1x1 import CROP_NAME
    from shuffletvm.pipeline import lower_for_tuning
    from shuffletvm.targets import TargetOptions

    rng = np.random.default_rng(0)
    weight = relax.const(rng.standard_normal((232, 232, 1, 1)).astype(np.float32))
    bias = relax.const(rng.standard_normal((1, 232, 1, 1)).astype(np.float32))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 232, 7, 7), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, weight))
            out = bb.emit_output(relax.op.nn.relu(bb.emit(relax.op.add(conv, bias))))
        bb.emit_func_output(out)
    avx512 = resolve_target("x86", TargetOptions(mcpu="skylake-avx512")).tvm_target()
    mod = lower_for_tuning(bb.get(), avx512)
    [func] = [f for f in mod.functions.values()
              if isinstance(f, tvm.tirx.PrimFunc) and f'T.sblock("{CROP_NAME}")' in f.script()]
    assert _vector_loops(packed_conv1x1.schedule(func, avx512).mod["main"], but=CROP_NAME) == [16, 16]
    # numerics scheduled for this machine's CPU (AVX2 runs the 16-lane blocks as two registers)
    args = [_arg(a, rng) for a in ArgInfo.from_prim_func(func)]
    got, expected = (_run(f, [a.copy() for a in args]) for f in (packed_conv1x1.schedule(func, X86).mod["main"], func))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("mcpu", "block", "spec", "tile", "parallel"), [
    # AVX2: about 12 accumulators, 4, 3 or 2 blocks of a group.
    # V2 1.0x conv5 464 -> 1024 @7x7: 4 blocks x 3 pixels, the last of 17 tiles (pixel 48 alone) predicated
    ("haswell", 8, (1, 464, 1024, 7, 7, 1, 1), (4, 3), 32),
    # V1 g8 1.0x stage 3, 768 -> 192 in 8 groups @14x14, reading the shuffle: 3 blocks (a group) x 4 pixels
    ("haswell", 8, (1, 768, 192, 14, 14, 8, 8), (3, 4), 8),
    # V2 0.5x stage 4, 96 -> 96 @7x7: 4 blocks would leave 3 tasks for 2 cores; 3 blocks x 4 pixels, 4 tasks
    ("haswell", 8, (1, 96, 96, 7, 7, 1, 1), (3, 4), 4),
    # 29 blocks (V2 1.0x's 232 channels) divide by no 2-4: one block x 7 pixels, still blocks in parallel
    ("haswell", 8, (1, 232, 232, 7, 7, 1, 1), (1, 7), 29),
    # short reductions keep this rule where SHORT_TILES divide no plane (V1 g3 1.0x stage 4, 240 -> 960 g3 @7x7,
    # 80 deep) and in ungrouped convs (V2 0.5x stage 3, 48 -> 48 @14x14)
    ("haswell", 8, (1, 240, 960, 7, 7, 3, 3), (4, 3), 30),
    ("haswell", 8, (1, 48, 48, 14, 14, 1, 1), (3, 4), 2),
    # AVX-512: 2 or 3 blocks of a group x 7 pixels.
    # V2 1.0x conv5: 2 blocks x 7 pixels, the 32 pairs of blocks in parallel
    ("skylake-avx512", 16, (1, 464, 1024, 7, 7, 1, 1), (2, 7), 32),
    # V2 0.5x stage 4, 96 -> 96: 6 blocks; 2 would leave 3 tasks for 2 cores, so 3 blocks x 7 pixels
    ("skylake-avx512", 16, (1, 96, 96, 7, 7, 1, 1), (3, 7), 2),
    # V2 1.0x's 232 channels, 15 blocks of 16: 3-block tiles, but 5 tasks for 2 cores: the 35 tiles in parallel
    ("skylake-avx512", 16, (1, 232, 232, 7, 7, 1, 1), (3, 7), 35),
    # ... at batch 8, 40 tasks: blocks in parallel
    ("skylake-avx512", 16, (8, 232, 232, 7, 7, 1, 1), (3, 7), 40),
    # V1 g8 1.0x stage 4, 1536 -> 192 in 8 groups: 3 blocks of 8 per group, a group per tile
    ("skylake-avx512", 8, (1, 1536, 192, 7, 7, 8, 1), (3, 7), 8),
])
def test_packed_conv_register_tiles(mcpu, block, spec, tile, parallel):
    """The register tile by register file: its blocks x pixels (unrolled), what runs in parallel (the blocks of
    channels, each walking its pixel tiles, or every tile), and what the kernel computes, the plane's last tile
    past its end included (built for this host: the loops are the same whatever the instructions)."""
    from shuffletvm.schedules import packed_conv1x1 as rule
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_conv1x1 import PackedConv1x1Spec, packed_conv1x1
    from shuffletvm.passes.partition_rows_across_cores import _loops
    from shuffletvm.targets import TargetOptions

    target = resolve_target("x86", TargetOptions(mcpu=mcpu, num_cores=2)).tvm_target()
    func = packed_conv1x1(PackedConv1x1Spec(*spec, block=block))
    scheduled = rule.schedule(func, target).mod["main"]
    loops = _loops(scheduled.body)
    kinds = {kind: [int(lp.extent) for lp in loops if lp.kind == kind] for kind in tvm.tirx.ForKind}
    assert kinds[tvm.tirx.ForKind.PARALLEL] == [parallel]
    assert kinds[tvm.tirx.ForKind.UNROLLED][-2:] == list(tile)  # the update's blocks x pixels, after the init's
    assert set(kinds[tvm.tirx.ForKind.VECTORIZED]) == {block}
    rng = np.random.default_rng(0)
    args = [_arg(a, rng) for a in ArgInfo.from_prim_func(func)]
    got, expected = (_run(f, [a.copy() for a in args]) for f in (scheduled, func))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("spec", [
    (1, 120, 480, 14, 14, 3, 3),  # V1 g3 1.0x stage 3, the expand conv reading the shuffle: 40 deep
    (1, 192, 1536, 14, 14, 8, 8),  # V1 g8 1.0x stage 3: 24 deep
])
def test_packed_conv_short_grouped_reduction_unrolled_with_vector_writes(spec):
    """AVX2, a grouped conv whose reduction is short (V1's 14x14 expand convs): 2 blocks x 4 pixels, so no
    tile is predicated (196 = 4 x 49); the reduction unrolled whole; the write-back one 4-pixel vector per
    channel of the tile (16 of them, unrolled) instead of 64 scalar stores. Computes what it did unscheduled."""
    from shuffletvm.schedules import packed_conv1x1 as rule
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_conv1x1 import PackedConv1x1Spec, packed_conv1x1
    from shuffletvm.passes.partition_rows_across_cores import _loops
    from shuffletvm.targets import TargetOptions

    target = resolve_target("x86", TargetOptions(mcpu="haswell", num_cores=2)).tvm_target()
    func = packed_conv1x1(PackedConv1x1Spec(*spec, block=8))
    scheduled = rule.schedule(func, target).mod["main"]
    kinds = {kind: [int(lp.extent) for lp in _loops(scheduled.body) if lp.kind == kind] for kind in tvm.tirx.ForKind}
    reduction = spec[1] // spec[5]
    assert kinds[tvm.tirx.ForKind.PARALLEL] == [spec[2] // 16]  # the pairs of blocks
    assert kinds[tvm.tirx.ForKind.UNROLLED] == [2, 4, reduction, 2, 4, 16]  # init; update; write's channels
    assert sorted(kinds[tvm.tirx.ForKind.VECTORIZED]) == [4, 8, 8]  # the write's pixels; init, update's lanes
    rng = np.random.default_rng(0)
    args = [_arg(a, rng) for a in ArgInfo.from_prim_func(func)]
    got, expected = (_run(f, [a.copy() for a in args]) for f in (scheduled, func))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("rule", "mcpu", "scope"), [
    ("packed_conv1x1", "haswell", "global"),  # V1 g8 1.0x's 14x14 expand conv, the short-reduction tile
    ("grouped_conv1x1", "haswell", "global"),  # the same conv in NCHW: a tile of channels x pixels
    ("packed_conv1x1", "skylake-avx512", "local"),  # unmeasured there: as before
    ("grouped_conv1x1", "skylake-avx512", "local"),
])
def test_conv_tiles_on_avx2_are_stack_memory_not_a_workspace(rule, mcpu, scope):
    """On AVX2 a 1x1 conv's register tile is a "global" buffer: TVM allocates a small one on the stack, where LLVM
    keeps it in registers, and a "local" one with TVMBackendAllocWorkspace (memory it zeroes, stores and reads
    back to write NCHW). The compiled kernel calls TVMBackendAllocWorkspace exactly where the tile is local."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_conv1x1 import PackedConv1x1Spec, packed_conv1x1
    from shuffletvm.kernels.shuffled_group_conv import ShuffledGroupConvSpec, shuffled_group_conv
    from shuffletvm.targets import TargetOptions

    spec = (1, 192, 768, 14, 14, 8, 8)
    func = (packed_conv1x1(PackedConv1x1Spec(*spec, block=8)) if rule == "packed_conv1x1"
            else shuffled_group_conv(ShuffledGroupConvSpec(*spec)))
    target = resolve_target("x86", TargetOptions(mcpu=mcpu, num_cores=2)).tvm_target()
    scheduled = RULES[rule](func, target).mod["main"]
    assert [b.scope() for b in scheduled.body.block.alloc_buffers] == [scope]
    llvm_ir = tvm.compile(scheduled.with_attr("global_symbol", "main"), target=target).mod.inspect_source("ll")
    assert ("TVMBackendAllocWorkspace" in llvm_ir) == (scope == "local")
    if mcpu == "haswell":
        rng = np.random.default_rng(0)
        args = [_arg(a, rng) for a in ArgInfo.from_prim_func(func)]
        got, expected = (_run(f, [a.copy() for a in args]) for f in (scheduled, func))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("spec", "tile"), [
    ((1, 240, 960, 7, 7, 3, 3), (4, 3)),  # V1 g3 1.0x stage 4, the expand conv reading the shuffle: 51 pixels
    ((1, 464, 1024, 7, 7, 1, 1), (4, 3)),  # V2 1.0x conv5
    ((1, 96, 96, 7, 7, 1, 1), (3, 4)),  # V2 0.5x stage 4: 52 pixels
])
def test_packed_conv_plane_padded_to_whole_tiles_has_no_predicate_in_its_reduction(spec, tile):
    """AVX2 on 7x7: the kernel padded to whole tiles (`pixels`) is scheduled with the same tile, the conv block
    without a predicate (which kept most of the tile's accumulators in memory: a load and a store around every FMA)
    and the crop's write-back predicated instead; its output is bit for bit the unpadded kernel's."""
    from shuffletvm.schedules import packed_conv1x1 as rule
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_conv1x1 import BLOCK_NAME, CROP_NAME, PackedConv1x1Spec, packed_conv1x1
    from shuffletvm.passes.partition_rows_across_cores import _loops
    from shuffletvm.targets import TargetOptions

    target = resolve_target("x86", TargetOptions(mcpu="haswell", num_cores=2)).tvm_target()
    plain = packed_conv1x1(PackedConv1x1Spec(*spec, block=8))
    padded = packed_conv1x1(PackedConv1x1Spec(*spec, block=8, pixels=tile[1]))
    scheduled, unpadded = (rule.schedule(f, target).mod["main"] for f in (padded, plain))
    assert _predicated(scheduled) == {CROP_NAME} and f"{BLOCK_NAME}_update" in _predicated(unpadded)
    unrolled = [int(lp.extent) for lp in _loops(scheduled.body) if lp.kind == tvm.tirx.ForKind.UNROLLED]
    assert unrolled[-2:] == list(tile)
    rng = np.random.default_rng(0)
    args = [_arg(a, rng) for a in ArgInfo.from_prim_func(plain)]
    np.testing.assert_array_equal(*(_run(f, [a.copy() for a in args]) for f in (scheduled, unpadded)))


def _predicated(func: tvm.tirx.PrimFunc) -> set[str]:
    """The blocks of `func` whose realize carries a predicate (a loop tile past an extent)."""
    from shuffletvm.passes.partition_rows_across_cores import SBlockRealize, _walk

    found: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, SBlockRealize) and not (
                isinstance(node.predicate, tvm.tirx.IntImm) and int(node.predicate) == 1):
            found.add(node.block.name_hint)

    _walk(func.body, visit)
    return found


def _vector_loops(func: tvm.tirx.PrimFunc, but: str) -> list[int]:
    """The extents of `func`'s vectorized loops, largest first, but those over block `but`."""
    from shuffletvm.passes.partition_rows_across_cores import _loops, _walk

    extents: list[int] = []
    for loop in _loops(func.body):
        if loop.kind != tvm.tirx.ForKind.VECTORIZED:
            continue
        names: list[str] = []
        _walk(loop.body, lambda s: names.append(s.block.name_hint) if isinstance(s, SBlockRealize) else None)
        if but not in names:
            extents.append(int(loop.extent))
    return sorted(extents, reverse=True)


@pytest.mark.parametrize("rows", [1, 8])
def test_packed_classifier_tile_is_its_pack(rows):
    """The classifier packed in tiles of 40 columns (1000 classes, AVX2: `column_tile` 5 x 8): the 25 tiles in
    parallel, each 5 unrolled vectors of 8 accumulating over all 1024 inputs, the images inside the tile (its
    weights read once from memory at batch N); the same numbers as the unscheduled kernel."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from shuffletvm.kernels.packed_matmul import PackedMatmulSpec, packed_matmul
    from shuffletvm.passes.partition_rows_across_cores import _loops

    func = packed_matmul(PackedMatmulSpec(rows, 1024, 1000, 40))
    assert _claims(func) == ["matmul"]
    scheduled = RULES["matmul"](func, resolve_target("x86", TargetOptions(mcpu="haswell")).tvm_target()).mod["main"]
    loops = [(loop.kind, int(loop.extent)) for loop in _loops(scheduled.body)]
    kinds = tvm.tirx.ForKind
    assert loops[0] == (kinds.PARALLEL, 25) and loops[1] == (kinds.SERIAL, rows)
    assert (kinds.UNROLLED, 5) in loops and (kinds.VECTORIZED, 8) in loops and (kinds.SERIAL, 1024) in loops
    rng = np.random.default_rng(0)
    args = [_arg(a, rng) for a in ArgInfo.from_prim_func(func)]
    np.testing.assert_array_equal(_run(scheduled, [a.copy() for a in args]), _run(func, [a.copy() for a in args]))
