"""PartitionRowsAcrossCores: a dense kernel's parallel loop gives each core a band of output rows, not a block of
output channels, so the dense conv after it reads activations its own core wrote. At batch N (a multiple of the
cores) every kernel gives each core the same whole images.

Runs last in the pipeline's `schedule` phase, on CPUs with more than one core (the target's `num-cores`, which
is also the thread count the built module runs with), on every kernel as scheduled (tuning record, hand-written
schedule or fallback).

Why, measured on the 2-core Intel VM of `tuning_logs/x86-rocketlake-2c` (`benchmarks/sequence_profile.py`):
kernels run ~1.5x slower inside the model than warm on their own (V2 1.0x: 6.3-7.0 ms in sequence, 4.1-4.6 ms
warm), most of it in the dense 1x1 convs of the 28x28 stage (V2 1.0x's gather conv: 90 us warm, 240 us in
sequence, slower even than with its weights and output flushed from cache). Tuned schedules split their
parallel loop over output channels; a dense conv reads every input channel, so half its input sits modified in
the other core's cache and crosses between cores line by line. With one thread the same kernels lose nothing
in sequence. Split by rows, a 1x1 conv reads only the rows its core wrote.

The rewrite of a parallel loop nest (`partition_rows`):

    for p in parallel(N):                for core in parallel(T):
      for q in range(M):        ->         for p in range(N):
        body                                 for q in range(M):
                                               if band(h(p, q)) == core:
                                                 body

`h` is the first output row the iteration writes (the row index of the nest's last 4-d/5-d store, every loop
below the condition at its start), `band(h) = min(h // ceil(H / T), T - 1)`, and the condition sits on the
shallowest loop of the nest's single-child chain whose variables fix `h`. Every iteration runs once, as
before (a parallel loop's iterations are independent); only which core runs it changes. The same rows go to
the same core in every kernel (TVM's pool runs task `i` of a `T`-way loop on thread `i`).

Which kernels, in program order, at batch 1 (`ROWS`):
  - dense ones: some reduction reads the activation input's channel axis through reduction variables alone
    (plain, gather and scatter 1x1 convs, the stem), or (`grouped`, the default) through reduction and output
    variables together (V1's grouped convs) where split by rows few of the output's cache lines would be written
    by both cores (`GROUPED_SHARED_LINES`), and the activations are at least `rows_ratio` times the other
    parameters: split by rows, each core reads every weight. `rows_ratio` is the tuning log's (its target.json,
    `TuningLog.rows_ratio`: its records were measured with it), else `ACTIVATION_TO_WEIGHTS`;
  - channel-local ones (depthwise convs, pooling, copies) whose input comes from a kernel split by rows and
    whose output plane some dense kernel reads split by rows: they follow it, so the dense conv after them
    finds its rows where it runs. A depthwise conv tuned single-threaded (`partition_serial`) gets a parallel
    loop over the row bands, outermost, and pads only its band's rows plus the halo. Into a plane no dense
    kernel splits by rows (V2's 7x7 stage) they keep their schedule: following, V2 1.0x's 7x7 stage ran 0.15 ms
    slower with its 14x14 stage split by rows (the 7x7 depthwise convs 18 -> 62 us);
  - left alone: the weight-heavy 7x7 stage and classifier, nests whose rows are fixed only below a loop with
    several children, and hand-written kernels whose tasks are these row bands already (attribute `SPLIT_ROWS`:
    kernels/grouped_conv_pair.py), which count as split by rows, each of their outputs (the items of the tuple
    they return) too, so the depthwise conv after them follows.
Measured (`benchmarks/sequence_profile.py`, the same build with and without, interleaved, outputs identical):
V2 1.0x 0.90-0.92x, V2 0.5x 0.91-0.93x end to end (three runs each); V1 g3 0.99-1.01x (2 kernels change).
Grouped convs were left split by channels at first ("each core reads the groups it computes"). But V1's grouped
convs read through the channel shuffle before them, so each group's input channels come from every group of the
conv before, half of them from the other core's cache. Split by rows too (`grouped`), they and the depthwise
convs between them keep each core on its own rows at 14x14 and 28x28 (V1 g3 1.0x: 6 kernels instead of 1, V1 g8
1.0x: 10; V2 unchanged). Measured on the Zen 3 class (`sequence_profile.py MODEL --without grouped`, and built
modules side by side, `benchmarks/ab_modules.py --rounds 15-30`; outputs identical), six runs each, end to end:
V1 g3 0.90-1.02x (median 0.95x), V1 g8 0.89-1.05x (median 1.00x: its 14x14 compress conv with the residual, whose
record was tuned split by channels, ran 4-17% slower in sequence split by rows, what the other kernels gained).
Remeasuring V1's records split by rows (`shuffletvm tune ... --remeasure 3 --trials 1`, 4.6 min) built no faster:
that log was not kept. Kernel by kernel (same tool, same CPU, later) the rows paid at 28x28 and cost at 14x14,
warm as well as in sequence: a 14x14 float plane is 12.25 cache lines, and split by rows every plane has its band
boundary inside a line and, three planes in four, its ends too, so one output line in 7 is written by both cores
(at 28x28 one in 49). Grouped convs now go by rows only where at most one line in 16 is so shared
(`shared_lines`): V1 g3 1.0x 5 kernels, V1 g8 1.0x 4 (its 14x14 stage back to channels). V1 g8 0.91-0.98x end
to end (three runs of `benchmarks/ab_modules.py`, outputs identical), V1 g3 0.98-1.01x; against no grouped conv
split by rows (`--without grouped`), V1 g8 0.93-0.97x (three runs), V1 g3 0.90x and 0.97x.

At batch N, a multiple of T (`IMAGES`): every kernel whose output holds the N images, of any kind (grouped
convs, the 7x7 stage, pooling, the classifier too), gives each core the same N/T whole images — the same
rewrite with the output's image index in place of the row, `band(n) = min(n // (N / T), T - 1)` — so no kernel
reads an activation another core wrote, and a 3x3 conv's halo never crosses cores either. Weights are read by
both cores, once per N/T images. Left as they are: nests whose image index is fixed only below a loop with
several children (V2 1.0x: one depthwise conv's tuned schedule, whose batch loop sits under the row loop that
pads and convolves). Measured against the batch-1 rule at batch 8, on the 2-core Zen 5 (interleaved, outputs
identical; `benchmarks/sequence_profile.py MODEL --batch 8 --without images`): V2 0.5x 0.72-0.94x, V2 1.0x
0.83-1.01x (four runs), V1 g3 0.95x, V1 g8 0.90-1.00x.

Under either rule a pure reshape kernel (the classifier's [N, C, 1, 1] -> [N, C]) is left as it is: rewritten,
the VM lowering would no longer see a reshape and would run it as a copy kernel instead of a view.

Counter: `PartitionRowsAcrossCores` (kernels rewritten), `PartitionRowsAcrossCores.images` (of them, split by
images).
Numerically exact: each output element is computed by the same loop body, in the same order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax, tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize

from ..kernels import SPLIT_ROWS
from ..tvm_compat import KERNEL_CALL_OPS


@dataclass(frozen=True)
class Split:
    """How a kernel's iterations go to cores: by the index of output axis `axis` (buffers of `min_ndim`+ axes)."""

    axis: int
    min_ndim: int


