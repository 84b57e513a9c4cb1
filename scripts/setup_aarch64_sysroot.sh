#!/usr/bin/env bash
# Builds an aarch64 userland that qemu-user can run on an x86-64 host, for running (and, over RPC, tuning on)
# cross-compiled ShuffleNet modules without ARM hardware:
#   $ROOT/sysroot  Debian bookworm arm64 packages (python3.11 and the libraries it and TVM load), unpacked
#   $ROOT/site     aarch64 wheels (apache-tvm, apache-tvm-ffi, numpy, psutil, cloudpickle) for that python
# Uses a private APT configuration: the host's dpkg database and sources are left untouched.
# Idempotent: a finished sysroot is recognised by its stamp file and kept.
set -euo pipefail
ROOT=${1:-${SHUFFLETVM_AARCH64_ROOT:-$HOME/.cache/shuffletvm/aarch64}}
PY=${PYTHON:-python3}
STAMP="$ROOT/.complete-v1"
[ -f "$STAMP" ] && { echo "aarch64 sysroot ready at $ROOT"; exit 0; }

mkdir -p "$ROOT/apt/lists/partial" "$ROOT/apt/cache/archives/partial" "$ROOT/debs" "$ROOT/sysroot" "$ROOT/site"
: > "$ROOT/apt/status"
APT_OPTS=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
          -o Dir::State::Lists="$ROOT/apt/lists" -o Dir::Cache="$ROOT/apt/cache"
          -o Dir::State::status="$ROOT/apt/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${APT_OPTS[@]}" -q update >/dev/null
PKGS=(libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1
      libncursesw6 libtinfo6 libreadline8 libcrypt1 libzstd1 libtirpc3 libnsl2 libgssapi-krb5-2
      libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libdb5.3
      python3.11-minimal libpython3.11-minimal libpython3.11-stdlib media-types)
(cd "$ROOT/debs" && apt-get "${APT_OPTS[@]}" -q download "${PKGS[@]}" >/dev/null)
for deb in "$ROOT"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT/sysroot"; done
# Debian's arm64 libc6 is multiarch; make the dynamic loader findable at the path aarch64 binaries name.
mkdir -p "$ROOT/sysroot/lib"
[ -e "$ROOT/sysroot/lib/ld-linux-aarch64.so.1" ] || ln -s ../usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1 "$ROOT/sysroot/lib/ld-linux-aarch64.so.1"

"$PY" -m pip install -q --no-deps --only-binary=:all: --upgrade --target "$ROOT/site" \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_24_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 "numpy>=2,<3" psutil cloudpickle typing_extensions
# Under qemu only the runtime is loaded (TVM_USE_RUNTIME_LIB=1); the 250 MB compiler library is not needed.
rm -f "$ROOT/site/tvm/lib/libtvm_compiler.so"
touch "$STAMP"
echo "aarch64 sysroot ready at $ROOT"
