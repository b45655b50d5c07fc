//! The embedded store: the state as one JSON file (or only in memory), for `jacolbert local`
//! and single-router set-ups. One process owns the file (an exclusive lock beside it), so its
//! routers' acknowledgements, the locks and the reports live in that process's memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::watch;

use super::{ClusterState, ClusterStore};
use crate::Error;

pub struct FileStore {
    /// `None`: in memory only.
    path: Option<PathBuf>,
    /// Held for the life of the store: a second process cannot open the same file.
    _lock: Option<File>,
    state: watch::Sender<Option<ClusterState>>,
    acks: Mutex<HashMap<String, u64>>,
    /// Lock name → holder, and report key → value: this process's only.
    locks: Mutex<HashMap<String, String>>,
    reports: Mutex<HashMap<String, String>>,
}

impl FileStore {
    /// The store in `path` (created on the first write), locked for this process.
    pub fn open(path: &Path) -> Result<FileStore, Error> {
        let failed = |what: &str, e: std::io::Error| Error::Store(format!("{what} {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed("creating the folder of", e))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path).map_err(|e| failed("creating the lock beside", e))?;
        // SAFETY: flock on a descriptor we own; it is released when the file is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Store(format!(
                "the cluster state {} is in use by another process (a running `jacolbert local` or router?)",
                path.display()
            )));
        }
        let state = match std::fs::read(path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Store(format!("the cluster state {} is not readable: {e}", path.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(failed("reading", e)),
        };
        Ok(FileStore::with(Some(path.to_path_buf()), Some(lock), state))
    }

    /// A store in this process's memory only, holding `state`.
    pub fn memory(state: ClusterState) -> FileStore {
        FileStore::with(None, None, Some(state))
    }

    fn with(path: Option<PathBuf>, lock: Option<File>, state: Option<ClusterState>) -> FileStore {
        FileStore {
            path,
            _lock: lock,
            state: watch::Sender::new(state),
            acks: Mutex::default(),
            locks: Mutex::default(),
            reports: Mutex::default(),
        }
    }

    /// Writes `state` aside and renames it over the file, so a crash leaves the old or the new.
    fn persist(&self, state: &ClusterState) -> Result<(), Error> {
        let Some(path) = &self.path else { return Ok(()) };
        let failed = |e: std::io::Error| Error::Store(format!("writing the cluster state {}: {e}", path.display()));
        let aside = path.with_extension("json.new");
        let mut file = File::create(&aside).map_err(failed)?;
        file.write_all(&serde_json::to_vec_pretty(state).expect("state serialises")).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&aside, path).map_err(failed)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ClusterStore for FileStore {
    async fn load(&self) -> Result<Option<ClusterState>, Error> {
        Ok(self.state.borrow().clone())
    }

    async fn replace(
        &self,
        expected: Option<&ClusterState>,
        next: &ClusterState,
        mover: Option<&str>,
    ) -> Result<bool, Error> {
        let holder = |locks: &HashMap<String, String>| locks.get(super::MOVE_LOCK).cloned();
        if mover.is_some() && holder(&self.locks.lock().unwrap_or_else(|e| e.into_inner())).as_deref() != mover {
            return Ok(false);
        }
        let mut result = Ok(false);
        self.state.send_if_modified(|now| {
            if now.as_ref() != expected {
                return false;
            }
            result = self.persist(next).map(|()| true);
            if result.is_ok() {
                *now = Some(next.clone());
            }
            result.is_ok()
        });
        result
    }

    async fn changed_after(&self, epoch: u64) -> Result<ClusterState, Error> {
        let mut watching = self.state.subscribe();
        let newer = watching
            .wait_for(|s| s.as_ref().is_some_and(|s| s.epoch > epoch))
            .await
            .map_err(|_| Error::Store("the cluster state was closed".into()))?;
        Ok(newer.clone().expect("waited for a state"))
    }

    async fn ack(&self, member: &str, epoch: u64) -> Result<(), Error> {
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        let known = acks.entry(member.to_string()).or_default();
        *known = (*known).max(epoch);
        Ok(())
    }

    async fn acks(&self) -> Result<Vec<(String, u64)>, Error> {
        Ok(self.acks.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(m, e)| (m.clone(), *e)).collect())
    }

    async fn lock(&self, name: &str, owner: &str) -> Result<Option<String>, Error> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        match locks.get(name) {
            Some(holder) if holder != owner => Ok(Some(holder.clone())),
            _ => {
                locks.insert(name.to_string(), owner.to_string());
                Ok(None)
            }
        }
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), Error> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.get(name).is_some_and(|h| h == owner) {
            locks.remove(name);
        }
        Ok(())
    }

    async fn report(&self, key: &str, value: &str) -> Result<(), Error> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn reports(&self) -> Result<Vec<(String, String)>, Error> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        Ok(reports.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn durable(&self) -> bool {
        self.path.is_some()
    }

    fn in_touch(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("file://{}", path.display()),
            None => "the router's memory".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MOVE_LOCK;

    #[tokio::test]
    async fn replaces_only_what_it_expects_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        let store = FileStore::open(&path).unwrap();
        assert!(store.load().await.unwrap().is_none());
        let first = ClusterState::new(vec!["e:1".into()], &[vec!["s:1".into()]]);
        assert!(store.replace(None, &first, None).await.unwrap());
        assert!(!store.replace(None, &first, None).await.unwrap(), "an initialised store took a second init");
        let second = first.changed(|s| s.encoders.push("e:2".into()));
        let waiter = {
            let store = std::sync::Arc::new(store);
            let watching = store.clone();
            let wait = tokio::spawn(async move { watching.changed_after(1).await.unwrap() });
            assert!(!store.replace(Some(&second), &second, None).await.unwrap(), "replaced an unexpected state");
            assert!(store.replace(Some(&first), &second, None).await.unwrap());
            assert_eq!(wait.await.unwrap(), second);
            // The move lock: one owner at a time, and a mover's write needs it.
            assert_eq!(store.lock(MOVE_LOCK, "a").await.unwrap(), None);
            assert_eq!(store.lock(MOVE_LOCK, "b").await.unwrap(), Some("a".into()));
            assert_eq!(store.lock("repair/0", "b").await.unwrap(), None, "locks are independent");
            let third = second.changed(|_| ());
            assert!(!store.replace(Some(&second), &third, Some("b")).await.unwrap());
            assert!(store.replace(Some(&second), &third, Some("a")).await.unwrap());
            store
        };
        // Locked while open; readable again after.
        assert!(FileStore::open(&path).is_err());
        drop(waiter);
        let reopened = FileStore::open(&path).unwrap();
        assert_eq!(reopened.load().await.unwrap().unwrap().epoch, 3);
    }
}
