#!/usr/bin/env python3
"""Shard search: jacolbert against fast-plaid (CPU) on the very same vectors, in the same run.

1. `jacolbert shard-bench --write-vectors DIR` builds our index from synthetic clustered vectors,
   searches it, and writes the vectors, the queries and its top-k per query.
2. fast-plaid (PyPI `fast-plaid`) indexes the same vectors at the same nbits on the CPU and
   answers the same queries one at a time.
3. Both engines' recall@k is measured against exhaustive MaxSim over the raw vectors (numpy),
   and printed side by side with build time, bytes/token and p50/p99 latency.

Needs: pip install fast-plaid numpy (fast-plaid pins its torch; a separate venv is simplest).
Usage: scripts/bench_shard.py [--docs 20000] [--tokens-per-doc 100] [--queries 100] [--k 10]
       [--nbits 2] [--threads 2] [--grow [--train-tokens 100000]] [--jacolbert target/release/jacolbert]
       [--json]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np


def exhaustive_topk(vectors, lens, queries, k):
    """Exact MaxSim of every query against every document, over raw vectors: top-k doc numbers."""
    offsets = np.concatenate([[0], np.cumsum(lens)])
    doc_of_token = np.repeat(np.arange(len(lens)), lens)
    nq, qt, dim = queries.shape
    flat = queries.reshape(nq * qt, dim)
    best = np.full((nq * qt, len(lens)), -np.inf, dtype=np.float32)
    step = 200_000
    for start in range(0, len(vectors), step):
        sims = flat @ vectors[start:start + step].T
        docs = doc_of_token[start:start + step]
        # Tokens are in document order, so each document is a contiguous slice here.
        bounds = np.flatnonzero(np.diff(docs)) + 1
        starts = np.concatenate([[0], bounds])
        maxes = np.maximum.reduceat(sims, starts, axis=1)
        ids = docs[starts]
        best[:, ids] = np.maximum(best[:, ids], maxes)
    scores = best.reshape(nq, qt, len(lens)).sum(axis=1)
    del offsets
    return [list(np.argsort(-s, kind="stable")[:k]) for s in scores]


def recall(got, truth, k):
    return sum(len(set(g[:k]) & set(t[:k])) for g, t in zip(got, truth)) / (k * len(truth))


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def run_fast_plaid(vectors, lens, queries, k, nbits, threads):
    import torch
    from fast_plaid import search

    torch.set_num_threads(threads)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    docs = [torch.from_numpy(vectors[offsets[i]:offsets[i + 1]]) for i in range(len(lens))]
    index_dir = tempfile.mkdtemp(prefix="fastplaid-")
    try:
        started = time.perf_counter()
        engine = search.FastPlaid(index=index_dir, device="cpu")
        engine.create(documents_embeddings=docs, nbits=nbits)
        build_s = time.perf_counter() - started
        size = dir_bytes(index_dir)
        q = torch.from_numpy(queries)
        engine.search(queries_embeddings=q[:1], top_k=k, show_progress=False)  # warm-up
        latencies, results = [], []
        for i in range(len(queries)):
            t = time.perf_counter()
            out = engine.search(queries_embeddings=q[i:i + 1], top_k=k, show_progress=False)
            latencies.append((time.perf_counter() - t) * 1e3)
            results.append([int(doc) for doc, _ in out[0]])
        return build_s, size, latencies, results
    finally:
        shutil.rmtree(index_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--tokens-per-doc", type=int, default=100)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nbits", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--jacolbert", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "jacolbert"))
    ap.add_argument("--grow", action="store_true",
                    help="build ours through the production path: train at --train-tokens, the rest by upsert, "
                         "retraining in the background as it grows (fast-plaid indexes everything at once)")
    ap.add_argument("--train-tokens", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="shardbench-")
    try:
        cmd = [args.jacolbert, "shard-bench", "--docs", str(args.docs), "--tokens-per-doc", str(args.tokens_per_doc),
               "--queries", str(args.queries), "--k", str(args.k), "--nbits", str(args.nbits), "--seed", str(args.seed),
               "--write-vectors", data_dir, "--json"]
        if args.grow:
            cmd += ["--grow", "--train-tokens", str(args.train_tokens)]
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), RUST_LOG="warn")
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
        meta = json.load(open(os.path.join(data_dir, "meta.json")))
        dim = meta["dim"]
        vectors = np.fromfile(os.path.join(data_dir, "vectors.f32"), dtype="<f4").reshape(-1, dim)
        lens = np.fromfile(os.path.join(data_dir, "doc_lens.u32"), dtype="<u4").astype(np.int64)
        queries = np.fromfile(os.path.join(data_dir, "queries.f32"), dtype="<f4").reshape(meta["queries"], meta["query_tokens"], dim)
        ours_topk = json.load(open(os.path.join(data_dir, "jacolbert_topk.json")))
        truth = exhaustive_topk(vectors, lens, queries, args.k)
        build_s, size, lat, theirs = run_fast_plaid(vectors, lens, queries, args.k, args.nbits, args.threads)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    tokens = len(vectors)
    lat = np.array(lat)
    peer = {"build_s": build_s, "bytes_per_token": size / tokens, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "recall_at_k_raw": recall(theirs, truth, args.k)}
    mine = {"build_s": ours["build_s"], "bytes_per_token": ours["bytes_per_token"],
            "disk_bytes_per_token": ours["disk_bytes_per_token"], "p50_ms": ours["p50_ms"], "p99_ms": ours["p99_ms"],
            "recall_at_k_raw": recall(ours_topk, truth, args.k), "recall_at_k_vs_exact_mode": ours["recall_at_k"],
            "centroids": ours["centroids"], "retrainings": ours["retrainings"]}
    report = {"docs": args.docs, "tokens": tokens, "grown": args.grow, "k": args.k, "nbits": args.nbits, "threads": args.threads,
              "jacolbert": mine, "fast_plaid": peer, "p50_ratio_ours_over_peer": mine["p50_ms"] / peer["p50_ms"],
              "build_ratio_ours_over_peer": mine["build_s"] / peer["build_s"]}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.docs} docs, {tokens} tokens, k={args.k}, nbits={args.nbits}, {args.threads} threads, {args.queries} queries")
    print(f"{'':24}{'jacolbert':>12}{'fast-plaid':>12}")
    for key, label in [("build_s", "build (s)"), ("bytes_per_token", "bytes/token"), ("p50_ms", "p50 (ms)"),
                       ("p99_ms", "p99 (ms)"), ("recall_at_k_raw", f"recall@{args.k} (raw exact)")]:
        print(f"{label:24}{mine[key]:>12.3f}{peer[key]:>12.3f}")
    print(f"jacolbert on disk (sled): {mine['disk_bytes_per_token']:.1f} bytes/token; "
          f"recall vs its exact mode {mine['recall_at_k_vs_exact_mode']:.3f}")
    print(f"p50 ratio (ours / fast-plaid): {report['p50_ratio_ours_over_peer']:.3f}; "
          f"build ratio: {report['build_ratio_ours_over_peer']:.3f}")


if __name__ == "__main__":
    main()
