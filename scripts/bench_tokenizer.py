#!/usr/bin/env python3
"""Tokenizer throughput, jacolbert against the Python reference, in the same run.

Both tokenize every JSQuAD-valid paragraph into the full encoding ([CLS] … [SEP]), on one core:
  - reference: Hugging Face transformers' BertJapaneseTokenizer (fugashi + unidic-lite), the
    tokenizer JaColBERT was trained with;
  - jacolbert: `jacolbert bench-tokenizer` (release build), single-threaded.
Prints texts/s and tokens/s for both and the ratio, and checks that both produced the same
number of tokens (they are bit-identical; the parity test proves it text by text).

Needs: pip install transformers fugashi unidic-lite==1.0.8 (no PyTorch needed).
Usage: scripts/bench_tokenizer.py [--repeat N] [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "tests/fixtures/bert-base-japanese-v3")
JSQUAD = os.path.join(ROOT, "tests/fixtures/jsquad/jsquad-valid-v1.1.json")


def paragraphs():
    data = json.load(open(JSQUAD, encoding="utf-8"))
    return [p["context"] for a in data["data"] for p in a["paragraphs"]]


def bench_reference(texts, repeat):
    try:
        from transformers import BertJapaneseTokenizer
    except ImportError:
        sys.exit("the reference needs: pip install transformers fugashi unidic-lite==1.0.8")
    start = time.perf_counter()
    tok = BertJapaneseTokenizer.from_pretrained(MODEL)
    load_s = time.perf_counter() - start
    for t in texts:  # warm-up pass, as on the Rust side
        tok(t)["input_ids"]
    start = time.perf_counter()
    tokens = 0
    for _ in range(repeat):
        for t in texts:
            tokens += len(tok(t)["input_ids"])
    seconds = time.perf_counter() - start
    n = len(texts) * repeat
    return {"impl_name": "transformers BertJapaneseTokenizer (fugashi)", "texts": n, "tokens": tokens,
            "seconds": seconds, "texts_per_s": n / seconds, "tokens_per_s": tokens / seconds, "load_s": load_s}


def bench_jacolbert(repeat):
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "jacolbert"], cwd=ROOT, check=True)
    dicdir = subprocess.run([os.path.join(ROOT, "scripts/fetch-unidic.sh")], check=True,
                            capture_output=True, text=True).stdout.strip()
    out = subprocess.run([os.path.join(ROOT, "target/release/jacolbert"), "bench-tokenizer", "--json",
                          "--model", MODEL, "--jsquad", JSQUAD, "--mecab-dic", dicdir, "--repeat", str(repeat)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core for both
    texts = paragraphs()
    ours = bench_jacolbert(args.repeat)
    ref = bench_reference(texts, args.repeat)
    if ours["tokens"] != ref["tokens"]:
        sys.exit(f"token counts differ: jacolbert {ours['tokens']}, reference {ref['tokens']}")
    ratio = ours["tokens_per_s"] / ref["tokens_per_s"]
    if args.json:
        print(json.dumps({"jacolbert": ours, "reference": ref, "speedup": ratio}))
        return
    print(f"{len(texts)} JSQuAD paragraphs x {args.repeat} passes, one core each")
    for r in (ref, ours):
        print(f"  {r['impl_name']:<46} {r['texts_per_s']:>9.0f} texts/s {r['tokens_per_s']:>11.0f} tokens/s"
              f"  (load {r['load_s']:.2f}s)")
    print(f"  speedup (tokens/s, same texts, same core): {ratio:.1f}x")


if __name__ == "__main__":
    main()
