//! SAML Single Logout end to end: the real `stadttor` binary as BundID
//! service provider, the real test SAML IdP with SLO (tests/saml-idp,
//! `slo.py`: verifies our RSA-PSS LogoutRequests and LogoutResponses with
//! lxml + cryptography, signs its own with xmlsec1), a browser with a
//! cookie jar. The SP metadata the IdP trusts (with our
//! SingleLogoutService) is `stadttor identity saml-metadata`'s output.
//! Negative tests are named after the threat.

use std::time::Duration;

use serde_json::Value;
use testkit::browser::{Browser, Response};
use testkit::jwt;
use testkit::saml_idp::IdpOptions;

use crate::login::header;
use crate::saml::{echoed, Saml, BPK2_ERIKA};

const SESSION: &str = "__Host-stadttor-session";

async fn start(audit: bool) -> Saml {
    Saml::start_with(
        audit,
        &IdpOptions {
            slo: true,
            ..IdpOptions::default()
        },
    )
    .await
}

/// Logs a citizen in through the IdP; returns the session cookie's value.
async fn login(t: &Saml, b: &Browser) -> String {
    let idp_page = t.to_idp(b, "/buerger/", "citizen-high", None).await;
    let chain = t.to_acs(b, &idp_page).await;
    assert_eq!(header(&echoed(&chain), "x-stadttor-sub"), Some(BPK2_ERIKA));
    b.cookie(&t.url("/"), SESSION).expect("the session cookie")
}

/// Whether a browser holding only the session cookie `value` gets through
/// to the service (else it is sent to log in at the IdP again).
async fn opens(t: &Saml, value: &str) -> bool {
    let b = t.browser();
    b.set_cookie(&t.url("/"), SESSION, value);
    let r = b.get(&t.url("/buerger/")).await;
    assert_eq!(r.status, 200, "{r:?}");
    if let Ok(echo) = serde_json::from_str::<Value>(&r.body) {
        assert_eq!(header(&echo["headers"], "x-stadttor-sub"), Some(BPK2_ERIKA));
        return true;
    }
    let login = r.forms().into_iter().next().expect("the login form");
    assert!(
        login.action.as_str().starts_with(&t.idp.sso_url()),
        "neither the service nor a login: {r:?}"
    );
    false
}

/// The IdP-initiated LogoutRequest form (`GET /initiate-logout?QUERY` in
/// the browser), checked to post to our SLO endpoint.
async fn idp_logout_form(t: &Saml, b: &Browser, query: &str) -> testkit::browser::Form {
    let page = b
        .get(&format!("{}/initiate-logout?{query}", t.idp.base()))
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    let form = page.forms().into_iter().next().expect("the IdP's form");
    assert_eq!(form.action.as_str(), t.url("/.stadttor/slo/bundid"));
    assert!(form.field("SAMLRequest").is_some());
    form
}

