//! RSA keys in every backend, with real parts: the file backend, a software
//! TPM (swtpm) and a PKCS#11 token (SoftHSM2). Each backend generates an
//! RSA-3072 key; its RSA-PSS signatures are checked with ring and openssl,
//! and ciphertexts made by an independent implementation (`openssl pkeyutl
//! -encrypt`, RSA-OAEP) are decrypted in the backend. Altered ciphertexts,
//! ciphertexts for another key and unsupported OAEP parameters give typed
//! errors that carry no plaintext.

// Test code: panicking on failure is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
#[cfg(any(feature = "tpm", feature = "pkcs11"))]
use std::time::Duration;
use std::time::Instant;

use ring::signature::{self, UnparsedPublicKey};
use stadttor_hsm::{Algorithm, DecryptingKey, Error, KeyRef, KeyStore, KeyType, Oaep, SigningKey};
use stadttor_test_harness::hw as support;
use stadttor_test_harness::TempDir;

/// A 32-byte AES key, as XML Encryption transports it.
const CONTENT_KEY: &[u8] = b"\x8b\x01\x7f AES-256 content key \x00\xff\x10\x20";

fn key_ref(s: &str) -> KeyRef {
    s.parse().unwrap()
}

/// The DER `RSAPublicKey` inside an RSA SPKI (what ring verifies with).
fn rsa_public_key(spki: &[u8]) -> &[u8] {
    // SEQUENCE { SEQUENCE algorithm, BIT STRING { 00, RSAPublicKey } }
    fn header(der: &[u8]) -> (usize, usize) {
        match der[1] {
            n if n < 0x80 => (2, usize::from(n)),
            n => {
                let len_bytes = usize::from(n & 0x7f);
                let len = der[2..2 + len_bytes]
                    .iter()
                    .fold(0, |acc, b| (acc << 8) | usize::from(*b));
                (2 + len_bytes, len)
            }
        }
    }
    let (outer, _) = header(spki);
    let body = &spki[outer..];
    let (alg_head, alg_len) = header(body);
    let bits = &body[alg_head + alg_len..];
    assert_eq!(bits[0], 0x03, "BIT STRING");
    let (bits_head, bits_len) = header(bits);
    assert_eq!(bits[bits_head], 0, "no unused bits");
    &bits[bits_head + 1..bits_head + bits_len]
}

fn ring_verify_pss(key: &dyn SigningKey, msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(
        &signature::RSA_PSS_2048_8192_SHA256,
        rsa_public_key(key.public_key_spki()),
    )
    .verify(msg, sig)
    .is_ok()
}

/// `openssl pkeyutl -encrypt` with RSA-OAEP (`md`, `mgf1`) to `spki`.
fn openssl_encrypt(spki: &[u8], md: &str, mgf1: &str, plain: &[u8], dir: &TempDir) -> Vec<u8> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = format!(
        "{md}-{mgf1}-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let pem = dir.join(format!("enc-{tag}.pub.pem"));
    support::spki_pem(spki, &pem);
    let input = dir.join(format!("enc-{tag}.in"));
    let output = dir.join(format!("enc-{tag}.out"));
    std::fs::write(&input, plain).unwrap();
    support::run(
        Command::new("openssl")
            .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
            .arg(&pem)
            .args([
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                &format!("rsa_oaep_md:{md}"),
                "-pkeyopt",
                &format!("rsa_mgf1_md:{mgf1}"),
                "-in",
            ])
            .arg(&input)
            .arg("-out")
            .arg(&output),
    );
    std::fs::read(output).unwrap()
}

/// Which OAEP parameters the backend under test is expected to offer.
struct Offers {
    sha256: bool,
    mixed: bool,
}

