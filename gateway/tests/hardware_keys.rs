//! TLS with keys that never leave hardware: a software TPM (swtpm) and a
//! PKCS#11 token (SoftHSM2), driven through the real `stadttor` binary:
//! `stadttor keys generate` makes the key, a test CA certifies its public
//! key, and `stadttor serve` terminates TLS with it. Checked by a rustls
//! client and by `openssl s_client`.

#![cfg(all(feature = "tpm", feature = "pkcs11"))]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::HandshakeKind;
use rustls_pki_types::pem::PemObject;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{hw, Gateway, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

/// Runs `stadttor keys …`, returns stdout; panics with stderr on failure.
fn keys_cmd(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .envs(env.iter().copied())
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stadttor keys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The SPKI DER in the PEM `PUBLIC KEY` block that `keys show` prints.
fn spki_from_show(out: &str) -> Vec<u8> {
    let start = out
        .find("-----BEGIN PUBLIC KEY-----")
        .expect("public key in output");
    rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&out.as_bytes()[start..])
        .unwrap()
        .as_ref()
        .to_vec()
}

fn gateway_config(backend: std::net::SocketAddr, keys: &str, certs: &str) -> String {
    format!(
        r#"
[keys]
{keys}

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

{certs}

[[upstreams]]
name = "app"
addresses = ["{backend}"]

[[routes]]
name = "app"
upstream = "app"
"#
    )
}

fn cert_toml(chain: &std::path::Path, key: &str, extra: &str) -> String {
    format!(
        "[[listeners.tls.certificates]]\nchain = {:?}\nkey = \"{key}\"\nserver_names = [\"localhost\"]\n{extra}\n",
        chain.display().to_string()
    )
}

/// A gateway serving TLS with the TPM key `key` in direct mode, its public
/// key certified by a fresh test CA (written to `dir/ca.pem`).
fn tpm_gateway(
    tcti: &str,
    key: &str,
    spki: &[u8],
    dir: &TempDir,
    backend: std::net::SocketAddr,
) -> (stadttor_pki::devca::DevCa, Gateway) {
    let ca = stadttor_pki::devca::DevCa::generate("tpm test CA").unwrap();
    dir.write("ca.pem", &ca.cert_pem());
    let chain = dir.write(
        "tpm.pem",
        &ca.issue_server_for_spki(&["localhost", "127.0.0.1"], spki)
            .unwrap(),
    );
    let cfg = gateway_config(
        backend,
        &format!("tpm_tcti = \"{tcti}\""),
        &cert_toml(&chain, key, ""),
    );
    let gw = Gateway::start_env(BIN, dir, &cfg, &[("TSS2_LOG", "all+none")]);
    (ca, gw)
}

/// A metric value from the exposition text, e.g. `stadttor_key_signatures_total`.
fn metric(text: &str, name: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("key=\"{key}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} for {key} in:\n{text}"))
}

