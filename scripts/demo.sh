#!/usr/bin/env bash
# The README's run command: builds jacolbert, fetches the dictionary if missing, and tokenizes a
# few JSQuAD questions, printing MeCab's words and the model's token ids.
set -euo pipefail
cd "$(dirname "$0")/.."
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC
cargo build --release --bin jacolbert
python3 - <<'PY' | ./target/release/jacolbert tokenize --model tests/fixtures/bert-base-japanese-v3 --words
import json
data = json.load(open("tests/fixtures/jsquad/jsquad-valid-v1.1.json", encoding="utf-8"))
questions = [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
print("\n".join(questions[:5]))
PY
