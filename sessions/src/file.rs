//! File backend: one directory, one gateway process.
//!
//! Files in the directory:
//!
//! * `lock`: created with `O_EXCL` (`create_new`), holds the owner's pid.
//!   A second opener (another process, or a second store in this process)
//!   is refused with [`StoreError::Locked`]. A lock whose pid no longer
//!   runs (no `/proc/<pid>`) is taken over; this assumes two processes do
//!   not take over the same stale lock at the same instant. It is a guard
//!   against misconfiguration, not a protocol for sharing the directory.
//! * `log.jsonl`: one JSON record per line, a single-use marker
//!   (`{"t":"once","ns":…,"k":…,"exp":ms}`) or a revocation
//!   (`{"t":"rev","rev":{…}}`). Each record is written and `fsync`'d before
//!   `once`/`revoke` return. On open the log is replayed (a torn last line
//!   from a crash is dropped; damage anywhere else refuses the open) and
//!   rewritten with only live records (compaction). Compaction also runs
//!   when the log has grown to twice its length after the last compaction
//!   (and at least 1024 lines), through `log.jsonl.tmp`, `fsync` and
//!   `rename`.
//!
//! All methods here block (file I/O); the store calls them through
//! `spawn_blocking`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::replica::{Replica, Wire};
use super::{now_ms, sleep_or_shutdown, StoreError};

const LOG: &str = "log.jsonl";
const LOG_TMP: &str = "log.jsonl.tmp";
const LOCK: &str = "lock";
/// Compaction is considered only above this many lines.
const COMPACT_MIN_LINES: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
enum Record {
    Once { ns: String, k: String, exp: u64 },
    Rev { rev: Wire },
}

struct State {
    log: File,
    lines: usize,
    /// Compact when `lines` reaches this.
    next_compact: usize,
    /// (namespace, key digest) → expiry in ms.
    once: HashMap<(String, String), u64>,
}

