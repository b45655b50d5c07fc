//! A test-only fault: `JACOLBERT_FAILPOINT=panic-on-upsert:ID` makes an upsert that carries the
//! document ID panic while it holds the shard's write lock (tests/storage.rs checks that the
//! shard goes on serving). Unset, it costs one environment lookup per upsert.

pub fn panic_on_upsert<'a>(mut ids: impl Iterator<Item = &'a str>) {
    let Ok(point) = std::env::var("JACOLBERT_FAILPOINT") else { return };
    if let Some(id) = point.strip_prefix("panic-on-upsert:") {
        if ids.any(|d| d == id) {
            panic!("failpoint panic-on-upsert:{id}");
        }
    }
}
