//! The store in etcd, for many routers. Keys under `PREFIX/`: `state` (the JSON state,
//! replaced only by a transaction that compares the old value), `routers/ID` (the epoch router
//! ID acknowledged), `locks/NAME` (who runs the move, who repairs a shard) and `reports/KEY`
//! (a repair's progress). All but the state hang on this process's lease, so a process that
//! dies lets go of them when the lease runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp};

use super::{ClusterState, ClusterStore};
use crate::Error;

/// How long a process's records outlive its last keep-alive, and how often it renews them.
const LEASE_TTL: Duration = Duration::from_secs(6);
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A router that has not renewed its lease for this long may be missing a change: it stops
/// taking writes before etcd lets go of its records (and so stops waiting for it).
const OUT_OF_TOUCH: Duration = Duration::from_secs(4);

pub struct EtcdStore {
    client: Client,
    prefix: String,
    endpoints: String,
    lease: Arc<Lease>,
}

/// This process's lease, and what hangs on it (put back when the lease had to be renewed).
#[derive(Default)]
struct Lease {
    id: AtomicI64,
    renewed: Mutex<Option<Instant>>,
    acks: Mutex<HashMap<String, u64>>,
    started: std::sync::OnceLock<()>,
}

impl EtcdStore {
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, Error> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let listed = endpoints.join(",");
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| Error::Store(format!("connecting to etcd at {listed}: {e}")))?;
        Ok(EtcdStore { client, prefix: prefix.trim_matches('/').to_string(), endpoints: listed, lease: Arc::default() })
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// The keys under `PREFIX/folder` (without that part) and their values, as text.
    async fn under(&self, folder: &str, what: &str) -> Result<Vec<(String, String)>, Error> {
        let prefix = self.key(folder);
        let options = GetOptions::new().with_prefix();
        let got = self.client.clone().get(prefix.clone(), Some(options)).await.map_err(self.failed(what))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(got.kvs().iter().map(|kv| (text(&kv.key()[prefix.len()..]), text(kv.value()))).collect())
    }

    fn failed(&self, what: &str) -> impl Fn(etcd_client::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| Error::Store(format!("etcd at {} ({what}): {e}", self.endpoints))
    }

    /// The lease's id, granting one (and starting its keep-alive) when there is none.
    async fn lease_id(&self) -> Result<i64, Error> {
        let lease = &self.lease;
        lease.started.get_or_init(|| {
            tokio::spawn(keep_alive(self.client.clone(), self.lease.clone(), self.prefix.clone()));
        });
        for _ in 0..50 {
            match lease.id.load(Ordering::Acquire) {
                0 => tokio::time::sleep(Duration::from_millis(100)).await,
                id => return Ok(id),
            }
        }
        Err(Error::Store(format!("etcd at {} granted no lease", self.endpoints)))
    }
}

/// Keeps the lease alive for the life of the process; when it was lost (etcd down for longer
/// than its time to live), grants a new one and puts the acknowledgements back on it.
async fn keep_alive(mut client: Client, lease: Arc<Lease>, prefix: String) {
    loop {
        let id = match lease.id.load(Ordering::Acquire) {
            0 => match client.lease_grant(LEASE_TTL.as_secs() as i64, None).await {
                Ok(granted) => {
                    let acks: Vec<(String, u64)> = lease
                        .acks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(m, e)| (m.clone(), *e))
                        .collect();
                    let options = || Some(PutOptions::new().with_lease(granted.id()));
                    let mut put_back = true;
                    for (member, epoch) in acks {
                        let key = format!("{prefix}/routers/{member}");
                        put_back &= client.put(key, epoch.to_string(), options()).await.is_ok();
                    }
                    if !put_back {
                        tokio::time::sleep(RENEW_EVERY).await;
                        continue;
                    }
                    lease.id.store(granted.id(), Ordering::Release);
                    *lease.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    granted.id()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "etcd: no lease; retrying");
                    tokio::time::sleep(RENEW_EVERY).await;
                    continue;
                }
            },
            id => id,
        };
        let lost = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(id).await.ok()?;
            loop {
                keeper.keep_alive().await.ok()?;
                let answer = tokio::time::timeout(RENEW_EVERY * 2, stream.message()).await.ok()?.ok()??;
                if answer.ttl() <= 0 {
                    return Some(());
                }
                *lease.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                tokio::time::sleep(RENEW_EVERY).await;
            }
        };
        if lost.await.is_some() {
            tracing::warn!(lease = id, "etcd: the lease ran out; taking a new one");
            lease.id.store(0, Ordering::Release);
        } else {
            tokio::time::sleep(RENEW_EVERY / 2).await;
        }
    }
}

fn parse(bytes: &[u8]) -> Result<ClusterState, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("the cluster state in etcd is not readable: {e}")))
}

