//! Cluster state from the command line: `jacolbert cluster init` (write the first shard map into
//! a store), `jacolbert cluster status` (what the store holds), `jacolbert replica add|remove`
//! (a shard's replicas), and `jacolbert rebalance` (add or drain a shard while the cluster
//! serves, through a router or as a process of its own).

use std::sync::Arc;

use anyhow::Context;
use router::rebalance::{Done, MoveRequest, Mover};
use router::state::{ClusterState, ClusterStore, MoveKind, Phase};
use serde_json::json;

use crate::connection::Connection;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a new cluster's shard map and encoders into an empty cluster store.
    Init(InitArgs),
    /// Print the shards, their replicas' states and repairs, the move under way and the epoch.
    Status(StatusArgs),
}

#[derive(clap::Subcommand)]
pub enum ReplicaCommand {
    /// Add an empty replica to a shard: it takes writes at once, and serves reads once a
    /// router has repaired it from a replica in sync (the way to replace a lost node).
    Add(ReplicaArgs),
    /// Drop a replica from a shard: it takes no more reads or writes.
    Remove(ReplicaArgs),
}

#[derive(clap::Args)]
pub struct ReplicaArgs {
    #[command(flatten)]
    store: Store,
    /// The shard's number (as `cluster status` lists them).
    #[arg(long)]
    shard: usize,
    /// The replica's address (host:port).
    address: String,
}

pub fn replica(command: ReplicaCommand) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let (args, adding) = match &command {
            ReplicaCommand::Add(args) => (args, true),
            ReplicaCommand::Remove(args) => (args, false),
        };
        let store = args.store.open().await?;
        let state = match adding {
            true => router::state::replica::add(store.as_ref(), args.shard, &args.address).await?,
            false => router::state::replica::remove(store.as_ref(), args.shard, &args.address).await?,
        };
        let what = if adding { "added (joining until repaired)" } else { "removed" };
        println!("shard {}: replica {} {what}; epoch {}", args.shard, args.address, state.epoch);
        Ok(())
    })
}

#[derive(clap::Args)]
pub struct Store {
    /// Where cluster state lives: etcd://HOST:PORT[,HOST:PORT…]/PREFIX, or file:///PATH.
    #[arg(long, env = "JACOLBERT_CLUSTER_STORE")]
    cluster_store: String,
}

impl Store {
    async fn open(&self) -> anyhow::Result<Arc<dyn ClusterStore>> {
        Ok(router::state::open(&self.cluster_store).await?)
    }
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    store: Store,
    /// An encoder's address (repeat for several).
    #[arg(long = "encoder", required = true)]
    encoders: Vec<String>,
    /// One shard: its replicas' addresses, comma-separated (repeat once per shard, in order).
    #[arg(long = "shard", required = true)]
    shards: Vec<String>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    store: Store,
    /// One JSON object: epoch, shards (number, replicas with address and state), move.
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        match command {
            Command::Init(args) => init(args).await,
            Command::Status(args) => status(args).await,
        }
    })
}

