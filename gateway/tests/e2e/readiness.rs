//! `/readyz` for a load balancer while identity providers are down: every
//! route whose providers are all down is named with its providers, and the
//! answer stays 200 ("ready (degraded)"), because anonymous routes and
//! existing sessions are still served (see `gateway/src/admin/ready.rs`).
//! The drain's order (503 before the log line and before the listeners
//! close) is checked in `ops.rs`.

use std::time::{Duration, Instant};

use crate::login::Login;

/// Polls `/readyz` until `done(body)`; panics with the last answer after
/// `timeout` (the providers are probed every 3 s).
async fn readyz_until(t: &Login, timeout: Duration, done: impl Fn(&str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, body) = t.gw.admin_get("/readyz").await;
        if done(&body) {
            return (code, body);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not change in {timeout:?}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_routes_whose_every_provider_is_down_and_stays_200() {
    // Routes: portal, bauamt (session) and api (bearer) on `buerger`; both
    // (session) on `buerger` or `land`; public (anonymous).
    let mut t = Login::start(&["buerger", "land"]).await;
    let (code, body) = t.gw.admin_get("/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    t.op_mut(0).stop();
    let (code, body) = readyz_until(&t, Duration::from_secs(15), |b| b.contains("degraded")).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("ready (degraded)\n"), "{body}");
    for route in ["portal", "bauamt", "api"] {
        let line = body
            .lines()
            .find(|l| l.contains(&format!("route `{route}`")))
            .unwrap_or_else(|| panic!("route {route} not named: {body}"));
        assert!(line.contains("`buerger` ("), "{line}");
        assert!(
            line.contains("new logins on this route are refused"),
            "{line}"
        );
    }
    assert!(
        !body.contains("route `both`"),
        "`both` still has `land`: {body}"
    );
    assert!(!body.contains("route `public`"), "{body}");
    // What the degraded answer promises: anonymous routes are served.
    let r = t.browser().get(&t.url("/")).await;
    assert_eq!(r.status, 200, "{r:?}");

    t.op_mut(1).stop();
    let (code, body) =
        readyz_until(&t, Duration::from_secs(15), |b| b.contains("route `both`")).await;
    assert_eq!(code, 200, "{body}");
    let both = body.lines().find(|l| l.contains("route `both`")).unwrap();
    assert!(
        both.contains("`buerger` (") && both.contains("`land` ("),
        "{both}"
    );

    t.op_mut(0).restart();
    t.op_mut(1).restart();
    let (code, body) = readyz_until(&t, Duration::from_secs(15), |b| b == "ready\n").await;
    assert_eq!(code, 200, "{body}");
}
