#!/usr/bin/env bash
# The project's test command (README, .ci/run): fetches what the tests need, then runs every
# test of the workspace in the one build profile (release).
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC
# First the PyLate parity tests on the portable kernels (the path of CPUs without AVX-512; on
# such CPUs this repeats the run below), then everything on the fastest kernels this CPU has.
JACOLBERT_KERNELS=portable cargo test --workspace --release pylate
cargo test --workspace --release
