//! Judging the corpus: each reply against the upstream's log, `stadttor
//! policy explain` against the corpus, and the table of everything that
//! did not hold.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use super::send::Reply;
use super::{decision_path, protection, Case, Expect, World};
use crate::BIN;

/// Request id → every target the upstream received under it.
pub(super) type Log = HashMap<String, Vec<String>>;

/// One thing that did not hold.
#[derive(Debug)]
pub(super) struct Mismatch {
    pub(super) upstream: String,
    pub(super) proto: &'static str,
    pub(super) line: usize,
    pub(super) target: String,
    pub(super) expected: String,
    pub(super) got: String,
}

/// Requests sent, per gateway run and protocol.
#[derive(Debug, Default)]
pub(super) struct Counts(BTreeMap<(String, &'static str), usize>);

impl Counts {
    pub(super) fn add(&mut self, run: &str, proto: &'static str) {
        *self.0.entry((run.to_owned(), proto)).or_default() += 1;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.0.values().sum();
        write!(f, "{total} (")?;
        for (i, ((run, proto), n)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{run} {proto}: {n}")?;
        }
        write!(f, ")")
    }
}

/// The upstream's log once every forwarded reply's request is in it (nginx
/// writes its line after the response), or after 5 s.
pub(super) fn settled_log(
    seen: &dyn Fn() -> Vec<(String, String)>,
    before: usize,
    replies: &[(&Case, &'static str, bool, Reply)],
) -> Log {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut log = Log::new();
        for (id, target) in seen().into_iter().skip(before) {
            log.entry(id).or_default().push(target);
        }
        let waiting = replies.iter().any(|(_, _, _, r)| {
            !matches!(r.status, 0 | 400 | 401 | 403)
                && r.id.as_ref().is_some_and(|id| !log.contains_key(id))
        });
        if !waiting || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `None` when the reply is what the corpus demands, else why not.
pub(super) fn judge(expect: &Expect, with_cert: bool, r: &Reply, log: &Log) -> Option<String> {
    let seen = r.id.as_ref().and_then(|id| log.get(id));
    let got = || match &r.error {
        Some(e) => format!("no response ({e})"),
        None => format!("status {}, upstream saw {seen:?}", r.status),
    };
    if r.secret && !with_cert {
        return Some(format!(
            "PROTECTED CONTENT without a certificate: {}",
            got()
        ));
    }
    match expect {
        Expect::Refused => (r.status != 400 || seen.is_some()).then(got),
        Expect::Upstream(p) => {
            let (protected, denied) = protection(p);
            if protected && (!with_cert || denied) {
                let want = if with_cert { 403 } else { 401 };
                (r.status != want || seen.is_some())
                    .then(|| format!("{} (want {want} and nothing upstream)", got()))
            } else {
                let exact = seen.is_some_and(|s| s.iter().all(|t| t == p));
                (!exact).then(got)
            }
        }
    }
}

/// `stadttor policy explain` for every target (four at a time), judged
/// against the corpus' third column (explain, like the tests table,
/// decides as a route that accepts `;` parameters).
pub(super) fn explain_all(world: &World, cases: &[Case]) -> Vec<Mismatch> {
    let outputs: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| (c.line, explain(world, &c.policy_path())))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut out = Vec::new();
    for (c, (line, text)) in cases.iter().zip(outputs) {
        assert_eq!(c.line, line);
        if let Some(why) = judge_explain(c, &text) {
            out.push(Mismatch {
                upstream: "explain".into(),
                proto: "-",
                line,
                target: c.label.clone(),
                expected: format!("{:?}", c.parameters),
                got: why,
            });
        }
    }
    out
}

fn explain(world: &World, path: &str) -> String {
    let o = Command::new(BIN)
        .args(["policy", "explain", "--from"])
        .arg(&world.policy_dir)
        .args(["--subject", "x", "--domain", "corpus", "--method", "GET"])
        .args(["--level", "substantial", "--cert", "CN=client-corpus"])
        .arg(format!("--path={path}"))
        .env("STADTTOR_LOG", "warn")
        .output()
        .unwrap();
    crate::policy::text(&o)
}

fn judge_explain(c: &Case, text: &str) -> Option<String> {
    let first = text.lines().next().unwrap_or("");
    let p = match &c.parameters {
        Expect::Refused => {
            return (!first.starts_with("DENY  the gateway refuses this path with 400"))
                .then(|| format!("explain said {text:?}"));
        }
        Expect::Upstream(p) => p,
    };
    let decided = decision_path(p);
    let line = format!("path: decided as `{decided}` (the canonical form the gateway forwards)");
    let path_ok = if decided == c.policy_path() {
        !text.contains("decided as")
    } else {
        first == line
    };
    let verdict = text
        .lines()
        .find(|l| l.starts_with("ALLOW") || l.starts_with("DENY"));
    let (protected, denied) = protection(p);
    let verdict_ok =
        !protected || verdict.is_some_and(|v| v.starts_with(if denied { "DENY" } else { "ALLOW" }));
    (!path_ok || !verdict_ok).then(|| format!("explain said {text:?}"))
}

/// The mismatches as one table.
pub(super) fn table(ms: &[Mismatch]) -> String {
    let mut s = String::from("run | proto | line | target | expected | got\n");
    for m in ms {
        s.push_str(&format!(
            "{} | {} | {} | {:?} | {} | {}\n",
            m.upstream, m.proto, m.line, m.target, m.expected, m.got
        ));
    }
    s
}
