//! `stadttor audit …`: the auditor's commands, a thin layer over
//! [`stadttor_audit::verify`].
//!
//! | command | library call |
//! |---|---|
//! | `verify DIR\|URL` | [`verify::verify_dir`] (a URL is first mirrored into a temporary directory) |
//! | `prove N --dir DIR` | [`LogReader::prove`]; `prove --check FILE`: [`verify::check_inclusion`] |
//! | `consistency OLD_SIZE --dir DIR` | [`LogReader::prove_consistency`]; `--check FILE`: [`verify::check_consistency`] |
//! | `search --dir DIR …` | [`LogReader::for_each_entry`] filtered by a [`Query`] |
//! | `export --dir DIR` | [`LogReader::for_each_entry`], the same lines as [`LogReader::export`] |
//!
//! Every command needs the log's public verifier key (`--key` or
//! `--key-file`) and nothing else: no key store, no configuration. Only
//! `verify URL` uses the network, and only to download the published files
//! (`checkpoints.jsonl`, then `checkpoint`, then the tiles of the signed
//! size); everything is checked offline afterwards. The checkpoint's
//! signature is checked before any tile is downloaded, so a wrong key or a
//! forged checkpoint fails fast and bounds the download by a signed size.
//!
//! `search` and `export` print one JSON object per line,
//! `{"event":{…},"index":N,"leaf_hash":"base64"}`, the format of
//! [`LogReader::export`]; they read the entries of the signed checkpoint
//! but do not re-verify them (run `verify` first).
//!
//! Exit codes are an interface (see [`AuditCmdError::exit_code`]): 0 the
//! check passed, 2 the log or proof failed verification (the first problem
//! is printed), 64 the command line cannot be used, 1 anything else
//! (network, local I/O).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures_util::TryStreamExt as _;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use stadttor_audit::event::Event;
use stadttor_audit::merkle;
use stadttor_audit::note::{self, VerifierKey};
use stadttor_audit::tiles;
use stadttor_audit::verify::{
    self, ConsistencyProof, InclusionProof, LogReader, Query, VerifyError, VerifyReport,
};
use tokio::io::AsyncWriteExt as _;

/// Exit code: the log or proof failed verification.
pub const EXIT_FAILED: u8 = 2;
/// Exit code: the command line cannot be used (same as an unusable config).
pub const EXIT_USAGE: u8 = 64;
/// Exit code: anything else (network, local I/O).
pub const EXIT_OTHER: u8 = 1;

const EXIT_CODES: &str = "Exit codes: 0 success; 2 verification failed (the first problem is \
printed); 64 unusable command line (bad key, path, URL or CA file); 1 other errors (network, I/O).";