ROWS = Split(axis=2, min_ndim=4)  # NCHW and NCHW[x]c: output rows
IMAGES = Split(axis=0, min_ndim=2)  # whole images: NCHW, NCHW[x]c and the classifier's [N, classes]

# Split by rows, each core reads every weight (by channels, half). Measured on V2 1.0x: the 28x28 stage's 1x1
# convs (activations 27x their weights) ran 1.7-1.9x faster in sequence split by rows; the 14x14 stage's (1.7-3.4x)
# lost as much warm as they gained in sequence with records tuned split by channels. V2 0.5x's 14x14 stage (8x)
# gained 13-17%. Tuning now measures kernels split as built (tuning/tune.py `as_built`): searched split by rows,
# the 14x14 stage's convs run 0.16 ms less in sequence on the Intel class, whose log sets `rows_ratio` 1.5
# (benchmarks/RESULTS-x86-rocketlake-2c.md); logs whose records were tuned split by channels keep this default.
ACTIVATION_TO_WEIGHTS = 4

# A grouped conv is split by rows only where at most this fraction of its output's cache lines would be written by
# both cores (`shared_lines`: every output plane has its band boundary, and where a plane is no whole number of
# lines its ends, inside a line the two cores write in turn). Measured on the Zen 3 class (sequence_profile.py
# --without grouped, three runs): V1's 28x28 grouped convs (2% of lines shared) ran 1.16-1.48x faster in sequence
# split by rows, V1 g8's 14x14 ones (14%) 1.09-1.76x slower, warm as well as in sequence. A dense conv split by
# channels reads half its input from the other core at every conv, a grouped conv only at the shuffle it reads
# through: the dense ones keep the rows even at 14x14 (V2, measured as `ACTIVATION_TO_WEIGHTS` says).
GROUPED_SHARED_LINES = 1 / 16
CACHE_LINE = 64  # bytes: x86 and Arm cores


