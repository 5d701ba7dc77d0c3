//! JWT parsing and claim checks: `stadttor_gateway::authn::verify::Token::parse`
//! and every `check_*` method and `verify` against a JWKS, on arbitrary
//! tokens, and on tokens whose header and claims are arbitrary JSON (the
//! input split at its first newline) so the fuzzer gets past base64.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use stadttor_gateway::authn::jwk::KeySet;
use stadttor_gateway::authn::verify::Token;

const NOW: u64 = 1_790_000_000;

static JWKS: LazyLock<KeySet> = LazyLock::new(|| {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]});
    KeySet::from_json(&jwks)
});

fn check(token: &str) {
    let Ok(t) = Token::parse(token) else {
        return;
    };
    let _ = (t.alg(), t.kid(), t.str_claim("sub"), t.str_claim("nonce"));
    let _ = t.check_issuer("https://idp.example");
    let _ = t.check_audience("stadttor", Some("stadttor"));
    let _ = t.check_audience("stadttor", None);
    // As the gateway calls them: now, 60 s leeway, login_timeout.
    let _ = t.check_times(NOW, 60, true, Some(600));
    let _ = t.check_times(NOW, 60, false, None);
    let allowed = ["ES256".to_owned(), "RS256".to_owned(), "EdDSA".to_owned()];
    assert!(
        t.verify(&allowed, &JWKS).is_err(),
        "a token nobody signed verified"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    if let Some((header, rest)) = text.split_once('\n') {
        let (claims, sig) = rest.split_once('\n').unwrap_or((rest, "AAAA"));
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(sig)
        );
        check(&token);
    }
});
