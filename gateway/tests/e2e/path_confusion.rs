//! Path confusion (issue 12): what the gateway routes and authorizes is
//! exactly what the service receives.
//!
//! The corpus `tests/fixtures/path-corpus.tsv` (one request target per
//! line with the canonical path the upstream must receive, or 400) goes
//! through the real gateway to two real upstreams that resolve paths on
//! their own: Debian's nginx (`merge_slashes on`, serving files) and a
//! Python service that decodes, drops `;` parameters, merges slashes and
//! removes dot segments ([`testkit::normalising`]). `/` is anonymous;
//! `/secret` on the same upstream needs a client certificate and a policy
//! that allows GET below `/secret` except `/secret/deny/*`. Each target is
//! written byte for byte as an HTTP/1.1 request line and, where it is a
//! valid `:path`, sent over h2; protected ones again with a certificate.
//!
//! For every request: a 400 reaches no upstream; otherwise the upstream
//! saw exactly the expected canonical target for that request id, or, for
//! a target under `/secret`, the gateway refused it (401 without a
//! certificate, 403 where the policy denies) and the upstream saw nothing.
//! No anonymous response ever carries the protected file. All mismatches
//! are collected and printed as one table. Both gateway variants run: the
//! default route settings and routes with `[routes.paths] parameters =
//! true` (the corpus' third column).
//!
//! `stadttor policy explain` and `stadttor policy test` on the same corpus
//! must agree: a 400 is "refuses this path with 400", otherwise the
//! decision is made on the expected canonical path, with the gateway's
//! answer (allow or deny).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use stadttor_gateway::authn::cookie::CookieKeys;
use testkit::client::{self, Proto};
use testkit::nginx::Nginx;
use testkit::normalising::{NormalisingUpstream, SECRET_MARKER};
use testkit::{Gateway, TempDir, TestPki};

use crate::policy::set_mode_600;
use crate::BIN;

/// What the corpus says must happen to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Refused,
    /// The exact path and query the upstream must receive.
    Upstream(String),
}

#[derive(Debug, Clone)]
struct Case {
    line: usize,
    /// The target as written in the corpus (`:path=…` for h2-only rows).
    label: String,
    /// The bytes sent as the request target or `:path`.
    target: String,
    /// Sent as an h2 `:path` only (rows written `:path=…`).
    h2_only: bool,
    default: Expect,
    parameters: Expect,
}

/// Which route settings the gateway runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    Parameters,
}

impl Case {
    fn expect(&self, mode: Mode) -> &Expect {
        match mode {
            Mode::Default => &self.default,
            Mode::Parameters => &self.parameters,
        }
    }

    /// Absolute-form HTTP/1.1 targets carry their authority; it is the
    /// `Host`. (On h2 it would be `:authority`: such rows are h1 only.)
    fn authority(&self) -> Option<&str> {
        if self.h2_only {
            return None;
        }
        let rest = self
            .target
            .strip_prefix("http://")
            .or_else(|| self.target.strip_prefix("https://"))?;
        Some(rest.split(['/', '?']).next().unwrap_or(rest))
    }

    /// The path a policy is asked about: the target without authority and
    /// query.
    fn policy_path(&self) -> String {
        let t = match self.authority() {
            Some(a) => {
                let scheme = self.target.find("://").unwrap() + 3;
                &self.target[scheme + a.len()..]
            }
            None => self.target.as_str(),
        };
        let p = t.split('?').next().unwrap_or("");
        // An empty path is `/` for https (RFC 3986 §6.2.3).
        if p.is_empty() && (self.authority().is_some() || self.h2_only) {
            "/".to_owned()
        } else {
            p.to_owned()
        }
    }
}

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/path-corpus.tsv")
}

fn parse_expect(s: &str, line: usize) -> Expect {
    match s {
        "400" => Expect::Refused,
        p if p.starts_with('/') => Expect::Upstream(p.to_owned()),
        other => panic!("path-corpus.tsv:{line}: expected `400` or a path, not {other:?}"),
    }
}

