//! Config tests: the shipped examples parse, every table rejects unknown
//! keys, every rejected fixture fails for its stated reason, all problems of
//! a file are reported together, and messages name file, key and reason.
//!
//! Fixtures live outside the crate so operators and other tests can use
//! them: examples in `packaging/examples/`, one file per refused
//! configuration in `tests/fixtures/config/rejected/`, each starting with
//! `# expect: <part of the key>: <part of the reason>`.

use super::listeners::{host_problem, socket_conflict};
use super::*;

use std::path::PathBuf;

/// A key no table of the schema will ever have.
const BOGUS: &str = "stadttor_bogus_key";

/// Tables whose keys are data, not schema (header names): they accept any key.
pub(super) const FREE_FORM: &[&str] = &["response_headers", "acr", "claims"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `*.toml` in `dir`, sorted, so failures are reproducible.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn examples() -> Vec<(PathBuf, String)> {
    let files = toml_files(&workspace().join("packaging/examples"));
    assert!(
        files.len() >= 2,
        "expected minimal.toml and kommune.toml, found {files:?}"
    );
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The one issue of a refused config (panics if it was accepted, or if more
/// than one problem was found: each case must test one thing).
fn single_issue(path: &Path, text: &str) -> Issue {
    match parse(path, text) {
        Ok(_) => panic!("{} was accepted:\n{text}", path.display()),
        Err(e) => {
            assert_eq!(e.issues.len(), 1, "expected one issue, got: {e}");
            e.issues[0].clone()
        }
    }
}

/// A small valid config; `extra` is appended, `replace` edits it first.
fn base() -> String {
    r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[listeners.tls.certificates]]
chain = "tls/server.pem"
key = "file:tls/server.key"

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:8080"]

[[routes]]
name = "app"
upstream = "app"
"#
    .to_owned()
}

// ---------------------------------------------------------------------------
// (a) The shipped examples.
// ---------------------------------------------------------------------------

#[test]
fn every_example_parses_and_validates() {
    for (path, text) in examples() {
        let cfg = parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cfg.listeners.is_empty() && !cfg.routes.is_empty());
        assert_eq!(cfg.path, path);
    }
}

#[test]
fn kommune_example_resolves_as_documented() {
    let path = workspace().join("packaging/examples/kommune.toml");
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.admin, Some("10.20.9.5:9443".parse().unwrap()));
    // Every section a Kommune needs: officers on the admin listener over
    // TLS, the audit log, logins, the policy store and the seal.
    assert!(cfg.admin_tls.is_some());
    assert_eq!(
        cfg.officers.as_ref().map(|o| o.provider.as_str()),
        Some("personal")
    );
    assert!(cfg.audit.is_some() && cfg.policies.is_some() && cfg.signing.is_some());
    let identity = cfg.identity.as_ref().unwrap();
    assert_eq!(identity.providers.len(), 2);
    assert_eq!(identity.saml_providers.len(), 1);
    assert_eq!(
        identity.saml_providers[0]
            .decryption_key
            .as_ref()
            .map(|k| k.backend()),
        Some("tpm")
    );
    assert_eq!(
        identity.providers[0].post_logout_redirect_uri.as_deref(),
        Some("https://www.musterstadt.de/.stadttor/logged-out")
    );
    let portal = cfg.routes.iter().find(|r| r.name == "portal").unwrap();
    assert_eq!(portal.audit, AuditMode::Required);
    assert!(portal.authz.is_some());
    let sealed = cfg.routes.iter().find(|r| r.name == "bescheide").unwrap();
    assert_eq!(sealed.sign.len(), 1);
    let ratsinfo = cfg.routes.iter().find(|r| r.name == "ratsinfo").unwrap();
    assert_eq!(ratsinfo.audit, AuditMode::Off);
    let public = &cfg.listeners[0];
    assert_eq!(public.tls.certificates.len(), 3);
    assert!(public.tls.certificates[0].server_names.is_empty());
    assert_eq!(public.tls.certificates[0].key.backend(), "tpm");
    assert_eq!(public.tls.certificates[1].key.backend(), "pkcs11");
    let intern = &cfg.listeners[1];
    assert_eq!(intern.tls.certificates[0].mode, CertMode::ShortLivedLeaf);
    assert_eq!(
        intern.tls.certificates[0].leaf_lifetime,
        Duration::from_secs(6 * 3600)
    );
    assert_eq!(
        intern.tls.client_auth.as_ref().map(|c| c.mode),
        Some(ClientAuthMode::Required)
    );
    let fv = cfg
        .upstreams
        .iter()
        .find(|u| u.name == "fachverfahren")
        .unwrap();
    let tls = fv.tls.as_ref().unwrap();
    assert!(tls.client_cert.is_some());
    assert_eq!(tls.server_name.as_deref(), Some("fv.intern.musterstadt.de"));
    let uploads = cfg
        .routes
        .iter()
        .find(|r| r.name == "portal-uploads")
        .unwrap();
    assert_eq!(uploads.max_request_body, 50 * 1024 * 1024);
    assert_eq!(uploads.timeouts.total, Duration::from_secs(30 * 60));
    let ratsinfo = cfg.routes.iter().find(|r| r.name == "ratsinfo").unwrap();
    assert_eq!(ratsinfo.response_headers["content-security-policy"], "");
    assert!(cfg
        .routes
        .iter()
        .any(|r| r.websocket && r.host.as_deref() == Some("termine.musterstadt.de")));
    assert!(cfg
        .routes
        .iter()
        .any(|r| r.strip_prefix && r.forward_client_cert));
    assert_eq!(cfg.server.log_format, LogFormat::Json);
}