/// Our answer to an IdP-initiated request: the auto-post LogoutResponse
/// form to the IdP's SLO endpoint.
fn logout_response_form(t: &Saml, page: &Response) -> testkit::browser::Form {
    assert_eq!(page.status, 200, "{page:?}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("form-action http://127.0.0.1:"), "{csp}");
    let form = page
        .forms()
        .into_iter()
        .next()
        .expect("our LogoutResponse form");
    assert_eq!(form.action.as_str(), t.idp.slo_url());
    assert!(form.field("SAMLResponse").is_some(), "{form:?}");
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_logout_ends_the_bundid_session_with_its_name_id_and_session_index() {
    let t = start(false).await;
    let b = t.browser();
    let cookie = login(&t, &b).await;
    // The NameID stays in the session for SLO but is not forwarded: the
    // route maps only given_name.
    let chain = b.follow(&t.url("/buerger/")).await;
    let h = echoed(&chain);
    assert!(
        h.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("saml") && !k.contains("name-id")),
        "{h}"
    );
    let (_, claims) = jwt::decode(header(&h, "x-stadttor-assertion").unwrap());
    assert!(!claims.to_string().contains("saml_"), "{claims}");

    // POST /.stadttor/logout: ended here, then the signed LogoutRequest.
    let page = b.post_form(&t.url("/.stadttor/logout"), &[]).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.set_cookie(SESSION)
            .is_some_and(|c| c.contains("Max-Age=0")),
        "{page:?}"
    );
    assert!(!opens(&t, &cookie).await, "the session must end at once");
    let form = page.forms().into_iter().next().expect("the auto-post form");
    assert_eq!(form.action.as_str(), t.idp.slo_url());
    assert!(form.field("RelayState").is_some());
    let idp_answer = b.submit(&form).await;
    assert_eq!(idp_answer.status, 200, "IdP: {idp_answer:?}");
    let last = t.idp.last_logout();
    assert_eq!(last["signature_verified_by"], "cryptography+lxml", "{last}");
    assert_eq!(
        last["signature_algorithm"],
        "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
    );
    assert_eq!(last["issuer"], "https://kommune.example/saml/sp");
    assert_eq!(
        last["name_id_format"],
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    );
    assert_eq!(last["name_qualifier"], t.idp.entity_id());
    assert_eq!(last["session_indexes"].as_array().unwrap().len(), 1);
    // The IdP compares NameID and SessionIndex with its last login.
    assert_eq!(last["matches_last_login"], true, "{last}");

    // The IdP's signed LogoutResponse is accepted: the logged-out page.
    let answer = idp_answer.forms().into_iter().next().expect("IdP form");
    assert_eq!(answer.action.as_str(), t.url("/.stadttor/slo/bundid"));
    let first = b.submit(&answer).await;
    assert_eq!(first.status, 303, "{first:?}");
    let chain = b.follow_from(first).await;
    assert!(chain.last.url.path().ends_with("/.stadttor/logged-out"));
    assert_eq!(chain.last.status, 200);
    // Its transaction cookie is gone: the same response again is refused.
    let again = b.submit(&answer).await;
    assert_eq!(again.status, 400, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_initiated_logout_revokes_the_session_by_session_index_and_by_name_id() {
    let t = start(false).await;
    for by in ["session-index", "name-id"] {
        let b = t.browser();
        let cookie = login(&t, &b).await;
        assert!(opens(&t, &cookie).await);
        // The IdP's request arrives from another site: no session cookie
        // comes along (SameSite=Lax), the session is found in the store.
        let form = idp_logout_form(&t, &t.browser(), &format!("by={by}&relay=r-{by}")).await;
        let ours = t.browser().submit(&form).await;
        let response = logout_response_form(&t, &ours);
        assert_eq!(
            response.field("RelayState"),
            Some(format!("r-{by}").as_str())
        );
        assert!(
            !opens(&t, &cookie).await,
            "{by}: the session must be revoked"
        );
        // The IdP verifies our signed LogoutResponse.
        let done = t.browser().submit(&response).await;
        assert_eq!(done.status, 200, "{by}: {done:?}");
        let last = t.idp.last_logout_response();
        assert_eq!(last["answers_last_request"], true, "{last}");
        assert_eq!(last["status"], "urn:oasis:names:tc:SAML:2.0:status:Success");
        assert_eq!(last["signature_verified_by"], "cryptography+lxml");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_idp_logout_requests_are_refused_and_the_session_lives_on() {
    use stadttor_audit::verify::LogReader;
    let mut t = start(true).await;
    let b = t.browser();
    let first = login(&t, &b).await;
    // A genuine request, captured on its way (a replay needs one).
    let genuine = idp_logout_form(&t, &t.browser(), "").await;
    let ours = t.browser().submit(&genuine).await;
    logout_response_form(&t, &ours);
    assert!(!opens(&t, &first).await);
    // A new login; every forged request must leave it alive.
    let cookie = login(&t, &b).await;
    let threats = [
        ("unsigned", "unsigned"),
        ("foreign-key", "bad_signature"),
        ("wrong-destination", "destination"),
        ("expired", "expired"),
    ];
    for (threat, _) in threats {
        let form = idp_logout_form(&t, &t.browser(), &format!("threat={threat}")).await;
        let refused = t.browser().submit(&form).await;
        assert_eq!(refused.status, 400, "{threat}: {refused:?}");
        assert!(refused.forms().is_empty(), "{threat}: no LogoutResponse");
        assert!(opens(&t, &cookie).await, "{threat} ended the session");
    }
    let replayed = t.browser().submit(&genuine).await;
    assert_eq!(replayed.status, 400, "{replayed:?}");
    assert!(opens(&t, &cookie).await);
    // Neither message kind without a form field, nor both.
    let stray = t
        .browser()
        .post_form(&t.url("/.stadttor/slo/bundid"), &[("RelayState", "x")])
        .await;
    assert_eq!(stray.status, 400);

    let key = crate::audit::verifier_key_from_logs(&t.gw.logs());
    t.gw.signal("TERM");
    assert!(t.gw.wait_exit(Duration::from_secs(10)).unwrap().success());
    let mut out = Vec::new();
    LogReader::open(&t.dir.path().join("audit"), &key)
        .unwrap()
        .export(&mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let logouts: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "auth.logout")
        .collect();
    assert!(
        logouts
            .iter()
            .any(|e| e["outcome"] == "success" && e["attrs"]["initiator"] == "idp"),
        "{logouts:?}"
    );
    let reasons: Vec<&str> = logouts
        .iter()
        .filter(|e| e["outcome"] != "success")
        .filter_map(|e| e["attrs"]["reason"].as_str())
        .collect();
    for (threat, reason) in threats.iter().chain(&[("replay", "replayed")]) {
        assert!(
            reasons.contains(reason),
            "{threat}: no `{reason}` in {reasons:?}"
        );
    }
    assert!(!text.contains(BPK2_ERIKA), "personal data in the audit log");
}
