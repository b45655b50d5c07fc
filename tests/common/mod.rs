//! Shared by the end-to-end tests: the `jacolbert` binary, node processes on 127.0.0.1 that
//! are killed when dropped, and a cluster of them (an encoder with the tiny-lexical model,
//! shards with one or more replicas each, the router) configured through TOML files.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use proto::v1::search_client::SearchClient;
use proto::v1::{Document, SearchRequest};
use tonic::transport::Channel;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

pub fn jacolbert() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jacolbert"));
    c.env("RUST_LOG", "warn");
    c
}

/// An address on 127.0.0.1 for a node to listen on, free when chosen. A port the kernel hands
/// out for `bind(0)` comes from its ephemeral range, where any outgoing connection (the router's
/// to a shard, say) may take it before the node binds it; so these ports come from below that
/// range (Linux's starts at 32768), each at most once per test binary, spread by process id so
/// two binaries run side by side rarely meet.
pub fn free_address() -> String {
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(997);
    for _ in 0..SPAN {
        let port = LOW + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let address = format!("127.0.0.1:{port}");
        if TcpListener::bind(&address).is_ok() {
            return address;
        }
    }
    panic!("no free port on 127.0.0.1 in {LOW}..{}", LOW + SPAN)
}

/// A node process, killed (SIGKILL) when dropped.
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// Sends a signal (`"STOP"`, `"CONT"`) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.0.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -{name}");
    }
}

/// Waits until something listens on `address`; a node that exits first (it could not bind,
/// say) fails the test here, rather than letting it talk to whatever else holds the port.
pub fn wait_ready(node: &mut Node, address: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        if let Some(status) = node.0.try_wait().unwrap() {
            panic!("the node for {address} exited before listening: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(status) = node.0.try_wait().unwrap() {
        panic!("the node for {address} exited (another process holds the port?): {status}");
    }
}

/// Starts `jacolbert ROLE --config FILE --listen ADDRESS` with `config` written to `FILE`,
/// and its metrics on `metrics`.
pub fn start(dir: &Path, role: &str, name: &str, config: &str, address: &str, metrics: &str) -> Node {
    start_with_env(dir, role, name, config, address, metrics, &[])
}

/// `start`, with environment variables set for the node.
pub fn start_with_env(
    dir: &Path,
    role: &str,
    name: &str,
    config: &str,
    address: &str,
    metrics: &str,
    env: &[(&str, &str)],
) -> Node {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, format!("metrics_addr = {metrics:?}\n{config}")).unwrap();
    let mut node = Node(
        jacolbert()
            .args([role, "--config", file.to_str().unwrap(), "--listen", address])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut node, address);
    node
}

/// What a cluster's router is started with: top-level keys and tables for its config, and the
/// cluster store (`--cluster-store` URL) to initialise and follow, if any.
#[derive(Default)]
struct RouterSetup<'a> {
    keys: &'a str,
    tables: &'a str,
    store: Option<&'a str>,
    /// How many encoders the cluster has (0 reads as 1).
    encoders: usize,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub router: String,
    /// Each node's metrics endpoint, by name: "encoder" (then "encoder-1", …), "router",
    /// "shard-S-R".
    pub metrics: HashMap<String, String>,
    /// Encoders' addresses and processes (None once killed).
    pub encoder_addresses: Vec<String>,
    pub encoders: Vec<Option<Node>>,
    encoder_config: String,
    /// `[shard][replica]` addresses and processes (None once killed).
    pub shard_addresses: Vec<Vec<String>>,
    pub shards: Vec<Vec<Option<Node>>>,
    shard_config: String,
    /// The router's config, for starting more routers.
    router_config: String,
    _others: Vec<Node>,
}

impl Cluster {
    /// Starts an encoder, `shards` × `replicas` shard processes (each with `[index]` table
    /// `index`, in TOML) and the router, each from a TOML config file under `dir`.
    pub fn start(dir: &Path, shards: usize, replicas: usize, index: &str) -> Cluster {
        Cluster::start_with(dir, shards, replicas, index, "", "")
    }

