//! One conformance suite, run against every backend with real parts: the
//! file backend, a software TPM (swtpm) and a PKCS#11 token (SoftHSM2).
//! Signatures are checked with ring and, in places, `openssl dgst -verify`.

// Test code: panicking on failure is the point (clippy.toml allows this only
// inside `#[test]` functions, not in the shared helpers below).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use stadttor_test_harness::hw as support;

use std::sync::Arc;
#[cfg(any(feature = "tpm", feature = "pkcs11"))]
use std::time::{Duration, Instant};

use ring::signature::{self, UnparsedPublicKey};
#[cfg(any(feature = "tpm", feature = "pkcs11"))]
use stadttor_hsm::KeyStoreConfig;
use stadttor_hsm::{Algorithm, Error, KeyRef, KeyStore, SigningKey};

use stadttor_test_harness::TempDir;

/// Verifies with ring (independent of every backend).
fn ring_verify(key: &dyn SigningKey, msg: &[u8], sig: &[u8]) -> bool {
    let spki = key.public_key_spki();
    let (alg, point_len): (&dyn signature::VerificationAlgorithm, usize) = match key.algorithm() {
        Algorithm::EcdsaP256Sha256 => (&signature::ECDSA_P256_SHA256_ASN1, 65),
        Algorithm::EcdsaP384Sha384 => (&signature::ECDSA_P384_SHA384_ASN1, 97),
        other => panic!("suite covers ECDSA only, got {other}"),
    };
    UnparsedPublicKey::new(alg, &spki[spki.len() - point_len..])
        .verify(msg, sig)
        .is_ok()
}

/// The suite every backend must pass.
fn conformance(key: Arc<dyn SigningKey>, expected: Algorithm) {
    assert_eq!(key.algorithm(), expected, "{key:?}");
    let spki = key.public_key_spki();
    assert_eq!(
        spki.len(),
        if expected == Algorithm::EcdsaP256Sha256 {
            91
        } else {
            120
        }
    );
    assert_eq!(spki[0], 0x30);

    let before = key
        .stats()
        .expect("built-in backends keep stats")
        .snapshot();
    let long = vec![0x5a; 10_000];
    for msg in [&b""[..], b"stadttor", &long[..]] {
        let sig = key
            .sign(msg)
            .unwrap_or_else(|e| panic!("{}: {e}", key.reference()));
        assert_eq!(sig[0], 0x30, "DER ECDSA-Sig-Value expected");
        assert!(
            ring_verify(&*key, msg, &sig),
            "{}: ring rejected",
            key.reference()
        );
        let mut tampered = msg.to_vec();
        tampered.push(0);
        assert!(!ring_verify(&*key, &tampered, &sig));
    }
    // ECDSA signatures are randomised.
    assert_ne!(key.sign(b"x").unwrap(), key.sign(b"x").unwrap());

    // Concurrent callers are served correctly.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let key = key.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let msg = format!("thread {t} msg {i}");
                    let sig = key
                        .sign(msg.as_bytes())
                        .unwrap_or_else(|e| panic!("{}: {e}", key.reference()));
                    assert!(ring_verify(&*key, msg.as_bytes(), &sig));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    let after = key.stats().unwrap().snapshot();
    assert_eq!(after.signatures - before.signatures, 3 + 2 + 40);
    assert_eq!(after.failures, before.failures);
    assert_eq!(after.queue_depth, 0);
    assert!(after.total_latency > before.total_latency);
}

