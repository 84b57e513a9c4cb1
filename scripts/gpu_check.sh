#!/usr/bin/env bash
# On a GPU machine with PyTorch (CUDA) and nvcc but no TVM and no network: installs TVM from .gpu/
# ($BUNDLE, default .gpu/: scripts/prepare_gpu_bundle.sh) and shuffletvm from this checkout, then runs what a user runs there:
#   parity-v2  parity of V2 1.0x on CUDA against PyTorch
#   tune       a short MetaSchedule tune of V2 1.0x (XGBoost model)
#   compare    tuned, hand-scheduled and stock TVM against PyTorch (cuDNN), TensorRT where installed
#   parity-v1  parity of V1 g3 1.0x
#   kernels    per-kernel: dlight vs the hand-written CUDA schedules vs cuDNN (benchmarks/gpu_kernels.py)
# STEPS picks steps and their order (default: the first four, sized for 10 minutes); each step has its own time
# limit, cut to what is left of BUDGET_S (default 600) for the whole script, and a step that would get under
# 30 s is skipped. The tune is given TUNE_MINUTES (it stops before the next batch, measuring those in flight);
# TUNE_ARGS adds tune options (e.g. "--kernels REGEX"). Records go to the checkout's tuning_logs/cuda-sm_XY/ (so
# a tune resumes from what is committed there). Writes ${OUT:-.gpu/out}: gpu_check.log, parity_*.json, compare.json,
# compare.png, gpu_kernels.md/.json and a copy of the CUDA tuning log (tuning_log/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.gpu/out}
WORK=${WORK:-/tmp/shuffletvm-gpu}
BUNDLE=${BUNDLE:-.gpu}
TUNE_MINUTES=${TUNE_MINUTES:-2.5}
STEPS=${STEPS:-parity-v2 tune compare parity-v1}
BUDGET_S=${BUDGET_S:-600}
LOGS=$PWD/tuning_logs
mkdir -p "$OUT" "$WORK/site"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
start=$SECONDS

step() {  # step NAME SECONDS COMMAND...: runs COMMAND with a time limit and says how it ended
    local name=$1 limit=$2 left=$((BUDGET_S - (SECONDS - start) - 15))
    shift 2
    if ((left < 30)); then
        echo "== $name: skipped, $left s left of BUDGET_S"
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name: start at $((SECONDS - start)) s, limit $limit s"
    timeout --kill-after=15 "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - start)) s"
}

run_step() {
    case $1 in
        parity-v2) step parity-v2 120 python3 -m shuffletvm parity shufflenet_v2_x1_0 --target cuda \
                       --json "$OUT/parity_shufflenet_v2_x1_0.json" ;;
        tune) step tune $((${TUNE_MINUTES%.*} * 60 + 150)) python3 -m shuffletvm tune shufflenet_v2_x1_0 --target cuda \
                  --time-budget "$TUNE_MINUTES" --log-dir "$LOGS" ${TUNE_ARGS:-}
              mkdir -p "$OUT/tuning_log" && cp "$LOGS"/cuda-*/*.json "$OUT/tuning_log/" 2>/dev/null ;;
        compare) step compare 170 python3 -m shuffletvm compare shufflenet_v2_x1_0 --target cuda --log-dir "$LOGS" \
                     --runtimes tvm-tuned tvm-hand tvm-untuned pytorch-cuda tensorrt --json "$OUT/compare.json" \
                     --plot "$OUT/compare.png" ;;
        parity-v1) step parity-v1 100 python3 -m shuffletvm parity shufflenet_v1_g3_x1_0 --target cuda \
                       --json "$OUT/parity_shufflenet_v1_g3_x1_0.json" ;;
        kernels) step kernels 150 python3 benchmarks/gpu_kernels.py --out-dir "$OUT" ;;
        *) echo "== $1: no such step" ;;
    esac
}

echo "== setup"
tar -C "$WORK/site" -xJf "$BUNDLE/site.tar.xz" || exit 1
xz -dc "$BUNDLE/tvm_compiler.so.xz" > "$WORK/site/tvm/lib/libtvm_compiler.so" || exit 1
python3 -m pip install -q --no-deps --no-index --no-build-isolation --no-compile --target "$WORK/site" . || exit 1
# libtvm_runtime_cuda.so needs libcudart.so.13: take the one PyTorch's CUDA wheels or the toolkit ship.
cudart=$(python3 - <<'PY'
import glob, os, site
roots = site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/local/cuda/lib"]
hits = [p for r in roots for p in glob.glob(os.path.join(r, "**", "libcudart.so.13*"), recursive=True)]
print(os.path.dirname(hits[0]) if hits else "")
PY
)
export LD_LIBRARY_PATH="${cudart}:$WORK/site/tvm_ffi/lib:$WORK/site/tvm/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$WORK/site" PYTHONUNBUFFERED=1 PATH="$PATH:/usr/local/cuda/bin"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
nvcc --version | tail -1
python3 -c "import tvm, xgboost, torch; print('tvm', tvm.__version__, '| xgboost', xgboost.__version__, '| torch', torch.__version__)" || exit 1
echo "== setup done after $((SECONDS - start)) s"

for name in $STEPS; do
    run_step "$name"
done
echo "== done after $((SECONDS - start)) s"
