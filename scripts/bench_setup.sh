# Sourced by the benchmarks that run the bert-base-sized model (bench_cluster.sh, bench_indexing.sh,
# bench_explain.sh): the dictionary, the model of make_bench_model.py ($model), the release binary
# ($bin), a work folder ($work, removed on exit with every process started), and start_local.
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

# Starts `jacolbert local` serving $model on $work/data in the background, with any further
# flags given, and sets $router to its address once it listens.
start_local() {
    "$bin" local --model "$model" --data-dir "$work/data" --listen 127.0.0.1:0 "$@" \
        >"$work/local.out" 2>"$work/local.err" &
    router=""
    for _ in $(seq 1200); do
        router="$(sed -n 's/^router listening on //p' "$work/local.out")"
        [ -n "$router" ] && break
        sleep 0.1
    done
    [ -n "$router" ] || { cat "$work/local.err" >&2; echo "the local cluster did not start" >&2; exit 1; }
}
