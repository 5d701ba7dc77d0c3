//! The primitives, ring and aws-lc-rs side by side: ECDSA P-256 sign and
//! verify, Ed25519 sign, P-256 ECDHE (the server's share of a handshake:
//! key generation and agreement), ML-KEM-768 (aws-lc-rs only) and
//! AES-128/256-GCM sealing of 16 KiB records in place.
//!
//! Both crates expose ring's API, so each measurement is written twice
//! with the same shape; a `Prim` names one of them.

use crate::measure::{run_for, Sample};

/// The message signed: the size of a TLS 1.3 CertificateVerify input
/// (64 spaces, the context string, a 0 byte and a SHA-384 hash).
const SIGNED_LEN: usize = 64 + 33 + 1 + 48;
/// A full TLS record's plaintext.
pub const RECORD: usize = 16 * 1024;
/// The document `bench/signing.sh` signs with RFC 9421: 10 KiB of JSON.
pub const DOCUMENT: usize = 10 * 1024;

/// A crypto library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// ring 0.17.
    Ring,
    /// aws-lc-rs.
    AwsLc,
}

impl Lib {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::AwsLc => "aws-lc-rs",
        }
    }
}

/// One primitive measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    /// ECDSA P-256 SHA-256 signature (ASN.1, as TLS uses).
    EcdsaSign,
    /// ECDSA P-256 SHA-256 verification, public key parsed each time (as webpki does).
    EcdsaVerify,
    /// Ed25519 signature.
    Ed25519Sign,
    /// SHA-256 of a 10 KiB document (RFC 9530 `Content-Digest`).
    Sha256Document,
    /// P-256 ECDHE, one side: key generation, public key, agreement.
    EcdhP256,
    /// ML-KEM-768 encapsulation (the server's side), key parsed each time.
    MlKemEncap,
    /// ML-KEM-768 key generation and decapsulation (the client's side).
    MlKemKeygenDecap,
    /// AES-128-GCM seal, 16 KiB.
    Aes128Gcm,
    /// AES-256-GCM seal, 16 KiB.
    Aes256Gcm,
}

impl Prim {
    /// Every primitive, in report order.
    pub const ALL: [Prim; 9] = [
        Prim::EcdsaSign,
        Prim::EcdsaVerify,
        Prim::Ed25519Sign,
        Prim::Sha256Document,
        Prim::EcdhP256,
        Prim::MlKemEncap,
        Prim::MlKemKeygenDecap,
        Prim::Aes128Gcm,
        Prim::Aes256Gcm,
    ];

    /// Its label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::EcdsaSign => "ECDSA P-256 sign",
            Self::EcdsaVerify => "ECDSA P-256 verify",
            Self::Ed25519Sign => "Ed25519 sign",
            Self::Sha256Document => "SHA-256 of 10 KiB",
            Self::EcdhP256 => "P-256 ECDHE (keygen + agree)",
            Self::MlKemEncap => "ML-KEM-768 encapsulate",
            Self::MlKemKeygenDecap => "ML-KEM-768 keygen + decapsulate",
            Self::Aes128Gcm => "AES-128-GCM seal, 16 KiB",
            Self::Aes256Gcm => "AES-256-GCM seal, 16 KiB",
        }
    }

    /// Its short name for `--prims`.
    pub fn key(self) -> &'static str {
        match self {
            Self::EcdsaSign => "ecdsa-sign",
            Self::EcdsaVerify => "ecdsa-verify",
            Self::Ed25519Sign => "ed25519-sign",
            Self::Sha256Document => "sha256-10k",
            Self::EcdhP256 => "ecdh",
            Self::MlKemEncap => "mlkem-encap",
            Self::MlKemKeygenDecap => "mlkem-decap",
            Self::Aes128Gcm => "aes128gcm",
            Self::Aes256Gcm => "aes256gcm",
        }
    }

    /// Whether the figure is a throughput (MB/s) rather than µs per op.
    pub fn is_throughput(self) -> bool {
        matches!(self, Self::Aes128Gcm | Self::Aes256Gcm)
    }

    /// Whether `lib` has it (ring has no ML-KEM).
    pub fn available(self, lib: Lib) -> bool {
        lib == Lib::AwsLc || !matches!(self, Self::MlKemEncap | Self::MlKemKeygenDecap)
    }
}

