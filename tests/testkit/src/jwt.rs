//! JWTs for negative tests: forge, decode and check tokens by hand.
//!
//! Signing takes a *private* JWK as `serde_json::Value` (the shape of the
//! test OP's keys file, see [`crate::oidc::TestOp::keys`]) and signs exactly
//! the header it is given, so tests can forge anything: a wrong `kid`, a
//! foreign key, `alg` confusion (`sign_hs256` with a public key as secret),
//! `alg: none` ([`unsigned`]), expired or mis-addressed claims.
//!
//! Algorithms: ES256 (ring `EcdsaKeyPair` from the JWK's `d`, `x`, `y`),
//! PS256 and RS256 (ring `RsaKeyPair::from_components`), HS256 (ring HMAC).
//! [`verify`] checks ES256, PS256 and RS256 signatures against a public
//! JWK, for tests that look at tokens the OP issued. Nothing here checks
//! claims: that is the code under test's job.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde_json::{json, Value};

/// Members of a JWK that are private key material.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Base64url without padding, as JOSE uses it.
pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

/// Decodes base64url without padding; panics on bad input.
pub fn b64_decode(s: &str) -> Vec<u8> {
    B64.decode(s)
        .unwrap_or_else(|e| panic!("bad base64url {s:?}: {e}"))
}

fn member(key: &Value, name: &str) -> Vec<u8> {
    let v = key[name]
        .as_str()
        .unwrap_or_else(|| panic!("JWK has no string member {name:?}: {}", public_jwk(key)));
    b64_decode(v)
}

/// `BASE64URL(header) . BASE64URL(claims)`, the JWS signing input.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Signs `claims` under `header` (its `alg` picks the algorithm: ES256,
/// PS256 or RS256) with the private JWK `key`. The header is used exactly
/// as given: set `kid`, `typ` yourself.
pub fn sign_jws(header: &Value, claims: &Value, key: &Value) -> String {
    let alg = header["alg"].as_str().expect("header has no alg");
    let input = signing_input(header, claims);
    let rng = SystemRandom::new();
    let sig = match alg {
        "ES256" => {
            assert_eq!(key["kty"], "EC", "ES256 needs an EC key");
            assert_eq!(key["crv"], "P-256", "ES256 needs a P-256 key");
            let mut public = vec![0x04];
            public.extend(member(key, "x"));
            public.extend(member(key, "y"));
            let pair = signature::EcdsaKeyPair::from_private_key_and_public_key(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &member(key, "d"),
                &public,
                &rng,
            )
            .expect("EC JWK rejected by ring");
            pair.sign(&rng, input.as_bytes())
                .expect("ECDSA sign")
                .as_ref()
                .to_vec()
        }
        "PS256" | "RS256" => {
            assert_eq!(key["kty"], "RSA", "{alg} needs an RSA key");
            let pair = signature::RsaKeyPair::from_components(&ring::rsa::KeyPairComponents {
                public_key: ring::rsa::PublicKeyComponents {
                    n: member(key, "n"),
                    e: member(key, "e"),
                },
                d: member(key, "d"),
                p: member(key, "p"),
                q: member(key, "q"),
                dP: member(key, "dp"),
                dQ: member(key, "dq"),
                qInv: member(key, "qi"),
            })
            .expect("RSA JWK rejected by ring");
            let padding: &'static dyn signature::RsaEncoding = if alg == "PS256" {
                &signature::RSA_PSS_SHA256
            } else {
                &signature::RSA_PKCS1_SHA256
            };
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &rng, input.as_bytes(), &mut sig)
                .expect("RSA sign");
            sig
        }
        other => panic!("sign_jws: unsupported alg {other:?} (use sign_hs256 or unsigned)"),
    };
    format!("{input}.{}", b64(&sig))
}

