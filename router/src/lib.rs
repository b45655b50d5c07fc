//! The router: the public `jacolbert.v1.Search` service. It encodes a query on an encoder
//! node, fans it out to one replica of every shard under the caller's deadline, retries once on
//! another replica when one is unavailable, and merges the top-k; writes go to every replica of
//! the shard that placement names. DESIGN.md §2.

pub mod auth;
mod checks;
mod config;
mod documents;
mod encoders;
mod error;
mod explain;
mod merge;
pub mod placement;
pub mod rebalance;
mod repair;
pub(crate) mod replicas;
mod replicate;
mod service;
pub mod state;
mod status;
mod writes;

pub use config::RouterConfig;
pub use error::Error;
pub use merge::merge;
pub use replicas::NODE_MESSAGE;
pub use service::{Counters, Router};
