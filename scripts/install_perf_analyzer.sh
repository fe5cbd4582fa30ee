#!/usr/bin/env bash
# Make Triton's perf_analyzer (shipped in the tritonclient==2.51.0 wheel) runnable here.
#
# perf_analyzer links against libb64.so.0d (Debian package libb64-0d) and libcudart.so.12
# (the nvidia-cuda-runtime-cu12 wheel, put on LD_LIBRARY_PATH by
# serving.loadtest.perf_analyzer). This script installs the former when it is
# missing and is safe to run again (it does nothing when the library is already there).
#
# Usage: bash scripts/install_perf_analyzer.sh [VENV]   (VENV defaults to .venv)
set -euo pipefail

VENV="${1:-.venv}"

have_libb64() {
    ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d' || dpkg -s libb64-0d >/dev/null 2>&1
}

if have_libb64; then
    echo "libb64-0d: already installed"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: libb64.so.0d is missing and apt-get is not available; install libb64 (0d ABI) by hand" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "error: installing libb64-0d needs root (or sudo)" >&2
            exit 1
        fi
    fi
    echo "libb64-0d: installing with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libb64-0d
fi

PA="$VENV/bin/perf_analyzer"
if [ ! -x "$PA" ]; then
    echo "warning: $PA not found; install tritonclient==2.51.0 (with perf_analyzer) into $VENV" >&2
    exit 0
fi
CUDART_DIR="$(find "$VENV" -path '*nvidia/cuda_runtime/lib' -type d 2>/dev/null | head -n 1)"
if [ -z "$CUDART_DIR" ]; then
    echo "warning: libcudart.so.12 not found under $VENV; pip install nvidia-cuda-runtime-cu12" >&2
    exit 0
fi
if LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$PA" | grep -q 'not found'; then
    echo "error: $PA still misses libraries:" >&2
    LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$PA" | grep 'not found' >&2
    exit 1
fi
echo "perf_analyzer: ready ($PA, LD_LIBRARY_PATH needs $CUDART_DIR)"
