//! `stadttor audit …`: the auditor's commands, a thin layer over
//! [`stadttor_audit::verify`] (and [`stadttor_audit::fetch`] for a URL).
//!
//! | command | library call |
//! |---|---|
//! | `verify DIR\|URL` | [`verify::verify_dir`] (a URL is first mirrored into a temporary directory by [`fetch::mirror`]) |
//! | `prove N --dir DIR` | [`LogReader::prove`]; `prove --check FILE`: [`verify::check_inclusion`] |
//! | `consistency OLD_SIZE --dir DIR` | [`LogReader::prove_consistency`]; `--check FILE`: [`verify::check_consistency`] |
//! | `search --dir DIR …` | [`LogReader::for_each_entry`] filtered by a [`Query`] (times by [`time::parse_bound`]) |
//! | `export --dir DIR` | [`LogReader::for_each_entry`], the same lines as [`LogReader::export`] |
//!
//! Every command needs the log's public verifier key (`--key` or
//! `--key-file`) and nothing else: no key store, no configuration. Only
//! `verify URL` uses the network, and only to download the published files
//! (`checkpoints.jsonl`, then `checkpoint`, then the tiles of the signed
//! size); everything is checked offline afterwards. The checkpoint's
//! signature is checked before any tile is downloaded, so a wrong key or a
//! forged checkpoint fails fast and bounds the download by a signed size.
//! This file adds the TLS client for an `https` URL: the gateway's BSI TLS
//! profile with the auditor's `--ca` or the system bundle.
//!
//! `search` and `export` print one JSON object per line,
//! `{"event":{…},"index":N,"leaf_hash":"base64"}`, the format of
//! [`LogReader::export`]; they read the entries of the signed checkpoint
//! but do not re-verify them (run `verify` first).
//!
//! Exit codes are an interface (see [`AuditCmdError::exit`]): 0 the
//! check passed, 2 the log or proof failed verification (the first problem
//! is printed), 64 the command line cannot be used, 1 anything else
//! (network, local I/O).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use http::Uri;
use stadttor_audit::event::Event;
use stadttor_audit::fetch::FetchError;
use stadttor_audit::merkle;
use stadttor_audit::note::VerifierKey;
use stadttor_audit::time;
use stadttor_audit::verify::{
    self, ConsistencyProof, InclusionProof, LogReader, Query, VerifyError, VerifyReport,
};

use super::Exit;

mod operator;
mod remote;
use remote::verify_url;

const EXIT_CODES: &str = "Exit codes: 0 success; 2 verification failed (the first problem is \
printed); 64 unusable command line (bad key, path, URL or CA file); 1 other errors (network, I/O).";

/// `stadttor audit …`: check and query a published audit log offline.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
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
    /// Operator: print the log's public verifier key (for auditors'
    /// `--key`), from the configuration's `[audit] key` in the key store.
    Key(operator::KeyArgs),
    /// Operator: print the pseudonym under which a subject's events are
    /// recorded (for `search --subject`; a GDPR access request), computed
    /// with the configuration's `[audit] pseudonym_key_file`.
    Pseudonym(operator::PseudonymArgs),
}

/// The log's public verifier key, given inline or in a file.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeyArgs {
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

/// Errors of the audit commands; [`AuditCmdError::exit`] maps them to
/// the documented exit codes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditCmdError {
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
    /// The gateway's configuration (`audit key`, `audit pseudonym`) cannot
    /// be used.
    #[error("{0}")]
    Config(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A download failed (network, TLS, HTTP status, size limit), or the
    /// downloaded files could not be stored.
    #[error(transparent)]
    Fetch(FetchError),
}

impl AuditCmdError {
    /// The process exit code: [`Exit::Rejected`] when the log or a proof
    /// does not verify, [`Exit::Usage`] for an unusable command line,
    /// [`Exit::Failure`] otherwise.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::Failed(VerifyError::OutOfRange(_)) | Self::Usage(_) => Exit::Usage,
            Self::Config(_) => Exit::Config,
            Self::Failed(_) | Self::Missing { .. } => Exit::Rejected,
            Self::Io { .. } | Self::Fetch(_) => Exit::Failure,
        }
    }
}

impl From<FetchError> for AuditCmdError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Verify(v) => Self::Failed(v),
            FetchError::Missing { url } => Self::Missing { url },
            e @ (FetchError::Http { .. } | FetchError::Io { .. }) => Self::Fetch(e),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuditCmdError + '_ {
    move |source| AuditCmdError::Io {
        path: path.to_owned(),
        source,
    }
}

fn stdout_err(e: io::Error) -> AuditCmdError {
    io_err(Path::new("<stdout>"))(e)
}

/// Runs `stadttor audit …` and prints a failure; returns the exit code.
pub(super) fn main(command: AuditCommand) -> Exit {
    match run(command, &mut io::stdout().lock()) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("stadttor audit: {e}");
            e.exit()
        }
    }
}

