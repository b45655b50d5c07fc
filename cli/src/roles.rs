//! One node per process: `jacolbert encoder`, `jacolbert shard`, `jacolbert router`, each
//! serving its gRPC service until Ctrl-C (`jacolbert local` runs all of them in one process),
//! configured by a TOML file (`config.rs`) and flags.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use encoder_node::model::EncodeOptions;
use encoder_node::service::{BatchConfig, EncoderService};
use proto::v1::admin_server::AdminServer;
use proto::v1::encoder_server::EncoderServer;
use proto::v1::search_server::SearchServer;
use proto::v1::shard_server::ShardServer;
use router::Router;
use shard_node::service::ShardService;
use shard_node::shard::{Shard, ShardConfig};
use tonic::service::Routes;
use tonic::transport::{Server, ServerTlsConfig};

use crate::config::{self, EncoderFile, RouterFile, ShardFile};
use crate::metrics;
use crate::model_args::ModelArgs;

/// The gRPC services each kind of node serves: its health service reports them and its
/// reflection lists them (with the health and reflection services), and nothing else.
pub const ENCODER: &[&str] = &["jacolbert.v1.Encoder"];
pub const SHARD: &[&str] = &["jacolbert.v1.Shard"];
pub const ROUTER: &[&str] = &["jacolbert.v1.Search", "jacolbert.v1.Admin"];
const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: [&str; 2] = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// The router's HTTP port, when it has one (`http_listen`).
pub struct HttpPort<'a> {
    pub listen: &'a str,
    pub tls: Option<&'a config::TlsFile>,
    pub max_body: usize,
    pub metrics: Vec<metrics::Extra>,
}