/// Where a system CA bundle is looked for when `--ca` is not given.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];
/// Largest `checkpoint` note accepted from a server.
const CHECKPOINT_LIMIT: u64 = 1 << 20;
/// Largest `checkpoints.jsonl` accepted from a server (about 60 million
/// checkpoints); it is streamed to disk, never held in memory.
const HISTORY_LIMIT: u64 = 16 << 30;
/// Downloads in flight at once.
const PARALLEL_DOWNLOADS: usize = 8;
/// Time allowed for the response headers, and between two parts of a body
/// (an idle timeout: a large `checkpoints.jsonl` may take long, but must move).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `stadttor audit …`: check and query a published audit log offline.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify a log completely: the checkpoint signature, every entry
    /// (the tree is recomputed), every hash tile, and every checkpoint in
    /// `checkpoints.jsonl` (same key, growing, a head of the same tree).
    /// Prints a summary, or the first problem and exits 2.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// A log directory, or the `http://` / `https://` URL under which a
        /// static file server publishes one.
        source: String,
        /// The log's public verifier key.
        #[command(flatten)]
        key: KeyArgs,
        /// PEM file of the CA certificates to trust for an `https` URL
        /// (default: the system bundle, /etc/ssl/certs/ca-certificates.crt).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Keep the files downloaded from a URL in DIR (created; must be
        /// empty) instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        mirror: Option<PathBuf>,
    },
    /// Print a self-contained inclusion proof (JSON) of entry N, or check
    /// one with `--check FILE`.
    #[command(after_help = EXIT_CODES)]
    Prove {
        /// The entry's index (0-based).
        #[arg(required_unless_present = "check")]
        index: Option<u64>,
        /// The log directory.
        #[arg(long, required_unless_present = "check")]
        dir: Option<PathBuf>,
        /// The log's public verifier key.
        #[command(flatten)]
        key: KeyArgs,
        /// Check this proof file (`-` for stdin) instead of making one.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["index", "dir", "out"])]
        check: Option<PathBuf>,
        /// Write the proof to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a consistency proof (JSON) from the historical checkpoint of
    /// OLD_SIZE to the current one, or check one with `--check FILE`.
    #[command(after_help = EXIT_CODES)]
    Consistency {
        /// Size of an earlier checkpoint in `checkpoints.jsonl`.
        #[arg(required_unless_present = "check")]
        old_size: Option<u64>,
        /// The log directory.
        #[arg(long, required_unless_present = "check")]
        dir: Option<PathBuf>,
        /// The log's public verifier key.
        #[command(flatten)]
        key: KeyArgs,
        /// Check this proof file (`-` for stdin) instead of making one.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["old_size", "dir", "out"])]
        check: Option<PathBuf>,
        /// Write the proof to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the entries that match every given filter, as JSON lines.
    #[command(after_help = EXIT_CODES)]
    Search {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// The log's public verifier key.
        #[command(flatten)]
        key: KeyArgs,
        /// Events at or after this time: RFC 3339 (`2026-11-26T05:00:00+01:00`,
        /// converted to UTC) or a UTC prefix (`2026-11`, `2026-11-26`).
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Events before this time (same forms as `--since`).
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
        /// Event kind (`authn.login`), or a prefix ending in `.` (`authn.`).
        #[arg(long)]
        kind: Option<String>,
        /// Pseudonymised subject (`p1:<key id>:<hex>`), exactly.
        #[arg(long, value_name = "PSEUDONYM")]
        subject: Option<String>,
        /// Tenant, exactly.
        #[arg(long)]
        tenant: Option<String>,
        /// Target, exactly.
        #[arg(long)]
        target: Option<String>,
        /// Stop after this many matches.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Write every entry as JSON lines (`{"event","index","leaf_hash"}`).
    #[command(after_help = EXIT_CODES)]
    Export {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// The log's public verifier key.
        #[command(flatten)]
        key: KeyArgs,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// The log's public verifier key, given inline or in a file.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// The log's verifier key, `<origin>+<hex key id>+<base64 key>`.
    #[arg(long, value_name = "VERIFIER_KEY")]
    key: Option<String>,
    /// A file holding the verifier key.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

impl KeyArgs {
    fn load(&self) -> Result<VerifierKey, AuditCmdError> {
        let (text, from) = match (&self.key, &self.key_file) {
            (Some(k), _) => (k.clone(), "--key".to_owned()),
            (None, Some(path)) => (
                std::fs::read_to_string(path).map_err(|e| {
                    AuditCmdError::Usage(format!("--key-file {}: {e}", path.display()))
                })?,
                format!("--key-file {}", path.display()),
            ),
            (None, None) => {
                return Err(AuditCmdError::Usage(
                    "give the log's verifier key with --key or --key-file".into(),
                ))
            }
        };
        VerifierKey::parse(&text).map_err(|e| AuditCmdError::Usage(format!("{from}: {e}")))
    }
}

/// Errors of the audit commands; [`AuditCmdError::exit_code`] maps them to
/// the documented exit codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditCmdError {
    /// The log, a checkpoint or a proof failed verification.
    #[error("FAILED: {0}")]
    Failed(#[from] VerifyError),
    /// A file the signed checkpoint needs is missing on the server.
    #[error("FAILED: {url}: not found (HTTP 404), the published log is incomplete")]
    Missing {
        /// The file's URL.
        url: String,
    },
    /// The command line cannot be used.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A download failed (network, TLS, HTTP status, size limit).
    #[error("{url}: {}", Chain(.source.as_ref()))]
    Fetch {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AuditCmdError {
    /// The process exit code: [`EXIT_FAILED`] when the log or a proof does
    /// not verify, [`EXIT_USAGE`] for an unusable command line,
    /// [`EXIT_OTHER`] otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(VerifyError::OutOfRange(_)) | Self::Usage(_) => EXIT_USAGE,
            Self::Failed(_) | Self::Missing { .. } => EXIT_FAILED,
            Self::Io { .. } | Self::Fetch { .. } => EXIT_OTHER,
        }
    }
}

/// Displays an error with its causes (`a: b: c`), skipping causes whose
/// text the previous message already contains.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = c.source();
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuditCmdError + '_ {
    move |source| AuditCmdError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs one audit command, writing its results to `out`.
pub fn run(command: AuditCommand, out: &mut dyn Write) -> Result<(), AuditCmdError> {
    match command {
        AuditCommand::Verify {
            source,
            key,
            ca,
            mirror,
        } => {
            let key = key.load()?;
            let report = match Source::parse(&source)? {
                Source::Dir(dir) => {
                    if ca.is_some() || mirror.is_some() {
                        return Err(AuditCmdError::Usage(
                            "--ca and --mirror apply only to an http(s) URL".into(),
                        ));
                    }
                    verify::verify_dir(&existing_dir(&dir)?, &key)?
                }
                Source::Url(base) => verify_url(&base, &key, ca.as_deref(), mirror.as_deref())?,
            };
            write_summary(out, &source, &report).map_err(io_err(Path::new("<stdout>")))
        }
        AuditCommand::Prove {
            index,
            dir,
            key,
            check,
            out: file,
        } => {
            let key = key.load()?;
            if let Some(check) = check {
                let proof: InclusionProof = read_proof(&check)?;
                let cp = verify::check_inclusion(&proof, &key)?;
                return writeln!(
                    out,
                    "OK: entry {} is in {} size {} root {}\nentry: {}",
                    proof.index,
                    cp.origin,
                    cp.size,
                    B64.encode(cp.root),
                    proof.entry
                )
                .map_err(io_err(Path::new("<stdout>")));
            }
            let (Some(index), Some(dir)) = (index, dir) else {
                return Err(AuditCmdError::Usage("give N and --dir, or --check".into()));
            };
            let proof = open(&dir, &key)?.prove(index)?;
            write_json(out, file.as_deref(), &proof)
        }
        AuditCommand::Consistency {
            old_size,
            dir,
            key,
            check,
            out: file,
        } => {
            let key = key.load()?;
            if let Some(check) = check {
                let proof: ConsistencyProof = read_proof(&check)?;
                let (old, new) = verify::check_consistency(&proof, &key)?;
                return writeln!(
                    out,
                    "OK: {} size {} root {} is a prefix of size {} root {}",
                    new.origin,
                    old.size,
                    B64.encode(old.root),
                    new.size,
                    B64.encode(new.root)
                )
                .map_err(io_err(Path::new("<stdout>")));
            }
            let (Some(old_size), Some(dir)) = (old_size, dir) else {
                return Err(AuditCmdError::Usage(
                    "give OLD_SIZE and --dir, or --check".into(),
                ));
            };
            let proof = open(&dir, &key)?.prove_consistency(old_size)?;
            write_json(out, file.as_deref(), &proof)
        }
        AuditCommand::Search {
            dir,
            key,
            since,
            until,
            kind,
            subject,
            tenant,
            target,
            limit,
        } => {
            let key = key.load()?;
            let mut query = Query::new();
            query.since = since
                .as_deref()
                .map(|s| parse_time("--since", s))
                .transpose()?;
            query.until = until
                .as_deref()
                .map(|s| parse_time("--until", s))
                .transpose()?;
            query.kind = kind.map(|k| parse_kind(&k)).transpose()?;
            query.subject = subject.map(|s| parse_pseudonym(&s)).transpose()?;
            query.tenant = tenant;
            query.target = target;
            let reader = open(&dir, &key)?;
            let mut w = BufWriter::new(out);
            write_lines(
                &reader,
                &mut w,
                |entry| Event::from_entry(entry).is_ok_and(|ev| query.matches(&ev)),
                limit,
            )?;
            w.flush().map_err(io_err(Path::new("<stdout>")))
        }
        AuditCommand::Export {
            dir,
            key,
            out: file,
        } => {
            let key = key.load()?;
            let reader = open(&dir, &key)?;
            match file {
                None => {
                    let mut w = BufWriter::new(out);
                    write_lines(&reader, &mut w, |_| true, None)?;
                    w.flush().map_err(io_err(Path::new("<stdout>")))
                }
                Some(path) => {
                    let n = export_to_file(&reader, &path)?;
                    writeln!(
                        out,
                        "exported {n} entries of {} size {} to {}",
                        reader.checkpoint().origin,
                        reader.checkpoint().size,
                        path.display()
                    )
                    .map_err(io_err(Path::new("<stdout>")))
                }
            }
        }
    }
}

/// What `verify` was pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Dir(PathBuf),
    /// The base URL, without a trailing `/`.
    Url(String),
}

impl Source {
    fn parse(s: &str) -> Result<Self, AuditCmdError> {
        let lower = s.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            if lower.contains("://") {
                return Err(AuditCmdError::Usage(format!(
                    "{s}: only http:// and https:// URLs are supported"
                )));
            }
            return Ok(Self::Dir(PathBuf::from(s)));
        }
        let uri: Uri = s
            .parse()
            .map_err(|e| AuditCmdError::Usage(format!("{s}: not a valid URL: {e}")))?;
        if uri.authority().is_none() {
            return Err(AuditCmdError::Usage(format!("{s}: the URL has no host")));
        }
        if uri.query().is_some() || s.contains('#') {
            return Err(AuditCmdError::Usage(format!(
                "{s}: give the base URL of the log, without a query or fragment"
            )));
        }
        Ok(Self::Url(s.trim_end_matches('/').to_owned()))
    }
}

fn existing_dir(dir: &Path) -> Result<PathBuf, AuditCmdError> {
    if dir.is_dir() {
        Ok(dir.to_owned())
    } else {
        Err(AuditCmdError::Usage(format!(
            "{}: not a log directory",
            dir.display()
        )))
    }
}

fn open(dir: &Path, key: &VerifierKey) -> Result<LogReader, AuditCmdError> {
    Ok(LogReader::open(&existing_dir(dir)?, key)?)
}

fn write_summary(out: &mut dyn Write, source: &str, r: &VerifyReport) -> io::Result<()> {
    let cp = &r.checkpoint;
    writeln!(out, "OK: {source}")?;
    writeln!(out, "origin: {}", cp.origin)?;
    writeln!(out, "size: {}", cp.size)?;
    writeln!(out, "root: {}", B64.encode(cp.root))?;
    writeln!(out, "entries re-hashed: {}", r.entries)?;
    writeln!(out, "hash tiles compared: {}", r.tiles_compared())?;
    writeln!(
        out,
        "checkpoints checked: {} in checkpoints.jsonl (signature, order, root), plus the current one",
        r.history
    )?;
    if let Some((index, reason)) = r.unreadable.first() {
        writeln!(
            out,
            "warning: {} entries are in the tree but are not events of a known schema (first: entry {index}: {reason})",
            r.unreadable.len()
        )?;
    }
    Ok(())
}

fn read_proof<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AuditCmdError> {
    let mut text = String::new();
    if path == Path::new("-") {
        io::stdin()
            .read_to_string(&mut text)
            .map_err(io_err(path))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| AuditCmdError::Usage(format!("{}: {e}", path.display())))?;
    }
    serde_json::from_str(&text).map_err(|e| {
        AuditCmdError::Failed(VerifyError::MalformedProof(format!(
            "{}: {e}",
            path.display()
        )))
    })
}

fn write_json<T: serde::Serialize>(
    out: &mut dyn Write,
    file: Option<&Path>,
    value: &T,
) -> Result<(), AuditCmdError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| io_err(Path::new("<json>"))(io::Error::other(e)))?;
    text.push('\n');
    match file {
        None => out
            .write_all(text.as_bytes())
            .map_err(io_err(Path::new("<stdout>"))),
        Some(path) => std::fs::write(path, text).map_err(io_err(path)),
    }
}

