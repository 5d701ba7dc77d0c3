//! Tests of compact JWS signing and JWK export: every signature verifies
//! with ring against the exported JWK, and what cannot be signed properly
//! is an error, never `alg: none` or an empty signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature as sig;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;

use super::*;
use crate::sign::SealLevel;

const RSA_PKCS8: &[u8] = include_bytes!("../tests/fixtures/jose-rsa2048.pk8");

fn key(alg: Algorithm) -> FileKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = match alg {
        Algorithm::Ed25519 => sig::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref()
            .to_vec(),
        Algorithm::EcdsaP256Sha256 => {
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .unwrap()
                .as_ref()
                .to_vec()
        }
        Algorithm::EcdsaP384Sha384 => {
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
                .unwrap()
                .as_ref()
                .to_vec()
        }
        _ => RSA_PKCS8.to_vec(),
    };
    let k = FileKey::from_pkcs8(format!("memory:{alg}"), &pkcs8).unwrap();
    assert_eq!(SigningKey::algorithm(&k), alg);
    k
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn member(jwk: &Value, name: &str) -> Vec<u8> {
    unb64(jwk[name].as_str().unwrap())
}

/// Verifies `jws` with ring, using only the exported JWK as the key.
fn verify_with_jwk(jws: &str, jwk: &Value) -> Result<(), ring::error::Unspecified> {
    let (input, s) = jws.rsplit_once('.').unwrap();
    let signature = unb64(s);
    let message = input.as_bytes();
    match jwk["alg"].as_str().unwrap() {
        "EdDSA" => {
            sig::UnparsedPublicKey::new(&sig::ED25519, member(jwk, "x")).verify(message, &signature)
        }
        alg @ ("ES256" | "ES384") => {
            let params: &dyn sig::VerificationAlgorithm = if alg == "ES256" {
                &sig::ECDSA_P256_SHA256_FIXED
            } else {
                &sig::ECDSA_P384_SHA384_FIXED
            };
            let mut point = vec![4u8];
            point.extend(member(jwk, "x"));
            point.extend(member(jwk, "y"));
            sig::UnparsedPublicKey::new(params, point).verify(message, &signature)
        }
        "PS256" => sig::RsaPublicKeyComponents {
            n: member(jwk, "n"),
            e: member(jwk, "e"),
        }
        .verify(&sig::RSA_PSS_2048_8192_SHA256, message, &signature),
        other => panic!("unexpected alg {other}"),
    }
}

#[test]
fn every_supported_key_signs_a_jwt_that_ring_verifies_with_its_jwk() {
    let claims = json!({"iss": "https://gw.example", "sub": "alice", "exp": 2_000_000_000u64});
    for (alg, name, kty) in [
        (Algorithm::Ed25519, "EdDSA", "OKP"),
        (Algorithm::EcdsaP256Sha256, "ES256", "EC"),
        (Algorithm::EcdsaP384Sha384, "ES384", "EC"),
        (Algorithm::RsaPssSha256, "PS256", "RSA"),
    ] {
        let k = key(alg);
        let jwk = public_jwk(&k).unwrap();
        assert_eq!(jwk.alg().name(), name);
        assert_eq!(jwk.to_json()["kty"], kty);
        assert_eq!(jwk.to_json()["use"], "sig");
        assert_eq!(jwk.to_json()["kid"], jwk.kid());
        assert!(jwk.to_json().get("d").is_none(), "{name}: private member");
        let header = JwsHeader {
            kid: Some(jwk.kid()),
            typ: Some("JWT"),
            expect_alg: None,
        };
        let jws = sign_compact(&k, &header, &claims).unwrap();
        verify_with_jwk(&jws, jwk.to_json()).unwrap_or_else(|_| panic!("{name} does not verify"));
        // A changed payload does not verify.
        let parts: Vec<&str> = jws.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(br#"{"sub":"admin"}"#),
            parts[2]
        );
        assert!(verify_with_jwk(&forged, jwk.to_json()).is_err(), "{name}");
        // The payload is the claims.
        let payload: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
        assert_eq!(payload, claims);
        // ECDSA signatures are r || s, not DER.
        let len = unb64(parts[2]).len();
        match name {
            "ES256" => assert_eq!(len, 64),
            "ES384" => assert_eq!(len, 96),
            "EdDSA" => assert_eq!(len, 64),
            _ => assert_eq!(len, 256),
        }
    }
}

#[test]
fn header_has_alg_kid_typ_and_nothing_else() {
    let k = key(Algorithm::EcdsaP256Sha256);
    let header = JwsHeader {
        kid: Some("k-1"),
        typ: Some("stadttor-assertion+jwt"),
        expect_alg: Some(JwsAlgorithm::Es256),
    };
    let jws = sign_compact(&k, &header, &json!({"a": 1})).unwrap();
    let h: Value = serde_json::from_slice(&unb64(jws.split('.').next().unwrap())).unwrap();
    assert_eq!(
        h,
        json!({"alg": "ES256", "kid": "k-1", "typ": "stadttor-assertion+jwt"})
    );
    // Without kid and typ, only alg.
    let jws = sign_compact(&k, &JwsHeader::default(), &json!({})).unwrap();
    let h: Value = serde_json::from_slice(&unb64(jws.split('.').next().unwrap())).unwrap();
    assert_eq!(h, json!({"alg": "ES256"}));
}

