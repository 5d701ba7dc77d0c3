//! Electronic seals on what the gateway sends: CMS/CAdES, PAdES, JWS and
//! HTTP Message Signatures, all made with a key from `stadttor-hsm`.
//!
//! A municipal service puts out a notice (PDF), data (JSON, XML) or any
//! file; the gateway seals it with the municipality's key so that a citizen
//! or another authority can check origin and integrity with ordinary tools.
//! With a TPM or PKCS#11 key and a certificate naming the authority this is
//! an **advanced** electronic seal (eIDAS Art. 36). It is **not** a
//! qualified seal: that needs a qualified seal certificate and a QSCD,
//! realistically a QTSP's remote sealing service. Such a service plugs in
//! through [`SealCreator`] (see there); nothing here claims "qualified".
//!
//! - [`seal_cert`]: the seal certificate chain from the configuration,
//!   checked (key usage, validity, leaf matches the key).
//! - [`cms`]: CMS `SignedData`, detached, CAdES-B-B / B-T (EN 319 122-1);
//!   also the signature container inside PAdES.
//! - [`tsa`]: RFC 3161 timestamps; a small blocking HTTP client for
//!   `http://` TSAs behind the [`tsa::TimestampAuthority`] trait.
//! - [`pades`]: PAdES-B-B / B-T (EN 319 142-1) as an incremental update of
//!   an existing PDF; [`pdf`] is the minimal PDF reader it needs.
//! - [`jws`]: detached JWS with an unencoded payload (RFC 7797).
//! - [`httpsig`]: RFC 9421 signatures with RFC 9530 `Content-Digest` on
//!   responses, and short-lived per-route keys delegated by the seal key.
//!
//! Everything is synchronous and may block on the key (a TPM needs tens of
//! milliseconds per signature); nothing here opens a socket except the
//! TSA client, and none of it speaks HTTP as a server.
//!
//! The verifiers in these modules serve `stadttor verify` and our own unit
//! tests; the integration tests check every format with independent tools
//! (OpenSSL, poppler's `pdfsig`, pyHanko, jwcrypto, `http-message-signatures`).

use stadttor_hsm::{Algorithm, SigningKey};

use crate::Error;

pub mod cms;
pub(crate) mod der;
pub mod httpsig;
pub mod jws;
pub mod pades;
pub mod pdf;
pub mod seal_cert;
pub mod tsa;

pub use seal_cert::SealCertificate;

/// The legal level a seal creator can claim (eIDAS Art. 3(26), 3(27)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealLevel {
    /// An advanced electronic seal: a key under the municipality's control
    /// (TPM, PKCS#11, or a file key for development) and a certificate
    /// naming the authority.
    Advanced,
    /// A qualified electronic seal: only a QTSP's remote sealing service or
    /// a certified QSCD with a qualified seal certificate may claim this.
    /// No backend in this crate does.
    Qualified,
}

/// What makes the signature value of a seal: the extension point for a
/// remote qualified sealing service.
///
/// Every `stadttor-hsm` [`SigningKey`] is a `SealCreator` at
/// [`SealLevel::Advanced`] (blanket implementation), so the format
/// functions accept `&dyn SigningKey` directly. A remote service (for
/// example the Cloud Signature Consortium API of a QTSP: hash in, raw
/// signature out) implements this trait itself: `sign` hashes `message` as
/// [`SealCreator::algorithm`] requires, sends the hash and returns the
/// signature in the encoding documented on [`Algorithm`] (DER for ECDSA),
/// and `level` returns [`SealLevel::Qualified`] only if the service's
/// certificate and device really are qualified.
pub trait SealCreator: Send + Sync {
    /// The signature algorithm.
    fn algorithm(&self) -> Algorithm;
    /// The public key, DER `SubjectPublicKeyInfo`.
    fn public_key_spki(&self) -> &[u8];
    /// Signs `message` (unhashed), encoded as [`Algorithm`] documents.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
    /// A name for logs and errors.
    fn reference(&self) -> &str;
    /// The level this creator may claim.
    fn level(&self) -> SealLevel;
}

