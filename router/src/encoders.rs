//! The encoders a router calls, each with its health and load as this router sees them. A call
//! goes to the healthy encoder with the least work (the texts this router has in flight on it
//! plus those it said were queued behind its last answer: `proto::QUEUED_HEADER`), ties in
//! turn; one that fails as unreachable or full is tried once more on another. An encoder whose
//! call failed as unreachable is skipped until a health check (grpc.health.v1, every
//! `HEALTH_EVERY`) or a later call finds it serving again; when every encoder is down, the one
//! that failed longest ago is still tried, so a cluster whose encoders came back serves at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use proto::v1::encoder_client::EncoderClient;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::replicas::{channel, remaining, unreachable, NODE_MESSAGE};
use crate::service::Counters;
use crate::Error;

/// How often each encoder's health is checked.
pub(crate) const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// What `Encoder::down_since_ms` counts from: one instant for every encoder, so they compare.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One encoder: its client, and what this router knows of its health and load.
pub(crate) struct Encoder {
    pub address: String,
    client: EncoderClient<Channel>,
    channel: Channel,
    /// Texts of this router's calls on it that have not answered yet.
    in_flight: AtomicU64,
    /// Texts it said were queued (or being encoded) as it sent its last answer.
    queued: AtomicU64,
    /// Whether it is being skipped, and since when (ms after `epoch`, for "failed longest ago").
    down: AtomicBool,
    down_since_ms: AtomicU64,
}

impl Encoder {
    fn load(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed)
    }

    fn mark_down(&self) {
        if !self.down.swap(true, Ordering::Relaxed) {
            self.down_since_ms.store(EPOCH.elapsed().as_millis() as u64, Ordering::Relaxed);
            tracing::warn!(encoder = %self.address, "encoder unavailable: skipped until it answers again");
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(encoder = %self.address, "encoder answers again");
        }
    }

    /// Asks its health service whether it serves; marks it up or down by the answer.
    async fn check_health(&self) {
        let mut health = HealthClient::new(self.channel.clone());
        let asked = tokio::time::timeout(HEALTH_EVERY, health.check(HealthCheckRequest { service: String::new() }));
        match asked.await {
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => self.mark_up(),
            _ => self.mark_down(),
        }
    }
}

/// Every encoder of a view.
pub(crate) struct Encoders {
    list: Vec<Arc<Encoder>>,
    next: AtomicUsize,
}

/// A call that may go to another encoder when it fails so: unreachable, or full.
fn try_another(status: &Status) -> bool {
    unreachable(status) || status.code() == Code::ResourceExhausted
}

impl Encoders {
    /// Each encoder's health and load as this router sees them (`Admin.Status`).
    pub(crate) fn status(&self) -> Vec<proto::v1::EncoderStatus> {
        let status = |e: &Arc<Encoder>| proto::v1::EncoderStatus {
            address: e.address.clone(),
            healthy: !e.down.load(Ordering::Relaxed),
            load: e.load(),
        };
        self.list.iter().map(status).collect()
    }

    /// Clients for `addresses`, keeping `before`'s encoders (their channels and health) where
    /// the address is the same.
    pub(crate) fn connect(
        addresses: &[String],
        tls: Option<&ClientTlsConfig>,
        before: Option<&Encoders>,
    ) -> Result<Encoders, Error> {
        let known: HashMap<&str, &Arc<Encoder>> =
            before.iter().flat_map(|e| e.list.iter().map(|e| (e.address.as_str(), e))).collect();
        let mut list = Vec::with_capacity(addresses.len());
        for address in addresses {
            list.push(match known.get(address.as_str()) {
                Some(e) => Arc::clone(e),
                None => {
                    let channel = channel(address, tls)?;
                    let client = EncoderClient::new(channel.clone())
                        .max_decoding_message_size(NODE_MESSAGE)
                        .max_encoding_message_size(NODE_MESSAGE);
                    Arc::new(Encoder {
                        address: address.clone(),
                        client,
                        channel,
                        in_flight: AtomicU64::new(0),
                        queued: AtomicU64::new(0),
                        down: AtomicBool::new(false),
                        down_since_ms: AtomicU64::new(0),
                    })
                }
            });
        }
        Ok(Encoders { list, next: AtomicUsize::new(0) })
    }

    /// The encoder to call, other than `not`: the healthy one with the least load (ties in
    /// turn), else the one down longest.
    fn pick(&self, not: Option<usize>) -> Option<usize> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n).map(|i| (start + i) % n).filter(|&i| Some(i) != not);
        let healthy = candidates.clone().filter(|&i| !self.list[i].down.load(Ordering::Relaxed));
        healthy
            .min_by_key(|&i| self.list[i].load())
            .or_else(|| candidates.min_by_key(|&i| self.list[i].down_since_ms.load(Ordering::Relaxed)))
    }

    /// `call` on the best encoder for `texts` texts, and once more on another when it fails as
    /// unreachable or full; never past `deadline` (the error then says `what` was under way).
    /// An encoder's answer carries its queue.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &str,
        texts: usize,
        deadline: Instant,
        counters: &Counters,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(EncoderClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut tried = None;
        let mut last = None;
        for attempt in 0..2 {
            let Some(i) = self.pick(tried) else { break };
            let encoder = &self.list[i];
            let time = remaining(deadline);
            if time.is_zero() {
                break;
            }
            if attempt > 0 {
                counters.encoder_retries.fetch_add(1, Ordering::Relaxed);
            }
            encoder.in_flight.fetch_add(texts as u64, Ordering::Relaxed);
            let answer = tokio::time::timeout(time, call(encoder.client.clone(), time)).await;
            encoder.in_flight.fetch_sub(texts as u64, Ordering::Relaxed);
            match answer {
                Ok(Ok(response)) => {
                    encoder.mark_up();
                    if let Some(queued) = response.metadata().get(proto::QUEUED_HEADER) {
                        let queued = queued.to_str().ok().and_then(|q| q.parse().ok()).unwrap_or(0);
                        encoder.queued.store(queued, Ordering::Relaxed);
                    }
                    return Ok(response.into_inner());
                }
                // Past the deadline, tonic's own timeout answers CANCELLED: a deadline all the same.
                Err(_) => break,
                Ok(Err(_)) if remaining(deadline).is_zero() => break,
                Ok(Err(status)) if try_another(&status) => {
                    counters.encoder_failures.fetch_add(1, Ordering::Relaxed);
                    if unreachable(&status) {
                        encoder.mark_down();
                    }
                    last = Some(Error::Upstream(Status::new(
                        status.code(),
                        format!("encoder {}: {}", encoder.address, status.message()),
                    )));
                    tried = Some(i);
                }
                Ok(Err(status)) => return Err(Error::Upstream(status)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Deadline(what.into())))
    }

    /// Checks every encoder's health, side by side.
    pub(crate) async fn check_health(&self) {
        futures::future::join_all(self.list.iter().map(|e| e.check_health())).await;
    }

    /// How many encoders are being skipped now.
    pub(crate) fn down(&self) -> usize {
        self.list.iter().filter(|e| e.down.load(Ordering::Relaxed)).count()
    }
}