fn bytes(state: &ClusterState) -> Vec<u8> {
    serde_json::to_vec(state).expect("state serialises")
}

#[tonic::async_trait]
impl ClusterStore for EtcdStore {
    async fn load(&self) -> Result<Option<ClusterState>, Error> {
        let got = self.client.clone().get(self.key("state"), None).await.map_err(self.failed("reading the state"))?;
        got.kvs().first().map(|kv| parse(kv.value())).transpose()
    }

    async fn replace(
        &self,
        expected: Option<&ClusterState>,
        next: &ClusterState,
        mover: Option<&str>,
    ) -> Result<bool, Error> {
        let key = self.key("state");
        let mut compare = vec![match expected {
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
            Some(state) => Compare::value(key.clone(), CompareOp::Equal, bytes(state)),
        }];
        if let Some(owner) = mover {
            compare.push(Compare::value(self.key(&format!("locks/{}", super::MOVE_LOCK)), CompareOp::Equal, owner));
        }
        let txn = Txn::new().when(compare).and_then([TxnOp::put(key, bytes(next), None)]);
        let done = self.client.clone().txn(txn).await.map_err(self.failed("writing the state"))?;
        Ok(done.succeeded())
    }

    async fn changed_after(&self, epoch: u64) -> Result<ClusterState, Error> {
        let key = self.key("state");
        let mut client = self.client.clone();
        loop {
            let got = client.get(key.clone(), None).await.map_err(self.failed("reading the state"))?;
            if let Some(kv) = got.kvs().first() {
                let state = parse(kv.value())?;
                if state.epoch > epoch {
                    return Ok(state);
                }
            }
            let from = got.header().map_or(0, |h| h.revision()) + 1;
            let options = etcd_client::WatchOptions::new().with_start_revision(from);
            let mut stream = client.watch(key.clone(), Some(options)).await.map_err(self.failed("watching"))?;
            while let Some(answer) = stream.message().await.map_err(self.failed("watching"))? {
                for event in answer.events().iter().filter(|e| e.event_type() == EventType::Put) {
                    if let Some(kv) = event.kv() {
                        let state = parse(kv.value())?;
                        if state.epoch > epoch {
                            return Ok(state);
                        }
                    }
                }
                if answer.canceled() {
                    break;
                }
            }
        }
    }

    async fn ack(&self, member: &str, epoch: u64) -> Result<(), Error> {
        let lease = self.lease_id().await?;
        self.lease.acks.lock().unwrap_or_else(|e| e.into_inner()).insert(member.to_string(), epoch);
        let key = self.key(&format!("routers/{member}"));
        let options = PutOptions::new().with_lease(lease);
        self.client.clone().put(key, epoch.to_string(), Some(options)).await.map_err(self.failed("acknowledging"))?;
        Ok(())
    }

    async fn acks(&self) -> Result<Vec<(String, u64)>, Error> {
        let listed = self.under("routers/", "reading the routers").await?;
        let epoch = |v: &str| v.parse().unwrap_or(0);
        Ok(listed.into_iter().map(|(member, value)| (member, epoch(&value))).collect())
    }

    async fn lock(&self, name: &str, owner: &str) -> Result<Option<String>, Error> {
        let lease = self.lease_id().await?;
        let key = self.key(&format!("locks/{name}"));
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), owner, Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key, None)]);
        let done = self.client.clone().txn(txn).await.map_err(self.failed("taking a lock"))?;
        if done.succeeded() {
            return Ok(None);
        }
        let holder = done.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(got) => got.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let holder = String::from_utf8_lossy(&holder.unwrap_or_default()).into_owned();
        Ok((holder != owner).then_some(holder))
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), Error> {
        let key = self.key(&format!("locks/{name}"));
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, owner)])
            .and_then([TxnOp::delete(key, None)]);
        self.client.clone().txn(txn).await.map_err(self.failed("letting a lock go"))?;
        Ok(())
    }

    async fn report(&self, key: &str, value: &str) -> Result<(), Error> {
        let lease = self.lease_id().await?;
        let options = PutOptions::new().with_lease(lease);
        let key = self.key(&format!("reports/{key}"));
        self.client.clone().put(key, value, Some(options)).await.map_err(self.failed("reporting"))?;
        Ok(())
    }

    async fn reports(&self) -> Result<Vec<(String, String)>, Error> {
        self.under("reports/", "reading reports").await
    }

    fn durable(&self) -> bool {
        true
    }

    fn in_touch(&self) -> bool {
        let renewed = *self.lease.renewed.lock().unwrap_or_else(|e| e.into_inner());
        renewed.is_some_and(|at| at.elapsed() < OUT_OF_TOUCH)
    }

    fn describe(&self) -> String {
        format!("etcd://{}/{}", self.endpoints, self.prefix)
    }
}