@tvm.ir.transform.module_pass(opt_level=0, name="PartitionRowsAcrossCores")
class PartitionRowsAcrossCores:
    def __init__(self, cores: int, counters: Counter | None = None, images: bool = True,
                 rows_ratio: float | None = None, grouped: bool = True) -> None:
        self.cores = cores
        self.counters = counters if counters is not None else Counter()
        self.images = images  # off: the batch-1 rule (rows of dense kernels) at every batch size
        self.rows_ratio = rows_ratio  # dense kernels split by rows (see `split_alone`); None: the default
        self.grouped = grouped  # grouped convs count as dense (off: they keep their channel split)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if self.cores < 2:
            return mod
        updates: dict[Any, tirx.PrimFunc] = {}
        by_images = 0

        def rewrite(gvar: Any, func: tirx.PrimFunc, split: Split | str) -> bool:
            nonlocal by_images
            rewritten = _partition(func, self.cores, split)
            if rewritten is None:
                return False
            updates[gvar] = rewritten
            by_images += split is IMAGES
            return True

        _decide(mod, self.cores, self.images, self.rows_ratio, self.grouped, rewrite)
        if not updates:
            return mod
        self.counters[self.__class__.__name__] += len(updates)
        self.counters[f"{self.__class__.__name__}.images"] += by_images
        mod = mod.clone()
        for gvar, func in updates.items():
            mod.update_func(gvar, func)
        return mod


def split_alone(func: tirx.PrimFunc, cores: int, images: bool = True, rows_ratio: float | None = None,
                grouped: bool = True) -> Split | None:
    """How the pass splits `func` where the kernel alone decides it: IMAGES for a batch the cores share (every
    kernel: nothing it reads was written on another core), ROWS for a dense kernel (activations at least
    `rows_ratio` times its weights, default `ACTIVATION_TO_WEIGHTS`; with `grouped`, grouped convs too), else None
    (a channel-local kernel follows the kernel before it; a reshape stays one, which the VM lowering makes a view,
    not a copy)."""
    if cores < 2 or relax.analysis.has_reshape_pattern(func):
        return None
    if images and _batched(func, cores):
        return IMAGES
    ratio = ACTIVATION_TO_WEIGHTS if rows_ratio is None else rows_ratio
    return ROWS if _dense(func, ratio, grouped, cores) else None


