//! Four eyes that one officer cannot break (issue 12, part 3), end to end:
//! the real `stadttor` binary, the real test OpenID Provider, the
//! officers' command line, the JSON API and the page of the admin listener.
//!
//! The attack: officer Anna alone proposes an *emergency* change whose
//! policy replaces the officer list (Anna and an address nobody checks)
//! and allows everything. Proven here: it is refused on every interface
//! and nothing changes; an emergency change that may go live (one that
//! leaves the officers alone) is undone by the second officer's reject,
//! which restores the replaced version as a new activation, enforced at
//! once. And an account that merely *claims* an officer's e-mail address
//! (`email_verified` false) is neither an officer nor that policy subject.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stadttor_policies::set::DEFAULT_POLICY;
use testkit::browser::Browser;
use testkit::oidc::{self, Level, CITIZEN_LOW, STAFF_ANNA};
use testkit::TempDir;

use crate::policy::{base_rules, proposal_id, text, Enforced, ANNA, BERND, OFFICER_ADMIN};

/// The route the allow-everything rule opens: `/antraege/*` needs level
/// substantial, a citizen at level low is denied by the first policy.
const PROBE: &str = "/antraege/wohnsitz";

/// A policy directory: the first policy's rules, these officers, the
/// allow-everything rule, and a tests table that agrees with it (an
/// attacker writes the tests too).
fn allow_all_dir(dir: &TempDir, name: &str, officers: &[&str]) -> PathBuf {
    let (rules, _) = base_rules();
    let mut policy = DEFAULT_POLICY.to_owned();
    for l in rules {
        policy.push_str(&format!("{l}\n"));
    }
    for o in officers {
        policy.push_str(&format!("g, {o}, officer, stadttor-admin\n"));
    }
    policy.push_str("p, *, musterstadt, /*, *, *, *, *, allow\n");
    dir.write(&format!("{name}/policy.csv"), &policy);
    dir.write(
        &format!("{name}/tests.csv"),
        "subject, domain, path, method, level, provider, cert, expect\n\
         anyone, musterstadt, /antraege/wohnsitz, GET, low, , , allow\n",
    );
    dir.path().join(name)
}

/// The attack of issue 12: officers Anna and nobody@x, everything allowed.
fn takeover_dir(dir: &TempDir) -> PathBuf {
    allow_all_dir(dir, "takeover", &[ANNA, "nobody@x"])
}

