//! The session a login creates: what the sealed `__Host-` cookie holds,
//! and the rules for its lifetime and level.
//!
//! The cookie carries no token: only who (provider, issuer, `sub`, `sid`),
//! how well (levels and times) and the claims that some route forwards.
//! It is sealed with [`super::cookie::CookieKeys`], so the browser can
//! neither read nor change it; server-side revocation (logout, back-channel
//! logout) lives in the session store.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::identity::Level;

/// The session cookie's name.
pub const COOKIE: &str = "__Host-stadttor-session";

/// What a session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    /// Format version.
    pub v: u8,
    /// Random session id (new at every login, step-up included).
    pub id: String,
    /// Provider name.
    pub p: String,
    /// Provider issuer.
    pub iss: String,
    /// Subject at the provider.
    pub sub: String,
    /// The provider's session id, for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Level of the first login of this session.
    #[serde(default)]
    pub base: Option<Level>,
    /// Level of the latest authentication (a step-up raises it).
    #[serde(default)]
    pub lvl: Option<Level>,
    /// Time of the latest authentication.
    pub auth: u64,
    /// Session start.
    pub iat: u64,
    /// Absolute end.
    pub exp: u64,
    /// Last time the cookie was refreshed (idle timeout).
    pub seen: u64,
    /// Claims forwarded to routes that are configured for them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
}

/// Why a session cookie is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// It could not be opened: forged, changed or sealed with a removed key.
    Tampered,
    /// Past its absolute lifetime.
    Expired,
    /// Unused for longer than the idle timeout.
    Idle,
}

impl SessionData {
    /// Checks the lifetime rules at `now`.
    pub fn check(&self, now: u64, idle: u64) -> Result<(), Invalid> {
        if now >= self.exp {
            return Err(Invalid::Expired);
        }
        if now > self.seen.saturating_add(idle) {
            return Err(Invalid::Idle);
        }
        Ok(())
    }

    /// The level that counts now: a stepped-up level lasts `step_up`
    /// seconds after that authentication, then the session falls back to
    /// the level of its first login.
    pub fn level(&self, now: u64, step_up: u64) -> Option<Level> {
        if self.lvl > self.base && now > self.auth.saturating_add(step_up) {
            self.base
        } else {
            self.lvl
        }
    }

    /// The base level after a new login of the same user (a step-up): the
    /// lower of the session's base and the new login's level. A login
    /// without a mapped level (`None`) counts as the lowest of all, so an
    /// elevation from it expires like any other.
    pub fn base_after(previous: Option<Level>, login: Option<Level>) -> Option<Level> {
        // `Option`'s order already puts `None` first; the rule is written
        // down here so that nobody "fixes" a `None` into the new level.
        previous.min(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> SessionData {
        SessionData {
            v: 1,
            id: "x".into(),
            p: "p".into(),
            iss: "https://op".into(),
            sub: "s".into(),
            sid: None,
            base: Some(Level::Substantial),
            lvl: Some(Level::High),
            auth: 1000,
            iat: 900,
            exp: 5000,
            seen: 1000,
            claims: Map::new(),
        }
    }

    #[test]
    fn lifetimes() {
        let s = s();
        assert_eq!(s.check(1500, 600), Ok(()));
        assert_eq!(s.check(1601, 600), Err(Invalid::Idle));
        assert_eq!(s.check(5000, 100_000), Err(Invalid::Expired));
    }

    #[test]
    fn elevation_expires() {
        let s = s();
        assert_eq!(s.level(1100, 300), Some(Level::High));
        assert_eq!(s.level(1301, 300), Some(Level::Substantial));
        let mut t = s.clone();
        t.base = Some(Level::High);
        assert_eq!(t.level(99_999, 300), Some(Level::High));
    }

    #[test]
    fn step_up_from_a_login_without_a_mapped_level_expires() {
        // The first login's `acr` maps to no level; the step-up reaches high.
        let mut s = s();
        s.base = None;
        s.lvl = Some(Level::High);
        s.base = SessionData::base_after(s.base, s.lvl);
        assert_eq!(s.base, None, "the step-up must not become the base level");
        assert_eq!(s.level(1100, 300), Some(Level::High));
        assert_eq!(s.level(1301, 300), None, "the elevation expires");
        // Lower of the two in the other cases.
        let b = SessionData::base_after;
        assert_eq!(
            b(Some(Level::Substantial), Some(Level::High)),
            Some(Level::Substantial)
        );
        assert_eq!(b(Some(Level::High), Some(Level::Low)), Some(Level::Low));
        assert_eq!(b(Some(Level::High), None), None);
    }
}