/// HS256 over `header` and `claims` with `secret`. The header is used as
/// given (normally `{"alg":"HS256"}`); with a public key as the secret this
/// is the classic algorithm-confusion forgery.
pub fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(header, claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An unsecured JWT: `header` (normally `{"alg":"none"}`), `claims` and an
/// empty signature, `h.c.`.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// The public part of a JWK: every private member dropped.
pub fn public_jwk(key: &Value) -> Value {
    let mut out = key.clone();
    if let Some(obj) = out.as_object_mut() {
        for m in PRIVATE_MEMBERS {
            obj.remove(*m);
        }
    }
    out
}

/// A fresh ES256 (P-256) private JWK with the given `kid`, e.g. an RP's
/// `private_key_jwt` key or a foreign key for forged tokens.
pub fn generate_es256(kid: &str) -> Value {
    // ring does not export the private scalar, but its PKCS#8 v1 document
    // for P-256 has one fixed layout: this prefix, d (32 bytes),
    // `a1 44 03 42 00`, then the uncompressed public point (65 bytes).
    const PREFIX: &[u8] = &[
        0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
        0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30,
        0x6b, 0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    let rng = SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
    let der = pkcs8.as_ref();
    assert!(
        der.len() == PREFIX.len() + 32 + 5 + 65 && der.starts_with(PREFIX),
        "unexpected PKCS#8 layout from ring"
    );
    let d = &der[PREFIX.len()..PREFIX.len() + 32];
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 0x04);
    let pair =
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .unwrap();
    assert_eq!(pair.public_key().as_ref(), point);
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": b64(&point[1..33]),
        "y": b64(&point[33..65]),
        "d": b64(d),
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    })
}

/// Header and claims of a compact JWS, without checking anything.
pub fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("not a compact JWS: {token:?}");
    };
    let json = |part: &str| -> Value {
        serde_json::from_slice(&b64_decode(part))
            .unwrap_or_else(|e| panic!("JWS part is not JSON ({e}): {token:?}"))
    };
    (json(h), json(c))
}

/// Checks the signature of a compact JWS with the public (or private) JWK
/// `key`, by the token's own `alg` (ES256, PS256, RS256). Claims are not
/// looked at.
pub fn verify(token: &str, key: &Value) -> Result<(), String> {
    let (header, _) = decode(token);
    let (input, sig) = token.rsplit_once('.').ok_or("no signature part")?;
    let sig = B64.decode(sig).map_err(|e| format!("signature: {e}"))?;
    let alg = header["alg"].as_str().unwrap_or_default();
    match alg {
        "ES256" => {
            let mut public = vec![0x04];
            public.extend(member(key, "x"));
            public.extend(member(key, "y"));
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
                .verify(input.as_bytes(), &sig)
        }
        "PS256" | "RS256" => {
            let params = if alg == "PS256" {
                &signature::RSA_PSS_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA256
            };
            signature::RsaPublicKeyComponents {
                n: member(key, "n"),
                e: member(key, "e"),
            }
            .verify(params, input.as_bytes(), &sig)
        }
        other => return Err(format!("unsupported alg {other:?}")),
    }
    .map_err(|_| format!("bad {alg} signature"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_round_trip() {
        let key = generate_es256("k1");
        let t = sign_jws(
            &json!({"alg": "ES256", "kid": "k1"}),
            &json!({"sub": "x"}),
            &key,
        );
        let (h, c) = decode(&t);
        assert_eq!(h["kid"], "k1");
        assert_eq!(c["sub"], "x");
        verify(&t, &public_jwk(&key)).unwrap();
        assert!(verify(&t, &generate_es256("k2")).is_err());
        assert!(public_jwk(&key).get("d").is_none());
    }

    #[test]
    fn hs256_and_none() {
        let t = sign_hs256(&json!({"alg": "HS256"}), &json!({"a": 1}), b"secret");
        // RFC 7515 style: three parts, signature 32 bytes.
        assert_eq!(b64_decode(t.rsplit('.').next().unwrap()).len(), 32);
        let u = unsigned(&json!({"alg": "none"}), &json!({"a": 1}));
        assert!(u.ends_with('.'));
        assert_eq!(decode(&u).1["a"], 1);
    }
}
