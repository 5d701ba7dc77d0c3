//! `stadttor config check` and `stadttor serve` run one load-and-validate
//! path (`stadttor_gateway::preflight::check`): on the real binary, every
//! rejected fixture, certificate problems (expired, names not covered,
//! RSA-2048 below the BSI profile), secret-file permissions and missing
//! secret files get the same verdict, exit code and issue lines from both.
//! The unit's `ExecStartPre` relies on this.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stadttor_pki::devca::DevCa;
use testkit::{Gateway, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");
/// What both commands exit with on an unusable configuration: 78,
/// `EX_CONFIG` (sysexits), which the unit's `RestartPreventExitStatus` names.
const CONFIG_ERROR: i32 = 78;

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The issue lines (`  FILE: key `KEY`: REASON`), in order.
    fn issues(&self, file: &Path) -> Vec<String> {
        let prefix = format!("  {}: key `", file.display());
        self.stderr
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }
}

fn run(args: &[&str], file: &Path) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .arg(file)
        .env("STADTTOR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stadttor");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "stadttor {args:?} {} did not exit: it accepted the configuration\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(file: &Path) -> Run {
    run(&["config", "check"], file)
}

fn serve(file: &Path) -> Run {
    run(&["serve", "--config"], file)
}

/// Both commands refuse `file` with the same exit code and issue lines;
/// returns the issue lines.
fn both_refuse(file: &Path) -> Vec<String> {
    let (c, s) = (check(file), serve(file));
    assert_eq!(c.code, Some(CONFIG_ERROR), "config check: {c:?}");
    assert_eq!(s.code, c.code, "serve: {s:?}\nconfig check: {c:?}");
    let issues = c.issues(file);
    assert!(!issues.is_empty(), "{c:?}");
    assert_eq!(s.issues(file), issues, "serve: {s:?}");
    issues
}

#[test]
fn every_rejected_fixture_gets_the_same_verdict_from_config_check_and_serve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/config/rejected");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() > 50, "{} fixtures", files.len());
    for f in &files {
        both_refuse(f);
    }
}

/// A directory with a dev CA and a valid server certificate and key, a
/// file key for the audit log and its pseudonym key (mode 0640).
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let ca = DevCa::generate("preflight test CA").unwrap();
        let server = ca.issue_server(&["localhost", "portal.example"]).unwrap();
        dir.write("tls/server.pem", &server.cert_pem);
        dir.write("tls/server.key", &server.key_pem);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        std::fs::write(dir.path().join("audit.der"), pkcs8.as_ref()).unwrap();
        let pseudo = dir.write_secret("pseudonym.key", [7u8; 32]);
        chmod(&pseudo, 0o640);
        Self { dir }
    }

    /// A configuration with one listener serving `chain` for `names`, and
    /// an `[audit]` table.
    fn config(&self, chain: &str, names: &[&str]) -> PathBuf {
        let text = format!(
            r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[listeners.tls.certificates]]
chain = "{chain}"
key = "file:tls/server.key"
server_names = {names:?}

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:9"]

[[routes]]
name = "app"
upstream = "app"

[audit]
dir = "audit"
origin = "stadttor.test/preflight"
key = "file:audit.der"
pseudonym_key_file = "pseudonym.key"
"#
        );
        self.dir.write("stadttor.toml", &text)
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_group_readable_secret_passes_both_and_an_open_one_fails_both_alike() {
    let s = Setup::new("preflight-perms");
    let file = s.config("tls/server.pem", &["localhost"]);
    let c = check(&file);
    assert_eq!(c.code, Some(0), "{c:?}");
    // serve starts on the same files (0640 pseudonym key).
    let gw = Gateway::start_file(BIN, &file);
    drop(gw);

    let pseudo = s.dir.path().join("pseudonym.key");
    chmod(&pseudo, 0o644);
    let issues = both_refuse(&file);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(
        issues[0].contains("key `audit.pseudonym_key_file`")
            && issues[0].contains("mode 0644")
            && issues[0].contains("chmod 0640"),
        "{issues:?}"
    );

    chmod(&pseudo, 0o660);
    let issues = both_refuse(&file);
    assert!(issues[0].contains("mode 0660"), "{issues:?}");
}

