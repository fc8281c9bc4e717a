//! The `vltava` command: `serve` (default) runs the broker; `topic` and `group` administer topics and consumer
//! groups, `producer` shows producer state and `txn` lists and describes transactions, on a running broker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use vltava::broker::Broker;
use vltava::cli::group::GroupCommand;
use vltava::cli::producer::ProducerCommand;
use vltava::cli::topic::TopicCommand;
use vltava::cli::txn::TxnCommand;
use vltava::config::{BrokerConfig, Overrides};

#[derive(Parser)]
#[command(name = "vltava", version, about = "A Kafka-wire-compatible broker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// Create, list, describe, alter or delete topics on a running broker.
    Topic(TopicCommand),
    /// List, describe or delete consumer groups; reset or delete their committed offsets.
    Group(GroupCommand),
    /// Show the idempotent producers a partition remembers.
    Producer(ProducerCommand),
    /// List or describe transactions.
    Txn(TxnCommand),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML config file (settings named like Kafka's, dots as underscores).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address HOST:PORT [default: 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address advertised to clients [default: the listen address].
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This broker's node id [default: 1].
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
}

fn main() -> std::process::ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Topic(cmd)) => vltava::cli::topic::run(cmd).map_err(anyhow::Error::from),
        Some(Command::Group(cmd)) => vltava::cli::group::run(cmd).map_err(anyhow::Error::from),
        Some(Command::Producer(cmd)) => {
            vltava::cli::producer::run(cmd).map_err(anyhow::Error::from)
        }
        Some(Command::Txn(cmd)) => vltava::cli::txn::run(cmd).map_err(anyhow::Error::from),
        Some(Command::Serve(args)) => serve(args, started),
        None => serve(cli.serve, started),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vltava: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs, started: Instant) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for log files or CI output.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let flags = Overrides {
        listen: args.listen,
        advertise: args.advertise,
        data_dir: args.data_dir,
        node_id: args.node_id,
    };
    let config = BrokerConfig::load(args.config.as_deref(), &flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(run(Arc::new(config), started))
}

async fn run(config: Arc<BrokerConfig>, started: Instant) -> anyhow::Result<()> {
    // Every connection and every segment needs a descriptor; the soft limit is often far below the hard one.
    let open_files = match vltava::server::listener::raise_fd_limit() {
        Ok(n) => n.to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open files limit");
            "unknown".to_string()
        }
    };
    tracing::info!(%open_files, "open files limit (soft, raised to the hard limit)");
    let addr = config.listen_addr()?;
    // Bind before recovery work so a port clash fails fast.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    let broker = Broker::start(config.clone()).await?;
    broker.spawn_background();
    let server = tokio::spawn(vltava::server::listener::run(listener, broker.clone()));
    let (host, port) = config.advertised_addr()?;
    println!(
        "vltava ready: listening on {addr} (advertised {host}:{port}), data dir {}, node {}, open files limit {open_files}, ready in {:.1} ms",
        config.data_dir.display(),
        config.node_id,
        started.elapsed().as_secs_f64() * 1000.0
    );
    wait_for_signal().await?;
    tracing::info!("shutting down: finishing in-flight requests");
    broker.shutdown.cancel();
    let _ = server.await;
    let replicas = broker.replicas.clone();
    tokio::task::spawn_blocking(move || replicas.shutdown())
        .await
        .context("closing logs")?;
    tracing::info!("logs flushed and closed; bye");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
