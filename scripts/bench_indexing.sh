#!/usr/bin/env bash
# Search beside bulk indexing, in one run on one `jacolbert local` cluster (2 shards) serving the
# bert-base-sized model of make_bench_model.py: `jacolbert bench` alone, `jacolbert index` of the
# 1,145 JSQuAD paragraphs alone (its defaults; once to fill the cluster, which it prints too, and
# once more replacing every document), then both at once (every document replaced again).
# Prints one JSON line: each phase's figures and the two ratios issue 20 asks about (search p99
# beside indexing / alone, indexing rate beside searches / alone).
# Searches come at a fixed RATE per second (an open loop: the same offered load in both phases,
# latency counted from each search's scheduled time) from CONCURRENCY workers; RATE 0 sends
# each worker's next search as soon as the last is answered, which on 2 cores leaves indexing
# only what searches leave over.
# Usage: scripts/bench_indexing.sh [RATE (5)] [CONCURRENCY (4)]
rate="${1:-5}"
concurrency="${2:-4}"
source "$(dirname "$0")/bench_setup.sh"
scripts/jsquad_paragraphs.py "$work"
start_local
# Indexes the paragraphs (again: --restart); prints its seconds.
index() {
    local started
    started=$(date +%s.%N)
    "$bin" index "$work/paragraphs.jsonl" --router "$router" --restart >"$work/index.out" 2>"$work/index.err" ||
        { cat "$work/index.err" >&2; exit 1; }
    python3 -c "print($(date +%s.%N) - $started)"
}
# A first indexing (the shards train on the way) and a few searches, so that both indexing
# phases below replace every document of a trained cluster, with the model's pages warm.
first_index_s=$(index)
"$bin" bench --router "$router" --duration 5 --concurrency 1 --json >/dev/null
alone_index_s=$(index)
"$bin" bench --router "$router" --duration 30 --concurrency "$concurrency" --rate "$rate" --json >"$work/alone.json"
# Searches for 90% of the time indexing took alone: all of it beside the indexing below.
seconds=$(python3 -c "print(max(5, int($alone_index_s * 0.9)))")
"$bin" bench --router "$router" --duration "$seconds" --concurrency "$concurrency" --rate "$rate" --json >"$work/beside.json" &
bench=$!
beside_index_s=$(index)
wait $bench
python3 - "$work" "$alone_index_s" "$beside_index_s" "$first_index_s" <<'PY'
import json, sys
work, alone_s, beside_s, first_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
alone = json.load(open(f"{work}/alone.json"))
beside = json.load(open(f"{work}/beside.json"))
docs = sum(1 for _ in open(f"{work}/paragraphs.jsonl"))
print(json.dumps({
    "documents": docs,
    "index_first": {"seconds": first_s, "documents_per_s": docs / first_s},
    "index_alone": {"seconds": alone_s, "documents_per_s": docs / alone_s},
    "index_beside_search": {"seconds": beside_s, "documents_per_s": docs / beside_s},
    "search_alone": alone, "search_beside_index": beside,
    "p99_ratio": beside["p99_ms"] / alone["p99_ms"],
    "index_rate_ratio": alone_s / beside_s,
}))
PY
