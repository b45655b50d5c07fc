//! `jacolbert local`: the whole cluster in one process (one encoder, N shards, the router),
//! each on its own loopback port and talking real gRPC, with the shards' data under one
//! directory; it survives restarts with its data.

use std::path::PathBuf;
use std::sync::Arc;

use encoder_node::model::EncodeOptions;
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

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!((1..=64).contains(&args.shards), "--shards must be 1 to 64");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let model = Arc::new(args.model.load(EncodeOptions::default())?);
        let dim = model.dim();
        let encoder = serve(encoder_routes(model), ENCODER, args.port + 1).await?;
        let mut shards = Vec::new();
        for s in 0..args.shards {
            let config = ShardConfig { dim, train_tokens: args.train_tokens, ..Default::default() };
            let shard = open_shard(args.data_dir.join(format!("shard-{s}")), config).await?;
            shards.push(vec![serve(shard_routes(shard, s as u32, dim), SHARD, args.port + 2 + s as u16).await?]);
        }
        let router = Router::new(std::slice::from_ref(&encoder), &shards, RouterConfig::default())?;
        let address = serve(Routes::new(SearchServer::new(router)), SEARCH, args.port).await?;
        tracing::info!(router = %address, encoder = %encoder, shards = ?shards, data = %args.data_dir.display(), "jacolbert local is up");
        println!("router listening on {address}");
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        Ok(())
    })
}
