#!/usr/bin/env bash
# The README's run command: builds jacolbert, fetches the MeCab dictionary if missing, starts a
# whole cluster in this process (`jacolbert local`: router, encoder, 2 shards on loopback ports)
# with the tiny-lexical demo model, indexes the 1,145 JSQuAD validation paragraphs (JGLUE,
# CC BY-SA 4.0; see tests/fixtures/README.md) with a progress line, and asks a few of JSQuAD's
# questions, printing the hits. It listens on free ports (or from $PORT on). The cluster's data
# goes to a temporary directory (or $DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC
cargo build --release --bin jacolbert
bin=./target/release/jacolbert
data="${DATA_DIR:-$(mktemp -d)}"
work="$(mktemp -d)"
scripts/jsquad_paragraphs.py "$work"
# Free ports unless PORT is set; the router's address is what this cluster itself prints, so the
# script never talks to (or indexes into) another cluster that holds a port.
RUST_LOG="${RUST_LOG:-warn}" "$bin" local --model tests/fixtures/models/tiny-lexical --data-dir "$data" \
    --listen "127.0.0.1:${PORT:-0}" --train-tokens 20000 >"$work/local.out" &
cluster=$!
trap 'kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$work"' EXIT
router=""
for _ in $(seq 600); do
    router="$(sed -n 's/^router listening on //p' "$work/local.out")"
    [ -n "$router" ] && break
    if ! kill -0 "$cluster" 2>/dev/null; then
        wait "$cluster" || true
        echo "demo: the local cluster did not start (see its error above)" >&2
        exit 1
    fi
    sleep 0.1
done
[ -n "$router" ] || { echo "demo: the local cluster did not start within a minute" >&2; exit 1; }
"$bin" index "$work/paragraphs.jsonl" --router "$router"
while read -r question; do
    echo
    "$bin" search "$question" -k 3 --router "$router"
done < "$work/questions.txt"
echo
echo "cluster data: $data (start it again with: $bin local --model tests/fixtures/models/tiny-lexical --data-dir $data)"
