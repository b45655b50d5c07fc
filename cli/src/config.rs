//! The TOML config file of each role (`--config FILE`). Every key is optional: a key left out
//! keeps the compiled-in default, and `deploy/config/*.toml` spell all of them out, with
//! comments (a test holds those files equal to the defaults). Command-line flags, and the
//! `JACOLBERT_*` environment variables behind them, override the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use encoder_node::service::BatchConfig;
use router::RouterConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shard_node::shard::ShardConfig;

/// `[tls]`: this node's certificate and key (PEM), and the CA (PEM) that peers' certificates
/// must chain to. Servers use all three; the router also uses them to call the nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Whether callers must present a certificate signed by `ca` (mutual TLS). Keep it on
    /// between nodes; the router's public port may turn it off and rely on API keys.
    #[serde(default = "required")]
    pub require_client_cert: bool,
}

fn required() -> bool {
    true
}

/// `development` (the default) starts with whatever is configured; `production` refuses to
/// start without TLS (and, at the router, API keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Production,
}

impl Profile {
    /// In production, what a node must have configured.
    pub fn check(self, role: &str, tls: Option<&TlsFile>, keys: bool) -> anyhow::Result<()> {
        if self == Profile::Production {
            anyhow::ensure!(tls.is_some(), "the production profile needs TLS: set [tls] in the {role}'s config");
            anyhow::ensure!(keys, "the production profile needs API keys: set [auth] in the router's config");
        }
        Ok(())
    }
}

/// Default message limits: encoders and shards pass batches of documents' vectors (as much as
/// the router's calls to them carry); the router's clients send texts.
pub use router::NODE_MESSAGE;
pub const ROUTER_MESSAGE: usize = 32 << 20;

/// `jacolbert encoder`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderFile {
    pub profile: Profile,
    pub listen: String,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Requests per second this node takes before it answers RESOURCE_EXHAUSTED (0: no limit).
    pub max_requests_per_second: u32,
    /// Where to serve Prometheus metrics (`/metrics`); none by default.
    pub metrics_addr: Option<String>,
    /// Model directory, or a Hugging Face id present in the local HF cache (no default).
    pub model: Option<String>,
    /// unidic-lite's `dicdir`; by default found as `--mecab-dic` documents.
    pub mecab_dic: Option<PathBuf>,
    /// Where the forward pass and `Score`'s MaxSim run: `auto` (GPU 0 if usable, else the
    /// CPU), `cpu`, `cuda:N`.
    pub device: String,
    pub batching: BatchConfig,
    pub tls: Option<TlsFile>,
}

impl Default for EncoderFile {
    fn default() -> Self {
        EncoderFile {
            profile: Profile::Development,
            listen: "127.0.0.1:50052".into(),
            max_message_bytes: NODE_MESSAGE,
            max_requests_per_second: 0,
            metrics_addr: None,
            model: None,
            mecab_dic: None,
            device: "auto".into(),
            batching: BatchConfig::default(),
            tls: None,
        }
    }
}

/// `jacolbert shard`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardFile {
    pub profile: Profile,
    pub listen: String,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Requests per second this node takes before it answers RESOURCE_EXHAUSTED (0: no limit).
    pub max_requests_per_second: u32,
    pub metrics_addr: Option<String>,
    pub data_dir: PathBuf,
    /// This shard's number in the router's list, reported in hits.
    pub number: u32,
    pub index: ShardConfig,
    pub tls: Option<TlsFile>,
}

impl Default for ShardFile {
    fn default() -> Self {
        ShardFile {
            profile: Profile::Development,
            listen: "127.0.0.1:50053".into(),
            max_message_bytes: NODE_MESSAGE,
            max_requests_per_second: 0,
            metrics_addr: None,
            data_dir: "data/shard-0".into(),
            number: 0,
            index: ShardConfig::default(),
            tls: None,
        }
    }
}

/// `jacolbert router`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterFile {
    pub profile: Profile,
    pub listen: String,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Requests per second this node takes before it answers RESOURCE_EXHAUSTED (0: no limit).
    pub max_requests_per_second: u32,
    pub metrics_addr: Option<String>,
    /// Where to serve the HTTP/JSON API and the web console (off when unset).
    pub http_listen: Option<String>,
    /// Where cluster state lives (etcd://HOST:PORT[,…]/PREFIX or file:///PATH); without it
    /// the router keeps `encoders` and `shards` in its memory (one router only).
    pub cluster_store: Option<String>,
    pub encoders: Vec<String>,
    /// In shard order: placement sends a document to `shards[jump_hash(id)]`.
    pub shards: Vec<ShardEntry>,
    pub limits: RouterConfig,
    pub auth: router::auth::AuthConfig,
    pub tls: Option<TlsFile>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub replicas: Vec<String>,
}

/// One shard's replicas as the command line gives them: `ADDR[,ADDR…]`.
pub fn replica_list(addresses: &str) -> Vec<String> {
    addresses.split(',').map(|a| a.trim().to_string()).collect()
}