#[test]
fn missing_secret_and_key_files_are_refused_by_both() {
    let s = Setup::new("preflight-missing");
    let file = s.config("tls/server.pem", &["localhost"]);
    std::fs::remove_file(s.dir.path().join("pseudonym.key")).unwrap();
    std::fs::remove_file(s.dir.path().join("audit.der")).unwrap();
    let issues = both_refuse(&file);
    let keys: Vec<bool> = ["audit.key", "audit.pseudonym_key_file"]
        .iter()
        .map(|k| issues.iter().any(|l| l.contains(&format!("key `{k}`"))))
        .collect();
    assert_eq!(keys, [true, true], "{issues:?}");
}

/// A self-signed P-256 certificate for `names`, valid from `from` to
/// `until` (seconds from now), with the key of `tls/server.key` replaced.
fn cert_valid(s: &Setup, name: &str, names: &[&str], from: i64, until: i64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::seconds(from);
    p.not_after = now + time::Duration::seconds(until);
    let cert = p.self_signed(&key).unwrap();
    s.dir.write(&format!("tls/{name}.pem"), &cert.pem());
    s.dir.write("tls/server.key", &key.serialize_pem());
    format!("tls/{name}.pem")
}

#[test]
fn an_expired_certificate_is_refused_by_both() {
    let s = Setup::new("preflight-expired");
    let chain = cert_valid(&s, "old", &["localhost"], -90 * 86_400, -86_400);
    let issues = both_refuse(&s.config(&chain, &["localhost"]));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(
        issues[0].contains("key `listeners[0].tls.certificates[0]`")
            && issues[0].contains("expired on"),
        "{issues:?}"
    );
}

#[test]
fn a_certificate_expiring_soon_is_a_warning_not_an_error() {
    let s = Setup::new("preflight-soon");
    let chain = cert_valid(&s, "soon", &["localhost"], -86_400, 10 * 86_400 + 3600);
    let file = s.config(&chain, &["localhost"]);
    let c = check(&file);
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(
        c.stderr.lines().any(|l| l
            .contains("key `listeners[0].tls.certificates[0]`: warning: certificate")
            && l.contains("in 10 days")),
        "{c:?}"
    );
    assert!(c.stdout.contains(": ok ("), "{c:?}");
    // Beyond the threshold (`server.certificate_expiry_warning`): quiet.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("[server]\ncertificate_expiry_warning = \"5d\"\n{text}"),
    )
    .unwrap();
    let c = check(&file);
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(!c.stderr.contains("warning"), "{c:?}");
}

#[test]
fn certificate_names_must_cover_server_names_in_both() {
    let s = Setup::new("preflight-names");
    let chain = cert_valid(&s, "one", &["portal.example"], -86_400, 90 * 86_400);
    let issues = both_refuse(&s.config(&chain, &["portal.example", "buerger.example"]));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(
        issues[0].contains("does not cover server_names [\"buerger.example\"]")
            && issues[0].contains("portal.example"),
        "{issues:?}"
    );
    // A wildcard certificate covers one label.
    let chain = cert_valid(&s, "wild", &["*.example"], -86_400, 90 * 86_400);
    let c = check(&s.config(&chain, &["portal.example", "buerger.example"]));
    assert_eq!(c.code, Some(0), "{c:?}");
}