/// Writes one export line for every entry `keep` accepts, at most `limit`
/// of them. Returns the count.
fn write_lines(
    reader: &LogReader,
    out: &mut dyn Write,
    mut keep: impl FnMut(&[u8]) -> bool,
    limit: Option<usize>,
) -> Result<u64, AuditCmdError> {
    let limit = limit.map_or(u64::MAX, |l| l as u64);
    let mut count = 0u64;
    let mut failed = None;
    reader.for_each_entry(|index, entry| {
        if count >= limit {
            return false;
        }
        if !keep(entry) {
            return true;
        }
        if let Err(e) = out.write_all(export_line(index, entry).as_bytes()) {
            failed = Some(e);
            return false;
        }
        count += 1;
        count < limit
    })?;
    match failed {
        Some(e) => Err(io_err(Path::new("<stdout>"))(e)),
        None => Ok(count),
    }
}

/// `{"event":…,"index":N,"leaf_hash":"…"}\n`, as [`LogReader::export`].
fn export_line(index: u64, entry: &[u8]) -> String {
    let event: serde_json::Value = serde_json::from_slice(entry)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(entry).into()));
    let v = serde_json::json!({
        "index": index,
        "leaf_hash": B64.encode(merkle::leaf_hash(entry)),
        "event": event,
    });
    format!("{v}\n")
}