#[test]
fn post_quantum_key_exchange_is_off_unless_set_on_each_listener() {
    let path = Path::new("/etc/stadttor/stadttor.toml");
    let cfg = parse(path, &base()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.listeners[0].tls.post_quantum_key_exchange);
    let on = base().replace(
        "[[listeners.tls.certificates]]",
        "[listeners.tls]\npost_quantum_key_exchange = true\n\n[[listeners.tls.certificates]]",
    ) + r#"
[admin]
listen = "127.0.0.1:0"

[admin.tls]
post_quantum_key_exchange = true

[[admin.tls.certificates]]
chain = "tls/admin.pem"
key = "file:tls/admin.key"
"#;
    let cfg = parse(path, &on).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.listeners[0].tls.post_quantum_key_exchange);
    assert!(!cfg.listeners[0].tls.allow_x25519);
    let admin = cfg.admin_tls.as_ref().map(|t| t.post_quantum_key_exchange);
    assert_eq!(admin, Some(true));
    // A value that is not a bool is refused with the key named.
    let bad = base().replace(
        "[[listeners.tls.certificates]]",
        "[listeners.tls]\npost_quantum_key_exchange = \"yes\"\n\n[[listeners.tls.certificates]]",
    );
    let e = parse(path, &bad).unwrap_err().to_string();
    assert!(e.contains("post_quantum_key_exchange"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let path = Path::new("/etc/stadttor/stadttor.toml");
    let cfg = parse(path, &base()).unwrap_or_else(|e| panic!("{e}"));
    let cert = &cfg.listeners[0].tls.certificates[0];
    assert_eq!(cert.chain, Path::new("/etc/stadttor/tls/server.pem"));
    assert_eq!(
        cert.key,
        KeyRef::File(PathBuf::from("/etc/stadttor/tls/server.key"))
    );
}

// ---------------------------------------------------------------------------
// (b) Unknown keys are refused in every table (hickory's
// `test_reject_unknown_fields`). `deny_unknown_fields` is easy to lose when
// someone adds `#[serde(flatten)]` or a new table; this catches it.
// ---------------------------------------------------------------------------

/// Paths of every table and array-of-tables element in `v`, in the key
/// syntax of [`Issue::key`] (`""` is the top level).
fn table_paths(v: &toml::Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            out.push(path.to_owned());
            for (k, child) in t {
                if FREE_FORM.contains(&k.as_str()) {
                    continue;
                }
                table_paths(child, &join(k), out);
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.is_table() {
                    table_paths(item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The table at `path` (as produced by [`table_paths`]).
fn table_at<'v>(root: &'v mut toml::Value, path: &str) -> &'v mut toml::Table {
    let mut cur = root;
    if !path.is_empty() {
        for part in path.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, Some(i.trim_end_matches(']').parse::<usize>().unwrap())),
                None => (part, None),
            };
            cur = cur.get_mut(name).unwrap();
            if let Some(i) = index {
                cur = cur.get_mut(i).unwrap();
            }
        }
    }
    cur.as_table_mut().unwrap()
}

