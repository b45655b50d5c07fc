#!/usr/bin/env bash
# The CUDA checks of issue 7 in one device call: the kernel-against-CPU tests on the GPU and
# the MaxSim bandwidth benchmark. The GPU machine has no Rust and fetches nothing, so:
#   here:   scripts/gpu_check.sh prepare   # builds and strips both into .deps/gpu (~10 MB)
#   device: run(command="bash scripts/gpu_check.sh run", carry=[".deps/gpu"])
# Its CUDA is 13, whose NVRTC is libnvrtc.so.13; cudarc asks for libnvrtc.so.12, so `run`
# points that name at the image's NVRTC (same C API) unless a .so.12 is already there.
# Results go to $OUT (gpu_tests.txt, bench_maxsim.json).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
    mkdir -p .deps/gpu
    test_bin=$(cargo test --release -p kernels --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kernels" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])' | tail -1)
    cargo build --release -p kernels --example bench_gpu_maxsim
    strip -o .deps/gpu/kernels_tests "$test_bin"
    strip -o .deps/gpu/bench_gpu_maxsim target/release/examples/bench_gpu_maxsim
    ls -la .deps/gpu
    ;;
run)
    out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    libdir=$(mktemp -d)
    if ! ldconfig -p | grep -q 'libnvrtc.so.12'; then
        nvrtc=$(python3 -c 'import glob, nvidia, os
paths = [p for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "**", "libnvrtc.so.1[0-9]*"), recursive=True)]
print(sorted(paths)[-1])')
        ln -s "$nvrtc" "$libdir/libnvrtc.so.12"
        export LD_LIBRARY_PATH="$libdir:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    JACOLBERT_REQUIRE_NVRTC=1 .deps/gpu/kernels_tests cuda --nocapture --test-threads 1 2>&1 | tee "$out/gpu_tests.txt"
    .deps/gpu/bench_gpu_maxsim 20000 300 20 2>&1 | tee "$out/bench_maxsim.json"
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
