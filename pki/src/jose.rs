//! Compact JWS signing (RFC 7515) and JWK/JWKS export (RFC 7517, RFC 7638)
//! for keys from `stadttor-hsm`: the one place in stadttor that turns a key
//! into a JWT.
//!
//! The gateway signs its identity assertions and its `private_key_jwt`
//! client assertions (RFC 7523) here and publishes the public keys built
//! here; the detached response JWS in [`crate::sign::jws`] shares the same
//! signing step and algorithm table.
//!
//! What can go wrong is a typed [`JoseError`]. A key whose algorithm has no
//! JWS name, an algorithm name this crate does not sign with (`none`,
//! `HS256`, `RS256`, …) or a signature that cannot be brought into JWS form
//! is an error: this module never writes `"alg": "none"` and never an empty
//! signature.
//!
//! Algorithms: `ES256` (P-256), `ES384` (P-384), `EdDSA` (Ed25519) and
//! `PS256` (RSA-PSS with SHA-256); ECDSA signatures are converted from DER
//! to `r || s`. JWT *verification* is not here: the gateway verifies
//! provider tokens against the provider's JWKS itself.

use serde_json::{json, Map, Value};
use stadttor_hsm::Algorithm;

use crate::sign::{b64url, der, SealCreator};

/// Why a JWS or JWK could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The key's algorithm has no JWS form here.
    #[error("key {key}: algorithm {algorithm} cannot make a JWS")]
    UnsupportedKey {
        /// The key reference.
        key: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// A JWS algorithm name this crate does not sign with.
    #[error("JWS algorithm `{0}` is not supported (only ES256, ES384, EdDSA, PS256)")]
    UnsupportedAlgorithm(String),
    /// The caller asked for another algorithm than the key's.
    #[error("key {key} signs {actual}, but {expected} was asked for")]
    AlgorithmMismatch {
        /// The key reference.
        key: String,
        /// The algorithm asked for.
        expected: &'static str,
        /// The key's algorithm.
        actual: &'static str,
    },
    /// The key's public key is not what its algorithm says.
    #[error("key {key}: public key unusable for a JWK: {reason}")]
    PublicKey {
        /// The key reference.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The key failed to sign, or returned a signature that is not valid
    /// DER for its algorithm.
    #[error("key {key}: signing failed: {source}")]
    Sign {
        /// The key reference.
        key: String,
        /// The cause.
        #[source]
        source: crate::Error,
    },
}

/// A JWS signature algorithm this crate can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32.
    Ps256,
}

impl JwsAlgorithm {
    /// The JWS algorithm of a key-store algorithm.
    pub fn of_key(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::EcdsaP256Sha256 => Some(Self::Es256),
            Algorithm::EcdsaP384Sha384 => Some(Self::Es384),
            Algorithm::Ed25519 => Some(Self::EdDsa),
            Algorithm::RsaPssSha256 => Some(Self::Ps256),
            _ => None,
        }
    }

    /// The algorithm named `name` in a JWS header; `none`, HMAC and
    /// anything not listed on [`JwsAlgorithm`] are errors.
    pub fn from_name(name: &str) -> Result<Self, JoseError> {
        match name {
            "ES256" => Ok(Self::Es256),
            "ES384" => Ok(Self::Es384),
            "EdDSA" => Ok(Self::EdDsa),
            "PS256" => Ok(Self::Ps256),
            other => Err(JoseError::UnsupportedAlgorithm(other.to_owned())),
        }
    }

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
            Self::Ps256 => "PS256",
        }
    }

    /// The key-store algorithm that makes this JWS algorithm.
    pub fn key_algorithm(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::EcdsaP256Sha256,
            Self::Es384 => Algorithm::EcdsaP384Sha384,
            Self::EdDsa => Algorithm::Ed25519,
            Self::Ps256 => Algorithm::RsaPssSha256,
        }
    }

    /// For ECDSA, the width of `r` and `s` in the JWS signature.
    fn ecdsa_scalar(self) -> Option<usize> {
        match self {
            Self::Es256 => Some(32),
            Self::Es384 => Some(48),
            Self::EdDsa | Self::Ps256 => None,
        }
    }
}