/// The open directory.
pub(crate) struct FileBackend {
    dir: PathBuf,
    state: Mutex<State>,
    replica: Arc<Replica>,
    _lock: LockFile,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileBackend {
    /// Takes the lock, replays and compacts the log into `replica`.
    pub(crate) fn open(dir: &Path, replica: Arc<Replica>) -> Result<FileBackend, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = LockFile::acquire(dir)?;
        let log_path = dir.join(LOG);
        let mut once = HashMap::new();
        let mut revs = Vec::new();
        match File::open(&log_path) {
            Ok(f) => replay(&log_path, f, &mut once, &mut revs)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&log_path)(e)),
        }
        replica.apply_all(&revs);
        // Compaction below rewrites the log; open an append handle after it.
        let log = open_append(&log_path)?;
        let backend = FileBackend {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                log,
                lines: 0,
                next_compact: COMPACT_MIN_LINES,
                once,
            }),
            replica,
            _lock: lock,
        };
        {
            let mut st = backend.lock_state();
            backend.compact(&mut st)?;
        }
        Ok(backend)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`super::SessionStore::once`]; `key` is already a digest.
    pub(crate) fn once(&self, ns: &str, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let exp = now.saturating_add(ttl_ms.max(1));
        let mut st = self.lock_state();
        let k = (ns.to_owned(), key.to_owned());
        if st.once.get(&k).is_some_and(|e| *e > now) {
            return Ok(false);
        }
        // In memory first: if the write fails the key stays used (a later
        // try gets `false`, never a second `true`).
        st.once.insert(k, exp);
        self.append(
            &mut st,
            &Record::Once {
                ns: ns.to_owned(),
                k: key.to_owned(),
                exp,
            },
        )?;
        self.maybe_compact(&mut st)?;
        Ok(true)
    }

    /// Appends a revocation durably (the caller then applies it).
    pub(crate) fn revoke(&self, w: &Wire) -> Result<(), StoreError> {
        let mut st = self.lock_state();
        self.append(&mut st, &Record::Rev { rev: w.clone() })?;
        // Into the replica before a compaction may rewrite the log from it.
        self.replica.apply(w);
        self.maybe_compact(&mut st)
    }

    fn append(&self, st: &mut State, rec: &Record) -> Result<(), StoreError> {
        let path = self.dir.join(LOG);
        let mut line = serde_json::to_vec(rec)
            .map_err(|e| StoreError::InvalidArgument(format!("unencodable record: {e}")))?;
        line.push(b'\n');
        st.log.write_all(&line).map_err(io_err(&path))?;
        st.log.sync_data().map_err(io_err(&path))?;
        st.lines += 1;
        Ok(())
    }

    /// Compacts once the log has grown to twice its size after the last
    /// compaction (at least [`COMPACT_MIN_LINES`]): amortised O(1) a write.
    fn maybe_compact(&self, st: &mut State) -> Result<(), StoreError> {
        if st.lines >= st.next_compact {
            self.compact(st)?;
        }
        Ok(())
    }

    /// Purges expired entries and rewrites the log with the live ones.
    fn compact(&self, st: &mut State) -> Result<(), StoreError> {
        let now = now_ms();
        st.once.retain(|_, exp| *exp > now);
        self.replica.purge(super::from_ms(now));
        let tmp = self.dir.join(LOG_TMP);
        let log_path = self.dir.join(LOG);
        let mut buf = Vec::new();
        let mut lines = 0usize;
        let mut push = |rec: &Record| -> Result<(), StoreError> {
            serde_json::to_writer(&mut buf, rec)
                .map_err(|e| StoreError::InvalidArgument(format!("unencodable record: {e}")))?;
            buf.push(b'\n');
            lines += 1;
            Ok(())
        };
        for ((ns, k), exp) in &st.once {
            push(&Record::Once {
                ns: ns.clone(),
                k: k.clone(),
                exp: *exp,
            })?;
        }
        for w in self.replica.live(now) {
            push(&Record::Rev { rev: w })?;
        }
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &log_path).map_err(io_err(&log_path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        st.log = open_append(&log_path)?;
        st.lines = lines;
        st.next_compact = (2 * lines).max(COMPACT_MIN_LINES);
        Ok(())
    }

    /// Periodic purge and compaction.
    fn housekeep(&self) -> Result<(), StoreError> {
        let mut st = self.lock_state();
        let now = now_ms();
        st.once.retain(|_, exp| *exp > now);
        self.replica.purge(super::from_ms(now));
        self.maybe_compact(&mut st)
    }
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

/// Reads the log. A last line without its newline is a torn write and is
/// dropped; any other unreadable line is corruption.
fn replay(
    path: &Path,
    f: File,
    once: &mut HashMap<(String, String), u64>,
    revs: &mut Vec<Wire>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let got = r.read_until(b'\n', &mut line).map_err(io_err(path))?;
        if got == 0 {
            return Ok(());
        }
        n += 1;
        let complete = line.last() == Some(&b'\n');
        match serde_json::from_slice::<Record>(&line) {
            Ok(Record::Once { ns, k, exp }) => {
                if exp > now {
                    let e = once.entry((ns, k)).or_insert(exp);
                    *e = (*e).max(exp);
                }
            }
            Ok(Record::Rev { rev }) => {
                if rev.until() > now {
                    revs.push(rev);
                }
            }
            Err(_) if !complete => {
                tracing::warn!(path = %path.display(), line = n, "session store: dropping a torn last log line");
                return Ok(());
            }
            Err(e) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    line: n,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Background purge and compaction for the file backend.
pub(crate) async fn housekeeping(
    fb: Arc<FileBackend>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if sleep_or_shutdown(every, &mut shutdown).await {
            return;
        }
        let f = Arc::clone(&fb);
        match tokio::task::spawn_blocking(move || f.housekeep()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "session store: housekeeping failed"),
            Err(e) => tracing::warn!(error = %e, "session store: housekeeping task failed"),
        }
    }
}

/// The directory's lock file; removed on drop.
struct LockFile {
    path: PathBuf,
}

impl LockFile {
    fn acquire(dir: &Path) -> Result<LockFile, StoreError> {
        let path = dir.join(LOCK);
        let me = std::process::id();
        // Two rounds: the second after removing a stale lock.
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(format!("{me}\n").as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(io_err(&path))?;
                    return Ok(LockFile { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if Path::new(&format!("/proc/{pid}")).exists() => {
                            return Err(StoreError::Locked {
                                dir: dir.to_path_buf(),
                                pid,
                            });
                        }
                        Ok(pid) => {
                            tracing::warn!(dir = %dir.display(), pid, "session store: taking over the lock of a process that no longer runs");
                        }
                        Err(_) => {
                            // Empty or garbled: a crash between create and
                            // write, or an opener that is writing right now.
                            let age = fs::metadata(&path)
                                .and_then(|m| m.modified())
                                .ok()
                                .and_then(|t| t.elapsed().ok())
                                .unwrap_or(Duration::ZERO);
                            if age < Duration::from_secs(10) {
                                return Err(StoreError::Locked {
                                    dir: dir.to_path_buf(),
                                    pid: 0,
                                });
                            }
                        }
                    }
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Err(StoreError::Locked {
            dir: dir.to_path_buf(),
            pid: 0,
        })
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let mine = fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if mine {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Revocation, SessionRef, SessionStore, StoreConfig, StoreOptions};
    use super::*;
    use std::time::SystemTime;

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "stadttor-sessstore-{name}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            Dir(p)
        }
        fn cfg(&self) -> StoreConfig {
            StoreConfig::File {
                dir: self.0.clone(),
            }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sref(id: &str) -> SessionRef<'_> {
        SessionRef {
            id,
            issuer: "https://idp.example",
            sub: "alice",
            sid: Some("op-1"),
            issued_at: SystemTime::now(),
        }
    }

    fn log_lines(d: &Dir) -> Vec<String> {
        fs::read_to_string(d.0.join(LOG))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn revocations_and_markers_survive_reopen() {
        let d = Dir::new("replay");
        let hour = SystemTime::now() + Duration::from_secs(3600);
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        assert!(!s.is_revoked(&sref("s1")).unwrap());
        s.revoke(Revocation::Session {
            id: "s1".into(),
            until: hour,
        })
        .await
        .unwrap();
        s.revoke(Revocation::ProviderSession {
            issuer: "https://idp.example".into(),
            sid: "op-9".into(),
            until: hour,
        })
        .await
        .unwrap();
        assert!(s.is_revoked(&sref("s1")).unwrap());
        assert!(s
            .once("oidc.state", "abc", Duration::from_secs(600))
            .await
            .unwrap());
        assert!(!s
            .once("oidc.state", "abc", Duration::from_secs(600))
            .await
            .unwrap());
        // Another namespace is another key.
        assert!(s
            .once("oidc.code", "abc", Duration::from_secs(600))
            .await
            .unwrap());
        s.close().await;

        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        assert!(s.is_revoked(&sref("s1")).unwrap());
        assert!(!s.is_revoked(&sref("s2")).unwrap());
        let mut by_sid = sref("s3");
        by_sid.sid = Some("op-9");
        assert!(s.is_revoked(&by_sid).unwrap());
        // The replayed marker still refuses a second use.
        assert!(!s
            .once("oidc.state", "abc", Duration::from_secs(600))
            .await
            .unwrap());
        assert!(!s
            .once("oidc.code", "abc", Duration::from_secs(600))
            .await
            .unwrap());
        // Keys are stored as digests, never in clear.
        let text = fs::read_to_string(d.0.join(LOG)).unwrap();
        assert!(!text.contains("\"abc\""));
        s.close().await;
    }

    #[tokio::test]
    async fn compaction_drops_expired_entries() {
        let d = Dir::new("compact");
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        let soon = SystemTime::now() + Duration::from_millis(200);
        let later = SystemTime::now() + Duration::from_secs(3600);
        s.revoke(Revocation::Session {
            id: "short".into(),
            until: soon,
        })
        .await
        .unwrap();
        s.revoke(Revocation::Session {
            id: "long".into(),
            until: later,
        })
        .await
        .unwrap();
        assert!(s
            .once("jti", "short", Duration::from_millis(200))
            .await
            .unwrap());
        assert!(s
            .once("jti", "long", Duration::from_secs(3600))
            .await
            .unwrap());
        assert_eq!(log_lines(&d).len(), 4);
        s.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        let lines = log_lines(&d);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("\"long\"")));
        assert!(!lines.iter().any(|l| l.contains("\"short\"")));
        assert!(s.is_revoked(&sref("long")).unwrap());
        assert!(!s.is_revoked(&sref("short")).unwrap());
        assert_eq!(s.replica_len(), 1);
        // The expired marker is usable again, the live one is not.
        assert!(s
            .once("jti", "short", Duration::from_secs(1))
            .await
            .unwrap());
        assert!(!s.once("jti", "long", Duration::from_secs(1)).await.unwrap());
        s.close().await;
    }

    #[tokio::test]
    async fn compaction_when_the_log_grows() {
        let d = Dir::new("grow");
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        for i in 0..(COMPACT_MIN_LINES + 10) {
            assert!(s
                .once("state", &format!("k{i}"), Duration::from_millis(1))
                .await
                .unwrap());
        }
        // Every marker expired at once; the log was rewritten on the way.
        assert!(log_lines(&d).len() < COMPACT_MIN_LINES);
        s.close().await;
    }

    #[tokio::test]
    async fn second_opener_is_refused() {
        let d = Dir::new("lock");
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        let e = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap_err();
        match e {
            StoreError::Locked { pid, .. } => assert_eq!(pid, std::process::id()),
            other => panic!("expected Locked, got {other}"),
        }
        assert!(e_msg_names_dir(&d));
        s.close().await;
        // Released on close (last clone): a new opener succeeds.
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        s.close().await;
    }

    fn e_msg_names_dir(d: &Dir) -> bool {
        let e = StoreError::Locked {
            dir: d.0.clone(),
            pid: 1,
        };
        e.to_string().contains(&d.0.display().to_string())
    }

    #[tokio::test]
    async fn stale_lock_of_a_dead_process_is_taken_over() {
        let d = Dir::new("stale");
        fs::create_dir_all(&d.0).unwrap();
        // A pid above the kernel's maximum never runs.
        fs::write(d.0.join(LOCK), "4294967294\n").unwrap();
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            fs::read_to_string(d.0.join(LOCK)).unwrap().trim(),
            std::process::id().to_string()
        );
        s.close().await;
    }

    #[tokio::test]
    async fn torn_last_line_is_dropped_but_corruption_refuses() {
        let d = Dir::new("torn");
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        s.revoke(Revocation::Session {
            id: "kept".into(),
            until: SystemTime::now() + Duration::from_secs(3600),
        })
        .await
        .unwrap();
        s.close().await;
        let mut f = OpenOptions::new().append(true).open(d.0.join(LOG)).unwrap();
        f.write_all(b"{\"t\":\"rev\",\"rev\":{\"ki").unwrap();
        drop(f);
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        assert!(s.is_revoked(&sref("kept")).unwrap());
        s.close().await;

        let text = fs::read_to_string(d.0.join(LOG)).unwrap();
        fs::write(d.0.join(LOG), format!("garbage\n{text}")).unwrap();
        let e = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { line: 1, .. }), "{e}");
    }

    #[tokio::test]
    async fn subject_cut_and_bad_arguments() {
        let d = Dir::new("subject");
        let s = SessionStore::open(&d.cfg(), StoreOptions::default())
            .await
            .unwrap();
        let cut = SystemTime::now();
        let mut old = sref("a");
        old.issued_at = cut - Duration::from_secs(10);
        let mut new = sref("b");
        new.issued_at = cut + Duration::from_secs(1);
        s.revoke(Revocation::Subject {
            issuer: "https://idp.example".into(),
            sub: "alice".into(),
            before: cut,
            until: cut + Duration::from_secs(3600),
        })
        .await
        .unwrap();
        assert!(s.is_revoked(&old).unwrap());
        assert!(!s.is_revoked(&new).unwrap());
        assert!(matches!(
            s.once("bad ns", "k", Duration::from_secs(1)).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            s.once("ns", "k", Duration::ZERO).await,
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            s.revoke(Revocation::Session {
                id: String::new(),
                until: cut
            })
            .await,
            Err(StoreError::InvalidArgument(_))
        ));
        s.close().await;
    }
}
