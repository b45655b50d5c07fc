#!/usr/bin/env bash
# What a dead replica costs, and how fast one is repaired, in one run: separate processes on
# loopback (etcd, an encoder with the bert-base-sized model of make_bench_model.py, 2 shards
# of 2 replicas, a router on the store). Three phases over JSQuAD paragraphs:
#   1. all replicas up: write $WRITES new paragraphs (`jacolbert index`), then `jacolbert
#      bench` for $SECONDS_EACH seconds;
#   2. one replica of shard 0 SIGKILLed: the same (its writes are acknowledged by the other,
#      after marking it stale);
#   3. the replica restarted: the time until `cluster status` shows it in sync again, and what
#      the repair copied (the router's jacolbert_router_repair_copied_total).
# Prints one JSON line per phase, then the ratios (one down / all up) and the repair rate.
source "$(dirname "$0")/bench_cluster.sh"
writes="${WRITES:-200}" seconds="${SECONDS_EACH:-20}" concurrency="${CONCURRENCY:-2}"
# Three files of $writes paragraphs each, with ids of their own: the load, and each phase's writes.
python3 - "$work" "$writes" <<'PY'
import json, sys
data = json.load(open("tests/fixtures/jsquad/jsquad-valid-v1.1.json", encoding="utf-8"))
texts = [p["context"].split(" [SEP] ", 1)[-1] for a in data["data"] for p in a["paragraphs"]]
n = int(sys.argv[2])
for k, name in enumerate(["load", "up", "down"]):
    with open(f"{sys.argv[1]}/{name}.jsonl", "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"{name}-{i}", "text": texts[(k * n + i) % len(texts)]}, ensure_ascii=False) + "\n")
PY
encoder=$(port)
"$bin" encoder --model "$model" --listen "127.0.0.1:$encoder" >/dev/null &
declare -A address pid
start_shard() { # shard replica
    "$bin" shard --data-dir "$work/shard-$1-$2" --number "$1" --listen "${address[$1-$2]}" >/dev/null &
    pid[$1-$2]=$!
    wait_port "${address[$1-$2]##*:}"
}
for s in 0 1; do
    for r in 0 1; do
        address[$s-$r]="127.0.0.1:$(port)"
        start_shard "$s" "$r"
    done
done
wait_port "$encoder"
for _ in $(seq 50); do
    "$bin" cluster init --cluster-store "$store" --encoder "127.0.0.1:$encoder" \
        --shard "${address[0-0]},${address[0-1]}" --shard "${address[1-0]},${address[1-1]}" >/dev/null 2>&1 && break
    sleep 0.2
done
router=$(port) metrics=$(port)
"$bin" router --cluster-store "$store" --listen "127.0.0.1:$router" --metrics-addr "127.0.0.1:$metrics" >/dev/null &
wait_port "$router"
"$bin" index "$work/load.jsonl" --router "127.0.0.1:$router" --batch 8 >&2
now() { date +%s.%N; }
# Writes a phase's file; prints paragraphs per second.
write() {
    local start end
    start=$(now)
    "$bin" index "$work/$1.jsonl" --router "127.0.0.1:$router" --batch 8 >&2
    end=$(now)
    awk "BEGIN { print $writes / ($end - $start) }"
}
bench() { "$bin" bench --router "127.0.0.1:$router" --duration "$seconds" --concurrency "$concurrency" --json; }
state() { # address: its state in `cluster status`
    "$bin" cluster status --json --cluster-store "$store" |
        python3 -c "import json,sys; s=json.load(sys.stdin); print([r['state'] for x in s['shards'] for r in x['replicas'] if r['address']=='$1'][0])"
}
{
    echo "{\"phase\": \"all up\", \"writes_per_s\": $(write up), \"bench\": $(bench)}"
    kill -9 "${pid[0-1]}"
    wait "${pid[0-1]}" 2>/dev/null || true
    echo "{\"phase\": \"one down\", \"writes_per_s\": $(write down), \"state\": \"$(state "${address[0-1]}")\", \"bench\": $(bench)}"
    start=$(now)
    start_shard 0 1
    until [ "$(state "${address[0-1]}")" = in_sync ]; do sleep 0.2; done
    end=$(now)
    # What the repair copied: the router's counter.
    missed=$(python3 -c "
import urllib.request
text = urllib.request.urlopen('http://127.0.0.1:$metrics/metrics').read().decode()
print(int(float([l.split()[1] for l in text.splitlines() if l.startswith('jacolbert_router_repair_copied_total ')][0])))")
    echo "{\"phase\": \"repair\", \"documents_missed\": $missed, \"seconds\": $(awk "BEGIN { print $end - $start }")}"
} | tee "$work/results.jsonl"
python3 - "$work/results.jsonl" <<'PY'
import json, sys
up, down, repair = [json.loads(l) for l in open(sys.argv[1])]
print(f"writes per second: all up {up['writes_per_s']:.1f}, one down {down['writes_per_s']:.1f}, "
      f"one down/all up {down['writes_per_s'] / up['writes_per_s']:.3f} (the dead replica: {down['state']})")
for key in ("qps", "p50_ms", "p99_ms"):
    a, b = up["bench"][key], down["bench"][key]
    print(f"{key}: all up {a:.2f}, one down {b:.2f}, one down/all up {b / a:.3f}")
print(f"repair: {repair['documents_missed']} documents missed, in sync {repair['seconds']:.2f} s after the restart "
      f"({repair['documents_missed'] / repair['seconds']:.0f} documents/s, start-up and the first look included)")
PY
