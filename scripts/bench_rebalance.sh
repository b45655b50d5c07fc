#!/usr/bin/env bash
# What moving shards costs, in one run: a cluster of separate processes on loopback (etcd, an
# encoder with the bert-base-sized model of make_bench_model.py, 2 shards, a router on the
# store) over $DOCS JSQuAD paragraphs; then, $ROUNDS times, `jacolbert bench` for $SECONDS_EACH
# seconds with no move, and the same while a third shard is added and removed again and again
# by `jacolbert rebalance --cluster-store` (each move's batches go through the fence and the
# epoch barrier). Prints one JSON line per bench, the documents moved per second, and the
# ratios of p50 and p99 (during moves / without). The moves also take CPU from the searches on
# a small machine: the ratio is the whole cost of a move, the barrier's wait included.
source "$(dirname "$0")/bench_cluster.sh"
docs="${DOCS:-300}" seconds="${SECONDS_EACH:-20}" concurrency="${CONCURRENCY:-2}" rounds="${ROUNDS:-2}"
python3 - "$work" "$docs" <<'PY'
import json, sys
data = json.load(open("tests/fixtures/jsquad/jsquad-valid-v1.1.json", encoding="utf-8"))
rows = [{"id": f"{a['title']}-{i}", "text": p["context"].split(" [SEP] ", 1)[-1]}
        for a in data["data"] for i, p in enumerate(a["paragraphs"])][: int(sys.argv[2])]
with open(f"{sys.argv[1]}/paragraphs.jsonl", "w", encoding="utf-8") as out:
    out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
PY
encoder=$(port)
"$bin" encoder --model "$model" --listen "127.0.0.1:$encoder" >/dev/null &
shards=()
for s in 0 1 2; do
    p=$(port)
    "$bin" shard --data-dir "$work/shard-$s" --number "$s" --listen "127.0.0.1:$p" >/dev/null &
    shards+=("127.0.0.1:$p")
done
wait_port "$encoder"
for a in "${shards[@]}"; do wait_port "${a##*:}"; done
for _ in $(seq 50); do
    "$bin" cluster init --cluster-store "$store" --encoder "127.0.0.1:$encoder" --shard "${shards[0]}" \
        --shard "${shards[1]}" >/dev/null 2>&1 && break
    sleep 0.2
done
router=$(port)
"$bin" router --cluster-store "$store" --listen "127.0.0.1:$router" >/dev/null &
wait_port "$router"
"$bin" index "$work/paragraphs.jsonl" --router "127.0.0.1:$router" --batch 8 >&2
bench() { "$bin" bench --router "127.0.0.1:$router" --duration "$seconds" --concurrency "$concurrency" --json; }
# Adds the third shard and removes it again until told to stop; writes documents moved and
# seconds spent moving.
moves() {
    local moved=0 start end n
    start=$(date +%s.%N)
    while [ ! -e "$work/stop" ]; do
        n=$("$bin" rebalance --cluster-store "$store" --add-shard "${shards[2]}" 2>/dev/null | sed -n 's/.*moved \([0-9]*\) documents.*/\1/p')
        moved=$((moved + n))
        n=$("$bin" rebalance --cluster-store "$store" --remove-shard 2 2>/dev/null | sed -n 's/.*moved \([0-9]*\) documents.*/\1/p')
        moved=$((moved + n))
    done
    end=$(date +%s.%N)
    echo "$moved $(awk "BEGIN { print $end - $start }")" >"$work/moved"
}
for round in $(seq "$rounds"); do
    echo "{\"round\": $round, \"moving\": false, \"bench\": $(bench)}"
    rm -f "$work/stop"
    moves &
    mover=$!
    result=$(bench)
    touch "$work/stop"
    wait "$mover"
    read -r moved spent <"$work/moved"
    echo "{\"round\": $round, \"moving\": true, \"documents_moved\": $moved, \"seconds_moving\": $spent, \"bench\": $result}"
done | tee "$work/results.jsonl"
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
moving = [r for r in rows if r["moving"]]
rate = sum(r["documents_moved"] for r in moving) / sum(r["seconds_moving"] for r in moving)
print(f"documents moved per second while searches ran: {rate:.1f}")
for key in ("p50_ms", "p99_ms", "qps"):
    idle = statistics.median(r["bench"][key] for r in rows if not r["moving"])
    during = statistics.median(r["bench"][key] for r in moving)
    print(f"{key}: no move {idle:.2f}, during moves {during:.2f}, during/no move {during / idle:.3f}")
PY
