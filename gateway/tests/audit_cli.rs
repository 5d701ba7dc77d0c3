//! `stadttor audit …` on the real binary. An auditor holds a copy of the
//! log (or its URL) and the public verifier key, nothing else.
//!
//! Threat: whoever can write the served files (the gateway host, the web
//! server, the copy handed over) edits history, deletes an entry or
//! re-signs the log with a key of their own. `verify` must exit 2 and name
//! the problem; a clean log must verify with exit 0, from a directory and
//! over HTTP(S). Proofs printed by `prove`/`consistency` must check with
//! the library's key-less checkers and fail for another entry; `search`
//! and `export` must return exactly the expected entries.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stadttor_audit::event::{Event, Outcome, Pseudonymiser};
use stadttor_audit::note::{self, Checkpoint};
use stadttor_audit::tiles;
use stadttor_audit::verify::{self, ConsistencyProof, InclusionProof};
use stadttor_audit::{Log, LogConfig, VerifierKey};
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;
use testkit::{TempDir, TestPki};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");
const ORIGIN: &str = "audit.musterstadt.example/gw1";
/// Two full entry bundles and a partial one; checkpoints at 250, 520, 600.
const SIZE: u64 = 600;
const EXIT_FAILED: i32 = 2;
const EXIT_USAGE: i32 = 64;

// ---------------------------------------------------------------------------
// Helpers

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn stadttor(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("audit")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stadttor");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ed25519_key() -> Arc<dyn SigningKey> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Arc::new(FileKey::from_pkcs8("file:test".into(), pkcs8.as_ref()).unwrap())
}

fn verifier(key: &Arc<dyn SigningKey>) -> VerifierKey {
    VerifierKey::from_spki(ORIGIN, key.algorithm(), key.public_key_spki()).unwrap()
}

fn pseudonym(user: u64) -> String {
    Pseudonymiser::new(&[42; 32])
        .unwrap()
        .pseudonym("user", &format!("user{user}"))
        .as_str()
        .to_owned()
}

const KINDS: [&str; 3] = ["authn.login", "request", "policy.change"];

/// Event `i`: kind `KINDS[i % 3]`, subject `user{i % 10}`.
fn event(i: u64) -> Event {
    let p = Pseudonymiser::new(&[42; 32]).unwrap();
    Event::new(KINDS[(i % 3) as usize], Outcome::Success)
        .subject(p.pseudonym("user", &format!("user{}", i % 10)))
        .tenant("musterstadt")
        .target("route:buergerportal")
        .request_id(format!("req-{i}"))
        .attr("seq", i)
}

/// A log of [`SIZE`] events signed by a fresh Ed25519 key.
struct Fixture {
    dir: TempDir,
    key: Arc<dyn SigningKey>,
    vkey: String,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let key = ed25519_key();
        let mut config = LogConfig::new(dir.path(), ORIGIN);
        config.period = Duration::from_millis(50);
        let (log, _) = Log::open(config, key.clone()).unwrap();
        for i in 0..SIZE {
            log.append(&event(i)).unwrap();
            // Checkpoints at (at most) 100, then exactly 250 and 520: the
            // fork test needs a checkpoint before 250 in the history, and
            // the writer's first round may come after many appends.
            if i + 1 == 100 || i + 1 == 250 || i + 1 == 520 {
                log.flush(Duration::from_secs(30)).unwrap();
            }
        }
        assert_eq!(log.flush(Duration::from_secs(30)).unwrap(), SIZE);
        log.close().unwrap();
        let vkey = verifier(&key).to_string();
        Self { dir, key, vkey }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn vk(&self) -> VerifierKey {
        VerifierKey::parse(&self.vkey).unwrap()
    }

    fn checkpoint(&self) -> Checkpoint {
        let text = std::fs::read_to_string(self.dir.path().join("checkpoint")).unwrap();
        note::verify_checkpoint(&text, &self.vk()).unwrap()
    }

    fn history_len(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("checkpoints.jsonl"))
            .unwrap()
            .lines()
            .count()
    }

    /// Rewrites the entries of full bundle `n`.
    fn edit_bundle(&self, n: u64, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
        let path = self.dir.path().join(tiles::entries_path(n, 0));
        let bytes = std::fs::read(&path).unwrap();
        let (entries, clean) = tiles::decode_bundle(&bytes);
        assert!(clean);
        let mut entries: Vec<Vec<u8>> = entries.into_iter().map(<[u8]>::to_vec).collect();
        f(&mut entries);
        let out = tiles::encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
        std::fs::write(&path, out).unwrap();
    }

    fn verify(&self) -> Run {
        stadttor(&["verify", self.path(), "--key", &self.vkey])
    }
}

