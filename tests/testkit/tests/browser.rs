//! Self-test of [`Browser`] over HTTPS: a host name resolved to a local TLS
//! echo backend, trust limited to the given CA, and cookie tampering seen
//! from the server side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use testkit::backend::Backend;
use testkit::{Browser, TempDir, TestPki};

async fn tls_backend(pki: &TestPki) -> Backend {
    let chain: Vec<_> = CertificateDer::pem_file_iter(&pki.server_chain)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Backend::start_tls("tls-echo", Arc::new(server)).await
}

fn cookie_header(echo: &serde_json::Value) -> Option<String> {
    echo["headers"]["cookie"].as_array().map(|a| {
        a.iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[tokio::test]
async fn https_by_host_name_with_a_private_ca_and_a_tamperable_cookie_jar() {
    let dir = TempDir::new("browser");
    let pki = TestPki::new(&dir, "web", &["buerger.example"]);
    let backend = tls_backend(&pki).await;
    let base = format!("https://buerger.example:{}", backend.addr.port());

    let browser = Browser::builder()
        .trust_ca_pem(&pki.ca_pem)
        .resolve("buerger.example", backend.addr)
        .build();
    let r = browser.get(&format!("{base}/hello?x=1")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(echo["path"], "/hello");
    assert_eq!(
        echo["headers"]["host"][0],
        format!("buerger.example:{}", backend.addr.port())
    );
    assert_eq!(cookie_header(&echo), None);

    // Cookies as if the server had set them, then tampered with.
    browser.add_cookie(&base, "__Host-sess=abc; Path=/; Secure; HttpOnly");
    browser.add_cookie(&format!("{base}/app/"), "pref=1; Path=/app");
    assert_eq!(
        browser
            .cookie(&format!("{base}/"), "__Host-sess")
            .as_deref(),
        Some("abc")
    );
    let echo = browser.get(&format!("{base}/app/x")).await.json();
    let sent = cookie_header(&echo).unwrap();
    assert!(
        sent.contains("__Host-sess=abc") && sent.contains("pref=1"),
        "{sent}"
    );
    assert_eq!(
        cookie_header(&browser.get(&format!("{base}/")).await.json()).unwrap(),
        "__Host-sess=abc"
    );

    browser.set_cookie(&base, "__Host-sess", "forged");
    assert_eq!(
        browser.cookies_for(&format!("{base}/")),
        vec![("__Host-sess".to_owned(), "forged".to_owned())]
    );
    let echo = browser.get(&format!("{base}/")).await.json();
    assert_eq!(cookie_header(&echo).unwrap(), "__Host-sess=forged");

    browser.remove_cookie(&base, "__Host-sess");
    let echo = browser.get(&format!("{base}/")).await.json();
    assert_eq!(cookie_header(&echo), None);
    // A Secure cookie never goes over plain http.
    browser.set_cookie(&base, "s", "1");
    assert!(browser
        .cookies_for(&format!("http://buerger.example:{}/", backend.addr.port()))
        .is_empty());
    browser.clear_cookies();
    assert!(browser.cookies_for(&format!("{base}/app/")).is_empty());

    // Without the CA the handshake fails.
    let stranger = Browser::builder()
        .resolve("buerger.example", backend.addr)
        .build();
    let err = stranger.client().get(format!("{base}/")).send().await;
    assert!(err.is_err(), "untrusted CA accepted");
}
