#!/usr/bin/env python3
"""CPU encoder speed: jacolbert against PyTorch and ONNX Runtime, same model, same shapes, same
thread count, in the same run.

The model is bert-base-japanese-v3-sized with random weights (scripts/make_bench_model.py).
Each engine runs BERT + the 768->128 projection in fp32 on: one 32-token query (latency),
32 queries of 32 tokens and 8 documents of 300 tokens (throughput). Queries attend to their
first 16 positions (the rest is [MASK] expansion), documents to all. Medians are reported, and
speed-ups as (peer time / jacolbert time).

Needs: pip install torch transformers onnx onnxruntime numpy safetensors
Usage: scripts/bench_encoder.py [--threads N] [--runs N] [--json]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [("query_b1_l32", 1, 32, 16), ("query_b32_l32", 32, 32, 16), ("doc_b8_l300", 8, 300, 300)]


def inputs(batch, seq, attended, vocab=32768, seed=7):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, seq), dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    mask[:, :attended] = 1
    return ids, mask


def median_ms(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def torch_model(model_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(model_dir)
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    bert = BertModel(config, add_pooling_layer=False)
    bert.load_state_dict({k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}, strict=False)
    linear = torch.nn.Linear(config.hidden_size, state["linear.weight"].shape[0], bias=False)
    linear.weight.data = state["linear.weight"]

    class ColBERT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert, self.linear = bert, linear

        def forward(self, input_ids, attention_mask):
            return self.linear(self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)

    return ColBERT().eval()


def bench_torch(model, threads, runs):
    import torch
    torch.set_num_threads(threads)
    out = {}
    with torch.inference_mode():
        for name, b, s, a in SHAPES:
            ids, mask = (torch.from_numpy(x) for x in inputs(b, s, a))
            out[name] = median_ms(lambda: model(ids, mask), runs)
    return out


def bench_onnx(model, threads, runs):
    import onnxruntime as ort
    import torch
    path = os.path.join(tempfile.mkdtemp(), "colbert.onnx")
    ids, mask = (torch.from_numpy(x) for x in inputs(1, 32, 16))
    kwargs = dict(input_names=["input_ids", "attention_mask"], output_names=["vectors"],
                  dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "vectors": {0: "b", 1: "s"}},
                  opset_version=17)
    try:
        torch.onnx.export(model, (ids, mask), path, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(model, (ids, mask), path, **kwargs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out = {}
    for name, b, s, a in SHAPES:
        ids, mask = inputs(b, s, a)
        out[name] = median_ms(lambda: session.run(None, {"input_ids": ids, "attention_mask": mask}), runs)
    return out


def bench_ours(model_dir, threads, runs):
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "jacolbert"], cwd=ROOT, check=True)
    out = subprocess.run([os.path.join(ROOT, "target/release/jacolbert"), "bench-encoder", "--json", "--model", model_dir,
                          "--threads", str(threads), "--runs", str(runs)],
                         check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RUST_LOG": "warn"})
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model_dir = subprocess.run([os.path.join(ROOT, "scripts/make_bench_model.py")], check=True,
                               capture_output=True, text=True).stdout.strip()
    ours = bench_ours(model_dir, args.threads, args.runs)
    model = torch_model(model_dir)
    torch_ms = bench_torch(model, args.threads, args.runs)
    onnx_ms = bench_onnx(model, args.threads, args.runs)
    rows = []
    for shape in ours["shapes"]:
        n = shape["name"]
        rows.append({"shape": n, "jacolbert_ms": shape["median_ms"], "torch_ms": torch_ms[n], "onnxruntime_ms": onnx_ms[n],
                     "vs_torch": torch_ms[n] / shape["median_ms"], "vs_onnxruntime": onnx_ms[n] / shape["median_ms"],
                     "jacolbert_gflops": shape["gflops"], "jacolbert_pct_of_peak": 100 * shape["gflops"] / ours["peak_gflops"],
                     # The same flops in ORT's time: how close to the f32 peak the peer already runs.
                     "onnxruntime_pct_of_peak": 100 * shape["gflops"] * shape["median_ms"] / onnx_ms[n] / ours["peak_gflops"]})
    if args.json:
        print(json.dumps({"threads": args.threads, "kernels": ours["kernels"], "rows": rows, "jacolbert_peak_rss_mb": ours["peak_rss_mb"],
                          "fma_peak_gflops": ours["peak_gflops"], "bf16_dot_peak_gflops_per_core": ours["bf16_dot_peak_gflops_per_core"]}))
        return
    print(f"bert-base-sized ColBERT encoder, fp32, {args.threads} threads, median of {args.runs} runs, "
          f"jacolbert's CPU kernels: {ours['kernels']}")
    print(f"{'shape':<15}{'jacolbert':>11}{'PyTorch':>11}{'ORT':>11}{'vs PyTorch':>12}{'vs ORT':>9}{'GFLOP/s':>9}{'of peak':>9}"
          f"{'ORT of peak':>13}")
    for r in rows:
        print(f"{r['shape']:<15}{r['jacolbert_ms']:>9.1f}ms{r['torch_ms']:>9.1f}ms{r['onnxruntime_ms']:>9.1f}ms"
              f"{r['vs_torch']:>11.2f}x{r['vs_onnxruntime']:>8.2f}x{r['jacolbert_gflops']:>9.1f}{r['jacolbert_pct_of_peak']:>8.0f}%"
              f"{r['onnxruntime_pct_of_peak']:>12.0f}%")
    print(f"FMA peak {ours['peak_gflops']:.0f} GFLOP/s ({args.threads} threads, measured); jacolbert peak RSS {ours['peak_rss_mb']:.0f} MB")
    if ours["bf16_dot_peak_gflops_per_core"]:
        print(f"bf16 dot (vdpbf16ps) peak {ours['bf16_dot_peak_gflops_per_core']:.0f} GFLOP/s per core, "
              f"f32 FMA {ours['peak_gflops_per_core']:.0f}: a 3-product bf16 split runs at most at "
              f"{ours['bf16_dot_peak_gflops_per_core'] / 3 / ours['peak_gflops_per_core']:.2f}x the f32 peak")


if __name__ == "__main__":
    main()