/// Signs for about `budget` and returns signatures per second.
#[cfg(all(feature = "tpm", feature = "pkcs11"))]
fn rate(key: &dyn SigningKey, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        key.sign(b"throughput probe").unwrap();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

#[cfg(any(feature = "tpm", feature = "pkcs11"))]
fn make_store(f: impl FnOnce(&mut KeyStoreConfig)) -> KeyStore {
    let mut config = KeyStoreConfig::default();
    f(&mut config);
    KeyStore::new(config)
}

fn key_ref(s: &str) -> KeyRef {
    s.parse().unwrap()
}

#[test]
fn file_backend_conformance() {
    let dir = TempDir::new("file");
    let path = dir.join("k.p8");
    let store = KeyStore::default();
    let reference = key_ref(&format!("file:{}", path.display()));
    let generated = store
        .generate(&reference, Algorithm::EcdsaP256Sha256)
        .unwrap();
    conformance(generated.clone(), Algorithm::EcdsaP256Sha256);
    let resolved = store.resolve(&reference).unwrap();
    assert_eq!(resolved.public_key_spki(), generated.public_key_spki());
    conformance(resolved, Algorithm::EcdsaP256Sha256);
    assert!(matches!(
        store.generate(&reference, Algorithm::EcdsaP256Sha256),
        Err(Error::AlreadyExists { .. })
    ));
    let p384 = store
        .generate(
            &key_ref(&format!("file:{}", dir.join("k384.p8").display())),
            Algorithm::EcdsaP384Sha384,
        )
        .unwrap();
    conformance(p384, Algorithm::EcdsaP384Sha384);
}

#[cfg(not(feature = "tpm"))]
#[test]
fn tpm_reference_without_feature_names_the_feature() {
    let err = KeyStore::default()
        .resolve(&key_ref("tpm:handle=0x81010001"))
        .unwrap_err();
    assert!(
        matches!(err, Error::BackendNotCompiled { feature: "tpm", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cargo feature `tpm`"));
}

#[cfg(not(feature = "pkcs11"))]
#[test]
fn pkcs11_reference_without_feature_names_the_feature() {
    let err = KeyStore::default()
        .resolve(&key_ref("pkcs11:token=t;object=k"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotCompiled {
                feature: "pkcs11",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(feature = "tpm")]
mod tpm {
    use super::*;
    use support::Swtpm;

    /// Generous deadline: the 2-core test machine is shared and loaded.
    fn tpm_store(tpm: &Swtpm) -> KeyStore {
        make_store(|c| {
            c.tpm_tcti = Some(tpm.tcti());
            c.request_timeout = Duration::from_secs(30);
        })
    }

    /// Generation under a fresh TPM: SRK created, key persisted and written
    /// as TSS2 PEM; both references resolve to the same key; openssl agrees.
    #[test]
    fn tpm_generated_key_conformance() {
        support::init();
        let tpm = Swtpm::start();
        let store = tpm_store(&tpm);
        let pem = tpm.dir.join("gen.tss2.pem");
        let both = key_ref(&format!("tpm:handle=0x81010002;pem={}", pem.display()));
        let generated = store.generate(&both, Algorithm::EcdsaP256Sha256).unwrap();
        assert_eq!(generated.protection(), stadttor_hsm::Protection::Tpm);
        let text = std::fs::read_to_string(&pem).unwrap();
        assert!(
            text.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"),
            "{text}"
        );
        // The SRK now exists where the generator put it.
        tpm.run("tpm2_readpublic", &["-c", "0x81000001"]);

        let by_handle = store.resolve(&key_ref("tpm:handle=0x81010002")).unwrap();
        let by_pem = store
            .resolve(&key_ref(&format!("tpm:pem={}", pem.display())))
            .unwrap();
        assert_eq!(by_handle.public_key_spki(), generated.public_key_spki());
        assert_eq!(by_pem.public_key_spki(), generated.public_key_spki());
        drop(generated);
        conformance(by_handle.clone(), Algorithm::EcdsaP256Sha256);
        conformance(by_pem, Algorithm::EcdsaP256Sha256);

        // tpm2-tools sees the same public key.
        tpm.run(
            "tpm2_readpublic",
            &["-c", "0x81010002", "-f", "der", "-o", "pub.der"],
        );
        let tools_spki = std::fs::read(tpm.dir.join("pub.der")).unwrap();
        assert_eq!(tools_spki, by_handle.public_key_spki());

        let sig = by_handle.sign(b"checked by openssl").unwrap();
        assert!(support::openssl_verify(
            by_handle.public_key_spki(),
            "sha256",
            b"checked by openssl",
            &sig,
            &tpm.dir
        ));

        // Never overwrite.
        for taken in [
            "tpm:handle=0x81010002".to_owned(),
            format!("tpm:pem={}", pem.display()),
        ] {
            let err = store
                .generate(&key_ref(&taken), Algorithm::EcdsaP256Sha256)
                .unwrap_err();
            assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        }
        // P-384 works too (PEM only, so the key stays transient).
        let p384 = store
            .generate(
                &key_ref(&format!("tpm:pem={}", tpm.dir.join("p384.pem").display())),
                Algorithm::EcdsaP384Sha384,
            )
            .unwrap();
        drop(by_handle);
        conformance(p384, Algorithm::EcdsaP384Sha384);
    }

    /// A key made entirely by tpm2-tools (createprimary, create, evictcontrol,
    /// encodeobject) is usable by stadttor, as TSS2 PEM and as a handle.
    #[test]
    fn tpm2_tools_key_via_tss2_pem_and_handle() {
        support::init();
        let tpm = Swtpm::start();
        tpm.create_srk("0x81000001");
        tpm.run(
            "tpm2_create",
            &[
                "-C",
                "0x81000001",
                "-G",
                "ecc256:ecdsa-sha256",
                "-g",
                "sha256",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
                "-u",
                "k.pub",
                "-r",
                "k.priv",
            ],
        );
        tpm.run("tpm2_flushcontext", &["-t"]);
        // -p: Debian's tpm2-tools 5.4 inverts emptyAuth (tpm2-tools #3458).
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
                "k.tss2.pem",
            ],
        );
        let store = tpm_store(&tpm);
        let pem = tpm.dir.join("k.tss2.pem");
        let key = store
            .resolve(&key_ref(&format!("tpm:pem={}", pem.display())))
            .unwrap();
        conformance(key.clone(), Algorithm::EcdsaP256Sha256);

        // Also persisted by tpm2-tools and opened by handle.
        tpm.run(
            "tpm2_load",
            &[
                "-C",
                "0x81000001",
                "-u",
                "k.pub",
                "-r",
                "k.priv",
                "-c",
                "k.ctx",
            ],
        );
        tpm.run(
            "tpm2_evictcontrol",
            &["-C", "o", "-c", "k.ctx", "0x81010001"],
        );
        tpm.run("tpm2_flushcontext", &["-t"]);
        let by_handle = store.resolve(&key_ref("tpm:handle=0x81010001")).unwrap();
        assert_eq!(by_handle.public_key_spki(), key.public_key_spki());
        conformance(by_handle.clone(), Algorithm::EcdsaP256Sha256);

        // tpm2_verifysignature is not needed: openssl checks a signature made
        // by stadttor against the public key tpm2-tools exports.
        tpm.run(
            "tpm2_readpublic",
            &["-c", "0x81010001", "-f", "pem", "-o", "k.pub.pem"],
        );
        let msg = b"signed by stadttor, checked by openssl";
        let sig = by_handle.sign(msg).unwrap();
        std::fs::write(tpm.dir.join("m"), msg).unwrap();
        std::fs::write(tpm.dir.join("s"), &sig).unwrap();
        support::run(
            std::process::Command::new("openssl")
                .current_dir(tpm.dir.path())
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    "k.pub.pem",
                    "-signature",
                    "s",
                    "m",
                ]),
        );
    }

    /// Opening a TPM that is not there fails at once and names the TCTI.
    #[test]
    fn tpm_unreachable_error_names_tcti() {
        support::init();
        let port = support::free_port_pair();
        let tcti = format!("swtpm:host=127.0.0.1,port={port}");
        let store = make_store(|c| c.tpm_tcti = Some(tcti.clone()));
        let start = Instant::now();
        let err = store
            .resolve(&key_ref("tpm:handle=0x81010001"))
            .unwrap_err();
        assert!(matches!(err, Error::TpmUnavailable { .. }), "{err}");
        assert!(err.to_string().contains(&tcti), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));

        let err = store_without_tcti()
            .resolve(&key_ref("tpm:handle=0x81010001"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingSetting {
                    setting: "tpm_tcti",
                    ..
                }
            ),
            "{err}"
        );

        let dev = make_store(|c| c.tpm_tcti = Some("device:/nonexistent/tpmrm9".into()));
        let err = dev.resolve(&key_ref("tpm:handle=0x81010001")).unwrap_err();
        assert!(
            err.to_string().contains("device:/nonexistent/tpmrm9"),
            "{err}"
        );
    }

    fn store_without_tcti() -> KeyStore {
        KeyStore::default()
    }

    /// Missing handle and junk PEM give clear, typed errors.
    #[test]
    fn tpm_missing_and_malformed_keys() {
        support::init();
        let tpm = Swtpm::start();
        let store = tpm_store(&tpm);
        let err = store
            .resolve(&key_ref("tpm:handle=0x81010009"))
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("0x81010009"), "{err}");

        let junk = tpm.dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = store
            .resolve(&key_ref(&format!("tpm:pem={}", junk.display())))
            .unwrap_err();
        assert!(err.to_string().contains("TSS2 PRIVATE KEY"), "{err}");
    }

    /// With the TPM frozen and a queue of one, the third request is refused
    /// at once (fail fast), the queued ones hit their deadline, and the key
    /// works again once the TPM answers.
    #[test]
    fn tpm_queue_full_fails_fast_and_deadline_holds() {
        support::init();
        let tpm = Swtpm::start();
        let store = make_store(|c| {
            c.tpm_tcti = Some(tpm.tcti());
            c.tpm_queue_capacity = 1;
            c.request_timeout = Duration::from_millis(1500);
        });
        let pem = tpm.dir.join("q.pem");
        let key = store
            .generate(
                &key_ref(&format!("tpm:pem={}", pem.display())),
                Algorithm::EcdsaP256Sha256,
            )
            .unwrap();
        key.sign(b"warm").unwrap();

        tpm.suspend();
        let in_flight = {
            let key = key.clone();
            std::thread::spawn(move || key.sign(b"one"))
        };
        std::thread::sleep(Duration::from_millis(200)); // now held by the owner thread
        let queued = {
            let key = key.clone();
            std::thread::spawn(move || key.sign(b"two"))
        };
        std::thread::sleep(Duration::from_millis(200)); // now waiting in the queue
        let start = Instant::now();
        let err = key.sign(b"three").unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(err, Error::Busy { capacity: 1, .. }), "{err}");
        assert!(err.to_string().contains("busy"), "{err}");

        for handle in [in_flight, queued] {
            let err = handle.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "{err}");
        }
        let stats = key.stats().unwrap().snapshot();
        assert_eq!(
            (stats.rejected, stats.failures, stats.queue_depth),
            (1, 3, 0)
        );

        tpm.resume();
        // The owner thread first finishes the stale request, then drops the
        // expired one still queued; until then the (tiny) queue is full.
        let deadline = Instant::now() + Duration::from_secs(5);
        let sig = loop {
            match key.sign(b"after") {
                Err(Error::Busy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        assert!(ring_verify(&*key, b"after", &sig));
    }

    /// TPM2_Certify by a restricted signing key (attestation key made with
    /// tpm2-tools); openssl verifies the attestation signature.
    #[test]
    fn tpm_certify_verifies_with_openssl() {
        support::init();
        let tpm = Swtpm::start();
        let store = tpm_store(&tpm);
        let key = store
            .generate(
                &key_ref("tpm:handle=0x81010002"),
                Algorithm::EcdsaP256Sha256,
            )
            .unwrap();
        drop(key);
        tpm.create_ak("0x81000001", "0x81010003");
        tpm.run(
            "tpm2_readpublic",
            &["-c", "0x81010003", "-f", "pem", "-o", "ak.pem"],
        );

        let key = store
            .resolve_tpm(&key_ref("tpm:handle=0x81010002"))
            .unwrap();
        let ak = store
            .resolve_tpm(&key_ref("tpm:handle=0x81010003"))
            .unwrap();
        // An attestation key refuses to sign arbitrary data.
        assert!(matches!(ak.sign(b"x"), Err(Error::Signing { .. })));

        let nonce = b"verifier-nonce-42";
        let cert = key.certify(&ak, nonce).unwrap();
        assert_eq!(
            &cert.attest[..4],
            &[0xff, 0x54, 0x43, 0x47],
            "TPM_GENERATED_VALUE"
        );
        assert!(cert.attest.windows(nonce.len()).any(|w| w == nonce));
        std::fs::write(tpm.dir.join("attest"), &cert.attest).unwrap();
        std::fs::write(tpm.dir.join("attest.sig"), &cert.signature).unwrap();
        support::run(
            std::process::Command::new("openssl")
                .current_dir(tpm.dir.path())
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    "ak.pem",
                    "-signature",
                    "attest.sig",
                    "attest",
                ]),
        );
        assert_eq!(cert.signer_spki, ak.public_key_spki());
    }
}

