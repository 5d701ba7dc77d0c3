//! A provider's JWKS as ring public keys, for JWS signature verification.
//!
//! The keys are decoded once, when the JWKS is fetched (discovery or a
//! refetch after an unknown `kid`), not per token. Verification uses ring,
//! the gateway's crypto provider, rather than the pure-Rust `rsa` crate
//! openidconnect would use: RSA-2048 verification costs a few µs there
//! instead of ~150 µs.
//!
//! Supported: RS256/384/512 (PKCS#1 v1.5, 2048–8192-bit moduli), PS256/
//! 384/512 (PSS), ES256 (P-256), ES384 (P-384) and EdDSA (Ed25519). An
//! algorithm must fit the key's type and curve, and a key that names its
//! own `alg` is used for that algorithm only. Keys that cannot be decoded
//! stay in the set as unusable, so `kid` lookup behaves as before and a
//! token naming such a key fails with a bad signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::CoreJsonWebKeySet;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// The public key material of one JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// A P-256 point, uncompressed (0x04 ‖ x ‖ y).
    P256(Vec<u8>),
    /// A P-384 point, uncompressed.
    P384(Vec<u8>),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
    /// A key of a type or curve not supported here (or malformed).
    Unusable,
}

/// One signing key of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey {
    kid: Option<String>,
    alg: Option<String>,
    material: Material,
}

/// The signing keys of one provider's JWKS (keys with `use` other than
/// `sig` are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

