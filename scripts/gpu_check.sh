#!/usr/bin/env bash
# Runs on a GPU machine with PyTorch (CUDA) and no TVM: unpacks the runtime from .gpu/ (see
# prepare_gpu_bundle.sh) and runs benchmarks/gpu_check.py. Writes results to ${OUT:-.gpu/out}.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=/tmp/shuffletvm-gpu-site
OUT=${OUT:-.gpu/out}
mkdir -p "$SITE" "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .gpu/apache_tvm_ffi-*.whl
tar -C "$SITE" -xJf .gpu/tvm_runtime.tar.xz
# libtvm_runtime_cuda.so needs libcudart.so.13: take the one PyTorch's CUDA wheels or the toolkit ship.
cudart=$(python3 - <<'PY'
import glob, os, site
roots = site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/local/cuda/lib"]
hits = [p for r in roots for p in glob.glob(os.path.join(r, "**", "libcudart.so.13*"), recursive=True)]
print(os.path.dirname(hits[0]) if hits else "")
PY
)
export LD_LIBRARY_PATH="${cudart}:$SITE/tvm_ffi/lib:$SITE/tvm/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$SITE:$PWD/src" TVM_USE_RUNTIME_LIB=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 benchmarks/gpu_check.py --bundle .gpu --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
# The CLI itself, as a user runs it on the GPU box.
python3 -c "import numpy as np; np.save('$OUT/x.npy', np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype('float32'))"
python3 -m shuffletvm run .gpu/shufflenet_v2_x1_0.cuda.so --input "$OUT/x.npy" --output "$OUT/y.npy" --top 3 2>&1 | tee -a "$OUT/gpu_check.log"
