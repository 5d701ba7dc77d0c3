//! The certificate renewal runbook of docs/OPERATIONS.md ("Renewing a
//! certificate"), step by step on the real binary with a key in a
//! software TPM (swtpm): TPM handle → `stadttor keys csr` → a CA (openssl)
//! signs → install → `stadttor config check` → SIGHUP. A real TLS client
//! then sees the new certificate's serial, and
//! `stadttor_certificate_expiry_seconds`, the start-up warning and the
//! `/readyz` detail follow the certificate.

#![cfg(feature = "tpm")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{hw, Gateway, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");
const KEY: &str = "tpm:handle=0x81010002";
const GAUGE: &str = "stadttor_certificate_expiry_seconds{certificate=\"listeners[0].tls.certificates[0]\",listener=\"public\"}";

/// Runs a command, panics with its stderr if it fails; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stadttor(tcti: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("TSS2_LOG", "all+none").env("STADTTOR_LOG", "warn");
    c.args(["keys", "--tcti", tcti]);
    c
}

/// Runbook step 2 and 3: a CSR from the TPM key, signed by the CA with
/// `serial` for `days`.
fn csr_and_sign(tcti: &str, dir: &Path, serial: &str, days: &str, out: &Path) {
    let csr = dir.join("gw.csr");
    ok(stadttor(tcti)
        .args(["csr", KEY, "--cn", "localhost", "--san", "localhost", "-o"])
        .arg(&csr));
    ok(Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-copy_extensions",
            "copy",
            "-set_serial",
            serial,
            "-days",
            days,
        ])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join("ca.pem"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(out));
}

/// The gauge's value in the exposition text.
fn gauge(metrics: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(GAUGE))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {GAUGE} in:\n{metrics}"))
}

/// The serial (hex) of the certificate a TLS client is served.
async fn served_serial(ca: &str, addr: std::net::SocketAddr) -> String {
    let c = Arc::new(client::tls_config(ca, None, Proto::H1));
    let tls = client::connect(c, addr, "localhost").await.unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    stadttor_pki::served::inspect(&leaf, Path::new("peer"))
        .unwrap()
        .serial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renewal_runbook_with_a_tpm_key_serves_the_new_certificate_after_sighup() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    let dir = TempDir::new("renewal");
    let d = dir.path();
    // The CA (stands in for the Kommune's CA).
    ok(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=Renewal Test CA", "-days", "365", "-keyout"])
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(d.join("ca.pem")));
    let ca = std::fs::read_to_string(d.join("ca.pem")).unwrap();

    // 1. The key in the TPM, once.
    ok(stadttor(&tcti).args(["generate", KEY]));
    // The first certificate: 20 days, inside the 30-day warning.
    std::fs::create_dir_all(d.join("tls")).unwrap();
    csr_and_sign(&tcti, d, "0x1001", "20", &d.join("tls/gw.pem"));
    let b = Backend::start("app").await;
    let cfg = format!(
        "[keys]\ntpm_tcti = \"{tcti}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners.tls.certificates]]\nchain = \"tls/gw.pem\"\nkey = \"{KEY}\"\n\
         server_names = [\"localhost\"]\n\n\
         [[upstreams]]\nname = \"app\"\naddresses = [\"{}\"]\n\n\
         [[routes]]\nname = \"app\"\nupstream = \"app\"\n",
        b.addr
    );
    let gw = Gateway::start_env(BIN, &dir, &cfg, &[("TSS2_LOG", "all+none")]);
    assert_eq!(served_serial(&ca, gw.addr()).await, "1001");
    assert!(
        gw.wait_for_log("serial 1001", Duration::from_secs(5)),
        "no expiry warning at start:\n{}",
        gw.logs()
    );
    let (status, ready) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.starts_with("ready\n")
            && ready.contains("certificate expiring: listeners[0].tls.certificates[0]")
            && ready.contains("serial 1001"),
        "{ready}"
    );
    let (_, m) = gw.admin_get("/metrics").await;
    let before = gauge(&m);
    assert!((19 * 86_400..=20 * 86_400).contains(&before), "{before}");

    // 2.-4. A new CSR from the same handle, signed for 90 days, installed
    // next to the old one and moved over it.
    csr_and_sign(&tcti, d, "0x2002", "90", &d.join("tls/gw.pem.new"));
    std::fs::rename(d.join("tls/gw.pem.new"), d.join("tls/gw.pem")).unwrap();
    // 5. config check, with the gateway running and holding the TPM.
    let check = ok(Command::new(BIN)
        .args(["config", "check"])
        .arg(&gw.config_path)
        .env("TSS2_LOG", "all+none"));
    assert!(check.contains(": ok (1 listener, 1 route)"), "{check}");
    // 6. SIGHUP.
    gw.signal("HUP");
    assert!(
        gw.wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    assert_eq!(served_serial(&ca, gw.addr()).await, "2002");
    let (_, m) = gw.admin_get("/metrics").await;
    let after = gauge(&m);
    assert!((89 * 86_400..=90 * 86_400).contains(&after), "{after}");
    let (status, ready) = gw.admin_get("/readyz").await;
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
}
