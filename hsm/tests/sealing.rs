//! Sealing gateway secrets to a software TPM (swtpm): round trips, the
//! salted parameter-encrypting session (checked in swtpm's command log), PCR
//! binding, and files from another TPM.

// Test code: panicking on failure is the point (clippy.toml allows this only
// inside `#[test]` functions, not in the shared helpers below).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tpm")]

use stadttor_test_harness::hw as support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use stadttor_hsm::tpm::{SealedSecret, Sealer};
use stadttor_hsm::{Algorithm, Error, KeyStore, KeyStoreConfig};
use support::Swtpm;

fn store(tpm: &Swtpm) -> KeyStore {
    let mut config = KeyStoreConfig::default();
    config.tpm_tcti = Some(tpm.tcti());
    // Generous: the 2-core test machine is shared and loaded.
    config.request_timeout = Duration::from_secs(30);
    KeyStore::new(config)
}

/// True if `needle` occurs in any logged command (`commands`) or response.
fn logged(tpm: &Swtpm, commands: bool, needle: &[u8]) -> bool {
    tpm.io_messages()
        .iter()
        .filter(|(is_command, _)| *is_command == commands)
        .any(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
}

/// Mean wall-clock time of `n` runs of `f`.
fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn unseal(sealer: &Sealer, path: &Path) -> Result<Vec<u8>, Error> {
    sealer.unseal_file(path).map(|s| s.to_vec())
}

/// Seal and unseal over the salted session: the secret round-trips, the file
/// is TSS2 PEM (sealed-data OID, mode 0600), and the secret never appears in
/// clear in the TPM traffic, while a tpm2-tools seal/unseal over a password
/// session (positive control) shows it in the same log.
#[test]
fn seal_unseal_over_salted_session_keeps_secret_off_the_bus() {
    support::init();
    let tpm = Swtpm::start_logged();
    let store = store(&tpm);
    let sealer = store.tpm_sealer().unwrap();
    let secret = b"stadttor ticket key 0123456789abcdef/ONLY-IN-TPM";
    let path = tpm.dir.join("ticket.sealed.pem");

    let sealed = sealer.seal_to_file(&path, secret, &[]).unwrap();
    assert!(sealed.pcrs().is_empty());
    assert_eq!(sealed.parent(), stadttor_hsm::tpm::DEFAULT_SRK);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"),
        "{text}"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(SealedSecret::read(&path).unwrap(), sealed);

    let unsealed = sealer.unseal_file(&path).unwrap();
    assert_eq!(&unsealed[..], secret);
    assert_eq!(&sealer.unseal(&sealed).unwrap()[..], secret);

    // Both went through sessions salted to the SRK: TPM2_StartAuthSession
    // with tpmKey 0x81000001, AES-128-CFB and SHA-256.
    let salted = tpm
        .io_messages()
        .into_iter()
        .filter(|(is_command, b)| {
            *is_command
                && b.get(6..14) == Some(&[0, 0, 0x01, 0x76, 0x81, 0, 0, 0x01])
                && b.ends_with(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43, 0x00, 0x0b])
        })
        .count();
    assert!(salted >= 3, "{salted} salted sessions started");
    // The seal went out and the secret came back, both encrypted.
    assert!(!logged(&tpm, true, secret), "secret in clear in a command");
    assert!(
        !logged(&tpm, false, secret),
        "secret in clear in a response"
    );
    assert!(!logged(&tpm, true, &secret[..16]) && !logged(&tpm, false, &secret[..16]));

    // Positive control: the same log shows a secret sealed and unsealed by
    // tpm2-tools over its default password session.
    let control = b"CONTROL secret via a password session 42";
    std::fs::write(tpm.dir.join("control.bin"), control).unwrap();
    tpm.run(
        "tpm2_create",
        &[
            "-C",
            "0x81000001",
            "-i",
            "control.bin",
            "-u",
            "c.pub",
            "-r",
            "c.priv",
        ],
    );
    tpm.run("tpm2_flushcontext", &["-t"]);
    tpm.run(
        "tpm2_load",
        &[
            "-C",
            "0x81000001",
            "-u",
            "c.pub",
            "-r",
            "c.priv",
            "-c",
            "c.ctx",
        ],
    );
    let out = tpm.run("tpm2_unseal", &["-c", "c.ctx"]);
    tpm.run("tpm2_flushcontext", &["-t"]);
    assert_eq!(out.stdout, control);
    assert!(
        logged(&tpm, true, control),
        "control not seen in TPM2_Create"
    );
    assert!(
        logged(&tpm, false, control),
        "control not seen in TPM2_Unseal"
    );

    // Interop: tpm2-tools' sealed object, as TSS2 PEM, unseals with stadttor.
    // (-p: Debian's tpm2-tools 5.4 inverts emptyAuth, tpm2-tools #3458.)
    tpm.run(
        "tpm2_encodeobject",
        &[
            "-C",
            "0x81000001",
            "-u",
            "c.pub",
            "-r",
            "c.priv",
            "-p",
            "-o",
            "c.pem",
        ],
    );
    let tools_pem = tpm.dir.join("c.pem");
    assert_eq!(&sealer.unseal_file(&tools_pem).unwrap()[..], control);

    // The TPM owner thread is shared with signing keys.
    let key = store
        .generate(
            &format!("tpm:pem={}", tpm.dir.join("k.pem").display())
                .parse()
                .unwrap(),
            Algorithm::EcdsaP256Sha256,
        )
        .unwrap();
    key.sign(b"still signs").unwrap();
    assert_eq!(&sealer.unseal_file(&path).unwrap()[..], secret);

    // Input checks, before the TPM is asked.
    for (bad, pcrs) in [(&[0u8; 129][..], &[][..]), (&[], &[]), (b"x", &[24][..])] {
        let err = sealer.seal(bad, pcrs).unwrap_err();
        assert!(matches!(err, Error::SealedSecret { .. }), "{err}");
    }
    assert_eq!(
        sealer
            .seal(&[0xa5; stadttor_hsm::tpm::MAX_SEALED_SECRET], &[])
            .map(|s| sealer.unseal(&s).unwrap().len())
            .unwrap(),
        128
    );
    let err = sealer.seal_to_file(&path, b"again", &[]).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(&sealer.unseal_file(&path).unwrap()[..], secret);
    assert!(sealer.clone().with_parent(0x4000_0001).is_err());

    let seal_time = mean(10, || {
        sealer.seal(secret, &[]).unwrap();
    });
    let unseal_time = mean(10, || {
        sealer.unseal(&sealed).unwrap();
    });
    println!("unbound, salted session: seal {seal_time:?}, unseal {unseal_time:?} (mean of 10)");
}

