//! The identity assertion: a short-lived JWT the gateway signs for each
//! route, so services behind it can verify who the user is without trusting
//! the network. Signed with a key from the key store; its public key is
//! published at `/.stadttor/jwks.json`. Signing and the JWK are
//! `stadttor_pki::jose`'s; this module only decides the claims and caches.
//!
//! Signing per request would put a TPM (about 1,000 signatures/s) on the
//! hot path, so assertions are cached per (session or token, route, level,
//! authentication time) and reused until half their lifetime is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::provider::unix_now;
use super::Identity;
use crate::config;
use http::HeaderValue;
use serde_json::{Map, Value};
use stadttor_hsm::{Protection, SigningKey};
use stadttor_pki::jose::{self, JwsHeader};

/// Most entries kept; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
struct Cached {
    /// The JWT, ready to be sent as a header value (a cheap clone).
    jwt: HeaderValue,
    renew_at: u64,
}

/// Signs and caches assertions.
#[derive(Debug)]
pub(crate) struct Assertions {
    key: Arc<dyn SigningKey>,
    kid: String,
    jwks: String,
    issuer: String,
    lifetime: u64,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Assertions {
    /// Prepares the signer; the key must have a JWS algorithm (ES256,
    /// ES384, EdDSA, PS256).
    pub(crate) fn new(key: Arc<dyn SigningKey>, cfg: &config::Identity) -> Result<Self, String> {
        let jwk =
            jose::public_jwk(key.as_ref()).map_err(|e| format!("identity assertion key: {e}"))?;
        if key.protection() == Protection::Software {
            tracing::warn!(
                key = key.reference(),
                "identity assertions are signed with a software key (development only)"
            );
        }
        Ok(Self {
            jwks: jose::jwks([&jwk]).to_string(),
            key,
            kid: jwk.kid().to_owned(),
            issuer: cfg.assertion_issuer.clone(),
            lifetime: cfg.assertion_lifetime.as_secs(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The JWKS document.
    pub(crate) fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion for `id` on `route`, from the cache or freshly signed.
    pub(crate) fn get(
        &self,
        id: &Identity,
        route: &str,
        claims: Map<String, Value>,
    ) -> Result<HeaderValue, String> {
        let now = unix_now();
        let level = id.level.map(|l| l.as_str()).unwrap_or("-");
        let key = format!(
            "{}\u{0}{route}\u{0}{level}\u{0}{}",
            id.cache_key, id.auth_time
        );
        if let Ok(c) = self.cache.lock() {
            if let Some(hit) = c.get(&key) {
                if hit.renew_at > now {
                    return Ok(hit.jwt.clone());
                }
            }
        }
        let mut body = serde_json::json!({
            "iss": self.issuer,
            "aud": route,
            "sub": id.sub,
            "idp": id.provider,
            "idp_iss": id.issuer,
            "amr": [id.method.name()],
            "auth_time": id.auth_time,
            "iat": now,
            "nbf": now.saturating_sub(5),
            "exp": now + self.lifetime,
            "jti": super::random_token(12),
        });
        if let (Some(l), Some(obj)) = (id.level, body.as_object_mut()) {
            obj.insert("acr".into(), Value::String(l.uri().into()));
        }
        if !claims.is_empty() {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("claims".into(), Value::Object(claims));
            }
        }
        let header = JwsHeader {
            kid: Some(&self.kid),
            typ: Some("stadttor-assertion+jwt"),
            expect_alg: None,
        };
        let sign = || jose::sign_compact(self.key.as_ref(), &header, &body);
        let jwt = if self.key.protection() == Protection::Software {
            sign()
        } else {
            tokio::task::block_in_place(sign)
        }
        .map_err(|e| e.to_string())?;
        let jwt = HeaderValue::from_str(&jwt).map_err(|e| format!("assertion JWT: {e}"))?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_ENTRIES {
                c.clear();
            }
            c.insert(
                key,
                Cached {
                    jwt: jwt.clone(),
                    renew_at: now + self.lifetime / 2,
                },
            );
        }
        Ok(jwt)
    }
}