impl<T: SigningKey + ?Sized> SealCreator for T {
    fn algorithm(&self) -> Algorithm {
        SigningKey::algorithm(self)
    }
    fn public_key_spki(&self) -> &[u8] {
        SigningKey::public_key_spki(self)
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(SigningKey::sign(self, message)?)
    }
    fn reference(&self) -> &str {
        SigningKey::reference(self)
    }
    fn level(&self) -> SealLevel {
        SealLevel::Advanced
    }
}

/// What the formats need to know about a signature algorithm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AlgInfo {
    pub(crate) alg: Algorithm,
    /// Digest for CMS message digests (RFC 5754, RFC 8419: SHA-512 for
    /// Ed25519).
    pub(crate) digest: &'static ring::digest::Algorithm,
    /// DER OID content of that digest.
    pub(crate) digest_oid: &'static [u8],
    /// For ECDSA, the size of r and s.
    pub(crate) ecdsa_scalar: Option<usize>,
}

impl AlgInfo {
    pub(crate) fn of(alg: Algorithm, reference: &str) -> Result<Self, Error> {
        use ring::digest::{SHA256, SHA384, SHA512};
        let (digest, digest_oid, ecdsa_scalar) = match alg {
            Algorithm::EcdsaP256Sha256 => (&SHA256, der::oid::SHA256, Some(32)),
            Algorithm::EcdsaP384Sha384 => (&SHA384, der::oid::SHA384, Some(48)),
            Algorithm::Ed25519 => (&SHA512, der::oid::SHA512, None),
            Algorithm::RsaPssSha256 => (&SHA256, der::oid::SHA256, None),
            other => {
                return Err(Error::UnsupportedAlgorithm {
                    key: reference.to_owned(),
                    algorithm: other.to_string(),
                })
            }
        };
        Ok(Self {
            alg,
            digest,
            digest_oid,
            ecdsa_scalar,
        })
    }

    /// The DER `AlgorithmIdentifier` of the digest (parameters absent).
    pub(crate) fn digest_algorithm_id(&self) -> Vec<u8> {
        der::seq(&[&der::oid(self.digest_oid)])
    }

    /// The DER `AlgorithmIdentifier` of the signature.
    pub(crate) fn signature_algorithm_id(&self) -> Vec<u8> {
        match self.alg {
            Algorithm::EcdsaP384Sha384 => der::seq(&[&der::oid(der::oid::ECDSA_SHA384)]),
            Algorithm::Ed25519 => der::seq(&[&der::oid(der::oid::ED25519)]),
            Algorithm::RsaPssSha256 => {
                // RFC 4055: SHA-256, MGF1 with SHA-256, salt length 32.
                let sha256 = der::seq(&[&der::oid(der::oid::SHA256), &[der::tag::NULL, 0]]);
                let mgf = der::seq(&[&der::oid(der::oid::MGF1), &sha256]);
                let params = der::seq(&[
                    &der::explicit(0, &sha256),
                    &der::explicit(1, &mgf),
                    &der::explicit(2, &der::small_int(32)),
                ]);
                der::seq(&[&der::oid(der::oid::RSASSA_PSS), &params])
            }
            _ => der::seq(&[&der::oid(der::oid::ECDSA_SHA256)]),
        }
    }
}

/// Converts a DER `ECDSA-Sig-Value` to fixed-size `r || s` (JWS, RFC 9421).
pub(crate) fn ecdsa_der_to_fixed(sig: &[u8], scalar: usize) -> Result<Vec<u8>, Error> {
    let seq = der::read_exact(sig, der::tag::SEQUENCE)?;
    let mut r = der::Reader::new(seq.value);
    let mut out = Vec::with_capacity(2 * scalar);
    for _ in 0..2 {
        let int = r.expect(der::tag::INTEGER)?;
        let v = int.value;
        let skip = v.iter().take_while(|b| **b == 0).count();
        let mag = &v[skip..];
        if mag.len() > scalar {
            return Err(Error::Malformed {
                what: "ECDSA signature",
                reason: "integer longer than the curve".into(),
            });
        }
        out.extend(std::iter::repeat_n(0, scalar - mag.len()));
        out.extend_from_slice(mag);
    }
    if !r.is_empty() {
        return Err(Error::Malformed {
            what: "ECDSA signature",
            reason: "trailing data".into(),
        });
    }
    Ok(out)
}

