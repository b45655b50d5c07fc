//! `jacolbert local`: the whole cluster in one process (one encoder, N shards, the router),
//! each on its own loopback port and talking real gRPC, with the shards' data under one
//! directory; it survives restarts with its data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use encoder_node::model::{ColbertModel, EncodeOptions};
use proto::v1::search_server::SearchServer;
use router::{Router, RouterConfig};
use shard_node::shard::ShardConfig;
use tonic::service::Routes;

use crate::model_args::ModelArgs;
use crate::roles::{encoder_routes, open_shard, serve, shard_routes, ENCODER, SEARCH, SHARD};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Where the shards keep their data (one sub-directory each).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// The router's port on 127.0.0.1 (the nodes take the ports after it).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Tokens a shard buffers before it trains its codec.
    #[arg(long, default_value_t = 100_000)]
    train_tokens: usize,
}

/// Starts the nodes of a local cluster on `port` (router) and the ports after it; returns
/// the router's address. They run until the runtime stops.
pub async fn start(
    model: Arc<ColbertModel>,
    data_dir: &Path,
    shards: usize,
    port: u16,
    train_tokens: usize,
) -> anyhow::Result<String> {
    anyhow::ensure!((1..=64).contains(&shards), "--shards must be 1 to 64");
    let dim = model.dim();
    let encoder = serve(encoder_routes(model), ENCODER, port + 1).await?;
    let mut addresses = Vec::new();
    for s in 0..shards {
        let config = ShardConfig { dim, train_tokens, ..Default::default() };
        let shard = open_shard(data_dir.join(format!("shard-{s}")), config).await?;
        addresses.push(vec![serve(shard_routes(shard, s as u32, dim), SHARD, port + 2 + s as u16).await?]);
    }
    let router = Router::new(std::slice::from_ref(&encoder), &addresses, RouterConfig::default())?;
    let address = serve(Routes::new(SearchServer::new(router)), SEARCH, port).await?;
    tracing::info!(router = %address, encoder = %encoder, shards = ?addresses, data = %data_dir.display(), "local cluster is up");
    Ok(address)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        let model = Arc::new(args.model.load(EncodeOptions::default())?);
        let address = start(model, &args.data_dir, args.shards, args.port, args.train_tokens).await?;
        println!("router listening on {address}");
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        Ok(())
    })
}
