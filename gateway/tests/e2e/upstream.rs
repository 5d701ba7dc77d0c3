//! Upstreams: down, ejection and retry, timeouts, HTTPS with mTLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::TestPki;

use crate::Setup;

/// A port with nothing listening.
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_a_clear_502_quickly() {
    let s = Setup::start(dead_addr(), "", "", "");
    let t = Instant::now();
    for proto in [Proto::H1, Proto::H2] {
        let r = s.get(proto, "/").await;
        assert_eq!(r.status, 502);
        let text = r.text();
        assert!(text.contains("not reachable"), "{text}");
        assert!(text.contains("Request id:"), "{text}");
        assert!(
            !text.contains("127.0.0.1"),
            "no internals in the body: {text}"
        );
        assert!(r.headers.contains_key("x-request-id"));
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "no hang: {:?}",
        t.elapsed()
    );
    assert!(s
        .gw
        .wait_for_log("upstream failure", Duration::from_secs(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_address_is_ejected_and_bodiless_requests_retry() {
    let b = Backend::start("live").await;
    let dead = dead_addr();
    let dir = testkit::TempDir::new("eject");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "", "").replace(
        &format!("addresses = [\"{}\"]", b.addr),
        &format!(
            "addresses = [\"{dead}\", \"{}\"]\neject_after_failures = 2\neject_for = \"60s\"",
            b.addr
        ),
    );
    let gw = testkit::Gateway::start(crate::BIN, &dir, &cfg);
    let c = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H1));
    for _ in 0..10 {
        let r = client::get(c.clone(), gw.addr(), "localhost", Proto::H1, "/")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "bodiless requests retry on the live address");
    }
    assert_eq!(b.requests(), 10);
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("stadttor_upstream_ejections_total{name=\"app\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stadttor_upstream_failures_total{name=\"app\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gets_504_at_the_route_timeout() {
    let b = Backend::start("slow").await;
    let s = Setup::start(
        b.addr,
        "",
        "[routes.timeouts]\nresponse_header = \"500ms\"",
        "",
    );
    let t = Instant::now();
    let r = s.get(Proto::H1, "/slow/3000").await;
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    let r = s.get(Proto::H1, "/slow/10").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_its_own_ca_and_client_certificate() {
    let dir = testkit::TempDir::new("up-tls");
    let up = TestPki::new(&dir, "upstream", &["backend.internal"]);
    // The backend trusts client certificates from the upstream PKI only.
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(client::roots(&up.ca_pem)),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(&up.server_chain)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&up.server_key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_client_cert_verifier(verifier)
    .with_single_cert(chain, key)
    .unwrap();
    let b = Backend::start_tls("tls-backend", Arc::new(server)).await;
    let client_cert = dir.write("gw-client.pem", &up.client_cert_pem);
    let client_key = dir.write("gw-client.key", &up.client_key_pem);
    let upstream_tls = format!(
        "\n[upstreams.tls]\nca = {:?}\nserver_name = \"backend.internal\"\nclient_chain = {:?}\nclient_key = \"file:{}\"\n",
        up.ca_path.display().to_string(),
        client_cert.display().to_string(),
        client_key.display()
    );
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "", "").replace(
        &format!("addresses = [\"{}\"]\n", b.addr),
        &format!("addresses = [\"{}\"]\n{upstream_tls}", b.addr),
    );
    let gw = testkit::Gateway::start(crate::BIN, &dir, &cfg);
    let c = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H2));
    let r = client::get(c, gw.addr(), "localhost", Proto::H2, "/x")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["backend"], "tls-backend");
    assert!(
        echo["client_cert"].is_string(),
        "gateway presented its client certificate"
    );
}
