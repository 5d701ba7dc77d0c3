//! Every audited request is in the signed, tamper-evident log before it is
//! forwarded; the log verifies with the key-less verifier; personal data is
//! pseudonymised.

use std::sync::Arc;
use std::time::Duration;

use stadttor_audit::verify::{verify_dir, LogReader};
use stadttor_audit::VerifierKey;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{Gateway, TempDir, TestPki};

use crate::BIN;

/// `[audit]` with an Ed25519 file key and a pseudonym key in `dir`.
pub(crate) fn audit_toml(dir: &TempDir) -> String {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = dir.path().join("audit-ed25519.der");
    std::fs::write(&key, pkcs8.as_ref()).unwrap();
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&rng, &mut secret).unwrap();
    let pseudo = dir.write_secret("pseudonym.key", secret);
    format!(
        "[audit]\ndir = {:?}\norigin = \"stadttor.test/audit\"\nkey = \"file:{}\"\npseudonym_key_file = {:?}\ncheckpoint_period = \"200ms\"\n",
        dir.path().join("audit").display().to_string(),
        key.display(),
        pseudo.display().to_string()
    )
}

pub(crate) fn verifier_key_from_logs(logs: &str) -> VerifierKey {
    let start = logs.find("verifier_key=").expect("audit log open line") + "verifier_key=".len();
    let key: String = logs[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    VerifierKey::parse(&key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_requests_are_in_the_signed_log_with_pseudonymous_subjects() {
    let b = Backend::start("app").await;
    let dir = TempDir::new("audit");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "forward_client_cert = true", &audit_toml(&dir))
        .replace(
            "[[listeners.tls.certificates]]",
            &format!(
                "[listeners.tls.client_auth]\nca = {:?}\nmode = \"optional\"\n\n[[listeners.tls.certificates]]",
                pki.ca_path.display().to_string()
            ),
        );
    let mut gw = Gateway::start(BIN, &dir, &cfg);
    let mut ids = Vec::new();
    let mut cert_subject = None;
    let anon = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H2));
    let with_cert = Arc::new(client::tls_config(
        &pki.ca_pem,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
        Proto::H1,
    ));
    for i in 0..6 {
        let (c, proto) = if i % 2 == 0 {
            (anon.clone(), Proto::H2)
        } else {
            (with_cert.clone(), Proto::H1)
        };
        let r = client::get(
            c,
            gw.addr(),
            "localhost",
            proto,
            "/buerger/antrag?name=Erika%20Mustermann",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
        if let Some(s) = r.json()["headers"]["x-stadttor-client-cert-subject"][0].as_str() {
            cert_subject = Some(s.to_owned());
        }
    }
    let key = verifier_key_from_logs(&gw.logs());
    // The operator's commands give what the running gateway uses: the
    // verifier key it logged, and the pseudonym of the certificate's
    // subject (checked against the log below).
    let operator = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["audit"])
            .args(args)
            .args(["--config", gw.config_path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "audit {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(operator(&["key"]), key.to_string());
    let cert_subject = cert_subject.expect("the backend saw the client certificate's subject");
    let pseudonym = operator(&["pseudonym", "--kind", "x509-subject", &cert_subject]);
    // The first checkpoint is signed one period (1 s) after start; wait for
    // it, so the audit key has a signature to report on shutdown (the final
    // checkpoint is signed after that report, which it covers).
    let log_dir = dir.path().join("audit");
    let t0 = std::time::Instant::now();
    while !log_dir.join("checkpoint").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no checkpoint signed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).unwrap().success());

    let report = verify_dir(&log_dir, &key).unwrap();
    let reader = LogReader::open(&log_dir, &key).unwrap();
    let mut out = Vec::new();
    reader.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    assert_eq!(events.len() as u64, report.entries);
    assert_eq!(events.first().unwrap()["kind"], "gateway.start");
    assert_eq!(events.last().unwrap()["kind"], "gateway.stop");
    // Key use is summarised per key on shutdown (and every
    // `key_use_interval`): the TLS key signed the full handshakes, the
    // audit key the checkpoints.
    let key_use: Vec<_> = events.iter().filter(|e| e["kind"] == "key.use").collect();
    let tls = key_use
        .iter()
        .find(|e| e["target"].as_str().unwrap().ends_with("server.key"))
        .unwrap_or_else(|| panic!("no key.use for the TLS key: {key_use:?}"));
    assert_eq!(tls["attrs"]["backend"], "file");
    let tls_sigs = tls["attrs"]["signatures"].as_u64().unwrap();
    assert!(
        (2..=6).contains(&tls_sigs),
        "one signature per full handshake: {tls}"
    );
    assert_eq!(tls["outcome"], "success");
    let audit_key = key_use
        .iter()
        .find(|e| e["target"].as_str().unwrap().ends_with("audit-ed25519.der"))
        .unwrap_or_else(|| panic!("no key.use for the audit key: {key_use:?}"));
    assert!(audit_key["attrs"]["signatures"].as_u64().unwrap() >= 1);
    assert_eq!(
        events.len() - key_use.len(),
        8,
        "start + 6 requests + stop, besides key use"
    );
    let access: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "http.access")
        .collect();
    assert_eq!(access.len(), 6);
    for (e, id) in access.iter().zip(&ids) {
        assert_eq!(e["request_id"], id.as_str());
        assert_eq!(e["target"], "app");
    }
    let subjects: Vec<_> = access
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(
        subjects.len(),
        3,
        "the client-certificate requests carry a subject"
    );
    assert!(
        subjects
            .iter()
            .all(|s| s.starts_with("p1:") && *s == subjects[0]),
        "{subjects:?}"
    );
    assert_eq!(
        subjects[0], pseudonym,
        "`audit pseudonym` finds the subject"
    );
    // No personal data, paths or queries in the log.
    for needle in ["client-main", "Mustermann", "antrag", "CN="] {
        assert!(
            !text.contains(needle),
            "`{needle}` in the audit log: {text}"
        );
    }
    // A foreign key does not verify the log.
    let rng = ring::rand::SystemRandom::new();
    let other = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let other = ring::signature::Ed25519KeyPair::from_pkcs8(other.as_ref()).unwrap();
    let spki = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        ring::signature::KeyPair::public_key(&other).as_ref(),
    ]
    .concat();
    let foreign = VerifierKey::from_spki(
        "stadttor.test/audit",
        stadttor_hsm::Algorithm::Ed25519,
        &spki,
    )
    .unwrap();
    assert!(verify_dir(&log_dir, &foreign).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_use_is_summarised_every_interval() {
    let b = Backend::start("app").await;
    let dir = TempDir::new("audit-key-use");
    let pki = TestPki::new(&dir, "main", &[]);
    let audit = format!("{}key_use_interval = \"1s\"\n", audit_toml(&dir));
    let cfg = crate::config_text(&pki, b.addr, "", "", &audit);
    let mut gw = Gateway::start(BIN, &dir, &cfg);
    // Three full handshakes, one before and two after the first report.
    let get = || async {
        let c = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H1));
        let r = client::get(c, gw.addr(), "localhost", Proto::H1, "/")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    };
    get().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    get().await;
    get().await;
    let key = verifier_key_from_logs(&gw.logs());
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).unwrap().success());
    let reader = LogReader::open(&dir.path().join("audit"), &key).unwrap();
    let mut out = Vec::new();
    reader.export(&mut out).unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let tls: Vec<(usize, u64)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e["kind"] == "key.use" && e["target"].as_str().unwrap().ends_with("server.key")
        })
        .map(|(i, e)| (i, e["attrs"]["signatures"].as_u64().unwrap()))
        .collect();
    assert!(
        tls.len() >= 2,
        "a periodic report and the final one: {kinds:?}"
    );
    assert!(tls.iter().all(|(_, n)| *n > 0), "no empty reports: {tls:?}");
    assert_eq!(tls.iter().map(|(_, n)| n).sum::<u64>(), 3, "{tls:?}");
    let first_access = kinds.iter().position(|k| *k == "http.access").unwrap();
    let second_access = kinds.iter().rposition(|k| *k == "http.access").unwrap();
    assert!(
        tls[0].0 > first_access && tls[0].0 < second_access,
        "the periodic report lies between the requests: {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_opt_out_and_auditing_without_a_log_is_a_config_error() {
    let b = Backend::start("app").await;
    let dir = TempDir::new("audit-off");
    let pki = TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "audit = \"required\"", "");
    let path = dir.write("bad.toml", &cfg);
    let out = std::process::Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].audit"));
}