/// Exports into `path` through a temporary sibling that is renamed into
/// place only when every entry was written, so a failed export never
/// leaves a truncated file that looks complete.
fn export_to_file(reader: &LogReader, path: &Path) -> Result<u64, AuditCmdError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    let tmp = path.with_file_name(name);
    let result = (|| {
        let f = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::new(f);
        let n = write_lines(reader, &mut w, |_| true, None).map_err(|e| with_path(e, &tmp))?;
        w.into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn with_path(e: AuditCmdError, path: &Path) -> AuditCmdError {
    match e {
        AuditCmdError::Io { source, .. } => AuditCmdError::Io {
            path: path.to_owned(),
            source,
        },
        other => other,
    }
}

fn parse_kind(k: &str) -> Result<String, AuditCmdError> {
    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuditCmdError::Usage(format!(
            "--kind {k:?}: give an event kind such as `authn.login`, or a prefix such as `authn.`"
        )));
    }
    Ok(k.to_owned())
}

/// Accepts `p<version>:<8 hex>:<hex>`, the shape of every pseudonym, so a
/// clear-text identifier given by mistake is refused rather than silently
/// matching nothing.
fn parse_pseudonym(s: &str) -> Result<String, AuditCmdError> {
    let mut parts = s.split(':');
    let ok = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(v), Some(id), Some(mac), None) => {
            v.len() > 1
                && v.starts_with('p')
                && v[1..].bytes().all(|b| b.is_ascii_digit())
                && id.len() == 8
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && !mac.is_empty()
                && mac.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => false,
    };
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(AuditCmdError::Usage(format!(
            "--subject: {s:?} is not a pseudonym (`p1:<key id>:<hex>`); subjects are never \
             logged in clear, compute the pseudonym with the pseudonymisation key"
        )))
    }
}

