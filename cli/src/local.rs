//! `jacolbert local`: the whole cluster in one process (one encoder, N shards, the router),
//! each on its own loopback port and talking real gRPC, with the shards' data under one
//! directory; it survives restarts with its data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use encoder_node::model::{ColbertModel, EncodeOptions};
use router::Router;

use crate::config::{self, LocalFile, NODE_MESSAGE, ROUTER_MESSAGE};
use crate::metrics;
use crate::model_args::ModelArgs;
use crate::roles::{
    encoder_routes, open_shard, override_with, router_routes, serve, serve_metrics, shard_routes, Common, ENCODER,
    SEARCH, SHARD,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Model directory, or a Hugging Face id present in the local HF cache.
    #[arg(long, env = "JACOLBERT_MODEL")]
    model: Option<String>,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    mecab_dic: Option<PathBuf>,
    /// Where the shards keep their data (one sub-directory each).
    #[arg(long, env = "JACOLBERT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    shards: Option<usize>,
    /// Where the encoder runs (forward pass and Score's MaxSim): auto, cpu or cuda:N.
    #[arg(long, env = "JACOLBERT_DEVICE")]
    device: Option<String>,
    /// Tokens a shard keeps exact before it trains its codec.
    #[arg(long)]
    train_tokens: Option<usize>,
}

/// Starts the nodes of a local cluster: the router on `config.listen`, the encoder and the
/// shards on the ports after it (on any free ports when its port is 0); returns the router's
/// address. They run until the runtime stops.
pub async fn start(model: Arc<ColbertModel>, config: &LocalFile) -> anyhow::Result<String> {
    anyhow::ensure!((1..=64).contains(&config.shards), "shards must be 1 to 64, not {}", config.shards);
    let listen: SocketAddr = config.listen.parse().with_context(|| format!("listen address {:?}", config.listen))?;
    // The nodes after the router take the ports after its; with port 0, each takes any free one.
    // At most 64 shards (checked above), so the count fits a port number.
    let nodes = config.shards as u16 + 1;
    let room = listen.port().checked_add(nodes).is_some();
    anyhow::ensure!(room, "listen port {} leaves no room for the {nodes} nodes after it", listen.port());
    let next =
        |i: u16| SocketAddr::new(listen.ip(), if listen.port() == 0 { 0 } else { listen.port() + i }).to_string();
    let dim = model.dim();
    let (routes, encoder_metrics) = encoder_routes(model, config.batching, NODE_MESSAGE);
    let encoder = serve(routes, ENCODER, &next(1), None, 0).await?;
    let (mut addresses, mut shards) = (Vec::new(), Vec::new());
    for s in 0..config.shards {
        let index = shard_node::shard::ShardConfig { dim, ..config.index.clone() };
        let shard = open_shard(config.data_dir.join(format!("shard-{s}")), index).await?;
        let (routes, service) = shard_routes(shard, s as u32, dim, NODE_MESSAGE);
        addresses.push(vec![serve(routes, SHARD, &next(2 + s as u16), None, 0).await?]);
        shards.push((s as u32, service));
    }
    let (routes, router_metrics) = router_routes(
        Router::new(std::slice::from_ref(&encoder), &addresses, config.limits.clone())?,
        Default::default(),
        ROUTER_MESSAGE,
    );
    let address = serve(routes, SEARCH, &config.listen, None, 0).await?;
    let extra = vec![router_metrics, encoder_metrics, metrics::shards(shards)];
    serve_metrics(config.metrics_addr.as_deref(), extra).await?;
    tracing::info!(router = %address, encoder = %encoder, shards = ?addresses, data = %config.data_dir.display(), "local cluster is up");
    Ok(address)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut file: LocalFile = config::load(args.common.config.as_deref())?;
    override_with(&mut file.listen, args.common.listen);
    file.metrics_addr = args.common.metrics_addr.or(file.metrics_addr);
    override_with(&mut file.data_dir, args.data_dir);
    override_with(&mut file.shards, args.shards);
    override_with(&mut file.device, args.device);
    override_with(&mut file.index.train_tokens, args.train_tokens);
    let model = ModelArgs {
        model: args.model.or(file.model.take()).context("no model: give --model or `model` in the config")?,
        mecab_dic: args.mecab_dic.or(file.mecab_dic.take()),
        device: file.device.clone(),
    };
    tokio::runtime::Runtime::new()?.block_on(async move {
        let model = Arc::new(model.load(EncodeOptions::default())?);
        let address = start(model, &file).await?;
        println!("router listening on {address}");
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        Ok(())
    })
}