def partition_alone(func: tirx.PrimFunc, cores: int, images: bool = True, rows_ratio: float | None = None,
                    grouped: bool = True, follow_planes: frozenset = frozenset()) -> tirx.PrimFunc | None:
    """`func` as the pass rewrites it where the kernel alone decides how (`split_alone`), or None. Tuning
    measures its candidates through this (tuning/tune.py), so a record's time is that of the kernel the build
    runs. A channel-local kernel follows its producer's rows in the build, which the kernel alone does not say:
    it is split so here where its output plane is in `follow_planes` (`following_planes` of the tuned models),
    else measured as scheduled."""
    split = split_alone(func, cores, images, rows_ratio, grouped)
    if split is None and follow_planes and _may_follow(func, follow_planes):
        split = FOLLOW
    return _partition(func, cores, split)


def following_planes(mod: tvm.IRModule, cores: int, images: bool = True, rows_ratio: float | None = None,
                     grouped: bool = True) -> frozenset:
    """The output planes (rows, columns) of the kernels of `mod` that follow their producer's rows, decided as the
    pass decides, every split taken to succeed: what `partition_alone` takes to measure a channel-local candidate
    as the build splits it. The kernels must be scheduled (a conv reads its input, not a padded copy, once its
    schedule inlined the padding): tuning gives them their hand schedules first (`tuning.tune.follow_planes_of`)."""
    planes = set()

    def follow(_gvar: Any, func: tirx.PrimFunc, split: Split | str) -> bool:
        if split is FOLLOW:
            planes.add(_plane(func.params[-1]))
        return True

    _decide(mod, cores, images, rows_ratio, grouped, follow)
    return frozenset(planes)


FOLLOW = "follow"  # a channel-local kernel split as its producer is: by rows, or made parallel over row bands


def _decide(mod: tvm.IRModule, cores: int, images: bool, rows_ratio: float | None, grouped: bool,
           split_fn: Callable[[Any, tirx.PrimFunc, Split | str], bool]) -> None:
    """The pass's decisions: each kernel of `mod` once, in program order (then the uncalled ones), with its split
    (IMAGES, ROWS, or FOLLOW: a channel-local kernel after a kernel split by rows, where a dense kernel reads its
    output plane split by rows; not into V2's 7x7 stage, whose dense convs keep channels) given to `split_fn`,
    which says whether the kernel got split."""
    if cores < 2:
        return
    calls = _kernel_calls(mod)
    called = {gvar.name_hint for gvar, _producer in calls}
    uncalled = [(gvar, None) for gvar, func in mod.functions.items()
                if isinstance(func, tirx.PrimFunc) and gvar.name_hint not in called]
    splits = {gvar: split_alone(mod[gvar], cores, images, rows_ratio, grouped)
              for gvar, _producer in calls + uncalled}
    # hand-written kernels whose tasks are these row bands already (kernels/grouped_conv_pair.py)
    presplit = {gvar for gvar, _producer in calls if _split_rows(mod[gvar])}
    # planes some dense kernel reads split by rows: only there is a channel-local kernel worth splitting so
    row_planes = {_plane(mod[gvar].params[0]) for gvar, _producer in calls
                  if splits[gvar] is ROWS or gvar in presplit}
    decided: set[str] = set()
    split_kernels: set[Any] = set(presplit)
    for gvar, producer in calls + uncalled:
        if gvar.name_hint in decided or gvar in presplit:
            continue
        decided.add(gvar.name_hint)
        func, split = mod[gvar], splits[gvar]
        if split is None and producer in split_kernels and _may_follow(func, row_planes):
            split = FOLLOW
        if split is not None and split_fn(gvar, func, split):
            split_kernels.add(gvar)


def _split_rows(func: Any) -> bool:
    """A hand-written kernel whose parallel tasks are the row bands this pass gives each core."""
    return isinstance(func, tirx.PrimFunc) and func.attrs is not None and bool(func.attrs.get(SPLIT_ROWS, False))