/// Runs one primitive with one library.
pub fn run(p: Prim, lib: Lib, seconds: f64, warmup: f64) -> Result<Sample, String> {
    match lib {
        Lib::Ring => ring_prim(p, seconds, warmup),
        Lib::AwsLc => aws_prim(p, seconds, warmup),
    }
}

fn e<T: std::fmt::Debug>(what: &'static str) -> impl Fn(T) -> String {
    move |err| format!("{what}: {err:?}")
}

fn ring_prim(p: Prim, secs: f64, warm: f64) -> Result<Sample, String> {
    use ring::{aead, agreement, digest, rand, signature};
    use signature::KeyPair;
    let rng = rand::SystemRandom::new();
    let msg = [0x20u8; SIGNED_LEN];
    match p {
        Prim::EcdsaSign | Prim::EcdsaVerify => {
            let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let doc = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(e("keygen"))?;
            let kp =
                signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).map_err(e("key"))?;
            if p == Prim::EcdsaSign {
                return run_for(secs, warm, 64, || {
                    kp.sign(&rng, &msg).map(|_| 0).map_err(e("sign"))
                });
            }
            let sig = kp.sign(&rng, &msg).map_err(e("sign"))?;
            let public = kp.public_key().as_ref().to_vec();
            run_for(secs, warm, 64, || {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &public)
                    .verify(&msg, sig.as_ref())
                    .map(|_| 0)
                    .map_err(e("verify"))
            })
        }
        Prim::Ed25519Sign => {
            let doc = signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(e("keygen"))?;
            let kp = signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(e("key"))?;
            run_for(secs, warm, 64, || {
                std::hint::black_box(kp.sign(&msg));
                Ok(0)
            })
        }
        Prim::Sha256Document => {
            let doc = vec![0x7bu8; DOCUMENT];
            run_for(secs, warm, 64, || {
                std::hint::black_box(digest::digest(&digest::SHA256, &doc));
                Ok(0)
            })
        }
        Prim::EcdhP256 => {
            let alg = &agreement::ECDH_P256;
            let peer = agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(e("keygen"))?;
            let peer = peer
                .compute_public_key()
                .map_err(e("public"))?
                .as_ref()
                .to_vec();
            run_for(secs, warm, 64, || {
                let k = agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(e("keygen"))?;
                std::hint::black_box(k.compute_public_key().map_err(e("public"))?);
                let peer = agreement::UnparsedPublicKey::new(alg, &peer);
                agreement::agree_ephemeral(k, &peer, |s| {
                    std::hint::black_box(s);
                    0
                })
                .map_err(e("agree"))
            })
        }
        Prim::MlKemEncap | Prim::MlKemKeygenDecap => Err("ring has no ML-KEM".into()),
        Prim::Aes128Gcm | Prim::Aes256Gcm => {
            let alg = if p == Prim::Aes128Gcm {
                &aead::AES_128_GCM
            } else {
                &aead::AES_256_GCM
            };
            let key = vec![7u8; alg.key_len()];
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).map_err(e("key"))?);
            let mut buf = vec![0x41u8; RECORD];
            let mut n = 0u64;
            run_for(secs, warm, 16, || {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                let nonce = aead::Nonce::assume_unique_for_key(nonce);
                let tag = key
                    .seal_in_place_separate_tag(
                        nonce,
                        aead::Aad::from([23u8, 3, 3, 64, 17]),
                        &mut buf,
                    )
                    .map_err(e("seal"))?;
                let _ = std::hint::black_box(tag);
                Ok(RECORD as u64)
            })
        }
    }
}

