//! CPU cost of verifying a bearer access token's RS256-2048 signature: the
//! pure-Rust `rsa` crate (as openidconnect's `CoreJsonWebKey` does it, the
//! gateway's path before) against ring (`authn::jwk`, the path now), the
//! whole `Token::parse` + `verify` with ring, and a hit in the verified
//! token cache (SHA-256 of the token, lookup, per-request claim checks).
//!
//! `cargo bench -p stadttor-gateway --bench jws`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey as _;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents};
use serde_json::json;
use stadttor_gateway::authn::bearer_cache::{self, BearerCache, VerifiedToken};
use stadttor_gateway::authn::jwk::KeySet;
use stadttor_gateway::authn::verify::Token;

const RSA_DER: &[u8] = include_bytes!("../src/authn/testdata/test-only-rsa2048.der");

fn bench(c: &mut Criterion) {
    let kp = RsaKeyPair::from_der(RSA_DER).unwrap();
    let p = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty":"RSA","kid":"r1","use":"sig","n": b64(&p.n),"e": b64(&p.e)});
    let now = 1_800_000_000u64;
    let claims = json!({"iss":"https://op.example","aud":"api","sub":"pseud-1",
        "acr":"high","iat": now,"exp": now + 300,"client_id":"fachverfahren"});
    let input = format!(
        "{}.{}",
        b64(json!({"alg":"RS256","kid":"r1","typ":"at+jwt"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut sig = vec![0; kp.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    kp.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", b64(&sig));

    let old: CoreJsonWebKey = serde_json::from_value(jwk.clone()).unwrap();
    let alg = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
    old.verify_signature(&alg, input.as_bytes(), &sig).unwrap();
    let keys = KeySet::from_json(&json!({ "keys": [jwk] }));
    let algs = vec!["RS256".to_owned()];
    Token::parse(&token).unwrap().verify(&algs, &keys).unwrap();

    let mut g = c.benchmark_group("rs256_2048_verify");
    g.bench_function("rsa_crate_openidconnect", |b| {
        b.iter(|| old.verify_signature(&alg, black_box(input.as_bytes()), black_box(&sig)))
    });
    g.bench_function("ring", |b| {
        b.iter(|| {
            keys.candidates(Some("r1"))
                .any(|k| k.verify("RS256", black_box(input.as_bytes()), black_box(&sig)))
        })
    });
    g.bench_function("ring_parse_and_verify_token", |b| {
        b.iter(|| {
            Token::parse(black_box(&token))
                .unwrap()
                .verify(&algs, &keys)
        })
    });
    g.finish();

    let cache = BearerCache::default();
    let verified = VerifiedToken::from_claims(
        "buerger",
        "https://op.example",
        claims.as_object().cloned().unwrap(),
    );
    cache.insert(
        bearer_cache::key(&token),
        Arc::new(verified),
        now,
        now + 300,
    );
    c.bench_function("bearer_cache_hit", |b| {
        b.iter(|| {
            let v = cache
                .get(&bearer_cache::key(black_box(&token)), now)
                .unwrap();
            v.check("api", now).unwrap();
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