def _may_follow(func: tirx.PrimFunc, row_planes: Any) -> bool:
    """A channel-local kernel (no reshape, which the VM lowering makes a view) writing a plane in `row_planes`."""
    return (_row_output(func) and _plane(func.params[-1]) in row_planes and _channel_reads(func) != EVERY
            and not relax.analysis.has_reshape_pattern(func))


def _partition(func: tirx.PrimFunc, cores: int, split: Split | str | None) -> tirx.PrimFunc | None:
    if split is IMAGES:
        return partition_rows(func, cores, IMAGES) or partition_serial(func, cores, IMAGES)
    if split is FOLLOW:
        return partition_rows(func, cores) or partition_serial(func, cores)
    return partition_rows(func, cores) if split is ROWS else None


def _kernel_calls(mod: tvm.IRModule) -> list[tuple[Any, Any]]:
    """(kernel, the kernel that produced its first argument or None) for each kernel call, in program order. An
    output of a kernel with several is produced by that kernel."""
    calls, producers = [], {}
    for func in mod.functions.values():
        if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if isinstance(call, relax.TupleGetItem) and call.tuple_value in producers:
                    producers[binding.var] = producers[call.tuple_value]
                    continue
                if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
                        and call.op.name in KERNEL_CALL_OPS and isinstance(call.args[0], tvm.ir.GlobalVar)):
                    continue
                args = call.args[1].fields if isinstance(call.args[1], relax.Tuple) else [call.args[1]]
                first = args[0] if args else None
                producer = producers.get(first) if isinstance(first, relax.Var) else None
                calls.append((call.args[0], producer))
                producers[binding.var] = call.args[0]
    return calls


def cores_of(target: Any) -> int:
    """The cores a CPU target is built for (1 for GPUs and targets without `num-cores`)."""
    if "cpu" not in target.keys:
        return 1
    return int(target.attrs.get("num-cores", 1) or 1)


def partition_rows(func: tirx.PrimFunc, cores: int, split: Split = ROWS) -> tirx.PrimFunc | None:
    """`func` with each parallel nest's iterations assigned to cores by band of output rows (or images), or None
    where no nest allows it."""
    root = func.body
    if not isinstance(root, SBlockRealize):
        return None
    rewritten = [0]

    def replace(stmt: tirx.Stmt) -> tirx.Stmt:
        if isinstance(stmt, tirx.For) and stmt.kind == tirx.ForKind.PARALLEL:
            new = _partition_nest(stmt, cores, split)
            rewritten[0] += new is not None
            return new if new is not None else stmt
        if isinstance(stmt, tirx.For):
            return _with_body(stmt, replace(stmt.body))
        if isinstance(stmt, tirx.SeqStmt):
            return tirx.SeqStmt([replace(s) for s in stmt.seq])
        return stmt

    body = replace(root.block.body)
    return _with_root_body(func, body) if rewritten[0] else None


