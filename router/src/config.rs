//! The router's settings.

/// Limits checked at the edge, the deadline a request without one gets, and how writes to
/// replicas are acknowledged and repaired (the `[limits]`
/// table of the router's TOML config; a key left out keeps its default).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Deadline of a request that sets none; a caller's own deadline is capped at 6× this.
    pub default_deadline_ms: u64,
    /// The same for Upsert and Delete: a batch of long documents on a CPU encoder takes
    /// seconds, and a bulk load must not fail because a CPU is slower than a search's deadline.
    pub write_deadline_ms: u64,
    pub max_query_bytes: usize,
    pub max_k: usize,
    pub max_batch: usize,
    /// Searches in flight at once; one more waits up to `max_queue_ms` for a slot, then is
    /// refused with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
    pub max_queue_ms: u64,
    /// Bounds of a search's parameters and id filter.
    pub max_nprobe: usize,
    pub max_candidates: usize,
    pub max_filter_ids: usize,
    /// In-sync replicas that must flush a write when another failed (and was marked stale).
    pub write_quorum: usize,
    /// The shards' `tombstone_ttl_s`: a replica out of sync for longer is repaired as a copy
    /// of an in-sync one (what only it holds from before then may be a purged delete).
    pub tombstone_ttl_s: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            default_deadline_ms: 10_000,
            write_deadline_ms: 120_000,
            max_query_bytes: 4096,
            max_k: 1000,
            max_batch: 256,
            max_concurrent: 32,
            max_queue_ms: 1000,
            max_nprobe: 256,
            max_candidates: 16_384,
            max_filter_ids: 100_000,
            write_quorum: 1,
            tombstone_ttl_s: 7 * 24 * 3600,
        }
    }
}
