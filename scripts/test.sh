#!/usr/bin/env bash
# The project's test command (README, .ci/run): fetches what the tests need, then runs every
# test of the workspace in the one build profile (release).
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC
# The cluster-state tests start etcd on loopback (.ci/run installs it).
command -v etcd >/dev/null || { echo "test.sh: etcd not found: apt-get install etcd-server" >&2; exit 1; }
# The console test drives Debian's headless Chromium (.ci/run installs it).
command -v chromium >/dev/null || { echo "test.sh: chromium not found: apt-get install chromium" >&2; exit 1; }
# NVRTC, so that every CUDA kernel is compiled (for sm_80 and sm_90) even with no GPU; with it
# required, a missing library fails the kernel test instead of skipping it.
LD_LIBRARY_PATH="$(scripts/fetch-nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH JACOLBERT_REQUIRE_NVRTC=1
# Every test binary runs whatever fails before it (--no-fail-fast), and every check below runs
# whatever failed before it; the closing line counts the tests and the exit status says whether
# anything failed.
status=0
# The Kubernetes manifests against the API schemas (offline).
scripts/validate-k8s.sh --quiet || status=1
# The Python client's venv: the package from clients/python (tests/python_client.rs runs its
# test), grpcio-reflection for that test, and grpcio-tools to check the committed stubs.
venv=.deps/pyclient
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check ./clients/python grpcio-reflection==1.85.1 grpcio-tools==1.85.1
PYTHON="$venv/bin/python" clients/python/generate.sh --check || status=1
export JACOLBERT_PYTHON="$PWD/$venv/bin/python"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run() {
    "$@" --no-fail-fast 2>&1 | tee -a "$log" || status=1
}
# First the PyLate parity tests on the portable kernels (the `gemm` crate), on the AVX2
# kernels (the path of CPUs without AVX-512) and on the AVX-512 kernels (the path of CPUs
# without AMX); where a CPU lacks one, its run repeats a path. Then everything on the fastest
# kernels this CPU has.
JACOLBERT_KERNELS=portable run cargo test --workspace --release pylate
JACOLBERT_KERNELS=avx2 run cargo test --workspace --release pylate
JACOLBERT_KERNELS=avx512 run cargo test --workspace --release pylate
run cargo test --workspace --release
# One closing line for all runs (cargo's own last line is a doc-test run with no tests).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
[ "$status" = 0 ] || echo "test.sh: some tests failed or did not build: search the output above for FAILED or error" >&2
exit "$status"
