#!/usr/bin/env bash
# The tuning runs behind the shipped logs, in the order they ran: tuning_logs/x86-znver5-2c (sessions 1-5, an AMD
# Zen 5; benchmarks/RESULTS.md), then tuning_logs/x86-rocketlake-2c (session 6; an Intel Xeon;
# benchmarks/RESULTS-x86-rocketlake-2c.md), then x86-znver5-2c again (session 8, at the end). `--target x86` is the machine it runs on: each section ran on its own machine.
# Kernels shared between models are tuned once (a later run skips what an earlier one covered); each run first
# measures the hand-written schedule of every kernel it has not seen as that kernel's first record.
# (The first run predates FoldShuffleIntoGroupedConv: the second tunes the shuffled grouped convs it adds.)
# Until session 12 a --time-budget that ended inside MetaSchedule's warm-up (every kernel's first batch is generated
# before any result) still ran the whole warm-up; the runs below with a budget shorter than their warm-up (about
# 15 s a kernel on 2 cores for x86) ran that much longer, and rerun now they stop at the budget.
set -euo pipefail
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 --target x86 --time-budget "${BUDGET_MAIN:-38}"
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 --target x86 --time-budget "${BUDGET_MAIN_2:-12}"
shuffletvm tune shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 --time-budget "${BUDGET_MORE:-15}"
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget "${BUDGET_BATCH8:-10}"
# Session 3: the layout phase's packed-weight 1x1 kernels (new workloads), all five rows' models.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --kernels packed --trials "${TRIALS_PACKED:-32}"
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --kernels packed --trials "${TRIALS_PACKED:-32}"
# Session 3, then: the kernels that hold back the rows still behind ONNX Runtime (RESULTS.md's per-kernel
# profiles): V1 g8's grouped 1x1 convs, the stem conv, and at batch 8 the stem and the 28x28 1x1 convs.
shuffletvm tune shufflenet_v1_g8_x1_0 --target x86 --kernels 'shuffled_group_conv|^fused_conv2d(3|7|11)_' --trials 48
shuffletvm tune shufflenet_v2_x1_0 --target x86 --kernels '^fused_conv2d_add_relu$' --trials 48
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --kernels '^fused_conv2d(5|8)?_add' --trials 48
# Session 4: KeepIdentityInPlace's convs (gather: reads its input half from stage-buffer channels; scatter:
# writes its output into them in place) are new workloads: V2 1.0x and 0.5x at batch 1, 1.0x at batch 8. Each
# starts from its hand schedule and from the plain conv's record replayed on it (tuning/seeds.py). (28 min of
# earlier runs on a first version of these kernels were discarded with it.)
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v2_x0_5 --target x86 --kernels 'gather|scatter' --trials 24
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --kernels 'gather|scatter' --trials 24
# Session 5. Every record above was measured on ONE thread (TVM's pool takes half the logical CPUs on x86 when
# TVM_NUM_THREADS is unset, and the runner did not set it) and after a cache flush; the tuner now measures warm,
# on the target's cores. Each batch-8 kernel first measured with its batch-1 kernel's best record replayed
# (tuning/seeds.py, batch_twin_seeds; the log covered every kernel, so nothing else ran), then two searches and
# two --remeasure passes still on one thread (their records stay in the log; a kernel's one-thread time is no
# faster than its two-thread time, so they rank below the later measurements of the same schedules):
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget 8
shuffletvm tune shufflenet_v1_g8_x1_0 --target x86 --time-budget 8
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --trials 1 --remeasure 8
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1 --remeasure 8
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --trials 1 --remeasure 6
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1 --remeasure 6
# Then on the target's two threads: the best 8 records of every kernel of the five rows measured again (3
# interleaved rounds each, fastest kept), and searched from there.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --trials 1 --remeasure 8
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1 --remeasure 8
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget 9
shuffletvm tune shufflenet_v1_g8_x1_0 --target x86 --time-budget 9

