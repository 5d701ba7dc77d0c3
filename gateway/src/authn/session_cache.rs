//! A small cache of opened session cookies, so a browser sending the same
//! cookie on every request pays for opening it (base64, AES-GCM, JSON)
//! once.
//!
//! Keyed by SHA-256 of the host and the sealed cookie value (the value
//! itself is not kept as a key; the host is in the key because a cookie
//! opens only on the host it was sealed for). Only cookies that opened
//! with one of the gateway's keys and parsed are put in: an entry holds
//! what the one check (`Auth::open_session`) returned, and lives until the
//! session's absolute end or [`MAX_AGE`] after it was opened, whichever is
//! first. A hit does not skip any per-request check: the caller still
//! checks the session's lifetime and idle timeout, the route's providers,
//! revocation in the session store and the level on every request
//! (`Auth::session_identity`). Refused cookies are never cached. Bounded to
//! [`CAPACITY`] entries; when full, expired entries go first, then
//! arbitrary ones.
//!
//! A cookie refreshed for the idle timeout (`seen` older than a minute) is
//! sealed once per second and cookie value: the refreshed `Set-Cookie` is
//! kept with the entry for the second it was made in, so a client that
//! keeps sending the old value (many requests in flight) does not cost one
//! seal per request. Its content and `Max-Age` are exactly what a fresh
//! seal in that second would give.

use std::sync::Arc;

use http::HeaderValue;

use super::expiring::ExpiringMap;
use super::session::SessionData;

/// Most entries kept.
pub const CAPACITY: usize = 10_000;
/// Longest an entry is used, in seconds, even for a session valid longer.
pub const MAX_AGE: u64 = 60;

#[derive(Debug)]
struct Entry {
    session: Arc<SessionData>,
    /// The refreshed cookie made in the second `.0`, if any.
    refreshed: Option<(u64, HeaderValue)>,
}

/// The cache (see the module documentation).
#[derive(Debug)]
pub struct SessionCache {
    map: ExpiringMap<Entry>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            map: ExpiringMap::new(CAPACITY),
        }
    }
}

/// The cache key of the sealed cookie value `sealed` sent to `host`.
pub fn key(host: &str, sealed: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"stadttor-session-cache/1\0");
    ctx.update(&(host.len() as u64).to_be_bytes());
    ctx.update(host.as_bytes());
    ctx.update(sealed.as_bytes());
    let mut k = [0; 32];
    k.copy_from_slice(ctx.finish().as_ref());
    k
}

impl SessionCache {
    /// The opened session for `key`, if cached and not past its entry's
    /// lifetime at `now`.
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<Arc<SessionData>> {
        self.map.get_with(key, now, |e| e.session.clone())
    }

    /// Keeps `session`, opened at `now`.
    pub fn insert(&self, key: [u8; 32], session: Arc<SessionData>, now: u64) {
        let until = session.exp.min(now.saturating_add(MAX_AGE));
        let entry = Entry {
            session,
            refreshed: None,
        };
        self.map.insert(key, entry, until, now);
    }

    /// The refreshed cookie made for `key` in the second `now`, if any.
    pub fn refreshed(&self, key: &[u8; 32], now: u64) -> Option<HeaderValue> {
        self.map
            .peek_with(key, |e| match &e.refreshed {
                Some((at, value)) if *at == now => Some(value.clone()),
                _ => None,
            })
            .flatten()
    }

    /// Keeps `value`, the cookie refreshed for `key` in the second `now`.
    pub fn set_refreshed(&self, key: &[u8; 32], now: u64, value: HeaderValue) {
        self.map
            .peek_with(key, |e| e.refreshed = Some((now, value)));
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

    fn session(exp: u64) -> Arc<SessionData> {
        Arc::new(SessionData {
            v: 1,
            id: "id".into(),
            p: "p".into(),
            iss: "https://op".into(),
            sub: "s".into(),
            sid: None,
            base: None,
            lvl: None,
            auth: 1_000,
            iat: 1_000,
            exp,
            seen: 1_000,
            claims: Default::default(),
        })
    }

    #[test]
    fn entries_expire_with_the_session_or_after_max_age() {
        let c = SessionCache::default();
        c.insert(key("h", "c1"), session(1_010), 1_000);
        assert!(c.get(&key("h", "c1"), 1_009).is_some());
        assert!(
            c.get(&key("h", "c1"), 1_010).is_none(),
            "past the session's exp"
        );
        c.insert(key("h", "c2"), session(99_999), 1_000);
        assert!(c.get(&key("h", "c2"), 1_000 + MAX_AGE - 1).is_some());
        assert!(
            c.get(&key("h", "c2"), 1_000 + MAX_AGE).is_none(),
            "past MAX_AGE"
        );
        c.insert(key("h", "c3"), session(1_000), 1_000);
        assert!(
            c.get(&key("h", "c3"), 1_000).is_none(),
            "an expired session is not kept"
        );
    }

    #[test]
    fn the_key_binds_the_host_and_the_whole_value() {
        let c = SessionCache::default();
        c.insert(key("a.example", "v"), session(2_000), 1_000);
        assert!(c.get(&key("a.example", "v"), 1_001).is_some());
        assert!(c.get(&key("b.example", "v"), 1_001).is_none(), "other host");
        assert!(c.get(&key("a.example", "v2"), 1_001).is_none());
        // Host and value cannot trade bytes.
        assert_ne!(key("ab", "c"), key("a", "bc"));
    }

    #[test]
    fn a_refreshed_cookie_is_reused_only_in_its_second() {
        let c = SessionCache::default();
        let k = key("h", "c");
        let v = HeaderValue::from_static("x");
        c.set_refreshed(&k, 1_100, v.clone());
        assert!(c.refreshed(&k, 1_100).is_none(), "no entry, nothing kept");
        c.insert(k, session(2_000), 1_100);
        c.set_refreshed(&k, 1_100, v.clone());
        assert_eq!(c.refreshed(&k, 1_100), Some(v));
        assert!(c.refreshed(&k, 1_101).is_none());
    }

    #[test]
    fn bounded_under_a_flood_of_distinct_cookies() {
        let c = SessionCache::default();
        for i in 0..CAPACITY + 500 {
            c.insert(key("h", &i.to_string()), session(2_000), 1_000);
        }
        assert_eq!(c.len(), CAPACITY);
    }
}