/// The JWS algorithm of `key`, or [`JoseError::UnsupportedKey`].
pub fn algorithm_of<K: SealCreator + ?Sized>(key: &K) -> Result<JwsAlgorithm, JoseError> {
    JwsAlgorithm::of_key(key.algorithm()).ok_or_else(|| JoseError::UnsupportedKey {
        key: key.reference().to_owned(),
        algorithm: key.algorithm().to_string(),
    })
}

/// The protected header of a compact JWS, besides `alg` (which always comes
/// from the key).
#[derive(Debug, Clone, Copy, Default)]
pub struct JwsHeader<'a> {
    /// `kid`, usually [`Jwk::kid`] of the signing key.
    pub kid: Option<&'a str>,
    /// `typ`, for example `JWT` (RFC 7519) or an explicit type (RFC 8725
    /// §3.11).
    pub typ: Option<&'a str>,
    /// If set, the key must sign with exactly this algorithm.
    pub expect_alg: Option<JwsAlgorithm>,
}

impl JwsHeader<'_> {
    fn to_map(self, alg: JwsAlgorithm) -> Map<String, Value> {
        let mut h = Map::new();
        h.insert("alg".into(), json!(alg.name()));
        if let Some(kid) = self.kid {
            h.insert("kid".into(), json!(kid));
        }
        if let Some(typ) = self.typ {
            h.insert("typ".into(), json!(typ));
        }
        h
    }
}

/// Signs the JSON `payload` (JWT claims) as a compact JWS
/// `BASE64URL(header).BASE64URL(payload).BASE64URL(signature)` with `key`.
///
/// May block on the key (a TPM takes tens of milliseconds); callers on an
/// async runtime move the call off the reactor.
pub fn sign_compact<K: SealCreator + ?Sized>(
    key: &K,
    header: &JwsHeader<'_>,
    payload: &Value,
) -> Result<String, JoseError> {
    let alg = algorithm_of(key)?;
    if let Some(expected) = header.expect_alg {
        if expected != alg {
            return Err(JoseError::AlgorithmMismatch {
                key: key.reference().to_owned(),
                expected: expected.name(),
                actual: alg.name(),
            });
        }
    }
    let payload = b64url(payload.to_string().as_bytes());
    let (h, s) = sign_parts(key, alg, &header.to_map(alg), payload.as_bytes())?;
    Ok(format!("{h}.{payload}.{s}"))
}

/// Signs `header`'s base64url form and `payload_in_input` per RFC 7515
/// §5.1 with `key` (whose JWS algorithm is `alg`); returns `(encoded
/// header, encoded signature)`. The signing step of every JWS this crate
/// makes, compact or detached.
pub(crate) fn sign_parts<K: SealCreator + ?Sized>(
    key: &K,
    alg: JwsAlgorithm,
    header: &Map<String, Value>,
    payload_in_input: &[u8],
) -> Result<(String, String), JoseError> {
    let sign_err = |source| JoseError::Sign {
        key: key.reference().to_owned(),
        source,
    };
    let h = b64url(Value::Object(header.clone()).to_string().as_bytes());
    let mut input = Vec::with_capacity(h.len() + 1 + payload_in_input.len());
    input.extend_from_slice(h.as_bytes());
    input.push(b'.');
    input.extend_from_slice(payload_in_input);
    let sig = key.sign(&input).map_err(sign_err)?;
    let sig = match alg.ecdsa_scalar() {
        Some(n) => crate::sign::ecdsa_der_to_fixed(&sig, n).map_err(sign_err)?,
        None => sig,
    };
    if sig.is_empty() {
        return Err(sign_err(crate::Error::BadSignature {
            reason: "the key returned an empty signature".into(),
        }));
    }
    Ok((h, b64url(&sig)))
}

/// A public key as JWK, with its RFC 7638 thumbprint as `kid`.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwk {
    kid: String,
    alg: JwsAlgorithm,
    value: Value,
}

impl Jwk {
    /// The key id: the base64url SHA-256 JWK thumbprint (RFC 7638).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS algorithm the key signs with.
    pub fn alg(&self) -> JwsAlgorithm {
        self.alg
    }

    /// The JWK as JSON: the key members plus `kid`, `use: sig` and `alg`.
    pub fn to_json(&self) -> &Value {
        &self.value
    }
}

