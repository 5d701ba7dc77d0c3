//! The operator's everyday commands, run as the real binary: `keys
//! generate` and `keys show` for file keys (JWK for `private_key_jwt`),
//! command-line errors exit 64, `--version` names the compiled features.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use testkit::TempDir;

use crate::BIN;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ed25519_file_key_is_generated_and_shown_as_jwk_and_pem() {
    let dir = TempDir::new("cli-keys");
    let key = format!("file:{}", dir.path().join("audit.p8").display());
    let (code, out, err) = run(&["keys", "generate", "--algorithm", "ed25519", &key]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, shown, err) = run(&["keys", "show", &key]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(shown, out, "show prints what generate printed");
    assert!(shown.contains("algorithm:   ed25519"), "{shown}");
    // The JWK's `x` is the key in the PEM SPKI, its `kid` the RFC 7638
    // thumbprint over the required members in lexicographic order.
    let jwk_line = shown.lines().find(|l| l.starts_with("jwk:")).unwrap();
    let jwk: serde_json::Value = serde_json::from_str(jwk_line["jwk:".len()..].trim()).unwrap();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    let pem: String = shown
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let spki = STANDARD.decode(pem).unwrap();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    assert_eq!(&spki[spki.len() - 32..], &x[..]);
    let members = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        jwk["x"].as_str().unwrap()
    );
    let thumb = ring::digest::digest(&ring::digest::SHA256, members.as_bytes());
    assert_eq!(jwk["kid"], URL_SAFE_NO_PAD.encode(thumb.as_ref()));
    // Never overwritten.
    let (code, _, err) = run(&["keys", "generate", "--algorithm", "ed25519", &key]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn unknown_algorithm_is_a_command_line_error() {
    let dir = TempDir::new("cli-alg");
    let key = format!("file:{}", dir.path().join("k.p8").display());
    let (code, _, err) = run(&["keys", "generate", "--algorithm", "rsa1024", &key]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("p256") && err.contains("ed25519"), "{err}");
    assert!(!dir.path().join("k.p8").exists());
}

#[test]
fn version_names_the_compiled_features() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("stadttor {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    // Integration tests see the package's features: the binary under test
    // was built with the same ones.
    for (f, on) in [
        ("tpm", cfg!(feature = "tpm")),
        ("pkcs11", cfg!(feature = "pkcs11")),
        ("postgres", cfg!(feature = "postgres")),
        ("redis", cfg!(feature = "redis")),
    ] {
        assert!(out.contains(&format!("{f}={on}")), "{f}: {out}");
    }
    let (_, out2, _) = run(&["--version"]);
    assert_eq!(out, out2);
}

/// The JWK line of `keys show` for an RSA key: `kty` RSA, `alg` PS256, `e`
/// 65537 and an `n` of `bytes` bytes that is the modulus in the PEM SPKI.
fn assert_rsa_jwk(shown: &str, bytes: usize) {
    assert!(shown.contains("algorithm:   rsa-pss-sha256"), "{shown}");
    let jwk_line = shown.lines().find(|l| l.starts_with("jwk:")).unwrap();
    let jwk: serde_json::Value = serde_json::from_str(jwk_line["jwk:".len()..].trim()).unwrap();
    assert_eq!(jwk["kty"], "RSA", "{jwk}");
    assert_eq!(jwk["alg"], "PS256", "{jwk}");
    assert_eq!(jwk["e"], "AQAB", "{jwk}");
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), bytes);
    assert!(n[0] & 0x80 != 0, "full-size modulus without a sign byte");
    let pem: String = shown
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let spki = STANDARD.decode(pem).unwrap();
    assert!(
        spki.windows(n.len()).any(|w| w == &n[..]),
        "n is the SPKI's modulus"
    );
}

