//! Policy enforcement end to end: the real `stadttor` binary, the real test
//! OpenID Provider, a browser-like client, the policy store on disk or in
//! PostgreSQL, and the officers' command line (`stadttor policy …`).
//!
//! What is proven here: requests are allowed and denied by the active
//! policy (wrong domain and a level below the rule's are denied; the
//! subject comes from the verified identity, a spoofed header changes
//! nothing); an empty store denies and `/readyz` says why; every decision
//! is in the signed audit log; officers' changes follow four eyes and are
//! enforced at once; a broken policy is refused while traffic goes on; two
//! gateways on one PostgreSQL store see an approved change within a second.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stadttor_gateway::authn::cookie::CookieKeys;
use stadttor_policies::set::{DEFAULT_POLICY, DEFAULT_TESTS};
use testkit::backend::Backend;
use testkit::browser::{Browser, Chain};
use testkit::oidc::{self, Level, TestOp, CITIZEN_HIGH, CITIZEN_LOW, STAFF_ANNA};
use testkit::{free_port, Gateway, TempDir, TestPki};

use crate::BIN;

const SECRET: &str = "test-client-secret-0123456789abcdef";
pub(crate) const ANNA: &str = "anna@kommune.example";
pub(crate) const BERND: &str = "bernd@kommune.example";

