//! `stadttor policy …` on the real binary against a file store: exit codes
//! (0 ok, 2 refused, 64 unusable command line) and what officers read.
//! The four-eyes rules with a running gateway are in `e2e/policy.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use stadttor_policies::set::{DEFAULT_POLICY, DEFAULT_TESTS};
use testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("policy")
        .args(args)
        .output()
        .expect("run stadttor")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_set(dir: &Path, extra_policy: &str, extra_tests: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("policy.csv"),
        format!("{DEFAULT_POLICY}{extra_policy}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tests.csv"),
        format!("{DEFAULT_TESTS}{extra_tests}"),
    )
    .unwrap();
}

#[test]
fn usage_errors_exit_64() {
    // No store named.
    let o = run(&["history"]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(out(&o).contains("--store"), "{}", out(&o));
    // Unknown store kind.
    let o = run(&["--store", "/tmp/x", "history"]);
    assert_eq!(o.status.code(), Some(64));
    // Four eyes need two officers.
    let t = TempDir::new("policy-cli");
    let store = format!("file:{}", t.path().join("store").display());
    let o = run(&["--store", &store, "init", "--officers", "alice"]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(out(&o).contains("at least two officers"));
    // A config without [policies] is a configuration error: 78 (EX_CONFIG).
    let cfg = t.write("stadttor.toml", "[[listeners]]\nname = \"x\"\n");
    let o = run(&["--config", cfg.to_str().unwrap(), "history"]);
    assert_eq!(o.status.code(), Some(78));
}

#[test]
fn init_test_explain_export_diff_and_history() {
    let t = TempDir::new("policy-cli");
    let store = format!("file:{}", t.path().join("store").display());
    // An empty store has nothing to test.
    let o = run(&["--store", &store, "test"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("no active policy"), "{}", out(&o));

    let o = run(&["--store", &store, "init", "--officers", "alice,bob"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("policy version 1 installed"));
    // The embedded default's sample users are named, so nobody keeps them
    // by accident.
    assert!(
        out(&o)
            .contains("sample users beispiel:erika (amtsleitung), beispiel:max (sachbearbeitung)"),
        "{}",
        out(&o)
    );
    // Only once.
    let o = run(&["--store", &store, "init", "--officers", "alice,bob"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("already has versions"));

    let o = run(&["--store", &store, "test"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("version 1: 16 passed, 0 failed"),
        "{}",
        out(&o)
    );

    // A directory whose tests fail: each failing row is printed, exit 2.
    let bad = t.path().join("bad");
    write_set(
        &bad,
        "p, *, musterstadt, /fachverfahren/*, *, low, *, *, allow\n",
        "",
    );
    let o = run(&["test", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("FAIL tests.csv:9:"), "{text}");
    assert!(
        !text.contains("16 passed") && text.contains(" failed"),
        "{text}"
    );
    // A directory with a syntax error: file and line.
    let broken = t.path().join("broken");
    write_set(&broken, "p, *, musterstadt\n", "");
    let o = run(&["test", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("policy.csv:"), "{}", out(&o));

    // explain names the deciding rule.
    let o = run(&[
        "--store",
        &store,
        "explain",
        "--subject",
        "beispiel:max",
        "--domain",
        "musterstadt",
        "--path",
        "/fachverfahren/meldewesen/akte/1",
        "--method",
        "get",
        "--level",
        "substantial",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.starts_with("ALLOW (policy version 1): allowed_by_rule by line "),
        "{text}"
    );
    assert!(text.contains("sachbearbeitung"), "{text}");

    // export, change, diff against the version, propose and history.
    let work = t.path().join("work");
    let o = run(&["--store", &store, "export", "--to", work.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let mut policy = std::fs::read_to_string(work.join("policy.csv")).unwrap();
    policy.push_str("p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow\n");
    std::fs::write(work.join("policy.csv"), policy).unwrap();
    let o = run(&["--store", &store, "diff", "1", work.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(
        out(&o).trim(),
        "--- policy.csv\n+ p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow"
    );
    let o = run(&[
        "--store",
        &store,
        "propose",
        "--author",
        "alice",
        "--from",
        work.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let o = run(&["--store", &store, "history"]);
    let text = out(&o);
    assert!(text.starts_with("*   1"), "{text}");
    assert!(
        text.contains("pending proposal") && text.contains("by alice on version 1: +1 -0"),
        "{text}"
    );
}

#[test]
fn officers_named_by_certificate_dn() {
    // A DN has commas: `--officer` takes one name whole, the policy
    // quotes it, and four eyes work between the two DNs.
    const A: &str = "CN=Anna Beispiel,OU=Amt 10,O=Stadt Musterstadt,C=DE";
    const B: &str = "CN=Bernd Muster,OU=Amt 10,O=Stadt Musterstadt,C=DE";
    let t = TempDir::new("policy-cli");
    let store = format!("file:{}", t.path().join("store").display());
    let o = run(&["--store", &store, "init", "--officer", A, "--officer", B]);
    assert!(o.status.success(), "{}", out(&o));
    let work = t.path().join("work");
    let o = run(&["--store", &store, "export", "--to", work.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let mut policy = std::fs::read_to_string(work.join("policy.csv")).unwrap();
    assert!(
        policy.contains(&format!("g, \"{A}\", officer, stadttor-admin\n")),
        "{policy}"
    );
    policy.push_str("p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow\n");
    std::fs::write(work.join("policy.csv"), policy).unwrap();
    let o = run(&[
        "--store",
        &store,
        "propose",
        "--author",
        A,
        "--from",
        work.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let id = out(&o)
        .split_whitespace()
        .nth(1)
        .expect("proposal id")
        .to_owned();
    // Self-approval by the same DN is refused; the first RDN alone is no officer.
    let o = run(&["--store", &store, "approve", &id, "--officer", A]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let o = run(&[
        "--store",
        &store,
        "approve",
        &id,
        "--officer",
        "CN=Bernd Muster",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let o = run(&["--store", &store, "approve", &id, "--officer", B]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("version 2 is active"), "{}", out(&o));
}
