//! Self-test of the OIDC harness against the real test OP: discovery, the
//! authorization-code flow with PKCE through [`Browser`] and the OP's HTML
//! login form, both client authentications, key rotation, forced
//! re-authentication, RP-initiated logout with a back-channel logout token.
//! No RP runs here: the browser stops before the redirect URI and the test
//! plays the RP by hand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use testkit::browser::{query_param, Response, Url};
use testkit::oidc::{
    basic_client, pkce_pair, private_key_jwt_client, random_token, with_logout, Level, TestUser,
    ACR_HIGH, ACR_LOW, ACR_SUBSTANTIAL, CITIZEN_HIGH, CITIZEN_LOW, CITIZEN_SUBSTANTIAL, STAFF_ANNA,
};
use testkit::{free_port, jwt, Browser, TempDir, TestOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

/// One authorization request the test sends as the RP would.
struct Auth {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn auth_request(op: &TestOp, client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> Auth {
    let (verifier, challenge) = pkce_pair();
    let (state, nonce) = (random_token(16), random_token(16));
    let mut params = vec![
        ("client_id", client_id),
        ("response_type", "code"),
        ("scope", "openid profile address eid"),
        ("redirect_uri", redirect_uri),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        // Without acr_values (or acr in `claims`) the ID token has no acr.
        ("acr_values", ACR_SUBSTANTIAL),
    ];
    for (k, v) in extra {
        match params.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v,
            None => params.push((k, v)),
        }
    }
    let url = Url::parse_with_params(&op.url("/auth"), &params).unwrap();
    Auth {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

/// Runs the front channel: auth request, login form, back to `redirect_uri`
/// (not requested). Returns the callback URL.
async fn login(browser: &Browser, auth: &Auth, user: TestUser, level: Level) -> Url {
    let to_form = browser.follow(&auth.url).await;
    assert_eq!(to_form.last.status, 200, "{to_form:?}");
    let chain = browser.login_at_op(&to_form, user, level).await;
    chain
        .stopped_at
        .clone()
        .unwrap_or_else(|| panic!("no redirect back to the RP: {chain:?}"))
}

fn assert_callback(cb: &Url, op: &TestOp, auth: &Auth) -> String {
    assert_eq!(
        query_param(cb, "state").as_deref(),
        Some(auth.state.as_str())
    );
    assert_eq!(query_param(cb, "iss"), Some(op.issuer()), "RFC 9207 iss");
    assert!(query_param(cb, "error").is_none(), "{cb}");
    query_param(cb, "code").expect("code in callback")
}

async fn token_basic(
    browser: &Browser,
    op: &TestOp,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Response {
    let req = browser
        .client()
        .post(op.url("/token"))
        .basic_auth(client_id, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ]);
    browser.send(req).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The OP's published key with this kid (from `jwks_uri`).
async fn published_key(browser: &Browser, op: &TestOp, kid: &str) -> Value {
    let jwks = browser.get(&op.url("/jwks")).await.json();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .unwrap_or_else(|| panic!("kid {kid} not published: {jwks}"));
    assert!(key.get("d").is_none(), "private key published");
    key
}

/// Logout metadata for clients whose logouts nobody receives (but `sid`
/// goes into their ID tokens).
fn logout_meta(client: Value) -> Value {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    with_logout(client, &format!("{nowhere}/bcl"), &format!("{nowhere}/bye"))
}

fn redirect_uri() -> String {
    // Nobody listens there: the browser stops before requesting it.
    format!("http://127.0.0.1:{}/auth/callback", free_port())
}

fn setup(clients: Value) -> (TempDir, TestOp) {
    let dir = TempDir::new("oidc-op");
    let op = TestOp::start(&dir, clients);
    (dir, op)
}

#[tokio::test]
async fn discovery_lists_eidas_levels_pkce_and_iss_parameter() {
    let (_dir, op) = setup(json!([basic_client("rp", SECRET, &redirect_uri())]));
    let b = Browser::new();
    let d = b
        .get(&op.url("/.well-known/openid-configuration"))
        .await
        .json();
    assert_eq!(d["issuer"], op.issuer());
    assert_eq!(
        d["acr_values_supported"],
        json!([ACR_LOW, ACR_SUBSTANTIAL, ACR_HIGH])
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert!(d["end_session_endpoint"].is_string());
    let methods = d["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("client_secret_basic") && methods.contains("private_key_jwt"));
    // The keys file holds the private halves of what jwks_uri publishes.
    let keys = op.keys();
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["es256-1", "ps256-1"]);
    for kid in kids {
        assert_eq!(
            published_key(&b, &op, kid).await,
            jwt::public_jwk(&op.key(kid))
        );
    }
}

#[tokio::test]
async fn code_flow_with_pkce_and_client_secret_basic() {
    let redirect = redirect_uri();
    let (_dir, op) = setup(json!([logout_meta(basic_client(
        "rp-basic", SECRET, &redirect
    ))]));
    let browser = Browser::new();
    browser.stop_before(&redirect);
    let auth = auth_request(&op, "rp-basic", &redirect, &[]);

    let to_form = browser.follow(&auth.url).await;
    let first = &to_form.hops[0];
    assert_eq!(first.status, 303, "{to_form:?}");
    assert_eq!(
        query_param(&first.url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(to_form.last.url.path().starts_with("/interaction/"));
    assert!(to_form.last.body.contains(r#"<select name="level">"#));

    let chain = browser
        .login_at_op(&to_form, CITIZEN_HIGH, Level::Substantial)
        .await;
    assert_eq!(chain.hops[0].method, "POST");
    let cb = chain
        .stopped_at
        .clone()
        .expect("stopped at the redirect URI");
    assert!(cb.as_str().starts_with(&redirect), "{chain:?}");
    let code = assert_callback(&cb, &op, &auth);

    // A wrong verifier is refused; the right one works once.
    let bad = token_basic(
        &browser,
        &op,
        "rp-basic",
        &code,
        &redirect,
        "x".repeat(43).as_str(),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.json()["error"], "invalid_grant");
    // The real exchange runs on a fresh code.
    let auth = auth_request(&op, "rp-basic", &redirect, &[]);
    let cb = browser
        .follow(&auth.url)
        .await
        .stopped_at
        .expect("SSO: straight back");
    let code = assert_callback(&cb, &op, &auth);
    let tok = token_basic(&browser, &op, "rp-basic", &code, &redirect, &auth.verifier).await;
    assert_eq!(tok.status, 200, "{tok:?}");
    let tok = tok.json();
    let id_token = tok["id_token"].as_str().unwrap();
    let (h, c) = jwt::decode(id_token);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["kid"], "es256-1");
    jwt::verify(id_token, &published_key(&browser, &op, "es256-1").await).unwrap();
    assert_eq!(c["iss"], op.issuer());
    assert_eq!(c["aud"], "rp-basic");
    assert_eq!(c["sub"], CITIZEN_HIGH.sub);
    assert_eq!(c["acr"], ACR_SUBSTANTIAL, "level chosen in the form");
    assert_eq!(c["nonce"], auth.nonce.as_str());
    assert!(c["sid"].is_string(), "{c}");
    assert!(c["exp"].as_u64().unwrap() > now());

    let me = browser
        .send(
            browser
                .client()
                .get(op.url("/me"))
                .bearer_auth(tok["access_token"].as_str().unwrap()),
        )
        .await
        .json();
    assert_eq!(me["sub"], CITIZEN_HIGH.sub);
    assert_eq!(me["given_name"], "Erika");
    assert_eq!(me["family_name"], "Mustermann");
    assert_eq!(me["birthdate"], "1964-08-12");
    assert_eq!(me["place_of_birth"], "Berlin");
    assert_eq!(me["nationality"], "D");
    assert_eq!(me["address"]["locality"], "Köln");
    assert!(me.get("email").is_none(), "email scope not requested");
}

#[tokio::test]
async fn code_flow_with_private_key_jwt() {
    let redirect = redirect_uri();
    let rp_key = jwt::generate_es256("rp-key-1");
    let (_dir, op) = setup(json!([logout_meta(private_key_jwt_client(
        "rp-jwt", &rp_key, &redirect
    ))]));
    let browser = Browser::new();
    browser.stop_before(&redirect);
    let auth = auth_request(&op, "rp-jwt", &redirect, &[("scope", "openid email")]);
    let cb = login(&browser, &auth, STAFF_ANNA, Level::High).await;
    let code = assert_callback(&cb, &op, &auth);

    let assertion = |key: &Value| {
        jwt::sign_jws(
            &json!({"alg": "ES256", "kid": "rp-key-1", "typ": "JWT"}),
            &json!({
                "iss": "rp-jwt", "sub": "rp-jwt", "aud": op.url("/token"),
                "jti": random_token(16), "iat": now(), "exp": now() + 60,
            }),
            key,
        )
    };
    let token = |assertion: String| {
        let req = browser.client().post(op.url("/token")).form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", auth.verifier.as_str()),
            ("client_id", "rp-jwt"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ]);
        browser.send(req)
    };
    // Signed with a key the OP does not know: refused, code not consumed.
    let foreign = token(assertion(&jwt::generate_es256("rp-key-1"))).await;
    assert_eq!(foreign.status, 401, "{foreign:?}");
    assert_eq!(foreign.json()["error"], "invalid_client");

    let ok = token(assertion(&rp_key)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let (_, c) = jwt::decode(ok.json()["id_token"].as_str().unwrap());
    assert_eq!(c["sub"], STAFF_ANNA.sub);
    assert_eq!(
        c["acr"], ACR_SUBSTANTIAL,
        "high is capped at anna's maximum"
    );
    assert_eq!(c["nonce"], auth.nonce.as_str());
    assert!(c["sid"].is_string());
    let me = browser
        .send(
            browser
                .client()
                .get(op.url("/me"))
                .bearer_auth(ok.json()["access_token"].as_str().unwrap()),
        )
        .await
        .json();
    assert_eq!(me["email"], "anna@kommune.example");
}

#[tokio::test]
async fn levels_are_capped_amr_follows_and_essential_acr_is_not_enforced() {
    let redirect = redirect_uri();
    let (_dir, op) = setup(json!([logout_meta(basic_client("rp", SECRET, &redirect))]));
    let amr = json!({"id_token": {"amr": null}}).to_string();
    for (user, level, acr, amr_value) in [
        (CITIZEN_HIGH, Level::High, ACR_HIGH, "eid"),
        (CITIZEN_HIGH, Level::Low, ACR_LOW, "pwd"),
        // Asking for high (voluntary acr_values) does not stop the OP from
        // issuing less: the RP must check acr itself.
        (CITIZEN_LOW, Level::High, ACR_LOW, "pwd"),
        (CITIZEN_SUBSTANTIAL, Level::High, ACR_SUBSTANTIAL, "pwd"),
    ] {
        let browser = Browser::new();
        browser.stop_before(&redirect);
        let auth = auth_request(
            &op,
            "rp",
            &redirect,
            &[("acr_values", ACR_HIGH), ("claims", &amr)],
        );
        let cb = login(&browser, &auth, user, level).await;
        let code = assert_callback(&cb, &op, &auth);
        let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
        let (_, c) = jwt::decode(tok.json()["id_token"].as_str().unwrap());
        assert_eq!(c["acr"], acr, "{} at {level:?}", user.name);
        assert_eq!(c["amr"], json!([amr_value]), "{} at {level:?}", user.name);
        assert!(c.get("sid").is_some());
    }

    // Not even an *essential* acr is enforced (oidc-provider 9.13.3):
    // the OP issues the level the user reached. The RP must refuse it.
    let essential =
        json!({"id_token": {"acr": {"essential": true, "values": [ACR_HIGH]}}}).to_string();
    for (user, acr) in [
        (CITIZEN_LOW, ACR_LOW),
        (CITIZEN_SUBSTANTIAL, ACR_SUBSTANTIAL),
    ] {
        let browser = Browser::new();
        browser.stop_before(&redirect);
        let auth = auth_request(
            &op,
            "rp",
            &redirect,
            &[("acr_values", ACR_HIGH), ("claims", &essential)],
        );
        let cb = login(&browser, &auth, user, Level::High).await;
        let code = assert_callback(&cb, &op, &auth);
        let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
        let (_, c) = jwt::decode(tok.json()["id_token"].as_str().unwrap());
        assert_eq!(c["acr"], acr, "{}", user.name);
    }

    // No level in the form: the user's maximum.
    let browser = Browser::new();
    browser.stop_before(&redirect);
    let auth = auth_request(&op, "rp", &redirect, &[]);
    let page = browser.follow(&auth.url).await;
    let chain = browser.login_as(&page, CITIZEN_HIGH.name, None).await;
    let code = assert_callback(chain.stopped_at.as_ref().unwrap(), &op, &auth);
    let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
    assert_eq!(
        jwt::decode(tok.json()["id_token"].as_str().unwrap()).1["acr"],
        ACR_HIGH
    );

    // An unknown user gets a 400 page, no redirect.
    let browser = Browser::new();
    let page = browser
        .follow(&auth_request(&op, "rp", &redirect, &[]).url)
        .await;
    let chain = browser.login_as(&page, "nobody", Some("high")).await;
    assert_eq!(chain.last.status, 400, "{chain:?}");
    assert!(chain.stopped_at.is_none());
}

#[tokio::test]
async fn prompt_login_and_max_age_zero_force_a_new_login() {
    let redirect = redirect_uri();
    let (_dir, op) = setup(json!([logout_meta(basic_client("rp", SECRET, &redirect))]));
    let browser = Browser::new();
    browser.stop_before(&redirect);
    let auth = auth_request(&op, "rp", &redirect, &[]);
    login(&browser, &auth, CITIZEN_HIGH, Level::Low).await;

    // Single sign-on: the OP session answers without a form.
    let again = browser
        .follow(&auth_request(&op, "rp", &redirect, &[]).url)
        .await;
    assert!(again.stopped_at.is_some(), "{again:?}");
    // A scope not granted yet: the consent prompt is granted without a page.
    let more = auth_request(&op, "rp", &redirect, &[("scope", "openid email")]);
    let chain = browser.follow(&more.url).await;
    assert!(
        chain.hop_to(&op.url("/interaction/")).is_some(),
        "{chain:?}"
    );
    assert!(chain.stopped_at.is_some(), "{chain:?}");

    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        let auth = auth_request(&op, "rp", &redirect, &extra);
        let page = browser.follow(&auth.url).await;
        assert!(
            page.stopped_at.is_none(),
            "{extra:?} must show the form: {page:?}"
        );
        assert!(page.last.url.path().starts_with("/interaction/"));
        // Step-up: log in again at a higher level.
        let chain = browser.login_at_op(&page, CITIZEN_HIGH, Level::High).await;
        let code = assert_callback(chain.stopped_at.as_ref().unwrap(), &op, &auth);
        let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
        let (_, c) = jwt::decode(tok.json()["id_token"].as_str().unwrap());
        assert_eq!(c["acr"], ACR_HIGH, "{extra:?}");
        assert!(c["auth_time"].as_u64().unwrap() + 5 >= now());
    }
}

#[tokio::test]
async fn key_rotation_changes_the_id_token_kid_and_keeps_old_keys_published() {
    let redirect = redirect_uri();
    let (_dir, mut op) = setup(json!([logout_meta(basic_client("rp", SECRET, &redirect))]));
    let browser = Browser::new();
    browser.stop_before(&redirect);

    let auth = auth_request(&op, "rp", &redirect, &[]);
    let code = assert_callback(
        &login(&browser, &auth, CITIZEN_HIGH, Level::High).await,
        &op,
        &auth,
    );
    let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
    assert_eq!(
        jwt::decode(tok.json()["id_token"].as_str().unwrap()).0["kid"],
        "es256-1"
    );

    assert_eq!(op.rotate_keys(), "es256-2");
    let kids: Vec<String> = op.keys()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, ["es256-2", "es256-1", "ps256-1"]);
    published_key(&browser, &op, "es256-1").await;

    // The OP session survived the rotation: no login form this time.
    let auth = auth_request(&op, "rp", &redirect, &[]);
    let cb = browser
        .follow(&auth.url)
        .await
        .stopped_at
        .expect("session kept");
    let code = assert_callback(&cb, &op, &auth);
    let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
    let id_token = tok.json()["id_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt::decode(&id_token).0["kid"], "es256-2");
    jwt::verify(&id_token, &published_key(&browser, &op, "es256-2").await).unwrap();
    // A token forged with the OP's own (private) key verifies like a real one.
    let forged = jwt::sign_jws(
        &json!({"alg": "PS256", "kid": "ps256-1"}),
        &jwt::decode(&id_token).1,
        &op.key("ps256-1"),
    );
    jwt::verify(&forged, &published_key(&browser, &op, "ps256-1").await).unwrap();

    // Restart: same port, same keys; sessions are gone. Stop: IdP down.
    let port = op.port();
    op.restart();
    assert_eq!(op.port(), port);
    assert_eq!(op.keys()["keys"].as_array().unwrap().len(), 3);
    let auth = auth_request(&op, "rp", &redirect, &[]);
    let page = browser.follow(&auth.url).await;
    assert!(
        page.last.url.path().starts_with("/interaction/"),
        "{page:?}"
    );
    op.stop();
    assert!(!op.is_running());
    let refused = browser.client().get(op.url("/jwks")).send().await;
    assert!(refused.is_err(), "OP still answers after stop");
}

/// Accepts one HTTP/1.1 request on `listener`, answers 200 and returns its
/// request line and body.
async fn receive_one(listener: tokio::net::TcpListener) -> (String, String) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                return (head.lines().next().unwrap().to_owned(), body.to_owned());
            }
        }
    }
}

#[tokio::test]
async fn rp_initiated_logout_sends_a_back_channel_logout_token() {
    let redirect = redirect_uri();
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let after_logout = format!("http://127.0.0.1:{}/logged-out", free_port());
    let client = with_logout(
        basic_client("rp", SECRET, &redirect),
        &format!("http://127.0.0.1:{sink_port}/auth/backchannel-logout"),
        &after_logout,
    );
    let (_dir, op) = setup(json!([client]));
    let received = tokio::spawn(receive_one(sink));

    let browser = Browser::new();
    browser.stop_before(&redirect);
    browser.stop_before(&after_logout);
    let auth = auth_request(&op, "rp", &redirect, &[]);
    let code = assert_callback(
        &login(&browser, &auth, CITIZEN_HIGH, Level::High).await,
        &op,
        &auth,
    );
    let tok = token_basic(&browser, &op, "rp", &code, &redirect, &auth.verifier).await;
    let id_token = tok.json()["id_token"].as_str().unwrap().to_owned();
    let sid = jwt::decode(&id_token).1["sid"].clone();

    let end = Url::parse_with_params(
        &op.url("/session/end"),
        &[
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", after_logout.as_str()),
            ("state", "bye-1"),
        ],
    )
    .unwrap();
    let confirm = browser.follow(end.as_str()).await;
    assert_eq!(confirm.last.status, 200, "{confirm:?}");
    let form = confirm.last.forms().remove(0);
    assert!(
        form.field("xsrf").is_some_and(|x| !x.is_empty()),
        "{form:?}"
    );
    assert_eq!(form.field("logout"), Some("yes"));
    let done = browser
        .submit_form(&confirm.last, "/session/end/confirm", &[])
        .await;
    let done = browser.follow_from(done).await;
    let back = done
        .stopped_at
        .clone()
        .unwrap_or_else(|| panic!("{done:?}"));
    assert!(back.as_str().starts_with(&after_logout));
    assert_eq!(query_param(&back, "state").as_deref(), Some("bye-1"));

    let (line, body) = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("no back-channel logout within 10 s")
        .unwrap();
    assert_eq!(line, "POST /auth/backchannel-logout HTTP/1.1");
    let form: Vec<(String, String)> = Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let token = &form
        .iter()
        .find(|(k, _)| k == "logout_token")
        .expect("logout_token")
        .1;
    let (h, c) = jwt::decode(token);
    assert_eq!(h["typ"], "logout+jwt");
    assert_eq!(h["kid"], "es256-1");
    jwt::verify(token, &published_key(&browser, &op, "es256-1").await).unwrap();
    assert_eq!(c["iss"], op.issuer());
    assert_eq!(c["aud"], "rp");
    assert_eq!(c["sub"], CITIZEN_HIGH.sub);
    assert_eq!(c["sid"], sid);
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(c.get("nonce").is_none());

    // The OP session is gone: the next auth request shows the form again.
    let page = browser
        .follow(&auth_request(&op, "rp", &redirect, &[]).url)
        .await;
    assert!(
        page.last.url.path().starts_with("/interaction/"),
        "{page:?}"
    );
}