/// Turns a `--since`/`--until` value into a string that compares correctly
/// with event times (`YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC):
/// - a date or date prefix (`2026`, `2026-11`, `2026-11-26`) is kept as a
///   UTC prefix;
/// - a date and time (`2026-11-26T05:00`, seconds and fraction optional,
///   `Z`, `±HH:MM` or no offset for UTC) is converted to UTC and written in
///   full with milliseconds (finer fractions are cut).
fn parse_time(flag: &str, s: &str) -> Result<String, AuditCmdError> {
    let bad = |why: &str| {
        AuditCmdError::Usage(format!(
            "{flag} {s:?}: {why}; use RFC 3339 (`2026-11-26T05:00:00+01:00`, `2026-11-26T04:00:00Z`) \
             or a UTC date prefix (`2026-11-26`, `2026-11`)"
        ))
    };
    let num = |t: &str, lo: u32, hi: u32| -> Option<u32> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok().filter(|v| (lo..=hi).contains(v))
    };
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let year = d
        .next()
        .filter(|y| y.len() == 4)
        .and_then(|y| num(y, 0, 9999))
        .ok_or_else(|| bad("the year must have 4 digits"))?;
    let month = d
        .next()
        .map(|m| {
            num(m, 1, 12)
                .filter(|_| m.len() == 2)
                .ok_or_else(|| bad("bad month"))
        })
        .transpose()?;
    let day = d
        .next()
        .map(|x| {
            month
                .and_then(|m| num(x, 1, days_in_month(year, m)))
                .filter(|_| x.len() == 2)
                .ok_or_else(|| bad("bad day"))
        })
        .transpose()?;
    if d.next().is_some() {
        return Err(bad("too many date fields"));
    }
    let Some(time) = time else {
        return Ok(date.to_owned());
    };
    let (Some(month), Some(day)) = (month, day) else {
        return Err(bad("a time needs a full date"));
    };
    // Split off the offset.
    let (clock, offset_min) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..]
            .split_once(':')
            .ok_or_else(|| bad("the offset must be ±HH:MM"))?;
        let h = num(h, 0, 23).ok_or_else(|| bad("bad offset hours"))?;
        let m = num(m, 0, 59).ok_or_else(|| bad("bad offset minutes"))?;
        (c, sign * i64::from(h * 60 + m))
    } else {
        (time, 0)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let field = |x: Option<&str>, hi: u32, what: &str| {
        x.filter(|v| v.len() == 2)
            .and_then(|v| num(v, 0, hi))
            .ok_or_else(|| bad(what))
    };
    let hour = field(t.next(), 23, "bad hour")?;
    let minute = field(t.next(), 59, "bad minute")?;
    let second = match t.next() {
        Some(x) => field(Some(x), 60, "bad second")?,
        None => 0,
    };
    if t.next().is_some() {
        return Err(bad("too many time fields"));
    }
    let millis = match frac {
        None => 0,
        Some(f) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("bad fraction of a second"));
            }
            let mut ms = f.to_owned();
            ms.truncate(3);
            while ms.len() < 3 {
                ms.push('0');
            }
            num(&ms, 0, 999).ok_or_else(|| bad("bad fraction of a second"))?
        }
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_min * 60;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(bad("the year is out of range"));
    }
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

