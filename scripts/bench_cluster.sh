# Sourced by the cluster benchmarks (bench_rebalance.sh, bench_replicas.sh): what bench_setup.sh
# gives ($model, $bin, $work), free ports, and an etcd on loopback whose cluster store URL is
# $store.
source "$(dirname "$0")/bench_setup.sh"
command -v etcd >/dev/null || { echo "needs etcd: apt-get install etcd-server" >&2; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; exit 1; }
etcd_port=$(port) peer=$(port)
etcd --name bench --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "bench=http://127.0.0.1:$peer" \
    --logger zap --log-level error >/dev/null 2>&1 &
wait_port "$etcd_port"
store="etcd://127.0.0.1:$etcd_port/bench"