fn member(k: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(k.get(name)?.as_str()?).ok()
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

fn ec_point(k: &Value, len: usize) -> Option<Vec<u8>> {
    let (x, y) = (member(k, "x")?, member(k, "y")?);
    if x.len() != len || y.len() != len {
        return None;
    }
    let mut p = Vec::with_capacity(1 + 2 * len);
    p.push(0x04);
    p.extend_from_slice(&x);
    p.extend_from_slice(&y);
    Some(p)
}

fn material(k: &Value) -> Option<Material> {
    let crv = k.get("crv").and_then(Value::as_str);
    Some(match (k.get("kty")?.as_str()?, crv) {
        ("RSA", _) => Material::Rsa {
            n: strip_zeros(member(k, "n")?),
            e: strip_zeros(member(k, "e")?),
        },
        ("EC", Some("P-256")) => Material::P256(ec_point(k, 32)?),
        ("EC", Some("P-384")) => Material::P384(ec_point(k, 48)?),
        ("OKP", Some("Ed25519")) => {
            let x = member(k, "x")?;
            (x.len() == 32).then_some(Material::Ed25519(x))?
        }
        _ => return None,
    })
}

impl VerifyKey {
    /// Decodes one JWK (JSON); `None` for a key not meant for signatures.
    fn from_json(k: &Value) -> Option<Self> {
        if k.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return None;
        }
        Some(Self {
            kid: k.get("kid").and_then(Value::as_str).map(str::to_owned),
            alg: k.get("alg").and_then(Value::as_str).map(str::to_owned),
            material: material(k).unwrap_or(Material::Unusable),
        })
    }

    /// Whether `signature` over `input` verifies with this key under `alg`.
    /// `false` for an algorithm that does not fit the key.
    pub fn verify(&self, alg: &str, input: &[u8], sig: &[u8]) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return false;
        }
        let rsa = |params: &'static signature::RsaParameters, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }
                .verify(params, input, sig)
                .is_ok()
        };
        let other = |params: &'static dyn signature::VerificationAlgorithm, key: &[u8]| {
            UnparsedPublicKey::new(params, key)
                .verify(input, sig)
                .is_ok()
        };
        match (&self.material, alg) {
            (Material::Rsa { n, e }, "RS256") => rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e),
            (Material::Rsa { n, e }, "RS384") => rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e),
            (Material::Rsa { n, e }, "RS512") => rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e),
            (Material::Rsa { n, e }, "PS256") => rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e),
            (Material::Rsa { n, e }, "PS384") => rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e),
            (Material::Rsa { n, e }, "PS512") => rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e),
            (Material::P256(p), "ES256") => other(&signature::ECDSA_P256_SHA256_FIXED, p),
            (Material::P384(p), "ES384") => other(&signature::ECDSA_P384_SHA384_FIXED, p),
            (Material::Ed25519(p), "EdDSA") => other(&signature::ED25519, p),
            _ => false,
        }
    }

    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl KeySet {
    /// Decodes the signing keys of `jwks`.
    pub fn from_jwks(jwks: &CoreJsonWebKeySet) -> Self {
        let json = serde_json::to_value(jwks).unwrap_or(Value::Null);
        Self::from_json(&json)
    }

    /// Decodes the signing keys of a JWKS document (`{"keys": [...]}`).
    pub fn from_json(jwks: &Value) -> Self {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(|ks| ks.iter().filter_map(VerifyKey::from_json).collect())
            .unwrap_or_default();
        Self { keys }
    }

    /// The keys a token with `kid` may be signed with: those with that
    /// `kid`, or all of them for a token without one.
    pub fn candidates<'s>(&'s self, kid: Option<&'s str>) -> impl Iterator<Item = &'s VerifyKey> {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid() == Some(kid)))
    }

    /// Number of signing keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no signing key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::verify::{Token, VerifyError};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
    use serde_json::json;

    /// A 2048-bit RSA key made for these tests only (ring cannot generate
    /// RSA keys).
    const RSA_DER: &[u8] = include_bytes!("testdata/test-only-rsa2048.der");

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// A signer and its public JWK.
    enum Signer {
        Rsa(RsaKeyPair),
        P256(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    fn rsa() -> (Signer, Value) {
        let kp = RsaKeyPair::from_der(RSA_DER).unwrap();
        let p = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
        let jwk = json!({"kty":"RSA","kid":"r1","use":"sig", "n": b64(&p.n), "e": b64(&p.e)});
        (Signer::Rsa(kp), jwk)
    }

    fn p256() -> (Signer, Value) {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = SystemRandom::new();
        let p8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, p8.as_ref(), &rng).unwrap();
        let pt = kp.public_key().as_ref().to_vec();
        let jwk = json!({"kty":"EC","crv":"P-256","kid":"e1",
            "x": b64(&pt[1..33]), "y": b64(&pt[33..])});
        (Signer::P256(kp), jwk)
    }

    fn ed25519() -> (Signer, Value) {
        let p8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(p8.as_ref()).unwrap();
        let jwk = json!({"kty":"OKP","crv":"Ed25519","kid":"d1",
            "x": b64(kp.public_key().as_ref())});
        (Signer::Ed(kp), jwk)
    }

    fn sign(s: &Signer, alg: &str, kid: &str, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match s {
            Signer::Rsa(kp) => {
                let pad: &dyn signature::RsaEncoding = match alg {
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(pad, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::P256(kp) => kp.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    fn verify(token: &str, algs: &[&str], jwk: &Value) -> Result<(), VerifyError> {
        let algs: Vec<String> = algs.iter().map(|a| (*a).to_owned()).collect();
        let keys = KeySet::from_json(&json!({ "keys": [jwk] }));
        Token::parse(token)?.verify(&algs, &keys)
    }

    const ALL: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

    #[test]
    fn ring_verifies_rs256_ps256_es256_eddsa() {
        let claims = json!({"iss":"https://op","sub":"a"});
        for (alg, (signer, jwk)) in [
            ("RS256", rsa()),
            ("PS256", rsa()),
            ("ES256", p256()),
            ("EdDSA", ed25519()),
        ] {
            let kid = jwk["kid"].as_str().unwrap().to_owned();
            let t = sign(&signer, alg, &kid, &claims);
            assert_eq!(verify(&t, ALL, &jwk), Ok(()), "{alg}");
        }
    }

    #[test]
    fn forged_signatures_are_refused() {
        let claims = json!({"iss":"https://op","sub":"a"});
        let (rs, rs_jwk) = rsa();
        let (ec, ec_jwk) = p256();
        let (ed, ed_jwk) = ed25519();
        // Signed by another key under the same kid.
        let (other, _) = p256();
        let t = sign(&other, "ES256", "e1", &claims);
        assert_eq!(verify(&t, ALL, &ec_jwk), Err(VerifyError::BadSignature));
        let (other_ed, _) = ed25519();
        let t = sign(&other_ed, "EdDSA", "d1", &claims);
        assert_eq!(verify(&t, ALL, &ed_jwk), Err(VerifyError::BadSignature));
        // A changed payload under a good signature.
        for (alg, s, jwk) in [
            ("RS256", &rs, &rs_jwk),
            ("PS256", &rs, &rs_jwk),
            ("ES256", &ec, &ec_jwk),
            ("EdDSA", &ed, &ed_jwk),
        ] {
            let kid = jwk["kid"].as_str().unwrap();
            let t = sign(s, alg, kid, &claims);
            let mut parts: Vec<&str> = t.split('.').collect();
            let evil = b64(br#"{"iss":"https://op","sub":"admin"}"#);
            parts[1] = &evil;
            let forged = parts.join(".");
            assert_eq!(
                verify(&forged, ALL, jwk),
                Err(VerifyError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let claims = json!({"iss":"https://op","sub":"a"});
        let (rs, rs_jwk) = rsa();
        // RS256 signature presented as PS256, and the reverse.
        let t = sign(&rs, "RS256", "r1", &claims).replacen(
            &b64(json!({"alg":"RS256","kid":"r1"}).to_string().as_bytes()),
            &b64(json!({"alg":"PS256","kid":"r1"}).to_string().as_bytes()),
            1,
        );
        assert_eq!(verify(&t, ALL, &rs_jwk), Err(VerifyError::BadSignature));
        // An allowed algorithm that does not fit the key's type.
        let (ec, _) = p256();
        let mut ec_as_rsa = rs_jwk.clone();
        ec_as_rsa["kid"] = json!("e1");
        let t = sign(&ec, "ES256", "e1", &claims);
        assert_eq!(verify(&t, ALL, &ec_as_rsa), Err(VerifyError::BadSignature));
        // A key pinned to RS256 refuses PS256.
        let mut pinned = rs_jwk.clone();
        pinned["alg"] = json!("RS256");
        let t = sign(&rs, "PS256", "r1", &claims);
        assert_eq!(verify(&t, ALL, &pinned), Err(VerifyError::BadSignature));
        // Not in the provider's id_token_algs.
        let t = sign(&rs, "RS256", "r1", &claims);
        assert!(matches!(
            verify(&t, &["ES256"], &rs_jwk),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
        // alg none, even if "allowed", with or without a signature.
        let none = format!(
            "{}.{}.",
            b64(json!({"alg":"none","kid":"r1"}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        assert!(matches!(
            verify(&none, &["none", "RS256"], &rs_jwk),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
    }

    #[test]
    fn keys_are_decoded_once_and_non_signing_keys_left_out() {
        let (_, rs_jwk) = rsa();
        let mut enc = rs_jwk.clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("x");
        let odd = json!({"kty":"EC","crv":"P-521","kid":"p5","x":"AA","y":"AA"});
        let set = KeySet::from_json(&json!({"keys":[rs_jwk, enc, odd]}));
        assert_eq!(set.len(), 2);
        assert_eq!(set.candidates(Some("x")).count(), 0);
        assert_eq!(set.candidates(Some("p5")).count(), 1);
        assert!(!set
            .candidates(Some("p5"))
            .any(|k| k.verify("ES256", b"", b"")));
    }
}
