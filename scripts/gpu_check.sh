#!/usr/bin/env bash
# The CUDA checks of issue 7 in one device call: every op and kernel against its oracle on the
# GPU, the encoder's PyLate parity on CUDA, MaxSim against the card's memory bandwidth, and the
# encoder against PyTorch fp16 on the same card. The GPU machine has no Rust, fetches nothing
# and has no MeCab dictionary (the parity it runs starts from the reference's ids), so:
#   here:   scripts/gpu_check.sh prepare   # builds and strips the binaries into .deps/gpu
#   device: run(command="bash scripts/gpu_check.sh run", carry=[".deps/gpu"], timeout_s=540)
# Its CUDA is 13 (libnvrtc.so.13, libcublas.so.13 in the image's Python packages); cudarc asks
# for libnvrtc.so.12 and libcublas.so, so `run` points those names at the image's libraries
# (same C API for what we call) unless they are already on the library path.
# Results go to $OUT (gpu.txt, gpu_tests.txt, encoder_parity.txt, bench_maxsim.json,
# bench_encoder.json).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
    mkdir -p .deps/gpu
    # The test executables cargo builds for a package's lib tests or one integration test.
    executable() {
        cargo test --release "$@" --no-run --message-format=json 2>/dev/null | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])' | tail -1
    }
    strip -o .deps/gpu/kernels_tests "$(executable -p kernels --lib)"
    strip -o .deps/gpu/encoder_parity "$(executable -p encoder-node --test encoder_parity)"
    cargo build --release -p kernels --example bench_gpu_maxsim
    cargo build --release --bin jacolbert
    strip -o .deps/gpu/bench_gpu_maxsim target/release/examples/bench_gpu_maxsim
    # Compressed: the working tree and what a call carries must stay within 64 MiB.
    strip -o .deps/gpu/jacolbert target/release/jacolbert
    gzip -f .deps/gpu/jacolbert
    ls -la .deps/gpu
    ;;
run)
    out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    libdir=$(mktemp -d)
    # The newest library matching a pattern among the image's nvidia Python packages and its
    # CUDA toolkit.
    find_lib() {
        python3 -c 'import glob, os, sys
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
try:
    import nvidia
    roots += list(nvidia.__path__)
except ImportError:
    pass
paths = [p for d in roots for p in glob.glob(os.path.join(d, "**", sys.argv[1]), recursive=True)]
print(sorted(paths)[-1] if paths else sys.exit("no " + sys.argv[1] + " under " + ", ".join(roots)))' "$1"
    }
    # Only the exact names cudarc asks for count (the toolkit may list only libnvrtc.so.13).
    if ! ldconfig -p | grep -qE 'libnvrtc\.so\.12 '; then
        nvrtc=$(find_lib 'libnvrtc.so.1[0-9]*')
        ln -s "$nvrtc" "$libdir/libnvrtc.so.12"
        export LD_LIBRARY_PATH="$libdir:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    if ! ldconfig -p | grep -qE 'libcublas\.so(\.12)? '; then
        cublas=$(find_lib 'libcublas.so.1[0-9]*')
        ln -s "$cublas" "$libdir/libcublas.so"
        export LD_LIBRARY_PATH="$libdir:$(dirname "$cublas")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    export JACOLBERT_FIXTURES="$PWD/tests/fixtures" JACOLBERT_REQUIRE_NVRTC=1
    gunzip -c .deps/gpu/jacolbert.gz >"$libdir/jacolbert" && chmod +x "$libdir/jacolbert"
    status=0
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv | tee "$out/gpu.txt"
    .deps/gpu/kernels_tests --nocapture --test-threads 1 2>&1 | tee "$out/gpu_tests.txt" || status=1
    .deps/gpu/encoder_parity on_every_backend --nocapture --test-threads 1 2>&1 |
        tee "$out/encoder_parity.txt" || status=1
    .deps/gpu/bench_gpu_maxsim 20000 300 20 2>&1 | tee "$out/bench_maxsim.json" || status=1
    PYTHONUNBUFFERED=1 python3 scripts/bench_gpu_encoder.py --jacolbert "$libdir/jacolbert" --json 2>&1 |
        tee "$out/bench_encoder.json" || status=1
    exit $status
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