/// The public JWK of `key`.
pub fn public_jwk<K: SealCreator + ?Sized>(key: &K) -> Result<Jwk, JoseError> {
    let alg = algorithm_of(key)?;
    let bad = |reason: &str| JoseError::PublicKey {
        key: key.reference().to_owned(),
        reason: reason.to_owned(),
    };
    let raw = spki_key_bits(key.public_key_spki()).ok_or_else(|| bad("not a DER SPKI"))?;
    // The required members in lexicographic order (RFC 7638 §3.2), so the
    // thumbprint input is exactly this object without whitespace.
    let members = match alg {
        JwsAlgorithm::Es256 | JwsAlgorithm::Es384 => {
            let (crv, n) = match alg {
                JwsAlgorithm::Es256 => ("P-256", 32),
                _ => ("P-384", 48),
            };
            if raw.len() != 1 + 2 * n || raw.first() != Some(&4) {
                return Err(bad("not an uncompressed EC point of the curve"));
            }
            let (x, y) = raw[1..].split_at(n);
            json!({ "crv": crv, "kty": "EC", "x": b64url(x), "y": b64url(y) })
        }
        JwsAlgorithm::EdDsa => {
            if raw.len() != 32 {
                return Err(bad("not a 32-byte Ed25519 key"));
            }
            json!({ "crv": "Ed25519", "kty": "OKP", "x": b64url(raw) })
        }
        JwsAlgorithm::Ps256 => {
            let (n, e) = rsa_public_key(raw).ok_or_else(|| bad("not a DER RSAPublicKey"))?;
            json!({ "e": b64url(e), "kty": "RSA", "n": b64url(n) })
        }
    };
    let kid = thumbprint(&members);
    let Value::Object(mut jwk) = members else {
        return Err(bad("JWK members are not an object"));
    };
    jwk.insert("kid".into(), json!(kid));
    jwk.insert("use".into(), json!("sig"));
    jwk.insert("alg".into(), json!(alg.name()));
    Ok(Jwk {
        kid,
        alg,
        value: Value::Object(jwk),
    })
}

/// The RFC 7638 thumbprint of the required JWK `members`, which
/// `serde_json` writes in lexicographic order without whitespace.
fn thumbprint(members: &Value) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, members.to_string().as_bytes()).as_ref())
}

/// A JWK Set document (`{"keys": [...]}`) of `keys`.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a Jwk>) -> Value {
    json!({ "keys": keys.into_iter().map(|k| k.value.clone()).collect::<Vec<_>>() })
}

/// The content of an SPKI's `subjectPublicKey` BIT STRING (without the
/// unused-bits byte).
fn spki_key_bits(spki: &[u8]) -> Option<&[u8]> {
    let seq = der::read_exact(spki, der::tag::SEQUENCE).ok()?;
    let mut r = der::Reader::new(seq.value);
    r.expect(der::tag::SEQUENCE).ok()?;
    let bits = r.expect(der::tag::BIT_STRING).ok()?;
    match bits.value.split_first() {
        Some((0, raw)) if r.is_empty() => Some(raw),
        _ => None,
    }
}

/// Modulus and exponent of a DER `RSAPublicKey`, without leading zeros.
fn rsa_public_key(der_key: &[u8]) -> Option<(&[u8], &[u8])> {
    let seq = der::read_exact(der_key, der::tag::SEQUENCE).ok()?;
    let mut r = der::Reader::new(seq.value);
    let n = r.expect(der::tag::INTEGER).ok()?.value;
    let e = r.expect(der::tag::INTEGER).ok()?.value;
    if !r.is_empty() {
        return None;
    }
    Some((strip_zeros(n)?, strip_zeros(e)?))
}

/// A DER INTEGER's magnitude without leading zeros; `None` if it is zero.
fn strip_zeros(v: &[u8]) -> Option<&[u8]> {
    let skip = v.iter().take_while(|b| **b == 0).count();
    v.get(skip..).filter(|m| !m.is_empty())
}

impl From<JoseError> for crate::Error {
    fn from(e: JoseError) -> Self {
        match e {
            JoseError::UnsupportedKey { key, algorithm } => {
                crate::Error::UnsupportedAlgorithm { key, algorithm }
            }
            JoseError::Sign { source, .. } => source,
            other => crate::Error::Malformed {
                what: "JOSE",
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
#[path = "jose_tests.rs"]
mod tests;
