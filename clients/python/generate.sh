#!/usr/bin/env bash
# Regenerates the gRPC stubs in jacolbert/v1 from ../../proto (needs grpcio-tools==1.85.1, the
# version pyproject.toml's protobuf bound is for). With --check, generates into a temporary
# directory and fails if the committed stubs differ (the test command runs this).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
out="$here"
if [ "${1:-}" = "--check" ]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
"$python" -m grpc_tools.protoc -I "$here/../../proto" --python_out="$out" --pyi_out="$out" \
    --grpc_python_out="$out" jacolbert/v1/jacolbert.proto
if [ "${1:-}" = "--check" ]; then
    for f in jacolbert_pb2.py jacolbert_pb2.pyi jacolbert_pb2_grpc.py; do
        cmp -s "$out/jacolbert/v1/$f" "$here/jacolbert/v1/$f" ||
            { echo "clients/python/jacolbert/v1/$f is not what proto/ generates: run clients/python/generate.sh" >&2; exit 1; }
    done
fi