#[cfg(feature = "pkcs11")]
mod pkcs11 {
    use super::*;
    use support::{TestToken, SOFTHSM_MODULE};

    fn uri(token: &TestToken, rest: &str) -> KeyRef {
        key_ref(&format!("pkcs11:token={};{rest}", token.label))
    }

    fn p11_store(token: &TestToken) -> KeyStore {
        make_store(|c| {
            c.pkcs11_module = Some(SOFTHSM_MODULE.into());
            c.pkcs11_pin_file = Some(token.pin_file.clone());
        })
    }

    /// Generation on the token, non-exportable; resolve by label and by id.
    #[test]
    fn pkcs11_generated_key_conformance() {
        let softhsm = support::init();
        let token = softhsm.token();
        let store = p11_store(&token);
        let signer = uri(&token, "object=signer;id=%02");
        let generated = store.generate(&signer, Algorithm::EcdsaP256Sha256).unwrap();
        assert_eq!(generated.protection(), stadttor_hsm::Protection::Pkcs11);
        conformance(generated.clone(), Algorithm::EcdsaP256Sha256);
        let by_id = store.resolve(&uri(&token, "id=%02")).unwrap();
        assert_eq!(by_id.public_key_spki(), generated.public_key_spki());
        conformance(by_id, Algorithm::EcdsaP256Sha256);
        let err = store
            .generate(&signer, Algorithm::EcdsaP256Sha256)
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

        // The private key is sensitive and not extractable.
        let out = support::run(token.tool().args(["--list-objects", "--type", "privkey"]));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("never extractable"), "{listing}");

