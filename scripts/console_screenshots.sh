#!/usr/bin/env bash
# Regenerates the README's console screenshots (docs/console/search.png, cluster.png): the
# browser test (tests/console.rs) saves them as it drives the console in headless Chromium over
# a cluster of the tiny-lexical model and 150 JSQuAD paragraphs. Needs Debian's chromium and a
# Japanese font to draw the text (apt-get install chromium fonts-ipafont-gothic).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "console_screenshots.sh: apt-get install chromium" >&2; exit 1; }
fc-list :lang=ja | grep -q . || echo "console_screenshots.sh: no Japanese font: apt-get install fonts-ipafont-gothic" >&2
JACOLBERT_MECAB_DIC="$(scripts/fetch-unidic.sh)"
export JACOLBERT_MECAB_DIC JACOLBERT_SCREENSHOTS="$PWD/docs/console"
cargo test --release -p jacolbert --test console
ls -l docs/console
