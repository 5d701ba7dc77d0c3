//! TLS: the BSI profile, SNI certificate choice, client certificates.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1MLKEM768, X25519MLKEM768};
use rustls::crypto::{ring, SupportedKxGroup};
use rustls::{ClientConfig, NamedGroup};
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{Gateway, TempDir, TestPki};

use crate::{Setup, BIN};

fn restricted_client(
    ca_pem: &str,
    suites: Vec<rustls::SupportedCipherSuite>,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        kx_groups: groups,
        ..ring::default_provider()
    };
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(client::roots(ca_pem))
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_bsi_profile_is_negotiated() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    let addr = s.gw.addr();
    let ca = &s.pki.ca_pem;
    let v13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let v12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

    // Refused: ChaCha20 (1.3 and 1.2), X25519-only key exchange.
    let chacha13 = restricted_client(
        ca,
        vec![ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
        vec![ring::kx_group::SECP256R1],
        v13,
    );
    assert!(client::connect(chacha13, addr, "localhost").await.is_err());
    let chacha12 = restricted_client(
        ca,
        vec![ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256],
        vec![ring::kx_group::SECP256R1],
        v12,
    );
    assert!(client::connect(chacha12, addr, "localhost").await.is_err());
    let x25519 = restricted_client(
        ca,
        vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        vec![ring::kx_group::X25519],
        v13,
    );
    assert!(client::connect(x25519, addr, "localhost").await.is_err());

    // Accepted: AES-GCM over P-256 / P-384, TLS 1.3 and 1.2.
    for (suite, group, v) in [
        (
            ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            ring::kx_group::SECP384R1,
            v13,
        ),
        (
            ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ring::kx_group::SECP256R1,
            v13,
        ),
        (
            ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ring::kx_group::SECP256R1,
            v12,
        ),
        (
            ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ring::kx_group::SECP384R1,
            v12,
        ),
    ] {
        let c = restricted_client(ca, vec![suite], vec![group], v);
        let tls = client::connect(c.clone(), addr, "localhost").await.unwrap();
        assert_eq!(tls.get_ref().1.negotiated_cipher_suite(), Some(suite));
        let r = client::get(c, addr, "localhost", Proto::H1, "/")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // The server's preference wins: a client preferring AES-128 gets AES-256.
    let both = restricted_client(
        ca,
        vec![
            ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ],
        vec![ring::kx_group::SECP256R1],
        v13,
    );
    let tls = client::connect(both, addr, "localhost").await.unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite(),
        Some(ring::cipher_suite::TLS13_AES_256_GCM_SHA384)
    );
    // ALPN offers h2.
    let h2 = client::connect(s.client(Proto::H2), addr, "localhost")
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x25519_only_when_the_operator_opts_in() {
    let b = Backend::start("app").await;
    let dir = TempDir::new("x25519");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "", "").replace(
        "[[listeners.tls.certificates]]",
        "[listeners.tls]\nallow_x25519 = true\n\n[[listeners.tls.certificates]]",
    );
    let gw = Gateway::start(BIN, &dir, &cfg);
    let c = restricted_client(
        &pki.ca_pem,
        vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        vec![ring::kx_group::X25519],
        &[&rustls::version::TLS13],
    );
    let r = client::get(c, gw.addr(), "localhost", Proto::H1, "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // X25519 alone does not bring the hybrid X25519MLKEM768 with it.
    assert_eq!(
        negotiated(&pki.ca_pem, gw.addr(), X25519MLKEM768).await,
        None
    );
}

/// A gateway whose listener has `tls` in its `[listeners.tls]` table.
fn tls_gateway(b: &Backend, tls: &str) -> (TempDir, TestPki, Gateway) {
    let dir = TempDir::new("pq");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "", "").replace(
        "[[listeners.tls.certificates]]",
        &format!("[listeners.tls]\n{tls}\n\n[[listeners.tls.certificates]]"),
    );
    let gw = Gateway::start(BIN, &dir, &cfg);
    (dir, pki, gw)
}