# ---- x86-rocketlake-2c (session 6): an Intel Xeon with AVX-512 and AMX, which the VM reports under Rocket Lake's
# model number. Every kernel new to the log first measured with x86-znver5-2c's 8 best records of it (the kindred
# log; tuning/seeds.py, kindred_seeds) and its hand schedule, then searched; batch 8 also from its batch-1 records.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --time-budget 50
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1

# ---- x86-znver5-2c again (session 8, back on the Zen 5 class). V1's grouped expand convs (they read through the
# folded shuffle) ran 1.4-2.1x the time of the compress convs of the same FLOPs, and the stride-2 unit's one
# (96 -> 360, g8) 110 us: searched on two threads, then pruned (benchmarks/prune_shipped_log.py). A second run
# on V1's compress and packed 1x1 convs (`--kernels '^fused_conv2d(3|7)_add|^fused_conv1x1_packed' --time-budget
# 10`) found records faster in the tuner and slower in kernel_profile.py (V1 g3 1.16x): discarded.
shuffletvm tune shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 --kernels shuffled_group_conv --time-budget 18

# ---- x86-rocketlake-2c again (session 9, back on the Intel class). Its log was seeded from x86-znver5-2c in
# session 6, before session 8 searched V1's expand convs again there: --kindred-all starts those kernels from the
# Zen 5 log's best records this log does not hold (46 records of 7 kernels, measured here), then searches.
shuffletvm tune shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 --kernels shuffled_group_conv \
    --kindred-all --time-budget 16
# V2 1.0x's dense 1x1 convs and its two largest depthwise-adjacent convs, 14 min. kernel_profile.py --against the
# log before it measured 6 of the 8 kernels' new records slower in the built model (conv1x1_scatter 44.9 vs 26.9
# us, fused_conv1x1_packed1 263 vs 186): their new records were dropped before pruning, fused_conv2d9 and
# fused_conv1x1_packed's kept (V2 1.0x warm kernel time 0.99x). Why: no --remeasure first, so today's candidates
# competed with records logged in session 6 on a 2-3x slower day (RESULTS-x86-rocketlake-2c.md); rerun with it.
shuffletvm tune shufflenet_v2_x1_0 --target x86 --kernels 'gather|scatter|packed|^fused_conv2d(3|9)_' \
    --kindred-all --time-budget 14
# V2 1.0x at batch 8 (never searched on this class before), its 9 largest kernels, 12 min: the same as above,
# kernel_profile.py --batch 8 --against the log before measured 5 kernels' new records slower in the built model
# (conv1x1_scatter1 286 vs 187 us, the 7x7 stage's packed conv 2013 vs 1532) and one faster (the 28x28 stage's
# packed conv, 218 vs 283 us): only that kernel's new records kept (batch-8 warm kernel time 0.96x).
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --kernels 'gather|scatter|packed|^fused_conv2d(9|12)?_add' \
    --kindred-all --time-budget 12
python benchmarks/prune_shipped_log.py

# ---- x86-rocketlake-2c, session 10. Tuning now measures each candidate split across the cores as the build
# splits it (tuning/tune.py `as_built`), and the log's target.json sets "rows_ratio": 1.5, so V2 1.0x's 14x14
# 1x1 convs (activations 1.7-3.4x their weights) are split by rows too: on this VM a kernel that reads what the
# other core wrote pays most of what kernels lose inside the model. Their records had been measured split by
# channels; the best 8 of each measured again split by rows, then searched (15 min). Then the dense kernels the
# build already split by rows (28x28 and 56x56 stages, the stem), the same way (15 min). Only these kernels'
# records changed (other kernels' records: as shipped before).
python - <<'PY'
import json, pathlib
p = pathlib.Path("tuning_logs/x86-rocketlake-2c/target.json")
p.write_text(json.dumps({**json.loads(p.read_text()), "rows_ratio": 1.5}, indent=2) + "\n")
PY
shuffletvm tune shufflenet_v2_x1_0 --target x86 --kernels 'gather1|scatter1|conv2d8' --remeasure 8 --time-budget 15
shuffletvm tune shufflenet_v2_x1_0 --target x86 \
    --kernels 'fused_conv1x1_gather_add2|conv1x1_scatter$|^fused_conv2d(_|2_|3_|5_|9_)' --remeasure 8 --time-budget 15
