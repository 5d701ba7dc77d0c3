//! The TLS profile checked by an independent scanner, testssl.sh, on the
//! configuration the Debian package installs (`packaging/examples/minimal.toml`
//! with a test certificate, see `testkit::packaged_example`).
//!
//! Gate: no finding at MEDIUM or above (none is excused; see
//! docs/OPERATIONS.md, "TLS"); only TLS 1.2 and 1.3 offered; every offered
//! cipher an AEAD (AES-GCM) suite with forward secrecy; key exchange only
//! over P-256 and P-384 (no X25519 unless `allow_x25519`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use testkit::backend::Backend;
use testkit::{require_tool, Gateway, TempDir, TestPki};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_at_medium_or_above() {
    let testssl = require_tool("testssl", "testssl.sh");
    let b = Backend::start("app").await;
    let dir = TempDir::new("testssl");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = testkit::packaged_example(&dir, &pki, b.addr);
    let gw = Gateway::start_file(env!("CARGO_BIN_EXE_stadttor"), &cfg);
    let json = dir.path().join("testssl.json");
    let target = format!("127.0.0.1:{}", gw.addr().port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(testssl)
            .args(["--quiet", "--color", "0", "--warnings", "off", "--add-ca"])
            .arg(&pki.ca_path)
            .args([
                "--protocols",
                "--std",
                "--server-preference",
                "--server-defaults",
                "--headers",
                "--vulnerable",
                "--fs",
                "--jsonfile-pretty",
            ])
            .arg(&json)
            .arg(target)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("testssl.json")).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut findings = Vec::new();
    for section in report["scanResult"].as_array().unwrap() {
        for (_, items) in section.as_object().unwrap() {
            let Some(items) = items.as_array() else {
                continue;
            };
            for f in items {
                findings.push((
                    f["id"].as_str().unwrap_or("").to_owned(),
                    f["severity"].as_str().unwrap_or("").to_owned(),
                    f["finding"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
    }
    assert!(
        findings.len() > 30,
        "testssl ran no real scan: {findings:?}"
    );
    let bad: Vec<_> = findings
        .iter()
        .filter(|(_, sev, _)| matches!(sev.as_str(), "MEDIUM" | "HIGH" | "CRITICAL"))
        .collect();
    assert!(
        bad.is_empty(),
        "testssl findings at MEDIUM or above: {bad:#?}"
    );
    let finding = |id: &str| {
        findings
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, f)| f.clone())
            .unwrap_or_else(|| panic!("testssl reported no `{id}`"))
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(
            finding(old).starts_with("not offered"),
            "{old}: {}",
            finding(old)
        );
    }
    for new in ["TLS1_2", "TLS1_3"] {
        assert!(
            finding(new).starts_with("offered"),
            "{new}: {}",
            finding(new)
        );
    }
    // Every cipher testssl saw offered is AES-GCM.
    for (id, _, f) in findings
        .iter()
        .filter(|(i, _, _)| i.starts_with("cipher-tls") || i.starts_with("cipher_x"))
    {
        assert!(f.contains("GCM"), "non-GCM cipher offered: {id} {f}");
    }
    assert!(!finding("cipherlist_NULL").starts_with("offered"));
    assert!(
        finding("cipher_order").contains("server") || finding("cipher_order").contains("OK"),
        "server cipher order: {}",
        finding("cipher_order")
    );
    // testssl 3.0 names it `PFS_ECDHE_curves`, later versions `FS_ECDHE_curves`.
    let curves = findings
        .iter()
        .find(|(i, _, _)| i.ends_with("FS_ECDHE_curves"))
        .map(|(_, _, f)| f.clone())
        .unwrap_or_else(|| panic!("testssl reported no ECDHE curves"));
    eprintln!("testssl: curves offered: {curves}");
    assert!(
        curves.contains("prime256v1") && curves.contains("secp384r1") && !curves.contains("X25519"),
        "key exchange groups: {curves}"
    );
}
