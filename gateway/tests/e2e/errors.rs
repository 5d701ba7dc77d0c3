//! What clients see when the gateway itself answers with an error: a
//! German-first HTML page (with the English text) for a browser's
//! `Accept`, RFC 9457 problem details for an API's, and the request id in
//! the body and in `x-request-id` either way; never cached, never an
//! upstream address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use stadttor_gateway::authn::cookie::CookieKeys;
use testkit::backend::Backend;
use testkit::client::{self, Proto, Resp};
use testkit::{free_port, Gateway, TempDir, TestPki};

use crate::{Setup, BIN};

/// Firefox's `Accept` on a navigation.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
/// An API client's `Accept`.
const API: &str = "application/problem+json, application/json;q=0.9";

/// One request (GET, or POST with a body), sent with an `Accept`.
#[derive(Clone)]
pub(crate) struct Ask<'a> {
    pub(crate) path: &'a str,
    pub(crate) lang: &'a str,
    pub(crate) body: usize,
    pub(crate) header: Option<(&'a str, String)>,
}

impl<'a> Ask<'a> {
    pub(crate) fn get(path: &'a str) -> Self {
        Self {
            path,
            lang: "de-DE,de;q=0.9,en;q=0.5",
            body: 0,
            header: None,
        }
    }

    pub(crate) async fn send(self, s: &Setup, accept: &str, proto: Proto) -> Resp {
        let method = if self.body > 0 { "POST" } else { "GET" };
        let mut b = Request::builder()
            .method(method)
            .uri(self.path)
            .header("accept", accept)
            .header("accept-language", self.lang);
        if let Some((name, value)) = self.header {
            b = b.header(name, value);
        }
        let req = b
            .body(Full::new(Bytes::from(vec![b'x'; self.body])))
            .unwrap();
        client::send(s.client(proto), s.gw.addr(), "localhost", proto, req)
            .await
            .unwrap()
    }
}

fn header<'r>(r: &'r Resp, name: &str) -> &'r str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", r.headers))
        .to_str()
        .unwrap()
}