impl Default for RouterFile {
    fn default() -> Self {
        RouterFile {
            profile: Profile::Development,
            listen: "127.0.0.1:50051".into(),
            max_message_bytes: ROUTER_MESSAGE,
            max_requests_per_second: 0,
            metrics_addr: None,
            http_listen: None,
            cluster_store: None,
            encoders: vec!["127.0.0.1:50052".into()],
            shards: vec![ShardEntry { replicas: vec!["127.0.0.1:50053".into()] }],
            limits: RouterConfig::default(),
            auth: Default::default(),
            tls: None,
        }
    }
}

/// `jacolbert local`: the router's address (the encoder and shards take the ports after it),
/// and the other roles' tables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalFile {
    pub listen: String,
    /// One metrics endpoint for all the nodes of the process.
    pub metrics_addr: Option<String>,
    /// Where the router serves the HTTP/JSON API and the web console (off when unset).
    pub http_listen: Option<String>,
    pub model: Option<String>,
    pub mecab_dic: Option<PathBuf>,
    /// Shard `i` keeps its data in `data_dir/shard-i`, and the cluster state (the shard
    /// count among it) is in `data_dir/cluster.json`.
    pub data_dir: PathBuf,
    /// Shards of a new data directory (2 when not given); an existing one keeps its count.
    pub shards: Option<usize>,
    pub device: String,
    pub batching: BatchConfig,
    /// `dim` is taken from the model.
    pub index: ShardConfig,
    pub limits: RouterConfig,
}

impl Default for LocalFile {
    fn default() -> Self {
        LocalFile {
            listen: "127.0.0.1:50051".into(),
            metrics_addr: None,
            http_listen: None,
            model: None,
            mecab_dic: None,
            data_dir: "data".into(),
            shards: None,
            device: "auto".into(),
            batching: BatchConfig { query_cache: 4096, ..Default::default() },
            index: ShardConfig::default(),
            limits: RouterConfig::default(),
        }
    }
}

/// Reads a config file, or gives the defaults when there is none.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example<T: DeserializeOwned + Default>(name: &str) -> T {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config").join(name);
        load(Some(&path)).unwrap()
    }

    #[test]
    fn documented_configs_are_the_compiled_in_defaults() {
        assert_eq!(example::<EncoderFile>("encoder.toml"), EncoderFile::default());
        assert_eq!(example::<ShardFile>("shard.toml"), ShardFile::default());
        assert_eq!(example::<RouterFile>("router.toml"), RouterFile::default());
        assert_eq!(example::<LocalFile>("local.toml"), LocalFile::default());
    }

    fn text_of_configmap() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/config.yaml")).unwrap()
    }

    /// The TOML files inside the Kubernetes ConfigMap: each `  NAME.toml: |` block.
    fn configmap_files() -> Vec<(String, String)> {
        let text = text_of_configmap();
        let mut files: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(": |")) {
                files.push((name.to_string(), String::new()));
            } else if let (Some(body), Some((_, file))) = (line.strip_prefix("    "), files.last_mut()) {
                *file += &format!("{body}\n");
            }
        }
        files
    }

    #[test]
    fn the_kubernetes_configs_parse_as_their_roles() {
        let files = configmap_files();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["router.toml", "shard.toml", "encoder.toml"]);
        let router: RouterFile = toml::from_str(&files[0].1).unwrap();
        let store = router.cluster_store.unwrap();
        assert!(
            store.starts_with("etcd://etcd-0.etcd.jacolbert.svc.cluster.local:2379,") && store.ends_with("/jacolbert")
        );
        assert!(text_of_configmap().contains(&format!("cluster_store: {store:?}")), "the init job's store differs");
        assert_eq!(router.listen, "0.0.0.0:50051");
        let shard: ShardFile = toml::from_str(&files[1].1).unwrap();
        assert_eq!(shard.data_dir, Path::new("/data"));
        let encoder: EncoderFile = toml::from_str(&files[2].1).unwrap();
        assert_eq!(encoder.model.as_deref(), Some("/model"));
    }

    #[test]
    fn missing_keys_keep_defaults_and_unknown_keys_are_refused() {
        let shard: ShardFile = toml::from_str("number = 3\n[index.train]\nnbits = 4\n").unwrap();
        assert_eq!(shard.number, 3);
        assert_eq!(shard.index.train.nbits, 4);
        assert_eq!(shard.index.train.iterations, ShardFile::default().index.train.iterations);
        assert_eq!(shard.listen, ShardFile::default().listen);
        let err = toml::from_str::<ShardFile>("[index]\nnbit = 4\n").unwrap_err().to_string();
        assert!(err.contains("nbit"), "{err}");
        let err = toml::from_str::<RouterFile>("[[shards]]\nreplica = [\"a\"]\n").unwrap_err().to_string();
        assert!(err.contains("replica"), "{err}");
    }
}
