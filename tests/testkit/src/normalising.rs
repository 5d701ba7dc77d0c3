//! A Python upstream that resolves request paths on its own the way many
//! web stacks do (`tests/testkit/normalising_upstream.py`: percent-decode
//! once, drop `;` parameters, merge slashes, remove dot segments) and
//! answers `TOP-SECRET` for anything that resolves to `/secret`. It reads
//! the request line from the socket itself, so its log holds the target
//! exactly as the gateway sent it: `<x-request-id>\t<raw target>`.
//!
//! Needs only `python3` (standard library). Killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{require_tool, TempDir};

/// The marker the protected file of both path-confusion upstreams holds.
pub const SECRET_MARKER: &str = "TOP-SECRET";

/// A running `normalising_upstream.py`.
pub struct NormalisingUpstream {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl NormalisingUpstream {
    pub fn start() -> Self {
        let python = require_tool("python3", "python3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("normalising_upstream.py");
        let dir = TempDir::new("pyupstream");
        let log = dir.path().join("seen.log");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start normalising_upstream.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("normalising_upstream.py said {line:?}"));
        Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            log,
            _dir: dir,
        }
    }

    /// `(x-request-id, raw target)` of every request so far.
    pub fn seen(&self) -> Vec<(String, String)> {
        read_log(&self.log)
    }
}

impl Drop for NormalisingUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `<id>\t<target>` lines (a missing file is an empty log).
pub fn read_log(path: &Path) -> Vec<(String, String)> {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, t)| (id.to_owned(), t.to_owned()))
        .collect()
}
