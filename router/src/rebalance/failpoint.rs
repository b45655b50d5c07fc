//! Named points in a move where a test can kill the moving process: with
//! `JACOLBERT_FAILPOINT=NAME[:N]`, the N-th time (default the first) the move reaches point NAME
//! it says so on stderr and stops there, so that the test's SIGKILL lands exactly at that point.
//! Unset (always, outside tests), a point costs one environment lookup per batch.

use std::sync::atomic::{AtomicU32, Ordering};

static REACHED: AtomicU32 = AtomicU32::new(0);

pub(crate) async fn point(name: &str) {
    let Ok(wanted) = std::env::var("JACOLBERT_FAILPOINT") else { return };
    let (point, nth) = wanted.split_once(':').unwrap_or((&wanted, "1"));
    if point != name {
        return;
    }
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == nth.parse().unwrap_or(1) {
        eprintln!("failpoint {name} reached");
        std::future::pending::<()>().await;
    }
}
