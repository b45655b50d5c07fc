#!/usr/bin/env bash
# What explaining costs: on one `jacolbert local` cluster (2 shards) serving the bert-base-sized
# model of make_bench_model.py, with the first 500 JSQuAD paragraphs indexed, `jacolbert bench`
# at k = 10 without and with `--explain`, alternated ROUNDS times in the same run (one search in
# flight, so each figure is one search's latency). The query cache is off, so that every search
# encodes its query in both phases alike (the phases send the same questions). Prints one JSON
# line: each round's p50/p99 both ways and the ratios of the medians.
# Usage: scripts/bench_explain.sh [SECONDS per phase (15)] [ROUNDS (2)]
seconds="${1:-15}"
rounds="${2:-2}"
source "$(dirname "$0")/bench_setup.sh"
scripts/jsquad_paragraphs.py "$work"
head -n 500 "$work/paragraphs.jsonl" >"$work/some.jsonl"
printf '[batching]\nquery_cache = 0\n' >"$work/local.toml"
start_local --config "$work/local.toml"
"$bin" index "$work/some.jsonl" --router "$router" >"$work/index.out" 2>"$work/index.err" ||
    { cat "$work/index.err" >&2; exit 1; }
# Warm the model's pages and the shards' caches.
"$bin" bench --router "$router" --duration 5 --concurrency 1 --json >/dev/null
for r in $(seq "$rounds"); do
    "$bin" bench --router "$router" --duration "$seconds" --concurrency 1 --json >"$work/plain-$r.json"
    "$bin" bench --router "$router" --duration "$seconds" --concurrency 1 --explain --json >"$work/explain-$r.json"
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: [json.load(open(f"{work}/{name}-{r}.json")) for r in range(1, rounds + 1)]
plain, explain = load("plain"), load("explain")
med = lambda runs, key: statistics.median(run[key] for run in runs)
out = {
    "plain": [{k: run[k] for k in ("p50_ms", "p99_ms", "qps", "errors")} for run in plain],
    "explain": [{k: run[k] for k in ("p50_ms", "p99_ms", "qps", "errors")} for run in explain],
    "p50_ratio": med(explain, "p50_ms") / med(plain, "p50_ms"),
    "p99_ratio": med(explain, "p99_ms") / med(plain, "p99_ms"),
}
print(json.dumps(out))
PY
