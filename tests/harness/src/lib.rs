//! Test harness shared by every crate's tests, with no dependency on any
//! stadttor crate (so `stadttor-hsm` and `stadttor-pki` can use it for their
//! own tests without a dependency cycle; `testkit` re-exports it).
//!
//! - [`TempDir`]: the one temporary directory type of the workspace.
//! - [`hw`]: a software TPM (swtpm) and SoftHSM2 tokens.
//! - [`ports`]: ports known before the process that binds them starts.
//! - [`signing`]: a test PKI for seals, a local RFC 3161 TSA and the
//!   independent verifiers (pdfsig, pyHanko, `openssl cms`).
//!
//! Missing tools make tests FAIL with an install hint; nothing here skips.

// Test harness: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod hw;
pub mod ports;
pub mod signing;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub use hw::{require, run};

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty directory under the system temp dir; `tag`
    /// goes into its name.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "stadttor-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` inside the directory (creating parent
    /// directories) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }
}

impl TempDir {
    /// Writes a secret file (a session key, pseudonym key, client secret or
    /// PIN) with mode 0600, as the gateway's one permissions rule for
    /// secrets accepts it (docs/OPERATIONS.md, "Secrets and permissions").
    pub fn write_secret(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.write(name, "");
        set_secret_mode(&p);
        std::fs::write(&p, contents).expect("write secret");
        p
    }
}

/// Sets mode 0600 on a secret file written by a test.
pub fn set_secret_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
