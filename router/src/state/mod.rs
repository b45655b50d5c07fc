//! Cluster state (DESIGN.md §9): what every router must agree on, kept in a store that all of
//! them watch: etcd (`etcd://HOST:PORT[,HOST:PORT…]/PREFIX`) for a cluster of many routers, or a
//! file (`file:///PATH`) for one process; and the epoch barrier that moves wait on.

mod etcd;
mod file;
pub(crate) mod follow;
pub mod gate;
pub mod hlc;
pub mod model;
pub mod replica;

use std::sync::Arc;

pub use etcd::EtcdStore;
pub use file::FileStore;
pub use model::{ClusterState, Move, MoveKind, Phase, Replica, ReplicaState, Shard};

use crate::Error;

/// The lock one process holds while it runs a move.
pub const MOVE_LOCK: &str = "mover";

/// The lock one process holds while it repairs a replica of shard `id`.
pub fn repair_lock(id: u64) -> String {
    format!("repair/{id}")
}

/// Where cluster state lives. One value per process: its records (acknowledged epochs, the
/// move lock) live as long as the process keeps its lease.
#[tonic::async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// The state now; `None` before `jacolbert cluster init`.
    async fn load(&self) -> Result<Option<ClusterState>, Error>;

    /// Stores `next` in place of `expected` (`None`: only into an empty store), atomically.
    /// `Ok(false)` when the stored state is no longer `expected`, or when `mover` is given and
    /// that owner no longer holds the move lock.
    async fn replace(
        &self,
        expected: Option<&ClusterState>,
        next: &ClusterState,
        mover: Option<&str>,
    ) -> Result<bool, Error>;

    /// Waits until the stored state's epoch is above `epoch`, and returns that state.
    async fn changed_after(&self, epoch: u64) -> Result<ClusterState, Error>;

    /// Records that router `member` serves under `epoch` and runs nothing begun under an older
    /// one.
    async fn ack(&self, member: &str, epoch: u64) -> Result<(), Error>;

    /// The live routers and the epochs they acknowledged.
    async fn acks(&self) -> Result<Vec<(String, u64)>, Error>;

    /// Takes the lock `name` for `owner` (`MOVE_LOCK`, or one shard's repair lock); it lapses
    /// with the process. `Ok(Some(holder))` when another owner has it.
    async fn lock(&self, name: &str, owner: &str) -> Result<Option<String>, Error>;

    /// Lets the lock `name` go, when `owner` holds it.
    async fn unlock(&self, name: &str, owner: &str) -> Result<(), Error>;

    /// Publishes what this process is doing under `key` (a repair's progress) for as long as
    /// it lives, for `cluster status`.
    async fn report(&self, key: &str, value: &str) -> Result<(), Error>;

    /// Every live process's reports, by key.
    async fn reports(&self) -> Result<Vec<(String, String)>, Error>;

    /// Whether the state outlives this process (not the memory-only store).
    fn durable(&self) -> bool;

    /// Whether this process's lease is known to be alive: a router that has lost touch with the
    /// store may be missing a change, so it refuses writes until it is back in touch.
    fn in_touch(&self) -> bool;

    /// The store, for messages.
    fn describe(&self) -> String;
}

/// Milliseconds since the Unix epoch, as replica states record them.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Opens the store a `--cluster-store` URL names.
pub async fn open(url: &str) -> Result<Arc<dyn ClusterStore>, Error> {
    let bad = |why: &str| Error::BadInput(format!("cluster store {url:?}: {why}"));
    if let Some(rest) = url.strip_prefix("etcd://") {
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoints: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(String::from).collect();
        if endpoints.is_empty() || prefix.is_empty() {
            return Err(bad("expected etcd://HOST:PORT[,HOST:PORT…]/PREFIX"));
        }
        Ok(Arc::new(EtcdStore::connect(&endpoints, prefix).await?))
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("expected file:///ABSOLUTE/PATH"));
        }
        Ok(Arc::new(FileStore::open(std::path::Path::new(path))?))
    } else {
        Err(bad("expected etcd://HOST:PORT/PREFIX or file:///PATH"))
    }
}