/// Verifies `sig` over `message` with the public key `spki` (DER
/// `SubjectPublicKeyInfo`) under `alg`; `fixed` says ECDSA signatures are
/// `r || s` rather than DER.
pub(crate) fn verify_raw(
    alg: Algorithm,
    spki: &[u8],
    message: &[u8],
    sig: &[u8],
    fixed: bool,
) -> Result<(), Error> {
    use ring::signature as s;
    let params: &dyn s::VerificationAlgorithm = match (alg, fixed) {
        (Algorithm::EcdsaP256Sha256, false) => &s::ECDSA_P256_SHA256_ASN1,
        (Algorithm::EcdsaP256Sha256, true) => &s::ECDSA_P256_SHA256_FIXED,
        (Algorithm::EcdsaP384Sha384, false) => &s::ECDSA_P384_SHA384_ASN1,
        (Algorithm::EcdsaP384Sha384, true) => &s::ECDSA_P384_SHA384_FIXED,
        (Algorithm::Ed25519, _) => &s::ED25519,
        (Algorithm::RsaPssSha256, _) => &s::RSA_PSS_2048_8192_SHA256,
        (other, _) => {
            return Err(Error::UnsupportedAlgorithm {
                key: "verification".into(),
                algorithm: other.to_string(),
            })
        }
    };
    // ring wants the raw key (EC point, Ed25519 bytes, RSAPublicKey), which
    // is the BIT STRING of the SPKI.
    let spki_seq = der::read_exact(spki, der::tag::SEQUENCE)?;
    let mut r = der::Reader::new(spki_seq.value);
    r.expect(der::tag::SEQUENCE)?;
    let bits = r.expect(der::tag::BIT_STRING)?;
    let raw = bits.value.get(1..).ok_or_else(|| Error::Malformed {
        what: "public key",
        reason: "empty BIT STRING".into(),
    })?;
    s::UnparsedPublicKey::new(params, raw)
        .verify(message, sig)
        .map_err(|_| Error::BadSignature {
            reason: "the signature value does not verify with the signer's public key".into(),
        })
}

/// The algorithm of a DER SPKI, as far as these formats support it.
pub(crate) fn algorithm_of_spki(spki: &[u8]) -> Result<Algorithm, Error> {
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let seq = der::read_exact(spki, der::tag::SEQUENCE)?;
    let mut r = der::Reader::new(seq.value);
    let alg = r.expect(der::tag::SEQUENCE)?;
    let mut a = der::Reader::new(alg.value);
    let oid = a.expect(der::tag::OID)?.value;
    let param = a.any()?.map(|t| t.value);
    match (oid, param) {
        (EC, Some(P256)) => Ok(Algorithm::EcdsaP256Sha256),
        (EC, Some(P384)) => Ok(Algorithm::EcdsaP384Sha384),
        (der::oid::ED25519, _) => Ok(Algorithm::Ed25519),
        (RSA, _) | (der::oid::RSASSA_PSS, _) => Ok(Algorithm::RsaPssSha256),
        _ => Err(Error::Malformed {
            what: "public key",
            reason: "not an ECDSA P-256/P-384, Ed25519 or RSA key".into(),
        }),
    }
}

/// Standard base64 (with padding).
pub(crate) fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// base64url without padding (JOSE).
pub(crate) fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_becomes_fixed_width() {
        // r = 0x00ff.. (needs a leading zero in DER), s = 1
        let mut r = vec![0x00, 0xff];
        r.extend([0x11; 31]);
        let sig = der::seq(&[&der::tlv(der::tag::INTEGER, &r), &der::small_int(1)]);
        let fixed = ecdsa_der_to_fixed(&sig, 32).unwrap();
        assert_eq!(fixed.len(), 64);
        assert_eq!(fixed[0], 0xff);
        assert_eq!(fixed[63], 1);
        assert_eq!(fixed[32..63], [0u8; 31]);
    }
}
