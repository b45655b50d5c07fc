//! JSQuAD valid through a cluster of separate processes (encoder with tiny-lexical, shards,
//! router): R@1/5/10 as `jacolbert eval-jsquad --router` measures them must be within 0.01
//! of PyLate's exhaustive figures (../shared/data/reference: 0.624 / 0.738 / 0.778).
//!
//! The shards keep these 1,145 paragraphs (about 170,000 tokens) exact: `train_tokens` is set
//! above the collection's size, so these tests hold the cluster's plumbing (encoding,
//! placement, fan-out, merge) to exhaustive MaxSim. What compression changes is measured by
//! `eval-jsquad --shards N` with the default `[index]` (see the README).

mod common;

use common::{fixtures, jacolbert, Cluster};
use std::process::Stdio;

fn jsquad_through(shards: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), shards, 1, "train_tokens = 1000000");
    let jsquad = fixtures().join("jsquad/jsquad-valid-v1.1.json");
    let out = jacolbert()
        .args(["eval-jsquad", "--model", "unused", "--json", "--jsquad", jsquad.to_str().unwrap()])
        .args(["--router", &cluster.router])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["docs"], 1145);
    for (key, want) in [("r@1", 0.624), ("r@5", 0.738), ("r@10", 0.778)] {
        let got = report[key].as_f64().unwrap();
        assert!((got - want).abs() <= 0.01, "{shards} shards, {key}: {got} vs PyLate's {want}");
    }
}

#[test]
fn jsquad_through_one_shard_process_matches_exhaustive_maxsim() {
    jsquad_through(1);
}

#[test]
fn jsquad_through_three_shard_processes_matches_exhaustive_maxsim() {
    jsquad_through(3);
}
