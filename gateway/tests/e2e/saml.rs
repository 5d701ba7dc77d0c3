//! BundID (DeutschlandID) login end to end through the gateway's SAML
//! service provider: the real `stadttor` binary, the real test SAML IdP
//! (tests/saml-idp: pysaml2 and xmlsec1, BundID-like: it verifies our
//! RSA-PSS AuthnRequests and signs its responses and assertions with
//! RSA-PSS, both with lxml + cryptography), a real HTTP client with a
//! cookie jar. The SP metadata the IdP trusts is the output of `stadttor
//! identity saml-metadata`. Negative tests are named after the threat.

use std::time::Duration;

use serde_json::Value;
use stadttor_gateway::authn::cookie::CookieKeys;
use testkit::backend::Backend;
use testkit::browser::{Browser, Response};
use testkit::jwt;
use testkit::saml_idp::{IdpOptions, SamlIdp, SpKeys, RSA_PSS_SHA256};
use testkit::{free_port, Gateway, TempDir, TestPki};

use crate::login::header;
use crate::BIN;

pub(crate) const BPK2_ERIKA: &str = "bPK2-ERIKA-7f3a9c21e4b8d05a";

/// A gateway with the BundID provider `bundid` and the routes `/buerger`
/// (substantial, forwards given_name), `/bauamt` (high) and `/` (anonymous).
pub(crate) struct Saml {
    pub(crate) dir: TempDir,
    pki: TestPki,
    pub(crate) gw: Gateway,
    pub(crate) idp: SamlIdp,
    _backend: Backend,
    base: String,
}

/// Where the gateway gets the IdP's metadata.
#[derive(Clone, Copy, PartialEq)]
enum Metadata {
    /// A file written before the start.
    File,
    /// The IdP's signed metadata URL, pinned to its signing certificate
    /// (`tampered`: changed after signing), cached in a file.
    Url { tampered: bool },
}

fn saml_provider_toml(dir: &TempDir, sp: &SpKeys, port: u16, metadata: &str) -> String {
    format!(
        r#"
[[identity.providers]]
name = "bundid"
protocol = "saml"
profile = "bundid"
display_name = "BundID"
{metadata}
idp_metadata_file = {idp_md:?}
entity_id = "{entity}"
acs_url = "https://localhost:{port}/.stadttor/acs/bundid"
signing_key = "file:{skey}"
signing_certificate = {scert:?}
decryption_key = "file:{dkey}"
decryption_certificate = {dcert:?}
attributes = ["bpk2", "given_name", "family_name"]
authn_methods = ["eID", "Elster"]
organization_display_name = "Stadt Musterstadt"
online_service_id = "musterstadt-4711"
"#,
        idp_md = dir.path().join("idp-metadata.xml").display().to_string(),
        entity = sp.entity_id,
        skey = sp.signing_key.display(),
        scert = sp.signing_cert.display().to_string(),
        dkey = sp.encryption_key.display(),
        dcert = sp.encryption_cert.display().to_string(),
    )
}

/// An OIDC provider beside BundID (never reached in these tests: it only
/// shares the choice page).
fn oidc_provider_toml(dir: &TempDir, port: u16) -> String {
    let secret = dir.write_secret("land-secret", "land-client-secret-0123456789");
    format!(
        r#"
[[identity.providers]]
name = "land"
display_name = "Servicekonto des Landes"
display_name_en = "State account"
issuer = "http://127.0.0.1:9/land"
client_id = "stadttor"
client_secret_file = {secret:?}
redirect_uri = "https://localhost:{port}/.stadttor/callback/land"
id_token_algs = ["ES256"]
allow_http = true
request_timeout = "1s"
"#,
        secret = secret.display().to_string(),
    )
}

impl Saml {
    async fn start(audit: bool) -> Self {
        Self::start_full(audit, Metadata::File, false, &IdpOptions::default()).await
    }

    /// Like `start`, the test IdP run with `options` (Single Logout).
    pub(crate) async fn start_with(audit: bool, options: &IdpOptions) -> Self {
        Self::start_full(audit, Metadata::File, false, options).await
    }

    async fn start_metadata(audit: bool, metadata: Metadata) -> Self {
        Self::start_full(audit, metadata, false, &IdpOptions::default()).await
    }

