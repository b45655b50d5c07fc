# Sourced by the benchmarks that run the bert-base-sized model (bench_cluster.sh, bench_indexing.sh):
# the dictionary, the model of make_bench_model.py ($model), the release binary ($bin), and a
# work folder ($work, removed on exit with every process started).
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC RUST_LOG=warn
python3 -c 'import numpy, safetensors' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --target .deps/python numpy safetensors >&2
model="$(PYTHONPATH=.deps/python${PYTHONPATH:+:$PYTHONPATH} python3 scripts/make_bench_model.py)"
cargo build --release --bin jacolbert >&2
bin=./target/release/jacolbert
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