/// A secret bound to PCR 16 unseals until PCR 16 is extended, then fails
/// with a clear "platform state changed" error; unbound sealing still works
/// and re-sealing to the new state works.
#[test]
fn pcr_bound_secret_fails_after_pcr_extend() {
    support::init();
    let tpm = Swtpm::start();
    let sealer = store(&tpm).tpm_sealer().unwrap();
    let bound = tpm.dir.join("bound.pem");
    let two = tpm.dir.join("two.pem");
    let other = tpm.dir.join("other.pem");
    let unbound = tpm.dir.join("unbound.pem");
    let secret = b"session cookie key, bound to PCR 16";
    sealer.seal_to_file(&bound, secret, &[16]).unwrap();
    sealer.seal_to_file(&two, secret, &[16, 0, 16]).unwrap();
    sealer
        .seal_to_file(&other, b"bound to PCR 23", &[23])
        .unwrap();
    sealer.seal_to_file(&unbound, b"unbound", &[]).unwrap();
    assert_eq!(SealedSecret::read(&two).unwrap().pcrs(), &[0, 16]);
    assert_eq!(unseal(&sealer, &bound).unwrap(), secret);
    assert_eq!(unseal(&sealer, &two).unwrap(), secret);

    let sealed = SealedSecret::read(&bound).unwrap();
    let seal_time = mean(10, || {
        sealer.seal(secret, &[16]).unwrap();
    });
    let unseal_time = mean(10, || {
        sealer.unseal(&sealed).unwrap();
    });
    println!("PCR-bound, salted session: seal {seal_time:?}, unseal {unseal_time:?} (mean of 10)");

    tpm.run(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "ab".repeat(32))],
    );

    for (path, pcrs) in [(&bound, "16"), (&two, "0,16")] {
        let err = sealer.unseal_file(path).unwrap_err();
        assert!(
            matches!(&err, Error::PlatformStateChanged { pcrs: p, .. } if p == pcrs),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("platform state changed"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    // Not affected: another PCR, and no binding at all.
    assert_eq!(unseal(&sealer, &other).unwrap(), b"bound to PCR 23");
    assert_eq!(unseal(&sealer, &unbound).unwrap(), b"unbound");
    // Sealing to the new state works.
    let resealed = sealer.seal(secret, &[16]).unwrap();
    assert_eq!(&sealer.unseal(&resealed).unwrap()[..], secret);
}

/// A sealed file from another TPM (or altered) fails with a clear error,
/// whether or not the other TPM has an SRK at the same handle.
#[test]
fn sealed_file_from_another_tpm_fails_clearly() {
    support::init();
    let (tpm_a, tpm_b) = Swtpm::start_pair();
    let a = store(&tpm_a).tpm_sealer().unwrap();
    let b = store(&tpm_b).tpm_sealer().unwrap();
    let unbound = tpm_a.dir.join("a-unbound.pem");
    let bound = tpm_a.dir.join("a-bound.pem");
    a.seal_to_file(&unbound, b"from TPM A", &[]).unwrap();
    a.seal_to_file(&bound, b"from TPM A, PCR 16", &[16])
        .unwrap();

    let foreign = |sealer: &Sealer, path: &Path| {
        let err = sealer.unseal_file(path).unwrap_err();
        assert!(matches!(err, Error::ForeignTpm { .. }), "{err}");
        assert!(err.to_string().contains("not sealed by this TPM"), "{err}");
    };
    // B has no SRK yet.
    foreign(&b, &unbound);
    // B gets its own SRK at the same handle: the blob still does not load.
    b.seal(b"B's own", &[]).unwrap();
    foreign(&b, &unbound);
    foreign(&b, &bound);
    assert_eq!(unseal(&a, &unbound).unwrap(), b"from TPM A");
    assert_eq!(unseal(&a, &bound).unwrap(), b"from TPM A, PCR 16");

    // A file altered on disk fails the TPM's integrity check the same way.
    let sealed = SealedSecret::read(&unbound).unwrap();
    let pem = pem_flip_last_private_byte(&sealed.to_pem());
    let tampered = SealedSecret::from_pem(pem.as_bytes()).unwrap();
    let err = a.unseal(&tampered).unwrap_err();
    assert!(matches!(err, Error::ForeignTpm { .. }), "{err}");

    // Junk is refused before the TPM is asked.
    let junk = tpm_a.dir.join("junk.pem");
    std::fs::write(&junk, "not pem").unwrap();
    let err = a.unseal_file(&junk).unwrap_err();
    assert!(matches!(err, Error::SealedSecret { .. }), "{err}");
}

/// Flips the last byte of the DER (inside the `TPM2B_PRIVATE` blob).
fn pem_flip_last_private_byte(text: &str) -> String {
    let parsed = pem::parse(text).unwrap();
    let mut der = parsed.contents().to_vec();
    *der.last_mut().unwrap() ^= 0x01;
    pem::encode(&pem::Pem::new(parsed.tag(), der))
}
