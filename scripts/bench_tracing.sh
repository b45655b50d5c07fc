#!/usr/bin/env bash
# Search latency with tracing off, and with tracing on but the OTLP collector down (its port
# closed), in the same run: `jacolbert local` (tiny-lexical, 2 shards) over the JSQuAD
# paragraphs, `jacolbert bench` for $SECONDS_EACH seconds at concurrency $CONCURRENCY, the
# two set-ups alternated $ROUNDS times. Prints one JSON line per bench, the spans the nodes
# dropped, and the ratio of medians (down / off).
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC RUST_LOG=warn
cargo build --release --bin jacolbert >&2
bin=./target/release/jacolbert
work="$(mktemp -d)"
trap 'kill -INT $(jobs -p) 2>/dev/null; wait; rm -rf "$work"' EXIT
seconds="${SECONDS_EACH:-15}" concurrency="${CONCURRENCY:-4}" rounds="${ROUNDS:-2}"
python3 - "$work" <<'PY'
import json, sys
data = json.load(open("tests/fixtures/jsquad/jsquad-valid-v1.1.json", encoding="utf-8"))
with open(f"{sys.argv[1]}/paragraphs.jsonl", "w", encoding="utf-8") as out:
    for a in data["data"]:
        for i, p in enumerate(a["paragraphs"]):
            out.write(json.dumps({"id": f"{a['title']}-{i}", "text": p["context"].split(" [SEP] ", 1)[-1]},
                                 ensure_ascii=False) + "\n")
PY
# A port nothing listens on: the collector is down.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start() {
    "$bin" local --model tests/fixtures/models/tiny-lexical --data-dir "$work/data" --shards 2 \
        --listen 127.0.0.1:52051 --metrics-addr 127.0.0.1:52050 --train-tokens 20000 >/dev/null &
    for _ in $(seq 100); do "$bin" search "起動" -k 1 --router 127.0.0.1:52051 >/dev/null 2>&1 && return; sleep 0.2; done
    echo "the cluster did not start" >&2; exit 1
}
stop() { kill -INT %1; wait %1 || true; }
start
"$bin" index "$work/paragraphs.jsonl" --router 127.0.0.1:52051 >&2
stop
for round in $(seq "$rounds"); do
    for mode in off down; do
        if [ "$mode" = down ]; then export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$closed"; else unset OTEL_EXPORTER_OTLP_ENDPOINT; fi
        start
        result=$("$bin" bench --router 127.0.0.1:52051 --duration "$seconds" --concurrency "$concurrency" --json)
        dropped=$(curl -s 127.0.0.1:52050/metrics 2>/dev/null | awk '/^jacolbert_trace_spans_dropped_total/ {print $2}')
        echo "{\"round\": $round, \"tracing\": \"$mode\", \"spans_dropped\": ${dropped:-null}, \"bench\": $result}"
        stop
    done
done | tee "$work/results.jsonl"
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for key in ("p50_ms", "p99_ms", "qps"):
    off = statistics.median(r["bench"][key] for r in rows if r["tracing"] == "off")
    down = statistics.median(r["bench"][key] for r in rows if r["tracing"] == "down")
    print(f"{key}: off {off:.2f}, collector down {down:.2f}, down/off {down / off:.3f}")
PY
