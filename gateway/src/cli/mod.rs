//! The `stadttor` command line: `serve`, `config check`, `keys`, `sign`,
//! `verify`, `audit`, `policy`, `demo`.
//!
//! This module parses the command line ([`Cli`], [`Command`]), picks the
//! key store for the commands that need one ([`KeyBackend::key_store`]) and
//! hands each command to its own file: [`serve`], [`config`], [`keys`],
//! [`sign`], [`audit`], [`policy`], [`demo`]. Every command ends in one
//! [`Exit`] code; they are an interface, scripts and the tests rely on them.
//!
//! This is the binary's side of the package: the only code that uses
//! `anyhow`. The commands call the `stadttor_gateway` library and the
//! `stadttor-audit`, `stadttor-policies`, `stadttor-pki` and `stadttor-hsm`
//! crates, each with its own typed errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stadttor_gateway::config::LogFormat;
use stadttor_gateway::server::ServeError;
use stadttor_hsm::KeyStore;

mod audit;
mod config;
mod demo;
mod identity;
mod keys;
mod policy;
mod serve;
mod sign;

/// The process exit codes, the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: the command did what was asked; a check passed.
    Ok = 0,
    /// 1: anything else went wrong (network, I/O, hardware, a running
    /// gateway failed).
    Failure = 1,
    /// 2: the check ran and did not pass: a log, proof or signature failed
    /// verification, or a policy change was refused (invalid policy,
    /// failing tests, four-eyes rules).
    Rejected = 2,
    /// 64 (`EX_USAGE`): the command line cannot be used.
    Usage = 64,
    /// 69 (`EX_UNAVAILABLE`): a state store the configuration names (policy,
    /// session or audit database) cannot be reached; the configuration
    /// itself is fine and a retry may succeed (systemd restarts on it).
    Unavailable = 69,
    /// 78 (`EX_CONFIG`): the configuration cannot be used; reported before
    /// any port is bound, every problem listed (systemd does not restart:
    /// `RestartPreventExitStatus=78`).
    Config = 78,
}

impl Exit {
    /// The exit code for a configuration that `serve` or `config check`
    /// refused.
    pub(crate) fn of_config(e: &stadttor_gateway::config::ConfigError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable
        } else {
            Self::Config
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// What `--version` prints: the version and the key and storage backends
/// compiled into this binary (a `tpm:` key or a PostgreSQL store in a
/// configuration needs the matching feature).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nfeatures: tpm=",
    cfg!(feature = "tpm"),
    " pkcs11=",
    cfg!(feature = "pkcs11"),
    " postgres=",
    cfg!(feature = "postgres"),
    " redis=",
    cfg!(feature = "redis"),
);

/// stadttor: a hardened TLS gateway for municipal online services.
#[derive(Debug, Parser)]
#[command(
    name = "stadttor",
    version = VERSION,
    about = "stadttor: a hardened TLS gateway for municipal online services",
    long_about = None
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve with a configuration file (SIGHUP reloads, SIGTERM drains).
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/stadttor/stadttor.toml")]
        config: PathBuf,
    },
    /// Inspect configurations.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// What identity providers need from this gateway: `saml-metadata`
    /// prints the SAML SP metadata to upload at BundID or MUK.
    Identity {
        #[command(subcommand)]
        command: identity::IdentityCommand,
    },
    /// Manage keys in the TPM, the PKCS#11 token or (development) files.
    Keys {
        #[command(flatten)]
        backend: KeyBackend,
        #[command(subcommand)]
        command: keys::KeysCommand,
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
    /// Seal a document with a key from the key store: detached CAdES
    /// (`--tsa` for B-T), PAdES embedded in a PDF, or a detached JWS.
    Sign(sign::SignArgs),
    /// Check a signature: a PDF's embedded PAdES signature, or a detached
    /// `--sig` (CMS `.p7s` or JWS). Exit 0 valid, 2 invalid, 64 unusable
    /// command line. Trust in the signer is checked with your own trust
    /// anchors (openssl, pdfsig, pyHanko).
    Verify {
        /// The document.
        file: PathBuf,
        /// The detached signature.
        #[arg(long)]
        sig: Option<PathBuf>,
    },
    /// Check and query a published audit log offline, with only its public
    /// verifier key. Exit codes: 0 ok, 2 verification failed, 64 unusable
    /// command line, 1 other.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The security officers' policy commands: init, test, explain, diff,
    /// history, propose, approve, reject, rollback. Exit codes: 0 ok, 2
    /// refused (invalid policy, failing tests, four-eyes rules), 64 unusable
    /// command line, 1 other.
    Policy {
        #[command(flatten)]
        store: policy::StoreArgs,
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
}

/// Where the key store finds its hardware.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyBackend {
    /// Read the `[keys]` table of this configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// TPM TCTI, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    #[arg(long, global = true)]
    tcti: Option<String>,
    /// PKCS#11 module (`.so`).
    #[arg(long, global = true)]
    pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN.
    #[arg(long, global = true)]
    pin_file: Option<PathBuf>,
}