/// The suite every backend's RSA-3072 key must pass.
fn rsa_conformance(key: Arc<dyn DecryptingKey>, offers: &Offers, dir: &TempDir) {
    let who = key.reference().to_owned();
    assert_eq!(key.algorithm(), Algorithm::RsaPssSha256, "{who}");
    assert_eq!(key.modulus_bits(), 3072, "{who}");
    assert_eq!(rsa_public_key(key.public_key_spki()).len(), 398, "{who}");

    // RSA-PSS signatures, checked by ring and by openssl.
    let signer: Arc<dyn SigningKey> = key.clone();
    for msg in [&b""[..], b"AuthnRequest", &[0x5a; 10_000]] {
        let sig = signer.sign(msg).unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(sig.len(), 384, "{who}");
        assert!(ring_verify_pss(&*signer, msg, &sig), "{who}: ring rejected");
        let mut other = msg.to_vec();
        other.push(0);
        assert!(!ring_verify_pss(&*signer, &other, &sig));
    }
    let sig = signer.sign(b"checked by openssl").unwrap();
    assert!(
        openssl_verify_pss(signer.public_key_spki(), b"checked by openssl", &sig, dir),
        "{who}: openssl rejected"
    );

    // RSA-OAEP from openssl, decrypted in the backend.
    let spki = key.public_key_spki().to_vec();
    let sha1 = openssl_encrypt(&spki, "sha1", "sha1", CONTENT_KEY, dir);
    assert_eq!(sha1.len(), 384);
    let plain = key
        .decrypt_oaep(Oaep::Sha1, &sha1)
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(&plain[..], CONTENT_KEY, "{who}");

    let sha256 = openssl_encrypt(&spki, "sha256", "sha256", CONTENT_KEY, dir);
    match key.decrypt_oaep(Oaep::Sha256, &sha256) {
        Ok(plain) if offers.sha256 => assert_eq!(&plain[..], CONTENT_KEY, "{who}"),
        Err(Error::UnsupportedOaep {
            oaep: Oaep::Sha256, ..
        }) if !offers.sha256 => {}
        other => panic!("{who}: SHA-256 OAEP: {:?}", other.map(|p| p.len())),
    }
    let mixed = openssl_encrypt(&spki, "sha256", "sha1", CONTENT_KEY, dir);
    match key.decrypt_oaep(Oaep::Sha256Mgf1Sha1, &mixed) {
        Ok(plain) if offers.mixed => assert_eq!(&plain[..], CONTENT_KEY, "{who}"),
        Err(Error::UnsupportedOaep { .. }) if !offers.mixed => {}
        other => panic!("{who}: mixed OAEP: {:?}", other.map(|p| p.len())),
    }

    // Everything that does not decrypt is the one typed error, without plaintext.
    let (good, oaep) = if offers.sha256 {
        (sha256, Oaep::Sha256)
    } else {
        (sha1.clone(), Oaep::Sha1)
    };
    let mut flipped_low = good.clone();
    flipped_low[383] ^= 0x01;
    let mut flipped_high = good.clone();
    flipped_high[1] ^= 0x80;
    let other_params = if oaep == Oaep::Sha1 {
        Oaep::Sha256
    } else {
        Oaep::Sha1
    };
    let cases: [(&str, Vec<u8>, Oaep); 5] = [
        ("last byte flipped", flipped_low, oaep),
        ("high byte flipped", flipped_high, oaep),
        ("truncated", good[..383].to_vec(), oaep),
        ("all zero", vec![0; 384], oaep),
        ("other OAEP hash", good.clone(), other_params),
    ];
    for (what, ciphertext, oaep) in cases {
        match key.decrypt_oaep(oaep, &ciphertext) {
            Err(e @ Error::Decryption { .. }) => assert_no_plaintext(&e, &who),
            // SoftHSM refuses SHA-256 before looking at the ciphertext.
            Err(Error::UnsupportedOaep { .. }) if !offers.sha256 && oaep == Oaep::Sha256 => {}
            other => panic!("{who}: {what}: {:?}", other.map(|p| p.len())),
        }
    }
    // The key still works afterwards.
    assert_eq!(
        &key.decrypt_oaep(Oaep::Sha1, &sha1).unwrap()[..],
        CONTENT_KEY
    );
}

