//! Every signature format, made with a software (`file:`) key and checked
//! by independent verifiers: OpenSSL (`cms -verify -cades`, `ts -verify`),
//! poppler's `pdfsig`, pyHanko, jwcrypto and `http-message-signatures`
//! (pinned in `requirements.txt`, run by `verify.py`). Tampering must make
//! each of them fail. Our own verifiers are checked alongside.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{check_pades, openssl_cms_verify, pyhanko_cms, run, verify_py, Pki, PkiExt, TempDir};
use stadttor_hsm::{Algorithm, SigningKey};
use stadttor_pki::sign::cms::{self, CmsOptions};
use stadttor_pki::sign::pades::{self, PadesOptions};
use stadttor_pki::sign::tsa::{HttpTsa, TimestampAuthority};
use stadttor_pki::sign::{httpsig, jws, SealCertificate};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cades_b_b_verifies_with_openssl_and_tampering_fails() {
    let pki = Pki::new();
    let dir = TempDir::new("cades-bb");
    for key in [
        Box::new(common::p256_key()) as Box<dyn SigningKey>,
        Box::new(common::ed25519_key()),
    ] {
        let (seal, _) = pki.seal_for(key.as_ref());
        let body = b"{\"bescheid\": \"Ihr Antrag wurde bewilligt.\"}\n".repeat(50);
        let opts = CmsOptions {
            signing_time: Some(time::OffsetDateTime::now_utc()),
            tsa: None,
        };
        let sig = cms::sign_detached(key.as_ref(), &seal, &body, &opts).unwrap();
        let mut tampered = body.clone();
        tampered[7] ^= 1;
        // OpenSSL 3.0 has no Ed25519 in CMS (neither signing nor
        // verifying: "eddsa_digest_signverify_init: invalid digest"), so
        // Ed25519 is checked by pyHanko only.
        if key.algorithm() != Algorithm::Ed25519 {
            let (ok, out) = openssl_cms_verify(&pki, &sig, &body, &dir);
            assert!(ok, "{:?}: {out}", key.algorithm());
            assert!(out.contains("CAdES Verification successful"), "{out}");
            let (ok, out) = openssl_cms_verify(&pki, &sig, &tampered, &dir);
            assert!(!ok, "tampered body verified: {out}");
        }
        std::fs::write(dir.join("sig.p7s"), &sig).unwrap();
        let (ok, out) = pyhanko_cms(&pki, &dir, &body, false);
        assert!(ok, "{:?}: {out}", key.algorithm());
        let (ok, out) = pyhanko_cms(&pki, &dir, &tampered, false);
        assert!(!ok, "pyHanko accepted a tampered body: {out}");

        // The signed attributes, seen by asn1crypto.
        let (ok, out) = verify_py(&[
            "cms-parts",
            dir.join("sig.p7s").to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        let attrs = std::fs::read_to_string(dir.join("signed_attrs.txt")).unwrap();
        for a in [
            "content_type",
            "message_digest",
            "signing_certificate_v2",
            "signing_time",
        ] {
            assert!(attrs.lines().any(|l| l == a), "{a} missing: {attrs}");
        }
        // Our verifier agrees, both ways.
        let v = cms::verify_detached(&sig, Some(&body)).unwrap();
        assert_eq!(v.signer, seal.leaf());
        assert!(v.signing_certificate_v2 && v.signing_time.is_some());
        assert!(cms::verify_detached(&sig, Some(&tampered)).is_err());
    }
}

#[test]
fn cades_b_t_timestamp_verifies_with_openssl_ts() {
    let pki = Pki::new();
    let dir = TempDir::new("cades-bt");
    let url = pki.start_tsa();
    let tsa = HttpTsa::new(&url, Duration::from_secs(20)).unwrap();

    // The TSA client alone: openssl ts -verify on the token.
    let data = b"Bescheid vom 1. April";
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let token = tsa.timestamp(digest.as_ref()).unwrap();
    std::fs::write(dir.join("token.der"), &token).unwrap();
    std::fs::write(dir.join("data"), data).unwrap();
    let ts_verify = |token: &std::path::Path, digest_hex: &str| {
        run(Command::new("openssl")
            .args(["ts", "-verify", "-token_in", "-in"])
            .arg(token)
            .args(["-digest", digest_hex, "-CAfile"])
            .arg(pki.ca_pem())
            .arg("-untrusted")
            .arg(pki.dir.join("tsa.pem")))
    };
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (ok, out) = ts_verify(&dir.join("token.der"), &hex(digest.as_ref()));
    assert!(ok && out.contains("Verification: OK"), "{out}");
    let other = ring::digest::digest(&ring::digest::SHA256, b"anderer Bescheid");
    let (ok, out) = ts_verify(&dir.join("token.der"), &hex(other.as_ref()));
    assert!(!ok, "token verified for other data: {out}");

    // CAdES-B-T: OpenSSL checks the signature; the token, taken out of
    // the unsigned attributes by asn1crypto, must be over the signature
    // value.
    let key = common::p256_key();
    let (seal, _) = pki.seal_for(&key);
    let body = b"%PDF-1.7 or any other body".to_vec();
    let opts = CmsOptions {
        signing_time: Some(time::OffsetDateTime::now_utc()),
        tsa: Some(&tsa),
    };
    let sig = cms::sign_detached(&key, &seal, &body, &opts).unwrap();
    let (ok, out) = openssl_cms_verify(&pki, &sig, &body, &dir);
    assert!(ok, "{out}");
    let (ok, out) = pyhanko_cms(&pki, &dir, &body, true);
    assert!(ok, "{out}");
    let (ok, out) = verify_py(&[
        "cms-parts",
        dir.join("sig.p7s").to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok && out.contains("timestamp tokens: 1"), "{out}");
    let sig_value = std::fs::read(dir.join("signature.bin")).unwrap();
    let imprint = ring::digest::digest(&ring::digest::SHA256, &sig_value);
    let (ok, out) = ts_verify(&dir.join("token.der"), &hex(imprint.as_ref()));
    assert!(ok && out.contains("Verification: OK"), "{out}");
    let (ok, _) = ts_verify(&dir.join("token.der"), &hex(digest.as_ref()));
    assert!(!ok);
    let v = cms::verify_detached(&sig, Some(&body)).unwrap();
    let ts = v.timestamp.unwrap();
    assert_eq!(ts.imprint, imprint.as_ref());

    // A TSA that answers with a token over something else is refused.
    struct Liar(Vec<u8>);
    impl TimestampAuthority for Liar {
        fn timestamp(&self, _: &[u8]) -> Result<Vec<u8>, stadttor_pki::Error> {
            Ok(self.0.clone())
        }
    }
    let liar = Liar(token);
    let err = cms::sign_detached(
        &key,
        &seal,
        &body,
        &CmsOptions {
            signing_time: None,
            tsa: Some(&liar),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("imprint"), "{err}");
}

#[test]
fn pades_b_b_verifies_with_pdfsig_and_pyhanko() {
    let pki = Pki::new();
    let dir = TempDir::new("pades-bb");
    let key = common::p256_key();
    let (seal, _) = pki.seal_for(&key);
    for (name, pdf) in common::test_pdfs() {
        let opts = PadesOptions {
            reason: Some("Bescheid der Stadt Musterhausen"),
            location: Some("Musterhausen"),
            ..Default::default()
        };
        let signed = pades::sign_pdf(&key, &seal, &pdf, &opts).unwrap();
        assert!(
            signed.starts_with(&pdf),
            "{name}: not an incremental update"
        );
        check_pades(&pki, &dir, name, &signed, false);
    }
    // Ed25519 seal key too (pyHanko and our verifier; poppler 22 + NSS
    // have no Ed25519 in CMS).
    let ed = common::ed25519_key();
    let (seal, _) = pki.seal_for(&ed);
    let signed = pades::sign_pdf(&ed, &seal, &common::minimal_pdf(), &Default::default()).unwrap();
    let file = dir.join("ed25519.pdf");
    std::fs::write(&file, &signed).unwrap();
    let (ok, out) = verify_py(&[
        "pades",
        file.to_str().unwrap(),
        pki.ca_pem().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
}

#[test]
fn pades_b_t_verifies_with_pdfsig_and_pyhanko() {
    let pki = Pki::new();
    let dir = TempDir::new("pades-bt");
    let url = pki.start_tsa();
    let tsa = HttpTsa::new(&url, Duration::from_secs(20)).unwrap();
    let key = common::p256_key();
    let (seal, _) = pki.seal_for(&key);
    for (name, pdf) in common::test_pdfs() {
        let opts = PadesOptions {
            tsa: Some(&tsa),
            ..Default::default()
        };
        let signed = pades::sign_pdf(&key, &seal, &pdf, &opts).unwrap();
        check_pades(&pki, &dir, name, &signed, true);
    }
}

#[test]
fn pades_second_signature_keeps_the_first_valid() {
    let pki = Pki::new();
    let dir = TempDir::new("pades-twice");
    let key = common::p256_key();
    let (seal, _) = pki.seal_for(&key);
    for (name, pdf) in common::test_pdfs() {
        let once = pades::sign_pdf(&key, &seal, &pdf, &Default::default()).unwrap();
        let twice = pades::sign_pdf(&key, &seal, &once, &Default::default()).unwrap();
        let file = dir.join(format!("{name}-twice.pdf"));
        std::fs::write(&file, &twice).unwrap();
        let out = common::pdfsig(&pki, &file);
        assert_eq!(
            out.matches("Signature is Valid.").count(),
            2,
            "{name}: {out}"
        );
        assert!(out.contains("Total document signed"), "{out}");
    }
}

#[test]
fn pades_needs_more_room_than_estimated_and_still_fits() {
    let pki = Pki::new();
    let key = common::p256_key();
    let (seal, _) = pki.seal_for(&key);
    let opts = PadesOptions {
        reserve: Some(64),
        ..Default::default()
    };
    let err = pades::sign_pdf(&key, &seal, &common::minimal_pdf(), &opts).unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
}

#[test]
fn jws_detached_unencoded_verifies_with_jwcrypto() {
    let pki = Pki::new();
    let dir = TempDir::new("jws");
    for key in [
        Box::new(common::p256_key()) as Box<dyn SigningKey>,
        Box::new(common::ed25519_key()),
    ] {
        let (seal, seal_pem) = pki.seal_for(key.as_ref());
        // Bytes that base64url would change and JSON canonicalisation
        // would reorder: the signature is over exactly these.
        let payload = "{\"z\": 1, \"a\": \"Grüße aus Musterhausen\"}\n".as_bytes();
        let token = jws::sign_detached(key.as_ref(), &seal, payload, Some("seal-2026")).unwrap();
        assert!(token.contains(".."), "{token}");
        std::fs::write(dir.join("token"), &token).unwrap();
        std::fs::write(dir.join("payload"), payload).unwrap();
        let (ok, out) = verify_py(&[
            "jws",
            dir.join("token").to_str().unwrap(),
            dir.join("payload").to_str().unwrap(),
            seal_pem.to_str().unwrap(),
        ]);
        assert!(ok, "{:?}: {out}", key.algorithm());
        let mut tampered = payload.to_vec();
        tampered[5] = b'2';
        std::fs::write(dir.join("payload"), &tampered).unwrap();
        let (ok, out) = verify_py(&[
            "jws",
            dir.join("token").to_str().unwrap(),
            dir.join("payload").to_str().unwrap(),
            seal_pem.to_str().unwrap(),
        ]);
        assert!(!ok, "tampered payload verified: {out}");
        let v = jws::verify_detached(&token, payload, None).unwrap();
        assert_eq!(v.chain[0], seal.leaf());
        assert!(jws::verify_detached(&token, &tampered, None).is_err());
    }
}

/// Writes the response for verify.py: status, headers, body, keyid.
fn write_response(
    path: &std::path::Path,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    keyid: &str,
) {
    use base64::Engine;
    let h: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    let doc = serde_json::json!({
        "status": status,
        "headers": h,
        "body_b64": base64::engine::general_purpose::STANDARD.encode(body),
        "keyid": keyid,
    });
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn signed_headers(ct: &str, h: &httpsig::SignatureHeaders) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", ct.to_owned()),
        ("content-digest", h.content_digest.clone()),
        ("signature-input", h.signature_input.clone()),
        ("signature", h.signature.clone()),
    ]
}

#[test]
fn rfc9421_verifies_with_http_message_signatures() {
    let dir = TempDir::new("httpsig");
    for (key, alg) in [
        (
            Box::new(common::p256_key()) as Box<dyn SigningKey>,
            "ecdsa-p256-sha256",
        ),
        (Box::new(common::ed25519_key()), "ed25519"),
    ] {
        let pem = dir.join("key.pub.pem");
        common::hw::spki_pem(key.public_key_spki(), &pem);
        let body = b"{\"status\": \"bewilligt\"}".repeat(400);
        let ct = "application/json";
        let h = httpsig::sign_response(
            key.as_ref(),
            "stadttor-2026",
            now(),
            200,
            &[("Content-Type", ct)],
            &body,
        )
        .unwrap();
        let resp = dir.join("resp.json");
        let headers = signed_headers(ct, &h);
        let check = |status: u16, body: &[u8], headers: &[(&str, String)]| {
            write_response(&resp, status, headers, body, "stadttor-2026");
            verify_py(&[
                "httpsig",
                resp.to_str().unwrap(),
                pem.to_str().unwrap(),
                alg,
            ])
        };
        let (ok, out) = check(200, &body, &headers);
        assert!(ok, "{alg}: {out}");
        let mut tampered = body.clone();
        tampered[3] ^= 1;
        let (ok, out) = check(200, &tampered, &headers);
        assert!(!ok, "{alg}: tampered body verified: {out}");
        assert!(out.contains("Content-Digest"), "{out}");
        let (ok, out) = check(404, &body, &headers);
        assert!(!ok, "{alg}: changed status verified: {out}");
        let mut other_ct = headers.clone();
        other_ct[0].1 = "text/html".into();
        let (ok, out) = check(200, &body, &other_ct);
        assert!(!ok, "{alg}: changed content-type verified: {out}");

        // Our verifier agrees.
        let spki = key.public_key_spki().to_vec();
        let f: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resolve = |id: &str| (id == "stadttor-2026").then(|| spki.clone());
        httpsig::verify_response(200, &f, &body, &resolve, now(), Duration::from_secs(60)).unwrap();
        assert!(httpsig::verify_response(
            200,
            &f,
            &tampered,
            &resolve,
            now(),
            Duration::from_secs(60)
        )
        .is_err());
    }
}

#[test]
fn rfc9421_with_a_delegated_route_key() {
    let pki = Pki::new();
    let dir = TempDir::new("httpsig-deleg");
    let seal_key = common::p256_key();
    let (seal, seal_pem) = pki.seal_for(&seal_key);
    for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
        let d = httpsig::delegate(
            &seal_key,
            &seal,
            "/bescheide",
            alg,
            now(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let body = b"{\"ok\": true}";
        let h = httpsig::sign_response(
            d.key.as_ref(),
            &d.delegation.keyid,
            now(),
            201,
            &[("content-type", "application/json")],
            body,
        )
        .unwrap();
        std::fs::write(dir.join("statement"), &d.delegation.statement).unwrap();
        let resp = dir.join("resp.json");
        write_response(
            &resp,
            201,
            &signed_headers("application/json", &h),
            body,
            &d.delegation.keyid,
        );
        let (ok, out) = verify_py(&[
            "delegation",
            dir.join("statement").to_str().unwrap(),
            seal_pem.to_str().unwrap(),
            resp.to_str().unwrap(),
        ]);
        assert!(ok, "{alg:?}: {out}");
        assert!(out.contains("/bescheide"), "{out}");
        // A statement by another key does not verify.
        let other = common::p256_key();
        let (other_seal, _) = pki.seal_for(&other);
        let forged = httpsig::delegate(
            &other,
            &other_seal,
            "/bescheide",
            alg,
            now(),
            Duration::from_secs(60),
        )
        .unwrap();
        std::fs::write(dir.join("statement"), &forged.delegation.statement).unwrap();
        let (ok, out) = verify_py(&[
            "delegation",
            dir.join("statement").to_str().unwrap(),
            seal_pem.to_str().unwrap(),
            resp.to_str().unwrap(),
        ]);
        assert!(!ok, "{out}");
        // Ours: statement verifies, keyid and key round-trip.
        let (back, chain) = httpsig::verify_delegation(&d.delegation.statement).unwrap();
        assert_eq!(chain[0], seal.leaf());
        assert_eq!(back.public_key_spki, d.delegation.public_key_spki);
        assert_eq!(back.route, "/bescheide");
    }
}

#[test]
fn seal_certificate_checks() {
    let pki = Pki::new();
    let key = common::p256_key();
    let other = common::p256_key();
    let (seal, _) = pki.seal_for(&key);
    let chain = vec![rustls_pki_types::CertificateDer::from(seal.leaf().to_vec())];
    let now = time::OffsetDateTime::now_utc();
    // Good.
    SealCertificate::new(&chain, &key, now).unwrap();
    // Another key.
    let e = SealCertificate::new(&chain, &other, now).unwrap_err();
    assert!(e.to_string().contains("different public key"), "{e}");
    // Expired / not yet valid.
    let e = SealCertificate::new(&chain, &key, now + time::Duration::days(60)).unwrap_err();
    assert!(e.to_string().contains("not valid now"), "{e}");
    // Wrong key usage.
    let tls = pki.cert_with_usages(&key, &[2]);
    let e = SealCertificate::new(&[tls], &key, now).unwrap_err();
    assert!(e.to_string().contains("key usage"), "{e}");
    // Chain in the wrong order.
    let ca = rustls_pki_types::CertificateDer::from(pem_der(
        &std::fs::read_to_string(pki.ca_pem()).unwrap(),
    ));
    SealCertificate::new(&[chain[0].clone(), ca.clone()], &key, now).unwrap();
    let e = SealCertificate::new(&[ca, chain[0].clone()], &key, now).unwrap_err();
    assert!(e.to_string().contains("chain"), "{e}");
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}