#[test]
fn rsa3072_file_key_is_generated_and_shown_as_rsa_jwk() {
    let dir = TempDir::new("cli-rsa");
    let key = format!("file:{}", dir.path().join("saml.p8").display());
    let (code, out, err) = run(&["keys", "generate", "--algorithm", "rsa3072", &key]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, shown, err) = run(&["keys", "show", &key]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(shown, out, "show prints what generate printed");
    assert_rsa_jwk(&shown, 384);
    let key = format!("file:{}", dir.path().join("saml4096.p8").display());
    let (code, out, err) = run(&["keys", "generate", "--algorithm", "rsa4096", &key]);
    assert_eq!(code, 0, "{out}{err}");
    assert_rsa_jwk(&out, 512);
}

/// `keys generate --algorithm rsa3072` on a SoftHSM2 token: the key is made
/// on the token and `keys show` finds it again by its URI.
#[cfg(feature = "pkcs11")]
#[test]
fn rsa3072_pkcs11_key_is_generated_on_the_token_and_shown() {
    let softhsm = testkit::hw::init();
    let token = softhsm.token();
    let conf = softhsm.conf.to_str().unwrap().to_owned();
    let key = format!("pkcs11:token={};object=saml-sign", token.label);
    let flags = [
        "--pkcs11-module",
        testkit::hw::SOFTHSM_MODULE,
        "--pin-file",
        token.pin_file.to_str().unwrap(),
    ];
    let cmd = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("keys")
            .args(flags)
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cmd(&["generate", "--algorithm", "rsa3072", &key]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("protection:  PKCS#11 token"), "{out}");
    let (code, shown, err) = cmd(&["show", &key]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(shown, out);
    assert_rsa_jwk(&shown, 384);
    let (code, _, err) = cmd(&["generate", "--algorithm", "rsa3072", &key]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");
}

/// Runs openssl on the files; returns (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(testkit::require_tool("openssl", "openssl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `keys csr` and `keys self-signed` for an RSA-3072 file key: both are
/// signed RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32), openssl verifies
/// them, and the certificate is what a SAML provider's
/// `signing_certificate` / `decryption_certificate` check accepts.
#[test]
fn rsa3072_file_key_gets_a_pss_csr_and_a_self_signed_certificate() {
    let dir = TempDir::new("cli-rsa-cert");
    let path = dir.path().join("saml.p8");
    let key = format!("file:{}", path.display());
    let (code, out, err) = run(&["keys", "generate", "--algorithm", "rsa3072", &key]);
    assert_eq!(code, 0, "{out}{err}");

    let csr = dir.path().join("sp.csr");
    let csr = csr.to_str().unwrap();
    let (code, out, err) = run(&[
        "keys",
        "csr",
        &key,
        "--cn",
        "sp.musterstadt.de",
        "--san",
        "sp.musterstadt.de",
        "-o",
        csr,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (ok, text) = openssl(&["req", "-verify", "-noout", "-text", "-in", csr]);
    assert!(ok, "{text}");
    for want in [
        "verify OK",
        "rsassaPss",
        "Mask Algorithm: mgf1 with sha256",
        "Salt Length: 0x20",
        "Public-Key: (3072 bit)",
        "DNS:sp.musterstadt.de",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }

    // To stdout by default.
    let (code, pem, err) = run(&[
        "keys",
        "self-signed",
        &key,
        "--cn",
        "sp.musterstadt.de",
        "--days",
        "400",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    let cert = dir.write("sp.pem", &pem);
    let c = cert.to_str().unwrap();
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", c]);
    assert!(ok, "{text}");
    for want in [
        "Subject: CN = sp.musterstadt.de",
        "rsassaPss",
        "Salt Length: 0x20",
        "CA:FALSE",
        "Digital Signature, Key Encipherment",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // -check_ss_sig: openssl otherwise never checks a trust anchor's own
    // signature.
    let (ok, text) = openssl(&["verify", "-check_ss_sig", "-CAfile", c, c]);
    assert!(ok && text.contains(": OK"), "{text}");
    // 400 days from an hour ago.
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(399 * 86_400).to_string(),
        "-in",
        c,
    ]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(401 * 86_400).to_string(),
        "-in",
        c,
    ]);
    assert!(!ok, "{text}");

    // The SAML SP's check of signing_certificate / decryption_certificate.
    let k = stadttor_hsm::file::FileKey::load(&path).unwrap();
    let chain = stadttor_pki::certs::load_chain(&cert).unwrap();
    stadttor_pki::certs::check_leaf_matches_key(&chain, &cert, &k).unwrap();

    // Bad input is the operator's to fix, and nothing is written.
    let out = dir.path().join("never.pem");
    let (code, _, err) = run(&[
        "keys",
        "self-signed",
        &key,
        "--cn",
        "sp",
        "--days",
        "0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("days"), "{err}");
    assert!(!out.exists());
}