/// A page: HTML, German first with the English section, the request id
/// of the header in the body, not cached, under the pages' own CSP.
pub(crate) fn assert_page(r: &Resp, status: u16, title_de: &str, title_en: &str) -> String {
    let body = r.text();
    assert_eq!(r.status.as_u16(), status, "{body}");
    assert_eq!(header(r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(r, "cache-control"), "no-store");
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert!(header(r, "content-security-policy").starts_with("default-src 'none'"));
    assert!(
        r.headers.contains_key("strict-transport-security"),
        "{:?}",
        r.headers
    );
    let rid = header(r, "x-request-id");
    assert!(
        body.starts_with("<!DOCTYPE html>\n<html lang=\"de\">"),
        "{body}"
    );
    assert!(body.contains(&format!("<h1>{title_de}</h1>")), "{body}");
    assert!(
        body.contains(&format!(
            "<section lang=\"en\" aria-labelledby=\"alt\">\n<h2 id=\"alt\">{title_en}</h2>"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!("Vorgangsnummer: <code>{rid}</code>")),
        "{body}"
    );
    assert!(
        body.contains(&format!("Request id: <code>{rid}</code>")),
        "{body}"
    );
    assert!(
        !body.contains("127.0.0.1") && !body.contains("<script"),
        "{body}"
    );
    rid.to_owned()
}

/// Problem details: RFC 9457 members, `code`, the header's request id.
pub(crate) fn assert_problem(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(header(r, "content-type"), "application/problem+json");
    assert_eq!(header(r, "cache-control"), "no-store");
    let rid = header(r, "x-request-id");
    let v = r.json();
    assert_eq!(v["type"], "about:blank");
    assert_eq!(v["status"], status);
    assert_eq!(v["title"], r.status.canonical_reason().unwrap());
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["request_id"], rid);
    assert_eq!(v["instance"], format!("urn:uuid:{rid}"));
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(!r.text().contains("127.0.0.1"), "{v}");
    v
}

/// A port nothing listens on (from the allocator, never bound by anyone).
fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Routes `/app` (1 KiB bodies, 500 ms to answer) and `/dead` (a closed
/// port), heads up to 8 KiB, nothing else.
fn gateway(b: &Backend) -> Setup {
    let dir = TempDir::new("errors");
    let pki = TestPki::new(&dir, "main", &[]);
    let config = format!(
        r#"
[server]
max_header_bytes = "8KiB"

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"
{cert}

[[upstreams]]
name = "app"
addresses = ["{app}"]

[[upstreams]]
name = "dead"
addresses = ["{dead}"]

[[routes]]
name = "app"
upstream = "app"
path_prefix = "/app"
strip_prefix = true
max_request_body = "1KiB"
[routes.timeouts]
response_header = "500ms"

[[routes]]
name = "dead"
upstream = "dead"
path_prefix = "/dead"
"#,
        cert = pki.certificate_toml(&[]),
        app = b.addr,
        dead = dead_addr(),
    );
    let gw = Gateway::start(BIN, &dir, &config);
    Setup { dir, pki, gw }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_pages_for_browsers_and_problem_details_for_apis() {
    let b = Backend::start("app").await;
    let s = gateway(&b);
    let big = "a".repeat(10 * 1024);
    for proto in [Proto::H1, Proto::H2] {
        let cases = [
            (
                Ask::get("/nothing/here"),
                404,
                "not_found",
                "Seite nicht gefunden",
                "Page not found",
            ),
            (
                Ask {
                    body: 2048,
                    ..Ask::get("/app/upload")
                },
                413,
                "payload_too_large",
                "Daten zu groß",
                "Request too large",
            ),
            (
                Ask {
                    header: Some(("x-big", big.clone())),
                    ..Ask::get("/app/")
                },
                431,
                "request_header_fields_too_large",
                "Anfrage zu groß",
                "Request headers too large",
            ),
            (
                Ask::get("/dead/"),
                502,
                "upstream_unreachable",
                "Dienst nicht erreichbar",
                "Service not reachable",
            ),
            (
                Ask::get("/app/slow/3000"),
                504,
                "upstream_timeout",
                "Dienst antwortet nicht",
                "Service did not answer",
            ),
            (
                Ask::get("/app/a%2Fb"),
                400,
                "bad_request",
                "Ungültige Anfrage",
                "Bad request",
            ),
        ];
        for (ask, status, code, de, en) in cases {
            let browser = ask.clone().send(&s, BROWSER, proto).await;
            let rid = assert_page(&browser, status, de, en);
            if status >= 500 {
                assert!(
                    s.gw.wait_for_log(&rid, Duration::from_secs(2)),
                    "the log names request {rid}"
                );
            }
            let api = ask.send(&s, API, proto).await;
            let v = assert_problem(&api, status, code);
            assert_ne!(v["request_id"], rid.as_str(), "each request has its own id");
        }
    }
    assert_eq!(b.requests(), 4, "only the 504 requests reached the service");
}

/// The same errors without a preference: browsers' pages on ordinary
/// routes; plain text (with both languages and the request id) for a
/// client that accepts nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_preference_a_page_and_plain_text_on_request() {
    let b = Backend::start("app").await;
    let s = gateway(&b);
    let r = Ask::get("/nothing").send(&s, "*/*", Proto::H1).await;
    assert_page(&r, 404, "Seite nicht gefunden", "Page not found");
    let r = Ask::get("/nothing").send(&s, "text/plain", Proto::H1).await;
    assert_eq!(r.status, 404);
    assert_eq!(header(&r, "content-type"), "text/plain; charset=utf-8");
    let rid = header(&r, "x-request-id");
    let text = r.text();
    assert!(
        text.starts_with("404 Not Found\nUnter dieser Adresse"),
        "{text}"
    );
    assert!(
        text.contains("No service is published") && text.contains(&format!("Request id: {rid}")),
        "{text}"
    );
    let r = Ask {
        lang: "en-GB,en;q=0.8",
        ..Ask::get("/nothing")
    }
    .send(&s, API, Proto::H1)
    .await;
    let v = assert_problem(&r, 404, "not_found");
    assert!(
        v["detail"].as_str().unwrap().starts_with("No service"),
        "{v}"
    );
    assert_eq!(header(&r, "content-language"), "en");
    // The admin listener's unknown paths too (a machine's endpoint).
    let (status, body) = s.gw.admin_get("/nothing").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "not_found", "{v}");
    assert!(
        v["request_id"].as_str().is_some_and(|r| r.len() == 36),
        "{v}"
    );
}

/// A gateway whose listener asks for client certificates (optional):
/// routes `/fv` (certificates at `substantial`) and `/hoch` (needs
/// `high`, so a `substantial` certificate gets 403).
pub(crate) struct CertGateway {
    pub(crate) dir: TempDir,
    pub(crate) pki: TestPki,
    pub(crate) gw: Gateway,
}

pub(crate) fn cert_gateway(upstream: SocketAddr) -> CertGateway {
    let dir = TempDir::new("cert-routes");
    let pki = TestPki::new(&dir, "main", &[]);
    let keys = dir.path().join("session.keys");
    std::fs::write(&keys, format!("{}\n", CookieKeys::generate().unwrap())).unwrap();
    crate::login::set_mode_600(&keys);
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let akey = dir.path().join("assertion.p8");
    std::fs::write(&akey, pkcs8.as_ref()).unwrap();
    let config = format!(
        r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[listeners.tls.client_auth]
ca = {ca:?}
mode = "optional"
{cert}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[identity]
session_key_file = {keys:?}
store = "file:{store}"
assertion_key = "file:{akey}"

[[routes]]
name = "fachverfahren"
upstream = "app"
path_prefix = "/fv"
[routes.auth]
methods = ["client_cert"]
client_cert_level = "substantial"
min_level = "substantial"

[[routes]]
name = "hoch"
upstream = "app"
path_prefix = "/hoch"
[routes.auth]
methods = ["client_cert"]
client_cert_level = "substantial"
min_level = "high"
"#,
        ca = pki.ca_path.display().to_string(),
        cert = pki.certificate_toml(&[]),
        keys = keys.display().to_string(),
        store = dir.path().join("sessions").display(),
        akey = akey.display(),
    );
    let gw = Gateway::start(BIN, &dir, &config);
    CertGateway { dir, pki, gw }
}

/// 403 on a client-certificate route (a certificate below the route's
/// level) and 401 without one: a page for a browser, problem details for
/// an API client (the route's default when `Accept` leaves it open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_a_client_certificate_route_in_both_forms() {
    let b = Backend::start("app").await;
    let c = cert_gateway(b.addr);
    for proto in [Proto::H1, Proto::H2] {
        let with = Arc::new(client::tls_config(
            &c.pki.ca_pem,
            Some((&c.pki.client_cert_pem, &c.pki.client_key_pem)),
            proto,
        ));
        let ask = |accept: &'static str| {
            let req = Request::get("/hoch/akte")
                .header("accept", accept)
                .body(Full::new(Bytes::new()))
                .unwrap();
            client::send(with.clone(), c.gw.addr(), "localhost", proto, req)
        };
        let r = ask(BROWSER).await.unwrap();
        assert_page(
            &r,
            403,
            "Höheres Vertrauensniveau nötig",
            "Higher level of assurance needed",
        );
        let r = ask(API).await.unwrap();
        assert_problem(&r, 403, "level_too_low");
        let r = ask("*/*").await.unwrap();
        assert_problem(&r, 403, "level_too_low");
        let without = Arc::new(client::tls_config(&c.pki.ca_pem, None, proto));
        let req = Request::get("/fv/akte")
            .header("accept", API)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = client::send(without, c.gw.addr(), "localhost", proto, req)
            .await
            .unwrap();
        assert_problem(&r, 401, "authentication_required");
        assert_eq!(
            header(&r, "www-authenticate"),
            "stadttor-client-certificate"
        );
    }
    assert_eq!(b.requests(), 0);
}