fn assert_failed(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(EXIT_FAILED), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(r.stderr.contains("FAILED"), "{r:?}");
    for n in needles {
        assert!(r.stderr.contains(n), "expected {n:?} in {r:?}");
    }
}

fn lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect()
}

fn indexes(r: &Run) -> Vec<u64> {
    assert_eq!(r.code, Some(0), "{r:?}");
    lines(&r.stdout)
        .iter()
        .map(|v| v["index"].as_u64().unwrap())
        .collect()
}

/// A static file server for a directory (HTTP/1.1, optionally TLS), on
/// port 0 in its own runtime; stops on drop. Records every path asked for.
struct FileServer {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl FileServer {
    fn start(root: &Path, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let root = root.to_owned();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let root = root.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve_file(root.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, _rt: rt }
    }
}

async fn serve_file(
    root: PathBuf,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().trim_start_matches('/');
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        Ok(r)
    };
    if path.split('/').any(|s| s == ".." || s.is_empty()) {
        return reply(StatusCode::BAD_REQUEST, Vec::new());
    }
    match std::fs::read(root.join(path)) {
        Ok(b) => reply(StatusCode::OK, b),
        Err(_) => reply(StatusCode::NOT_FOUND, Vec::new()),
    }
}

// ---------------------------------------------------------------------------
// verify

