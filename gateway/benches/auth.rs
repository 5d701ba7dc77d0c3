//! CPU cost of authenticating a request with a session cookie (open the
//! sealed cookie, check lifetime and revocation, build identity headers,
//! take the cached assertion) against an anonymous request on the same
//! gateway, with a software assertion key.
//!
//! `cargo bench -p stadttor-gateway --bench auth`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use stadttor_gateway::authn::cookie::CookieKeys;
use stadttor_gateway::authn::session::{SessionData, COOKIE};
use stadttor_gateway::authn::Auth;
use stadttor_gateway::config;
use stadttor_gateway::identity::Level;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("stadttor-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys_file = dir.join("session.keys");
    std::fs::write(&keys_file, format!("{}\n", CookieKeys::generate().unwrap())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    std::fs::write(dir.join("assertion.p8"), pkcs8.as_ref()).unwrap();
    std::fs::write(dir.join("secret"), "s3cret").unwrap();
    let text = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[listeners.tls.certificates]]
chain = "unused.pem"
key = "file:unused.key"

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:9"]

[identity]
session_key_file = "session.keys"
store = "file:sessions"
assertion_key = "file:assertion.p8"

[[identity.providers]]
name = "buerger"
display_name = "BundID"
issuer = "http://127.0.0.1:9"
client_id = "stadttor"
client_secret_file = "secret"
redirect_uri = "https://localhost/.stadttor/callback/buerger"
id_token_algs = ["ES256"]
allow_http = true

[[routes]]
name = "portal"
upstream = "app"
path_prefix = "/portal"
[routes.auth]
methods = ["session"]
providers = ["buerger"]
min_level = "substantial"
claims = { given_name = "given-name" }

[[routes]]
name = "public"
upstream = "app"
path_prefix = "/"
"#;
    let cfg = config::parse(&dir.join("stadttor.toml"), text).unwrap();
    let keys = stadttor_gateway::keys::Keys::new(cfg.keys.clone());
    let auth = rt.block_on(Auth::new(&cfg, &keys, None)).unwrap().unwrap();
    let portal = cfg
        .routes
        .iter()
        .find(|r| r.name == "portal")
        .unwrap()
        .clone();
    let public = cfg
        .routes
        .iter()
        .find(|r| r.name == "public")
        .unwrap()
        .clone();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = SessionData {
        v: 1,
        id: "bench-session-0123456789".into(),
        p: "buerger".into(),
        iss: "http://127.0.0.1:9".into(),
        sub: "pseud-7f3a9c21e4b8d05a".into(),
        sid: Some("sid-1".into()),
        base: Some(Level::High),
        lvl: Some(Level::High),
        auth: now,
        iat: now,
        exp: now + 3600,
        seen: now,
        claims: serde_json::from_str(r#"{"given_name":"Erika"}"#).unwrap(),
    };
    // Sealed for the host of the request below: it names none.
    let sealed = CookieKeys::load(&keys_file)
        .unwrap()
        .seal_for(COOKIE, "", &serde_json::to_vec(&session).unwrap())
        .unwrap();
    let with_cookie = http::Request::get("/portal/antrag")
        .header(http::header::COOKIE, format!("{COOKIE}={sealed}"))
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let anonymous = http::Request::get("/").body(()).unwrap().into_parts().0;

    // The first call signs the assertion; afterwards it comes from the cache.
    let first = rt.block_on(auth.authenticate(&portal, &with_cookie, None, "rid"));
    assert!(first.is_ok_and(|v| v.identity.is_some()));

    let mut g = c.benchmark_group("authenticate");
    g.bench_function("anonymous", |b| {
        b.iter(|| {
            rt.block_on(auth.authenticate(&public, &anonymous, None, "rid"))
                .is_ok()
        })
    });
    g.bench_function("session_cookie_cached_assertion", |b| {
        b.iter(|| {
            rt.block_on(auth.authenticate(&portal, &with_cookie, None, "rid"))
                .is_ok()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
