#!/usr/bin/env bash
# Validates deploy/k8s/*.yaml against the Kubernetes API schemas, offline and strictly (unknown
# fields are errors), with the PyPI package kubernetes-validate (its schemas ship inside it),
# installed into .deps/python. Exits non-zero on any invalid resource.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/.deps/python"
if [ ! -d "$target/kubernetes_validate" ]; then
  echo "fetching kubernetes-validate 1.37.0 into $target" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$target" kubernetes-validate==1.37.0 >&2
fi
PYTHONPATH="$target" python3 -m kubernetes_validate --strict --kubernetes-version 1.33.0 "$@" "$root"/deploy/k8s/*.yaml "$root"/deploy/k8s/jobs/*.yaml