/// Runs one audit command, writing its results to `out`.
fn run(command: AuditCommand, out: &mut dyn Write) -> Result<(), AuditCmdError> {
    match command {
        AuditCommand::Verify {
            source,
            key,
            ca,
            mirror,
        } => verify_source(&source, &key.load()?, ca.as_deref(), mirror.as_deref(), out),
        AuditCommand::Prove {
            index,
            dir,
            key,
            check,
            out: file,
        } => {
            let key = key.load()?;
            match (check, index, dir) {
                (Some(check), _, _) => check_inclusion(&check, &key, out),
                (None, Some(index), Some(dir)) => {
                    let proof = open(&dir, &key)?.prove(index)?;
                    write_json(out, file.as_deref(), &proof)
                }
                _ => Err(AuditCmdError::Usage("give N and --dir, or --check".into())),
            }
        }
        AuditCommand::Consistency {
            old_size,
            dir,
            key,
            check,
            out: file,
        } => {
            let key = key.load()?;
            match (check, old_size, dir) {
                (Some(check), _, _) => check_consistency(&check, &key, out),
                (None, Some(old_size), Some(dir)) => {
                    let proof = open(&dir, &key)?.prove_consistency(old_size)?;
                    write_json(out, file.as_deref(), &proof)
                }
                _ => Err(AuditCmdError::Usage(
                    "give OLD_SIZE and --dir, or --check".into(),
                )),
            }
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
            query.since = since.as_deref().map(|s| bound("--since", s)).transpose()?;
            query.until = until.as_deref().map(|s| bound("--until", s)).transpose()?;
            query.kind = kind.map(|k| parse_kind(&k)).transpose()?;
            query.subject = subject.map(|s| parse_pseudonym(&s)).transpose()?;
            query.tenant = tenant;
            query.target = target;
            search(&open(&dir, &key)?, &query, limit, out)
        }
        AuditCommand::Export {
            dir,
            key,
            out: file,
        } => export(&open(&dir, &key.load()?)?, file.as_deref(), out),
        AuditCommand::Key(args) => {
            writeln!(out, "{}", operator::verifier_key(&args)?).map_err(stdout_err)
        }
        AuditCommand::Pseudonym(args) => {
            writeln!(out, "{}", operator::pseudonym(&args)?).map_err(stdout_err)
        }
    }
}

/// `verify DIR|URL`: the full check, then a summary.
fn verify_source(
    source: &str,
    key: &VerifierKey,
    ca: Option<&Path>,
    mirror: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), AuditCmdError> {
    let report = match Source::parse(source)? {
        Source::Dir(dir) => {
            if ca.is_some() || mirror.is_some() {
                return Err(AuditCmdError::Usage(
                    "--ca and --mirror apply only to an http(s) URL".into(),
                ));
            }
            verify::verify_dir(&existing_dir(&dir)?, key)?
        }
        Source::Url(base) => verify_url(&base, key, ca, mirror)?,
    };
    write_summary(out, source, &report).map_err(stdout_err)
}

/// `prove --check FILE`.
fn check_inclusion(
    check: &Path,
    key: &VerifierKey,
    out: &mut dyn Write,
) -> Result<(), AuditCmdError> {
    let proof: InclusionProof = read_proof(check)?;
    let cp = verify::check_inclusion(&proof, key)?;
    writeln!(
        out,
        "OK: entry {} is in {} size {} root {}\nentry: {}",
        proof.index,
        cp.origin,
        cp.size,
        B64.encode(cp.root),
        proof.entry
    )
    .map_err(stdout_err)
}

/// `consistency --check FILE`.
fn check_consistency(
    check: &Path,
    key: &VerifierKey,
    out: &mut dyn Write,
) -> Result<(), AuditCmdError> {
    let proof: ConsistencyProof = read_proof(check)?;
    let (old, new) = verify::check_consistency(&proof, key)?;
    writeln!(
        out,
        "OK: {} size {} root {} is a prefix of size {} root {}",
        new.origin,
        old.size,
        B64.encode(old.root),
        new.size,
        B64.encode(new.root)
    )
    .map_err(stdout_err)
}

/// `search`: the matching entries as JSON lines.
fn search(
    reader: &LogReader,
    query: &Query,
    limit: Option<usize>,
    out: &mut dyn Write,
) -> Result<(), AuditCmdError> {
    let mut w = BufWriter::new(out);
    write_lines(
        reader,
        &mut w,
        |entry| Event::from_entry(entry).is_ok_and(|ev| query.matches(&ev)),
        limit,
    )?;
    w.flush().map_err(stdout_err)
}

/// `export`: every entry as JSON lines, to stdout or into a file.
fn export(
    reader: &LogReader,
    file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), AuditCmdError> {
    match file {
        None => {
            let mut w = BufWriter::new(out);
            write_lines(reader, &mut w, |_| true, None)?;
            w.flush().map_err(stdout_err)
        }
        Some(path) => {
            let n = export_to_file(reader, path)?;
            writeln!(
                out,
                "exported {n} entries of {} size {} to {}",
                reader.checkpoint().origin,
                reader.checkpoint().size,
                path.display()
            )
            .map_err(stdout_err)
        }
    }
}

/// A `--since`/`--until` value as a bound that compares with event times.
fn bound(flag: &str, s: &str) -> Result<String, AuditCmdError> {
    time::parse_bound(s).map_err(|e| AuditCmdError::Usage(format!("{flag} {s:?}: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn time_bounds_are_usage_errors_naming_the_flag() {
        assert_eq!(
            bound("--until", "2026-11-26T05:00:00+01:00").unwrap(),
            "2026-11-26T04:00:00.000Z"
        );
        let e = bound("--since", "2026-13").unwrap_err();
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(
            e.to_string(),
            "--since \"2026-13\": bad month; use RFC 3339 (`2026-11-26T05:00:00+01:00`, \
             `2026-11-26T04:00:00Z`) or a UTC date prefix (`2026-11-26`, `2026-11`)"
        );
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
            assert_eq!(e.exit(), Exit::Usage, "{bad}: {e}");
        }
    }
}