/// Serves `routes` on `address` in the background (over TLS when `tls` is given), with the
/// standard gRPC health service (reporting `services` as serving, or as `healthy` says when
/// given) and server reflection (v1, and v1alpha for the tools still on it); returns the address.
/// With `http`, the same services with the same layers on an HTTP port too (`crate::http`).
pub async fn serve(
    routes: Routes,
    services: &'static [&'static str],
    address: &str,
    tls: Option<ServerTlsConfig>,
    max_requests_per_second: u32,
    healthy: Option<tokio::sync::watch::Receiver<bool>>,
    http: Option<HttpPort<'_>>,
) -> anyhow::Result<String> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let report = move |status| {
        let health = health.clone();
        async move {
            for service in services.iter().chain([&""]) {
                health.set_service_status(*service, status).await;
            }
        }
    };
    report(tonic_health::ServingStatus::Serving).await;
    if let Some(mut healthy) = healthy {
        tokio::spawn(async move {
            loop {
                let status = match *healthy.borrow_and_update() {
                    true => tonic_health::ServingStatus::Serving,
                    false => tonic_health::ServingStatus::NotServing,
                };
                report(status).await;
                if healthy.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let listed = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        services.iter().copied().chain([HEALTH]).chain(REFLECTION).fold(builder, |b, name| b.with_service_name(name))
    };
    let mut routes =
        routes.add_service(health_service).add_service(listed().build_v1()?).add_service(listed().build_v1alpha()?);
    // A call to a service served elsewhere (Search on an encoder's port, say) says so.
    let serves = services.join(" and ");
    let elsewhere = move |uri: tonic::codegen::http::Uri| {
        let method = uri.path().trim_start_matches('/').to_string();
        let status = tonic::Status::unimplemented(format!(
            "{method} is not served here: this node serves {serves} (searches and writes go to the router)"
        ));
        async move {
            let (parts, ()) = status.into_http::<()>().into_parts();
            tonic::codegen::http::Response::from_parts(parts, tonic::body::Body::empty())
        }
    };
    let routes = Routes::from(std::mem::take(routes.axum_router_mut()).fallback(elsewhere));
    let listener =
        tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
    let address = listener.local_addr()?.to_string();
    // Small request/response messages: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let limit = crate::limits::check(max_requests_per_second);
    if let Some(http) = http {
        let stack = tower::Layer::layer(&proto::gate::layer(limit.clone()), routes.clone());
        let stack = tower::Layer::layer(&crate::metrics::layer(), stack);
        let bound = crate::http::serve(http.listen, stack, http.tls, http.max_body, http.metrics).await?;
        println!("HTTP API and console on http{}://{bound}/", if http.tls.is_some() { "s" } else { "" });
    }
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    tokio::spawn(async move {
        if let Err(e) = server
            .trace_fn(proto::trace::server_span)
            .layer(crate::metrics::layer())
            .layer(proto::gate::layer(limit))
            .add_routes(routes)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(address)
}

/// The encoder's gRPC routes, and its metrics. `Score` runs MaxSim where the model runs.
pub fn encoder_routes(
    model: Arc<encoder_node::model::ColbertModel>,
    batching: BatchConfig,
    max_message: usize,
) -> (Routes, metrics::Extra) {
    let service = EncoderService::start(model, batching);
    let extra = metrics::encoder(service.metrics());
    let server =
        EncoderServer::new(service).max_encoding_message_size(max_message).max_decoding_message_size(max_message);
    (Routes::new(server), extra)
}

/// A shard's gRPC routes, and the service again (for its metrics).
pub fn shard_routes(shard: Shard, number: u32, dim: usize, max_message: usize) -> (Routes, ShardService) {
    let service = ShardService::new(shard, number, dim);
    let server =
        ShardServer::new(service.clone()).max_decoding_message_size(max_message).max_encoding_message_size(max_message);
    (Routes::new(server), service)
}

/// The router's gRPC routes, and its metrics.
pub fn router_routes(router: Router, auth: router::auth::AuthConfig, max_message: usize) -> (Routes, metrics::Extra) {
    let extra = metrics::router(router.counters());
    let router = Arc::new(router);
    let search = SearchServer::from_arc(router.clone())
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let search = tower::Layer::layer(&router::auth::layer(auth.clone()), search);
    let admin = tower::Layer::layer(&router::auth::layer(auth), AdminServer::from_arc(router));
    (Routes::new(search).add_service(admin), extra)
}

/// Serves the metrics endpoint when an address is configured.
pub async fn serve_metrics(address: Option<&str>, extra: Vec<metrics::Extra>) -> anyhow::Result<()> {
    if let Some(address) = address {
        let bound = metrics::serve(address, extra).await?;
        println!("metrics on http://{bound}/metrics");
    }
    Ok(())
}

/// Opens a shard's store off the async threads (rebuilding its index can take a while).
pub async fn open_shard(path: PathBuf, config: ShardConfig) -> anyhow::Result<Shard> {
    Ok(tokio::task::spawn_blocking(move || Shard::open(&path, config)).await??)
}

fn until_ctrl_c(what: &str, address: &str) -> impl std::future::Future<Output = anyhow::Result<()>> {
    println!("{what} listening on {address}");
    async {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

/// The flags every role takes.
#[derive(clap::Args)]
pub struct Common {
    /// TOML config (see deploy/config/); without one, the compiled-in defaults.
    #[arg(long, env = "JACOLBERT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding the config's `listen`.
    #[arg(long, env = "JACOLBERT_LISTEN")]
    pub listen: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (overrides the config's `metrics_addr`).
    #[arg(long, env = "JACOLBERT_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
}

#[derive(clap::Args)]
pub struct EncoderArgs {
    #[command(flatten)]
    common: Common,
    /// Model directory, or a Hugging Face id present in the local HF cache.
    #[arg(long, env = "JACOLBERT_MODEL")]
    model: Option<String>,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    mecab_dic: Option<PathBuf>,
    /// auto, cpu or cuda:N (see the config's `device`).
    #[arg(long, env = "JACOLBERT_DEVICE")]
    device: Option<String>,
}

pub fn encoder(args: EncoderArgs) -> anyhow::Result<()> {
    let mut file: EncoderFile = config::load(args.common.config.as_deref())?;
    override_with(&mut file.listen, args.common.listen);
    file.metrics_addr = args.common.metrics_addr.or(file.metrics_addr);
    file.model = args.model.or(file.model);
    file.mecab_dic = args.mecab_dic.or(file.mecab_dic);
    override_with(&mut file.device, args.device);
    file.profile.check("encoder", file.tls.as_ref(), true)?;
    let tls = file.tls.as_ref().map(crate::tls::server).transpose()?;
    let model = ModelArgs {
        model: file.model.context("no model: give --model or `model` in the config")?,
        mecab_dic: file.mecab_dic,
        device: file.device,
    };
    tokio::runtime::Runtime::new()?.block_on(async {
        let model = Arc::new(model.load(EncodeOptions::default())?);
        let (routes, extra) = encoder_routes(model, file.batching, file.max_message_bytes);
        let address = serve(routes, ENCODER, &file.listen, tls, file.max_requests_per_second, None, None).await?;
        serve_metrics(file.metrics_addr.as_deref(), vec![extra]).await?;
        until_ctrl_c("encoder", &address).await
    })
}

#[derive(clap::Args)]
pub struct ShardArgs {
    #[command(flatten)]
    common: Common,
    /// Where this shard keeps its store (overriding the config's `data_dir`); one process at a time.
    #[arg(long, env = "JACOLBERT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This shard's number, reported in hits.
    #[arg(long, env = "JACOLBERT_SHARD_NUMBER")]
    number: Option<u32>,
    /// Open a store that fails its consistency check read-only, serving the documents found
    /// whole (the log says how many were left out); writes are refused.
    #[arg(long)]
    salvage: bool,
}

pub fn shard(args: ShardArgs) -> anyhow::Result<()> {
    let mut file: ShardFile = config::load(args.common.config.as_deref())?;
    override_with(&mut file.listen, args.common.listen);
    file.metrics_addr = args.common.metrics_addr.or(file.metrics_addr);
    override_with(&mut file.data_dir, args.data_dir);
    override_with(&mut file.number, args.number);
    file.profile.check("shard", file.tls.as_ref(), true)?;
    let tls = file.tls.as_ref().map(crate::tls::server).transpose()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let dim = file.index.dim;
        let opened = match args.salvage {
            false => tokio::task::spawn_blocking(move || Shard::open(&file.data_dir, file.index)).await?,
            true => tokio::task::spawn_blocking(move || Shard::salvage(&file.data_dir, file.index)).await?,
        };
        let shard = match opened {
            Ok(shard) => shard,
            // A damaged store: stay up, NOT_SERVING, saying why on every call.
            Err(e @ shard_node::Error::Corrupt { .. }) => {
                tracing::error!(error = %e, "the store was refused; serving NOT_SERVING until it is replaced or salvaged");
                let refused = ShardServer::new(shard_node::refused::Refused { reason: e.to_string() });
                let (_, down) = tokio::sync::watch::channel(false);
                let address = serve(Routes::new(refused), SHARD, &file.listen, tls, 0, Some(down), None).await?;
                return until_ctrl_c("shard (store refused)", &address).await;
            }
            Err(e) => return Err(e.into()),
        };
        let (routes, service) = shard_routes(shard, file.number, dim, file.max_message_bytes);
        let health = Some(service.health());
        let address = serve(routes, SHARD, &file.listen, tls, file.max_requests_per_second, health, None).await?;
        serve_metrics(file.metrics_addr.as_deref(), vec![metrics::shards(vec![(file.number, service)])]).await?;
        until_ctrl_c("shard", &address).await
    })
}

#[derive(clap::Args)]
pub struct RouterArgs {
    #[command(flatten)]
    common: Common,
    /// An encoder's address (repeat for several); replaces the config's `encoders`.
    #[arg(long = "encoder")]
    encoders: Vec<String>,
    /// One shard: its replicas' addresses, comma-separated (repeat per shard, in order);
    /// replaces the config's `shards`.
    #[arg(long = "shard")]
    shards: Vec<String>,
    /// Where cluster state lives: etcd://HOST:PORT[,HOST:PORT…]/PREFIX or file:///PATH (then
    /// the config's encoders and shards are not used: `jacolbert cluster init` writes them).
    #[arg(long, env = "JACOLBERT_CLUSTER_STORE")]
    cluster_store: Option<String>,
    /// Also serve the HTTP/JSON API (POST /v1/<method>) and the web console (/) on this
    /// address, with the same keys, limits and TLS as gRPC (overrides `http_listen`) [default:
    /// off].
    #[arg(long, env = "JACOLBERT_HTTP_LISTEN")]
    http_listen: Option<String>,
}

pub fn router(args: RouterArgs) -> anyhow::Result<()> {
    let mut file: RouterFile = config::load(args.common.config.as_deref())?;
    override_with(&mut file.listen, args.common.listen);
    file.metrics_addr = args.common.metrics_addr.or(file.metrics_addr);
    if !args.encoders.is_empty() {
        file.encoders = args.encoders;
    }
    if !args.shards.is_empty() {
        file.shards = args.shards.iter().map(|s| config::ShardEntry { replicas: config::replica_list(s) }).collect();
    }
    override_with(&mut file.cluster_store, args.cluster_store.map(Some));
    override_with(&mut file.http_listen, args.http_listen.map(Some));
    let shards: Vec<Vec<String>> = file.shards.into_iter().map(|s| s.replicas).collect();
    file.profile.check("router", file.tls.as_ref(), file.auth.enabled())?;
    let server_tls = file.tls.as_ref().map(crate::tls::server).transpose()?;
    let client_tls = file.tls.as_ref().map(crate::tls::client).transpose()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let router = match &file.cluster_store {
            Some(url) => Router::start(router::state::open(url).await?, file.limits, client_tls).await?,
            None => Router::connect(&file.encoders, &shards, file.limits, client_tls).await?,
        };
        let (routes, extra) = router_routes(router, file.auth, file.max_message_bytes);
        let http = file.http_listen.as_deref().map(|listen| HttpPort {
            listen,
            tls: file.tls.as_ref(),
            max_body: file.max_message_bytes,
            metrics: vec![extra.clone()],
        });
        let address = serve(routes, ROUTER, &file.listen, server_tls, file.max_requests_per_second, None, http).await?;
        serve_metrics(file.metrics_addr.as_deref(), vec![extra]).await?;
        until_ctrl_c("router", &address).await
    })
}

/// A flag given on the command line (or its environment variable) wins over the file.
pub fn override_with<T>(value: &mut T, flag: Option<T>) {
    if let Some(flag) = flag {
        *value = flag;
    }
}
