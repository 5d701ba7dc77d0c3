//! `stadttor serve`: load the configuration, bind every listener, announce
//! the bound addresses, then serve until SIGTERM (SIGHUP reloads).

use std::path::Path;

use stadttor_gateway::config::{self, Config};
use stadttor_gateway::server::{self, Bound};

use super::{finish, init_tracing, runtime, Exit};

/// Runs `stadttor serve --config FILE`. An unusable configuration is
/// reported, every problem listed, before any port is bound.
pub(super) fn run(path: &Path) -> Exit {
    match config::load(path) {
        Err(e) => {
            eprintln!("{e}");
            Exit::Usage
        }
        Ok(cfg) => {
            init_tracing(cfg.server.log_format);
            finish(runtime().and_then(|rt| rt.block_on(serve(cfg))))
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    for (key, why) in config::plaintext_warnings(&cfg) {
        tracing::warn!(key = %key, "{why}");
    }
    let prepared = server::prepare(cfg).await?;
    announce(&prepared.bound);
    prepared.run().await?;
    Ok(())
}

/// One line per bound socket on stdout: for operators and for test harnesses
/// that start the binary on port 0.
pub(super) fn announce(bound: &Bound) {
    for (name, addr) in &bound.listeners {
        println!("stadttor listening: {name} https://{addr}");
    }
    if let Some(a) = bound.admin {
        let scheme = if bound.admin_https { "https" } else { "http" };
        println!("stadttor admin: {scheme}://{a}");
    }
}
