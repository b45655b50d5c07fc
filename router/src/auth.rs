//! API keys at the router's edge (`[auth]` in its config). A request carries
//! `authorization: Bearer KEY`; a read-write key may call everything, a read-only key all but
//! the writes (Upsert, Delete and the Admin service but its read-only Status). Keys are compared in constant time, and
//! every configured key is compared, so timing says nothing about which key nearly matched.
//! Health checks and reflection stay open. No keys configured: no checks (development).

use std::sync::Arc;

use tonic::codegen::http;
use tonic::Status;

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub read_write_keys: Vec<String>,
    pub read_only_keys: Vec<String>,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.read_write_keys.is_empty() || !self.read_only_keys.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    None,
    Read,
    Write,
}

/// Whether `a` equals `b`, looking at every byte of the longer whatever they hold.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= std::hint::black_box(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

impl AuthConfig {
    fn access(&self, key: &str) -> Access {
        let mut access = Access::None;
        for k in &self.read_only_keys {
            if same(k.as_bytes(), key.as_bytes()) {
                access = access.max(Access::Read);
            }
        }
        for k in &self.read_write_keys {
            if same(k.as_bytes(), key.as_bytes()) {
                access = Access::Write;
            }
        }
        access
    }

    /// Why `path` may not be called with these `authorization` header bytes, if it may not.
    fn check(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), Status> {
        let write = matches!(path, "/jacolbert.v1.Search/Upsert" | "/jacolbert.v1.Search/Delete")
            || (path.starts_with("/jacolbert.v1.Admin/") && path != "/jacolbert.v1.Admin/Status");
        let guarded = write || path.starts_with("/jacolbert.v1.Search/") || path.starts_with("/jacolbert.v1.Admin/");
        if !guarded || !self.enabled() {
            return Ok(());
        }
        let key = authorization.and_then(|v| v.strip_prefix(b"Bearer ")).and_then(|k| std::str::from_utf8(k).ok());
        let Some(key) = key else {
            return Err(Status::unauthenticated("missing API key: send `authorization: Bearer KEY`"));
        };
        match self.access(key) {
            Access::None => Err(Status::unauthenticated("unknown API key")),
            Access::Read if write => Err(Status::permission_denied(format!("a read-only key may not call {path}"))),
            _ => Ok(()),
        }
    }
}

/// The layer that checks every request's key before the router sees it.
pub fn layer<S>(config: AuthConfig) -> impl tower::Layer<S, Service = proto::gate::Gated<S>> + Clone {
    let config = Arc::new(config);
    proto::gate::layer(Arc::new(move |path: &str, headers: &http::HeaderMap| {
        config.check(path, headers.get("authorization").map(|v| v.as_bytes()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn config() -> AuthConfig {
        AuthConfig { read_write_keys: vec!["rw-key".into()], read_only_keys: vec!["ro-key".into()] }
    }

    fn code(config: &AuthConfig, path: &str, key: Option<&str>) -> Code {
        let header = key.map(|k| format!("Bearer {k}"));
        config.check(path, header.as_deref().map(str::as_bytes)).map_or_else(|s| s.code(), |()| Code::Ok)
    }

    #[test]
    fn keys_grant_reads_and_writes_as_configured() {
        let c = config();
        let (search, upsert, admin) =
            ("/jacolbert.v1.Search/Search", "/jacolbert.v1.Search/Upsert", "/jacolbert.v1.Admin/AddShard");
        let health = "/grpc.health.v1.Health/Check";
        assert_eq!(code(&c, search, None), Code::Unauthenticated);
        assert_eq!(code(&c, search, Some("rw-ke")), Code::Unauthenticated);
        assert_eq!(code(&c, search, Some("rw-key-")), Code::Unauthenticated);
        assert_eq!(code(&c, search, Some("ro-key")), Code::Ok);
        assert_eq!(code(&c, upsert, Some("ro-key")), Code::PermissionDenied);
        assert_eq!(code(&c, admin, Some("ro-key")), Code::PermissionDenied);
        assert_eq!(code(&c, upsert, Some("rw-key")), Code::Ok);
        assert_eq!(code(&c, admin, Some("rw-key")), Code::Ok);
        let status = "/jacolbert.v1.Admin/Status";
        assert_eq!(code(&c, status, Some("ro-key")), Code::Ok, "the cluster's status is a read");
        assert_eq!(code(&c, status, None), Code::Unauthenticated);
        assert_eq!(code(&c, health, None), Code::Ok);
        assert_eq!(code(&AuthConfig::default(), upsert, None), Code::Ok);
        assert_eq!(c.check(search, Some(b"Basic cm8ta2V5")).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn equality_is_exact() {
        assert!(same(b"abc", b"abc"));
        assert!(same(b"", b""));
        for (a, b) in [(&b"abc"[..], &b"abd"[..]), (b"abc", b"ab"), (b"", b"a"), (b"ab\0", b"ab")] {
            assert!(!same(a, b) && !same(b, a), "{a:?} {b:?}");
        }
    }
}
