#!/usr/bin/env python3
"""GPU encoder speed: jacolbert's CUDA forward pass against PyTorch fp16 on the same card, in the
same run (issue 7's benchmark).

The model is bert-base-japanese-v3-sized with random weights (scripts/make_bench_model.py).
Each engine runs BERT + the 768->128 projection + L2 normalisation and brings the vectors back
to the host on: 256 queries of 32 tokens (attending to 16; the rest is [MASK] expansion) and
32 documents of 300 tokens. PyTorch runs the model in fp16 (`.half()`, Hugging Face's BertModel
with its default SDPA attention, inference mode); jacolbert keeps activations in f32 and runs
its products on the tensor cores in f16 with f32 accumulation. Medians are reported, and
speed-ups as (PyTorch time / jacolbert time).

Needs: torch (CUDA), transformers, numpy, safetensors. Builds nothing: give the binary with
--jacolbert where there is no Rust (the GPU machine; scripts/gpu_check.sh carries it).
Usage: scripts/bench_gpu_encoder.py [--jacolbert PATH] [--runs N] [--json]
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_encoder import ROOT, inputs, median_ms, torch_model  # noqa: E402

SHAPES = [("query_b256_l32", 256, 32, 16), ("doc_b32_l300", 32, 300, 300)]


def bench_torch(model, runs):
    import torch
    model = model.half().cuda()
    out = {}
    with torch.inference_mode():
        for name, b, s, a in SHAPES:
            ids, mask = (torch.from_numpy(x).cuda() for x in inputs(b, s, a))

            def run():
                vectors = torch.nn.functional.normalize(model(ids, mask), dim=-1)
                return vectors.cpu()  # waits for the GPU, as jacolbert's download does

            out[name] = median_ms(run, runs)
    return out, torch.cuda.get_device_name(0)


def bench_ours(binary, model_dir, runs):
    out = subprocess.run([binary, "bench-encoder", "--json", "--shapes", "gpu", "--device", "cuda:0",
                          "--model", model_dir, "--runs", str(runs)],
                         check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RUST_LOG": "warn"})
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jacolbert", default=os.path.join(ROOT, "target/release/jacolbert"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model_dir = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_bench_model.py")], check=True,
                               capture_output=True, text=True).stdout.strip()
    ours = bench_ours(args.jacolbert, model_dir, args.runs)
    torch_ms, card = bench_torch(torch_model(model_dir), args.runs)
    rows = []
    for shape in ours["shapes"]:
        n = shape["name"]
        rows.append({"shape": n, "jacolbert_ms": shape["median_ms"], "torch_fp16_ms": torch_ms[n],
                     "vs_torch_fp16": torch_ms[n] / shape["median_ms"], "jacolbert_items_per_s": shape["items_per_s"],
                     "jacolbert_tflops": shape["gflops"] / 1e3})
    if args.json:
        print(json.dumps({"card": card, "jacolbert_device": ours["device"], "runs": args.runs, "rows": rows}))
        return
    print(f"bert-base-sized ColBERT encoder on {card} ({ours['device']}), median of {args.runs} runs")
    print(f"{'shape':<16}{'jacolbert':>11}{'PyTorch fp16':>14}{'vs PyTorch':>12}{'items/s':>10}{'TFLOP/s':>9}")
    for r in rows:
        print(f"{r['shape']:<16}{r['jacolbert_ms']:>9.2f}ms{r['torch_fp16_ms']:>12.2f}ms{r['vs_torch_fp16']:>11.2f}x"
              f"{r['jacolbert_items_per_s']:>10.0f}{r['jacolbert_tflops']:>9.1f}")


if __name__ == "__main__":
    main()