    /// Two shards, and `keys` (top-level TOML keys) at the head of the router's config.
    pub fn start_with_router_keys(dir: &Path, keys: &str) -> Cluster {
        Cluster::start_inner(dir, 2, 1, "", RouterSetup { keys, ..Default::default() }, "")
    }

    /// As `start`, with `router` (TOML tables) added to the router's config and `every` to
    /// every node's.
    pub fn start_with(dir: &Path, shards: usize, replicas: usize, index: &str, router: &str, every: &str) -> Cluster {
        Cluster::start_inner(dir, shards, replicas, index, RouterSetup { tables: router, ..Default::default() }, every)
    }

    /// `shards` shards whose router also serves HTTP on `http` (`http_listen`), with `keys`
    /// (top-level TOML keys) and `tables` added to its config and `every` to every node's.
    pub fn start_with_http(dir: &Path, shards: usize, http: &str, keys: &str, tables: &str, every: &str) -> Cluster {
        let keys = format!("http_listen = {http:?}\n{keys}");
        Cluster::start_inner(dir, shards, 1, "", RouterSetup { keys: &keys, tables, ..Default::default() }, every)
    }

    /// Two shards and `encoders` encoders.
    pub fn start_with_encoders(dir: &Path, encoders: usize) -> Cluster {
        Cluster::start_inner(dir, 2, 1, "", RouterSetup { encoders, ..Default::default() }, "")
    }

    /// `shards` shards of `replicas` replicas and a router whose cluster state is in `store` (a
    /// `--cluster-store` URL), written there first by `jacolbert cluster init`.
    pub fn start_on_store(dir: &Path, shards: usize, replicas: usize, store: &str) -> Cluster {
        Cluster::start_inner(dir, shards, replicas, "", RouterSetup { store: Some(store), ..Default::default() }, "")
    }

    fn start_inner(
        dir: &Path,
        shards: usize,
        replicas: usize,
        index: &str,
        router: RouterSetup,
        every: &str,
    ) -> Cluster {
        let model = fixtures().join("models/tiny-lexical");
        let encoder_addresses: Vec<String> = (0..router.encoders.max(1)).map(|_| free_address()).collect();
        let mut metrics: HashMap<String, String> = HashMap::new();
        for s in 0..shards {
            for r in 0..replicas {
                metrics.insert(format!("shard-{s}-{r}"), free_address());
            }
        }
        for e in 0..encoder_addresses.len() {
            metrics.insert(encoder_name(e), free_address());
        }
        metrics.insert("router".into(), free_address());
        let shard_addresses: Vec<Vec<String>> =
            (0..shards).map(|_| (0..replicas).map(|_| free_address()).collect()).collect();
        let mut router_config = format!("{}encoders = {encoder_addresses:?}\n", router.keys);
        if let Some(store) = router.store {
            router_config = format!("cluster_store = {store:?}\n{router_config}");
        }
        for replicas in &shard_addresses {
            router_config += &format!("[[shards]]\nreplicas = {replicas:?}\n");
        }
        router_config += router.tables;
        router_config += every;
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            router: free_address(),
            metrics,
            encoder_addresses,
            encoders: Vec::new(),
            encoder_config: format!("model = {:?}\n{every}", model.to_str().unwrap()),
            shard_addresses,
            shards: Vec::new(),
            shard_config: format!("[index]\ndim = 128\n{index}\n{every}"),
            router_config: String::new(),
            _others: Vec::new(),
        };
        cluster.encoders = (0..cluster.encoder_addresses.len()).map(|e| Some(cluster.start_encoder(e))).collect();
        cluster.shards =
            (0..shards).map(|s| (0..replicas).map(|r| Some(cluster.start_shard(s, r))).collect()).collect();
        if let Some(store) = router.store {
            let mut init = jacolbert();
            init.args(["cluster", "init", "--cluster-store", store]);
            for encoder in &cluster.encoder_addresses {
                init.args(["--encoder", encoder]);
            }
            for replicas in &cluster.shard_addresses {
                init.args(["--shard", &replicas.join(",")]);
            }
            let out = init.output().unwrap();
            assert!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let router = start(dir, "router", "router", &router_config, &cluster.router, &cluster.metrics["router"]);
        cluster.router_config = router_config;
        cluster._others.push(router);
        cluster
    }