def partition_serial(func: tirx.PrimFunc, cores: int, split: Split = ROWS) -> tirx.PrimFunc | None:
    """A kernel with no parallel loop (ShuffleNet's depthwise convs: tuned single-threaded) made parallel over
    row bands (with `IMAGES`, image bands): the output's row loop split `cores` ways, the outer part moved above
    the loops around it, and the producers computed at those loops (the padded input plane) moved under it, so
    each core pads and reads only its band's rows (plus the halo). None where the loops do not allow it."""
    from tvm import s_tir

    if not isinstance(func.body, SBlockRealize) or any(l.kind == tirx.ForKind.PARALLEL for l in _loops(func.body)):
        return None
    found = _row_store(func.body.block.body, split, func.params[-1])
    if found is None:
        return None
    (realize, row), rows = found
    if rows < cores:
        return None
    sch = s_tir.Schedule(func)
    try:
        block = sch.get_sblock(realize.block.name_hint)
        loops = sch.get_loops(block)
        used = tirx.analysis.undefined_vars(row)
        position = next(i for i, loop in enumerate(loops) if _contains(used, sch.get(loop).loop_var))
        outer = loops[:position]
        band, _inner = sch.split(loops[position], [cores, None])
        outer_stmts = [sch.get(loop) for loop in outer]
        for other in _blocks(sch):
            if other.same_as(block):
                continue
            other_loops = sch.get_loops(other)
            at_outer = [sch.get(loop) for loop in other_loops[:len(outer)]]
            beside = len(other_loops) >= len(outer) and all(a.same_as(b) for a, b in zip(at_outer, outer_stmts, strict=True))
            if beside and not _under(sch, other, band):
                vectorized = sch.get(other_loops[-1]).kind == tirx.ForKind.VECTORIZED
                sch.compute_at(other, band, preserve_unit_loops=True)
                if vectorized:
                    sch.vectorize(sch.get_loops(other)[-1])
        if outer:
            sch.reorder(band, *outer)
    except (s_tir.ScheduleError, StopIteration):
        return None
    # `sch.parallel` refuses a loop over a decomposed reduction (its update block has no init), so the kind is
    # set here: the bands write disjoint output rows, and every intermediate (the padded plane, the row
    # accumulator) is now produced and consumed under the band loop, so it is allocated per band.
    func = sch.mod["main"]
    nest = func.body.block.body
    if not (isinstance(nest, tirx.For) and sch.get(band).same_as(nest)):
        return None
    nest = tirx.For(nest.loop_var, nest.min, nest.extent, tirx.ForKind.PARALLEL, nest.body, None, nest.annotations)
    return _with_root_body(func, nest)


def _with_root_body(func: tirx.PrimFunc, body: tirx.Stmt) -> tirx.PrimFunc:
    """`func` with its root block's body replaced."""
    root, block = func.body, func.body.block
    block = SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, body, block.init,
                   block.alloc_buffers, block.match_buffers, block.annotations)
    return func.with_body(SBlockRealize(root.iter_values, root.predicate, block))


def _blocks(sch: Any) -> list[Any]:
    names: list[str] = []
    _walk(sch.mod["main"].body.block.body,
          lambda s: names.append(s.block.name_hint) if isinstance(s, SBlockRealize) else None)
    return [sch.get_sblock(name) for name in names]


def _under(sch: Any, block: Any, loop: Any) -> bool:
    target = sch.get(loop)
    return any(sch.get(l).same_as(target) for l in sch.get_loops(block))


def _partition_nest(par: tirx.For, cores: int, split: Split) -> tirx.For | None:
    found = _row_store(par, split)
    if found is None:
        return None
    (_realize, row), rows = found
    if rows < cores:
        return None
    chain = [par]
    while isinstance(chain[-1].body, tirx.For):
        chain.append(chain[-1].body)
    below = [loop.loop_var for loop in _loops(par)]
    for depth in range(len(chain)):
        fixed = [loop.loop_var for loop in chain[:depth + 1]]
        first_row = _at_start(row, [v for v in below if not _contains(fixed, v)])
        if any(_contains(fixed, v) for v in tirx.analysis.undefined_vars(first_row)):
            break
    else:
        return None
    dtype = str(par.loop_var.ty.dtype)
    core = tirx.Var("core", dtype)
    band = tirx.Min(tirx.FloorDiv(first_row, tirx.IntImm(dtype, math.ceil(rows / cores))), tirx.IntImm(dtype, cores - 1))
    condition = tirx.EQ(band, core)

    def serial(level: int) -> tirx.For:
        loop = chain[level]
        body = tirx.IfThenElse(condition, loop.body, None) if level == depth else serial(level + 1)
        kind = tirx.ForKind.SERIAL if level == 0 else loop.kind
        return tirx.For(loop.loop_var, loop.min, loop.extent, kind, body, loop.thread_binding, loop.annotations)

    return tirx.For(core, tirx.IntImm(dtype, 0), tirx.IntImm(dtype, cores), tirx.ForKind.PARALLEL, serial(0))