    /// `generic`: the provider uses the generic profile (no akdb extension,
    /// the NameID as subject, attributes by URI, an explicit `acr` map).
    /// The IdP signs with RSA-PSS whatever `options` say, like BundID.
    async fn start_full(
        audit: bool,
        metadata: Metadata,
        generic: bool,
        options: &IdpOptions,
    ) -> Self {
        let backend = Backend::start("app").await;
        let dir = TempDir::new("saml-e2e");
        let pki = TestPki::new(&dir, "main", &[]);
        let port = free_port();
        let acs = format!("https://localhost:{port}/.stadttor/acs/bundid");
        let sp = SpKeys::generate(&dir, "https://kommune.example/saml/sp", &acs);
        let session_keys = dir.path().join("session.keys");
        std::fs::write(
            &session_keys,
            format!("{}\n", CookieKeys::generate().unwrap()),
        )
        .unwrap();
        crate::login::set_mode_600(&session_keys);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let assertion_key = dir.path().join("assertion.p8");
        std::fs::write(&assertion_key, pkcs8.as_ref()).unwrap();
        let providers = saml_provider_toml(&dir, &sp, port, "{METADATA}")
            + oidc_provider_toml(&dir, port).as_str();
        let config = format!(
            r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:{port}"

{cert}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

{audit}
[identity]
session_key_file = {keys:?}
store = "file:{store}"
assertion_key = "file:{akey}"
{provider}

[[routes]]
name = "buerger"
upstream = "app"
path_prefix = "/buerger"
[routes.auth]
methods = ["session"]
providers = ["bundid"]
min_level = "substantial"
claims = {{ given_name = "given-name" }}

[[routes]]
name = "bauamt"
upstream = "app"
path_prefix = "/bauamt"
[routes.auth]
methods = ["session"]
providers = ["bundid"]
min_level = "high"

[[routes]]
name = "both"
upstream = "app"
path_prefix = "/both"
[routes.auth]
methods = ["session"]
providers = ["land", "bundid"]

[[routes]]
name = "public"
upstream = "app"
path_prefix = "/"
"#,
            cert = pki.certificate_toml(&[]),
            upstream = backend.addr,
            audit = if audit {
                crate::audit::audit_toml(&dir)
            } else {
                String::new()
            },
            keys = session_keys.display().to_string(),
            store = dir.path().join("sessions").display(),
            akey = assertion_key.display(),
            provider = providers,
        );
        let config = if generic {
            config
                .replace("profile = \"bundid\"", "profile = \"generic\"\nacr = { \"STORK-QAA-Level-3\" = \"substantial\", \"STORK-QAA-Level-4\" = \"high\" }")
                .replace(
                    "attributes = [\"bpk2\", \"given_name\", \"family_name\"]",
                    "attributes = [\"urn:oid:2.5.4.42\"]",
                )
                .replace("authn_methods = [\"eID\", \"Elster\"]\n", "")
                .replace("organization_display_name = \"Stadt Musterstadt\"\n", "")
                .replace("online_service_id = \"musterstadt-4711\"\n", "")
                .replace(
                    "claims = { given_name = \"given-name\" }",
                    "claims = { \"urn:oid:2.5.4.42\" = \"given-name\" }",
                )
        } else {
            config
        };
        let config_path = dir.write("stadttor.toml", &config.replace("{METADATA}", ""));
        // The SP metadata the operator uploads: from the CLI, not the harness.
        let out = std::process::Command::new(BIN)
            .args([
                "identity",
                "saml-metadata",
                "--provider",
                "bundid",
                "--config",
            ])
            .arg(&config_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "saml-metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&sp.metadata, &out.stdout).unwrap();
        // Like BundID: responses and assertions signed with RSA-PSS.
        let idp = SamlIdp::start_with(
            &dir,
            &sp,
            &IdpOptions {
                sign_alg: RSA_PSS_SHA256,
                ..options.clone()
            },
        );
        let config = match metadata {
            Metadata::File => {
                std::fs::write(dir.path().join("idp-metadata.xml"), idp.metadata()).unwrap();
                config.replace("{METADATA}", "")
            }
            Metadata::Url { tampered } => config.replace(
                "{METADATA}",
                &format!(
                    "idp_metadata_url = \"{}/metadata-signed{}\"\nidp_metadata_certificate = {:?}\nallow_http = true",
                    idp.base(),
                    if tampered { "?tampered" } else { "" },
                    idp.signing_cert.display().to_string()
                ),
            ),
        };
        let gw = Gateway::start(BIN, &dir, &config);
        Self {
            dir,
            pki,
            gw,
            idp,
            _backend: backend,
            base: format!("https://localhost:{port}"),
        }
    }

    pub(crate) fn browser(&self) -> Browser {
        Browser::builder()
            .trust_ca_pem(&self.pki.ca_pem)
            .resolve("localhost", self.gw.addr())
            .build()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Walks from `path` to the IdP's answer: the gateway's auto-post page,
    /// its form posted to the IdP as `user` with `threat`. Returns the
    /// IdP's page (the form to the ACS).
    pub(crate) async fn to_idp(
        &self,
        b: &Browser,
        path: &str,
        user: &str,
        threat: Option<&str>,
    ) -> Response {
        let chain = b.follow(&self.url(path)).await;
        let page = chain.last;
        assert_eq!(page.status, 200, "{page:?}");
        let csp = page
            .header("content-security-policy")
            .unwrap_or_default()
            .to_owned();
        assert!(csp.contains("form-action http://127.0.0.1:"), "{csp}");
        let mut form = page.forms().into_iter().next().expect("the auto-post form");
        assert!(
            form.action.as_str().starts_with(&self.idp.sso_url()),
            "{form:?}"
        );
        assert!(form.field("SAMLRequest").is_some() && form.field("RelayState").is_some());
        form.action.query_pairs_mut().append_pair("user", user);
        if let Some(t) = threat {
            form.action.query_pairs_mut().append_pair("threat", t);
        }
        let answer = b.submit(&form).await;
        assert_eq!(answer.status, 200, "IdP: {answer:?}");
        answer
    }

    /// Posts the IdP's answer to the ACS and follows the redirects.
    pub(crate) async fn to_acs(&self, b: &Browser, idp_page: &Response) -> testkit::browser::Chain {
        let form = idp_page.forms().into_iter().next().expect("the IdP's form");
        assert_eq!(form.action.as_str(), self.url("/.stadttor/acs/bundid"));
        let first = b.submit(&form).await;
        b.follow_from(first).await
    }
}

pub(crate) fn echoed(chain: &testkit::browser::Chain) -> Value {
    assert_eq!(chain.last.status, 200, "{chain:?}");
    chain.last.json()["headers"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_logs_in_with_bundid_and_the_service_gets_bpk2_and_trust_levels() {
    let t = Saml::start(false).await;
    let b = t.browser();
    let idp_page = t
        .to_idp(&b, "/buerger/antrag?x=1", "citizen-high", None)
        .await;
    // What the IdP read from our signed request (verified with lxml +
    // cryptography, independently of our libxml2/hsm signing path).
    let last = t.idp.last_request();
    assert_eq!(last["signature_verified_by"], "cryptography+lxml", "{last}");
    assert_eq!(
        last["signature_algorithm"],
        "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
    );
    assert_eq!(last["comparison"], "minimum");
    assert_eq!(last["requested_levels"][0], "STORK-QAA-Level-3");
    assert_eq!(last["force_authn"], false);
    assert_eq!(last["requested_attributes"].as_array().unwrap().len(), 3);
    let chain = t.to_acs(&b, &idp_page).await;
    assert!(
        chain.last.url.as_str().ends_with("/buerger/antrag?x=1"),
        "{chain:?}"
    );
    let h = echoed(&chain);
    assert_eq!(header(&h, "x-stadttor-sub"), Some(BPK2_ERIKA));
    assert_eq!(header(&h, "x-stadttor-level"), Some("high"));
    assert_eq!(header(&h, "x-stadttor-provider"), Some("bundid"));
    assert_eq!(header(&h, "x-stadttor-given-name"), Some("Erika"));
    // Data minimisation: the family name was released but this route
    // forwards only the given name.
    assert!(header(&h, "x-stadttor-family-name").is_none());
    let assertion = header(&h, "x-stadttor-assertion").unwrap();
    let jwks = b.get(&t.url("/.stadttor/jwks.json")).await.json();
    jwt::verify(assertion, &jwks["keys"][0]).unwrap();
    let (_, claims) = jwt::decode(assertion);
    assert_eq!(claims["sub"], BPK2_ERIKA);
    assert_eq!(claims["claims"]["given_name"], "Erika");
    assert_eq!(
        claims["claims"]["trust_levels"]["given_name"], "HOCH",
        "{claims}"
    );
    assert!(
        claims["claims"]["trust_levels"]
            .get("family_name")
            .is_none(),
        "{claims}"
    );
    // The session also opens the high route without another login.
    let again = b.follow(&t.url("/bauamt/")).await;
    assert_eq!(header(&echoed(&again), "x-stadttor-sub"), Some(BPK2_ERIKA));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level_below_the_route_minimum_is_refused_and_step_up_forces_authentication() {
    let t = Saml::start(false).await;
    let b = t.browser();
    // STORK-QAA-Level-1 (user name and password) is below eIDAS low.
    let idp_page = t.to_idp(&b, "/buerger/", "citizen-low", None).await;
    let refused = t.to_acs(&b, &idp_page).await;
    assert_eq!(refused.last.status, 403, "{refused:?}");
    // Substantial (ELSTER) opens /buerger; /bauamt then steps up.
    let idp_page = t.to_idp(&b, "/buerger/", "citizen-substantial", None).await;
    let ok = t.to_acs(&b, &idp_page).await;
    assert_eq!(
        header(&echoed(&ok), "x-stadttor-level"),
        Some("substantial")
    );
    let step = t.to_idp(&b, "/bauamt/", "citizen-substantial", None).await;
    let last = t.idp.last_request();
    assert_eq!(last["force_authn"], true, "{last}");
    assert_eq!(last["requested_levels"][0], "STORK-QAA-Level-4");
    let below = t.to_acs(&b, &step).await;
    assert_eq!(
        below.last.status, 403,
        "a substantial answer to a high request: {below:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_saml_response_is_refused() {
    let t = Saml::start(false).await;
    let b = t.browser();
    let idp_page = t.to_idp(&b, "/buerger/", "citizen-high", None).await;
    let form = idp_page.forms().into_iter().next().unwrap();
    let first = t.to_acs(&b, &idp_page).await;
    assert_eq!(first.last.status, 200);
    // The same POST again (an attacker who captured it, or a back button).
    let again = b.submit(&form).await;
    assert_eq!(again.status, 400, "{again:?}");
    // The IdP's `replay` knob: an old response for a new request (another
    // browser: the first one is logged in now).
    let b = t.browser();
    let idp_page = t
        .to_idp(&b, "/buerger/", "citizen-high", Some("replay"))
        .await;
    let replayed = t.to_acs(&b, &idp_page).await;
    assert_eq!(replayed.last.status, 400, "{replayed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_saml_responses_are_refused_with_audit_events() {
    use stadttor_audit::verify::LogReader;
    let mut t = Saml::start(true).await;
    // The whole corpus of the test IdP (tests/saml-idp/README.md), each
    // with the reason its audit event must carry.
    let threats = [
        ("xsw1", "wrapping"),
        ("xsw2", "wrapping"),
        ("xsw3", "wrapping"),
        ("xsw4", "wrapping"),
        ("xsw5", "wrapping"),
        ("xsw6", "wrapping"),
        ("xsw7", "wrapping"),
        ("xsw8", "wrapping"),
        ("comment-nameid", "malformed"),
        ("foreign-key", "bad_signature"),
        ("response-tampered", "bad_signature"),
        ("assertion-tampered", "bad_signature"),
        ("unsigned-assertion", "unsigned"),
        ("unsigned", "unsigned"),
        ("wrong-audience", "audience"),
        ("wrong-destination", "destination"),
        ("wrong-recipient", "recipient"),
        ("wrong-in-response-to", "in_response_to"),
        ("unsolicited", "unsolicited"),
        ("expired", "expired"),
        ("sha1", "algorithm"),
        ("rsa-1_5", "algorithm"),
        ("xxe", "malformed"),
        ("entity-expansion", "malformed"),
    ];
    for (threat, _) in threats {
        let b = t.browser();
        let idp_page = t
            .to_idp(&b, "/buerger/", "citizen-high", Some(threat))
            .await;
        let chain = t.to_acs(&b, &idp_page).await;
        assert_eq!(chain.last.status, 400, "{threat}: {chain:?}");
        assert!(!chain.last.body.contains("bPK2"), "{threat}");
    }
    // Missing form fields and a POST without the transaction cookie.
    let b = t.browser();
    let stray = b
        .post_form(
            &t.url("/.stadttor/acs/bundid"),
            &[("SAMLResponse", "PHg+"), ("RelayState", "x")],
        )
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
    let reasons: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "auth.login" && e["outcome"] != "success")
        .map(|e| e["attrs"]["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for (threat, reason) in threats {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{threat}: no `{reason}` in {reasons:?}"
        );
    }
    assert!(reasons.iter().any(|r| r == "no_transaction"), "{reasons:?}");
    assert!(
        !text.contains(BPK2_ERIKA) && !text.contains("Erika"),
        "personal data in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_down_fails_closed_with_a_clear_page() {
    let mut t = Saml::start(false).await;
    t.idp.stop();
    let b = t.browser();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let chain = b.follow(&t.url("/buerger/")).await;
        if chain.last.status == 503 {
            assert!(
                chain.last.body.contains("BundID") || chain.last.body.contains("Anmeld"),
                "{chain:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still sent to a dead IdP: {chain:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_metadata_from_a_url_is_used_only_when_signed_by_the_pinned_certificate() {
    let t = Saml::start_metadata(false, Metadata::Url { tampered: false }).await;
    let b = t.browser();
    // The first fetch runs right after the start.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.follow(&t.url("/buerger/")).await.last.status == 503 {
        assert!(std::time::Instant::now() < deadline, "{}", t.gw.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idp_page = t.to_idp(&b, "/buerger/", "citizen-high", None).await;
    let chain = t.to_acs(&b, &idp_page).await;
    assert_eq!(header(&echoed(&chain), "x-stadttor-sub"), Some(BPK2_ERIKA));
    // The verified copy is kept for the next start.
    let cached = std::fs::read_to_string(t.dir.path().join("idp-metadata.xml")).unwrap();
    assert!(cached.contains("<ds:Signature"), "{cached}");

    // Metadata changed after signing (an attacker on the way, or a
    // wrong file): never used; the citizen gets the 503 page, not the
    // attacker's SSO endpoint.
    let t = Saml::start_metadata(false, Metadata::Url { tampered: true }).await;
    let b = t.browser();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let chain = b.follow(&t.url("/buerger/")).await;
    assert_eq!(chain.last.status, 503, "{chain:?}");
    assert!(!chain.last.body.contains("evil.example"));
    assert!(t.gw.logs().contains("not refreshed"), "{}", t.gw.logs());
    assert!(!t.dir.path().join("idp-metadata.xml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_choice_page_offers_saml_and_oidc_providers_side_by_side() {
    let t = Saml::start(false).await;
    let b = t.browser();
    let chain = b.follow(&t.url("/both/")).await;
    assert_eq!(chain.last.status, 200, "{chain:?}");
    let body = &chain.last.body;
    assert!(
        body.contains("BundID") && body.contains("Servicekonto des Landes"),
        "{body}"
    );
    // Choosing BundID leads to the signed AuthnRequest for the IdP.
    let link = body
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|h| h.contains("provider=bundid"))
        .expect("a BundID link")
        .replace("&amp;", "&");
    let page = b.follow(&t.url(&link)).await.last;
    let form = page.forms().into_iter().next().expect("the auto-post form");
    assert!(
        form.action.as_str().starts_with(&t.idp.sso_url()),
        "{form:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_saml_profile_uses_the_name_id_and_sends_no_bundid_extension() {
    let t = Saml::start_full(false, Metadata::File, true, &IdpOptions::default()).await;
    let b = t.browser();
    let idp_page = t.to_idp(&b, "/buerger/", "citizen-high", None).await;
    let last = t.idp.last_request();
    assert!(last["akdb_version"].is_null(), "{last}");
    assert_eq!(last["requested_levels"][0], "STORK-QAA-Level-3");
    let chain = t.to_acs(&b, &idp_page).await;
    let h = echoed(&chain);
    let sub = header(&h, "x-stadttor-sub").unwrap();
    assert_ne!(
        sub, BPK2_ERIKA,
        "the generic profile's subject is the NameID"
    );
    assert!(!sub.is_empty());
    assert_eq!(header(&h, "x-stadttor-level"), Some("high"));
    assert_eq!(header(&h, "x-stadttor-given-name"), Some("Erika"));
}
