# Sourced by the cluster benchmarks (bench_rebalance.sh, bench_replicas.sh): the dictionary, the
# bert-base-sized model of make_bench_model.py ($model), the release binary ($bin), a work folder
# ($work, removed on exit with every process started), free ports, and an etcd on loopback
# whose cluster store URL is $store.
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC RUST_LOG=warn
python3 -c 'import numpy, safetensors' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --target .deps/python numpy safetensors >&2
model="$(PYTHONPATH=.deps/python${PYTHONPATH:+:$PYTHONPATH} python3 scripts/make_bench_model.py)"
cargo build --release --bin jacolbert >&2
bin=./target/release/jacolbert
command -v etcd >/dev/null || { echo "needs etcd: apt-get install etcd-server" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; exit 1; }
etcd_port=$(port) peer=$(port)
etcd --name bench --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "bench=http://127.0.0.1:$peer" \
    --logger zap --log-level error >/dev/null 2>&1 &
wait_port "$etcd_port"
store="etcd://127.0.0.1:$etcd_port/bench"
