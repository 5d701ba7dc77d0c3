//! Document signing through the real gateway: a service answers with a PDF,
//! a JSON document or any file; the gateway seals it on the way out, and
//! independent tools verify what the citizen receives (pdfsig and pyHanko
//! for PAdES, `openssl cms` and pyHanko for CAdES, `openssl ts` through
//! pyHanko for timestamps, jwcrypto for JWS, the `http-message-signatures`
//! package for RFC 9421). Tampered copies must fail.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;
use stadttor_pki::sign::pades;
use testkit::client::{self, Proto};
use testkit::signing::{self as common, openssl_cms_verify, pyhanko_cms, verify_py, Pki};
use testkit::{Gateway, TempDir, TestPki};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

const JSON_DOC: &str = r#"{"aktenzeichen":"BA-2026-0042","status":"genehmigt","betrag":"120.00"}"#;

/// A municipal service: `/bescheide/N.pdf` (a PDF notice), `/daten/*`
/// (JSON), `/stueckweise.json` (the JSON in several chunks, no length),
/// `/akten/*` (CSV), `/gross.pdf` (a PDF larger than the limit), `/fehlt`
/// (404).
async fn service(pdf: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pdf = Bytes::from(pdf);
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let pdf = pdf.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let pdf = pdf.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        if path == "/stueckweise.json" {
                            return Ok::<_, Infallible>(in_pieces(JSON_DOC.as_bytes()));
                        }
                        let (status, ctype, body) = if path.ends_with("gross.pdf") {
                            let mut big = pdf.to_vec();
                            big.resize(3 * 1024 * 1024, b' ');
                            (200, "application/pdf", Bytes::from(big))
                        } else if path.ends_with(".pdf") {
                            (200, "application/pdf", pdf)
                        } else if path.starts_with("/daten") || path.starts_with("/api") {
                            (
                                200,
                                "application/json",
                                Bytes::from_static(JSON_DOC.as_bytes()),
                            )
                        } else if path.starts_with("/akten") {
                            (
                                200,
                                "text/csv; charset=utf-8",
                                Bytes::from_static(b"nr;name\n1;Akte\n"),
                            )
                        } else {
                            (404, "text/plain", Bytes::from_static(b"nicht gefunden\n"))
                        };
                        let mut r = Response::new(Full::new(body).boxed());
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        r.headers_mut()
                            .insert(http::header::CONTENT_TYPE, ctype.parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

type ServiceBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// `doc` as a JSON response in three chunks (chunked encoding on the wire).
fn in_pieces(doc: &'static [u8]) -> Response<ServiceBody> {
    let (a, rest) = doc.split_at(doc.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let frames: Vec<Result<_, Infallible>> = [a, b, c]
        .into_iter()
        .map(|p| Ok(hyper::body::Frame::data(Bytes::from_static(p))))
        .collect();
    let mut r = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

struct Setup {
    dir: TempDir,
    tls: TestPki,
    seal: Pki,
    seal_pem: std::path::PathBuf,
    gw: Gateway,
}

impl Setup {
    async fn start(extra_signing: &str) -> Self {
        Self::start_with(extra_signing, "").await
    }

    /// `extra_audit` is appended to the `[audit]` table.
    async fn start_with(extra_signing: &str, extra_audit: &str) -> Self {
        let seal = Pki::new();
        let dir = TempDir::new("signing");
        let tls = TestPki::new(&dir, "main", &[]);
        // The seal key: a file key here (TPM and PKCS#11 keys are covered
        // by pki/tests/hardware.rs through the same SigningKey trait).
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let key_path = dir.path().join("seal.p8");
        std::fs::write(&key_path, pkcs8.as_ref()).unwrap();
        let key = FileKey::from_pkcs8("file:seal".into(), pkcs8.as_ref()).unwrap();
        let seal_pem = seal.seal_cert_for_spki(key.public_key_spki());
        let tsa = seal.start_tsa();
        let upstream = service(common::minimal_pdf()).await;
        let audit = format!("{}{extra_audit}", audit_toml(&dir));
        let config = format!(
            r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

{cert}

[[upstreams]]
name = "amt"
addresses = ["{upstream}"]

{audit}

[signing]
key = "file:{key}"
certificate = {seal_pem:?}
tsa_url = "{tsa}"
max_body = "1MiB"
store_dir = "signatures"
{extra_signing}

[[routes]]
name = "bescheide"
upstream = "amt"
path_prefix = "/bescheide"
[[routes.sign]]
content_type = "application/pdf"
format = "pades"
timestamp = true

[[routes]]
name = "gross"
upstream = "amt"
path_prefix = "/gross.pdf"
[[routes.sign]]
content_type = "application/pdf"
format = "pades"

[[routes]]
name = "akten"
upstream = "amt"
path_prefix = "/akten"
[[routes.sign]]
content_type = "*"
format = "cades"
timestamp = true

[[routes]]
name = "api"
upstream = "amt"
path_prefix = "/api"
[[routes.sign]]
content_type = "application/json"
format = "jws"

[[routes]]
name = "daten"
upstream = "amt"
path_prefix = "/"
[[routes.sign]]
content_type = "*"
format = "http-signature"
"#,
            cert = tls.certificate_toml(&[]),
            key = key_path.display(),
            seal_pem = seal_pem.display().to_string(),
        );
        let gw = Gateway::start(BIN, &dir, &config);
        Self {
            dir,
            tls,
            seal,
            seal_pem,
            gw,
        }
    }

    async fn get(&self, path: &str) -> client::Resp {
        let cfg = Arc::new(client::tls_config(&self.tls.ca_pem, None, Proto::H2));
        client::get(cfg, self.gw.addr(), "localhost", Proto::H2, path)
            .await
            .unwrap()
    }
}

fn audit_toml(dir: &TempDir) -> String {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = dir.path().join("audit-ed25519.der");
    std::fs::write(&key, pkcs8.as_ref()).unwrap();
    let pseudo = dir.write_secret("pseudonym.key", [7u8; 32]);
    format!(
        "[audit]\ndir = {:?}\norigin = \"stadttor.test/audit\"\nkey = \"file:{}\"\npseudonym_key_file = {:?}\ncheckpoint_period = \"200ms\"\n",
        dir.path().join("audit").display().to_string(),
        key.display(),
        pseudo.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_notices_leave_with_a_pades_b_t_seal_that_pdfsig_and_pyhanko_accept() {
    let s = Setup::start("").await;
    let r = s.get("/bescheide/4711.pdf").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert_eq!(
        r.headers["content-length"].to_str().unwrap(),
        r.body.len().to_string()
    );
    let signed = r.body.to_vec();
    assert!(
        signed.starts_with(&common::minimal_pdf()),
        "an incremental update keeps the original bytes"
    );
    // pdfsig + pyHanko on the signed file; tampered copies fail both.
    let tmp = TempDir::new("gw-pades");
    common::check_pades_independent(&s.seal, &tmp, "bescheid", &signed, true);
    // And stadttor's own verifier.
    let v = pades::verify_pdf(&signed).unwrap();
    assert!(v.covers_whole_file && v.cms.signing_time.is_none() && v.cms.signing_certificate_v2);
    assert!(v.cms.timestamp.is_some());
    assert!(pades::verify_pdf(&common::tamper_pdf(&signed)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_file_gets_a_detached_cades_b_t_signature_retrievable_by_id() {
    let s = Setup::start("").await;
    let r = s.get("/akten/liste.csv").await;
    assert_eq!(r.status, 200);
    let content = r.body.to_vec();
    assert_eq!(
        content, b"nr;name\n1;Akte\n",
        "the body itself is unchanged"
    );
    let url = r.headers["stadttor-signature"].to_str().unwrap().to_owned();
    assert!(
        url.starts_with("/.stadttor/signatures/") && url.ends_with(".p7s"),
        "{url}"
    );
    let sig = s.get(&url).await;
    assert_eq!(sig.status, 200);
    assert_eq!(sig.headers["content-type"], "application/pkcs7-signature");
    let tmp = TempDir::new("gw-cades");
    let (ok, out) = openssl_cms_verify(&s.seal, &sig.body, &content, &tmp);
    assert!(ok, "openssl cms -verify -cades: {out}");
    let (ok, out) = pyhanko_cms(&s.seal, &tmp, &content, true);
    assert!(ok, "pyHanko with timestamp: {out}");
    let (ok, _) = openssl_cms_verify(&s.seal, &sig.body, b"nr;name\n1;Gefaelscht\n", &tmp);
    assert!(!ok, "a changed document must not verify");
    // Unknown or malicious ids.
    assert_eq!(s.get("/.stadttor/signatures/nope.p7s").await.status, 404);
    // An encoded slash never reaches the signature store: the canonical
    // request target refuses it first (400), like on every route.
    assert_eq!(
        s.get("/.stadttor/signatures/..%2Fseal.p8.p7s").await.status,
        400
    );
    assert_eq!(
        s.get("/.stadttor/signatures/..seal.p8.p7s").await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gets_a_detached_jws_that_jwcrypto_verifies() {
    let s = Setup::start("").await;
    let r = s.get("/api/bescheid/42").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), JSON_DOC.as_bytes());
    let token = r.headers["stadttor-jws"].to_str().unwrap().to_owned();
    assert!(token.contains(".."), "detached: {token}");
    let tmp = TempDir::new("gw-jws");
    std::fs::write(tmp.join("token"), &token).unwrap();
    std::fs::write(tmp.join("payload"), &r.body).unwrap();
    let seal = s.seal_pem.to_str().unwrap().to_owned();
    let (ok, out) = verify_py(&[
        "jws",
        tmp.join("token").to_str().unwrap(),
        tmp.join("payload").to_str().unwrap(),
        &seal,
    ]);
    assert!(ok, "jwcrypto: {out}");
    std::fs::write(tmp.join("payload"), JSON_DOC.replace("120.00", "12000.00")).unwrap();
    let (ok, _) = verify_py(&[
        "jws",
        tmp.join("token").to_str().unwrap(),
        tmp.join("payload").to_str().unwrap(),
        &seal,
    ]);
    assert!(!ok, "a changed payload must not verify");
}

fn response_json(r: &client::Resp, tmp: &TempDir, name: &str, body: &[u8]) -> std::path::PathBuf {
    use base64::Engine as _;
    let input = r.headers["signature-input"].to_str().unwrap();
    let keyid = input
        .split("keyid=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let j = json!({
        "status": r.status.as_u16(),
        "headers": headers,
        "body_b64": base64::engine::general_purpose::STANDARD.encode(body),
        "keyid": keyid,
    });
    let p = tmp.join(name);
    std::fs::write(&p, j.to_string()).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_an_rfc9421_signature_by_a_delegated_key() {
    let s = Setup::start("").await;
    let r = s.get("/daten/haushalt.json").await;
    assert_eq!(r.status, 200);
    for h in ["content-digest", "signature-input", "signature"] {
        assert!(r.headers.contains_key(h), "{h} missing: {:?}", r.headers);
    }
    let input = r.headers["signature-input"].to_str().unwrap().to_owned();
    for part in [
        "\"@status\"",
        "\"content-type\"",
        "\"content-digest\"",
        "created=",
        "keyid=",
    ] {
        assert!(input.contains(part), "{part} not covered: {input}");
    }
    let keyid = input
        .split("keyid=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // The delegation statement, signed by the seal key, is public.
    let st = s.get(&format!("/.stadttor/keys/{keyid}.jws")).await;
    assert_eq!(st.status, 200);
    let tmp = TempDir::new("gw-httpsig");
    std::fs::write(tmp.join("statement"), &st.body).unwrap();
    let resp = response_json(&r, &tmp, "resp.json", &r.body);
    let seal = s.seal_pem.to_str().unwrap().to_owned();
    let (ok, out) = verify_py(&[
        "delegation",
        tmp.join("statement").to_str().unwrap(),
        &seal,
        resp.to_str().unwrap(),
    ]);
    assert!(ok, "jwcrypto + http-message-signatures: {out}");
    // Tampered body fails.
    let bad = response_json(&r, &tmp, "bad.json", b"{\"status\":\"abgelehnt\"}");
    let (ok, _) = verify_py(&[
        "delegation",
        tmp.join("statement").to_str().unwrap(),
        &seal,
        bad.to_str().unwrap(),
    ]);
    assert!(!ok, "a changed body must not verify");
    // A body that arrives in pieces is hashed as it streams, sent on with
    // an exact length, and verifies like the one that came whole.
    let p = s.get("/stueckweise.json").await;
    assert_eq!(p.status, 200);
    assert_eq!(&p.body[..], JSON_DOC.as_bytes());
    assert_eq!(
        p.headers["content-length"].to_str().unwrap(),
        JSON_DOC.len().to_string()
    );
    let pieces = response_json(&p, &tmp, "pieces.json", &p.body);
    let (ok, out) = verify_py(&[
        "delegation",
        tmp.join("statement").to_str().unwrap(),
        &seal,
        pieces.to_str().unwrap(),
    ]);
    assert!(ok, "a streamed body's signature: {out}");
    // Error responses are not signed (nothing to vouch for).
    let nf = s.get("/fehlt").await;
    assert_eq!(nf.status, 404);
    assert!(!nf.headers.contains_key("signature"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_documents_are_withheld_never_sent_unsigned_and_signatures_are_audited() {
    let mut s = Setup::start("").await;
    let r = s.get("/gross.pdf").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.body.starts_with(b"%PDF"), "no unsigned PDF may leave");
    assert!(s
        .gw
        .wait_for_log("response signing failed", std::time::Duration::from_secs(2)));
    // Two signatures, then the audit log lists them with document hashes.
    let a = s.get("/bescheide/1.pdf").await;
    let b = s.get("/daten/x").await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let logs = s.gw.logs();
    let start = logs.find("verifier_key=").unwrap() + "verifier_key=".len();
    let key: String = logs[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let key = stadttor_audit::VerifierKey::parse(&key).unwrap();
    s.gw.signal("TERM");
    assert!(s
        .gw
        .wait_exit(std::time::Duration::from_secs(10))
        .unwrap()
        .success());
    let log_dir = s.dir.path().join("audit");
    stadttor_audit::verify::verify_dir(&log_dir, &key).unwrap();
    let mut out = Vec::new();
    stadttor_audit::verify::LogReader::open(&log_dir, &key)
        .unwrap()
        .export(&mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    let signs: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "document.sign")
        .collect();
    assert_eq!(signs.len(), 2, "{text}");
    let pdf_sha = ring::digest::digest(&ring::digest::SHA256, &common::minimal_pdf());
    let hexed: String = pdf_sha
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(signs.iter().any(
        |e| e["attrs"]["format"] == "pades" && e["attrs"]["document_sha256"] == hexed.as_str()
    ));
    assert!(
        events.iter().any(|e| e["kind"] == "key.delegate"),
        "the delegation is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_whose_audit_event_is_refused_is_withheld_never_sent_without_evidence() {
    // A two-event audit queue (committed every 100 ms): one request at a
    // time fits (access event + seal event); a burst fills the queue with
    // access events, so the seal events of the admitted requests are
    // refused as they would be by a broken or flooded log.
    let mut s = Setup::start_with("", "queue_capacity = 2\n").await;
    let cfg = Arc::new(client::tls_config(&s.tls.ca_pem, None, Proto::H1));
    let addr = s.gw.addr();
    let (mut sealed, mut cades_sealed, mut refused) = (0usize, 0usize, 0usize);
    let mut withheld = false;
    // The start-up events are committed first (every 100 ms).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    for round in 0..40 {
        let burst = if round < 2 { 1 } else { 12 };
        let mut set = tokio::task::JoinSet::new();
        for i in 0..burst {
            let (cfg, path) = (cfg.clone(), if i % 2 == 0 { "/api/x" } else { "/akten/y" });
            set.spawn(async move {
                let r = client::get(cfg, addr, "localhost", Proto::H1, path).await;
                (path, r.unwrap())
            });
        }
        while let Some(j) = set.join_next().await {
            let (path, r) = j.unwrap();
            match r.status.as_u16() {
                200 => {
                    sealed += 1;
                    if path.starts_with("/akten") {
                        cades_sealed += 1;
                        assert!(r.headers.contains_key("stadttor-signature"));
                    } else {
                        assert!(r.headers.contains_key("stadttor-jws"));
                    }
                }
                503 => {
                    refused += 1;
                    assert!(r.text().contains("cannot be recorded"), "{}", r.text());
                    assert!(!r.headers.contains_key("stadttor-jws"));
                    assert!(!r.headers.contains_key("stadttor-signature"));
                    assert!(!r.text().contains("aktenzeichen") && !r.text().contains("Akte"));
                }
                other => panic!("{path}: unexpected {other}: {}", r.text()),
            }
        }
        if round < 2 {
            assert_eq!(sealed, round + 1, "a single request fits the queue");
        }
        withheld = s.gw.logs().contains("the sealed response is withheld");
        if withheld && round >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Only the signatures of responses that left stay in the store.
    let stored = std::fs::read_dir(s.dir.path().join("signatures"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "p7s")
        })
        .count();
    assert_eq!(stored, cades_sealed);
    // Every sealed response that left has its event in the signed log.
    let logs = s.gw.logs();
    let start = logs.find("verifier_key=").unwrap() + "verifier_key=".len();
    let key: String = logs[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let key = stadttor_audit::VerifierKey::parse(&key).unwrap();
    s.gw.signal("TERM");
    assert!(s
        .gw
        .wait_exit(std::time::Duration::from_secs(10))
        .unwrap()
        .success());
    let log_dir = s.dir.path().join("audit");
    let mut out = Vec::new();
    stadttor_audit::verify::LogReader::open(&log_dir, &key)
        .unwrap()
        .export(&mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let signs = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "document.sign")
        .count();
    assert_eq!(signs, sealed, "sealed responses and their events");
    assert!(
        withheld,
        "no seal event was ever refused ({refused} refusals)"
    );
}

/// Threat: anyone who can fetch a sealed document from a public route
/// makes the gateway store a detached signature; repeated anonymous
/// requests must not fill the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_cannot_fill_the_disk_with_stored_signatures() {
    let s = Setup::start("store_max_bytes = \"64KiB\"").await;
    let store = s.dir.path().join("signatures");
    let stored_bytes = || -> u64 {
        std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "p7s"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let mut urls = Vec::new();
    for _ in 0..60 {
        let r = s.get("/akten/liste.csv").await;
        assert_eq!(r.status, 200);
        urls.push(r.headers["stadttor-signature"].to_str().unwrap().to_owned());
        let bytes = stored_bytes();
        assert!(bytes <= 64 * 1024, "store grew to {bytes} bytes");
    }
    // The newest signatures are served, the oldest went first.
    assert_eq!(s.get(urls.last().unwrap()).await.status, 200);
    assert_eq!(s.get(&urls[0]).await.status, 404);
    assert!(s
        .gw
        .wait_for_log("signature store full", std::time::Duration::from_secs(2)));
    let (_, m) = s.gw.admin_get("/metrics").await;
    let evicted: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("stadttor_signature_store_evicted_total{name=\"size\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no eviction metric: {m}"));
    assert!(evicted > 0 && evicted < 60, "{evicted}");
    let gauge: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("stadttor_signature_store_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert_eq!(gauge, stored_bytes());
}

#[test]
fn sign_and_verify_from_the_command_line() {
    let seal = Pki::new();
    let dir = TempDir::new("sign-cli");
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let key_path = dir.join("seal.p8");
    std::fs::write(&key_path, pkcs8.as_ref()).unwrap();
    let key = FileKey::from_pkcs8("file:seal".into(), pkcs8.as_ref()).unwrap();
    let seal_pem = seal.seal_cert_for_spki(key.public_key_spki());
    let doc = dir.join("bescheid.txt");
    std::fs::write(&doc, "Bescheid Nr. 42\n").unwrap();
    let pdf = dir.join("bescheid.pdf");
    std::fs::write(&pdf, common::minimal_pdf()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        (out.status.code().unwrap_or(-1), common::both(&out))
    };
    let keyarg = format!("file:{}", key_path.display());
    let cert = seal_pem.to_str().unwrap();
    for format in ["cades", "jws", "pades"] {
        let file = if format == "pades" { &pdf } else { &doc };
        let (code, out) = run(&[
            "sign",
            file.to_str().unwrap(),
            "--format",
            format,
            "--key",
            &keyarg,
            "--cert",
            cert,
        ]);
        assert_eq!(code, 0, "sign {format}: {out}");
    }
    let p7s = dir.join("bescheid.txt.p7s");
    // An existing signature is never replaced silently: exit 1, the file
    // untouched; `--force` replaces it.
    let before = std::fs::read(&p7s).unwrap();
    let sign_again = |extra: &[&str]| {
        let mut args = vec![
            "sign",
            doc.to_str().unwrap(),
            "--key",
            &keyarg,
            "--cert",
            cert,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, out) = sign_again(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("exists already") && out.contains("--force"),
        "{out}"
    );
    assert_eq!(std::fs::read(&p7s).unwrap(), before);
    let (code, out) = sign_again(&["--force"]);
    assert_eq!(code, 0, "{out}");
    assert_ne!(
        std::fs::read(&p7s).unwrap(),
        before,
        "a fresh signature (new signing time)"
    );
    let jws = dir.join("bescheid.txt.jws");
    let signed_pdf = dir.join("bescheid.signed.pdf");
    // Our verifier says valid ...
    for (file, sig) in [(&doc, Some(&p7s)), (&doc, Some(&jws)), (&signed_pdf, None)] {
        let mut args = vec!["verify", file.to_str().unwrap()];
        if let Some(s) = sig {
            args.extend(["--sig", s.to_str().unwrap()]);
        }
        let (code, out) = run(&args);
        assert_eq!(code, 0, "verify {args:?}: {out}");
        assert!(out.contains("Musterhausen"), "{out}");
    }
    // ... and so do the independent tools.
    let (ok, out) = openssl_cms_verify(
        &seal,
        &std::fs::read(&p7s).unwrap(),
        b"Bescheid Nr. 42\n",
        &dir,
    );
    assert!(ok, "{out}");
    let out = common::pdfsig(&seal, &signed_pdf);
    assert!(out.contains("Signature is Valid."), "{out}");
    // A changed document: exit 2, for every format.
    std::fs::write(&doc, "Bescheid Nr. 43\n").unwrap();
    assert_eq!(
        run(&[
            "verify",
            doc.to_str().unwrap(),
            "--sig",
            p7s.to_str().unwrap()
        ])
        .0,
        2
    );
    assert_eq!(
        run(&[
            "verify",
            doc.to_str().unwrap(),
            "--sig",
            jws.to_str().unwrap()
        ])
        .0,
        2
    );
    let mut bytes = std::fs::read(&signed_pdf).unwrap();
    let i = bytes
        .windows(9)
        .position(|w| w == b"BT /F1 24")
        .unwrap_or(20);
    bytes[i + 1] ^= 1;
    std::fs::write(&signed_pdf, &bytes).unwrap();
    assert_eq!(run(&["verify", signed_pdf.to_str().unwrap()]).0, 2);
    // Usage errors are 64.
    assert_eq!(run(&["verify", doc.to_str().unwrap()]).0, 64);
}