    /// Starts one more router with the first one's config; returns its address (its metrics
    /// are under "router-N" in `metrics`).
    pub fn start_router(&mut self) -> String {
        let (address, metrics) = (free_address(), free_address());
        // `_others` holds the routers: the first is "router", the next "router-2".
        let name = format!("router-{}", self._others.len() + 1);
        let router = start(&self.dir, "router", &name, &self.router_config, &address, &metrics);
        self.metrics.insert(name, metrics);
        self._others.push(router);
        address
    }

    /// Starts (or restarts) encoder `e` on its address.
    pub fn start_encoder(&self, e: usize) -> Node {
        let name = encoder_name(e);
        start(&self.dir, "encoder", &name, &self.encoder_config, &self.encoder_addresses[e], &self.metrics[&name])
    }

    /// Starts (or restarts, on its data) replica `replica` of shard `shard`.
    pub fn start_shard(&self, shard: usize, replica: usize) -> Node {
        let name = format!("shard-{shard}-{replica}");
        let data = self.dir.join(&name);
        let config = format!("data_dir = {:?}\nnumber = {shard}\n{}", data.to_str().unwrap(), self.shard_config);
        start(&self.dir, "shard", &name, &config, &self.shard_addresses[shard][replica], &self.metrics[&name])
    }

    /// Starts one more shard process, which the router does not know of yet (for AddShard);
    /// returns its address.
    pub fn start_unlisted_shard(&mut self) -> String {
        let s = self.shard_addresses.len();
        self.shard_addresses.push(vec![free_address()]);
        self.metrics.insert(format!("shard-{s}-0"), free_address());
        let node = self.start_shard(s, 0);
        self.shards.push(vec![Some(node)]);
        self.shard_addresses[s][0].clone()
    }

    /// Starts a new, empty replica process for shard `shard` that the cluster state does not
    /// list yet (for `jacolbert replica add`); returns its address.
    pub fn start_extra_replica(&mut self, shard: usize) -> String {
        let r = self.shard_addresses[shard].len();
        self.shard_addresses[shard].push(free_address());
        self.metrics.insert(format!("shard-{shard}-{r}"), free_address());
        let node = self.start_shard(shard, r);
        self.shards[shard].push(Some(node));
        self.shard_addresses[shard][r].clone()
    }

    pub async fn client(&self) -> SearchClient<Channel> {
        SearchClient::connect(format!("http://{}", self.router)).await.unwrap()
    }
}

/// Encoder `e`'s name, for its config file and its metrics: "encoder", then "encoder-1", ….
fn encoder_name(e: usize) -> String {
    match e {
        0 => "encoder".into(),
        e => format!("encoder-{e}"),
    }
}

/// An etcd server (Debian's `etcd-server`) on loopback ports with its data under a folder,
/// killed when dropped; it can be killed and restarted on the same data and ports.
pub struct Etcd {
    pub client: String,
    peer: String,
    dir: PathBuf,
    node: Option<Node>,
}

impl Etcd {
    pub fn start(dir: &Path) -> Etcd {
        let mut etcd = Etcd { client: free_address(), peer: free_address(), dir: dir.join("etcd"), node: None };
        etcd.restart();
        etcd
    }

