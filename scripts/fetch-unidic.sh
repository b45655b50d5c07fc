#!/usr/bin/env bash
# Installs the MeCab dictionary the tokenizer reads, the PyPI package unidic-lite 1.0.8, into
# .deps/python (git-ignored), where jacolbert looks for it, and prints its dicdir.
# Idempotent: does nothing when the dictionary is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/.deps/python"
dicdir="$target/unidic_lite/dicdir"
if [ ! -f "$dicdir/sys.dic" ] || [ ! -f "$dicdir/matrix.bin" ]; then
  echo "fetching unidic-lite 1.0.8 (about 50 MB) into $target" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$target" unidic-lite==1.0.8 >&2
fi
echo "$dicdir"
