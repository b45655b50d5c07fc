#!/usr/bin/env python3
"""Writes a bert-base-japanese-v3-sized JaColBERT checkpoint with random weights, for benchmarks:
12 layers, hidden 768, 12 heads, intermediate 3072, vocab 32768, projection 768 -> 128, in the
colbert-ai "HF_ColBERT" layout (bert.* + linear.weight, config.json, artifact.metadata, vocab).
Weights ~ N(0, 0.02) as BERT initialises them, layer norms 1/0. Needs numpy and safetensors.

Usage: scripts/make_bench_model.py [OUT_DIR]   (default .deps/bench-model)
"""
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, LAYERS, HEADS, FFN, VOCAB, DIM, POS = 768, 12, 12, 3072, 32768, 128, 512


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".deps/bench-model")
    if os.path.exists(os.path.join(out, "model.safetensors")):
        print(out)
        return
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(2024)
    w = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02)
    t = {
        "bert.embeddings.word_embeddings.weight": w(VOCAB, H),
        "bert.embeddings.position_embeddings.weight": w(POS, H),
        "bert.embeddings.token_type_embeddings.weight": w(2, H),
        "bert.embeddings.LayerNorm.weight": np.ones(H, np.float32),
        "bert.embeddings.LayerNorm.bias": np.zeros(H, np.float32),
        "linear.weight": w(DIM, H),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            t[p + name + ".weight"], t[p + name + ".bias"] = w(H, H), w(H)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = w(FFN, H), w(FFN)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = w(H, FFN), w(H)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + name + ".weight"], t[p + name + ".bias"] = np.ones(H, np.float32), np.zeros(H, np.float32)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["HF_ColBERT"], "model_type": "bert", "vocab_size": VOCAB, "hidden_size": H,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": FFN,
        "hidden_act": "gelu", "max_position_embeddings": POS, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    meta = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 32, "doc_maxlen": 300,
            "dim": DIM, "attend_to_mask_tokens": False, "mask_punctuation": True, "similarity": "cosine"}
    json.dump(meta, open(os.path.join(out, "artifact.metadata"), "w"), indent=2)
    for f in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(ROOT, "tests/fixtures/bert-base-japanese-v3", f), out)
    print(out)


if __name__ == "__main__":
    main()
