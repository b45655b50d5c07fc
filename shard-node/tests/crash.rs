//! A writer killed mid-stream loses nothing it acknowledged. The test runs its own binary as
//! the writer (selected by an environment variable), reads the ids it acknowledges, kills it
//! with SIGKILL at an arbitrary moment (once after training has started), and then opens the
//! store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use shard_node::shard::{NewDocument, Shard, ShardConfig};
use shard_node::store::Document;
use shard_node::synthetic::{Collection, Spec};

const CHILD: &str = "JACOLBERT_CRASH_WRITER_DIR";

fn config() -> ShardConfig {
    // Training starts after ~60 documents, so the kill can land during or after it.
    ShardConfig { dim: 32, train_tokens: 2400, ..Default::default() }
}

fn data() -> Collection {
    Collection::generate(&Spec { docs: 5_000, tokens_per_doc: 40, centres: 64, dim: 32, seed: 3, ..Default::default() })
}

fn writer(dir: &str) {
    let data = data();
    let shard = Shard::open(std::path::Path::new(dir), config()).unwrap();
    for i in 0..data.len() {
        let doc = Document { id: format!("d{i}"), text: format!("text {i}"), metadata: String::new() };
        shard.upsert(vec![NewDocument { doc, vectors: data.doc(i).to_vec(), version: 0 }]).unwrap();
        println!("ack d{i}");
    }
}

#[test]
fn acknowledged_documents_survive_a_killed_writer() {
    if let Ok(dir) = std::env::var(CHILD) {
        writer(&dir);
        return;
    }
    for kill_after in [30, 150] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "acknowledged_documents_survive_a_killed_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            if let Some(id) = line.unwrap().strip_prefix("ack ") {
                acked.push(id.to_string());
                if acked.len() == kill_after {
                    break;
                }
            }
        }
        // The writer is in the middle of its next write (or training) now.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(acked.len(), kill_after, "the writer died early");
        let shard = Shard::open(dir.path(), config()).unwrap();
        for id in &acked {
            let doc = shard.get(id).unwrap_or_else(|e| panic!("{id} was acknowledged but is lost: {e}"));
            assert_eq!(doc.text, format!("text {}", &id[1..]));
        }
        assert!(shard.stats().documents >= kill_after);
        let q = data().doc(0)[..32 * 8].to_vec();
        assert!(!shard.search(&q, &shard_node::index::SearchParams::for_k(10), None).unwrap().is_empty());
    }
}