async fn init(args: InitArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let shards: Vec<Vec<String>> = args.shards.iter().map(|s| crate::config::replica_list(s)).collect();
    let state = ClusterState::new(args.encoders, &shards);
    if !store.replace(None, &state, None).await? {
        let now = store.load().await?.map(|s| format!(" (epoch {}, {} shards)", s.epoch, s.shards.len()));
        anyhow::bail!(
            "the cluster store {} is initialised already{}: `jacolbert cluster status` shows it, and \
             `jacolbert rebalance` changes its shards",
            store.describe(),
            now.unwrap_or_default()
        );
    }
    println!("initialised {} with {} shards (epoch {})", store.describe(), state.shards.len(), state.epoch);
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let state = store.load().await?.with_context(|| {
        format!("the cluster store {} holds no cluster: run `jacolbert cluster init` first", store.describe())
    })?;
    let routers = store.acks().await?;
    let repairs = store.reports().await?;
    let status = report(&state, &routers, &repairs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!("epoch {}; encoders {}", state.epoch, state.encoders.join(", "));
    for shard in status["shards"].as_array().into_iter().flatten() {
        println!("shard {}:", shard["number"]);
        for r in shard["replicas"].as_array().into_iter().flatten() {
            let mut line = format!("  {} {}", r["address"].as_str().unwrap_or(""), r["state"].as_str().unwrap_or(""));
            if let Some(s) = r["out_of_sync_s"].as_u64() {
                line += &format!(", out of sync for {s} s");
            }
            if let Some(p) = r.get("repair") {
                line += &format!(
                    ", repair pass {} from {}: {} ids compared, {} copied",
                    p["pass"], p["from"], p["walked"], p["copied"]
                );
            }
            println!("{line}");
        }
    }
    match move_report(&state) {
        serde_json::Value::Null => println!("no move under way"),
        m => println!("move: {m}"),
    }
    for (router, epoch) in routers {
        println!("router {router}: at epoch {epoch}");
    }
    Ok(())
}

/// The `--json` object of `cluster status`: with each replica its state, its store, how long it
/// has been out of sync, and the progress of its repair (`repairs`: what repairers report).
fn report(state: &ClusterState, routers: &[(String, u64)], repairs: &[(String, String)]) -> serde_json::Value {
    let now = router::state::now_ms();
    let shards: Vec<serde_json::Value> = state
        .shards
        .iter()
        .enumerate()
        .map(|(number, shard)| {
            let replicas: Vec<serde_json::Value> = shard
                .replicas
                .iter()
                .map(|r| {
                    let mut replica = json!({"address": r.address, "state": r.state.name(), "store": r.store});
                    if let Some(since) = r.since_ms {
                        replica["out_of_sync_s"] = json!(now.saturating_sub(since) / 1000);
                    }
                    let key = format!("{}/{}", shard.id, r.address);
                    let progress =
                        repairs.iter().find(|(k, _)| *k == key).and_then(|(_, v)| serde_json::from_str(v).ok());
                    if let Some(progress) = progress {
                        replica["repair"] = progress;
                    }
                    replica
                })
                .collect();
            json!({"number": number, "id": shard.id, "replicas": replicas})
        })
        .collect();
    let routers: Vec<serde_json::Value> = routers.iter().map(|(r, e)| json!({"name": r, "epoch": e})).collect();
    json!({
        "epoch": state.epoch,
        "encoders": state.encoders,
        "shards": shards,
        "move": move_report(state),
        "routers": routers,
    })
}

fn move_report(state: &ClusterState) -> serde_json::Value {
    let Some(m) = &state.moving else { return serde_json::Value::Null };
    let (kind, shard) = match m.kind {
        MoveKind::Add { shard } => ("add", shard),
        MoveKind::Remove { shard } => ("remove", shard),
    };
    let phase = match &m.phase {
        Phase::Starting => "starting",
        Phase::Walking => "walking",
        Phase::Fenced { .. } => "fenced",
        Phase::Copied { .. } => "copied",
    };
    json!({"kind": kind, "shard_id": shard, "source": m.source, "sources": m.from.len(),
           "after": m.after, "phase": phase, "moved": m.moved})
}

#[derive(clap::Args)]
pub struct RebalanceArgs {
    /// Run the move in this process against the cluster store (any router resumes it should
    /// this process die); without it, the router at --router runs it.
    #[arg(long, env = "JACOLBERT_CLUSTER_STORE")]
    cluster_store: Option<String>,
    /// The router (without --cluster-store), and TLS for it or, with --cluster-store, for the
    /// shards.
    #[command(flatten)]
    to: Connection,
    /// Add a shard: its replicas' addresses, comma-separated (running and empty).
    #[arg(long, conflicts_with_all = ["remove_shard", "resume"])]
    add_shard: Option<String>,
    /// Drain the shard at this position into the others, then drop it (the last shard takes
    /// its position).
    #[arg(long, conflicts_with = "resume")]
    remove_shard: Option<u32>,
    /// Finish the move under way (with --cluster-store).
    #[arg(long, requires = "cluster_store")]
    resume: bool,
}

/// `jacolbert rebalance`: waits for the move to end, printing what it did.
pub fn rebalance(args: RebalanceArgs) -> anyhow::Result<()> {
    let request = match (&args.add_shard, args.remove_shard, args.resume) {
        (Some(replicas), _, _) => MoveRequest::Add(crate::config::replica_list(replicas)),
        (None, Some(shard), _) => MoveRequest::Remove(shard as usize),
        (None, None, true) => MoveRequest::Resume,
        (None, None, false) => {
            anyhow::bail!("say what to move: --add-shard ADDR[,ADDR…], --remove-shard N or --resume")
        }
    };
    tokio::runtime::Runtime::new()?.block_on(async {
        let done = match &args.cluster_store {
            Some(url) => {
                let store = router::state::open(url).await?;
                let owner = format!("rebalance-{}", std::process::id());
                let mover = Mover { store, owner, tls: args.to.tls()? };
                eprintln!("{request:?}: moving documents (progress in the log)");
                mover.run_when_free(request.clone()).await?
            }
            None => through_router(&args.to, &request).await?,
        };
        match request {
            MoveRequest::Remove(shard) => {
                println!("removed shard {shard}; {} shards; moved {} documents", done.shards, done.moved)
            }
            _ => println!("added shard {} of {}; moved {} documents", done.shard, done.shards, done.moved),
        }
        Ok(())
    })
}

async fn through_router(to: &Connection, request: &MoveRequest) -> anyhow::Result<Done> {
    let mut admin = to.admin().await?;
    let failed = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    let done = match request {
        MoveRequest::Add(replicas) => admin
            .add_shard(proto::v1::AddShardRequest { replicas: replicas.clone() })
            .await
            .map_err(failed)?
            .into_inner(),
        MoveRequest::Remove(shard) => admin
            .remove_shard(proto::v1::RemoveShardRequest { shard: *shard as u32 })
            .await
            .map_err(failed)?
            .into_inner(),
        MoveRequest::Resume => anyhow::bail!("--resume needs --cluster-store"),
    };
    Ok(Done { shard: done.shard, shards: done.shards, moved: done.moved })
}

#[derive(clap::Args)]
pub struct RetrainArgs {
    /// The router, and TLS and a key for it.
    #[command(flatten)]
    to: Connection,
    /// Only this shard (its id, as `jacolbert cluster status` shows it); every shard without.
    #[arg(long)]
    shard: Option<u64>,
}

/// `jacolbert retrain`: starts a background retraining on each replica; prints what each said.
/// Progress is in the shards' logs and `ShardStats` (`retraining`, `codec_generation`).
pub fn retrain(args: RetrainArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut admin = args.to.admin().await?;
        let request = proto::v1::RetrainShardsRequest { shard: args.shard };
        let answer = admin.retrain(request).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
        let mut failed = 0;
        for r in answer.into_inner().replicas {
            let said = match (r.error.is_empty(), r.started) {
                (false, _) => {
                    failed += 1;
                    format!("not asked: {}", r.error)
                }
                (true, true) => "retraining started".into(),
                (true, false) => "already retraining".into(),
            };
            println!("shard {} at {}: {said}", r.shard, r.address);
        }
        anyhow::ensure!(failed == 0, "{failed} replicas could not be asked");
        Ok(())
    })
}