/// Runs `stadttor policy --store STORE ARGS…`.
pub(crate) fn cli(store: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("policy")
        .arg("--store")
        .arg(store)
        .args(args)
        .env("STADTTOR_LOG", "warn")
        .output()
        .expect("run stadttor policy")
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The proposal id in `propose`'s output.
pub(crate) fn proposal_id(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    out.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no proposal id in {out}"))
        .to_owned()
}

/// A policy directory: the default policy plus `extra` lines and tests.
pub(crate) fn policy_dir(dir: &TempDir, name: &str, extra: &[&str], tests: &[&str]) -> PathBuf {
    let mut policy = DEFAULT_POLICY.to_owned();
    let mut t = DEFAULT_TESTS.to_owned();
    for l in extra {
        policy.push_str(l);
        policy.push('\n');
    }
    for l in tests {
        t.push_str(l);
        t.push('\n');
    }
    dir.write(&format!("{name}/policy.csv"), &policy);
    dir.write(&format!("{name}/tests.csv"), &t);
    dir.path().join(name)
}

/// The first policy of the tests: the default for musterstadt, staff by
/// e-mail address, citizens on `/andere/*` in musterstadt only.
pub(crate) fn base_rules() -> (Vec<&'static str>, Vec<&'static str>) {
    (
        vec![
            "p, *, musterstadt, /andere/*, GET, low, *, *, allow",
            "g, anna@kommune.example, sachbearbeitung, musterstadt",
        ],
        vec![
            "x, musterstadt, /andere/a, GET, low, , , allow",
            "anna@kommune.example, musterstadt, /fachverfahren/meldewesen/akte/1, GET, substantial, , , allow",
        ],
    )
}

/// Writes the policy directory for `base_rules` plus `more`.
pub(crate) fn base_dir(dir: &TempDir, name: &str, more: &[&str], more_tests: &[&str]) -> PathBuf {
    let (mut p, mut t) = base_rules();
    p.extend_from_slice(more);
    t.extend_from_slice(more_tests);
    // The officers are part of the policy; `init` adds them for the first
    // version, later versions carry them on.
    let officers = [
        "g, anna@kommune.example, officer, stadttor-admin",
        "g, bernd@kommune.example, officer, stadttor-admin",
    ];
    if name != "init" {
        p.extend_from_slice(&officers);
    }
    policy_dir(dir, name, &p, &t)
}

pub(crate) fn set_mode_600(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A gateway with one provider `buerger` (the test OP) and these routes:
/// `/portal`, `/antraege` (domain musterstadt, subject `sub`),
/// `/fachverfahren` (musterstadt, subject `email`), `/andere` (domain
/// andere-stadt), `/` anonymous. Policies in `store`, audit log in the
/// temporary directory; `admin` is extra `[admin]` TOML.
pub(crate) struct Enforced {
    pub(crate) dir: TempDir,
    pub(crate) pki: TestPki,
    pub(crate) gw: Gateway,
    #[allow(dead_code)]
    pub(crate) op: TestOp,
    pub(crate) _backend: Backend,
    pub(crate) base: String,
    pub(crate) store: String,
    #[allow(dead_code)]
    pub(crate) admin_port: u16,
}

impl Enforced {
    pub(crate) async fn start(admin: &str, op_users_extra: Option<Value>) -> Self {
        let dir = TempDir::new("policy");
        let store = format!("file:{}", dir.path().join("policies").display());
        Self::start_in(dir, store, admin, op_users_extra).await
    }

    pub(crate) async fn start_in(
        dir: TempDir,
        store: String,
        admin: &str,
        extra_client: Option<Value>,
    ) -> Self {
        let backend = Backend::start("app").await;
        let pki = TestPki::new(&dir, "main", &[]);
        let port = free_port();
        let admin_port = free_port();
        let redirect = format!("https://localhost:{port}/.stadttor/callback/buerger");
        let mut client = oidc::basic_client("stadttor", SECRET, &redirect);
        client["redirect_uris"] = json!([
            redirect,
            format!("https://localhost:{admin_port}/.stadttor/callback/buerger")
        ]);
        let mut clients = vec![client];
        if let Some(c) = extra_client {
            clients.push(c);
        }
        let op = TestOp::start_with_ca(&dir, Value::Array(clients), &pki.ca_path);
        let secret = dir.write_secret("client-secret", SECRET);
        let session_keys = dir.path().join("session.keys");
        std::fs::write(
            &session_keys,
            format!("{}\n", CookieKeys::generate().unwrap()),
        )
        .unwrap();
        set_mode_600(&session_keys);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let assertion_key = dir.path().join("assertion.p8");
        std::fs::write(&assertion_key, pkcs8.as_ref()).unwrap();
        let admin = admin
            .replace("ADMIN_PORT", &admin_port.to_string())
            .replace(
                "ADMIN_CERT",
                &pki.certificate_toml(&[])
                    .replace("listeners.tls", "admin.tls"),
            );
        let config = format!(
            r#"
{admin}

[[listeners]]
name = "public"
listen = "127.0.0.1:{port}"

{cert}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

{audit}

[policies]
store = "{store}"
poll_interval = "1s"

[identity]
session_key_file = {keys:?}
store = "file:{sessions}"
assertion_key = "file:{akey}"

[[identity.providers]]
name = "buerger"
display_name = "Anmeldung"
issuer = "{issuer}"
client_id = "stadttor"
client_secret_file = {secret:?}
redirect_uri = "{redirect}"
scopes = ["openid", "profile", "email"]
id_token_algs = ["ES256"]
allow_http = true
request_timeout = "3s"

[[routes]]
name = "portal"
upstream = "app"
path_prefix = "/portal"
[routes.auth]
methods = ["session"]
providers = ["buerger"]
[routes.authz]
domain = "musterstadt"

[[routes]]
name = "antraege"
upstream = "app"
path_prefix = "/antraege"
[routes.auth]
methods = ["session"]
providers = ["buerger"]
[routes.authz]
domain = "musterstadt"

[[routes]]
name = "fachverfahren"
upstream = "app"
path_prefix = "/fachverfahren"
strip_prefix = true
[routes.auth]
methods = ["session"]
providers = ["buerger"]
[routes.authz]
domain = "musterstadt"
subject_claim = "email"

[[routes]]
name = "andere"
upstream = "app"
path_prefix = "/andere"
[routes.auth]
methods = ["session"]
providers = ["buerger"]
[routes.authz]
domain = "andere-stadt"

[[routes]]
name = "public"
upstream = "app"
path_prefix = "/"
audit = "off"
"#,
            cert = pki.certificate_toml(&[]),
            upstream = backend.addr,
            audit = crate::audit::audit_toml(&dir),
            keys = session_keys.display().to_string(),
            sessions = dir.path().join("sessions").display(),
            akey = assertion_key.display(),
            issuer = op.issuer(),
            secret = secret.display().to_string(),
        );
        let gw = Gateway::start(BIN, &dir, &config);
        Self {
            base: format!("https://localhost:{port}"),
            dir,
            pki,
            gw,
            op,
            _backend: backend,
            store,
            admin_port,
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

    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        cli(&self.store, args)
    }

    /// Installs the first policy (base rules, officers anna and bernd).
    pub(crate) fn init(&self) {
        let d = base_dir(&self.dir, "init", &[], &[]);
        let o = self.cli(&[
            "init",
            "--officers",
            &format!("{ANNA},{BERND}"),
            "--from",
            d.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }

    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = self.gw.admin_get("/readyz").await;
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not ready: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs `user` in at `level` through `path` and returns the walk.
    pub(crate) async fn login(
        &self,
        b: &Browser,
        path: &str,
        user: oidc::TestUser,
        level: Level,
    ) -> Chain {
        b.login_at_op(self.url(path).as_str(), user, level).await
    }
}

/// The request id on a page must be the response's own.
fn assert_forbidden_page(chain: &Chain) {
    let r = &chain.last;
    assert_eq!(r.status, 403, "{chain:?}");
    assert!(r.body.contains("Zugriff nicht erlaubt"), "{}", r.body);
    assert!(r.body.contains(r.header("x-request-id").unwrap()));
    assert!(!r.body.contains("<script"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_allows_denies_wrong_domain_and_level_too_low() {
    let t = Enforced::start("[admin]\nlisten = \"127.0.0.1:0\"", None).await;

    // An empty store: the gateway runs, denies every enforced route, and
    // /readyz says why.
    let (status, body) = t.gw.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("no active policy") && body.contains("stadttor policy init"),
        "{body}"
    );
    let b = t.browser();
    let chain = t
        .login(&b, "/portal/start", CITIZEN_HIGH, Level::Substantial)
        .await;
    assert_forbidden_page(&chain);
    // Anonymous routes are not affected.
    assert_eq!(b.get(&t.url("/frei")).await.status, 200);

    t.init();
    t.wait_ready().await;

    // Allowed: the citizen's portal (any verified identity, level low+).
    let r = b.follow(&t.url("/portal/start")).await;
    assert_eq!(r.last.status, 200, "{r:?}");
    assert_eq!(r.last.json()["path"], "/portal/start");
    // Denied by rule: staff procedures are not for citizens (the route
    // takes the subject from `email`, which a citizen does not have).
    let r = b.follow(&t.url("/fachverfahren/meldewesen/akte/1")).await;
    assert_forbidden_page(&r);
    // Wrong domain: the same kind of rule exists for musterstadt only.
    let r = b.follow(&t.url("/andere/info")).await;
    assert_forbidden_page(&r);
    // English page on request.
    let en = b
        .send(
            b.client()
                .get(t.url("/andere/info"))
                .header("accept-language", "en"),
        )
        .await;
    assert_eq!(en.status, 403);
    assert!(en.body.contains("Access not allowed"), "{}", en.body);
    // A spoofed identity header changes nothing: the subject comes from
    // the verified session only.
    let spoofed = b
        .send(
            b.client()
                .get(t.url("/fachverfahren/meldewesen/akte/1"))
                .header("x-stadttor-sub", ANNA)
                .header("x-stadttor-email", ANNA),
        )
        .await;
    assert_eq!(spoofed.status, 403);

    // Staff: subject from the e-mail claim, kept in the session cookie.
    let s = t.browser();
    let chain = t
        .login(
            &s,
            "/fachverfahren/meldewesen/akte/1",
            STAFF_ANNA,
            Level::Substantial,
        )
        .await;
    assert_eq!(chain.last.status, 200, "{chain:?}");
    assert_eq!(
        chain.last.json()["path"],
        "/meldewesen/akte/1",
        "strip_prefix after the decision"
    );
    // ... but maintenance is denied by a deny rule, which overrides.
    let r = s
        .follow(&t.url("/fachverfahren/meldewesen/wartung/reindex"))
        .await;
    assert_forbidden_page(&r);

    // Level too low: applications need "substantial"; the route itself
    // asks for no level, so authentication passes and the policy refuses.
    let low = t.browser();
    let chain = t
        .login(&low, "/antraege/wohnsitz", CITIZEN_LOW, Level::Low)
        .await;
    assert_forbidden_page(&chain);
    let ok = low.follow(&t.url("/portal/")).await;
    assert_eq!(ok.last.status, 200);
    let high = t.browser();
    let chain = t
        .login(
            &high,
            "/antraege/wohnsitz",
            CITIZEN_HIGH,
            Level::Substantial,
        )
        .await;
    assert_eq!(chain.last.status, 200, "{chain:?}");

    // `explain` names the rule that decided.
    let o = t.cli(&[
        "explain",
        "--subject",
        "x",
        "--domain",
        "musterstadt",
        "--path",
        "/antraege/wohnsitz",
        "--method",
        "GET",
        "--level",
        "low",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.starts_with("DENY (policy version 1)"), "{out}");
    assert!(
        out.contains("/antraege/*") && out.contains("level differs"),
        "{out}"
    );

    // Every decision is in the signed audit log: allowed ones in the
    // access event, refusals as `authz.decision` events; no subject in clear.
    let key = crate::audit::verifier_key_from_logs(&t.gw.logs());
    let mut gw = t.gw;
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).unwrap().success());
    let log_dir = t.dir.path().join("audit");
    stadttor_audit::verify::verify_dir(&log_dir, &key).unwrap();
    let reader = stadttor_audit::verify::LogReader::open(&log_dir, &key).unwrap();
    let mut out = Vec::new();
    reader.export(&mut out).unwrap();
    let log = String::from_utf8(out).unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .collect();
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "authz.decision")
        .collect();
    assert!(denied.len() >= 6, "{denied:?}");
    assert!(denied.iter().all(|e| e["outcome"] == "denied"));
    assert!(denied
        .iter()
        .any(|e| e["attrs"]["authz_reason"] == "no_policy"));
    assert!(denied
        .iter()
        .any(|e| e["attrs"]["authz_reason"] == "denied_by_rule"));
    assert!(
        denied
            .iter()
            .any(|e| e["tenant"] == "andere-stadt"
                && e["attrs"]["authz_reason"] == "no_matching_rule")
    );
    let allowed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "http.access" && e["attrs"]["authz_decision"] == "allow")
        .collect();
    assert!(allowed.len() >= 3, "{allowed:?}");
    assert!(allowed.iter().all(
        |e| e["attrs"]["policy_version"] == 1 && e["attrs"]["authz_line"].as_u64().unwrap() > 0
    ));
    let activated: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "policy.activated")
        .collect();
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert_eq!(activated[0]["attrs"]["version"], 1);
    for needle in [ANNA, CITIZEN_HIGH.sub, "wohnsitz", "akte"] {
        assert!(!log.contains(needle), "`{needle}` in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_four_eyes_on_the_command_line_and_hot_activation() {
    let t = Enforced::start("[admin]\nlisten = \"127.0.0.1:0\"", None).await;
    t.init();
    t.wait_ready().await;
    let b = t.browser();
    let chain = t
        .login(&b, "/andere/info", CITIZEN_HIGH, Level::Substantial)
        .await;
    assert_eq!(chain.last.status, 403);

    // Anna proposes to open /andere/* in andere-stadt.
    let change = base_dir(
        &t.dir,
        "change",
        &["p, *, andere-stadt, /andere/*, GET, low, *, *, allow"],
        &["x, andere-stadt, /andere/info, GET, low, , , allow"],
    );
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        change.to_str().unwrap(),
        "--comment",
        "andere",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let id = proposal_id(&o);
    assert!(
        text(&o).contains("+ p, *, andere-stadt, /andere/*"),
        "{}",
        text(&o)
    );
    // Proposed is not active.
    assert_eq!(b.get(&t.url("/andere/info")).await.status, 403);
    let o = t.cli(&["pending"]);
    assert!(
        text(&o).contains(&id) && text(&o).contains("failed"),
        "{}",
        text(&o)
    );

    // Self-approval is refused with the four-eyes reason, exit 2.
    let o = t.cli(&["approve", &id, "--officer", ANNA]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot approve it; a second officer must"),
        "{}",
        text(&o)
    );
    // A non-officer cannot approve either.
    let o = t.cli(&["approve", &id, "--officer", "mallory@kommune.example"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("is not an officer"), "{}", text(&o));

    // A second proposal on the same base becomes stale once the first is active.
    let other = base_dir(
        &t.dir,
        "other",
        &["p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow"],
        &["x, musterstadt, /bibliothek/a, GET, low, , , allow"],
    );
    let o = t.cli(&[
        "propose",
        "--author",
        BERND,
        "--from",
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stale = proposal_id(&o);

    // Bernd approves Anna's: active in this gateway within a second.
    let o = t.cli(&["approve", &id, "--officer", BERND]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("version 2 is active"), "{}", text(&o));
    let approved_at = Instant::now();
    loop {
        if b.get(&t.url("/andere/info")).await.status == 200 {
            break;
        }
        assert!(
            approved_at.elapsed() < Duration::from_secs(1),
            "change not enforced within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let o = t.cli(&["approve", &stale, "--officer", ANNA]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("stale proposal"), "{}", text(&o));

    // History and diff.
    let o = t.cli(&["history"]);
    let h = text(&o);
    assert!(
        h.contains(&format!("by {ANNA}, approved by {BERND}")),
        "{h}"
    );
    assert!(h.contains("Bootstrap"), "{h}");
    let o = t.cli(&["diff", "1", "2"]);
    assert!(
        text(&o).contains("+ p, *, andere-stadt, /andere/*, GET, low, *, *, allow"),
        "{}",
        text(&o)
    );

    // Emergency change: active at once, flagged, approved afterwards.
    let o = t.cli(&[
        "rollback",
        "1",
        "--author",
        BERND,
        "--emergency",
        "--comment",
        "incident",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let em = proposal_id(&o);
    let t0 = Instant::now();
    while b.get(&t.url("/andere/info")).await.status != 403 {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "emergency change not enforced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text(&t.cli(&["history"])).contains("EMERGENCY (awaiting approval)"));
    let o = t.cli(&["approve", &em, "--officer", ANNA]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&t.cli(&["history"])).contains("awaiting approval"));

    // Every change made on the command line is in the signed audit log too
    // (observed by the running gateway): proposals, the refused stale one
    // stays pending, approvals, the emergency change and its approval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let key = crate::audit::verifier_key_from_logs(&t.gw.logs());
    let mut gw = t.gw;
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).unwrap().success());
    let log_dir = t.dir.path().join("audit");
    stadttor_audit::verify::verify_dir(&log_dir, &key).unwrap();
    let mut out = Vec::new();
    stadttor_audit::verify::LogReader::open(&log_dir, &key)
        .unwrap()
        .export(&mut out)
        .unwrap();
    let log = String::from_utf8(out).unwrap();
    let changes: Vec<(String, String)> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "policy.proposal")
        .map(|e| {
            (
                e["attrs"]["proposal"].as_str().unwrap().to_owned(),
                e["attrs"]["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        changes.contains(&(stale.clone(), "proposed".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&(em.clone(), "emergency_activated".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&(em.clone(), "approved".into())),
        "{changes:?}"
    );
    assert!(
        changes.iter().filter(|(_, c)| c == "approved").count() >= 2,
        "{changes:?}"
    );
    assert!(
        !log.contains(ANNA) && !log.contains(BERND),
        "officers are pseudonymised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_is_refused_while_traffic_keeps_flowing() {
    let t = Enforced::start("[admin]\nlisten = \"127.0.0.1:0\"", None).await;
    t.init();
    t.wait_ready().await;
    let b = std::sync::Arc::new(t.browser());
    let chain = t
        .login(&b, "/portal/", CITIZEN_HIGH, Level::Substantial)
        .await;
    assert_eq!(chain.last.status, 200);

    // A client keeps asking while officers try broken policies.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = t.url("/portal/start");
    let traffic = {
        let stop = stop.clone();
        let b = b.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(b.get(&url).await.status);
            }
            statuses
        })
    };
    // Syntax: an unknown effect and too few fields, named by file and line.
    let broken = base_dir(
        &t.dir,
        "broken",
        &[
            "p, *, musterstadt, /x/*, GET, low, *, *, perhaps",
            "p, *, musterstadt",
        ],
        &[],
    );
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("invalid policy") && msg.contains("policy.csv:"),
        "{msg}"
    );
    // Semantics: its own tests fail (the rule opens more than it says).
    let lax = base_dir(
        &t.dir,
        "lax",
        &["p, *, musterstadt, /fachverfahren/*, *, low, *, *, allow"],
        &[],
    );
    let o = t.cli(&["propose", "--author", ANNA, "--from", lax.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("policy tests failed"), "{}", text(&o));
    let o = t.cli(&["test", lax.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("FAIL tests.csv:"), "{}", text(&o));
    // A policy that drops the officers cannot make four eyes impossible.
    let no_officers = policy_dir(&t.dir, "no-officers", &[], &[]);
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        no_officers.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("at least two officers"), "{}", text(&o));

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = traffic.await.unwrap();
    assert!(statuses.len() > 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Nothing changed in the store.
    assert_eq!(
        t.cli(&["history"])
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        1
    );
}

/// Two gateways, one PostgreSQL store: a change approved once is enforced
/// by both within a second. Client-certificate routes, so no OP is needed.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_postgres_store_see_an_approved_change_within_a_second() {
    use testkit::client::{self, Proto};
    let schema = format!(
        "pol_e2e_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = std::env::var("STADTTOR_POLICIES_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    struct Drop_(String, String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            // The blocking client runs a runtime of its own: not on this one.
            let (url, schema) = (self.0.clone(), self.1.clone());
            let _ = std::thread::spawn(move || {
                if let Ok(s) = stadttor_policies::PgStore::connect(&url, &schema) {
                    let _ = s.drop_schema();
                }
            })
            .join();
        }
    }
    let _cleanup = Drop_(url.clone(), schema.clone());
    let backend = Backend::start("app").await;
    let dir = TempDir::new("policy-pg");
    let pki = TestPki::new(&dir, "main", &[]);
    let store_args = |args: &[&str]| {
        Command::new(BIN)
            .args(["policy", "--store", &url, "--schema", &schema])
            .args(args)
            .output()
            .unwrap()
    };
    let init = base_dir(&dir, "init", &[], &[]);
    let o = store_args(&[
        "init",
        "--officers",
        &format!("{ANNA},{BERND}"),
        "--from",
        init.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mut gws = Vec::new();
    for i in 0..2 {
        let cfg = format!(
            r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[listeners.tls.client_auth]
ca = {ca:?}
{cert}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[policies]
store = "{url}"
schema = "{schema}"
poll_interval = "10s"

[identity]
session_key_file = {keys:?}
store = "file:{sessions}"
assertion_key = "file:{akey}"

[[routes]]
name = "bibliothek"
upstream = "app"
path_prefix = "/bibliothek"
[routes.auth]
methods = ["client_cert"]
client_cert_level = "substantial"
[routes.authz]
domain = "musterstadt"
"#,
            ca = pki.ca_path.display().to_string(),
            cert = pki.certificate_toml(&[]),
            upstream = backend.addr,
            keys = {
                let p = dir.path().join(format!("session{i}.keys"));
                std::fs::write(&p, format!("{}\n", CookieKeys::generate().unwrap())).unwrap();
                set_mode_600(&p);
                p.display().to_string()
            },
            sessions = dir.path().join(format!("sessions{i}")).display(),
            akey = {
                let rng = ring::rand::SystemRandom::new();
                let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &rng,
                )
                .unwrap();
                let p = dir.path().join(format!("assertion{i}.p8"));
                std::fs::write(&p, pkcs8.as_ref()).unwrap();
                p.display().to_string()
            },
        );
        let path = dir.write(&format!("gw{i}.toml"), &cfg);
        gws.push(Gateway::start_file(BIN, &path));
    }
    let tls = std::sync::Arc::new(client::tls_config(
        &pki.ca_pem,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
        Proto::H1,
    ));
    let status = |gw: &Gateway| {
        let tls = tls.clone();
        let addr = gw.addr();
        async move {
            client::get(tls, addr, "localhost", Proto::H1, "/bibliothek/katalog")
                .await
                .unwrap()
                .status
        }
    };
    // Both on version 1: no rule for the library, denied (plain 403: no browser route).
    for gw in &gws {
        assert!(gw.wait_for_log("policy version active", Duration::from_secs(5)));
        assert_eq!(status(gw).await, 403);
    }
    let change = base_dir(
        &dir,
        "library",
        &["p, *, musterstadt, /bibliothek/*, GET, substantial, *, +, allow"],
        &["x, musterstadt, /bibliothek/katalog, GET, substantial, , cert-1, allow"],
    );
    let o = store_args(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        change.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let id = proposal_id(&o);
    let o = store_args(&["approve", &id, "--officer", BERND]);
    assert!(o.status.success(), "{}", text(&o));
    let approved = Instant::now();
    let mut seen = [None, None];
    while seen.iter().any(Option::is_none) {
        for (i, gw) in gws.iter().enumerate() {
            if seen[i].is_none() && status(gw).await == 200 {
                seen[i] = Some(approved.elapsed());
            }
        }
        assert!(
            approved.elapsed() < Duration::from_secs(1),
            "not both gateways within 1 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("approved change enforced after {seen:?}");
    for gw in &gws {
        assert!(
            gw.wait_for_log("to=2", Duration::from_secs(1)),
            "{}",
            gw.logs()
        );
    }
}

// ------------------------------------------------------------ admin listener

/// `[admin]` over HTTPS with officer logins through the test OP, officers
/// named by their e-mail claim.
pub(crate) const OFFICER_ADMIN: &str = r#"[admin]
listen = "127.0.0.1:ADMIN_PORT"
officer_provider = "buerger"
officer_subject_claim = "email"
officer_redirect_uri = "https://localhost:ADMIN_PORT/.stadttor/callback/buerger"
ADMIN_CERT"#;

impl Enforced {
    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.admin_port)
    }

    pub(crate) fn admin_browser(&self) -> Browser {
        Browser::builder()
            .trust_ca_pem(&self.pki.ca_pem)
            .resolve("localhost", self.gw.admin.unwrap())
            .build()
    }

    /// Logs an officer in on the admin listener; returns the browser and
    /// the session's CSRF token (read from the page's forms).
    pub(crate) async fn officer(&self, user: oidc::TestUser) -> (Browser, String) {
        let b = self.admin_browser();
        let chain = b
            .login_at_op(self.admin_url("/policy").as_str(), user, Level::Substantial)
            .await;
        assert_eq!(chain.last.status, 200, "{chain:?}");
        assert!(
            chain.last.body.contains("Angemeldet als"),
            "{}",
            chain.last.body
        );
        let csrf = chain.last.forms()[0].field("csrf").unwrap().to_owned();
        (b, csrf)
    }

    pub(crate) async fn api(
        &self,
        b: &Browser,
        csrf: Option<&str>,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let mut rb = b
            .client()
            .post(self.admin_url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(c) = csrf {
            rb = rb.header("x-csrf-token", c);
        }
        let r = b.send(rb).await;
        let v = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
        (r.status, v)
    }

    /// The policy text of `dir` as the API's proposal body.
    pub(crate) fn proposal_body(dir: &Path, comment: &str) -> Value {
        json!({
            "policy": std::fs::read_to_string(dir.join("policy.csv")).unwrap(),
            "tests": std::fs::read_to_string(dir.join("tests.csv")).unwrap(),
            "comment": comment,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_four_eyes_through_the_admin_api_and_broken_upload_while_traffic_flows() {
    let t = Enforced::start(OFFICER_ADMIN, None).await;
    t.init();
    // Health endpoints keep working over HTTPS.
    let ab = t.admin_browser();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ab.get(&t.admin_url("/readyz")).await.status != 200 {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ab
        .get(&t.admin_url("/metrics"))
        .await
        .body
        .contains("stadttor"));
    // No session: the API answers 401, the page starts a login.
    let (status, _) = t.api(&ab, None, "/api/policy/proposals", &json!({})).await;
    assert_eq!(status, 401);
    let r = ab.get(&t.admin_url("/policy")).await;
    assert_eq!(r.status, 303);
    assert!(r.location().unwrap().as_str().starts_with(&t.op.issuer()));

    let (anna, anna_csrf) = t.officer(STAFF_ANNA).await;
    let (bernd, bernd_csrf) = t.officer(oidc::STAFF_BERND).await;
    // Officer session cookie: __Host-, Secure, HttpOnly, SameSite=Lax.
    let c = anna.cookies_for(&t.admin_url("/"));
    assert!(
        c.iter().any(|(n, _)| n == "__Host-stadttor-officer"),
        "{c:?}"
    );

    // A citizen keeps using the portal during everything below.
    let citizen = std::sync::Arc::new(t.browser());
    let chain = t
        .login(&citizen, "/andere/x", CITIZEN_HIGH, Level::Substantial)
        .await;
    assert_eq!(chain.last.status, 403);

    let change = base_dir(
        &t.dir,
        "api-change",
        &["p, *, andere-stadt, /andere/*, GET, low, *, *, allow"],
        &["x, andere-stadt, /andere/info, GET, low, , , allow"],
    );
    let body = Enforced::proposal_body(&change, "andere-stadt");
    // CSRF: a POST without the session's token is refused.
    let (status, _) = t.api(&anna, None, "/api/policy/proposals", &body).await;
    assert_eq!(status, 403);
    let (status, _) = t
        .api(&anna, Some("forged"), "/api/policy/proposals", &body)
        .await;
    assert_eq!(status, 403);
    let (status, v) = t
        .api(&anna, Some(&anna_csrf), "/api/policy/proposals", &body)
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["tests_passed"].as_u64().unwrap(), 19);

    // Self-approval refused.
    let approve = format!("/api/policy/proposals/{id}/approve");
    let (status, v) = t.api(&anna, Some(&anna_csrf), &approve, &json!({})).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("cannot approve it"),
        "{v}"
    );
    assert_eq!(citizen.get(&t.url("/andere/x")).await.status, 403);

    // Bernd sees it (GET /api/policy) with passing tests and its diff.
    let r = bernd.get(&t.admin_url("/api/policy")).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["active_version"], 1);
    let open = &v["open"][0];
    assert_eq!(open["id"], id.as_str());
    assert_eq!(open["tests"]["failures"], json!([]));
    assert_eq!(
        open["diff"]["policy"]["added"],
        json!(["p, *, andere-stadt, /andere/*, GET, low, *, *, allow"])
    );

    // Two more proposals on version 1; after Bernd approves Anna's, the
    // second is stale.
    let other = base_dir(
        &t.dir,
        "api-other",
        &["p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow"],
        &["x, musterstadt, /bibliothek/a, GET, low, , , allow"],
    );
    let (status, v) = t
        .api(
            &bernd,
            Some(&bernd_csrf),
            "/api/policy/proposals",
            &Enforced::proposal_body(&other, "bib"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let stale = v["id"].as_str().unwrap().to_owned();
    let (status, v) = t.api(&bernd, Some(&bernd_csrf), &approve, &json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    // Active in this gateway at once.
    assert_eq!(citizen.get(&t.url("/andere/x")).await.status, 200);
    let (status, v) = t
        .api(
            &anna,
            Some(&anna_csrf),
            &format!("/api/policy/proposals/{stale}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("stale proposal"),
        "{v}"
    );

    // Broken uploads are refused with the reason while traffic goes on.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, citizen, url) = (stop.clone(), citizen.clone(), t.url("/andere/x"));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(citizen.get(&url).await.status);
            }
            statuses
        })
    };
    let mut broken = Enforced::proposal_body(&change, "broken");
    broken["policy"] = json!(format!(
        "{}p, *, musterstadt, /x/*, GET, low, *, *, maybe\n",
        broken["policy"].as_str().unwrap()
    ));
    let (status, v) = t
        .api(&anna, Some(&anna_csrf), "/api/policy/proposals", &broken)
        .await;
    assert_eq!(status, 422, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("invalid policy") && err.contains("policy.csv:"),
        "{err}"
    );
    let mut failing = Enforced::proposal_body(&change, "failing");
    failing["tests"] = json!(format!(
        "{}x, andere-stadt, /andere/info, GET, low, , , deny\n",
        failing["tests"].as_str().unwrap()
    ));
    let (status, v) = t
        .api(&anna, Some(&anna_csrf), "/api/policy/proposals", &failing)
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("policy tests failed"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = traffic.await.unwrap();
    assert!(
        statuses.len() > 5 && statuses.iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    // Still version 2.
    let r = bernd.get(&t.admin_url("/api/policy")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["active_version"],
        2
    );

    // A form POST without the CSRF field is refused too.
    let r = bernd
        .post_form(
            &t.admin_url("/policy/reject"),
            &[("id", &stale), ("reason", "x")],
        )
        .await;
    assert_eq!(r.status, 403);
    // The page rejects the stale one with a reason.
    let r = bernd
        .post_form(
            &t.admin_url("/policy/reject"),
            &[("id", &stale), ("reason", "stale"), ("csrf", &bernd_csrf)],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let page = bernd.follow(&t.admin_url("/policy?done=rejected")).await;
    assert!(page.last.body.contains("Abgelehnt."), "{}", page.last.body);
    assert!(!page.last.body.contains(&stale));
}

/// The approval page in a real headless browser (Debian's chromium driven
/// by playwright-core, `tests/browser/approve.mjs`): officer Bernd logs in
/// through the real test OP, sees Anna's pending proposal with its diff
/// and passing tests, approves it, and the gateway enforces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_page_in_headless_chromium() {
    let chromium = testkit::require_tool("chromium", "chromium");
    let node = testkit::require_tool("node", "nodejs");
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let t = Enforced::start(OFFICER_ADMIN, None).await;
    t.init();
    let citizen = t.browser();
    let chain = t
        .login(&citizen, "/andere/x", CITIZEN_HIGH, Level::Substantial)
        .await;
    assert_eq!(chain.last.status, 403);
    let change = base_dir(
        &t.dir,
        "page-change",
        &["p, *, andere-stadt, /andere/*, GET, low, *, *, allow"],
        &["x, andere-stadt, /andere/info, GET, low, , , allow"],
    );
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        change.to_str().unwrap(),
        "--comment",
        "Andere Stadt öffnen",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let id = proposal_id(&o);

    let shot = t.dir.path().join("approval.png");
    let out = Command::new(node)
        .arg(browser_dir.join("approve.mjs"))
        .env("CHROMIUM", &chromium)
        .env("ADMIN_URL", t.admin_url(""))
        .env("OFFICER", oidc::STAFF_BERND.name)
        .env("PROPOSAL", &id)
        .env(
            "EXPECT_ADDED",
            "p, *, andere-stadt, /andere/*, GET, low, *, *, allow",
        )
        .env("SCREENSHOT", &shot)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "browser test failed:\n{log}");
    assert!(log.contains("approved: version 2"), "{log}");
    if let Ok(keep) = std::env::var("STADTTOR_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
    // The approved policy is enforced.
    assert_eq!(citizen.get(&t.url("/andere/x")).await.status, 200);
    let h = text(&t.cli(&["history"]));
    assert!(
        h.contains(&format!("by {ANNA}, approved by {BERND}")),
        "{h}"
    );
}
