//! The one permissions check for secret files (session-cookie keys, the
//! audit pseudonym key, OIDC client secrets, the PKCS#11 PIN file), and
//! the one way to read them.
//!
//! The model (docs/OPERATIONS.md, "Secrets and permissions"): a secret file
//! belongs to root and is read by the service through its group,
//! `root:stadttor` mode `0640`. Accepted, exactly:
//!
//! - owner `root`, or the user the process runs as (a gateway started by
//!   hand, in development);
//! - no permission bits for others, the group may at most read (no write,
//!   no execute), the owner may at most read and write: `0640`, `0600`,
//!   `0440`, `0400`;
//! - a regular file.
//!
//! Everything else is refused with the file, its mode and the command that
//! fixes it. The metadata is taken from the open file (`fstat`), not the
//! path, so the file checked is the file read.
//!
//! The rules depend on the file alone and on the process's user only for
//! the owner, so `stadttor config check` and `stadttor serve` started as
//! the same user (systemd runs `ExecStartPre` as the unit's `User=`) give
//! the same verdict.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use zeroize::Zeroizing;

/// Mode bits a secret file may have: `rw-r-----`.
const ALLOWED_MODE: u32 = 0o640;

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The mode gives others access, or the group more than read.
    #[error(
        "{path}: mode {mode:04o} is too open for a secret (others must have no access, \
         the group at most read); run `chown root:stadttor {path}; chmod 0640 {path}`"
    )]
    Mode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file belongs to another user than root or the process's user.
    #[error(
        "{path}: owned by uid {uid}, not root (or the user the gateway runs as); \
         run `chown root:stadttor {path}; chmod 0640 {path}`"
    )]
    Owner {
        /// The file.
        path: String,
        /// Its owner.
        uid: u32,
    },
    /// Not a regular file.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The file.
        path: String,
    },
}

/// Whether `meta` is acceptable for a secret file read by a process running
/// as `euid`. The one rule, used by [`read`].
pub fn check(path: &Path, meta: &std::fs::Metadata, euid: u32) -> Result<(), SecretFileError> {
    let p = || path.display().to_string();
    if !meta.is_file() {
        return Err(SecretFileError::NotAFile { path: p() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & !ALLOWED_MODE != 0 {
        return Err(SecretFileError::Mode { path: p(), mode });
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(SecretFileError::Owner {
            path: p(),
            uid: meta.uid(),
        });
    }
    Ok(())
}

/// Opens `path`, checks it with [`check`] and returns its contents (wiped
/// from memory when dropped).
pub fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let io = |source| SecretFileError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    check(path, &meta, effective_uid())?;
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len().min(1 << 20) as usize));
    f.read_to_end(&mut buf).map_err(io)?;
    Ok(buf)
}

/// The process's effective user id: the owner of `/proc/self` (proc(5)).
/// Without `/proc` the answer is root's, so only root-owned files pass
/// (fail closed).
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    use stadttor_test_harness::TempDir;

    fn file_with_mode(dir: &TempDir, name: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.write(name, "secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn accepts_exactly_the_documented_modes() {
        let dir = TempDir::new("secret-modes");
        for mode in [0o640, 0o600, 0o440, 0o400] {
            let p = file_with_mode(&dir, &format!("ok{mode:o}"), mode);
            assert_eq!(&read(&p).expect("accepted")[..], b"secret", "{mode:o}");
        }
        for mode in [0o644, 0o660, 0o604, 0o650, 0o700, 0o1640, 0o2640, 0o4600] {
            let p = file_with_mode(&dir, &format!("bad{mode:o}"), mode);
            let e = read(&p).expect_err("refused");
            assert!(
                matches!(e, SecretFileError::Mode { mode: m, .. } if m == mode),
                "{mode:o}: {e}"
            );
            assert!(e.to_string().contains("chmod 0640"), "{e}");
        }
    }

    #[test]
    fn owner_must_be_root_or_the_process_user() {
        let dir = TempDir::new("secret-owner");
        let p = file_with_mode(&dir, "owner", 0o600);
        let meta = std::fs::metadata(&p).expect("meta");
        let me = meta.uid();
        assert!(check(&p, &meta, me).is_ok());
        if me != 0 {
            return; // a root-owned file is needed for the refusal below
        }
        // Root-owned: fine for any process.
        assert!(check(&p, &meta, 4242).is_ok());
        std::os::unix::fs::chown(&p, Some(4242), None).expect("chown");
        let meta = std::fs::metadata(&p).expect("meta");
        assert!(matches!(
            check(&p, &meta, 0),
            Err(SecretFileError::Owner { uid: 4242, .. })
        ));
        assert!(check(&p, &meta, 4242).is_ok());
    }

    #[test]
    fn a_directory_is_not_a_secret_file() {
        let dir = TempDir::new("secret-dir");
        let meta = std::fs::metadata(dir.path()).expect("meta");
        assert!(matches!(
            check(dir.path(), &meta, 0),
            Err(SecretFileError::NotAFile { .. })
        ));
    }
}
