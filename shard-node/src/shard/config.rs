//! A shard's settings.

use crate::codec::TrainParams;
use crate::{Error, Result};

/// How a shard stores and compresses (the `[index]` table of the shard's TOML config; a key
/// left out keeps its default).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    pub dim: usize,
    /// Tokens buffered before the first training.
    pub train_tokens: usize,
    pub train: TrainParams,
    /// Most tokens one document may have.
    pub max_doc_tokens: usize,
    /// Seconds a delete's tombstone is kept (forgotten at the next start after that).
    pub tombstone_ttl_s: u64,
    /// Most documents an `exact` search (every document scored) may cover; a larger shard
    /// refuses it.
    pub max_exact_documents: usize,
    /// Writes are refused while the store's file system has less free space than this, before
    /// sled runs out of it mid-write.
    pub min_free_bytes: u64,
    /// Keep each token's vector as given, in f16 (2·dim bytes a token on disk, none in
    /// memory): exact re-scoring, exact searches, retraining, moves and repair then read
    /// them, not the lossy codes.
    pub keep_originals: bool,
    /// sled's page cache, in MiB. sled holds each document's codes, residuals and text (about
    /// 90 bytes a token); the originals are in files of their own, cached by the OS. When the
    /// originals were in sled (520 bytes a token), a 10 M-token store outgrew the default and
    /// search p50 was 71 ms against 18 ms with 8,000 (`shard-bench --store-cache-mb`).
    pub store_cache_mb: u64,
    /// Retrain in the background once the shard holds this many times the tokens its codec
    /// was trained for (0: never by itself).
    pub retrain_growth: f64,
    /// Compact the runs once this share of their tokens belongs to deleted or replaced
    /// documents.
    pub compact_dead_share: f64,
    /// The CPU priority (nice, 0 to 19) of encoding written documents and of retraining,
    /// below the searches' 0: higher keeps search latency steadier beside a busy writer or a
    /// retraining, and slows writes and retraining more when searches saturate the cores.
    pub background_nice: i32,
    /// Runs that work under Linux's SCHED_IDLE instead: it gets only the CPU time no search
    /// wants, and a search waking up takes its core at once, where a niced thread keeps the
    /// core for the rest of its time slice. `background_nice` still applies where SCHED_IDLE is
    /// refused.
    pub background_idle: bool,
    /// How long background work waits, once per 2 ms of CPU time it has used, for running
    /// searches to finish (`give_way.rs`): searches then run with nothing beside them, and a
    /// write still makes progress at least this often while searches never stop (one setting
    /// per process, the first shard's). 0: background work never waits.
    pub give_way_ms: u64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            dim: 128,
            train_tokens: 100_000,
            train: TrainParams::default(),
            max_doc_tokens: 4096,
            tombstone_ttl_s: 7 * 24 * 3600,
            max_exact_documents: 100_000,
            min_free_bytes: 64 << 20,
            keep_originals: true,
            store_cache_mb: crate::store::DEFAULT_CACHE_BYTES >> 20,
            retrain_growth: 4.0,
            compact_dead_share: 0.25,
            background_nice: 10,
            background_idle: true,
            give_way_ms: crate::give_way::DEFAULT_MS,
        }
    }
}

impl ShardConfig {
    pub(super) fn store_cache_bytes(&self) -> u64 {
        self.store_cache_mb.saturating_mul(1 << 20)
    }

    /// The CPU priority of encoding writes and of retraining.
    pub(super) fn background(&self) -> super::encoding::Background {
        super::encoding::Background { nice: self.background_nice, idle: self.background_idle }
    }

    /// Refuses settings the codec cannot work with, naming the setting.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::BadInput(what));
        if !(1..=4096).contains(&self.dim) {
            return bad(format!("dim must be 1 to 4096, not {}", self.dim));
        }
        if ![1, 2, 4].contains(&self.train.nbits) {
            return bad(format!("nbits must be 1, 2 or 4, not {}", self.train.nbits));
        }
        if self.train.iterations == 0 || self.train.sample_per_centroid == 0 || self.max_doc_tokens == 0 {
            return bad("iterations, sample_per_centroid and max_doc_tokens must be at least 1".into());
        }
        if !(self.retrain_growth == 0.0 || self.retrain_growth >= 1.5) {
            return bad(format!("retrain_growth must be 0 (never) or at least 1.5, not {}", self.retrain_growth));
        }
        if !(self.compact_dead_share > 0.0 && self.compact_dead_share <= 1.0) {
            return bad(format!("compact_dead_share must be in (0, 1], not {}", self.compact_dead_share));
        }
        if !(0..=19).contains(&self.background_nice) {
            return bad(format!("background_nice must be 0 to 19, not {}", self.background_nice));
        }
        Ok(())
    }
}