        let p384 = store
            .generate(&uri(&token, "object=p384"), Algorithm::EcdsaP384Sha384)
            .unwrap();
        conformance(p384, Algorithm::EcdsaP384Sha384);
    }

    /// A key made by pkcs11-tool works; openssl verifies our signature with
    /// the public key pkcs11-tool exports.
    #[test]
    fn pkcs11_tool_key_openssl_verifies() {
        let softhsm = support::init();
        let token = softhsm.token();
        support::run(token.tool().args([
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            "01",
            "--label",
            "tls-key",
        ]));
        let dir = TempDir::new("p11");
        let pub_der = dir.join("pub.der");
        support::run(
            token
                .tool()
                .args(["--read-object", "--type", "pubkey", "--id", "01", "-o"])
                .arg(&pub_der),
        );
        let store = p11_store(&token);
        let key = store
            .resolve(&uri(&token, "object=tls-key;id=%01"))
            .unwrap();
        assert_eq!(std::fs::read(&pub_der).unwrap(), key.public_key_spki());
        conformance(key.clone(), Algorithm::EcdsaP256Sha256);
        let sig = key.sign(b"openssl checks this").unwrap();
        assert!(support::openssl_verify(
            key.public_key_spki(),
            "sha256",
            b"openssl checks this",
            &sig,
            &dir
        ));
    }

    /// A wrong PIN gives one clear error naming the token (not the PIN) and
    /// is not retried: the token still accepts the right PIN afterwards.
    #[test]
    fn pkcs11_wrong_pin_is_clear_and_not_retried() {
        let softhsm = support::init();
        let token = softhsm.token();
        support::run(token.tool().args([
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            "01",
            "--label",
            "k",
        ]));
        let dir = TempDir::new("pin");
        let wrong = dir.join("wrong.pin");
        std::fs::write(&wrong, "98765\n").unwrap();
        stadttor_test_harness::set_secret_mode(&wrong);
        let store_wrong = make_store(|c| {
            c.pkcs11_module = Some(SOFTHSM_MODULE.into());
            c.pkcs11_pin_file = Some(wrong.clone());
        });
        let err = store_wrong.resolve(&uri(&token, "object=k")).unwrap_err();
        assert!(matches!(err, Error::Login { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("`{}`", token.label)) && text.contains("incorrect PIN"),
            "{text}"
        );
        assert!(!text.contains("98765") && !format!("{err:?}").contains("98765"));

        // Exactly one failed attempt was made: the token flags say "count low"
        // (SoftHSM sets it after any failure) but not "final try"/"locked".
        let out = support::run(
            std::process::Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", &softhsm.conf)
                .args(["--module", SOFTHSM_MODULE, "--list-token-slots"]),
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(!listing.contains("locked"), "{listing}");
        let key = p11_store(&token).resolve(&uri(&token, "object=k")).unwrap();
        key.sign(b"right PIN still works").unwrap();
    }

    /// With every session of the pool in use, signers are refused with
    /// `Busy` after the short busy wait instead of queueing until the request
    /// deadline (30 s here); the key keeps working.
    #[test]
    fn pkcs11_exhausted_pool_fails_fast_with_busy() {
        let softhsm = support::init();
        let token = softhsm.token();
        let store = make_store(|c| {
            c.pkcs11_module = Some(SOFTHSM_MODULE.into());
            c.pkcs11_pin_file = Some(token.pin_file.clone());
            c.pkcs11_sessions = 1;
            c.pkcs11_busy_wait = Duration::from_millis(2);
            c.request_timeout = Duration::from_secs(30);
        });
        let key = store
            .generate(&uri(&token, "object=busy"), Algorithm::EcdsaP256Sha256)
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(20);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (key, stop) = (key.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut slowest_busy = Duration::ZERO;
                    let mut busy = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && Instant::now() < deadline
                    {
                        let start = Instant::now();
                        match key.sign(b"contended") {
                            Ok(sig) => assert!(ring_verify(&*key, b"contended", &sig)),
                            Err(Error::Busy {
                                backend: "pkcs11",
                                capacity: 1,
                                ..
                            }) => {
                                slowest_busy = slowest_busy.max(start.elapsed());
                                busy += 1;
                                if busy >= 3 {
                                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                            Err(e) => panic!("unexpected: {e}"),
                        }
                    }
                    (busy, slowest_busy)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let busy: u32 = results.iter().map(|r| r.0).sum();
        let slowest = results.iter().map(|r| r.1).max().unwrap();
        assert!(busy >= 3, "no contention seen in 20 s: {results:?}");
        // Far below the 30 s request deadline (generous for a loaded machine).
        assert!(slowest < Duration::from_secs(2), "{slowest:?}");
        let stats = key.stats().unwrap().snapshot();
        assert_eq!(u64::from(busy), stats.rejected);
        assert_eq!(stats.failures, stats.rejected);
        assert_eq!(stats.queue_depth, 0);
        key.sign(b"after the burst").unwrap();
    }

    /// Unknown token, missing key, missing module and missing settings.
    #[test]
    fn pkcs11_lookup_errors() {
        let softhsm = support::init();
        let token = softhsm.token();
        let store = p11_store(&token);
        let err = store
            .resolve(&key_ref("pkcs11:token=nope;object=k"))
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound { .. }) && err.to_string().contains(&token.label),
            "{err}"
        );
        let err = store.resolve(&uri(&token, "object=absent")).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        let err = make_store(|c| {
            c.pkcs11_module = Some("/nonexistent/libp11.so".into());
            c.pkcs11_pin_file = Some(token.pin_file.clone());
        })
        .resolve(&uri(&token, "object=k"))
        .unwrap_err();
        assert!(
            matches!(err, Error::Pkcs11Module { .. })
                && err.to_string().contains("/nonexistent/libp11.so"),
            "{err}"
        );
        let err = KeyStore::default()
            .resolve(&uri(&token, "object=k"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingSetting {
                    setting: "pkcs11_module",
                    ..
                }
            ),
            "{err}"
        );
    }
}

/// Prints signatures/s per backend (run with `--nocapture` to see them).
#[cfg(all(feature = "tpm", feature = "pkcs11"))]
#[test]
fn throughput_report() {
    let softhsm = support::init();
    let budget = Duration::from_millis(1500);
    let dir = TempDir::new("rate");

    let file = KeyStore::default()
        .generate(
            &key_ref(&format!("file:{}", dir.join("k.p8").display())),
            Algorithm::EcdsaP256Sha256,
        )
        .unwrap();
    let file_rate = rate(&*file, budget);

    let tpm = support::Swtpm::start();
    let tpm_store = make_store(|c| {
        c.tpm_tcti = Some(tpm.tcti());
        c.request_timeout = Duration::from_secs(30);
    });
    let persistent = tpm_store
        .generate(
            &key_ref("tpm:handle=0x81010002"),
            Algorithm::EcdsaP256Sha256,
        )
        .unwrap();
    let persistent_rate = rate(&*persistent, budget);
    let loaded = tpm_store
        .generate(
            &key_ref(&format!("tpm:pem={}", dir.join("k.pem").display())),
            Algorithm::EcdsaP256Sha256,
        )
        .unwrap();
    let loaded_rate = rate(&*loaded, budget);

    let token = softhsm.token();
    let p11 = make_store(|c| {
        c.pkcs11_module = Some(support::SOFTHSM_MODULE.into());
        c.pkcs11_pin_file = Some(token.pin_file.clone());
    })
    .generate(
        &key_ref(&format!("pkcs11:token={};object=k", token.label)),
        Algorithm::EcdsaP256Sha256,
    )
    .unwrap();
    let p11_rate = rate(&*p11, budget);
    let p11_par = parallel_rate(p11.clone(), 2, budget);
    let tpm_par = parallel_rate(persistent.clone(), 2, budget);

    println!("signatures/s (ECDSA P-256, single thread, ~{budget:?} each):");
    println!("  file (ring, in memory)          {file_rate:>9.0}");
    println!("  tpm  swtpm persistent handle    {persistent_rate:>9.0}");
    println!("  tpm  swtpm loaded TSS2 PEM key  {loaded_rate:>9.0}");
    println!("  pkcs11 SoftHSM2 (CKM_ECDSA)     {p11_rate:>9.0}");
    println!("  2 threads: tpm {tpm_par:.0}, pkcs11 {p11_par:.0}");
    for (name, r) in [
        ("file", file_rate),
        ("tpm", persistent_rate),
        ("pkcs11", p11_rate),
    ] {
        assert!(r > 10.0, "{name}: implausibly slow: {r}/s");
    }
}

/// Signatures per second from `threads` threads sharing one key.
#[cfg(all(feature = "tpm", feature = "pkcs11"))]
fn parallel_rate(key: Arc<dyn SigningKey>, threads: usize, budget: Duration) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while start.elapsed() < budget {
                    key.sign(b"throughput probe").unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    f64::from(total) / start.elapsed().as_secs_f64()
}