fn aws_prim(p: Prim, secs: f64, warm: f64) -> Result<Sample, String> {
    use aws_lc_rs::{aead, agreement, digest, rand, signature};
    use signature::KeyPair;
    let rng = rand::SystemRandom::new();
    let msg = [0x20u8; SIGNED_LEN];
    match p {
        Prim::EcdsaSign | Prim::EcdsaVerify => {
            let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let doc = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(e("keygen"))?;
            let kp = signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).map_err(e("key"))?;
            if p == Prim::EcdsaSign {
                return run_for(secs, warm, 64, || {
                    kp.sign(&rng, &msg).map(|_| 0).map_err(e("sign"))
                });
            }
            let sig = kp.sign(&rng, &msg).map_err(e("sign"))?;
            let public = kp.public_key().as_ref().to_vec();
            run_for(secs, warm, 64, || {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &public)
                    .verify(&msg, sig.as_ref())
                    .map(|_| 0)
                    .map_err(e("verify"))
            })
        }
        Prim::Ed25519Sign => {
            let doc = signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(e("keygen"))?;
            let kp = signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(e("key"))?;
            run_for(secs, warm, 64, || {
                std::hint::black_box(kp.sign(&msg));
                Ok(0)
            })
        }
        Prim::Sha256Document => {
            let doc = vec![0x7bu8; DOCUMENT];
            run_for(secs, warm, 64, || {
                std::hint::black_box(digest::digest(&digest::SHA256, &doc));
                Ok(0)
            })
        }
        Prim::EcdhP256 => {
            let alg = &agreement::ECDH_P256;
            let peer = agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(e("keygen"))?;
            let peer = peer
                .compute_public_key()
                .map_err(e("public"))?
                .as_ref()
                .to_vec();
            run_for(secs, warm, 64, || {
                let k = agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(e("keygen"))?;
                std::hint::black_box(k.compute_public_key().map_err(e("public"))?);
                let peer = agreement::UnparsedPublicKey::new(alg, &peer);
                agreement::agree_ephemeral(k, peer, String::from("agree"), |s| {
                    std::hint::black_box(s);
                    Ok(0)
                })
            })
        }
        Prim::MlKemEncap | Prim::MlKemKeygenDecap => aws_mlkem(p, secs, warm),
        Prim::Aes128Gcm | Prim::Aes256Gcm => {
            let alg = if p == Prim::Aes128Gcm {
                &aead::AES_128_GCM
            } else {
                &aead::AES_256_GCM
            };
            let key = vec![7u8; alg.key_len()];
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).map_err(e("key"))?);
            let mut buf = vec![0x41u8; RECORD];
            let mut n = 0u64;
            run_for(secs, warm, 16, || {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                let nonce = aead::Nonce::assume_unique_for_key(nonce);
                let tag = key
                    .seal_in_place_separate_tag(
                        nonce,
                        aead::Aad::from([23u8, 3, 3, 64, 17]),
                        &mut buf,
                    )
                    .map_err(e("seal"))?;
                let _ = std::hint::black_box(tag);
                Ok(RECORD as u64)
            })
        }
    }
}

/// ML-KEM-768 with aws-lc-rs: one side of the key encapsulation.
fn aws_mlkem(p: Prim, secs: f64, warm: f64) -> Result<Sample, String> {
    use aws_lc_rs::kem;
    match p {
        Prim::MlKemEncap => {
            let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).map_err(e("keygen"))?;
            let ek = dk.encapsulation_key().map_err(e("ek"))?;
            let ek = ek.key_bytes().map_err(e("ek bytes"))?.as_ref().to_vec();
            run_for(secs, warm, 64, || {
                let k = kem::EncapsulationKey::new(&kem::ML_KEM_768, &ek).map_err(e("ek"))?;
                std::hint::black_box(k.encapsulate().map_err(e("encapsulate"))?);
                Ok(0)
            })
        }
        Prim::MlKemKeygenDecap => {
            let probe = kem::DecapsulationKey::generate(&kem::ML_KEM_768).map_err(e("keygen"))?;
            let ek = probe.encapsulation_key().map_err(e("ek"))?;
            let (ct, _) = ek.encapsulate().map_err(e("encapsulate"))?;
            let ct = ct.as_ref().to_vec();
            run_for(secs, warm, 64, || {
                let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).map_err(e("keygen"))?;
                std::hint::black_box(dk.encapsulation_key().map_err(e("ek"))?);
                // A ciphertext for another key: ML-KEM decapsulates it
                // anyway (implicit rejection), at the same cost.
                std::hint::black_box(dk.decapsulate(ct.as_slice().into()).map_err(e("decap"))?);
                Ok(0)
            })
        }
        _ => Err(format!("{} is not an ML-KEM measurement", p.label())),
    }
}