def _row_store(nest: tirx.Stmt, split: Split = ROWS,
               buffer: Any = None) -> tuple[tuple[SBlockRealize, Any], int] | None:
    """((block, index of `split`'s axis in its store, in loop variables), the buffer's extent on that axis) for
    the nest's last store to a buffer of `split.min_ndim`+ axes (or to `buffer`)."""
    stores: list[tuple[SBlockRealize, Any]] = []

    def visit(stmt: Any) -> None:
        if isinstance(stmt, SBlockRealize):
            stores.extend((stmt, w) for w in stmt.block.writes if (
                w.source.same_as(buffer) if buffer is not None else len(w.source.shape) >= split.min_ndim))

    _walk(nest, visit)
    if not stores or len(stores[-1][1].source.shape) < split.min_ndim:
        return None
    realize, write = stores[-1]
    analyzer = tvm.sym.Analyzer()
    for iter_var, value in zip(realize.block.iter_vars, realize.iter_values, strict=True):
        analyzer.bind(iter_var.var, value)
    return (realize, analyzer.simplify(write.region[split.axis].min)), int(write.source.shape[split.axis])


def _row_output(func: tirx.PrimFunc) -> bool:
    return len(func.params[-1].shape) >= ROWS.min_ndim


def _batched(func: tirx.PrimFunc, cores: int) -> bool:
    """The kernel's output holds a batch of images that the cores can share evenly."""
    found = _row_store(func.body, IMAGES, func.params[-1]) if isinstance(func.body, SBlockRealize) else None
    return found is not None and found[1] >= cores and found[1] % cores == 0


def _dense(func: tirx.PrimFunc, rows_ratio: float, grouped: bool, cores: int) -> bool:
    """Reads every channel of its activation input (see `_channel_reads`; with `grouped`, or a group's channels
    where split by rows few of its output's cache lines would be written by both cores, `GROUPED_SHARED_LINES`),
    which is at least `rows_ratio` times its other parameters (weights, biases, index maps)."""
    params = list(func.params)
    if len(params) < 2 or _elements(params[0]) < rows_ratio * sum(_elements(p) for p in params[1:-1]):
        return False
    reads = _channel_reads(func)
    return reads == EVERY or (grouped and reads == GROUP and shared_lines(params[-1], cores) <= GROUPED_SHARED_LINES)


