//! The security officers' login on the admin listener faces the threats
//! the citizens' login faces (`login.rs`,
//! `callback_threats_forged_missing_replayed_state_replayed_code_and_mix_up`)
//! and is refused by the same checks (`gateway/src/authn/login_tx.rs`):
//! the real `stadttor` binary, the real test OpenID Provider (which
//! promises RFC 9207 `iss`), the officers' page.
//!
//! Before the officers' login used the shared checks, a response without
//! `iss` logged an officer in, a replayed code was only caught by the
//! provider, and a used state was forgotten when the gateway restarted.

use std::time::Duration;

use testkit::browser::{query_param, Browser, Url};
use testkit::oidc::{Level, TestUser, STAFF_ANNA, STAFF_BERND};
use testkit::Gateway;

use crate::foureyes::wait_ready_https;
use crate::login::{with_param, without_param};
use crate::policy::{Enforced, OFFICER_ADMIN};
use crate::BIN;

/// The officer session cookie.
const SESSION: &str = "__Host-stadttor-officer";

/// Starts an officer login for `user` in `b` and returns the provider's
/// response (the callback URL) without following it.
async fn officer_callback_url(t: &Enforced, b: &Browser, user: TestUser) -> Url {
    b.stop_before(&t.admin_url("/.stadttor/callback/"));
    let chain = b
        .login_at_op(t.admin_url("/policy").as_str(), user, Level::Substantial)
        .await;
    chain
        .stopped_at
        .clone()
        .expect("stopped before the callback")
}

fn has_officer_session(t: &Enforced, b: &Browser) -> bool {
    b.cookies_for(&t.admin_url("/"))
        .iter()
        .any(|(n, _)| n == SESSION)
}

/// Follows `cb` and asserts that it logs the officer in.
async fn logs_in(t: &Enforced, b: &Browser, cb: &Url) {
    let ok = b.follow(cb.as_str()).await;
    assert_eq!(ok.last.status, 200, "{ok:?}");
    assert!(ok.last.body.contains("Angemeldet als"), "{}", ok.last.body);
    assert!(has_officer_session(t, b));
}

/// An officers' gateway, ready.
async fn start() -> Enforced {
    let t = Enforced::start(OFFICER_ADMIN, None).await;
    t.init();
    wait_ready_https(&t).await;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_login_without_iss_although_the_provider_promises_it_is_refused() {
    let t = start().await;
    // The test OP promises RFC 9207 `iss` in its discovery document, so a
    // response without it is refused (an attacker who strips it hides
    // which issuer really answered).
    let b = t.admin_browser();
    let cb = officer_callback_url(&t, &b, STAFF_ANNA).await;
    assert!(query_param(&cb, "iss").is_some(), "{cb}");
    let r = b.get(without_param(&cb, "iss").as_str()).await;
    assert_eq!(r.status, 400, "missing iss: {r:?}");
    assert!(t.gw.wait_for_log(
        "iss missing although the provider promises it",
        Duration::from_secs(2)
    ));
    assert!(!has_officer_session(&t, &b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_login_mix_up_response_from_another_issuer_is_refused() {
    let t = start().await;
    // The response names another issuer than the one the browser was
    // sent to.
    let b = t.admin_browser();
    let cb = officer_callback_url(&t, &b, STAFF_ANNA).await;
    let mixed = with_param(&cb, "iss", "https://other-provider.example");
    let r = b.get(mixed.as_str()).await;
    assert_eq!(r.status, 400, "mix-up: {r:?}");
    assert!(t.gw.wait_for_log(
        "iss in the response is not the expected issuer (mix-up)",
        Duration::from_secs(2)
    ));
    assert!(!has_officer_session(&t, &b));
    // ... and the response delivered to another provider's callback.
    let b = t.admin_browser();
    let cb = officer_callback_url(&t, &b, STAFF_ANNA).await;
    let wrong = cb
        .as_str()
        .replace("/callback/buerger", "/callback/personal");
    assert_eq!(b.get(&wrong).await.status, 404);
    assert!(!has_officer_session(&t, &b));
    // The genuine response still works once: the refusals above stopped
    // before the single-use markers.
    logs_in(&t, &b, &cb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_login_replayed_code_is_refused_by_the_gateway() {
    let t = start().await;
    // A fresh officer login transaction carrying the code of a login that
    // already completed is refused by the gateway's own single-use
    // marker, before the provider is asked.
    let b = t.admin_browser();
    let cb = officer_callback_url(&t, &b, STAFF_ANNA).await;
    let code = query_param(&cb, "code").unwrap();
    logs_in(&t, &b, &cb).await;
    let b2 = t.admin_browser();
    let cb2 = officer_callback_url(&t, &b2, STAFF_BERND).await;
    let r = b2.get(with_param(&cb2, "code", &code).as_str()).await;
    assert_eq!(r.status, 400, "replayed code: {r:?}");
    assert!(t
        .gw
        .wait_for_log("authorization code replayed", Duration::from_secs(2)));
    assert!(!has_officer_session(&t, &b2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_login_replayed_state_is_refused_also_after_a_gateway_restart() {
    let mut t = start().await;

    let b = t.admin_browser();
    let cb = officer_callback_url(&t, &b, STAFF_ANNA).await;
    let tx = b.cookies_for(&t.admin_url("/"));
    logs_in(&t, &b, &cb).await;

    // The same response again, with the transaction cookie put back.
    let replay = |t: &Enforced| {
        let b = t.admin_browser();
        for (k, v) in &tx {
            b.set_cookie(&t.admin_url("/"), k, v);
        }
        b
    };
    let b2 = replay(&t);
    let r = b2.get(cb.as_str()).await;
    assert_eq!(r.status, 400, "replayed state: {r:?}");
    assert!(t.gw.wait_for_log("state replayed", Duration::from_secs(2)));
    assert!(!has_officer_session(&t, &b2));

    // The used state is in the session store, not in the process: a
    // restarted gateway still refuses it.
    t.gw.signal("TERM");
    assert!(t.gw.wait_exit(Duration::from_secs(20)).is_some());
    let config = t.gw.config_path.clone();
    t.gw = Gateway::start_file(BIN, &config);
    wait_ready_https(&t).await;
    let b3 = replay(&t);
    let r = b3.get(cb.as_str()).await;
    assert_eq!(r.status, 400, "replayed state after a restart: {r:?}");
    assert!(t.gw.wait_for_log("state replayed", Duration::from_secs(2)));
    assert!(!has_officer_session(&t, &b3));
}