/// Waits up to 1 s until `url` answers `status` for `b`.
async fn enforced_within_a_second(b: &Browser, url: &str, status: u16, what: &str) {
    let t0 = Instant::now();
    loop {
        let got = b.get(url).await.status;
        if got == status {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "{what}: {url} answers {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gateway with the HTTPS admin listener is ready.
pub(crate) async fn wait_ready_https(t: &Enforced) {
    let ab = t.admin_browser();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ab.get(&t.admin_url("/readyz")).await.status != 200 {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn citizen(t: &Enforced) -> Browser {
    let b = t.browser();
    let chain = t.login(&b, PROBE, CITIZEN_LOW, Level::Low).await;
    assert_eq!(chain.last.status, 403, "{chain:?}");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_officer_cannot_take_over_through_an_emergency_change_on_the_command_line() {
    let t = Enforced::start("[admin]\nlisten = \"127.0.0.1:0\"", None).await;
    t.init();
    t.wait_ready().await;
    let b = citizen(&t).await;
    let probe = t.url(PROBE);

    // The takeover as an emergency change: refused with the reason, exit 2.
    let takeover = takeover_dir(&t.dir);
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        takeover.to_str().unwrap(),
        "--emergency",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("refused as an emergency change")
            && out.contains("changes the officers")
            && out.contains("nobody@x")
            && out.contains(BERND),
        "{out}"
    );
    // Nothing changed: still version 1, nothing open, still denied.
    let h = text(&t.cli(&["history"]));
    assert_eq!(h.lines().count(), 1, "{h}");
    assert!(text(&t.cli(&["pending"])).contains("no open proposals"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.get(&probe).await.status, 403);

    // As an ordinary proposal it waits for Bernd, a second officer of the
    // active version; nobody@x cannot approve it.
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        takeover.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let id = proposal_id(&o);
    let o = t.cli(&["approve", &id, "--officer", "nobody@x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not an officer"), "{}", text(&o));
    let o = t.cli(&["reject", &id, "--officer", BERND, "--reason", "takeover"]);
    assert!(o.status.success(), "{}", text(&o));

    // What one officer may still do alone (the officers unchanged) goes
    // live at once — and the second officer's reject restores version 1.
    let allow_all = allow_all_dir(&t.dir, "allow-all", &[ANNA, BERND]);
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        allow_all.to_str().unwrap(),
        "--emergency",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("version 2 is active now"), "{}", text(&o));
    let em = proposal_id(&o);
    enforced_within_a_second(&b, &probe, 200, "emergency change").await;
    // A second emergency change on top is refused while this one is open.
    let o = t.cli(&["rollback", "1", "--author", ANNA, "--emergency"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("waits for a second officer"),
        "{}",
        text(&o)
    );

    let o = t.cli(&[
        "reject",
        &em,
        "--officer",
        BERND,
        "--reason",
        "allows everything",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("emergency change reverted: version 3 is active"),
        "{}",
        text(&o)
    );
    enforced_within_a_second(&b, &probe, 403, "restored version").await;
    // No history lost: 1, the emergency 2, and 3 restoring 1.
    let h = text(&t.cli(&["history"]));
    let lines: Vec<&str> = h.lines().collect();
    assert_eq!(lines.len(), 3, "{h}");
    assert!(
        lines[1].contains("EMERGENCY") && !lines[1].contains("awaiting"),
        "{h}"
    );
    assert!(
        lines[2].starts_with('*')
            && lines[2].contains("Rollback { to: 1 }")
            && lines[2].contains(&format!("by {BERND}"))
            && lines[2].contains("allows everything"),
        "{h}"
    );
    let o = t.cli(&["diff", "1", "3"]);
    assert_eq!(text(&o), "no changes\n", "version 3 is version 1 again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_officer_cannot_take_over_through_the_admin_api_and_a_reject_restores() {
    let t = Enforced::start(OFFICER_ADMIN, None).await;
    t.init();
    wait_ready_https(&t).await;
    let b = citizen(&t).await;
    let probe = t.url(PROBE);
    let (anna, anna_csrf) = t.officer(STAFF_ANNA).await;
    let (bernd, bernd_csrf) = t.officer(oidc::STAFF_BERND).await;
    let propose = "/api/policy/proposals";

    // The takeover as an emergency change through the API: 403, the reason.
    let mut body = Enforced::proposal_body(&takeover_dir(&t.dir), "incident");
    body["emergency"] = json!(true);
    let (status, v) = t.api(&anna, Some(&anna_csrf), propose, &body).await;
    assert_eq!(status, 403, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("refused as an emergency change") && err.contains("changes the officers"),
        "{err}"
    );
    let state: Value =
        serde_json::from_str(&bernd.get(&t.admin_url("/api/policy")).await.body).unwrap();
    assert_eq!(state["active_version"], 1, "{state}");
    assert_eq!(state["open"], json!([]), "{state}");
    assert_eq!(state["officers"], json!([ANNA, BERND]), "{state}");
    assert_eq!(b.get(&probe).await.status, 403);

    // An emergency change that leaves the officers alone goes live ...
    let mut body = Enforced::proposal_body(&allow_all_dir(&t.dir, "api-all", &[ANNA, BERND]), "x");
    body["emergency"] = json!(true);
    let (status, v) = t.api(&anna, Some(&anna_csrf), propose, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], json!({"state": "activated", "version": 2}));
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(b.get(&probe).await.status, 200);
    // ... a second one on top is refused (409) ...
    let (status, v) = t.api(&anna, Some(&anna_csrf), propose, &body).await;
    assert_eq!(status, 409, "{v}");
    // ... and Bernd's reject through the API restores version 1 as 3.
    let (status, v) = t
        .api(
            &bernd,
            Some(&bernd_csrf),
            &format!("/api/policy/proposals/{id}/reject"),
            &json!({"reason": "allows everything"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 3, "{v}");
    assert_eq!(b.get(&probe).await.status, 403);

    // The same through the officers' page: Anna's emergency change, then
    // Bernd's reject button (a form POST with the CSRF token).
    let (status, v) = t.api(&anna, Some(&anna_csrf), propose, &body).await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(b.get(&probe).await.status, 200);
    let page = bernd.follow(&t.admin_url("/policy")).await.last;
    assert!(
        page.body.contains(&format!("data-proposal=\"{id}\""))
            && page.body.contains("NOTFALLÄNDERUNG, bereits aktiv"),
        "{}",
        page.body
    );
    let r = bernd
        .post_form(
            &t.admin_url("/policy/reject"),
            &[
                ("id", &id),
                ("reason", "allows everything"),
                ("csrf", &bernd_csrf),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let page = bernd
        .follow(&t.admin_url("/policy?done=rejected"))
        .await
        .last;
    assert!(page.body.contains("Abgelehnt."), "{}", page.body);
    assert!(!page.body.contains(&format!("data-proposal=\"{id}\"")));
    assert_eq!(b.get(&probe).await.status, 403);

    // Every version is kept: 1, 2 (emergency), 3 (restores 1), 4
    // (emergency), 5 (restores 3).
    let h: Value =
        serde_json::from_str(&bernd.get(&t.admin_url("/api/policy/history")).await.body).unwrap();
    let kinds: Vec<(u64, bool, bool, Value)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["meta"]["version"].as_u64().unwrap(),
                e["meta"]["emergency"].as_bool().unwrap(),
                e["active"].as_bool().unwrap(),
                e["meta"]["kind"].clone(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 5, "{h}");
    assert!(kinds[1].1 && kinds[3].1, "{h}");
    for ((_, emergency, _, kind), to) in [(&kinds[2], 1), (&kinds[4], 3)] {
        assert!(!emergency, "{h}");
        assert_eq!(*kind, json!({"type": "rollback", "to": to}), "{h}");
    }
    assert!(kinds[4].2, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_email_is_neither_an_officer_nor_a_policy_subject() {
    let t = Enforced::start(OFFICER_ADMIN, None).await;
    t.init();
    wait_ready_https(&t).await;

    // The staff route takes its subject from `email`: Anna may read the
    // record, an account that only claims her address may not.
    let record = "/fachverfahren/meldewesen/akte/1";
    let real = t.browser();
    let chain = t.login(&real, record, STAFF_ANNA, Level::Substantial).await;
    assert_eq!(chain.last.status, 200, "{chain:?}");
    let fake = t.browser();
    let chain = t
        .login(&fake, record, oidc::STAFF_UNVERIFIED, Level::Substantial)
        .await;
    assert_eq!(chain.last.status, 403, "{chain:?}");

    // The officers' login refuses it with a page that says why, and no
    // officer session is set.
    let b = t.admin_browser();
    let chain = b
        .login_at_op(
            t.admin_url("/policy").as_str(),
            oidc::STAFF_UNVERIFIED,
            Level::Substantial,
        )
        .await;
    assert_eq!(chain.last.status, 403, "{chain:?}");
    assert!(
        chain.last.body.contains("Anmeldung abgelehnt")
            && chain.last.body.contains("email_verified"),
        "{}",
        chain.last.body
    );
    assert!(
        !b.cookies_for(&t.admin_url("/"))
            .iter()
            .any(|(n, _)| n == "__Host-stadttor-officer"),
        "no officer session"
    );
    let r = b.get(&t.admin_url("/api/policy")).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

/// The officers' page in a real headless browser (Debian's chromium driven
/// by playwright-core, `tests/browser/reject.mjs`): Anna's takeover as an
/// emergency change is refused on the command line; the emergency change
/// she may make alone goes live; Bernd logs in through the real test OP,
/// sees it flagged on the page, rejects it with a reason, and the replaced
/// version is enforced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_on_the_officer_page_in_headless_chromium_restores_the_replaced_version() {
    let chromium = testkit::require_tool("chromium", "chromium");
    let node = testkit::require_tool("node", "nodejs");
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let t = Enforced::start(OFFICER_ADMIN, None).await;
    t.init();
    wait_ready_https(&t).await;
    let b = citizen(&t).await;
    let probe = t.url(PROBE);
    let takeover = takeover_dir(&t.dir);
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        takeover.to_str().unwrap(),
        "--emergency",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let allow_all = allow_all_dir(&t.dir, "page-all", &[ANNA, BERND]);
    let o = t.cli(&[
        "propose",
        "--author",
        ANNA,
        "--from",
        allow_all.to_str().unwrap(),
        "--emergency",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let id = proposal_id(&o);
    enforced_within_a_second(&b, &probe, 200, "emergency change").await;

    let out = std::process::Command::new(node)
        .arg(browser_dir.join("reject.mjs"))
        .env("CHROMIUM", &chromium)
        .env("ADMIN_URL", t.admin_url(""))
        .env("OFFICER", oidc::STAFF_BERND.name)
        .env("PROPOSAL", &id)
        .env("REASON", "erlaubt alles")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "browser test failed:\n{log}");
    assert!(log.contains("rejected: version 3"), "{log}");
    enforced_within_a_second(&b, &probe, 403, "restored version").await;
    let h = text(&t.cli(&["history"]));
    assert!(
        h.lines().last().unwrap().contains("Rollback { to: 1 }") && h.contains("erlaubt alles"),
        "{h}"
    );
}