#[test]
fn unsupported_algorithms_are_errors_never_none() {
    for name in ["none", "HS256", "RS256", "ES512", "", "es256"] {
        assert!(
            matches!(
                JwsAlgorithm::from_name(name),
                Err(JoseError::UnsupportedAlgorithm(n)) if n == name
            ),
            "{name:?}"
        );
    }
    // Asking for another algorithm than the key's is an error.
    let k = key(Algorithm::Ed25519);
    let header = JwsHeader {
        expect_alg: Some(JwsAlgorithm::from_name("PS256").unwrap()),
        ..JwsHeader::default()
    };
    assert!(matches!(
        sign_compact(&k, &header, &json!({})),
        Err(JoseError::AlgorithmMismatch {
            expected: "PS256",
            actual: "EdDSA",
            ..
        })
    ));
    for alg in [
        JwsAlgorithm::Es256,
        JwsAlgorithm::Es384,
        JwsAlgorithm::EdDsa,
        JwsAlgorithm::Ps256,
    ] {
        assert_eq!(JwsAlgorithm::from_name(alg.name()).unwrap(), alg);
        assert_eq!(JwsAlgorithm::of_key(alg.key_algorithm()), Some(alg));
    }
}

/// A key that answers with a fixed (broken) signature.
struct Broken {
    alg: Algorithm,
    spki: Vec<u8>,
    signature: Vec<u8>,
}

impl SealCreator for Broken {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, crate::Error> {
        Ok(self.signature.clone())
    }
    fn reference(&self) -> &str {
        "test:broken"
    }
    fn level(&self) -> SealLevel {
        SealLevel::Advanced
    }
}

#[test]
fn a_signature_that_cannot_be_converted_is_an_error_not_empty() {
    let real = key(Algorithm::EcdsaP256Sha256);
    let spki = SigningKey::public_key_spki(&real).to_vec();
    // Not DER: the old gateway code wrote an empty signature here.
    for signature in [vec![0x30, 0x01, 0x05], vec![], vec![0u8; 64]] {
        let k = Broken {
            alg: Algorithm::EcdsaP256Sha256,
            spki: spki.clone(),
            signature,
        };
        assert!(matches!(
            sign_compact(&k, &JwsHeader::default(), &json!({})),
            Err(JoseError::Sign { .. })
        ));
    }
    // An empty Ed25519 signature is refused too.
    let ed = key(Algorithm::Ed25519);
    let k = Broken {
        alg: Algorithm::Ed25519,
        spki: SigningKey::public_key_spki(&ed).to_vec(),
        signature: vec![],
    };
    assert!(matches!(
        sign_compact(&k, &JwsHeader::default(), &json!({})),
        Err(JoseError::Sign { .. })
    ));
}

#[test]
fn a_public_key_that_does_not_fit_its_algorithm_is_an_error() {
    let ed = key(Algorithm::Ed25519);
    // An Ed25519 SPKI claimed to be P-256.
    let k = Broken {
        alg: Algorithm::EcdsaP256Sha256,
        spki: SigningKey::public_key_spki(&ed).to_vec(),
        signature: vec![],
    };
    assert!(matches!(public_jwk(&k), Err(JoseError::PublicKey { .. })));
    let k = Broken {
        alg: Algorithm::Ed25519,
        spki: vec![0x30, 0x00],
        signature: vec![],
    };
    assert!(matches!(public_jwk(&k), Err(JoseError::PublicKey { .. })));
}

#[test]
fn thumbprint_matches_rfc_7638_example() {
    // RFC 7638 §3.1.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let members = json!({ "e": "AQAB", "kty": "RSA", "n": n });
    assert_eq!(
        thumbprint(&members),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // And our own JWK's kid is the thumbprint of its required members.
    let k = key(Algorithm::RsaPssSha256);
    let jwk = public_jwk(&k).unwrap();
    let j = jwk.to_json();
    assert_eq!(
        jwk.kid(),
        thumbprint(&json!({ "e": j["e"], "kty": "RSA", "n": j["n"] }))
    );
    assert_eq!(j["e"], "AQAB");
}

#[test]
fn jwks_lists_the_keys() {
    let a = public_jwk(&key(Algorithm::Ed25519)).unwrap();
    let b = public_jwk(&key(Algorithm::EcdsaP256Sha256)).unwrap();
    let set = jwks([&a, &b]);
    assert_eq!(set["keys"].as_array().unwrap().len(), 2);
    assert_eq!(&set["keys"][0], a.to_json());
    assert_eq!(&set["keys"][1], b.to_json());
    // The same key always gets the same kid.
    let k = key(Algorithm::EcdsaP384Sha384);
    assert_eq!(public_jwk(&k).unwrap().kid(), public_jwk(&k).unwrap().kid());
}