/// `openssl dgst -verify` with RSA-PSS SHA-256, MGF1-SHA-256, salt 32.
fn openssl_verify_pss(spki: &[u8], msg: &[u8], sig: &[u8], dir: &TempDir) -> bool {
    let pem = dir.join("pss.pub.pem");
    support::spki_pem(spki, &pem);
    let (m, s) = (dir.join("pss.msg"), dir.join("pss.sig"));
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&s, sig).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss"])
        .args(["-sigopt", "rsa_pss_saltlen:32", "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&s)
        .arg(&m)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn assert_no_plaintext(e: &Error, who: &str) {
    let text = format!("{e} {e:?}");
    assert!(text.contains(who), "{text}");
    assert!(!text.contains("AES-256 content key"), "{text}");
    assert!(!text.contains("content key"), "{text}");
}

/// A ciphertext for another RSA key is refused like an altered one.
fn wrong_key_is_refused(key: &dyn DecryptingKey, dir: &TempDir) {
    let other = KeyStore::default()
        .generate(
            &key_ref(&format!("file:{}", dir.join("other-rsa.p8").display())),
            KeyType::Rsa3072,
        )
        .unwrap();
    let ciphertext = openssl_encrypt(other.public_key_spki(), "sha1", "sha1", CONTENT_KEY, dir);
    let err = key.decrypt_oaep(Oaep::Sha1, &ciphertext).unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
    assert_no_plaintext(&err, key.reference());
}

/// Decryptions per second with `oaep` for about `budget`.
#[cfg(all(feature = "tpm", feature = "pkcs11"))]
fn decrypt_rate(key: &dyn DecryptingKey, oaep: Oaep, ciphertext: &[u8], budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        key.decrypt_oaep(oaep, ciphertext).unwrap();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

#[test]
fn file_rsa_keys_sign_and_decrypt() {
    let dir = TempDir::new("rsa-file");
    let store = KeyStore::default();
    let reference = key_ref(&format!("file:{}", dir.join("rsa.p8").display()));
    let start = Instant::now();
    store.generate(&reference, KeyType::Rsa3072).unwrap();
    println!("file: RSA-3072 generated in {:?}", start.elapsed());
    let key = store.resolve_decrypting(&reference).unwrap();
    let offers = Offers {
        sha256: true,
        mixed: false,
    };
    rsa_conformance(key.clone(), &offers, &dir);
    wrong_key_is_refused(&*key, &dir);
    // openssl reads the generated file as an RSA-3072 private key.
    let out = support::run(
        Command::new("openssl")
            .args(["pkey", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(dir.join("rsa.p8")),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3072 bit"));

    let big = key_ref(&format!("file:{}", dir.join("rsa4096.p8").display()));
    store.generate(&big, KeyType::Rsa4096).unwrap();
    assert_eq!(store.resolve_decrypting(&big).unwrap().modulus_bits(), 4096);
}

#[test]
fn an_ec_key_is_not_a_decrypting_key() {
    let dir = TempDir::new("rsa-ec");
    let store = KeyStore::default();
    let reference = key_ref(&format!("file:{}", dir.join("ec.p8").display()));
    store
        .generate(&reference, Algorithm::EcdsaP256Sha256)
        .unwrap();
    let err = store.resolve_decrypting(&reference).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotDecrypting {
                algorithm: Algorithm::EcdsaP256Sha256,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rsa3072"), "{err}");
    // An RSA key still serves where a signing key is wanted.
    let rsa = key_ref(&format!("file:{}", dir.join("rsa.p8").display()));
    store.generate(&rsa, Algorithm::RsaPssSha256).unwrap();
    let signing = store.resolve(&rsa).unwrap();
    assert_eq!(signing.algorithm(), Algorithm::RsaPssSha256);
    assert!(ring_verify_pss(
        &*signing,
        b"m",
        &signing.sign(b"m").unwrap()
    ));
}

#[cfg(feature = "tpm")]
mod tpm {
    use super::*;
    use support::Swtpm;

    fn tpm_store(tpm: &Swtpm) -> KeyStore {
        let mut config = stadttor_hsm::KeyStoreConfig::default();
        config.tpm_tcti = Some(tpm.tcti());
        config.request_timeout = Duration::from_secs(30);
        KeyStore::new(config)
    }

    /// RSA-3072 generated in swtpm, persisted and written as TSS2 PEM;
    /// RSA-4096 is refused by swtpm 0.7 with a clear error.
    #[test]
    fn tpm_rsa_keys_sign_and_decrypt() {
        support::init();
        let tpm = Swtpm::start();
        let store = tpm_store(&tpm);
        let pem = tpm.dir.join("rsa.tss2.pem");
        let both = key_ref(&format!("tpm:handle=0x81010010;pem={}", pem.display()));
        let start = Instant::now();
        drop(store.generate(&both, KeyType::Rsa3072).unwrap());
        println!("tpm: RSA-3072 generated in {:?}", start.elapsed());
        let offers = Offers {
            sha256: true,
            mixed: false,
        };
        let by_handle = store
            .resolve_decrypting(&key_ref("tpm:handle=0x81010010"))
            .unwrap();
        rsa_conformance(by_handle.clone(), &offers, &tpm.dir);
        wrong_key_is_refused(&*by_handle, &tpm.dir);
        // tpm2-tools sees the same public key.
        tpm.run(
            "tpm2_readpublic",
            &["-c", "0x81010010", "-f", "der", "-o", "rsa.der"],
        );
        assert_eq!(
            std::fs::read(tpm.dir.join("rsa.der")).unwrap(),
            by_handle.public_key_spki()
        );
        drop(by_handle);
        let by_pem = store
            .resolve_decrypting(&key_ref(&format!("tpm:pem={}", pem.display())))
            .unwrap();
        rsa_conformance(by_pem, &offers, &tpm.dir);

        let err = store
            .generate(
                &key_ref(&format!("tpm:pem={}", tpm.dir.join("4096.pem").display())),
                KeyType::Rsa4096,
            )
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedKey { .. }), "{err}");
        assert!(err.to_string().contains("RSA-4096"), "{err}");
        assert!(!tpm.dir.join("4096.pem").exists(), "no orphan PEM file");
    }

    /// A key made by tpm2-tools (decrypt only, no sign) decrypts too.
    #[test]
    fn tpm2_tools_rsa_key_decrypts() {
        support::init();
        let tpm = Swtpm::start();
        tpm.create_srk("0x81000001");
        tpm.run(
            "tpm2_create",
            &[
                "-C",
                "0x81000001",
                "-G",
                "rsa3072:null:null",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt",
                "-u",
                "k.pub",
                "-r",
                "k.priv",
            ],
        );
        tpm.run("tpm2_flushcontext", &["-t"]);
        tpm.run(
            "tpm2_encodeobject",
            &[
                "-C",
                "0x81000001",
                "-u",
                "k.pub",
                "-r",
                "k.priv",
                "-p",
                "-o",
                "k.pem",
            ],
        );
        let store = tpm_store(&tpm);
        let key = store
            .resolve_decrypting(&key_ref(&format!(
                "tpm:pem={}",
                tpm.dir.join("k.pem").display()
            )))
            .unwrap();
        let ciphertext = openssl_encrypt(
            key.public_key_spki(),
            "sha256",
            "sha256",
            CONTENT_KEY,
            &tpm.dir,
        );
        assert_eq!(
            &key.decrypt_oaep(Oaep::Sha256, &ciphertext).unwrap()[..],
            CONTENT_KEY
        );
        // Signing is refused by the TPM (no sign attribute), as an error.
        assert!(key.sign(b"x").is_err());
    }
}

#[cfg(feature = "pkcs11")]
mod pkcs11 {
    use super::*;
    use support::{TestToken, SOFTHSM_MODULE};

    fn p11_store(token: &TestToken) -> KeyStore {
        let mut config = stadttor_hsm::KeyStoreConfig::default();
        config.pkcs11_module = Some(SOFTHSM_MODULE.into());
        config.pkcs11_pin_file = Some(token.pin_file.clone());
        KeyStore::new(config)
    }

    /// SoftHSM 2.6 takes only SHA-1/MGF1-SHA-1 OAEP (CKR_ARGUMENTS_BAD for
    /// SHA-256); newer versions are expected to take SHA-256 too.
    fn softhsm_offers() -> Offers {
        let out = support::run(Command::new("softhsm2-util").arg("--version"));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let old = version.starts_with("2.6.") || version.starts_with("2.5.");
        Offers {
            sha256: !old,
            mixed: !old,
        }
    }

    #[test]
    fn pkcs11_rsa_keys_sign_and_decrypt() {
        let softhsm = support::init();
        let token = softhsm.token();
        let store = p11_store(&token);
        let reference = key_ref(&format!(
            "pkcs11:token={};object=saml-enc;id=%10",
            token.label
        ));
        let start = Instant::now();
        store.generate(&reference, KeyType::Rsa3072).unwrap();
        println!("pkcs11: RSA-3072 generated in {:?}", start.elapsed());
        let key = store.resolve_decrypting(&reference).unwrap();
        rsa_conformance(key.clone(), &softhsm_offers(), &TempDir::new("rsa-p11"));
        wrong_key_is_refused(&*key, &TempDir::new("rsa-p11-other"));

        // The private key decrypts and signs, and never leaves the token.
        let out = support::run(token.tool().args(["--list-objects", "--type", "privkey"]));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("Private Key Object; RSA"), "{listing}");
        assert!(listing.contains("never extractable"), "{listing}");
        assert!(
            listing.contains("Usage:      decrypt, sign\n"),
            "decrypt and sign, nothing else: {listing}"
        );
        let out = support::run(token.tool().args(["--list-objects", "--type", "pubkey"]));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("RSA 3072 bits"), "{listing}");
        let err = store.generate(&reference, KeyType::Rsa3072).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    }
}

/// Prints RSA-3072 OAEP decryptions/s per backend (`--nocapture`); not a
/// timed test: it only requires each backend to decrypt at all.
#[cfg(all(feature = "tpm", feature = "pkcs11"))]
#[test]
fn rsa_decrypt_throughput_report() {
    let softhsm = support::init();
    let budget = Duration::from_millis(2000);
    let dir = TempDir::new("rsa-rate");
    let mut rows = Vec::new();

    let file_ref = key_ref(&format!("file:{}", dir.join("k.p8").display()));
    let store = KeyStore::default();
    store.generate(&file_ref, KeyType::Rsa3072).unwrap();
    let file = store.resolve_decrypting(&file_ref).unwrap();
    for (oaep, md) in [(Oaep::Sha256, "sha256"), (Oaep::Sha1, "sha1")] {
        let ct = openssl_encrypt(file.public_key_spki(), md, md, CONTENT_KEY, &dir);
        rows.push((
            "file (aws-lc-rs)",
            oaep,
            decrypt_rate(&*file, oaep, &ct, budget),
        ));
    }
    let mut signs = vec![("file (ring)", sign_rate(&*file, budget))];

    let tpm = support::Swtpm::start();
    let mut config = stadttor_hsm::KeyStoreConfig::default();
    config.tpm_tcti = Some(tpm.tcti());
    config.request_timeout = Duration::from_secs(30);
    let tpm_store = KeyStore::new(config);
    let tpm_ref = key_ref("tpm:handle=0x81010011");
    tpm_store.generate(&tpm_ref, KeyType::Rsa3072).unwrap();
    let tpm_key = tpm_store.resolve_decrypting(&tpm_ref).unwrap();
    for (oaep, md) in [(Oaep::Sha256, "sha256"), (Oaep::Sha1, "sha1")] {
        let ct = openssl_encrypt(tpm_key.public_key_spki(), md, md, CONTENT_KEY, &dir);
        rows.push((
            "tpm swtpm (handle)",
            oaep,
            decrypt_rate(&*tpm_key, oaep, &ct, budget),
        ));
    }
    signs.push(("tpm swtpm (handle)", sign_rate(&*tpm_key, budget)));

    let token = softhsm.token();
    let mut config = stadttor_hsm::KeyStoreConfig::default();
    config.pkcs11_module = Some(support::SOFTHSM_MODULE.into());
    config.pkcs11_pin_file = Some(token.pin_file.clone());
    let p11_store = KeyStore::new(config);
    let p11_ref = key_ref(&format!("pkcs11:token={};object=k", token.label));
    p11_store.generate(&p11_ref, KeyType::Rsa3072).unwrap();
    let p11 = p11_store.resolve_decrypting(&p11_ref).unwrap();
    let ct = openssl_encrypt(p11.public_key_spki(), "sha1", "sha1", CONTENT_KEY, &dir);
    rows.push((
        "pkcs11 SoftHSM2",
        Oaep::Sha1,
        decrypt_rate(&*p11, Oaep::Sha1, &ct, budget),
    ));
    signs.push(("pkcs11 SoftHSM2", sign_rate(&*p11, budget)));

    println!("RSA-3072 decryptions/s (single thread, ~{budget:?} each):");
    for (name, oaep, rate) in &rows {
        println!("  {name:<22} {oaep:<28} {rate:>8.0}");
        assert!(*rate > 1.0, "{name}: implausibly slow: {rate}/s");
    }
    println!("RSA-3072 RSA-PSS SHA-256 signatures/s:");
    for (name, rate) in &signs {
        println!("  {name:<22} {rate:>8.0}");
        assert!(*rate > 1.0, "{name}: implausibly slow: {rate}/s");
    }
}

/// Signatures per second for about `budget`.
#[cfg(all(feature = "tpm", feature = "pkcs11"))]
fn sign_rate(key: &dyn DecryptingKey, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        key.sign(b"probe").unwrap();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}
