//! `stadttor config check`: validate a configuration as `serve` would,
//! including the certificates and keys of every listener and of the admin
//! listener, without binding a port.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use stadttor_gateway::config;
use stadttor_gateway::keys::Keys;
use stadttor_gateway::metrics::Metrics;
use stadttor_gateway::server;
use stadttor_gateway::state::State;

use super::Exit;

/// `stadttor config …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration, including its certificates and keys.
    /// Exits 0 when usable, 64 with every problem listed otherwise.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

/// Runs a `config` subcommand.
pub(super) fn run(command: ConfigCommand) -> Exit {
    match command {
        ConfigCommand::Check { file } => check(&file),
    }
}

fn check(file: &Path) -> Exit {
    let result = config::load(file).and_then(|cfg| {
        // Warnings do not change the exit code: a trusted network may be a
        // deliberate choice, but it should be a visible one.
        for (key, why) in config::plaintext_warnings(&cfg) {
            eprintln!("{}: key `{key}`: warning: {why}", file.display());
        }
        let (l, r) = (cfg.listeners.len(), cfg.routes.len());
        let keys = Keys::new(cfg.keys.clone());
        // The admin listener's certificates and keys too, not only the
        // public listeners'.
        server::admin_tls_config(&cfg, &keys)?;
        State::build(cfg, &Metrics::new(), &keys).map(|_| (l, r))
    });
    match result {
        Ok((l, r)) => {
            println!(
                "{}: ok ({l} listener{}, {r} route{})",
                file.display(),
                if l == 1 { "" } else { "s" },
                if r == 1 { "" } else { "s" }
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("{e}");
            Exit::Usage
        }
    }
}
