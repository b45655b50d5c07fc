#!/usr/bin/env bash
# The project's test command (README, .ci/run): fetches what the tests need, then runs every
# test of the workspace in the one build profile (release).
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC
cargo test --workspace --release
