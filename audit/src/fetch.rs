//! Mirrors a published log from an `http://` or `https://` static file
//! server into a local directory, for the offline verifier (feature
//! `fetch`; without it this crate opens no socket).
//!
//! [`mirror`] downloads `checkpoints.jsonl` (it may be absent), then
//! `checkpoint`, checks the checkpoint's signature with the verifier key,
//! and only then the entry bundles and hash tiles of the signed size, so a
//! wrong key or a forged checkpoint fails fast and the download is bounded
//! by a signed size. Nothing downloaded is trusted: run
//! [`verify::verify_dir`](crate::verify::verify_dir) on the copy.
//!
//! The caller chooses the TLS client configuration (trust anchors,
//! protocol versions, cipher suites); every file is streamed to disk with
//! a size limit and an idle timeout.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use tokio::io::AsyncWriteExt as _;

use crate::note::{self, VerifierKey};
use crate::store::{CHECKPOINT, HISTORY};
use crate::tiles;
use crate::verify::VerifyError;

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

/// Why a log could not be mirrored.
///
/// Deliberately not `#[non_exhaustive]`: a caller mapping these to exit
/// codes should have to decide about a new kind of failure.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The checkpoint's signature does not verify with the key.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A file the signed checkpoint needs is missing on the server.
    #[error("{url}: not found (HTTP 404), the published log is incomplete")]
    Missing {
        /// The file's URL.
        url: String,
    },
    /// A download failed (network, TLS, HTTP status, size limit).
    #[error("{url}: {}", Chain(.source.as_ref()))]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Downloads the log published under `base` (no trailing `/`) into `dir`,
/// blocking the calling thread; see the module documentation for the order.
pub fn mirror(
    base: &str,
    key: &VerifierKey,
    tls: ClientConfig,
    dir: &Path,
) -> Result<(), FetchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err(Path::new("<tokio runtime>")))?;
    rt.block_on(download(base, key, tls, dir))
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The asynchronous [`mirror`], on the caller's Tokio runtime.
pub async fn download(
    base: &str,
    key: &VerifierKey,
    tls: ClientConfig,
    dir: &Path,
) -> Result<(), FetchError> {
    let fetch = Fetch {
        client: client(tls),
        base,
        dir,
    };

    // The history first: the writer appends to it only after replacing
    // `checkpoint`, so it never names a size above the checkpoint fetched
    // next, even while the log grows. It may be absent.
    fetch.get(HISTORY, HISTORY_LIMIT).await?;
    if fetch.get(CHECKPOINT, CHECKPOINT_LIMIT).await? == Got::NotFound {
        return Err(FetchError::Missing {
            url: fetch.url(CHECKPOINT),
        });
    }
    // Authenticate the checkpoint before downloading anything it sizes.
    let path = dir.join(CHECKPOINT);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let cp = note::verify_checkpoint(&text, key).map_err(|source| VerifyError::Checkpoint {
        what: fetch.url(CHECKPOINT),
        source,
    })?;

    futures_util::stream::iter(tile_jobs(cp.size).into_iter().map(Ok))
        .try_for_each_concurrent(PARALLEL_DOWNLOADS, |job| {
            let fetch = &fetch;
            async move { fetch.job(&job).await }
        })
        .await
}

fn client(tls: ClientConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// One file to download: its path relative to the log root, the path to
/// fall back to on 404 (the full tile for a partial one), and a size limit.
#[derive(Debug)]
struct Job {
    rel: String,
    fallback: Option<String>,
    limit: u64,
}

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

    /// Downloads a tile or bundle, or the full one it became.
    async fn job(&self, job: &Job) -> Result<(), FetchError> {
        if self.get(&job.rel, job.limit).await? == Got::Stored {
            return Ok(());
        }
        // A partial tile is deleted once its full tile exists (the
        // log grew while we downloaded): the verifier truncates it.
        if let Some(full) = &job.fallback {
            if self.get(full, job.limit).await? == Got::Stored {
                return Ok(());
            }
        }
        Err(FetchError::Missing {
            url: self.url(&job.rel),
        })
    }

    /// Downloads `rel` into the mirror (streamed, at most `limit` bytes).
    async fn get(&self, rel: &str, limit: u64) -> Result<Got, FetchError> {
        let url = self.url(rel);
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| FetchError::Http {
            url: url.clone(),
            source,
        };
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
        let dest = self.dir.join(rel);
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

    #[test]
    fn partial_tiles_fall_back_to_full_ones() {
        let jobs = tile_jobs(3);
        assert_eq!(jobs[0].fallback.as_deref(), Some("tile/entries/000"));
        assert_eq!(jobs[1].fallback.as_deref(), Some("tile/0/000"));
        // A full tile has nothing to fall back to; its level-1 parent
        // (one hash) is partial.
        let jobs = tile_jobs(256);
        assert!(jobs[..2].iter().all(|j| j.fallback.is_none()));
        assert_eq!(jobs[2].rel, "tile/1/000.p/1");
        assert_eq!(jobs[2].fallback.as_deref(), Some("tile/1/000"));
    }

    #[test]
    fn chain_skips_repeated_causes() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("connect: refused", Some(Box::new(E("refused", None))));
        assert_eq!(Chain(&e).to_string(), "connect: refused");
        let e = E("tls", Some(Box::new(E("bad certificate", None))));
        assert_eq!(Chain(&e).to_string(), "tls: bad certificate");
    }
}
