//! `jacolbert local`: the whole cluster in one process (one encoder, N shards, the router),
//! each on its own loopback port and talking real gRPC, with the shards' data under one
//! directory; it survives restarts with its data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use encoder_node::model::{ColbertModel, EncodeOptions};
use router::state::{ClusterState, ClusterStore, FileStore};
use router::Router;

use crate::config::{self, LocalFile, NODE_MESSAGE, ROUTER_MESSAGE};
use crate::metrics;
use crate::model_args::ModelArgs;
use crate::roles::{
    encoder_routes, open_shard, override_with, router_routes, serve, serve_metrics, shard_routes, Common, HttpPort,
    ENCODER, ROUTER, SHARD,
};

#[derive(clap::Args)]
#[command(mut_arg("listen", |a| a.help(
    "The router's address [default: 127.0.0.1:50051]; the encoder and the shards listen on the ports \
     after it (port 0: any free ports)"
)))]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Model directory, or a Hugging Face id present in the local HF cache.
    #[arg(long, env = "JACOLBERT_MODEL")]
    model: Option<String>,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    mecab_dic: Option<PathBuf>,
    /// Where the cluster keeps its state and the shards their data (one sub-directory each)
    /// [default: data, in the working directory].
    #[arg(long, env = "JACOLBERT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Shards of a new data directory [default: 2]; a data directory keeps the count it was
    /// made with.
    #[arg(long)]
    shards: Option<usize>,
    /// Where the encoder runs (forward pass and Score's MaxSim): auto, cpu or cuda:N.
    #[arg(long, env = "JACOLBERT_DEVICE")]
    device: Option<String>,
    /// Tokens a shard keeps exact before it trains its codec.
    #[arg(long)]
    train_tokens: Option<usize>,
    /// Also serve the HTTP/JSON API (POST /v1/<method>) and the web console (/) on this
    /// address (overrides `http_listen`) [default: off].
    #[arg(long, env = "JACOLBERT_HTTP_LISTEN")]
    http_listen: Option<String>,
}

/// Starts the nodes of a local cluster: the router on `config.listen`, the encoder and the
/// shards on the ports after it (on any free ports when its port is 0); returns the router's
/// address. They run until the runtime stops.
pub async fn start(model: Arc<ColbertModel>, config: &LocalFile) -> anyhow::Result<String> {
    let store = FileStore::open(&config.data_dir.join("cluster.json"))?;
    let stored = store.load().await?;
    let count = shard_count(&config.data_dir, stored.as_ref(), config.shards)?;
    anyhow::ensure!((1..=64).contains(&count), "shards must be 1 to 64, not {count}");
    let listen: SocketAddr = config.listen.parse().with_context(|| format!("listen address {:?}", config.listen))?;
    // The nodes after the router take the ports after its; with port 0, each takes any free one.
    // At most 64 shards (checked above), so the count fits a port number.
    let nodes = count as u16 + 1;
    let room = listen.port().checked_add(nodes).is_some();
    anyhow::ensure!(room, "listen port {} leaves no room for the {nodes} nodes after it", listen.port());
    let next =
        |i: u16| SocketAddr::new(listen.ip(), if listen.port() == 0 { 0 } else { listen.port() + i }).to_string();
    // The router's port is the one the user chose: a taken one is named before the nodes after
    // it try theirs.
    drop(std::net::TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen} (--listen): {e}. Is another `jacolbert local` or router running there? Stop \
             it, or choose another --listen"
        )
    })?);
    let taken = || {
        format!(
            "a local cluster's nodes listen on the {nodes} ports after --listen {listen}: choose another --listen, \
             or port 0 for any free ports"
        )
    };
    let dim = model.dim();
    let (routes, encoder_metrics) = encoder_routes(model, config.batching, NODE_MESSAGE);
    let encoder = serve(routes, ENCODER, &next(1), None, 0, None, None).await.with_context(taken)?;
    let (mut addresses, mut shards) = (Vec::new(), Vec::new());
    for s in 0..count {
        let index = shard_node::shard::ShardConfig { dim, ..config.index.clone() };
        let shard = open_shard(config.data_dir.join(format!("shard-{s}")), index).await?;
        let (routes, service) = shard_routes(shard, s as u32, dim, NODE_MESSAGE);
        let address = serve(routes, SHARD, &next(2 + s as u16), None, 0, Some(service.health()), None).await;
        addresses.push(vec![address.with_context(taken)?]);
        shards.push((s as u32, service));
    }
    // The nodes' addresses change from one start to the next (ports may be any free ones).
    let fresh = ClusterState::new(vec![encoder.clone()], &addresses);
    let next = match &stored {
        None => fresh,
        Some(state) => state.changed(|s| (s.encoders, s.shards) = (fresh.encoders, fresh.shards)),
    };
    anyhow::ensure!(store.replace(stored.as_ref(), &next, None).await?, "the cluster state changed while starting");
    let router = Router::start(Arc::new(store), config.limits.clone(), None).await?;
    let (routes, router_metrics) = router_routes(router, Default::default(), ROUTER_MESSAGE);
    let extra = vec![router_metrics, encoder_metrics, metrics::shards(shards)];
    let http = config.http_listen.as_deref().map(|listen| HttpPort {
        listen,
        tls: None,
        max_body: ROUTER_MESSAGE,
        metrics: extra.clone(),
    });
    let address = serve(routes, ROUTER, &config.listen, None, 0, None, http).await?;
    serve_metrics(config.metrics_addr.as_deref(), extra).await?;
    tracing::info!(router = %address, encoder = %encoder, shards = ?addresses, data = %config.data_dir.display(), "local cluster is up");
    Ok(address)
}

/// The shards of this data directory: what its cluster state (or, from before there was one, its
/// shard folders) says, which a different `requested` count may not change.
fn shard_count(dir: &Path, stored: Option<&ClusterState>, requested: Option<usize>) -> anyhow::Result<usize> {
    let folders = (0..).take_while(|s| dir.join(format!("shard-{s}")).is_dir()).count();
    let (existing, from) = match stored {
        Some(state) => {
            let local = state.moving.is_none()
                && state.shards.iter().enumerate().all(|(i, s)| s.id == i as u64 && s.replicas.len() == 1);
            anyhow::ensure!(
                local,
                "the cluster state in {} is not a local cluster's (a shard was added or removed through \
                 `jacolbert rebalance`): run its nodes as separate processes (README, \"Scaling out\")",
                dir.join("cluster.json").display()
            );
            (state.shards.len(), "cluster.json")
        }
        None if folders > 0 => (folders, "shard folders"),
        None => return Ok(requested.unwrap_or(2)),
    };
    match requested {
        Some(n) if n != existing => anyhow::bail!(
            "the data directory {} holds a cluster of {existing} shards (its {from}), not {n}: start it with \
             --shards {existing} or without --shards, or use a new --data-dir. A cluster changes its number \
             of shards while it serves through `jacolbert rebalance` with its nodes as separate processes \
             (README, \"Scaling out\")",
            dir.display()
        ),
        _ => Ok(existing),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut file: LocalFile = config::load(args.common.config.as_deref())?;
    override_with(&mut file.listen, args.common.listen);
    file.metrics_addr = args.common.metrics_addr.or(file.metrics_addr);
    override_with(&mut file.data_dir, args.data_dir);
    file.shards = args.shards.or(file.shards);
    override_with(&mut file.device, args.device);
    override_with(&mut file.index.train_tokens, args.train_tokens);
    override_with(&mut file.http_listen, args.http_listen.map(Some));
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