// ---------------------------------------------------------------------------
// verify URL: mirror the published files, then verify the copy offline.

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A directory that is removed on drop unless it was given by the user.
struct Mirror {
    path: PathBuf,
    remove: bool,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Mirror {
    fn new(keep: Option<&Path>) -> Result<Self, AuditCmdError> {
        if let Some(dir) = keep {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            let empty = std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .next()
                .is_none();
            if !empty {
                return Err(AuditCmdError::Usage(format!(
                    "--mirror {}: the directory is not empty",
                    dir.display()
                )));
            }
            return Ok(Self {
                path: dir.to_owned(),
                remove: false,
            });
        }
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| io_err(Path::new("<random>"))(io::Error::other("no randomness")))?;
        let name = format!(
            "stadttor-audit-{}-{}",
            std::process::id(),
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let path = std::env::temp_dir().join(name);
        // create_dir, not create_dir_all: refuses a directory planted in advance.
        std::fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(Self { path, remove: true })
    }
}

fn verify_url(
    base: &str,
    key: &VerifierKey,
    ca: Option<&Path>,
    keep: Option<&Path>,
) -> Result<VerifyReport, AuditCmdError> {
    let https = base.to_ascii_lowercase().starts_with("https://");
    if ca.is_some() && !https {
        return Err(AuditCmdError::Usage(
            "--ca applies only to an https URL".into(),
        ));
    }
    let tls = client_tls(ca, https)?;
    let mirror = Mirror::new(keep)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err(Path::new("<tokio runtime>")))?;
    rt.block_on(download(base, key, tls, &mirror.path))?;
    Ok(verify::verify_dir(&mirror.path, key)?)
}

