//! Session cookies: `CookieKeys::open` on arbitrary cookie values, and the
//! `SessionData` JSON decoder on arbitrary plaintext (what a cookie sealed
//! with a leaked key could hold). Invariants: seal then open gives the
//! plaintext back, only under the same cookie name; a decoded session
//! survives a serialise/deserialise round trip.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use stadttor_gateway::authn::cookie::CookieKeys;
use stadttor_gateway::authn::session::{SessionData, COOKIE};

static KEYS: LazyLock<CookieKeys> = LazyLock::new(|| CookieKeys::from_raw(&[[7u8; 32], [9u8; 32]]));

const NOW: u64 = 1_790_000_000;

fn decode(plain: &[u8]) {
    if let Ok(s) = serde_json::from_slice::<SessionData>(plain) {
        let _ = s.check(NOW, 1800);
        let _ = s.level(NOW, 900);
        let again = serde_json::to_vec(&s).expect("a decoded session serialises");
        let back: SessionData =
            serde_json::from_slice(&again).expect("a serialised session decodes");
        assert_eq!(back.id, s.id);
        assert_eq!(back.exp, s.exp);
        assert_eq!(back.lvl, s.lvl);
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    // An attacker's cookie value.
    if let Ok(value) = std::str::from_utf8(data) {
        if let Some(plain) = keys.open(COOKIE, value) {
            decode(&plain);
        }
    }
    // The plaintext side, reached through a real seal.
    if let Some(sealed) = keys.seal(COOKIE, data) {
        assert_eq!(keys.open(COOKIE, &sealed).as_deref(), Some(data));
        assert!(
            keys.open("__Host-stadttor-login-x", &sealed).is_none(),
            "a sealed value opened under another cookie name"
        );
    }
    decode(data);
});