/// The group a TLS 1.3 client offering only `groups` (in that order)
/// negotiates with the gateway at `addr`; `None` if it is refused.
async fn negotiated_with(
    ca_pem: &str,
    addr: std::net::SocketAddr,
    groups: Vec<&'static dyn SupportedKxGroup>,
) -> Option<NamedGroup> {
    let c = restricted_client(
        ca_pem,
        vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        groups,
        &[&rustls::version::TLS13],
    );
    let tls = client::connect(c, addr, "localhost").await.ok()?;
    tls.get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name())
}

async fn negotiated(
    ca_pem: &str,
    addr: std::net::SocketAddr,
    group: &'static dyn SupportedKxGroup,
) -> Option<NamedGroup> {
    negotiated_with(ca_pem, addr, vec![group]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_post_quantum_key_exchange_only_when_switched_on() {
    let b = Backend::start("app").await;
    // Off by default: a client offering only a hybrid group is refused.
    let (_d, pki, gw) = tls_gateway(&b, "");
    assert_eq!(
        negotiated(&pki.ca_pem, gw.addr(), SECP256R1MLKEM768).await,
        None
    );
    assert_eq!(
        negotiated(&pki.ca_pem, gw.addr(), X25519MLKEM768).await,
        None
    );
    drop(gw);

    // On: SECP256R1MLKEM768 is negotiated and requests go through; the
    // classic groups are unchanged; X25519MLKEM768 still needs X25519.
    let (_d, pki, gw) = tls_gateway(&b, "post_quantum_key_exchange = true");
    let (ca, addr) = (&pki.ca_pem, gw.addr());
    assert_eq!(
        negotiated(ca, addr, SECP256R1MLKEM768).await,
        Some(NamedGroup::secp256r1MLKEM768)
    );
    let pq = restricted_client(
        ca,
        vec![ring::cipher_suite::TLS13_AES_256_GCM_SHA384],
        vec![SECP256R1MLKEM768],
        &[&rustls::version::TLS13],
    );
    let r = client::get(pq, addr, "localhost", Proto::H1, "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        negotiated(ca, addr, ring::kx_group::SECP256R1).await,
        Some(NamedGroup::secp256r1)
    );
    assert_eq!(
        negotiated(ca, addr, ring::kx_group::SECP384R1).await,
        Some(NamedGroup::secp384r1)
    );
    assert_eq!(negotiated(ca, addr, X25519MLKEM768).await, None);
    assert_eq!(negotiated(ca, addr, ring::kx_group::X25519).await, None);
    // A browser-like client (X25519MLKEM768, X25519, P-256, P-384) falls
    // back to P-256, as without the switch.
    let browser = vec![
        X25519MLKEM768,
        ring::kx_group::X25519,
        ring::kx_group::SECP256R1,
        ring::kx_group::SECP384R1,
    ];
    assert_eq!(
        negotiated_with(ca, addr, browser.clone()).await,
        Some(NamedGroup::secp256r1)
    );
    drop(gw);

    // Both switches: X25519MLKEM768 too, and the browser-like client gets it.
    let (_d, pki, gw) = tls_gateway(&b, "allow_x25519 = true\npost_quantum_key_exchange = true");
    let (ca, addr) = (&pki.ca_pem, gw.addr());
    assert_eq!(
        negotiated(ca, addr, X25519MLKEM768).await,
        Some(NamedGroup::X25519MLKEM768)
    );
    assert_eq!(
        negotiated(ca, addr, SECP256R1MLKEM768).await,
        Some(NamedGroup::secp256r1MLKEM768)
    );
    assert_eq!(
        negotiated_with(ca, addr, browser).await,
        Some(NamedGroup::X25519MLKEM768)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let b = Backend::start("app").await;
    let dir = TempDir::new("sni");
    let a = TestPki::new(&dir, "a", &["a.test"]);
    // The wildcard server name needs a wildcard certificate: a certificate
    // for x.wild.test alone is refused for `*.wild.test` at start.
    let bb = TestPki::new(&dir, "b", &["b.test", "*.wild.test"]);
    let cfg = format!(
        r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

{}
{}

[[upstreams]]
name = "app"
addresses = ["{}"]

[[routes]]
name = "app"
upstream = "app"
"#,
        a.certificate_toml(&["a.test"]),
        bb.certificate_toml(&["b.test", "*.wild.test"]),
        b.addr
    );
    let gw = Gateway::start(BIN, &dir, &cfg);
    let trust_a = Arc::new(client::tls_config(&a.ca_pem, None, Proto::H1));
    let trust_b = Arc::new(client::tls_config(&bb.ca_pem, None, Proto::H1));
    assert!(client::connect(trust_a.clone(), gw.addr(), "a.test")
        .await
        .is_ok());
    assert!(client::connect(trust_b.clone(), gw.addr(), "b.test")
        .await
        .is_ok());
    assert!(client::connect(trust_b.clone(), gw.addr(), "x.wild.test")
        .await
        .is_ok());
    // Wrong certificate for the name: the client refuses it.
    assert!(client::connect(trust_a.clone(), gw.addr(), "b.test")
        .await
        .is_err());
    assert!(client::connect(trust_b.clone(), gw.addr(), "a.test")
        .await
        .is_err());
    // Unknown name: the default (first) certificate, which covers localhost.
    assert!(client::connect(trust_a, gw.addr(), "localhost")
        .await
        .is_ok());
}

fn mtls_gateway(b: &Backend, mode: &str) -> (TempDir, TestPki, Gateway) {
    let dir = TempDir::new("mtls");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "forward_client_cert = true", "").replace(
        "[[listeners.tls.certificates]]",
        &format!(
            "[listeners.tls.client_auth]\nca = {:?}\nmode = \"{mode}\"\n\n[[listeners.tls.certificates]]",
            pki.ca_path.display().to_string()
        ),
    );
    let gw = Gateway::start(BIN, &dir, &cfg);
    (dir, pki, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_accepts_trusted_and_refuses_others() {
    let b = Backend::start("app").await;
    let (dir, pki, gw) = mtls_gateway(&b, "required");
    for proto in [Proto::H1, Proto::H2] {
        let ok = Arc::new(client::tls_config(
            &pki.ca_pem,
            Some((&pki.client_cert_pem, &pki.client_key_pem)),
            proto,
        ));
        let r = client::get(ok, gw.addr(), "localhost", proto, "/")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let subject = r.json()["headers"]["x-stadttor-client-cert-subject"][0]
            .as_str()
            .unwrap()
            .to_owned();
        // RFC 4514: most specific RDN first, `,` between RDNs, as
        // `openssl x509 -subject -nameopt RFC2253` prints it.
        assert_eq!(subject, openssl_rfc2253_subject(&pki.client_cert_pem));
    }
    // No certificate: refused.
    let none = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H1));
    assert!(client::get(none, gw.addr(), "localhost", Proto::H1, "/")
        .await
        .is_err());
    // A certificate from a CA the listener does not trust: refused.
    let other = TestPki::new(&dir, "other", &[]);
    let foreign = Arc::new(client::tls_config(
        &pki.ca_pem,
        Some((&other.client_cert_pem, &other.client_key_pem)),
        Proto::H1,
    ));
    assert!(client::get(foreign, gw.addr(), "localhost", Proto::H1, "/")
        .await
        .is_err());
    assert_eq!(b.requests(), 2, "refused clients never reach the backend");
    assert!(gw.wait_for_log(
        "client certificate refused",
        std::time::Duration::from_secs(2)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_optional_admits_anonymous_clients_without_identity() {
    let b = Backend::start("app").await;
    let (_dir, pki, gw) = mtls_gateway(&b, "optional");
    let none = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H1));
    let r = client::get(none, gw.addr(), "localhost", Proto::H1, "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"]
        .get("x-stadttor-client-cert-subject")
        .is_none());
}

/// What `openssl x509 -noout -subject -nameopt RFC2253` prints for `pem`.
fn openssl_rfc2253_subject(pem: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    s.trim_end().strip_prefix("subject=").unwrap().to_owned()
}
