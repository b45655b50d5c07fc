//! `jacolbert`: the one binary. Each subcommand lives in its own module; this file only parses
//! the command line and sets up logging.

mod bench_encoder;
mod bench_tokenizer;
mod certs;
mod client;
mod cluster;
mod config;
mod connection;
mod encode;
mod eval_jsquad;
mod http;
mod jsquad;
mod limits;
mod local;
mod metrics;
mod model_args;
mod roles;
mod search;
mod shard_bench;
mod telemetry;
mod tls;
mod tokenize;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "jacolbert", version, about = "Japanese ColBERT (JaColBERT) retrieval cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tokenize texts from stdin (one per line) and print one JSON object per line.
    Tokenize(tokenize::Args),
    /// Encode queries and/or documents into ColBERT vectors (a safetensors file).
    Encode(encode::Args),
    /// Exact (exhaustive MaxSim) JSQuAD retrieval quality of a checkpoint: R@1/5/10.
    EvalJsquad(eval_jsquad::Args),
    /// Measure CPU encoder forward-pass speed on fixed shapes.
    BenchEncoder(bench_encoder::Args),
    /// Measure tokenizer throughput on the JSQuAD paragraphs.
    BenchTokenizer(bench_tokenizer::Args),
    /// Build a shard index from synthetic clustered vectors, search it, print one JSON object.
    ShardBench(shard_bench::Args),
    /// Run a whole cluster in this process: router, one encoder, N shards on loopback ports.
    Local(local::Args),
    /// Run an encoder node.
    Encoder(roles::EncoderArgs),
    /// Run a shard node.
    Shard(roles::ShardArgs),
    /// Run the router (the public Search service).
    Router(roles::RouterArgs),
    /// Send documents from a JSON-lines file to a running router.
    Index(client::IndexArgs),
    /// Search through a running router.
    Search(search::SearchArgs),
    /// Concurrent searches against a running router: QPS, latency percentiles, errors.
    Bench(client::BenchArgs),
    /// Make a development CA and a node certificate for TLS between nodes.
    Certs(certs::Args),
    /// Add a shard to a running cluster, or drain one out of it, moving documents while it
    /// serves.
    Rebalance(cluster::RebalanceArgs),
    /// Initialise a cluster store, or show what it holds.
    Cluster {
        #[command(subcommand)]
        command: cluster::Command,
    },
    /// Retrain the shards' codecs now, in the background (they also retrain by themselves as
    /// they grow): each replica serves on its current codec until the new one takes over.
    Retrain(cluster::RetrainArgs),
    /// Add a replica to a shard, or remove one (through the cluster store).
    Replica {
        #[command(subcommand)]
        command: cluster::ReplicaCommand,
    },
}

/// Errors print as what went wrong, then each cause on its own line; a backtrace only with
/// `JACOLBERT_BACKTRACE=1` (not with `RUST_BACKTRACE`, which users set for other programs).
fn main() -> std::process::ExitCode {
    let backtrace = std::env::var_os("JACOLBERT_BACKTRACE").is_some_and(|v| v != "0");
    if backtrace {
        // Before any thread or error exists: anyhow reads this when it makes an error.
        std::env::set_var("RUST_LIB_BACKTRACE", "1");
    } else {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e, backtrace));
            std::process::ExitCode::FAILURE
        }
    }
}

fn report(e: &anyhow::Error, backtrace: bool) -> String {
    let mut text = format!("error: {e}");
    for cause in e.chain().skip(1) {
        text.push_str(&format!("\n  because: {cause}"));
    }
    if backtrace {
        text.push_str(&format!("\n\n{}", e.backtrace()));
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let role = match &cli.command {
        Command::Local(_) => "local",
        Command::Encoder(_) => "encoder",
        Command::Shard(_) => "shard",
        Command::Router(_) => "router",
        _ => "jacolbert",
    };
    let _telemetry = telemetry::init(role)?;
    match cli.command {
        Command::Tokenize(args) => tokenize::run(args),
        Command::Encode(args) => encode::run(args),
        Command::EvalJsquad(args) => eval_jsquad::run(args),
        Command::BenchEncoder(args) => bench_encoder::run(args),
        Command::BenchTokenizer(args) => bench_tokenizer::run(args),
        Command::ShardBench(args) => shard_bench::run(args),
        Command::Local(args) => local::run(args),
        Command::Encoder(args) => roles::encoder(args),
        Command::Shard(args) => roles::shard(args),
        Command::Router(args) => roles::router(args),
        Command::Index(args) => client::index(args),
        Command::Search(args) => search::search(args),
        Command::Bench(args) => client::bench(args),
        Command::Rebalance(args) => cluster::rebalance(args),
        Command::Retrain(args) => cluster::retrain(args),
        Command::Cluster { command } => cluster::run(command),
        Command::Replica { command } => cluster::replica(command),
        Command::Certs(args) => certs::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` describes every flag and argument of every command.
    #[test]
    fn every_flag_is_described() {
        fn walk(command: &clap::Command, path: &str, undescribed: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    undescribed.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), undescribed);
            }
        }
        let mut undescribed = Vec::new();
        walk(&super::Cli::command(), "jacolbert", &mut undescribed);
        assert!(undescribed.is_empty(), "no help text: {undescribed:?}");
    }

    #[test]
    fn an_error_reads_as_what_then_why_with_no_backtrace_unless_asked() {
        let e = anyhow::anyhow!("disk on fire").context("cannot open the store");
        assert_eq!(super::report(&e, false), "error: cannot open the store\n  because: disk on fire");
    }
}