def shared_lines(buffer: Any, cores: int) -> float:
    """The fraction of an NCHW[x]c activation's cache lines that both of two neighbouring cores write when it is
    split into `cores` row bands (the buffer taken as line-aligned): each band boundary, and each plane's end
    (the last band's rows, the next plane's first), that falls inside a line. 14x14 float planes (196 floats,
    12.25 lines of 16) share 1.75 lines in 12.25, one in 7; 28x28 ones (49 lines, a boundary at float 392) one
    in 49; 56x56 ones none. Split by channels, only the line where the two halves meet is shared."""
    shape = [int(d) for d in buffer.shape]
    if len(shape) < ROWS.min_ndim:
        return 0.0
    per_line = max(1, CACHE_LINE * 8 // int(buffer.dtype.bits))
    rows, row = shape[ROWS.axis], math.prod(shape[ROWS.axis + 1:])
    plane, planes = rows * row, math.prod(shape[:ROWS.axis])
    band = math.ceil(rows / cores)
    starts = [0] + [k * band * row for k in range(1, cores) if k * band < rows]
    shared = {(p * plane + start) // per_line for p in range(planes) for start in starts
              if (p or start) and (p * plane + start) % per_line}
    return len(shared) / math.ceil(planes * plane / per_line)


def _plane(buffer: Any) -> tuple[int, ...] | None:
    """An NCHW[x]c activation's (rows, columns); None for other shapes."""
    return tuple(int(d) for d in buffer.shape[2:4]) if len(buffer.shape) >= ROWS.min_ndim else None


EVERY, GROUP = "every", "group"  # what `_channel_reads` finds


def _channel_reads(func: tirx.PrimFunc) -> str | None:
    """EVERY where some reduction reads the first input's channel axis through reduction variables alone: a dense
    conv (or a dense 1x1 conv reading channels through an index map). Else GROUP where one reads it through
    reduction and output variables together: a grouped conv, reading its group's channels (through a shuffle,
    V1's: channels every group of the conv before it wrote). Else None: a per-channel kernel, or none reading
    channels."""
    source = func.params[0]
    found: set[str] = set()

    def visit(stmt: Any) -> None:
        if not isinstance(stmt, SBlockRealize):
            return
        spatial = [iv.var for iv in stmt.block.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
        # reduction variables over more than one value (a depthwise conv written with a unit channel reduction
        # reads one channel per output)
        reduce = [iv.var for iv in stmt.block.iter_vars
                  if iv.iter_type == tirx.IterVar.CommReduce and not _is_one(iv.dom.extent)]
        for read in stmt.block.reads:
            if not (reduce and read.source.same_as(source) and len(read.region) > 1):
                continue
            channel = read.region[1].min
            used = tirx.analysis.undefined_vars(channel)
            if not any(_contains(reduce, v) for v in used):
                continue
            if not any(_contains(spatial, v) for v in used):
                found.add(EVERY)
            elif any(_contains(spatial, v) for v in tirx.analysis.undefined_vars(
                    _over_ranges(channel, stmt.block.iter_vars))):
                # an output variable that still selects the channels over its range: a group (an ungrouped packed
                # conv's group index o // O is 0: not one; nor is it dense here, as before)
                found.add(GROUP)

    _walk(func.body, visit)
    return EVERY if EVERY in found else GROUP if GROUP in found else None


def _over_ranges(expr: Any, iter_vars: list[Any]) -> Any:
    """`expr` simplified with each block variable known to lie in its range."""
    analyzer = tvm.sym.Analyzer()
    for iv in iter_vars:
        analyzer.bind(iv.var, iv.dom)
    return analyzer.simplify(expr)


def _is_one(extent: Any) -> bool:
    return isinstance(extent, tirx.IntImm) and int(extent) == 1


def _at_start(expr: Any, loop_vars: list[Any]) -> Any:
    analyzer = tvm.sym.Analyzer()
    for var in loop_vars:
        analyzer.bind(var, tirx.IntImm(str(var.ty.dtype), 0))
    return analyzer.simplify(expr)


def _loops(stmt: tirx.Stmt) -> list[tirx.For]:
    found: list[tirx.For] = []
    _walk(stmt, lambda s: found.append(s) if isinstance(s, tirx.For) else None)
    return found


def _contains(variables: list[Any], var: Any) -> bool:
    return any(var.same_as(v) for v in variables)


def _elements(buffer: Any) -> int:
    return math.prod(int(d) for d in buffer.shape)


def _with_body(loop: tirx.For, body: tirx.Stmt) -> tirx.For:
    return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding, loop.annotations)


def _walk(stmt: Any, visit: Callable[[Any], None]) -> None:
    """Pre-order over the statements a scheduled kernel holds (loops, sequences, blocks, conditions)."""
    visit(stmt)
    if isinstance(stmt, tirx.SeqStmt):
        for child in stmt.seq:
            _walk(child, visit)
    elif isinstance(stmt, SBlockRealize):
        _walk(stmt.block, visit)
    elif isinstance(stmt, SBlock):
        if stmt.init is not None:
            _walk(stmt.init, visit)
        _walk(stmt.body, visit)
    elif isinstance(stmt, tirx.IfThenElse):
        _walk(stmt.then_case, visit)
        if stmt.else_case is not None:
            _walk(stmt.else_case, visit)
    elif isinstance(getattr(stmt, "body", None), tirx.Stmt):
        _walk(stmt.body, visit)
