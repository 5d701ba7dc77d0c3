//! [`FileStore`]: a policy store in a directory.
//!
//! ```text
//! DIR/versions/0001/{model.conf,policy.csv,tests.csv,meta.json}
//! DIR/proposals/<id>.json
//! DIR/active          the active version number
//! DIR/lock.d/         held while writing (mkdir is atomic)
//! ```
//!
//! Directories are created 0750 and files 0640 (less if the umask says
//! so): the service and its group, nobody else (docs/OPERATIONS.md).
//!
//! A version directory is written under a temporary name, synced and
//! renamed into place; `active` is replaced by write-temp, fsync, rename,
//! fsync of the directory. Writers serialise on `lock.d` (a lock older than
//! a minute is taken to be left by a crashed writer and removed). Watchers
//! poll `active`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::{ChangeWaiter, PolicyStore, Proposal, ProposalStatus, StoredVersion, VersionMeta};
use crate::error::StoreError;
use crate::set::PolicySet;

const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_STALE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// A policy store in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

/// Mode of the store's directories: owner and group (the service) only.
const DIR_MODE: u32 = 0o750;
/// Mode of the store's files: written by the owner, read by the group.
const FILE_MODE: u32 = 0o640;

/// Creates `dir` and its missing parents with [`DIR_MODE`].
fn create_dirs(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io(dir))
}

/// Creates one directory with [`DIR_MODE`]; fails if it exists.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new().mode(DIR_MODE).create(dir)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Replaces `path` atomically with `data`.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    write_synced(&tmp, data)?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fsync_dir(dir)
}

fn read(path: &Path) -> Result<String, StoreError> {
    fs::read_to_string(path).map_err(io(path))
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    serde_json::from_str(&read(path)?)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

struct LockGuard(PathBuf);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

impl FileStore {
    /// Opens (creating if needed) a store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        for d in [dir.join("versions"), dir.join("proposals")] {
            create_dirs(&d)?;
        }
        Ok(Self { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<LockGuard, StoreError> {
        let path = self.dir.join("lock.d");
        let start = Instant::now();
        loop {
            match create_dir(&path) {
                Ok(()) => return Ok(LockGuard(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > LOCK_STALE) {
                        let _ = fs::remove_dir(&path);
                        continue;
                    }
                    if start.elapsed() > LOCK_WAIT {
                        return Err(StoreError::Locked(path.display().to_string()));
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }

    fn version_dir(&self, v: u64) -> PathBuf {
        self.dir.join("versions").join(format!("{v:04}"))
    }

    fn proposal_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::NoSuchProposal(id.to_string()));
        }
        Ok(self.dir.join("proposals").join(format!("{id}.json")))
    }

    fn version_numbers(&self) -> Result<Vec<u64>, StoreError> {
        let d = self.dir.join("versions");
        let mut v: Vec<u64> = fs::read_dir(&d)
            .map_err(io(&d))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }
}

impl PolicyStore for FileStore {
    fn active_version(&self) -> Result<Option<u64>, StoreError> {
        let p = self.dir.join("active");
        match fs::read_to_string(&p) {
            Ok(s) => {
                s.trim().parse().map(Some).map_err(|_| {
                    StoreError::Corrupt(format!("{}: not a version number", p.display()))
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    fn load(&self, version: u64) -> Result<StoredVersion, StoreError> {
        let d = self.version_dir(version);
        if !d.is_dir() {
            return Err(StoreError::NoSuchVersion(version));
        }
        Ok(StoredVersion {
            meta: json(&d.join("meta.json"))?,
            set: PolicySet {
                model: read(&d.join("model.conf"))?,
                policy: read(&d.join("policy.csv"))?,
                tests: read(&d.join("tests.csv"))?,
            },
        })
    }

    fn versions(&self) -> Result<Vec<VersionMeta>, StoreError> {
        self.version_numbers()?
            .into_iter()
            .map(|v| json(&self.version_dir(v).join("meta.json")))
            .collect()
    }

    fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let d = self.dir.join("proposals");
        let mut out: Vec<Proposal> = Vec::new();
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(json(&p)?);
            }
        }
        out.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(out)
    }

    fn proposal(&self, id: &str) -> Result<Proposal, StoreError> {
        let p = self.proposal_path(id)?;
        if !p.exists() {
            return Err(StoreError::NoSuchProposal(id.to_string()));
        }
        json(&p)
    }

    fn insert_proposal(&self, p: &Proposal) -> Result<(), StoreError> {
        let _g = self.lock()?;
        let path = self.proposal_path(&p.id)?;
        if path.exists() {
            return Err(StoreError::ProposalConflict(p.id.clone()));
        }
        write_atomic(&path, &to_json(p)?)
    }

    fn update_proposal(&self, p: &Proposal, expected: &ProposalStatus) -> Result<(), StoreError> {
        let _g = self.lock()?;
        let cur = self.proposal(&p.id)?;
        if &cur.status != expected {
            return Err(StoreError::ProposalConflict(p.id.clone()));
        }
        write_atomic(&self.proposal_path(&p.id)?, &to_json(p)?)
    }

    fn activate(
        &self,
        expected_active: Option<u64>,
        set: &PolicySet,
        mut meta: VersionMeta,
        proposal: Option<&Proposal>,
    ) -> Result<u64, StoreError> {
        let _g = self.lock()?;
        let actual = self.active_version()?;
        if actual != expected_active {
            return Err(StoreError::Conflict {
                expected: expected_active,
                actual,
            });
        }
        if let Some(p) = proposal {
            if self.proposal(&p.id)?.status != ProposalStatus::Pending {
                return Err(StoreError::ProposalConflict(p.id.clone()));
            }
        }
        let version = self.version_numbers()?.last().copied().unwrap_or(0) + 1;
        meta.version = version;
        meta.parent = expected_active;
        let vdir = self.dir.join("versions");
        let tmp = vdir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
        create_dir(&tmp).map_err(io(&tmp))?;
        write_synced(&tmp.join("model.conf"), set.model.as_bytes())?;
        write_synced(&tmp.join("policy.csv"), set.policy.as_bytes())?;
        write_synced(&tmp.join("tests.csv"), set.tests.as_bytes())?;
        write_synced(&tmp.join("meta.json"), &to_json(&meta)?)?;
        fsync_dir(&tmp)?;
        let dest = self.version_dir(version);
        fs::rename(&tmp, &dest).map_err(io(&dest))?;
        fsync_dir(&vdir)?;
        if let Some(p) = proposal {
            let mut p = p.clone();
            p.status = ProposalStatus::Activated { version };
            write_atomic(&self.proposal_path(&p.id)?, &to_json(&p)?)?;
        }
        write_atomic(&self.dir.join("active"), format!("{version}\n").as_bytes())?;
        Ok(version)
    }

    fn subscribe(&self) -> Result<Box<dyn ChangeWaiter>, StoreError> {
        Ok(Box::new(FilePoller {
            store: self.clone(),
            last: self.active_version().ok().flatten(),
        }))
    }
}

/// Polls the `active` file.
struct FilePoller {
    store: FileStore,
    last: Option<u64>,
}

impl ChangeWaiter for FilePoller {
    fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let end = Instant::now() + timeout;
        loop {
            let now = self.store.active_version()?;
            if now != self.last {
                self.last = now;
                return Ok(true);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            thread::sleep(left.min(POLL));
        }
    }
}