python benchmarks/prune_shipped_log.py
# Session 12 (Intel class): V1 g8's three kernels with the most time in sequence (sequence_profile.py), their best
# 8 records measured again first, then searched; the log pruned again.
shuffletvm tune shufflenet_v1_g8_x1_0 --target x86 \
    --kernels 'shuffled_group_conv3|^fused_conv2d7_|conv1x1_packed_add11' --remeasure 8 --time-budget 14
python benchmarks/prune_shipped_log.py

# ---- x86-znver3-2c, session 16: an AMD EPYC Zen 3 (AVX2, 16 vector registers; LLVM `znver3`), the first AVX2
# class, with no log of its width to start from. Every kernel whose TensorIR is the same at both widths (60 of the
# 80 compute kernels: all but the packed 1x1 convs) first measured with x86-znver5-2c's 8 best records of it
# (kindred_log any_width: a search may seed from another width, a build never uses it) and its hand schedule;
# the packed 1x1 convs (blocks of 8 lanes here) from their hand schedule; then searched.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --time-budget 50
# V2 1.0x at batch 8: 19 kernels from x86-znver5-2c's records, 21 from their batch-1 kernel's, 16 from their hand
# schedule, then searched; the log pruned.
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget 12
python benchmarks/prune_shipped_log.py
# Session 17: AVX2's packed 1x1 convs tiled by several blocks, V2 1.0x's 232 channels padded to 30 blocks; the
# packed convs retuned from their new hand schedule, the best 3 records of each measured again (the run was cut off
# by a machine restart after about 13 minutes; its finished records kept), the log pruned (from any machine).
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --kernels packed --time-budget 25 --remeasure 3
python benchmarks/prune_shipped_log.py --mcpu znver3 --num-cores 2
# ---- x86-rocketlake-2c, session 19: AVX-512's packed 1x1 convs tiled by 2 or 3 blocks of one group, the blocks of
# channels in parallel where the cores get equal or enough shares (benchmarks/packed_tiles.py); the packed convs
# retuned from their new hand schedule, the best 3 records of each measured again first; the log pruned.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --kernels packed --time-budget 18 --remeasure 3
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --kernels packed --time-budget 6 --remeasure 3
# The NCHW 1x1 convs' fused-pixel tiles fill the accumulators (benchmarks/conv1x1_tiles.py): V1's 28x28 and 56x56
# ones retuned from their new hand schedule.
shuffletvm tune shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 --kernels \
    '^(fused_conv2d2_add1_relu2|fused_conv2d4_add5_relu4|fused_conv2d_add_relu|fused_shuffled_group_conv1_add3_add4_relu3|fused_shuffled_group_conv_add2_relu1)$' \
    --time-budget 7 --remeasure 3
# kernel_profile.py --against the log before: fused_shuffled_group_conv_add2_relu1 (it writes into the stage's
# concat) slower in the built models; its new records replaced by its records from before this run (a one-off
# script then; since session 20 `--restore`, from a copy of tuning_logs/ taken before the run), and the log pruned:
python benchmarks/prune_shipped_log.py --restore '^fused_shuffled_group_conv_add2_relu1$' \
    --from "${LOG_BEFORE:-/tmp/logroot-before}"