/// The schema's tables with indexes removed: `listeners[0].tls` → `listeners[].tls`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '[' => {
                skipping = true;
                out.push_str("[]");
            }
            ']' => skipping = false,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn unknown_keys_are_rejected_in_every_table() {
    let mut shapes = std::collections::BTreeSet::new();
    for (path, text) in examples() {
        let doc: toml::Value = toml::from_str(&text).unwrap();
        let mut tables = Vec::new();
        table_paths(&doc, "", &mut tables);
        for table in tables {
            let mut bad = doc.clone();
            table_at(&mut bad, &table).insert(BOGUS.into(), toml::Value::Boolean(true));
            let text = toml::to_string(&bad).unwrap();
            let issue = single_issue(&path, &text);
            // The key names the table and the unknown key in it.
            let expected = if table.is_empty() {
                BOGUS.to_owned()
            } else {
                format!("{table}.{BOGUS}")
            };
            assert_eq!(
                issue.key,
                expected,
                "{} with `{BOGUS}` in `{table}`",
                path.display()
            );
            assert!(
                issue.reason.contains(&format!("unknown field `{BOGUS}`")),
                "{issue:?}"
            );
            shapes.insert(shape(&table));
        }
    }
    // The examples must exercise every table of the schema, or this test
    // proves less than it claims. Add new tables to an example.
    for table in [
        "",
        "server",
        "keys",
        "admin",
        "listeners[]",
        "listeners[].tls",
        "listeners[].tls.certificates[]",
        "listeners[].tls.client_auth",
        "upstreams[]",
        "upstreams[].tls",
        "routes[]",
        "routes[].timeouts",
        "admin.tls.certificates[]",
        "audit",
        "identity",
        "identity.providers[]",
        "policies",
        "signing",
        "routes[].auth",
        "routes[].authz",
        "routes[].sign[]",
    ] {
        assert!(
            shapes.contains(table),
            "no example has `{table}`; seen: {shapes:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// (c) One refused configuration per error.
// ---------------------------------------------------------------------------

/// `# expect: <key part>: <reason part>` on the first line.
fn expectation(path: &Path, text: &str) -> (String, String) {
    let first = text.lines().next().unwrap_or("");
    let rest = first.strip_prefix("# expect: ").unwrap_or_else(|| {
        panic!(
            "{}: the first line must be `# expect: <key>: <reason>`",
            path.display()
        )
    });
    let (key, reason) = rest
        .split_once(": ")
        .unwrap_or_else(|| panic!("{}: `# expect:` needs `<key>: <reason>`", path.display()));
    (key.trim().to_owned(), reason.trim().to_owned())
}

#[test]
fn every_rejected_fixture_fails_for_its_stated_reason() {
    let files = toml_files(&workspace().join("tests/fixtures/config/rejected"));
    assert!(files.len() >= 40, "only {} fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let (key, reason) = expectation(path, &text);
        match load(path) {
            Ok(_) => failures.push(format!("{}: accepted", path.display())),
            Err(e) => {
                assert_eq!(e.file, *path);
                let hit = e
                    .issues
                    .iter()
                    .any(|i| i.key.contains(&key) && i.reason.contains(&reason));
                if !hit || e.issues.len() != 1 {
                    failures.push(format!(
                        "{}: expected exactly one issue `{key}`: `{reason}`, got:\n{e}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_file_is_reported_with_its_name() {
    let path = Path::new("/nonexistent/stadttor.toml");
    let e = load(path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!(e.issues.len(), 1);
    assert_eq!(e.issues[0].key, "(file)");
    assert!(e.issues[0].reason.contains("cannot read"), "{e}");
}

// ---------------------------------------------------------------------------
// (d) Every problem is reported, not only the first.
// ---------------------------------------------------------------------------

#[test]
fn all_validation_errors_of_a_file_are_reported_in_file_order() {
    let text = r#"
[server]
max_connections = 0

[[listeners]]
name = "public"
listen = "127.0.0.1:8443"
tls = {}

[[listeners]]
name = "public"
listen = "127.0.0.1:8443"

[[listeners.tls.certificates]]
chain = "c.pem"
key = "vault:secret"

[[upstreams]]
name = "app"
addresses = ["http://app:8080/"]
eject_after_failures = 0

[[routes]]
name = "r"
upstream = "nope"
path_prefix = "app"
"#;
    let e = parse(Path::new("many.toml"), text).unwrap_err();
    let keys: Vec<&str> = e.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.max_connections",
            "listeners[0].tls.certificates",
            "listeners[1].name",
            "listeners[1].listen",
            "listeners[1].tls.certificates[0].key",
            "upstreams[0].addresses",
            "upstreams[0].eject_after_failures",
            "routes[0].upstream",
            "routes[0].path_prefix",
        ],
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("many.toml: 9 errors in configuration"));
}

// ---------------------------------------------------------------------------
// (e) Messages name the file, the key and the reason.
// ---------------------------------------------------------------------------

#[test]
fn display_names_file_key_and_reason_on_each_line() {
    let text = base().replace("upstream = \"app\"", "upstream = \"ap\"")
        + "\n[server]\nmax_connections_per_ip = 0\n";
    let path = Path::new("/etc/stadttor/stadttor.toml");
    let e = parse(path, &text).unwrap_err();
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        [
            "/etc/stadttor/stadttor.toml: 2 errors in configuration",
            "  /etc/stadttor/stadttor.toml: key `server.max_connections_per_ip`: must be at least 1",
            "  /etc/stadttor/stadttor.toml: key `routes[0].upstream`: no upstream named `ap`; defined are: app",
        ]
    );
}

#[test]
fn one_error_is_singular_and_syntax_errors_carry_the_line() {
    let text = base() + "\n[server\n";
    let e = parse(Path::new("x.toml"), &text).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("x.toml: 1 error in configuration\n"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 2, "one line per issue: {shown}");
    assert_eq!(e.issues[0].key, "(top level)");
    let line = text.lines().count();
    assert!(
        e.issues[0].reason.contains(&format!("(line {line})")),
        "{shown}"
    );
}

#[test]
fn type_errors_name_the_nested_key_and_line() {
    let text = base() + "\n[routes.timeouts]\nconnect = 5\n";
    let issue = single_issue(Path::new("t.toml"), &text);
    assert_eq!(issue.key, "routes[0].timeouts.connect");
    let line = text.lines().count();
    assert!(
        issue.reason.contains(&format!("(line {line})")),
        "{issue:?}"
    );
}

// ---------------------------------------------------------------------------
// (f) Sizes and durations.
// ---------------------------------------------------------------------------

#[test]
fn sizes_parse_with_and_without_units() {
    for (written, bytes) in [
        ("4096", 4096),
        ("\"4096\"", 4096),
        ("\"512B\"", 512),
        ("\"16KiB\"", 16 * 1024),
        ("\"16K\"", 16 * 1024),
        ("\"10MiB\"", 10 * 1024 * 1024),
        ("\"10 MiB\"", 10 * 1024 * 1024),
        ("\"1GiB\"", 1024 * 1024 * 1024),
        ("0", 0),
    ] {
        let text = base() + &*format!("max_request_body = {written}\n");
        let cfg = parse(Path::new("s.toml"), &text).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(cfg.routes[0].max_request_body, bytes, "{written}");
    }
    let text = base() + "\n[server]\nmax_header_bytes = \"32KiB\"\n";
    let cfg = parse(Path::new("s.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.max_header_bytes, 32 * 1024);
}

#[test]
fn bad_sizes_are_rejected_with_the_key_named() {
    for (written, reason) in [
        ("\"10MB\"", "invalid size `10MB`"),
        ("\"1.5MiB\"", "invalid size"),
        ("\"MiB\"", "invalid size"),
        ("\"\"", "invalid size"),
        ("\"99999999999GiB\"", "invalid size"),
        ("-1", "must not be negative"),
        ("1.5", "invalid type: floating point"),
        ("true", "invalid type: boolean"),
    ] {
        let text = base() + &*format!("max_request_body = {written}\n");
        let issue = single_issue(Path::new("s.toml"), &text);
        assert_eq!(issue.key, "routes[0].max_request_body", "{written}");
        assert!(issue.reason.contains(reason), "{written}: {issue:?}");
    }
}

#[test]
fn durations_parse_in_human_units() {
    let text = base()
        + "\n[routes.timeouts]\nconnect = \"500ms\"\nresponse_header = \"30s\"\n\
           idle = \"2m\"\ntotal = \"1h 30m\"\n\
           \n[server]\nheader_read_timeout = \"15s\"\ndrain_timeout = \"0s\"\n";
    let cfg = parse(Path::new("d.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let t = &cfg.routes[0].timeouts;
    assert_eq!(t.connect, Duration::from_millis(500));
    assert_eq!(t.response_header, Duration::from_secs(30));
    assert_eq!(t.idle, Duration::from_secs(120));
    assert_eq!(t.total, Duration::from_secs(90 * 60));
    assert_eq!(cfg.server.header_read_timeout, Duration::from_secs(15));
    assert_eq!(cfg.server.drain_timeout, Duration::ZERO);
}

#[test]
fn bad_durations_are_rejected_with_the_key_named() {
    for (written, reason) in [
        ("\"30\"", "time unit needed"),
        (
            "\"30 seconds please\"",
            "invalid duration `30 seconds please`",
        ),
        ("\"-5s\"", "invalid duration `-5s`"),
        (
            "30",
            "invalid type: integer `30`, expected a duration string",
        ),
    ] {
        let text = base() + &*format!("\n[routes.timeouts]\nidle = {written}\n");
        let issue = single_issue(Path::new("d.toml"), &text);
        assert_eq!(issue.key, "routes[0].timeouts.idle", "{written}");
        assert!(issue.reason.contains(reason), "{written}: {issue:?}");
    }
    let text = base() + "\n[server]\ndrain_timeout = \"soon\"\n";
    assert_eq!(
        single_issue(Path::new("d.toml"), &text).key,
        "server.drain_timeout"
    );
}

// ---------------------------------------------------------------------------
// Helpers behind the validation checks.
// ---------------------------------------------------------------------------

#[test]
fn host_names_are_checked_for_what_can_match() {
    for ok in [
        "portal.example",
        "*.example.org",
        "localhost",
        "192.0.2.1",
        "[2001:db8::1]",
        "_acme.example",
    ] {
        assert_eq!(host_problem(ok), None, "{ok}");
    }
    for bad in [
        "",
        "portal.example:443",
        "https://portal.example",
        "portal.example/",
        "portal.example.",
        "a.*.example",
        "*example.org",
        "por tal.example",
        "a..example",
        "[::1",
    ] {
        assert!(host_problem(bad).is_some(), "{bad}");
    }
}

#[test]
fn socket_conflicts_follow_linux_bind_rules() {
    let conflict = |a: &str, b: &str| {
        socket_conflict(&[("x".into(), a.parse().unwrap())], b.parse().unwrap()).is_some()
    };
    assert!(conflict("127.0.0.1:443", "127.0.0.1:443"));
    assert!(conflict("0.0.0.0:443", "192.0.2.1:443"));
    assert!(conflict("192.0.2.1:443", "0.0.0.0:443"));
    assert!(conflict("[::]:443", "192.0.2.1:443"));
    assert!(conflict("[::]:443", "0.0.0.0:443"));
    assert!(conflict("[::]:443", "[2001:db8::1]:443"));
    assert!(!conflict("0.0.0.0:443", "[2001:db8::1]:443"));
    assert!(!conflict("127.0.0.1:443", "127.0.0.2:443"));
    assert!(!conflict("127.0.0.1:443", "127.0.0.1:444"));
    assert!(!conflict("127.0.0.1:0", "127.0.0.1:0"));
}

#[test]
fn routes_on_disjoint_listeners_do_not_shadow_each_other() {
    let text = r#"
[[listeners]]
name = "a"
listen = "127.0.0.1:0"
[[listeners.tls.certificates]]
chain = "c.pem"
key = "file:k.pem"

[[listeners]]
name = "b"
listen = "127.0.0.1:0"
[[listeners.tls.certificates]]
chain = "c.pem"
key = "file:k.pem"

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:8080"]

[[routes]]
name = "on-a"
upstream = "app"
listeners = ["a"]

[[routes]]
name = "on-b"
upstream = "app"
listeners = ["b"]

[[routes]]
name = "elsewhere"
upstream = "app"
"#;
    let cfg = parse(Path::new("r.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.routes.len(), 3);
    // A route on all listeners after one on `a` still serves `b`; a route
    // on all listeners before one on `b` leaves nothing for it.
    let all_first = text.replace("listeners = [\"a\"]\n", "");
    let issue = single_issue(
        Path::new("r.toml"),
        &all_first.replace("[[routes]]\nname = \"elsewhere\"\nupstream = \"app\"\n", ""),
    );
    assert_eq!(issue.key, "routes[1]");
    assert!(
        issue
            .reason
            .contains("route `on-b` can never match: routes[0] (`on-a`)"),
        "{issue:?}"
    );
}
