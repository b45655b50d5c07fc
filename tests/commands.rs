//! The binary's subcommands, run as a user would run them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::{fixtures, jacolbert};
use safetensors::SafeTensors;

#[test]
fn tokenize_prints_reference_ids_and_words() {
    let mut child = jacolbert()
        .args(["tokenize", "--words", "--model"])
        .arg(fixtures().join("bert-base-japanese-v3"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all("東京都に住んでいます。\n\n[MASK]😀\n".as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["ids"], serde_json::json!([2, 12569, 6109, 461, 15546, 457, 422, 12995, 385, 3]));
    assert_eq!(lines[0]["words"], serde_json::json!(["東京", "都", "に", "住ん", "で", "い", "ます", "。"]));
    assert_eq!(lines[1]["ids"], serde_json::json!([2, 3]));
    assert_eq!(lines[2]["ids"], serde_json::json!([2, 4, 1, 3]));
}

#[test]
fn tokenize_without_a_dictionary_says_how_to_get_one() {
    let out = jacolbert()
        .args(["tokenize", "--mecab-dic", "/nonexistent", "--model"])
        .arg(fixtures().join("bert-base-japanese-v3"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/fetch-unidic.sh") && err.contains("/nonexistent"), "{err}");
}

#[test]
fn encode_writes_the_reference_tensors() {
    let out_path = std::env::temp_dir().join(format!("jacolbert-encode-{}.safetensors", std::process::id()));
    let status = jacolbert()
        .args(["encode", "--model"])
        .arg(fixtures().join("models/tiny-random"))
        .arg("--json-texts")
        .arg(fixtures().join("reference/reference_texts.json"))
        .arg("--out")
        .arg(&out_path)
        .status()
        .unwrap();
    assert!(status.success());
    let ours = std::fs::read(&out_path).unwrap();
    std::fs::remove_file(&out_path).unwrap();
    let reference = std::fs::read(fixtures().join("reference/tiny-random.reference.safetensors")).unwrap();
    let (ours, reference) = (SafeTensors::deserialize(&ours).unwrap(), SafeTensors::deserialize(&reference).unwrap());
    let mut compared = 0;
    for (name, want) in reference.tensors() {
        if name == "scores" {
            continue;
        }
        let got = ours.tensor(&name).unwrap_or_else(|_| panic!("no {name}"));
        assert_eq!((got.dtype(), got.shape()), (want.dtype(), want.shape()), "{name}");
        if name.contains("emb") {
            let f = |b: &[u8]| -> Vec<f32> {
                b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
            };
            let worst = f(got.data()).iter().zip(f(want.data())).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 1e-4, "{name}: {worst}");
        } else {
            assert_eq!(got.data(), want.data(), "{name}");
        }
        compared += 1;
    }
    assert_eq!(compared, 3 + 2 * 27);
}

#[test]
fn encode_with_nothing_to_encode_fails_clearly() {
    let out = jacolbert()
        .args(["encode", "--model", "tests/fixtures/models/tiny-random", "--out", "/tmp/x.safetensors"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to encode"));
}

/// The whole encoder on the paper's task: exhaustive MaxSim over JSQuAD with tiny-lexical must
/// give PyLate's figures (R@1 0.624, R@5 0.738, R@10 0.778; shared data README) within 0.01.
#[test]
fn eval_jsquad_reproduces_pylate_recall() {
    let out = jacolbert()
        .args(["eval-jsquad", "--json", "--model"])
        .arg(fixtures().join("models/tiny-lexical"))
        .arg("--jsquad")
        .arg(fixtures().join("jsquad/jsquad-valid-v1.1.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["queries"].as_u64(), report["docs"].as_u64()), (Some(4442), Some(1145)));
    for (key, want) in [("recall_at_1", 0.624), ("recall_at_5", 0.738), ("recall_at_10", 0.778)] {
        let got = report[key].as_f64().unwrap();
        assert!((got - want).abs() <= 0.01, "{key}: {got} vs PyLate {want}");
    }
}

/// `local` puts the encoder and the shards on the ports after the router's: a port with no
/// room after it is refused by name, and port 0 puts every node on a free port of its own.
#[test]
fn local_takes_the_ports_after_the_routers_or_free_ones() {
    let dir = tempfile::tempdir().unwrap();
    let local = |listen: &str| {
        let mut c = jacolbert();
        c.args(["local", "--shards", "2", "--listen", listen, "--model"]).arg(fixtures().join("models/tiny-lexical"));
        c.arg("--data-dir").arg(dir.path());
        c
    };
    let out = local("127.0.0.1:65534").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen port 65534 leaves no room for the 3 nodes after it"), "{err}");

    let mut node = common::Node(local("127.0.0.1:0").stdout(Stdio::piped()).spawn().unwrap());
    let stdout = BufReader::new(node.0.stdout.take().unwrap());
    let line = stdout.lines().map(Result::unwrap).find(|l| l.starts_with("router listening on ")).unwrap();
    let address = line.trim_start_matches("router listening on ");
    assert!(!address.ends_with(":0"), "{address}");
    std::net::TcpStream::connect(address).unwrap();
}

/// A data directory keeps the shard count it was made with (in its cluster state), refuses
/// another `--shards` saying what to do instead, and one process at a time may use it.
#[test]
fn local_keeps_its_shard_count_and_its_data_directory_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let local = |shards: Option<&str>| {
        let mut c = jacolbert();
        c.args(["local", "--listen", "127.0.0.1:0", "--model"]).arg(fixtures().join("models/tiny-lexical"));
        c.arg("--data-dir").arg(dir.path());
        if let Some(n) = shards {
            c.args(["--shards", n]);
        }
        c
    };
    let up = |mut command: std::process::Command| {
        let mut node = common::Node(command.stdout(Stdio::piped()).spawn().unwrap());
        let stdout = BufReader::new(node.0.stdout.take().unwrap());
        assert!(stdout.lines().map(Result::unwrap).any(|l| l.starts_with("router listening on ")));
        node
    };
    let first = up(local(Some("2")));
    let out = local(None).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is in use by another process"), "{err}");
    drop(first);

    let out = local(Some("3")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 2-shard data directory started with --shards 3");
    assert!(err.contains("holds a cluster of 2 shards") && err.contains("jacolbert rebalance"), "{err}");
    let _again = up(local(None));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cluster.json")).unwrap()).unwrap();
    assert_eq!(state["shards"].as_array().unwrap().len(), 2);
}

/// `shard-bench --grow` as the README runs it, small: a report at a size on the way and at the
/// whole (building counted up to each, retraining included), latency beside a writer, the
/// vectors and our top-k for the peer script; the kept shard is measured again, not rebuilt.
#[test]
fn shard_bench_grows_a_shard_reports_on_the_way_and_measures_it_again_when_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, vectors) = (dir.path().join("shard"), dir.path().join("vectors"));
    let run = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = jacolbert()
            .args(["shard-bench", "--docs", "3000", "--tokens-per-doc", "8", "--queries", "8", "--json"])
            .args(["--grow", "--train-tokens", "1000", "--keep"])
            .arg(&shard)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let vectors_arg = vectors.to_str().unwrap();
    let lines = run(&["--report-at", "8000", "--under-writes", "--passes", "1", "--write-vectors", vectors_arg]);
    assert_eq!(lines.len(), 3, "a size on the way, the whole, the writer: {lines:?}");
    let (on_the_way, whole, writer) = (&lines[0], &lines[1], &lines[2]);
    let number = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
    assert!((8000.0..number(whole, "tokens")).contains(&number(on_the_way, "tokens")), "{on_the_way}");
    assert_eq!(whole["docs"], 3000);
    assert!(number(whole, "build_s") >= number(on_the_way, "build_s"), "build time counts all building before");
    // Trained on its first upsert (500 documents, about 4,000 tokens), so retrained once it
    // held four times that (retrain_growth 4).
    assert!(!whole["retrainings"].as_array().unwrap().is_empty(), "{whole}");
    for report in [on_the_way, whole] {
        for recall in ["recall_at_k", "recall_at_k_raw"] {
            assert!(number(report, recall) >= 0.9, "{recall} in {report}");
        }
        // 32 bytes of 2-bit residual a token in memory; its f16 original (256) on disk.
        assert!((32.0..64.0).contains(&number(report, "bytes_per_token")), "{report}");
        assert!(number(report, "disk_bytes_per_token") > 256.0, "{report}");
        assert!(number(report, "p50_ms") <= number(report, "p99_ms"), "{report}");
    }
    assert_eq!(writer["under_writes"], true);
    assert!(number(writer, "documents_written") > 0.0 && number(writer, "retraining_s") > 0.0, "{writer}");
    for phase in ["alone", "beside_writer", "beside_writer_and_retraining"] {
        assert!(number(&writer[phase], "searches") >= 8.0, "{writer}");
    }

    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(vectors.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["tokens"].as_f64(), whole["tokens"].as_f64());
    let floats = std::fs::metadata(vectors.join("vectors.f32")).unwrap().len();
    assert_eq!(floats, meta["tokens"].as_u64().unwrap() * 128 * 4);
    let ours: Vec<Vec<usize>> =
        serde_json::from_slice(&std::fs::read(vectors.join("jacolbert_topk.json")).unwrap()).unwrap();
    assert!(ours.len() == 8 && ours.iter().all(|hits| hits.len() == 10 && hits.iter().all(|&d| d < 3000)), "{ours:?}");

    let again = run(&[]);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["build_s"], serde_json::Value::Null, "a kept shard is measured, not built");
    assert_eq!(again[0]["tokens"], whole["tokens"]);
    assert!(number(&again[0], "recall_at_k_raw") >= 0.9, "{}", again[0]);
}
