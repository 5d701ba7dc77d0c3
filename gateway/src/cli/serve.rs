//! `stadttor serve`: load the configuration, bind every listener, announce
//! the bound addresses, then serve until SIGTERM (SIGHUP reloads).

use std::path::Path;

use stadttor_gateway::config;
use stadttor_gateway::server::{self, Bound};

use super::{finish, init_tracing, runtime, Exit};

/// Runs `stadttor serve --config FILE`. An unusable configuration is
/// reported, every problem listed, before any port is bound: the check is
/// `stadttor_gateway::preflight::check`, the same as `config check`'s.
pub(super) fn run(path: &Path) -> Exit {
    // The file is read once here only for the log format, so that the
    // check's own log lines (software keys, warnings) use it.
    match config::load(path) {
        Err(e) => {
            eprintln!("{e}");
            Exit::of_config(&e)
        }
        Ok(cfg) => {
            init_tracing(cfg.server.log_format);
            finish(runtime().and_then(|rt| rt.block_on(serve(path))))
        }
    }
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    let prepared = server::prepare(path).await?;
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