# ---- x86-rocketlake-2c, session 22: the NCHW 1x1 convs retuned from sessions 20/21's hand schedules (fused-pixel
# tiles up to 30 accumulators, row tiles filling 12), the best 3 records of each measured again first, 39 min.
shuffletvm tune shufflenet_v2_x1_0 --target x86 --time-budget 12 --remeasure 3 --kernels \
    '^(conv1x1_scatter1?|fused_conv1x1_gather1?_add[0-9]*_relu[0-9]*|fused_conv2d[12478]_add[0-9]+_relu[0-9]+)$'
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget 10 --remeasure 3 --kernels \
    '^(conv1x1_scatter1?|fused_conv1x1_gather1?_add[0-9]*_relu[0-9]*|fused_conv2d[12478]_add[0-9]+_relu[0-9]+)$'
shuffletvm tune shufflenet_v2_x0_5 --target x86 --time-budget 7 --remeasure 3 --kernels \
    '^(conv1x1_scatter1?|fused_conv1x1_gather1?_add[0-9]*_relu[0-9]*|fused_conv2d[12569]_add[0-9]+_relu[0-9]+)$'
shuffletvm tune shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 --time-budget 9 --remeasure 3 \
    --kernels '^(fused_conv2d[68]_add|fused_shuffled_group_conv[23]_add)'
# kernel_profile.py --against the log before: V2 1.0x's 14x14 conv1x1_scatter1 (7 calls) slower in the built
# model at batch 1 (27.6 vs 22.9 us, 21 rounds): its records (V2 0.5x's and batch 8's of that name with it, both
# within 10%) taken from the log before; warm kernel time then 0.93x (V2 1.0x), 0.95x (batch 8), 0.96x (V2 0.5x),
# 0.99x (V1 g3), 0.98x (V1 g8) against the log before.
python benchmarks/prune_shipped_log.py --restore '^conv1x1_scatter1$' --from "${LOG_BEFORE:-/tmp/logroot-before}"
# Then every kernel's current hand schedule measured beside its best 3 records (tune now seeds the hand schedule of
# every kernel it selects, covered or not; 50 hand schedules were new to the log: the batch-8 depthwise convs'
# records ran 1.24-1.60x their hand schedule's time), nothing searched, 6 min; the log pruned.
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1 --remeasure 3
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --trials 1 --remeasure 3
python benchmarks/prune_shipped_log.py

# ---- x86-emeraldrapids-2c, session 24: an Intel Xeon (family 6 model 207, AVX-512 + AMX, 2 MB L2 a core) that LLVM
# names `emeraldrapids`, new to this project. Seeded from x86-rocketlake-2c (the other Intel class; the kindred rule
# now ranks the same vendor before the most records), with that log's rows_ratio left out of the new one: here the
# default split was faster (V2 1.0x built from the rocketlake log, rows_ratio 4 vs 1.5: 0.91x, ab_modules.py). At
# the time the rule still picked x86-znver5-2c, so the run used a log root holding only the rocketlake log
# (without its rows_ratio): 656 of its records of 82 kernels measured here, the hand schedules, then searched;
# batch 8 also from its batch-1 records. Then the log pruned. SEED_ROOT: a folder holding a copy of
# tuning_logs/x86-rocketlake-2c, "rows_ratio" taken out of its target.json (the records measured here are this
# CPU's; the seeds' times are not used). With today's rule, `--log-dir` can be left out: the new log takes no
# rows_ratio from its kindred log either way.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --time-budget 45 --log-dir "${SEED_ROOT:-/tmp/rocketlake-only}"
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget 10 --log-dir "${SEED_ROOT:-/tmp/rocketlake-only}"
cp -r "${SEED_ROOT:-/tmp/rocketlake-only}/x86-emeraldrapids-2c" tuning_logs/
python benchmarks/prune_shipped_log.py
# sequence_profile.py shufflenet_v1_g8_x1_0 --without tuning, with this log and with the rocketlake log stamped for
# this CPU (LOG_ROOT: that copy as x86-emeraldrapids-2c, its target.json's key and mcpu changed): two of V1 g8's kernels 93 and 82 us slower in sequence with the new records (V1 g8 1.10x the
# rocketlake log's time end to end, two ab_modules.py runs); their records (V1 g3's kernels of the same names with
# them) taken from the rocketlake log: V1 g8 0.86x, V1 g3 1.03x the log before.
python benchmarks/prune_shipped_log.py --restore '^(fused_shuffled_group_conv1_add3_add4_relu3|fused_conv2d6_add6_relu6)$' \
    --from "${LOG_ROOT:-/tmp/rocketlake-as-emeraldrapids}"
