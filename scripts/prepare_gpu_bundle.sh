#!/usr/bin/env bash
# Prepares .gpu/ for scripts/gpu_check.sh on a GPU machine that has PyTorch and nvcc but no TVM and no
# network. What a pip install would fetch, packed small enough to carry (about 65 MB):
#   tvm_compiler.so.xz  TVM's compiler library, 248 MB; xz with the x86 branch filter makes it 58 MB
#                       (compressing takes 3 minutes; kept while the installed library is unchanged)
#   site.tar.xz         the rest of the `tvm` package (without the CUTLASS headers and the C++ sources, which
#                       nothing here uses), apache-tvm-ffi and xgboost-cpu (MetaSchedule's cost model), as
#                       wheels for that machine's Python (PYVER, default 3.12)
# shuffletvm itself travels as the checkout and is installed there from it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(realpath -s "${PY:-.venv/bin/python}")
PYVER=${PYVER:-3.12}
BUNDLE=${BUNDLE:-.gpu}
mkdir -p "$BUNDLE"
site=$($PY -c "import tvm, os; print(os.path.dirname(os.path.dirname(tvm.__file__)))")
compiler="$site/tvm/lib/libtvm_compiler.so"
if [[ ! -f "$BUNDLE/tvm_compiler.so.xz" || "$compiler" -nt "$BUNDLE/tvm_compiler.so.xz" ]]; then
    xz -T1 -c --x86 --lzma2=preset=9e,dict=256MiB "$compiler" > "$BUNDLE/tvm_compiler.so.xz.part"
    mv "$BUNDLE/tvm_compiler.so.xz.part" "$BUNDLE/tvm_compiler.so.xz"
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$stage/wheels" apache-tvm-ffi==0.1.14.post1 xgboost-cpu==3.2.0 2>/dev/null
mkdir "$stage/site"
for w in "$stage"/wheels/*.whl; do (cd "$stage/site" && $PY -m zipfile -e "$w" .); done
tar -C "$site" --exclude='tvm/lib/libtvm_compiler.so' --exclude='tvm/3rdparty' --exclude='tvm/src' \
    --exclude='tvm/web' --exclude='__pycache__' -cf - tvm | tar -C "$stage/site" -xf -
rm -rf "$stage"/site/tvm_ffi/{3rdparty/libbacktrace,src,include}
tar -C "$stage/site" -cf - . | xz -T1 --x86 --lzma2=preset=9e,dict=64MiB > "$BUNDLE/site.tar.xz"
du -sh "$BUNDLE"/tvm_compiler.so.xz "$BUNDLE"/site.tar.xz
