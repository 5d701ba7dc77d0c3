//! Tests of the session cookie check with its cache: a cached session is
//! still refused once revoked, expired or idle, and only on its host.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;
use stadttor_sessions::Revocation;

use super::session::{self, SessionData};
use super::{unix_now, Auth};
use crate::identity::AuthMethod;
use crate::respond::Audience;

const HOST: &str = "gw.example";
const ISSUER: &str = "http://127.0.0.1:9/op";

/// An `Auth` with a file session store, one provider (never reached) and
/// one session route; the idle timeout is 60 s (the least allowed).
async fn auth(dir: &testkit::TempDir) -> (Auth, crate::config::Config) {
    dir.write_secret(
        "session.keys",
        super::cookie::CookieKeys::generate().unwrap(),
    );
    let p8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    dir.write_secret("assertion.p8", p8.as_ref());
    dir.write_secret("client.secret", "s3cret");
    std::fs::create_dir_all(dir.path().join("sessions")).unwrap();
    let text = format!(
        r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[listeners.tls.certificates]]
chain = "tls/server.pem"
key = "file:tls/server.key"

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:8080"]

[identity]
session_key_file = "session.keys"
store = "file:sessions"
assertion_key = "file:assertion.p8"
session_idle_timeout = "60s"

[[identity.providers]]
name = "op"
display_name = "OP"
issuer = "{ISSUER}"
client_id = "stadttor"
client_secret_file = "client.secret"
redirect_uri = "https://{HOST}/.stadttor/callback/op"
id_token_algs = ["ES256"]
allow_http = true

[[routes]]
name = "app"
upstream = "app"
[routes.auth]
methods = ["session"]
providers = ["op"]
[routes.authz]
off = true
"#
    );
    let path = dir.path().join("stadttor.toml");
    std::fs::write(&path, &text).unwrap();
    let config = crate::config::parse(&path, &text).unwrap();
    let keys = crate::keys::Keys::new(stadttor_hsm::KeyStoreConfig::default());
    let auth = Auth::new(&config, &keys, None).await.unwrap().unwrap();
    (auth, config)
}

fn session_data(now: u64, exp: u64) -> SessionData {
    SessionData {
        v: 1,
        id: "session-1".into(),
        p: "op".into(),
        iss: ISSUER.into(),
        sub: "citizen".into(),
        sid: None,
        base: None,
        lvl: None,
        auth: now,
        iat: now,
        exp,
        seen: now,
        claims: Default::default(),
    }
}

/// The request head carrying the cookie that `set` (a `Set-Cookie`) sets.
fn request_with(set: &HeaderValue) -> http::request::Parts {
    let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
    http::Request::builder()
        .uri(format!("https://{HOST}/app"))
        .header(http::header::HOST, HOST)
        .header(http::header::COOKIE, pair)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// The session identity of `parts` on the route, as a request sees it.
fn identity(auth: &Auth, cfg: &crate::config::Config, parts: &http::request::Parts) -> bool {
    let mut set_cookie = None;
    let aud = Audience::of(&parts.headers, false);
    let id = auth
        .session_identity(
            &cfg.routes[0].auth,
            parts,
            HOST,
            aud,
            "rid",
            &mut set_cookie,
        )
        .map_err(|_| "refused with a response")
        .unwrap();
    id.is_some_and(|id| id.method == AuthMethod::Session && id.sub == "citizen")
}

#[tokio::test]
async fn a_cached_session_is_refused_once_revoked() {
    let dir = testkit::TempDir::new("session-cache");
    let (auth, cfg) = auth(&dir).await;
    let now = unix_now();
    let s = session_data(now, now + 3_600);
    let parts = request_with(&auth.seal_session(&s, HOST, now).unwrap());
    assert!(identity(&auth, &cfg, &parts), "a valid session");
    assert_eq!(auth.session_cache.len(), 1, "opened once, then cached");
    assert!(identity(&auth, &cfg, &parts), "served from the cache");
    auth.store
        .revoke(Revocation::Session {
            id: s.id.clone(),
            until: UNIX_EPOCH + Duration::from_secs(s.exp),
        })
        .await
        .unwrap();
    assert_eq!(auth.session_cache.len(), 1, "still cached");
    assert!(
        !identity(&auth, &cfg, &parts),
        "a revoked session is refused even while cached"
    );
}

#[tokio::test]
async fn a_cached_session_is_refused_once_expired_or_idle_and_on_another_host() {
    let dir = testkit::TempDir::new("session-cache");
    let (auth, _cfg) = auth(&dir).await;
    let now = unix_now();
    let s = session_data(now, now + 20);
    let parts = request_with(&auth.seal_session(&s, HOST, now).unwrap());
    let check = |host: &str, at: u64| {
        auth.session(&parts.headers, host, at)
            .map(|o| o.map(|(_, s)| s.id.clone()))
    };
    assert_eq!(check(HOST, now), Ok(Some("session-1".into())));
    assert_eq!(auth.session_cache.len(), 1);
    assert_eq!(check(HOST, now + 19), Ok(Some("session-1".into())));
    assert_eq!(check(HOST, now + 20), Err(session::Invalid::Expired));
    // The same cookie value on another host does not open, cached or not.
    assert_eq!(check("other.example", now), Err(session::Invalid::Tampered));

    // Idle: last seen 30 s before it is cached at `now`; 31 s later the
    // entry is still live (MAX_AGE is 60 s), but the per-request check
    // finds the session unused for 61 s and refuses it.
    let mut s = session_data(now, now + 3_600);
    s.seen = now - 30;
    let parts = request_with(&auth.seal_session(&s, HOST, now).unwrap());
    let key = super::session_cache::key(HOST, {
        let c = parts.headers.get(http::header::COOKIE).unwrap();
        c.to_str().unwrap().split_once('=').unwrap().1
    });
    assert!(auth.session(&parts.headers, HOST, now).unwrap().is_some());
    assert!(auth.session_cache.get(&key, now + 31).is_some(), "cached");
    assert_eq!(
        auth.session(&parts.headers, HOST, now + 31)
            .map(|o| o.is_some()),
        Err(session::Invalid::Idle)
    );
}