# ---- x86-znver4-2c, session 25: an AMD EPYC of family 25 model 17 (Zen 4: AVX-512 on 256-bit units, 1 MB L2 a
# core) that LLVM names `znver4`, new to this project. The kindred rule (same vendor first) seeded it from
# x86-znver5-2c: 648 records of 81 kernels measured here, the hand schedules, then searched; batch 8 also from
# its batch-1 records. Then the log pruned.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --time-budget 45
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget 10
python benchmarks/prune_shipped_log.py
# Built from the Intel log x86-emeraldrapids-2c, V2 1.0x ran 0.96-0.97x this log's time (ab_modules.py, two runs;
# sequence_profile.py --against: its 14x14 depthwise conv 97 vs 127 us in sequence, 48 vs 57 warm). So that log's
# 8 best records of every kernel, those this log did not hold (470), were measured here beside this log's best 3
# (measured again) and the hand schedules, nothing searched (--kindred-all now seeds covered kernels too); then the
# log pruned. EMR_ROOT: a folder holding a copy of this log and of tuning_logs/x86-emeraldrapids-2c only (the
# kindred rule then takes the Intel log); copy its x86-znver4-2c back into tuning_logs/ before pruning.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --trials 1 --remeasure 3 --kindred-all --log-dir "${EMR_ROOT:-/tmp/seed-emr}"
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1 --remeasure 3 --kindred-all \
    --log-dir "${EMR_ROOT:-/tmp/seed-emr}"
rm -rf tuning_logs/x86-znver4-2c && cp -r "${EMR_ROOT:-/tmp/seed-emr}/x86-znver4-2c" tuning_logs/
python benchmarks/prune_shipped_log.py
# Then, interleaved (ab_modules.py --rounds 15 --runs 20; batch 8 --rounds 8), this log against the log before the
# seeding and against the emeraldrapids log, as times relative to this log's: V2 0.5x 1.026x / 1.031x, V2 1.0x
# 0.965x / 0.925x, V1 g3 0.993x / 1.132x, V1 g8 1.136x / 1.204x, V2 1.0x batch 8 0.982x / 1.034x. V2 1.0x is the
# one row it did not help (within this VM's noise in two earlier runs, 0.96-1.00x); the session moved to a Zen 3
# VM before its kernels could be profiled in sequence and a results table taken: for a session on that class.

# ---- x86-znver3-2c, session 26 (back on the Zen 3 class, the first time since session 17). Its records predated
# sessions 20-21's hand schedules (the NCHW 1x1 convs' pixel tiles filling the accumulators, row tiles at 14x14):
# the best 3 records of every kernel measured again (268 at batch 1, 57 at batch 8), the hand schedules new to the
# log measured beside them (31 kernels at batch 1, 13 at batch 8), then searched (at batch 1 the budget went on
# MetaSchedule's warm-up, 27 of the 33 minutes: one batch of 16 candidates a kernel); the log pruned (3157 -> 1627).
# Interleaved against the log before (ab_modules.py; modules built with --log-dir on a copy of it taken before the
# run): the log before took 1.04x (V2 0.5x), 1.27x (V2 1.0x), 1.12x (V1 g3), 1.20x (V1 g8) and 1.26x (V2 1.0x at
# batch 8) this log's time.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --remeasure 3 --time-budget 33
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --remeasure 3 --time-budget 10
python benchmarks/prune_shipped_log.py
# Then V1 g3 / g8's six largest kernel names (12 kernels) searched 15 min more (`--kernels '^(fused_conv1x1_packed4_
# add8_add9_relu7|fused_conv1x1_packed_add6_relu6|fused_shuffled_group_conv1_add3_add4_relu3|fused_conv1x1_packed6_
# add12_add13_relu10|fused_conv1x1_packed2_add10_relu9|fused_conv2d2_add1_relu2)$' --time-budget 15`): their
# estimated warm sum fell from 6.31 to 4.68 ms, but built, interleaved, V1 g3 took 1.03x and V1 g8 0.99x the time
# of the log before (ab_modules.py --rounds 20), and sequence_profile.py --against it measured both 0.99x, the
# searched kernels slower in sequence than warm (V1 g3's 14x14 packed conv 1303 vs 1214 us for 7 calls): no gain
# to ship, the run's records discarded (the log copied back from before it).