/// A clean log verifies: exit 0 and a summary naming the signed size and
/// root and the checkpoints checked.
#[test]
fn verify_clean_log() {
    let f = Fixture::new("audit-cli-ok");
    let r = f.verify();
    assert_eq!(r.code, Some(0), "{r:?}");
    let cp = f.checkpoint();
    assert!(r.stdout.contains(&format!("size: {SIZE}\n")), "{r:?}");
    let root = base64_root(&cp);
    assert!(r.stdout.contains(&format!("root: {root}\n")), "{r:?}");
    assert!(
        r.stdout.contains(&format!("entries re-hashed: {SIZE}\n")),
        "{r:?}"
    );
    // ≤100, 250, 520, 600.
    let h = f.history_len();
    assert!(h >= 4, "{h}");
    assert!(
        r.stdout.contains(&format!("checkpoints checked: {h} ")),
        "{r:?}"
    );

    // The key from a file works the same.
    let kf = f.dir.path().join("vkey.txt");
    std::fs::write(&kf, format!("{}\n", f.vkey)).unwrap();
    let r = stadttor(&["verify", f.path(), "--key-file", kf.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

fn base64_root(cp: &Checkpoint) -> String {
    // The body's third line is the base64 root.
    cp.body().lines().nth(2).unwrap().to_owned()
}

/// Threat: one byte of an entry is changed in its bundle. `verify` names
/// that entry.
#[test]
fn verify_names_a_flipped_entry_byte() {
    let f = Fixture::new("audit-cli-flip");
    f.edit_bundle(1, |entries| {
        let e = &mut entries[300 - 256];
        let at = e.len() / 2;
        e[at] ^= 0x01;
    });
    assert_failed(&f.verify(), &["entry 300", "changed"]);
}

/// Threat: a byte is changed in a partial hash tile that the checkpoint at
/// 520 published and the log still serves next to the current `002.p/88`.
#[test]
fn verify_names_a_flipped_byte_in_a_superseded_partial_tile() {
    let f = Fixture::new("audit-cli-partial");
    let tile = f.dir.path().join("tile/0/002.p/8");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&tile, bytes).unwrap();
    assert_failed(&f.verify(), &["tile/0/002.p/8", "superseded partial tile"]);
}

/// Threat: an entry is deleted from its bundle (the later ones move up).
#[test]
fn verify_names_a_removed_entry() {
    let f = Fixture::new("audit-cli-remove");
    f.edit_bundle(1, |entries| {
        entries.remove(300 - 256);
    });
    assert_failed(&f.verify(), &["entry 300"]);
}

/// Threat: the log is checked against, or re-signed with, a key that is
/// not the published one.
#[test]
fn verify_rejects_a_foreign_key() {
    let f = Fixture::new("audit-cli-foreign");
    let other = verifier(&ed25519_key()).to_string();

    // The auditor is handed a different key: nothing verifies.
    let r = stadttor(&["verify", f.path(), "--key", &other]);
    assert_failed(&r, &["checkpoint", "no signature from the trusted key"]);

    // The forger re-signs the checkpoint with their own key.
    let forger = ed25519_key();
    let mut cp = f.checkpoint();
    cp.size -= 1; // and tries to drop the last entry
    let forged = note::sign_checkpoint(&cp, ORIGIN, forger.as_ref()).unwrap();
    std::fs::write(f.dir.path().join("checkpoint"), forged).unwrap();
    assert_failed(&f.verify(), &["no signature from the trusted key"]);
}

/// Threat: a historical checkpoint is replaced by one of a forked tree,
/// still signed by the log key (a compromised key, or a rolled-back log).
#[test]
fn verify_rejects_a_forked_history() {
    let f = Fixture::new("audit-cli-fork");
    let hist = f.dir.path().join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&hist).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["size"] == 250 {
            let mut cp = note::verify_checkpoint(v["note"].as_str().unwrap(), &f.vk()).unwrap();
            cp.root[0] ^= 1;
            v["note"] = note::sign_checkpoint(&cp, ORIGIN, f.key.as_ref())
                .unwrap()
                .into();
            out.push_str(&format!("{v}\n"));
            assert!(i > 0);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&hist, out).unwrap();
    assert_failed(
        &f.verify(),
        &["checkpoint history line", "forked or rewritten"],
    );
}

/// Mistakes on the command line are 64, not "verification failed".
#[test]
fn verify_usage_errors_exit_64() {
    let f = Fixture::new("audit-cli-usage");
    for args in [
        vec!["verify", f.path(), "--key", "not-a-key"],
        vec!["verify", "/nonexistent/stadttor-audit", "--key", &f.vkey],
        vec!["verify", "ftp://example.invalid/log", "--key", &f.vkey],
        vec!["verify", f.path(), "--key-file", "/nonexistent/vkey"],
        vec![
            "verify",
            f.path(),
            "--key",
            &f.vkey,
            "--ca",
            "/etc/hostname",
        ],
    ] {
        let r = stadttor(&args);
        assert_eq!(r.code, Some(EXIT_USAGE), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("FAILED"), "{r:?}");
    }
    // clap's own usage errors are 64 too, never 2 (clap's default), which
    // would read as "verification failed".
    for args in [
        vec!["verify", f.path()],
        vec!["verify", f.path(), "--key", &f.vkey, "--no-such-flag"],
        vec!["prove", "minus-one", "--dir", f.path(), "--key", &f.vkey],
    ] {
        let r = stadttor(&args);
        assert_eq!(r.code, Some(EXIT_USAGE), "{args:?}: {r:?}");
    }
    // --help documents the exit codes.
    let r = stadttor(&["verify", "--help"]);
    assert!(r.stdout.contains("Exit codes"), "{r:?}");
}

/// The same log published by a static file server verifies by URL, over
/// HTTP and HTTPS (with `--ca`); a tile the server no longer has, or a
/// changed entry, fails with exit 2.
#[test]
fn verify_over_http_and_https() {
    let f = Fixture::new("audit-cli-http");
    let http = FileServer::start(f.dir.path(), None);
    let url = format!("http://{}/", http.addr);
    let r = stadttor(&["verify", &url, "--key", &f.vkey]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains(&format!("size: {SIZE}\n")), "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("root: {}\n", base64_root(&f.checkpoint()))),
        "{r:?}"
    );

    // --mirror keeps the downloaded copy, which verifies as a directory.
    let keep = TempDir::new("audit-cli-mirror");
    let mirror = keep.path().join("copy");
    let r = stadttor(&[
        "verify",
        &url,
        "--key",
        &f.vkey,
        "--mirror",
        mirror.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(mirror.join("checkpoint").is_file());
    let r = stadttor(&["verify", mirror.to_str().unwrap(), "--key", &f.vkey]);
    assert_eq!(r.code, Some(0), "{r:?}");

    // A foreign key fails before any tile is fetched.
    let other = verifier(&ed25519_key()).to_string();
    let r = stadttor(&["verify", &url, "--key", &other]);
    assert_failed(&r, &[&format!("{url}checkpoint"), "trusted key"]);

    // HTTPS with the server's CA.
    let dir = TempDir::new("audit-cli-pki");
    let pki = TestPki::new(&dir, "audit", &[]);
    let https = FileServer::start(f.dir.path(), Some(server_tls(&pki)));
    let url_tls = format!("https://localhost:{}", https.addr.port());
    let ca = pki.ca_path.to_str().unwrap();
    let r = stadttor(&["verify", &url_tls, "--key", &f.vkey, "--ca", ca]);
    assert_eq!(r.code, Some(0), "{r:?}");
    // Without the CA the server is not trusted: not verified, but not a
    // verdict on the log either (exit 1).
    let other_ca = TestPki::new(&dir, "other", &[]);
    let r = stadttor(&[
        "verify",
        &url_tls,
        "--key",
        &f.vkey,
        "--ca",
        other_ca.ca_path.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("certificate"), "{r:?}");

    // A changed entry is caught over HTTP too.
    f.edit_bundle(0, |entries| entries[7][20] ^= 0x20);
    let r = stadttor(&["verify", &url, "--key", &f.vkey]);
    assert_failed(&r, &["entry 7"]);

    // The server lost the last hash tile.
    std::fs::remove_dir_all(f.dir.path().join("tile/0/002.p")).unwrap();
    let r = stadttor(&["verify", &url, "--key", &f.vkey]);
    assert_failed(&r, &["tile/0/002.p/88", "404"]);
}

fn server_tls(pki: &TestPki) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&pki.server_chain)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    Arc::new(cfg)
}

// ---------------------------------------------------------------------------
// prove, consistency

/// `prove N` prints a proof that checks with `check_inclusion` (no
/// directory needed) and with `prove --check`; the same proof for another
/// entry's contents fails both.
#[test]
fn prove_prints_a_checkable_inclusion_proof() {
    let f = Fixture::new("audit-cli-prove");
    let vk = f.vk();
    let prove = |n: u64| -> InclusionProof {
        let r = stadttor(&["prove", &n.to_string(), "--dir", f.path(), "--key", &f.vkey]);
        assert_eq!(r.code, Some(0), "{r:?}");
        serde_json::from_str(&r.stdout).unwrap()
    };
    let p = prove(300);
    assert_eq!(p.index, 300);
    let cp = verify::check_inclusion(&p, &vk).unwrap();
    assert_eq!(cp.size, SIZE);
    let ev = Event::from_entry(p.entry.as_bytes()).unwrap();
    assert_eq!(ev.request_id.as_deref(), Some("req-300"));

    // The proof of 300 does not prove entry 301's contents at index 300.
    let q = prove(301);
    let mut forged = p.clone();
    forged.entry = q.entry.clone();
    forged.leaf_hash = q.leaf_hash.clone();
    assert!(verify::check_inclusion(&forged, &vk).is_err());
    // Nor entry 301 at its own index with 300's path.
    let mut moved = forged.clone();
    moved.index = 301;
    assert!(verify::check_inclusion(&moved, &vk).is_err());

    // The CLI checker agrees, and needs only the key.
    let tmp = TempDir::new("audit-cli-proofs");
    let good = tmp.path().join("good.json");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&good, serde_json::to_string(&p).unwrap()).unwrap();
    std::fs::write(&bad, serde_json::to_string(&forged).unwrap()).unwrap();
    let r = stadttor(&["prove", "--check", good.to_str().unwrap(), "--key", &f.vkey]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("OK: entry 300"), "{r:?}");
    let r = stadttor(&["prove", "--check", bad.to_str().unwrap(), "--key", &f.vkey]);
    assert_failed(&r, &["proof"]);
    std::fs::write(&bad, "{\"not\":\"a proof\"}").unwrap();
    let r = stadttor(&["prove", "--check", bad.to_str().unwrap(), "--key", &f.vkey]);
    assert_failed(&r, &["malformed proof"]);

    // --out writes the same proof to a file.
    let out = tmp.path().join("out.json");
    let r = stadttor(&[
        "prove",
        "5",
        "--dir",
        f.path(),
        "--key",
        &f.vkey,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let p: InclusionProof = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(verify::check_inclusion(&p, &vk).unwrap().size, SIZE);

    // An index past the checkpoint is a usage error.
    let r = stadttor(&[
        "prove",
        &SIZE.to_string(),
        "--dir",
        f.path(),
        "--key",
        &f.vkey,
    ]);
    assert_eq!(r.code, Some(EXIT_USAGE), "{r:?}");
}

/// `consistency OLD_SIZE` proves that an earlier checkpoint is a prefix of
/// the current one.
#[test]
fn consistency_proofs_check() {
    let f = Fixture::new("audit-cli-consistency");
    let r = stadttor(&["consistency", "250", "--dir", f.path(), "--key", &f.vkey]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let p: ConsistencyProof = serde_json::from_str(&r.stdout).unwrap();
    let (old, new) = verify::check_consistency(&p, &f.vk()).unwrap();
    assert_eq!((old.size, new.size), (250, SIZE));

    let tmp = TempDir::new("audit-cli-cproof");
    let file = tmp.path().join("c.json");
    std::fs::write(&file, &r.stdout).unwrap();
    let r = stadttor(&[
        "consistency",
        "--check",
        file.to_str().unwrap(),
        "--key",
        &f.vkey,
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let mut forged = p.clone();
    forged.hashes.swap(0, 1);
    std::fs::write(&file, serde_json::to_string(&forged).unwrap()).unwrap();
    let r = stadttor(&[
        "consistency",
        "--check",
        file.to_str().unwrap(),
        "--key",
        &f.vkey,
    ]);
    assert_failed(&r, &["proof"]);

    // A size that was never a checkpoint.
    let r = stadttor(&["consistency", "251", "--dir", f.path(), "--key", &f.vkey]);
    assert_eq!(r.code, Some(EXIT_USAGE), "{r:?}");
}

// ---------------------------------------------------------------------------
// search, export

/// Each filter finds exactly the entries it should.
#[test]
fn search_by_kind_subject_and_time() {
    let f = Fixture::new("audit-cli-search");
    let search = |extra: &[&str]| {
        let mut args = vec!["search", "--dir", f.path(), "--key", &f.vkey];
        args.extend_from_slice(extra);
        stadttor(&args)
    };
    let all: Vec<u64> = (0..SIZE).collect();
    let kind = |k: &str| -> Vec<u64> {
        all.iter()
            .copied()
            .filter(|i| KINDS[(*i % 3) as usize] == k)
            .collect()
    };

    assert_eq!(
        indexes(&search(&["--kind", "authn.login"])),
        kind("authn.login")
    );
    assert_eq!(indexes(&search(&["--kind", "authn."])), kind("authn.login"));
    assert_eq!(indexes(&search(&["--kind", "authn"])), Vec::<u64>::new());

    let s3 = pseudonym(3);
    let by_subject: Vec<u64> = all.iter().copied().filter(|i| i % 10 == 3).collect();
    assert_eq!(indexes(&search(&["--subject", &s3])), by_subject);
    let both: Vec<u64> = all.iter().copied().filter(|i| i % 30 == 3).collect();
    let r = search(&["--subject", &s3, "--kind", "authn.login"]);
    assert_eq!(indexes(&r), both);
    // Lines are the export format, with the event itself.
    let first = &lines(&r.stdout)[0];
    assert_eq!(first["event"]["subject"], s3.as_str());
    assert_eq!(first["event"]["kind"], "authn.login");
    assert!(first["leaf_hash"].is_string());

    assert_eq!(
        indexes(&search(&["--limit", "4", "--kind", "request"])),
        [1, 4, 7, 10]
    );

    // Time: the events were written just now.
    assert_eq!(indexes(&search(&["--since", "2000-01-01"])), all);
    assert_eq!(
        indexes(&search(&["--until", "2000-01-01T00:00:00+01:00"])),
        Vec::<u64>::new()
    );
    assert_eq!(indexes(&search(&["--since", "9999"])), Vec::<u64>::new());
    let t0 = lines(&search(&["--limit", "1"]).stdout)[0]["event"]["time"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        indexes(&search(&["--until", &t0, "--kind", "request"])),
        Vec::<u64>::new()
    );

    // A clear-text subject or a malformed time is refused, not "no match".
    for bad in [["--subject", "alice"], ["--since", "yesterday"]] {
        let r = search(&bad);
        assert_eq!(r.code, Some(EXIT_USAGE), "{bad:?}: {r:?}");
    }
}

/// `export` emits one JSON object per line, one per entry, in order.
#[test]
fn export_writes_every_entry() {
    let f = Fixture::new("audit-cli-export");
    let r = stadttor(&["export", "--dir", f.path(), "--key", &f.vkey]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v = lines(&r.stdout);
    assert_eq!(v.len() as u64, SIZE);
    for (i, line) in v.iter().enumerate() {
        assert!(line.is_object());
        assert_eq!(line["index"], i as u64);
        assert_eq!(line["event"]["request_id"], format!("req-{i}"));
    }

    let tmp = TempDir::new("audit-cli-export-out");
    let out = tmp.path().join("log.jsonl");
    let r = stadttor(&[
        "export",
        "--dir",
        f.path(),
        "--key",
        &f.vkey,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains(&format!("exported {SIZE} entries")),
        "{r:?}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count() as u64, SIZE);
    assert_eq!(lines(&text), v);

    // An export that fails half-way leaves no file that looks complete.
    let bundle = f.dir.path().join(tiles::entries_path(2, SIZE - 512));
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(&bundle, &bytes[..bytes.len() / 2]).unwrap();
    let broken = tmp.path().join("broken.jsonl");
    let r = stadttor(&[
        "export",
        "--dir",
        f.path(),
        "--key",
        &f.vkey,
        "--out",
        broken.to_str().unwrap(),
    ]);
    assert_failed(&r, &["entry 5"]);
    assert!(!broken.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