impl KeyBackend {
    /// The key store: the `[keys]` table of `--config` (if given), with
    /// `--tcti`, `--pkcs11-module` and `--pin-file` taking precedence.
    /// An unreadable `--config` is printed and exits [`Exit::Config`].
    fn key_store(&self) -> Result<KeyStore, Exit> {
        let mut cfg = match &self.config {
            Some(path) => keys::keys_config_from_file(path).map_err(|e| {
                eprintln!("{e}");
                Exit::Config
            })?,
            None => Default::default(),
        };
        if self.tcti.is_some() {
            cfg.tpm_tcti = self.tcti.clone();
        }
        if self.pkcs11_module.is_some() {
            cfg.pkcs11_module = self.pkcs11_module.clone();
        }
        if self.pin_file.is_some() {
            cfg.pkcs11_pin_file = self.pin_file.clone();
        }
        Ok(KeyStore::new(cfg))
    }
}

/// Runs the command line of this process.
pub(crate) fn main() -> ExitCode {
    // Command-line mistakes exit 64 like an unusable config, not clap's 2:
    // `stadttor audit verify` exits 2 when a log fails verification.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok // --help, --version
            }
            .into();
        }
    };
    // Before anything builds a rustls configuration (see the function).
    stadttor_gateway::http::tls::install_process_default();
    run(cli.command).into()
}

fn run(command: Command) -> Exit {
    match command {
        Command::Serve { config } => serve::run(&config),
        Command::Config { command } => config::run(command),
        Command::Identity { command } => identity::run(command),
        Command::Keys { backend, command } => match backend.key_store() {
            Ok(store) => keys::run(&store, command),
            Err(exit) => exit,
        },
        Command::Demo { dir, listen, admin } => demo::run(dir, listen, admin),
        Command::Sign(args) => match args.backend.key_store() {
            Ok(store) => sign::run_sign(&store, &args),
            Err(exit) => exit,
        },
        Command::Verify { file, sig } => sign::run_verify(&file, sig.as_deref()),
        Command::Audit { command } => audit::main(command),
        Command::Policy { store, command } => policy::main(&store, command),
    }
}

/// The exit code of a command that reports failures through `anyhow`:
/// an unusable configuration found by `serve` or `demo` is
/// [`Exit::Config`] (or [`Exit::Unavailable`] when only a store is out of
/// reach), everything else [`Exit::Failure`].
fn finish(r: anyhow::Result<()>) -> Exit {
    match r {
        Ok(()) => Exit::Ok,
        Err(e) => {
            if let Some(ServeError::Config(c)) = e.downcast_ref::<ServeError>() {
                eprintln!("{c}");
                return Exit::of_config(c);
            }
            eprintln!("stadttor: {e:#}");
            Exit::Failure
        }
    }
}

/// How often (in tasks polled) a runtime worker takes a task from the
/// runtime's global queue before its own: every second task.
///
/// A worker's own run queue holds 256 tasks; under many concurrent h2
/// streams more are ready at once, and tokio moves the overflow to the
/// global queue. By default a worker looks there only every 2 to 127 tasks
/// (tuned to about 200 µs of work) while network readiness keeps refilling
/// its own queue, so a request whose task overflowed waited far longer than
/// the others: with 256 connections × 10 streams, p50 13–19 ms but p99
/// 610–640 ms (nginx: 440–520 ms). Every second task bounds that wait
/// (p99 235–245 ms in the same runs) at no measurable cost in CPU per
/// request; an empty global queue costs one atomic load to check
/// (docs/BENCHMARKS.md, "h2 tail latency under many streams").
const GLOBAL_QUEUE_INTERVAL: u32 = 2;

/// The Tokio runtime for `serve` and `demo`.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Multi-thread is required: hardware signing uses block_in_place.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stadttor-worker")
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .build()
        .context("cannot start the async runtime")
}

/// Logs to stderr, filtered by `STADTTOR_LOG` (default `info`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        assert_eq!(Exit::Ok as u8, 0);
        assert_eq!(Exit::Failure as u8, 1);
        assert_eq!(Exit::Rejected as u8, 2);
        assert_eq!(Exit::Usage as u8, 64);
        assert_eq!(Exit::Unavailable as u8, 69);
        assert_eq!(Exit::Config as u8, 78);
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