    /// The `--cluster-store` URL of a cluster under `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.client)
    }

    pub fn kill(&mut self) {
        self.node = None;
    }

    /// Starts etcd (again) and waits until it answers its health check.
    pub fn restart(&mut self) {
        let (client, peer) = (format!("http://{}", self.client), format!("http://{}", self.peer));
        let mut command = Command::new("etcd");
        command
            .args(["--name", "test", "--data-dir", self.dir.to_str().unwrap()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}"), "--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|e| panic!("starting etcd (apt-get install etcd-server): {e}"));
        let mut node = Node(child);
        wait_ready(&mut node, &self.client);
        let start = Instant::now();
        while !self.healthy() {
            assert!(start.elapsed() < Duration::from_secs(30), "etcd at {} never became healthy", self.client);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.node = Some(node);
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(&self.client) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.contains("\"health\":\"true\"")
    }
}

/// `jacolbert cluster status --json` of `store`.
pub fn cluster_status(store: &str) -> serde_json::Value {
    let out = jacolbert().args(["cluster", "status", "--json", "--cluster-store", store]).output().unwrap();
    assert!(out.status.success(), "cluster status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The text a metrics endpoint serves.
pub fn scrape(address: &str) -> String {
    let (status, text) = http(address, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of one sample (`name{labels}` exactly as written) in a scrape, 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// The router's `[auth]` table of the key tests: one read-write and one read-only key.
pub const KEYS: &str = "[auth]\nread_write_keys = [\"rw-secret\"]\nread_only_keys = [\"ro-secret\"]\n";

/// `message` with `authorization: Bearer KEY`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

pub fn request(query: &str, k: u32, allow_partial: Option<bool>) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        k,
        filter_ids: vec![],
        params: None,
        allow_partial,
        include: None,
        filter: None,
        explain: false,
    }
}

/// `n` short Japanese documents `d0`, `d1`, … that share words in a pattern.
pub fn documents(n: usize) -> Vec<Document> {
    const WORDS: [&str; 12] =
        ["富士山", "東京都", "梅雨", "寿司", "新幹線", "京都", "北海道", "将棋", "桜", "沖縄", "相撲", "俳句"];
    (0..n)
        .map(|i| Document {
            id: format!("d{i}"),
            text: format!("{}は日本の{}である。番号{i}", WORDS[i % 12], WORDS[(i / 12) % 12]),
            metadata: String::new(),
        })
        .collect()
}

/// The hits as (id, score) pairs, for comparing answers.
pub fn ids(hits: &[proto::v1::Hit]) -> Vec<(String, f32)> {
    hits.iter().map(|h| (h.id.clone(), h.score)).collect()
}

/// Starts `jacolbert local` (tiny-lexical, `shards` shards) on `dir`, its log in `dir/local.log`;
/// returns it and the router's address.
pub fn local(dir: &Path, shards: usize) -> (Node, String) {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("local.log")).unwrap();
    let mut c = jacolbert();
    c.env("RUST_LOG", "info").args(["local", "--shards", &shards.to_string(), "--listen", "127.0.0.1:0", "--model"]);
    c.arg(fixtures().join("models/tiny-lexical")).arg("--data-dir").arg(dir);
    let mut node = Node(c.stdout(Stdio::piped()).stderr(log).spawn().unwrap());
    let stdout = std::io::BufReader::new(node.0.stdout.take().unwrap());
    let line =
        std::io::BufRead::lines(stdout).map(Result::unwrap).find(|l| l.starts_with("router listening on ")).unwrap();
    (node, line.trim_start_matches("router listening on ").to_string())
}

/// One HTTP/1.1 request (`Connection: close`): the status and the body. `headers` are
/// `name: value` lines.
pub fn http(address: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for h in headers {
        head += &format!("{h}\r\n");
    }
    head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // Small answers come whole (Content-Length); a chunked one is unchunked here.
    let body = match head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        false => body.to_string(),
        true => unchunk(body),
    };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out += &rest[..size];
        body = &rest[size + 2..];
    }
    out
}

/// `http` with a JSON body and answer.
pub fn post(address: &str, path: &str, key: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let auth = key.map(|k| format!("authorization: Bearer {k}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (status, text) = http(address, "POST", path, &headers, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered {status} {text:?}: {e}")))
}

/// Waits (up to 30 s) until something accepts connections on `address`.
pub fn wait_listening(address: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
