#!/usr/bin/env bash
# The tuning runs behind tuning_logs/x86-<cpu>-<cores>c and benchmarks/RESULTS.md, in the order they ran.
# Kernels shared between models are tuned once (the second run skips what the first covered).
set -euo pipefail
BUDGET_MAIN=${BUDGET_MAIN:-38}
BUDGET_MORE=${BUDGET_MORE:-15}
BUDGET_BATCH8=${BUDGET_BATCH8:-10}
shuffletvm tune shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0 --target x86 --time-budget "$BUDGET_MAIN"
shuffletvm tune shufflenet_v2_x0_5 shufflenet_v1_g8_x1_0 --target x86 --time-budget "$BUDGET_MORE"
shuffletvm tune shufflenet_v2_x1_0 --batch 8 --target x86 --time-budget "$BUDGET_BATCH8"
