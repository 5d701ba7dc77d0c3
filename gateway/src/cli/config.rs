//! `stadttor config check`: validate a configuration exactly as `serve`
//! does before it binds a port (`stadttor_gateway::preflight::check`, the
//! one function both run): certificates and keys of every listener and of
//! the admin listener, secret files, subsystem keys, and the state stores
//! reached over the network (skipped with `--offline`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use stadttor_gateway::metrics::Metrics;
use stadttor_gateway::preflight::{self, Options};

use super::{runtime, Exit};

/// `stadttor config …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration as `serve` would: certificates, keys,
    /// secret files and store connections. Exits 0 when usable (warnings
    /// do not change that), 78 with every problem listed otherwise (69 when
    /// the only problem is a store that cannot be reached).
    Check {
        /// The configuration file.
        file: PathBuf,
        /// Do not connect to the policy, session and audit stores (build
        /// hosts without database access); everything else is checked.
        #[arg(long)]
        offline: bool,
    },
}

/// Runs a `config` subcommand.
pub(super) fn run(command: ConfigCommand) -> Exit {
    match command {
        ConfigCommand::Check { file, offline } => check(&file, Options { offline }),
    }
}

fn check(file: &Path, opts: Options) -> Exit {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stadttor: {e:#}");
            return Exit::Failure;
        }
    };
    match rt.block_on(preflight::check(file, &Metrics::new(), opts)) {
        Ok(checked) => {
            // Warnings do not change the exit code: a trusted network may be
            // a deliberate choice, but it should be a visible one.
            for w in &checked.warnings {
                eprintln!("{}: key `{}`: warning: {}", file.display(), w.key, w.reason);
            }
            let (l, r) = (
                checked.state.config.listeners.len(),
                checked.state.config.routes.len(),
            );
            println!(
                "{}: ok ({l} listener{}, {r} route{}{})",
                file.display(),
                if l == 1 { "" } else { "s" },
                if r == 1 { "" } else { "s" },
                if opts.offline {
                    "; offline: store connections not checked"
                } else {
                    ""
                }
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("{e}");
            Exit::of_config(&e)
        }
    }
}