# ---- x86-znver3-2c, session 27: the short-reduction tile for V1's grouped 1x1 convs (schedules/packed_conv1x1.py
# `short_tile`: 2 blocks x 4 pixels, the reduction unrolled, a vector write-back) and those convs packed up to
# 28x28 (passes/pack_conv1x1_weights.py `SHORT_MAX_PLANE`). The hand schedule is a new trace: measured beside each
# kernel's best 3 records, then searched. First the 14x14 convs (packed before; 4 kernels), then the 28x28 ones
# (new workloads; 2 kernels), each with a copy of the log taken before it to build the A/B against.
shuffletvm tune shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 --kernels 'conv1x1_packed[34]_add' \
    --remeasure 3 --time-budget 6
python benchmarks/prune_shipped_log.py
shuffletvm tune shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 --kernels 'packed\d*_add3_add4_relu3' \
    --remeasure 3 --time-budget 5
python benchmarks/prune_shipped_log.py

# ---- x86-znver3-2c, session 28: V1 g3's shuffled 7x7 convs computed over whole register tiles
# (passes/pack_conv1x1_weights.py `tile_pixels`): new workloads, their old records pruned. Searching them
# (`--kernels 'conv1x1_packed(2_add10_relu9|6_add11_relu8|7_add12_add13_relu10)$' --remeasure 3 --time-budget 8`,
# with V1 g8, whose kernels were padded too in that trial) gave records the model ran slower than the hand schedule
# (benchmarks/sequence_profile.py --against: 306 vs 243 us in sequence, 257 vs 225 warm, 3 calls): the log copied
# back from before it. Then every batch-1 kernel's best 3 records and its hand schedule measured again beside
# each other, the two new kernels given their hand schedule and one trial:
python benchmarks/prune_shipped_log.py
shuffletvm tune shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86 \
    --remeasure 3 --trials 1
python benchmarks/prune_shipped_log.py

