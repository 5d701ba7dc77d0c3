//! A small cache of verified bearer access tokens, so a client sending the
//! same token on every request pays for its signature once.
//!
//! Keyed by SHA-256 of the token (the token itself is not kept as a key).
//! Only tokens that passed every check of `Provider::validate_bearer` are
//! put in; an entry holds the verified claims and the provider that
//! verified them, and lives until the token's `exp` or [`MAX_AGE`] after
//! it was verified, whichever is first. A hit does not skip any per-request
//! check: the caller still checks the route's providers and audience, the
//! token's times and revocation against the session store on every request
//! (`Auth::bearer`). Bounded to [`CAPACITY`] entries; when full, expired
//! entries go first, then arbitrary ones.

use std::sync::Arc;

use super::expiring::ExpiringMap;
use super::provider::{Login, LEEWAY};
use super::verify::{check_audience, check_times, VerifyError};

/// Most entries kept.
pub const CAPACITY: usize = 10_000;
/// Longest an entry is used, in seconds, even for a token valid longer (a
/// JWKS rotation or a provider change takes effect within this time).
pub const MAX_AGE: u64 = 60;

/// A token that passed signature and claim checks.
#[derive(Debug)]
pub struct VerifiedToken {
    /// The configured provider whose keys verified it.
    pub provider: String,
    /// Its `iss`.
    pub issuer: String,
    /// Its claims, subject and mapped level.
    pub login: Login,
}

impl VerifiedToken {
    /// A verified token from bare claims, with no level mapped: for
    /// benchmarks and tests that cannot run a provider.
    #[doc(hidden)]
    pub fn from_claims(
        provider: &str,
        issuer: &str,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let s = |n: &str| {
            claims
                .get(n)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let login = Login {
            sub: s("sub").unwrap_or_default(),
            sid: s("sid"),
            level: None,
            acr: s("acr"),
            auth_time: 0,
            claims,
        };
        Self {
            provider: provider.to_owned(),
            issuer: issuer.to_owned(),
            login,
        }
    }

    /// The checks that run on every request, cached or not: the route's
    /// `audience` and the token's `exp`, `nbf` and `iat` at `now`.
    pub fn check(&self, audience: &str, now: u64) -> Result<(), VerifyError> {
        check_audience(&self.login.claims, audience, None)?;
        check_times(&self.login.claims, now, LEEWAY, true, None)
    }
}

/// The cache (see the module documentation).
#[derive(Debug)]
pub struct BearerCache {
    map: ExpiringMap<Arc<VerifiedToken>>,
}

impl Default for BearerCache {
    fn default() -> Self {
        Self {
            map: ExpiringMap::new(CAPACITY),
        }
    }
}

/// The cache key of `token`: its SHA-256.
pub fn key(token: &str) -> [u8; 32] {
    let mut k = [0; 32];
    k.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    k
}

impl BearerCache {
    /// The verified token for `key`, if cached and not past its entry's
    /// lifetime at `now`.
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<Arc<VerifiedToken>> {
        self.map.get_with(key, now, |t| t.clone())
    }

    /// Keeps `token`, verified at `now` and expiring at `exp`.
    pub fn insert(&self, key: [u8; 32], token: Arc<VerifiedToken>, now: u64, exp: u64) {
        let until = exp.min(now.saturating_add(MAX_AGE));
        self.map.insert(key, token, until, now);
    }

    /// Number of entries (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Arc<VerifiedToken> {
        let claims = serde_json::json!({"aud": "api", "iat": 1_000, "exp": 1_010});
        Arc::new(VerifiedToken {
            provider: "p".into(),
            issuer: "https://op".into(),
            login: Login {
                sub: "a".into(),
                sid: None,
                level: None,
                acr: None,
                auth_time: 0,
                claims: claims.as_object().cloned().unwrap_or_default(),
            },
        })
    }

    #[test]
    fn entries_expire_with_the_token_or_after_max_age() {
        let c = BearerCache::default();
        c.insert(key("t1"), token(), 1_000, 1_010);
        assert!(c.get(&key("t1"), 1_009).is_some());
        assert!(c.get(&key("t1"), 1_010).is_none(), "past the token's exp");
        c.insert(key("t2"), token(), 1_000, 9_999);
        assert!(c.get(&key("t2"), 1_000 + MAX_AGE - 1).is_some());
        assert!(c.get(&key("t2"), 1_000 + MAX_AGE).is_none(), "past MAX_AGE");
        c.insert(key("t3"), token(), 1_000, 1_000);
        assert!(
            c.get(&key("t3"), 1_000).is_none(),
            "an expired token is not kept"
        );
        assert!(c.get(&key("other"), 1_000).is_none());
    }

    #[test]
    fn a_cached_token_is_refused_after_its_exp_and_for_another_audience() {
        let t = token();
        assert_eq!(t.check("api", 1_005), Ok(()));
        assert!(t.check("api", 1_010 + LEEWAY).is_err(), "expired");
        assert!(t.check("other-api", 1_005).is_err(), "per-route audience");
        // Even an entry that outlived the token (it cannot: `until` is at
        // most `exp`) would be refused by the per-request check.
        let c = BearerCache::default();
        c.insert(key("t"), t, 1_000, 1_010);
        let hit = c.get(&key("t"), 1_009).unwrap();
        assert!(hit.check("api", 1_010 + LEEWAY).is_err());
    }

    #[test]
    fn bounded_under_a_flood_of_distinct_tokens() {
        let c = BearerCache::default();
        for i in 0..CAPACITY + 500 {
            c.insert(key(&i.to_string()), token(), 1_000, 2_000);
        }
        assert_eq!(c.len(), CAPACITY);
    }
}