fn client_tls(ca: Option<&Path>, https: bool) -> Result<ClientConfig, AuditCmdError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let path = match ca {
            Some(p) => p.to_owned(),
            None => SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    AuditCmdError::Usage(
                        "no system CA bundle found; give the server's CA with --ca FILE".into(),
                    )
                })?,
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| AuditCmdError::Usage(format!("--ca {}: {e}", path.display())))?;
        for c in CertificateDer::pem_slice_iter(&bytes) {
            let c = c.map_err(|e| AuditCmdError::Usage(format!("--ca {}: {e}", path.display())))?;
            // A system bundle may hold a certificate rustls cannot use;
            // skip it there, but refuse it in a file the auditor chose.
            if let Err(e) = roots.add(c) {
                if ca.is_some() {
                    return Err(AuditCmdError::Usage(format!(
                        "--ca {}: unusable CA certificate: {e}",
                        path.display()
                    )));
                }
            }
        }
        if roots.is_empty() {
            return Err(AuditCmdError::Usage(format!(
                "--ca {}: no PEM certificate found",
                path.display()
            )));
        }
    }
    let provider = Arc::new(crate::tls::bsi_provider(true));
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AuditCmdError::Usage(format!("TLS client configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One file to download: its path relative to the log root, the path to
/// fall back to on 404 (the full tile for a partial one), and a size limit.
struct Job {
    rel: String,
    fallback: Option<String>,
    limit: u64,
}

async fn download(
    base: &str,
    key: &VerifierKey,
    tls: ClientConfig,
    dir: &Path,
) -> Result<(), AuditCmdError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector);
    let fetch = Fetch { client, base, dir };

    // The history first: the writer appends to it only after replacing
    // `checkpoint`, so it never names a size above the checkpoint fetched
    // next, even while the log grows. It may be absent.
    fetch.get(HISTORY_FILE, HISTORY_LIMIT).await?;
    if fetch.get(CHECKPOINT_FILE, CHECKPOINT_LIMIT).await? == Got::NotFound {
        return Err(AuditCmdError::Missing {
            url: fetch.url(CHECKPOINT_FILE),
        });
    }
    // Authenticate the checkpoint before downloading anything it sizes.
    let path = dir.join(CHECKPOINT_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let cp = note::verify_checkpoint(&text, key).map_err(|source| VerifyError::Checkpoint {
        what: fetch.url(CHECKPOINT_FILE),
        source,
    })?;

    let jobs = tile_jobs(cp.size);
    futures_util::stream::iter(jobs.into_iter().map(Ok))
        .try_for_each_concurrent(PARALLEL_DOWNLOADS, |job| {
            let fetch = &fetch;
            async move {
                if fetch.get(&job.rel, job.limit).await? == Got::Stored {
                    return Ok(());
                }
                // A partial tile is deleted once its full tile exists (the
                // log grew while we downloaded): the verifier truncates it.
                if let Some(full) = &job.fallback {
                    if fetch.get(full, job.limit).await? == Got::Stored {
                        return Ok(());
                    }
                }
                Err(AuditCmdError::Missing {
                    url: fetch.url(&job.rel),
                })
            }
        })
        .await
}

const CHECKPOINT_FILE: &str = "checkpoint";
const HISTORY_FILE: &str = "checkpoints.jsonl";

/// Every entry bundle and hash tile of a tree of `size` leaves.
fn tile_jobs(size: u64) -> Vec<Job> {
    let bundle_limit = tiles::TILE_WIDTH * (2 + tiles::MAX_ENTRY_LEN as u64);
    let mut jobs = Vec::new();
    for n in 0..tiles::tile_count(0, size) {
        let width = tiles::tile_width(0, n, size);
        let rel = tiles::entries_path(n, width);
        let full = tiles::entries_path(n, 0);
        jobs.push(Job {
            fallback: (full != rel).then_some(full),
            rel,
            limit: bundle_limit,
        });
    }
    let mut level = 0u8;
    while level < 8 && tiles::tile_count(level, size) > 0 {
        for n in 0..tiles::tile_count(level, size) {
            let width = tiles::tile_width(level, n, size);
            let rel = tiles::tile_path(level, n, width);
            let full = tiles::tile_path(level, n, 0);
            jobs.push(Job {
                fallback: (full != rel).then_some(full),
                rel,
                limit: tiles::TILE_WIDTH * 32,
            });
        }
        level += 1;
    }
    jobs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Stored,
    NotFound,
}

struct Fetch<'a> {
    client: HttpClient,
    base: &'a str,
    dir: &'a Path,
}