# ---- x86-znver3-2c, session 32: AVX2's 1x1 conv tiles as stack memory (schedules/_common.py `tile_scope`), a
# new hand schedule for every kernel the grouped and packed 1x1 rules claim. Only those kernels measured again,
# model by model (their names differ between models), each beside its best 3 records. (The same run over every
# kernel re-ranked unrelated depthwise records on this noisy VM and built V2 1.0x in 1.06x the time: discarded.)
for row in shufflenet_v2_x0_5:1 shufflenet_v2_x1_0:1 shufflenet_v1_g3_x1_0:1 shufflenet_v1_g8_x1_0:1 \
        shufflenet_v2_x1_0:8; do
    model=${row%:*} batch=${row#*:}
    kernels=$(python - "$model" "$batch" <<'PY'
import sys

from shuffletvm.targets import resolve_target
from shuffletvm.tuning.seeds import hand_schedule
from shuffletvm.tuning.tasks import model_tasks

target = resolve_target("x86").tvm_target()
rules = ("grouped_conv1x1", "packed_conv1x1")
names = sorted(t.name for t in model_tasks([sys.argv[1]], int(sys.argv[2]), target)
               if (hand_schedule(t, target) or ("",))[0] in rules)
print("^(" + "|".join(names) + ")$")
PY
)
    shuffletvm tune "$model" --batch "$batch" --target x86 --kernels "$kernels" --remeasure 3 --trials 1
done
python benchmarks/prune_shipped_log.py

# ---- x86-rocketlake-2c, session 33: each tuned kernel's best record against its hand schedule inside the running
# model (`shuffletvm choose`, tuning/in_model.py), nothing measured alone, nothing searched; in_model.json written.
# (The packed classifier, new since the log was tuned, was searched first, 32 trials a kernel: its records ran no
# faster in the model than the hand schedule, V1 g8's 1.13x in sequence; discarded.)
shuffletvm choose shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86
shuffletvm choose shufflenet_v2_x1_0 --batch 8 --target x86

# ---- x86-znver4-2c, session 37 (back on the Zen 4 class, the first time since session 25): `shuffletvm choose` over
# the four batch-1 rows, 2.1 min: 10 of 66 kernels take their hand (or default) schedule; builds with the choices ran
# V2 0.5x 0.987x / 0.989x, V2 1.0x 0.981x / 0.988x, V1 g8 0.975x / 0.979x the time of the log's records
# (ab_modules.py --rounds 30 --runs 15, both orders; V1 g3: none chosen). Nothing tuned.
shuffletvm choose shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v1_g8_x1_0 --target x86
# (`shuffletvm choose shufflenet_v2_x1_0 --batch 8 --target x86`, run on a copy of the log with --log-dir, chose 3 of
# 17 kernels, and built with them V2 1.0x at batch 8 ran 1.013x / 0.999x the time: not kept.)

# ---- x86-znver5-2c, session 38 (back on the Zen 5 class, family 26 model 2, the first time since session 8). Its
# records predated the runner that measures as the build splits kernels (session 10) and every hand schedule since
# session 19: built from it, V2 0.5x, V2 1.0x, V1 g8 and V2 1.0x at batch 8 ran 1.03-1.17x the time of the same builds
# from the Zen 4 log (the kindred log: same vendor; seeded from this one in session 25), V1 g3 level. Every kernel's
# best 3 records measured again beside the Zen 4 log's 8 best and the current hand schedules, nothing searched (8.3 min
# at batch 1, 2.7 min at batch 8; the packed classifiers, new since, given their hand schedule and one trial); then the
# 16 kernel names that take the most time in the four batch-1 models (`benchmarks/kernel_profile.py MODEL --top 10`;
# 26 kernels) searched 20 min (1248 trials): no better record (the builds' outputs bit-identical); the log pruned. Built
# against the log before, interleaved (ab_modules.py --rounds 20 --runs 15; batch 8 --rounds 8 --runs 8), the log before
# took 1.07x (V2 0.5x), 1.12x (V2 1.0x), 1.05x (V1 g3), 1.06x (V1 g8) and 1.05x (batch 8) this log's time. `shuffletvm
# choose` (on a copy, 1.5 min) chose 7 of 69 kernels; builds with the choices ran 0.997x / 1.007x, 1.001x / 0.995x,
# 0.990x / 1.004x this log's time (V2 0.5x, V1 g3, V1 g8; both orders): not kept.
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --trials 1 --remeasure 3 --kindred-all
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --trials 1 --remeasure 3 --kindred-all
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 \
    --time-budget 20 --kernels '^(fused_conv1x1_packed_add3_relu2|fused_conv1x1_packed1_add4_relu3|fused_conv1x1_gather1_add2_relu1|conv1x1_scatter1|fused_conv1x1_gather_add1_relu|conv1x1_scatter|fused_conv2d6_add2|fused_shuffled_group_conv3_add4_add5_relu4|fused_conv2d3_add2_relu3|fused_conv1x1_packed2_add8_add9_relu7|fused_conv2d4_add2|fused_conv1x1_packed_add6_relu6|fused_conv2d5_add3_relu2|fused_conv1x1_packed1_add3_relu3|fused_conv1x1_packed_add2_relu2|fused_conv1x1_gather1_add1_relu1)$'
python benchmarks/prune_shipped_log.py
