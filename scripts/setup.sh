#!/usr/bin/env bash
# Sets up everything shuffletvm needs on a fresh Debian/Ubuntu machine, idempotently:
#   apt:  g++-aarch64-linux-gnu (links aarch64 modules), qemu-user (runs them without ARM hardware)
#   .venv: torch==2.13.0 first (the CPU build; unpinned torch pulls GBs of CUDA wheels), then this package
#   ~/.cache/shuffletvm/aarch64: an aarch64 Python + TVM runtime for qemu (scripts/setup_aarch64_sysroot.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
log() { echo "[setup] $*" >&2; }

need_apt=()
command -v aarch64-linux-gnu-g++ >/dev/null || need_apt+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "apt-get install ${need_apt[*]}"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    log "pip install torch==2.13.0"
    "${PIP[@]}" torch==2.13.0
fi
stamp="$VENV/.shuffletvm-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "pip install -e .[dev,bench]"
    "${PIP[@]}" -e ".[dev,bench]"
    touch "$stamp"
fi

log "aarch64 emulation sysroot"
PYTHON="$VENV/bin/python" bash scripts/setup_aarch64_sysroot.sh >&2
log "ready: $VENV/bin/shuffletvm"
