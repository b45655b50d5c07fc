//! A node's request rate limit (`max_requests_per_second` in its config): a token bucket in
//! front of its services; past it a request is answered RESOURCE_EXHAUSTED at once. Health
//! checks are never limited. 0 means no limit.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tonic::codegen::http;

/// Tokens refill at `rate` per second up to `rate` (one second of burst).
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        let allowed = tokens >= 1.0;
        *state = (if allowed { tokens - 1.0 } else { tokens }, now);
        allowed
    }
}

/// The check, shared by the gRPC port and the HTTP port (one bucket for both).
pub fn check(per_second: u32) -> proto::gate::Check {
    let rate = per_second as f64;
    let bucket = Bucket { rate, state: Mutex::new((rate, Instant::now())) };
    Arc::new(move |path: &str, _: &http::HeaderMap| {
        if per_second == 0 || path.starts_with("/grpc.health.v1.Health/") || bucket.take() {
            Ok(())
        } else {
            Err(tonic::Status::resource_exhausted(format!("over this node's limit of {per_second} requests/s")))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_then_refills() {
        let start = Instant::now();
        let bucket = Bucket { rate: 5.0, state: Mutex::new((5.0, start)) };
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        assert_eq!((0..20).filter(|_| bucket.take_at(at(0))).count(), 5, "one second of burst");
        assert_eq!((0..20).filter(|_| bucket.take_at(at(450))).count(), 2, "2.25 tokens after 0.45 s at 5/s");
        assert_eq!((0..20).filter(|_| bucket.take_at(at(10_000))).count(), 5, "never more than the burst");
    }
}
