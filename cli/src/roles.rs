//! One node per process: `jacolbert encoder`, `jacolbert shard`, `jacolbert router`, each
//! serving its gRPC service on 127.0.0.1 until Ctrl-C (`jacolbert local` runs all of them in
//! one process).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use encoder_node::model::EncodeOptions;
use encoder_node::service::{BatchConfig, EncoderService};
use proto::v1::encoder_server::EncoderServer;
use proto::v1::search_server::SearchServer;
use proto::v1::shard_server::ShardServer;
use router::{Router, RouterConfig};
use shard_node::service::ShardService;
use shard_node::shard::{Shard, ShardConfig};
use tonic::service::Routes;
use tonic::transport::Server;

use crate::model_args::ModelArgs;

/// The gRPC service names the health service reports.
pub const ENCODER: &str = "jacolbert.v1.Encoder";
pub const SHARD: &str = "jacolbert.v1.Shard";
pub const SEARCH: &str = "jacolbert.v1.Search";

/// Most bytes one message may carry (a batch of encoded documents).
const MAX_MESSAGE: usize = 256 << 20;

/// Serves `routes` on 127.0.0.1:`port` in the background, with the standard gRPC health
/// service (reporting `service` as serving) and server reflection; returns the address.
pub async fn serve(routes: Routes, service: &str, port: u16) -> anyhow::Result<String> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status(service, tonic_health::ServingStatus::Serving).await;
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = routes.add_service(health_service).add_service(reflection);
    let address = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("binding {address}"))?;
    // Small request/response messages: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    tokio::spawn(async move {
        if let Err(e) = Server::builder().add_routes(routes).serve_with_incoming(incoming).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(address)
}

pub fn encoder_routes(model: Arc<encoder_node::model::ColbertModel>) -> Routes {
    Routes::new(
        EncoderServer::new(EncoderService::start(model, BatchConfig::default())).max_encoding_message_size(MAX_MESSAGE),
    )
}

pub fn shard_routes(shard: Shard, number: u32, dim: usize) -> Routes {
    Routes::new(ShardServer::new(ShardService::new(shard, number, dim)).max_decoding_message_size(MAX_MESSAGE))
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

#[derive(clap::Args)]
pub struct EncoderArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value_t = 50052)]
    port: u16,
}

pub fn encoder(args: EncoderArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let model = Arc::new(args.model.load(EncodeOptions::default())?);
        let address = serve(encoder_routes(model), ENCODER, args.port).await?;
        until_ctrl_c("encoder", &address).await
    })
}

#[derive(clap::Args)]
pub struct ShardArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 50053)]
    port: u16,
    /// Vector dimension (the model's).
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// This shard's number, reported in hits.
    #[arg(long, default_value_t = 0)]
    number: u32,
    #[arg(long, default_value_t = 100_000)]
    train_tokens: usize,
}

pub fn shard(args: ShardArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let config = ShardConfig { dim: args.dim, train_tokens: args.train_tokens, ..Default::default() };
        let shard = open_shard(args.data_dir, config).await?;
        let address = serve(shard_routes(shard, args.number, args.dim), SHARD, args.port).await?;
        until_ctrl_c("shard", &address).await
    })
}

#[derive(clap::Args)]
pub struct RouterArgs {
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// An encoder's address (repeat for several).
    #[arg(long = "encoder", required = true)]
    encoders: Vec<String>,
    /// One shard: its replicas' addresses, comma-separated (repeat per shard, in order).
    #[arg(long = "shard", required = true)]
    shards: Vec<String>,
}

pub fn router(args: RouterArgs) -> anyhow::Result<()> {
    let shards: Vec<Vec<String>> =
        args.shards.iter().map(|s| s.split(',').map(|a| a.trim().to_string()).collect()).collect();
    tokio::runtime::Runtime::new()?.block_on(async {
        let router = Router::new(&args.encoders, &shards, RouterConfig::default())?;
        let address = serve(Routes::new(SearchServer::new(router)), SEARCH, args.port).await?;
        until_ctrl_c("router", &address).await
    })
}
