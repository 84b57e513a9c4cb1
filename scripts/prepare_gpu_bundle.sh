#!/usr/bin/env bash
# Prepares .gpu/ for scripts/gpu_check.sh on a GPU machine that has PyTorch but no TVM and no network:
# CUDA modules built here (no GPU needed), their weights as state_dicts, the TVM runtime (the `tvm` package
# without its 250 MB compiler library) and a cp312 apache-tvm-ffi wheel. About 45 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${CUDA_ARCH:-sm_90}
MODELS=${MODELS:-"shufflenet_v2_x1_0 shufflenet_v1_g3_x1_0"}
PY=.venv/bin/python
rm -rf .gpu && mkdir -p .gpu
for m in $MODELS; do
    .venv/bin/shuffletvm build "$m" --target cuda --cuda-arch "$ARCH" -o ".gpu/$m.cuda.so" -q >/dev/null
    $PY -c "import torch, sys; from shuffletvm.models import create_model; torch.save(create_model(sys.argv[1]).state_dict(), sys.argv[2])" "$m" ".gpu/$m.pt"
done
site=$($PY -c "import tvm, os; print(os.path.dirname(os.path.dirname(tvm.__file__)))")
tar -C "$site" --exclude='tvm/lib/libtvm_compiler.so' --exclude='__pycache__' -cJf .gpu/tvm_runtime.tar.xz tvm
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 -d .gpu apache-tvm-ffi==0.1.14.post1 2>/dev/null
du -sh .gpu