impl Fetch<'_> {
    fn url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    /// Downloads `rel` into the mirror (streamed, at most `limit` bytes).
    async fn get(&self, rel: &str, limit: u64) -> Result<Got, AuditCmdError> {
        let url = self.url(rel);
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| AuditCmdError::Fetch {
            url: url.clone(),
            source,
        };
        let dest = self.dir.join(rel);
        let idle = || fail(format!("no answer for {} s", IDLE_TIMEOUT.as_secs()).into());
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| fail(e.into()))?;
        let req = http::Request::get(uri)
            .header(
                http::header::USER_AGENT,
                concat!("stadttor-audit/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.into()))?;
        let resp = tokio::time::timeout(IDLE_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| idle())?
            .map_err(|e| fail(e.into()))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(Got::NotFound),
            s => return Err(fail(format!("HTTP status {s}").into())),
        }
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_err(parent))?;
        }
        let mut file = tokio::fs::File::create(&dest)
            .await
            .map_err(io_err(&dest))?;
        let mut body = resp.into_body();
        let mut len = 0u64;
        while let Some(frame) = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| idle())?
        {
            let frame = frame.map_err(|e| fail(e.into()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len() as u64;
            if len > limit {
                return Err(fail(
                    format!("larger than the {limit} bytes such a file can have").into(),
                ));
            }
            file.write_all(&data).await.map_err(io_err(&dest))?;
        }
        file.flush().await.map_err(io_err(&dest))?;
        Ok(Got::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_compare_like_event_times() {
        let t = |s| parse_time("--since", s).unwrap();
        assert_eq!(t("2026"), "2026");
        assert_eq!(t("2026-11"), "2026-11");
        assert_eq!(t("2026-11-26"), "2026-11-26");
        assert_eq!(t("2026-11-26T05:00"), "2026-11-26T05:00:00.000Z");
        assert_eq!(t("2026-11-26T05:00:00Z"), "2026-11-26T05:00:00.000Z");
        assert_eq!(t("2026-11-26t05:00:00.5z"), "2026-11-26T05:00:00.500Z");
        assert_eq!(t("2026-11-26T05:00:00.123456Z"), "2026-11-26T05:00:00.123Z");
        // Local time is converted, across a day and a year boundary.
        assert_eq!(t("2026-11-26T05:00:00+01:00"), "2026-11-26T04:00:00.000Z");
        assert_eq!(t("2027-01-01T00:30:00+01:00"), "2026-12-31T23:30:00.000Z");
        assert_eq!(t("2024-02-28T23:00:00-01:30"), "2024-02-29T00:30:00.000Z");
        // A full time with `Z` but no milliseconds must not exclude events
        // in that second: ".123Z" sorts before "Z".
        assert!("2026-11-26T05:00:00.123Z" >= t("2026-11-26T05:00:00Z").as_str());
        for bad in [
            "",
            "26-11-2026",
            "2026-13",
            "2026-02-30",
            "2026-11-26T25:00",
            "2026-11-26T05",
            "2026-11-26T05:00+1",
            "2026-11T05:00",
            "yesterday",
            "2026-11-26T05:00:00.Z",
        ] {
            assert!(parse_time("--since", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1_000_000i64, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m as u32, d as u32), days);
        }
    }

    #[test]
    fn pseudonyms_only() {
        let p = "p1:3f1c9a2e:6b0d0a";
        assert_eq!(parse_pseudonym(p).unwrap(), p);
        for bad in [
            "alice",
            "p1:xyz:00",
            "p:3f1c9a2e:00",
            "p1:3f1c9a2e:",
            "p1:3f1c9a2e:00:00",
        ] {
            assert!(parse_pseudonym(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources() {
        assert_eq!(
            Source::parse("/var/lib/stadttor/audit").unwrap(),
            Source::Dir("/var/lib/stadttor/audit".into())
        );
        assert_eq!(
            Source::parse("https://audit.example/gw1/").unwrap(),
            Source::Url("https://audit.example/gw1".into())
        );
        for bad in ["ftp://x/", "https://", "https://x/?a=b", "https://x/#f"] {
            let e = Source::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), EXIT_USAGE, "{bad}: {e}");
        }
    }

    #[test]
    fn tiles_to_download() {
        let paths = |n| -> Vec<String> { tile_jobs(n).into_iter().map(|j| j.rel).collect() };
        assert!(paths(0).is_empty());
        assert_eq!(paths(3), ["tile/entries/000.p/3", "tile/0/000.p/3"]);
        assert_eq!(
            paths(513),
            [
                "tile/entries/000",
                "tile/entries/001",
                "tile/entries/002.p/1",
                "tile/0/000",
                "tile/0/001",
                "tile/0/002.p/1",
                "tile/1/000.p/2",
            ]
        );
    }
}