fn corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus_path()).unwrap();
    let mut cases = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = l.split('\t').collect();
        assert!(
            (2..=3).contains(&cols.len()),
            "path-corpus.tsv:{line}: want target<TAB>expected[<TAB>expected with parameters]"
        );
        let default = parse_expect(cols[1], line);
        let parameters = cols
            .get(2)
            .map_or(default.clone(), |c| parse_expect(c, line));
        let (target, h2_only) = match cols[0].strip_prefix(":path=") {
            Some(p) => (p.to_owned(), true),
            None => (cols[0].to_owned(), false),
        };
        cases.push(Case {
            line,
            label: cols[0].to_owned(),
            target,
            h2_only,
            default,
            parameters,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            seen.insert(&c.label),
            "path-corpus.tsv:{}: duplicate {:?}",
            c.line,
            c.label
        );
    }
    cases
}

/// A canonical target as the policy decides on it: no query, no `;`
/// parameters (written independently of the gateway's own function).
fn decision_path(expected: &str) -> String {
    let path = expected.split('?').next().unwrap_or("");
    path.split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Under the protected route, and whether the policy denies it.
fn protection(expected: &str) -> (bool, bool) {
    let p = decision_path(expected);
    let protected = p == "/secret" || p.starts_with("/secret/");
    (protected, p.starts_with("/secret/deny/"))
}

const POLICY: &str = "\
p, *, corpus, /secret, GET, *, *, +, allow
p, *, corpus, /secret/*, GET, *, *, +, allow
p, *, corpus, /secret/deny/*, *, *, *, *, deny
";
const OFFICERS: &str = "anna@kommune.example,bernd@kommune.example";

/// Everything that outlives one gateway: certificates, the document root,
/// the policy directory (with a tests table made from the corpus) and the
/// initialised policy store.
struct World {
    dir: TempDir,
    pki: TestPki,
    docroot: PathBuf,
    policy_dir: PathBuf,
    store: String,
}

impl World {
    fn new(cases: &[Case]) -> Self {
        let dir = TempDir::new("path-corpus");
        let pki = TestPki::new(&dir, "corpus", &[]);
        for (f, body) in [
            ("www/public/file", "public file\n".to_owned()),
            ("www/public/index.html", "public index\n".to_owned()),
            ("www/index.html", "root index\n".to_owned()),
            (
                "www/secret/file",
                format!("{SECRET_MARKER}: the protected file\n"),
            ),
            ("www/secret/index.html", format!("{SECRET_MARKER}: index\n")),
            (
                "www/secret/deny/file",
                format!("{SECRET_MARKER}: denied file\n"),
            ),
        ] {
            dir.write(f, &body);
        }
        dir.write("policy/policy.csv", POLICY);
        dir.write("policy/tests.csv", &policy_tests(cases));
        let policy_dir = dir.path().join("policy");
        let store = format!("file:{}", dir.path().join("store").display());
        let o = Command::new(BIN)
            .args([
                "policy",
                "--store",
                &store,
                "init",
                "--officers",
                OFFICERS,
                "--from",
            ])
            .arg(&policy_dir)
            .env("STADTTOR_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "policy init: {}",
            crate::policy::text(&o)
        );
        Self {
            docroot: dir.path().join("www"),
            dir,
            pki,
            policy_dir,
            store,
        }
    }

    fn config(&self, upstream: SocketAddr, mode: Mode, tag: &str) -> String {
        let keys = self.dir.path().join(format!("{tag}.keys"));
        std::fs::write(&keys, format!("{}\n", CookieKeys::generate().unwrap())).unwrap();
        set_mode_600(&keys);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let akey = self.dir.path().join(format!("{tag}.p8"));
        std::fs::write(&akey, pkcs8.as_ref()).unwrap();
        let paths = match mode {
            Mode::Default => "",
            Mode::Parameters => "[routes.paths]\nparameters = true\n",
        };
        format!(
            r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[listeners.tls.client_auth]
ca = {ca:?}
mode = "optional"
{cert}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[policies]
store = "{store}"

[identity]
session_key_file = {keys:?}
store = "file:{sessions}"
assertion_key = "file:{akey}"

[[routes]]
name = "anonymous"
upstream = "app"
path_prefix = "/"
{paths}
[[routes]]
name = "secret"
upstream = "app"
path_prefix = "/secret"
{paths}
[routes.auth]
methods = ["client_cert"]
client_cert_level = "substantial"
[routes.authz]
domain = "corpus"
"#,
            ca = self.pki.ca_path.display().to_string(),
            cert = self.pki.certificate_toml(&[]),
            store = self.store,
            keys = keys.display().to_string(),
            sessions = self.dir.path().join(format!("{tag}-sessions")).display(),
            akey = akey.display(),
        )
    }
}

/// Rows for the policy's `tests.csv`: every target the protected route or
/// the canonicaliser decides, with the gateway's answer for a client with
/// a certificate (parameters allowed, as the tests table decides).
fn policy_tests(cases: &[Case]) -> String {
    let mut s = String::from("subject, domain, path, method, level, provider, cert, expect\n");
    for c in cases {
        let path = c.policy_path();
        if path.is_empty() || path.contains([',', '"', ' ']) || path.trim() != path {
            continue;
        }
        let expect = match &c.parameters {
            Expect::Refused => "deny",
            Expect::Upstream(p) => match protection(p) {
                (false, _) => continue,
                (true, denied) => ["allow", "deny"][usize::from(denied)],
            },
        };
        s.push_str(&format!(
            "x, corpus, {path}, GET, substantial, , CN=client-corpus, {expect}\n"
        ));
    }
    s
}

mod send;
mod verdict;

use send::{h1, h2, Reply};
use verdict::{Counts, Mismatch};

/// An upstream's name, address and log reader (`(request id, target)`).
type Upstream<'a> = (&'a str, SocketAddr, &'a dyn Fn() -> Vec<(String, String)>);

/// One gateway in front of `upstream` with `mode`'s route settings; every
/// target over h1 and h2 without a certificate, protected ones again with.
async fn run_gateway(
    world: &World,
    cases: &[Case],
    upstream: Upstream<'_>,
    mode: Mode,
    counts: &mut Counts,
    skipped: &mut Vec<String>,
) -> Vec<Mismatch> {
    let (name, addr, seen) = upstream;
    let tag = format!("{name}-{mode:?}");
    let gw_dir = TempDir::new("path-corpus-gw");
    let gw = Gateway::start(BIN, &gw_dir, &world.config(addr, mode, &tag));
    assert!(
        gw.wait_for_log("policy version active", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    let cfg = |proto, cert: bool| -> Arc<ClientConfig> {
        let pki = &world.pki;
        let id = cert.then_some((pki.client_cert_pem.as_str(), pki.client_key_pem.as_str()));
        Arc::new(client::tls_config(&pki.ca_pem, id, proto))
    };
    let (anon, anon2) = (cfg(Proto::H1, false), cfg(Proto::H2, false));
    let (cert, cert2) = (cfg(Proto::H1, true), cfg(Proto::H2, true));
    // Only this run's part of the upstream's log is judged.
    let before = seen().len();
    let mut replies: Vec<(&Case, &'static str, bool, Reply)> = Vec::new();
    for c in cases {
        if !c.h2_only {
            replies.push((c, "h1", false, h1(anon.clone(), gw.addr(), c).await));
        }
        let h2_reply = match c.authority() {
            Some(_) => None,
            None => h2(anon2.clone(), gw.addr(), &c.target).await,
        };
        match h2_reply {
            Some(r) => replies.push((c, "h2", false, r)),
            None if !c.h2_only => skipped.push(c.label.clone()),
            None => panic!(
                "path-corpus.tsv:{}: not a :path the client can send",
                c.line
            ),
        }
        if matches!(c.expect(mode), Expect::Upstream(p) if protection(p).0) {
            let r = if c.h2_only {
                (
                    "h2+cert",
                    h2(cert2.clone(), gw.addr(), &c.target).await.unwrap(),
                )
            } else {
                ("h1+cert", h1(cert.clone(), gw.addr(), c).await)
            };
            replies.push((c, r.0, true, r.1));
        }
    }
    let log = verdict::settled_log(seen, before, &replies);
    let mut out = Vec::new();
    for (c, proto, with_cert, reply) in &replies {
        counts.add(&tag, proto);
        if let Some(why) = verdict::judge(c.expect(mode), *with_cert, reply, &log) {
            out.push(Mismatch {
                upstream: tag.clone(),
                proto,
                line: c.line,
                target: c.label.clone(),
                expected: format!("{:?}", c.expect(mode)),
                got: why,
            });
        }
    }
    // An upstream request no reply accounts for: something reached the
    // service that the client was not told about.
    let ids: std::collections::HashSet<&str> =
        replies.iter().filter_map(|r| r.3.id.as_deref()).collect();
    for (id, targets) in log.iter().filter(|(id, _)| !ids.contains(id.as_str())) {
        out.push(Mismatch {
            upstream: tag.clone(),
            proto: "?",
            line: 0,
            target: String::new(),
            expected: "nothing".into(),
            got: format!("upstream saw {targets:?} under an id no reply carried: {id}"),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_confusion_corpus_never_reaches_protected_content_via_another_path() {
    let cases = corpus();
    assert!(cases.len() >= 80, "the corpus has {} targets", cases.len());
    let world = World::new(&cases);
    let nginx = Nginx::start(&world.docroot);
    let python = NormalisingUpstream::start();
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut mismatches = Vec::new();
    let mut not_h2 = Vec::new();
    let nginx_seen = || nginx.seen();
    let python_seen = || python.seen();
    let upstreams: [Upstream<'_>; 2] = [
        ("nginx", nginx.addr, &nginx_seen),
        ("python", python.addr, &python_seen),
    ];
    for (name, addr, _) in &upstreams {
        // Without the gateway's canonical target, these upstreams serve the
        // protected file for many targets that a raw prefix match would
        // send to the anonymous route: the test cannot pass by accident.
        let mut leaks = 0;
        for c in cases.iter().filter(|c| !c.h2_only) {
            let raw_protected = protection(&c.policy_path()).0 && !c.policy_path().contains(';');
            leaks += usize::from(!raw_protected && send::direct(*addr, c).await);
        }
        eprintln!(
            "without the gateway, {leaks} targets outside a raw /secret prefix reach the \
             protected file on {name}"
        );
        assert!(
            leaks >= 20,
            "{name} should resolve paths on its own: {leaks} leaks"
        );
    }
    for upstream in upstreams {
        for mode in [Mode::Default, Mode::Parameters] {
            let mut skipped = Vec::new();
            let run = run_gateway(&world, &cases, upstream, mode, &mut counts, &mut skipped);
            mismatches.extend(run.await);
            not_h2 = skipped;
        }
    }
    let explain = verdict::explain_all(&world, &cases);
    mismatches.extend(explain);
    eprintln!(
        "path corpus: {} targets ({} over HTTP/1.1 only: {not_h2:?}); requests {}; {:.1} s",
        cases.len(),
        not_h2.len(),
        counts,
        started.elapsed().as_secs_f64()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches (nginx error log:\n{})\n{}",
        mismatches.len(),
        nginx
            .error_log()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n"),
        verdict::table(&mismatches)
    );
    let o = Command::new(BIN)
        .args(["policy", "test"])
        .arg(&world.policy_dir)
        .env("STADTTOR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "policy test on the corpus: {}",
        crate::policy::text(&o)
    );
    eprintln!("policy test: {}", String::from_utf8_lossy(&o.stdout).trim());
}
