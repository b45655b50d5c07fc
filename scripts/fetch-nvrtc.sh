#!/usr/bin/env bash
# Installs NVRTC (the CUDA run-time compiler, PyPI package nvidia-cuda-nvrtc-cu12) into
# .deps/python (git-ignored) and prints its library directory, for LD_LIBRARY_PATH. No GPU or
# driver is needed to compile the kernels to PTX. Pinned to CUDA 12.8, the version cudarc is
# built against (feature cuda-12080): PTX from a newer NVRTC fails to load on older drivers.
# Idempotent: does nothing when the library is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/.deps/python"
lib="$target/nvidia/cuda_nvrtc/lib"
if [ ! -f "$lib/libnvrtc.so.12" ]; then
  echo "fetching nvidia-cuda-nvrtc-cu12 12.8.93 (about 90 MB) into $target" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$target" nvidia-cuda-nvrtc-cu12==12.8.93 >&2
fi
echo "$lib"
