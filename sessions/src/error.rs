//! [`StoreError`], the one error type of the crate: every variant means
//! "deny" to the caller.

use std::path::PathBuf;
use std::time::Duration;

/// Why a store operation failed. Every error means: deny.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The replica has not been confirmed fresh recently enough.
    #[error("session store replica is stale: last confirmed {age:?} ago, limit {max_staleness:?}")]
    Stale {
        /// Time since the last confirmation.
        age: Duration,
        /// The configured limit.
        max_staleness: Duration,
    },
    /// The backend could not be reached or answered with an error.
    #[error("session store backend unavailable: {0}")]
    Unavailable(String),
    /// A backend operation took longer than `op_timeout`.
    #[error("session store backend did not answer within {0:?}")]
    Timeout(Duration),
    /// File backend: an I/O error.
    #[error("session store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// File backend: another process (or another store in this process)
    /// has the directory open.
    #[error("session store directory {dir} is in use by process {pid} (one gateway process per directory)")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The owner's pid, as written in the lock file.
        pid: u32,
    },
    /// File backend: the log cannot be read back.
    #[error("session store log {path} is corrupt at line {line}: {reason}")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend holds data this version cannot read.
    #[error("session store backend holds an unreadable entry: {0}")]
    BadEntry(String),
    /// The configuration or options are invalid.
    #[error("session store configuration: {0}")]
    Config(String),
    /// This build lacks the backend's cargo feature.
    #[error("session store backend {0} is not compiled in (cargo feature {0:?})")]
    Unsupported(&'static str),
    /// A caller passed an invalid namespace, key, ttl or revocation.
    #[error("session store: invalid argument: {0}")]
    InvalidArgument(String),
}

/// An error and its sources in one line (`a: b: c`), leaving out a source
/// whose text the line already ends with. The client libraries put the
/// useful part (a refused certificate, a closed socket) in the sources.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(all(test, any(feature = "postgres", feature = "redis")))]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_names_every_source_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e), "outer: inner");
    }
}
