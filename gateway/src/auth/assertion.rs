//! The identity assertion: a short-lived JWT the gateway signs for each
//! route, so services behind it can verify who the user is without trusting
//! the network. Signed with a key from the key store; its public key is
//! published at `/.stadttor/jwks.json`.
//!
//! Signing per request would put a TPM (about 1,000 signatures/s) on the
//! hot path, so assertions are cached per (session or token, route, level,
//! authentication time) and reused until half their lifetime is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use stadttor_hsm::{Protection, SigningKey};

use super::jose;
use super::provider::unix_now;
use super::Identity;
use crate::config;

/// Most entries kept; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
struct Cached {
    jwt: Arc<str>,
    renew_at: u64,
}

/// Signs and caches assertions.
#[derive(Debug)]
pub struct Assertions {
    key: Arc<dyn SigningKey>,
    kid: String,
    jwks: String,
    issuer: String,
    lifetime: u64,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Assertions {
    /// Prepares the signer; the key must be EC or Ed25519.
    pub fn new(key: Arc<dyn SigningKey>, cfg: &config::Identity) -> Result<Self, String> {
        let (kid, jwk) = jose::public_jwk(key.as_ref())
            .ok_or_else(|| "assertions need an EC (P-256/P-384) or Ed25519 key".to_owned())?;
        if key.protection() == Protection::Software {
            tracing::warn!(
                key = key.reference(),
                "identity assertions are signed with a software key (development only)"
            );
        }
        Ok(Self {
            jwks: serde_json::json!({ "keys": [jwk] }).to_string(),
            key,
            kid,
            issuer: cfg.assertion_issuer.clone(),
            lifetime: cfg.assertion_lifetime.as_secs(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion for `id` on `route`, from the cache or freshly signed.
    pub fn get(
        &self,
        id: &Identity,
        route: &str,
        claims: Map<String, Value>,
    ) -> Result<Arc<str>, String> {
        let now = unix_now();
        let level = id.level.map(|l| l.name()).unwrap_or("-");
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
        let sign = || {
            jose::sign(
                self.key.as_ref(),
                &self.kid,
                "stadttor-assertion+jwt",
                &body,
            )
        };
        let jwt: Arc<str> = if self.key.protection() == Protection::Software {
            sign()
        } else {
            tokio::task::block_in_place(sign)
        }
        .map_err(|e| e.to_string())?
        .into();
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
