//! A shard: a slice of the collection as compressed token vectors (`codec`), laid out for
//! search by centroid (`index`), kept durably in sled (`store`), with the life cycle that ties
//! them together (`shard`), served over gRPC (`service`). See ARCHITECTURE.md and DESIGN.md §4.

pub mod codec;
mod error;
mod failpoint;
pub mod fields;
pub mod give_way;
pub mod index;
pub mod refused;
mod rng;
pub mod service;
pub mod shard;
pub mod store;
pub mod synthetic;

pub use error::{Error, Result};