#[test]
fn rsa_2048_is_refused_by_both_with_the_bsi_reason() {
    let s = Setup::new("preflight-rsa");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
        ])
        .arg(s.dir.path().join("tls/server.key"))
        .arg("-out")
        .arg(s.dir.path().join("tls/rsa.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(ok.success());
    let issues = both_refuse(&s.config("tls/rsa.pem", &["localhost"]));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(
        issues[0].contains("RSA-2048 is below the BSI TR-02102-2 minimum of 3000 bits"),
        "{issues:?}"
    );
}

fn session_key(file: &Path) {
    let out = Command::new(BIN)
        .args(["keys", "session-key"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Threat: a rotation by root that leaves the key unreadable for the
/// service (the next start fails) or readable for others. `keys
/// session-key` keeps the old file's owner, group and mode; a new file gets
/// the documented 0640 and its directory's group; the check accepts it.
#[test]
fn session_key_rotation_keeps_owner_group_and_mode() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TempDir::new("preflight-rotate");
    let file = dir.path().join("session.keys");
    session_key(&file);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), std::fs::metadata(dir.path()).unwrap().gid());
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first.lines().count(), 1);

    // As the package sets it up: root:stadttor 0640 (a group id stands in
    // for `stadttor`; changing it needs root, as on the appliance).
    let me = meta.uid();
    let group = if me == 0 { 4242 } else { meta.gid() };
    if me == 0 {
        std::os::unix::fs::chown(&file, Some(0), Some(group)).unwrap();
    }
    for mode in [0o640, 0o600] {
        chmod(&file, mode);
        session_key(&file);
        let after = std::fs::metadata(&file).unwrap();
        assert_eq!(
            (after.uid(), after.gid(), after.mode() & 0o7777),
            (me, group, mode),
            "owner, group and mode kept"
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[2], first.trim(), "the first key is kept below");
    assert!(stadttor_gateway::authn::cookie::CookieKeys::load(&file).is_ok());
    // No temporary file left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["session.keys"]);
}

/// A SAML provider's configuration in `s`: IdP metadata (with `extra`
/// attributes on its EntityDescriptor), SP keys and certificates made with
/// openssl; returns the config file.
fn saml_config(s: &Setup, signing_key: &str, decryption_cert: &str, md_extra: &str) -> PathBuf {
    use testkit::saml_idp::{pem_body, rsa_cert};
    if !s.dir.path().join("sp-signing.key").exists() {
        rsa_cert(&s.dir, "sp-signing");
        rsa_cert(&s.dir, "sp-enc");
        rsa_cert(&s.dir, "idp");
        let keys = format!(
            "{}\n",
            stadttor_gateway::authn::cookie::CookieKeys::generate().unwrap()
        );
        chmod(&s.dir.write("session.keys", &keys), 0o600);
        let rng = ring::rand::SystemRandom::new();
        let p8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        std::fs::write(s.dir.path().join("assertion.p8"), p8.as_ref()).unwrap();
        let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        std::fs::write(s.dir.path().join("ed25519.p8"), ed.as_ref()).unwrap();
    }
    let idp_cert = pem_body(&s.dir.path().join("idp.crt"));
    s.dir.write(
        "idp-metadata.xml",
        &format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example/saml"{md_extra}><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{idp_cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        ),
    );
    let base = std::fs::read_to_string(s.config("tls/server.pem", &["localhost"])).unwrap();
    let text = format!(
        r#"{base}
[identity]
session_key_file = "session.keys"
store = "file:sessions"
assertion_key = "file:assertion.p8"

[[identity.providers]]
name = "bundid"
display_name = "BundID"
protocol = "saml"
profile = "bundid"
idp_metadata_file = "idp-metadata.xml"
entity_id = "https://kommune.example/saml"
acs_url = "https://portal.example/.stadttor/acs/bundid"
signing_key = "{signing_key}"
signing_certificate = "sp-signing.crt"
decryption_key = "file:sp-enc.key"
decryption_certificate = "{decryption_cert}"
attributes = ["bpk2"]
"#
    );
    s.dir.write("stadttor.toml", &text)
}

#[test]
fn saml_metadata_certificates_and_key_types_are_checked_by_both() {
    let s = Setup::new("preflight-saml");
    let ok = saml_config(&s, "file:sp-signing.key", "sp-enc.crt", "");
    let c = check(&ok);
    assert_eq!(c.code, Some(0), "{c:?}");

    // The encryption certificate does not certify the decryption key.
    let file = saml_config(&s, "file:sp-signing.key", "sp-signing.crt", "");
    let issues = both_refuse(&file);
    assert!(
        issues.iter().any(|l| l.contains("decryption_certificate")),
        "{issues:?}"
    );

    // Ed25519 has no XML-DSig signature method here.
    let file = saml_config(&s, "file:ed25519.p8", "sp-enc.crt", "");
    let issues = both_refuse(&file);
    assert!(
        issues
            .iter()
            .any(|l| l.contains("signing_key") && l.contains("cannot sign SAML messages")),
        "{issues:?}"
    );

    // Expired IdP metadata.
    let file = saml_config(
        &s,
        "file:sp-signing.key",
        "sp-enc.crt",
        r#" validUntil="2020-01-01T00:00:00Z""#,
    );
    let issues = both_refuse(&file);
    assert!(
        issues
            .iter()
            .any(|l| l.contains("idp_metadata_file") && l.contains("expired")),
        "{issues:?}"
    );
}
