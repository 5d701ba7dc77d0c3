//! Credentials stay at the gateway (issue 12, part 2), end to end: the real
//! binary, the test OP, the echo backend (which shows exactly the headers
//! it received), over HTTP/1.1 and h2. Each test is named after the threat.
//! The gateway and its routes are the login tests' ([`Login`]) plus `/fwd`,
//! a bearer route that opts in to `forward_authorization`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use stadttor_gateway::authn::session::COOKIE;
use testkit::client::{self, Proto, Resp};
use testkit::jwt;
use testkit::oidc::{Level, CITIZEN_HIGH};

use crate::login::{access_token, header, Login, Opts};

const FWD_ROUTE: &str = r#"
[[routes]]
name = "fwd"
upstream = "app"
path_prefix = "/fwd"
[routes.auth]
methods = ["bearer"]
providers = ["buerger"]
bearer_audience = "https://api.kommune.example"
api = true
forward_authorization = true
"#;

async fn start() -> Login {
    let mut opts = Opts::default();
    opts.routes = FWD_ROUTE;
    Login::start_full(&["buerger"], "", opts).await
}

/// One request with exactly these header fields (repeats stay separate
/// fields), for `host` (SNI and `Host`/`:authority`).
async fn send_to(t: &Login, host: &str, proto: Proto, path: &str, hs: &[(&str, &str)]) -> Resp {
    let mut req = http::Request::get(path);
    for (k, v) in hs {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let cfg = Arc::new(client::tls_config(&t.pki.ca_pem, None, proto));
    client::send(cfg, t.gw.addr(), host, proto, req)
        .await
        .unwrap()
}

async fn send(t: &Login, proto: Proto, path: &str, hs: &[(&str, &str)]) -> Resp {
    send_to(t, "localhost", proto, path, hs).await
}

/// The headers the echo backend received (the request must have passed).
fn echoed(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"].clone()
}

/// A valid access token (the OP's key) and a forged one claiming `admin`.
fn tokens(t: &Login) -> (String, String) {
    let head = json!({"alg":"ES256","kid":"es256-1","typ":"at+jwt"});
    let good = jwt::sign_jws(&head, &access_token(t, json!({})), &t.op().key("es256-1"));
    let admin = access_token(t, json!({"sub": "admin"}));
    let forged = jwt::sign_jws(&head, &admin, &jwt::generate_es256("es256-1"));
    (format!("Bearer {good}"), format!("Bearer {forged}"))
}

/// A real session cookie value from a login at `localhost`.
async fn session(t: &Login) -> String {
    let b = t.browser();
    let url = t.url("/portal/");
    b.login_at_op(url.as_str(), CITIZEN_HIGH, Level::High).await;
    b.cookie(&t.base, COOKIE).expect("logged in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_valid_and_forged_in_either_order_are_refused() {
    let t = start().await;
    let (good, forged) = tokens(&t);
    let auth = "authorization";
    for proto in [Proto::H1, Proto::H2] {
        for path in ["/api/akten", "/fwd/akten", "/open"] {
            for pair in [[&good, &forged], [&forged, &good]] {
                let hs = [(auth, pair[0].as_str()), (auth, pair[1].as_str())];
                let r = send(&t, proto, path, &hs).await;
                assert_eq!(r.status, 400, "{proto:?} {path}: {}", r.text());
            }
        }
    }
    assert_eq!(t.backend.requests(), 0, "nothing reached the service");
    // Control: the valid token alone passes, as who it says.
    let h = echoed(&send(&t, Proto::H2, "/api/akten", &[(auth, &good)]).await);
    assert_eq!(header(&h, "x-stadttor-sub"), Some(CITIZEN_HIGH.sub));
    assert!(t
        .gw
        .wait_for_log("more than one Authorization header", Duration::from_secs(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_and_bearer_token_never_reach_the_service_other_cookies_do() {
    let t = start().await;
    let sc = session(&t).await;
    let served = t.backend.requests();
    let (good, _) = tokens(&t);
    let mine = format!("a=1; {COOKIE}={sc}; b=2");
    let basic = "Basic dXNlcjpwYXNz";
    for proto in [Proto::H1, Proto::H2] {
        // Session route: the cookie is cut out, Authorization withheld;
        // the other cookies arrive in order, as one header.
        let hs = [
            ("cookie", mine.as_str()),
            ("cookie", "c=3"),
            ("authorization", basic),
        ];
        let h = echoed(&send(&t, proto, "/portal/x", &hs).await);
        assert_eq!(header(&h, "x-stadttor-auth-method"), Some("session"));
        assert_eq!(header(&h, "cookie"), Some("a=1; b=2; c=3"), "{proto:?}");
        assert!(h.get("authorization").is_none(), "{proto:?}: {h}");
        // Bearer route: the token stays at the gateway.
        let hs = [("authorization", good.as_str()), ("cookie", mine.as_str())];
        let h = echoed(&send(&t, proto, "/api/akten", &hs).await);
        assert_eq!(header(&h, "x-stadttor-auth-method"), Some("bearer"));
        assert!(h.get("authorization").is_none(), "{proto:?}: {h}");
        assert_eq!(header(&h, "cookie"), Some("a=1; b=2"));
        // Anonymous route: the session cookie is sent for the whole host
        // and cut out here too; Authorization is the service's business.
        let hs = [("cookie", mine.as_str()), ("authorization", basic)];
        let h = echoed(&send(&t, proto, "/open", &hs).await);
        assert_eq!(header(&h, "cookie"), Some("a=1; b=2"));
        assert_eq!(header(&h, "authorization"), Some(basic));
        // Only the gateway's cookie: no Cookie header at all.
        let only = format!("{COOKIE}={sc}");
        let h = echoed(&send(&t, proto, "/portal/x", &[("cookie", &only)]).await);
        assert!(h.get("cookie").is_none(), "{h}");
    }
    assert_eq!(t.backend.requests() - served, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_authorization_opt_in_forwards_exactly_the_one_verified_header() {
    let t = start().await;
    let (good, _) = tokens(&t);
    for proto in [Proto::H1, Proto::H2] {
        let hs = [("authorization", good.as_str()), ("cookie", "k=v")];
        let h = echoed(&send(&t, proto, "/fwd/akten", &hs).await);
        // `header` panics if it came more than once.
        assert_eq!(header(&h, "authorization"), Some(good.as_str()));
        assert_eq!(header(&h, "x-stadttor-sub"), Some(CITIZEN_HIGH.sub));
    }
    // Without a token the opt-in changes nothing: 401, nothing forwarded.
    assert_eq!(send(&t, Proto::H1, "/fwd/akten", &[]).await.status, 401);
    assert_eq!(t.backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_spelt_with_underscores_or_in_mixed_case_are_stripped() {
    let t = start().await;
    let (good, _) = tokens(&t);
    // On the wire exactly as an attacker writes them (HTTP/1.1 keeps case).
    let raw = "GET /api/akten HTTP/1.1\r\nHost: localhost\r\n\
               X_Stadttor_Sub: admin\r\nx_stadttor_level: high\r\n\
               X-STADTTOR-PROVIDER: evil\r\nx_stadttor-assertion: forged\r\n\
               X_Forwarded_For: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\n\
               Connection: close\r\n";
    let req = format!("{raw}Authorization: {good}\r\n\r\n");
    let cfg = Arc::new(client::tls_config(&t.pki.ca_pem, None, Proto::H1));
    let (out, _) = client::raw_exchange(
        cfg,
        t.gw.addr(),
        "localhost",
        req.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = &out[out.find('{').unwrap()..=out.rfind('}').unwrap()];
    let h: Value = serde_json::from_str::<Value>(body).unwrap()["headers"].clone();
    assert_eq!(header(&h, "x-stadttor-sub"), Some(CITIZEN_HIGH.sub));
    assert_eq!(header(&h, "x-stadttor-provider"), Some("buerger"));
    assert_ne!(header(&h, "x-stadttor-assertion"), Some("forged"));
    let names: Vec<&String> = h.as_object().unwrap().keys().collect();
    assert!(
        !names.iter().any(|n| n.contains('_')),
        "a client header with `_` reached the service: {names:?}"
    );
    assert_eq!(header(&h, "x-forwarded-for"), Some("127.0.0.1"));
    // h2, anonymous route: removed, none added.
    let hs = [("x_stadttor_sub", "admin"), ("x_stadttor_assertion", "x")];
    let h = echoed(&send(&t, Proto::H2, "/open", &hs).await);
    assert!(
        !h.as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("stadttor")),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_set_cookie_for_a_gateway_cookie_is_dropped_logged_and_counted() {
    let t = start().await;
    let b = t.browser();
    b.login_at_op(t.url("/portal/").as_str(), CITIZEN_HIGH, Level::High)
        .await;
    let before = b.cookie(&t.base, COOKIE).unwrap();
    for proto in [Proto::H1, Proto::H2] {
        let r = send(&t, proto, "/set-cookies", &[]).await;
        assert_eq!(r.status, 200);
        let set: Vec<&str> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(set, ["app=1; Path=/", "theme=dark; Path=/"], "{proto:?}");
    }
    // A browser with a session keeps it: the service could neither replace
    // (fixation) nor delete (forced logout) the gateway's cookie.
    assert_eq!(b.get(&t.url("/set-cookies")).await.status, 200);
    assert_eq!(b.cookie(&t.base, COOKIE).as_deref(), Some(before.as_str()));
    assert_eq!(b.cookie(&t.base, "app").as_deref(), Some("1"));
    assert_eq!(b.get(&t.url("/portal/")).await.status, 200);
    let (status, metrics) = t.gw.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let line = "stadttor_upstream_set_cookie_refused_total{route=\"public\"} 9";
    assert!(metrics.contains(line), "{metrics}");
    assert!(t.gw.wait_for_log(
        "upstream Set-Cookie for a gateway cookie refused",
        Duration::from_secs(2)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cookie_sent_twice_is_refused_before_authentication() {
    let t = start().await;
    let sc = session(&t).await;
    let served = t.backend.requests();
    let real = format!("{COOKIE}={sc}");
    let forged = format!("{COOKIE}=forged");
    let other_case = "__HOST-stadttor-session=forged".to_owned();
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![("cookie", format!("{real}; {forged}"))],
        vec![("cookie", format!("{forged}; {real}"))],
        vec![
            ("cookie", real.clone()),
            ("cookie", format!("x=1; {forged}")),
        ],
        vec![("cookie", format!("{real}; {other_case}"))],
        vec![("cookie", format!("{real}; {real}"))],
    ];
    for proto in [Proto::H1, Proto::H2] {
        for hs in &cases {
            let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            for path in ["/portal/x", "/open", "/.stadttor/logout"] {
                let r = send(&t, proto, path, &hs).await;
                assert_eq!(r.status, 400, "{proto:?} {path} {hs:?}: {}", r.text());
            }
        }
    }
    assert_eq!(t.backend.requests(), served, "nothing reached the service");
    // Control: the real cookie alone passes.
    let r = send(&t, Proto::H2, "/portal/x", &[("cookie", &real)]).await;
    assert_eq!(
        header(&echoed(&r), "x-stadttor-sub"),
        Some(CITIZEN_HIGH.sub)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_replayed_on_another_host_is_not_accepted() {
    let t = start().await;
    let sc = session(&t).await;
    let cookie = format!("{COOKIE}={sc}");
    for proto in [Proto::H1, Proto::H2] {
        // Same gateway, same key, same route, another host: refused like a
        // changed cookie (cleared, sent to a login), never forwarded.
        let r = send_to(&t, "127.0.0.1", proto, "/portal/x", &[("cookie", &cookie)]).await;
        assert_eq!(r.status, 303, "{proto:?}: {}", r.text());
        let cleared = r.headers.get_all("set-cookie").iter().any(|v| {
            let v = v.to_str().unwrap();
            v.starts_with(&format!("{COOKIE}=;")) && v.contains("Max-Age=0")
        });
        assert!(cleared, "{proto:?}: {:?}", r.headers);
        // On the host it was issued for it works.
        let r = send(&t, proto, "/portal/x", &[("cookie", &cookie)]).await;
        assert_eq!(
            header(&echoed(&r), "x-stadttor-sub"),
            Some(CITIZEN_HIGH.sub)
        );
    }
    // The host is compared canonically: case and port do not matter.
    let hs = [("host", "LOCALHOST."), ("cookie", cookie.as_str())];
    let r = send(&t, Proto::H1, "/portal/x", &hs).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(t
        .gw
        .wait_for_log("session cookie refused", Duration::from_secs(2)));
}