fn openssl_s_client(addr: std::net::SocketAddr, ca: &std::path::Path) -> String {
    let out = Command::new("timeout")
        .args([
            "20",
            "openssl",
            "s_client",
            "-brief",
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(ca)
        .arg("-connect")
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Verification: OK"),
        "openssl s_client: {text}"
    );
    text
}

/// Full handshakes, each on a fresh client config (no session to resume).
async fn full_handshakes(ca: &str, addr: std::net::SocketAddr, n: usize) {
    for _ in 0..n {
        let c = Arc::new(client::tls_config(ca, None, Proto::H1));
        let tls = client::connect(c, addr, "localhost").await.unwrap();
        // rustls offers an X25519 key share first; the BSI profile answers
        // with a HelloRetryRequest for P-256. Either way: a full handshake.
        assert!(matches!(
            tls.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_tpm_key_direct_and_resumption_spares_the_tpm() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    let key = "tpm:handle=0x81010002";
    let shown = keys_cmd(&["--tcti", &tcti, "generate", key], &[]);
    assert!(shown.contains("TPM 2.0 (non-exportable)"), "{shown}");
    // The CSR is signed by the TPM key and verifies with openssl.
    let dir = TempDir::new("tpm-tls");
    let csr = dir.path().join("gw.csr");
    keys_cmd(
        &[
            "--tcti",
            &tcti,
            "csr",
            key,
            "--cn",
            "localhost",
            "--san",
            "localhost",
            "-o",
            csr.to_str().unwrap(),
        ],
        &[],
    );
    let v = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    let b = Backend::start("app").await;
    let (ca, gw) = tpm_gateway(&tcti, key, &spki_from_show(&shown), &dir, b.addr);
    let ca_path = dir.path().join("ca.pem");
    let addr = gw.addr();

    // Full handshakes: one TPM signature each.
    full_handshakes(&ca.cert_pem(), addr, 5).await;
    for proto in [Proto::H1, Proto::H2] {
        let c = Arc::new(client::tls_config(&ca.cert_pem(), None, proto));
        assert_eq!(
            client::get(c, addr, "localhost", proto, "/")
                .await
                .unwrap()
                .status,
            200
        );
    }
    let text = openssl_s_client(addr, &ca_path);
    assert!(text.contains("ECDSA") || text.contains("ecdsa"), "{text}");
    let (_, m) = gw.admin_get("/metrics").await;
    let after_full = metric(&m, "stadttor_key_signatures_total", key);
    assert_eq!(
        after_full, 8,
        "5 + 2 + openssl: one TPM signature per full handshake\n{m}"
    );

    // Resumption: 20 connections sharing one client's session store. A
    // request on each lets the client take in the server's tickets.
    let c = Arc::new(client::tls_config(&ca.cert_pem(), None, Proto::H1));
    let mut kinds = Vec::new();
    for _ in 0..20 {
        let tls = client::connect(c.clone(), addr, "localhost").await.unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        let req = http::Request::get("/")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let r = client::send_on(tls, addr, "localhost", Proto::H1, req)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(matches!(
        kinds[0],
        Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest)
    ));
    assert!(
        kinds[1..]
            .iter()
            .all(|k| *k == Some(HandshakeKind::Resumed)),
        "{kinds:?}"
    );
    let (_, m) = gw.admin_get("/metrics").await;
    let after_resumed = metric(&m, "stadttor_key_signatures_total", key);
    assert_eq!(
        after_resumed,
        after_full + 1,
        "only the first of 20 connections signs; resumed handshakes never call the TPM"
    );
    drop(gw);
    drop(tpm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_pkcs11_key() {
    let _ = hw::init();
    let dir = TempDir::new("p11-tls");
    // A token of our own for the gateway process.
    let conf_dir = dir.path().join("softhsm");
    std::fs::create_dir_all(conf_dir.join("tokens")).unwrap();
    let conf = dir.write(
        "softhsm/softhsm2.conf",
        &format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            conf_dir.join("tokens").display()
        ),
    );
    let conf_s = conf.to_str().unwrap().to_owned();
    let env = [("SOFTHSM2_CONF", conf_s.as_str())];
    let st = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "gateway",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let pin = dir.write_secret("pin", "1234\n");
    let key = "pkcs11:token=gateway;object=tls";
    let backend_flags = [
        "--pkcs11-module",
        hw::SOFTHSM_MODULE,
        "--pin-file",
        pin.to_str().unwrap(),
    ];
    let mut args = backend_flags.to_vec();
    args.extend(["generate", key]);
    let shown = keys_cmd(&args, &env);
    assert!(shown.contains("PKCS#11"), "{shown}");

    let ca = stadttor_pki::devca::DevCa::generate("p11 test CA").unwrap();
    let ca_path = dir.write("ca.pem", &ca.cert_pem());
    let chain = dir.write(
        "p11.pem",
        &ca.issue_server_for_spki(&["localhost", "127.0.0.1"], &spki_from_show(&shown))
            .unwrap(),
    );
    let b = Backend::start("app").await;
    let keys = format!(
        "pkcs11_module = \"{}\"\npkcs11_pin_file = \"{}\"",
        hw::SOFTHSM_MODULE,
        pin.display()
    );
    let cfg = gateway_config(b.addr, &keys, &cert_toml(&chain, key, ""));
    let gw = Gateway::start_env(BIN, &dir, &cfg, &env);
    full_handshakes(&ca.cert_pem(), gw.addr(), 3).await;
    let c = Arc::new(client::tls_config(&ca.cert_pem(), None, Proto::H2));
    assert_eq!(
        client::get(c, gw.addr(), "localhost", Proto::H2, "/")
            .await
            .unwrap()
            .status,
        200
    );
    openssl_s_client(gw.addr(), &ca_path);
    let (_, m) = gw.admin_get("/metrics").await;
    assert_eq!(metric(&m, "stadttor_key_signatures_total", key), 5, "{m}");

    // A wrong PIN is a clear start-up error, exit 78 (EX_CONFIG), and names the token.
    let bad_pin = dir.write_secret("bad-pin", "9999\n");
    let bad = cfg.replace(pin.to_str().unwrap(), bad_pin.to_str().unwrap());
    let bad_path = dir.write("bad.toml", &bad);
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad_path)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PIN") && err.contains("gateway"), "{err}");
    assert!(!err.contains("9999"), "the PIN is never printed: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_leaf_mode_keeps_handshakes_off_the_tpm() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    let key = "tpm:handle=0x81010003";
    let shown = keys_cmd(&["--tcti", &tcti, "generate", key], &[]);
    let dir = TempDir::new("leaf");
    let ca = stadttor_pki::devca::DevCa::generate("leaf test CA").unwrap();
    let ca_path = dir.write("ca.pem", &ca.cert_pem());
    let issuing = dir.write(
        "issuing.pem",
        &ca.issue_issuing_ca_for_spki("stadttor issuing key", &spki_from_show(&shown))
            .unwrap(),
    );
    let b = Backend::start("app").await;
    let cfg = gateway_config(
        b.addr,
        &format!("tpm_tcti = \"{tcti}\""),
        &cert_toml(
            &issuing,
            key,
            "mode = \"short-lived-leaf\"\nleaf_lifetime = \"2h\"",
        ),
    );
    let gw = Gateway::start_env(BIN, &dir, &cfg, &[("TSS2_LOG", "all+none")]);
    let addr = gw.addr();
    full_handshakes(&ca.cert_pem(), addr, 30).await;
    let c = Arc::new(client::tls_config(&ca.cert_pem(), None, Proto::H1));
    let tls = client::connect(c, addr, "localhost").await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap().to_vec();
    assert_eq!(served.len(), 2, "leaf + issuing certificate");
    let (_, leaf) = x509_parser::parse_x509_certificate(served[0].as_ref()).unwrap();
    let left = leaf.validity().not_after.timestamp() - time_now();
    assert!(
        left > 3600 && left <= 2 * 3600 + 60,
        "leaf lifetime {left}s"
    );
    openssl_s_client(addr, &ca_path);
    let (_, m) = gw.admin_get("/metrics").await;
    assert_eq!(
        metric(&m, "stadttor_key_signatures_total", key),
        1,
        "the TPM signed only the leaf certificate\n{m}"
    );
    assert!(
        metric(
            &m,
            "stadttor_key_signatures_total",
            "memory:leaf-of:tpm:handle=0x81010003"
        ) >= 32,
        "{m}"
    );
    // Reload re-issues the leaf (one more TPM signature), without a second
    // TPM connection.
    gw.signal("HUP");
    assert!(
        gw.wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    let (_, m) = gw.admin_get("/metrics").await;
    assert_eq!(metric(&m, "stadttor_key_signatures_total", key), 2, "{m}");
    full_handshakes(&ca.cert_pem(), addr, 2).await;
    drop(gw);
    drop(tpm);
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tpm_does_not_stall_other_connections() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    let key = "tpm:handle=0x81010004";
    let shown = keys_cmd(&["--tcti", &tcti, "generate", key], &[]);
    let dir = TempDir::new("stall");
    let b = Backend::start("app").await;
    let (ca, gw) = tpm_gateway(&tcti, key, &spki_from_show(&shown), &dir, b.addr);
    let addr = gw.addr();
    // An established h2 connection, before the stall.
    let c = Arc::new(client::tls_config(&ca.cert_pem(), None, Proto::H2));
    let tls = client::connect(c.clone(), addr, "localhost").await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    tpm.suspend();
    // Two new full handshakes now wait on the frozen TPM.
    let ca_pem = ca.cert_pem();
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let ca_pem = ca_pem.clone();
            tokio::spawn(async move {
                let c = Arc::new(client::tls_config(&ca_pem, None, Proto::H1));
                client::get(c, addr, "localhost", Proto::H1, "/").await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the established connection is served promptly.
    for _ in 0..10 {
        let t = Instant::now();
        let uri = format!("https://localhost:{}/", addr.port());
        let resp = sender
            .send_request(
                http::Request::get(uri)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "stalled: {:?}",
            t.elapsed()
        );
    }
    // The admin listener answers too.
    let t = Instant::now();
    assert_eq!(gw.admin_get("/healthz").await.0, 200);
    assert!(t.elapsed() < Duration::from_millis(300));
    tpm.resume();
    for h in blocked {
        let r = h
            .await
            .unwrap()
            .expect("handshake completes once the TPM answers");
        assert_eq!(r.status, 200);
    }
}

#[test]
fn an_unreachable_tpm_refuses_to_start_naming_the_tcti() {
    let dir = TempDir::new("no-tpm");
    let ca = stadttor_pki::devca::DevCa::generate("x").unwrap();
    let issued = ca.issue_server(&["localhost"]).unwrap();
    let chain = dir.write("c.pem", &issued.cert_pem);
    let dead = hw::free_port_pair();
    let tcti = format!("swtpm:host=127.0.0.1,port={dead}");
    let cfg = gateway_config(
        "127.0.0.1:9".parse().unwrap(),
        &format!("tpm_tcti = \"{tcti}\""),
        &cert_toml(&chain, "tpm:handle=0x81010002", ""),
    );
    let path = dir.write("stadttor.toml", &cfg);
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&tcti), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn keys_attest_produces_a_certification_openssl_verifies() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    // The key to attest, made by stadttor (this also creates the SRK).
    keys_cmd(&["--tcti", &tcti, "generate", "tpm:handle=0x81010002"], &[]);
    // A restricted attestation key, made by tpm2-tools under that SRK.
    tpm.create_ak("0x81000001", "0x81010005");
    let out_dir = tpm.dir.path().join("attestation");
    let printed = keys_cmd(
        &[
            "--tcti",
            &tcti,
            "attest",
            "tpm:handle=0x81010002",
            "--ak",
            "tpm:handle=0x81010005",
            "--nonce",
            "00112233445566778899aabbccddeeff",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(printed.contains("openssl dgst"), "{printed}");
    let attest = std::fs::read(out_dir.join("attest.bin")).unwrap();
    assert_eq!(
        &attest[..4],
        &[0xff, 0x54, 0x43, 0x47],
        "TPM_GENERATED magic"
    );
    let nonce = [
        0x00u8, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    assert!(
        attest.windows(16).any(|w| w == nonce),
        "the verifier's nonce is signed"
    );
    let verify = |file: &str| {
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(out_dir.join("ak.pem"))
            .arg("-signature")
            .arg(out_dir.join("attest.sig"))
            .arg(out_dir.join(file))
            .output()
            .unwrap()
    };
    let ok = verify("attest.bin");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // A flipped byte fails.
    let mut bad = attest.clone();
    bad[10] ^= 1;
    std::fs::write(out_dir.join("bad.bin"), &bad).unwrap();
    assert!(!verify("bad.bin").status.success());
}

#[test]
fn keys_seal_and_unseal_a_gateway_secret_bound_to_pcrs() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    let dir = TempDir::new("seal");
    let secret = dir.write("ticket.key", "0123456789abcdef0123456789abcdef");
    let unbound = dir.path().join("ticket.sealed");
    let bound = dir.path().join("session.sealed");
    let out = keys_cmd(
        &[
            "--tcti",
            &tcti,
            "seal",
            "--secret",
            secret.to_str().unwrap(),
            "-o",
            unbound.to_str().unwrap(),
        ],
        &[],
    );
    let fp = out.rsplit("SHA256:").next().unwrap().trim().to_owned();
    let pem = std::fs::read_to_string(&unbound).unwrap();
    assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"), "{pem}");
    assert!(!pem.contains("0123456789abcdef"));
    let out = keys_cmd(
        &[
            "--tcti",
            &tcti,
            "seal",
            "--pcr",
            "16",
            "-o",
            bound.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.contains("bound to PCR [16]"), "{out}");
    let back = keys_cmd(&["--tcti", &tcti, "unseal", unbound.to_str().unwrap()], &[]);
    assert!(
        back.contains(&fp) && !back.contains("0123456789abcdef"),
        "{back}"
    );
    keys_cmd(&["--tcti", &tcti, "unseal", bound.to_str().unwrap()], &[]);
    // The platform state changes: the PCR-bound secret no longer unseals.
    tpm.run(
        "tpm2_pcrextend",
        &["16:sha256=0000000000000000000000000000000000000000000000000000000000000001"],
    );
    let fail = Command::new(BIN)
        .args(["keys", "--tcti", &tcti, "unseal"])
        .arg(&bound)
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert!(!fail.status.success());
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(err.contains("platform state changed"), "{err}");
    keys_cmd(&["--tcti", &tcti, "unseal", unbound.to_str().unwrap()], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checkpoints_signed_in_the_tpm_fail_closed_when_the_tpm_goes() {
    let _ = hw::init();
    let tpm = hw::Swtpm::start();
    let tcti = tpm.tcti();
    let audit_key = "tpm:handle=0x81010006";
    keys_cmd(&["--tcti", &tcti, "generate", audit_key], &[]);
    let dir = TempDir::new("audit-tpm");
    let ca = stadttor_pki::devca::DevCa::generate("audit CA").unwrap();
    let issued = ca.issue_server(&["localhost"]).unwrap();
    let chain = dir.write("tls.pem", &issued.cert_pem);
    let tls_key = dir.write("tls.key", &issued.key_pem);
    let pseudo = dir.write_secret(
        "pseudonym.key",
        "0123456789abcdef0123456789abcdef-pseudonym",
    );
    let b = Backend::start("app").await;
    let mut cfg = gateway_config(
        b.addr,
        &format!("tpm_tcti = \"{tcti}\""),
        &cert_toml(&chain, &format!("file:{}", tls_key.display()), ""),
    );
    cfg.push_str(&format!(
        r#"
[[routes]]
name = "open-data"
upstream = "app"
path_prefix = "/open"
audit = "best-effort"

[audit]
dir = {:?}
origin = "stadttor.test/audit"
key = "{audit_key}"
pseudonym_key_file = {:?}
checkpoint_period = "200ms"
"#,
        dir.path().join("audit").display().to_string(),
        pseudo.display().to_string()
    ));
    let gw = Gateway::start_env(BIN, &dir, &cfg, &[("TSS2_LOG", "all+none")]);
    let addr = gw.addr();
    let c = Arc::new(client::tls_config(&ca.cert_pem(), None, Proto::H1));
    assert_eq!(
        client::get(c.clone(), addr, "localhost", Proto::H1, "/")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
    // Checkpoints are ECDSA P-256 signatures by the TPM key.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, m) = gw.admin_get("/metrics").await;
    assert!(
        metric(&m, "stadttor_key_signatures_total", audit_key) >= 1,
        "{m}"
    );

    // The TPM goes away: checkpoints cannot be signed any more.
    drop(tpm);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client::get(c.clone(), addr, "localhost", Proto::H1, "/")
            .await
            .unwrap();
        if r.status == 503 {
            assert!(r.text().contains("cannot be recorded"), "{}", r.text());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audited route still served without a log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, why) = gw.admin_get("/readyz").await;
    assert_eq!(code, 503);
    assert!(why.contains("audit"), "{why}");
    // A best-effort route keeps serving.
    let r = client::get(c, addr, "localhost", Proto::H1, "/open/data")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        gw.logs().contains("audit log cannot record"),
        "{}",
        gw.logs()
    );
}
