//! The `stadttor` command line: `serve`, `config check`, `demo`.
//!
//! Exit codes: 0 success, 64 unusable configuration (reported before any
//! port is bound, every problem listed), 1 any other failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stadttor_gateway::config::{self, LogFormat};
use stadttor_gateway::server::{self, ServeError};
use stadttor_gateway::state::State;

/// stadttor: a hardened TLS gateway for municipal online services.
#[derive(Debug, Parser)]
#[command(name = "stadttor", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file (SIGHUP reloads, SIGTERM drains).
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/stadttor/stadttor.toml")]
        config: PathBuf,
    },
    /// Inspect configurations.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a complete development gateway with generated certificates and a
    /// sample service, in a local folder. Not for production.
    Demo {
        /// Folder for the generated CA, certificate, key and config.
        #[arg(long, default_value = "stadttor-demo")]
        dir: PathBuf,
        /// Public TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Admin listener (metrics, health).
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration, including its certificates and keys.
    /// Exits 0 when usable, 64 with every problem listed otherwise.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check(&file),
        Command::Serve { config } => match config::load(&config) {
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EX_CONFIG)
            }
            Ok(cfg) => {
                init_tracing(cfg.server.log_format);
                finish(runtime().and_then(|rt| rt.block_on(serve(cfg))))
            }
        },
        Command::Demo { dir, listen, admin } => {
            init_tracing(LogFormat::Text);
            finish(runtime().and_then(|rt| rt.block_on(demo(dir, listen, admin))))
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    let result = config::load(file).and_then(|cfg| {
        let (l, r) = (cfg.listeners.len(), cfg.routes.len());
        State::build(cfg, &stadttor_gateway::metrics::Metrics::new()).map(|_| (l, r))
    });
    match result {
        Ok((l, r)) => {
            println!(
                "{}: ok ({l} listener{}, {r} route{})",
                file.display(),
                if l == 1 { "" } else { "s" },
                if r == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ServeError::Config(c)) = e.downcast_ref::<ServeError>() {
                eprintln!("{c}");
                return ExitCode::from(EX_CONFIG);
            }
            eprintln!("stadttor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Multi-thread is required: hardware signing uses block_in_place.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stadttor-worker")
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STADTTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    let prepared = server::prepare(cfg).await?;
    announce(&prepared.bound);
    prepared.run().await?;
    Ok(())
}

/// One line per bound socket on stdout: for operators and for test harnesses
/// that start the binary on port 0.
fn announce(bound: &server::Bound) {
    for (name, addr) in &bound.listeners {
        println!("stadttor listening: {name} https://{addr}");
    }
    if let Some(a) = bound.admin {
        println!("stadttor admin: http://{a}");
    }
}

async fn demo(dir: PathBuf, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let backend = stadttor_gateway::demo::start_sample_service()
        .await
        .context("cannot start the sample service")?;
    let path = stadttor_gateway::demo::write_files(&dir, listen, admin, backend)?;
    let cfg = config::load(&path)?;
    let prepared = server::prepare(cfg).await?;
    announce(&prepared.bound);
    let addr = prepared
        .bound
        .listeners
        .first()
        .map(|(_, a)| *a)
        .unwrap_or(listen);
    println!(
        "\nstadttor demo is running (development only: software key, throw-away CA).\n\
         Try:  curl --cacert {ca} https://localhost:{port}/\n\
         Metrics: curl http://{admin}/metrics\n\
         Config:  {cfg}\n\
         Stop with Ctrl-C.",
        ca = dir.join("ca.pem").display(),
        port = addr.port(),
        cfg = path.display(),
    );
    prepared.run().await?;
    Ok(())
}
