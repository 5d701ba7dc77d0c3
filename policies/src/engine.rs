//! Compiling a [`PolicySet`] into an immutable [`CompiledPolicy`] and
//! deciding requests with it.
//!
//! Two engines sit behind one type:
//!
//! * **Indexed** (the default model, recognised by its text): every line is
//!   validated here with its line number, then indexed per domain and per
//!   subject: for each user or role named in a `g` line the rules of the
//!   user, of every role it holds (transitively, cut at casbin's 10 levels)
//!   and the domain's `*` rules are precomputed into one list, deny rules
//!   first. A decision is one or two hash look-ups and a scan of that short
//!   list, no allocation. Semantics are casbin's for the default model: the
//!   same custom functions ([`crate::pattern`]) are registered in casbin, and
//!   the tests compare both engines on generated policies.
//! * **Casbin** (any other model): casbin-rs's `Enforcer`, correct but slow
//!   (one rhai evaluation per policy line). The request definition must stay
//!   `r = sub, dom, obj, act, level, idp, cert`; rule attribution in
//!   decisions is not available for custom models.
//!
//! Loading casbin is async in casbin-rs, but nothing in it waits on I/O for
//! in-memory models and policies, so it is driven by a tiny thread-parking
//! executor: no runtime is needed, and `decide` is synchronous.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use casbin::function_map::OperatorFunction;
use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, Problem};
use crate::pattern::{casbin_fns, level_ok, parse_min_level, Attr, Methods, PathPattern};
use crate::request::{AccessRequest, ConsideredRule, DecisionRecord, Explanation, Level, Reason};
use crate::set::{PolicySet, PolicyTest, ADMIN_DOMAIN, DEFAULT_MODEL, OFFICER_ROLE};
use crate::Decision;

/// casbin's default role manager follows at most this many `g` hops.
const MAX_HIERARCHY: usize = 10;
const REQUEST_TOKENS: &str = "sub,dom,obj,act,level,idp,cert";

/// A policy ready to decide: immutable, cheap to share behind an `Arc`.
pub struct CompiledPolicy {
    version: u64,
    set: PolicySet,
    tests: Vec<PolicyTest>,
    rule_lines: usize,
    roles: RoleGraph,
    engine: Engine,
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("version", &self.version)
            .field("rule_lines", &self.rule_lines)
            .field("indexed", &matches!(self.engine, Engine::Indexed(_)))
            .finish()
    }
}

enum Engine {
    Indexed(Index),
    Casbin(Box<Enforcer>),
}

/// Result of running a policy's tests table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Rows whose decision was as expected.
    pub passed: usize,
    /// Rows that were not.
    pub failures: Vec<TestFailure>,
}

impl TestReport {
    /// True if no row failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One failed row of `tests.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFailure {
    /// Line in `tests.csv`.
    pub line: usize,
    /// The request, rendered.
    pub request: String,
    /// Expected decision.
    pub expected: Decision,
    /// Actual decision.
    pub got: Decision,
    /// The rule that decided, if any.
    pub rule: Option<String>,
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} failed",
            self.failures.len(),
            self.passed + self.failures.len()
        )?;
        for x in &self.failures {
            write!(
                f,
                "; tests.csv:{}: {}: expected {:?}, got {:?} ({})",
                x.line,
                x.request,
                x.expected,
                x.got,
                x.rule.as_deref().unwrap_or("no rule matched")
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- compile

impl CompiledPolicy {
    /// Compiles a policy set as version `version`. Every syntax or semantic
    /// problem is reported with file, line and reason. Does not run the
    /// tests table (see [`CompiledPolicy::compile_checked`]), but parses it.
    pub fn compile(set: &PolicySet, version: u64) -> Result<Self, PolicyError> {
        let mut problems = Vec::new();
        let tests = match set.parse_tests() {
            Ok(t) => t,
            Err(PolicyError::Invalid(p)) => {
                problems.extend(p);
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let lines = policy_lines(&set.policy, &mut problems);
        let roles = RoleGraph::build(&lines);
        let rule_lines = lines.len();
        let engine = if normalize_model(&set.model) == normalize_model(DEFAULT_MODEL) {
            Index::build(&lines, &roles, &mut problems).map(Engine::Indexed)
        } else {
            casbin_engine(set, &lines, &mut problems).map(|e| Engine::Casbin(Box::new(e)))
        };
        problems.sort_by_key(|p| (p.file as u8, p.line));
        match engine {
            Some(engine) if problems.is_empty() => Ok(Self {
                version,
                set: set.clone(),
                tests,
                rule_lines,
                roles,
                engine,
            }),
            _ => Err(PolicyError::Invalid(problems)),
        }
    }

    /// [`compile`](Self::compile), then run the tests table; any failing
    /// row rejects the policy.
    pub fn compile_checked(
        set: &PolicySet,
        version: u64,
    ) -> Result<(Self, TestReport), PolicyError> {
        let p = Self::compile(set, version)?;
        let report = p.run_tests();
        if report.ok() {
            Ok((p, report))
        } else {
            Err(PolicyError::TestsFailed(report))
        }
    }

    /// The same policy, numbered `version` (after the store assigned it).
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The version this policy was compiled as.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The policy set it was compiled from.
    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    /// Number of `p` and `g` lines.
    pub fn rule_lines(&self) -> usize {
        self.rule_lines
    }

    /// Whether the fast index is used (default model) or casbin directly.
    pub fn is_indexed(&self) -> bool {
        matches!(self.engine, Engine::Indexed(_))
    }

    /// Decides one request. Synchronous, allocation-free on the indexed
    /// engine; any failure denies.
    pub fn decide(&self, req: &AccessRequest<'_>) -> DecisionRecord {
        if req.subject.is_empty() {
            return self.record(Decision::Deny, Reason::NoIdentity, None);
        }
        // Patterns are matched on canonical paths only; any other form
        // (`..`, `%2e`, `//`, `;`) could walk around a deny rule.
        if !crate::path::is_decision_form(req.path) {
            return self.record(Decision::Deny, Reason::NonCanonicalPath, None);
        }
        match &self.engine {
            Engine::Indexed(ix) => {
                let (decision, reason, rule) = ix.decide(req);
                self.record(decision, reason, rule.map(|i| &ix.rules[i as usize]))
            }
            // casbin evaluates officer-written matchers in rhai; a panic
            // in there (a built-in we did not replace) denies this
            // request instead of taking the worker down.
            Engine::Casbin(e) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    e.enforce(casbin_args(req))
                })) {
                    Ok(Ok(true)) => self.record(Decision::Allow, Reason::AllowedByRule, None),
                    Ok(Ok(false)) => self.record(Decision::Deny, Reason::NoMatchingRule, None),
                    Ok(Err(_)) | Err(_) => self.record(Decision::Deny, Reason::EngineError, None),
                }
            }
        }
    }

    fn record(&self, decision: Decision, reason: Reason, rule: Option<&Rule>) -> DecisionRecord {
        DecisionRecord {
            decision,
            reason,
            rule: rule.map(|r| Arc::clone(&r.text)),
            line: rule.map(|r| r.line),
            version: self.version,
        }
    }

    /// Decides and says why: the subject's roles in the domain and every
    /// rule considered, with the first field that did not match.
    pub fn explain(&self, req: &AccessRequest<'_>) -> Explanation {
        let record = self.decide(req);
        let roles = self.roles.closure(req.domain, req.subject);
        let considered = match &self.engine {
            Engine::Indexed(ix) if !req.subject.is_empty() => ix.considered(req),
            _ => Vec::new(),
        };
        Explanation {
            record,
            roles,
            considered,
        }
    }

    /// Runs the tests table against this policy.
    pub fn run_tests(&self) -> TestReport {
        let mut report = TestReport::default();
        for t in &self.tests {
            // As the gateway decides: on the canonical path; a path it
            // refuses is a deny.
            let req = t.request();
            let got = match crate::path::decision_form(req.path) {
                Ok(path) => self.decide(&AccessRequest { path: &path, ..req }),
                Err(_) => self.record(Decision::Deny, Reason::NonCanonicalPath, None),
            };
            if got.decision == t.expect {
                report.passed += 1;
            } else {
                report.failures.push(TestFailure {
                    line: t.line,
                    request: render(&t.request()),
                    expected: t.expect,
                    got: got.decision,
                    rule: got.rule.map(|r| r.to_string()),
                });
            }
        }
        report
    }

    /// Whether `user` holds `role` in `domain` (directly or inherited).
    pub fn has_role(&self, user: &str, role: &str, domain: &str) -> bool {
        user != role && self.roles.closure(domain, user).iter().any(|r| r == role)
    }

    /// The officers: users (names that are no one's role) holding
    /// `officer` in `stadttor-admin`.
    pub fn officers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .roles
            .members(ADMIN_DOMAIN)
            .into_iter()
            .filter(|u| self.has_role(u, OFFICER_ROLE, ADMIN_DOMAIN))
            .collect();
        v.sort();
        v
    }

    /// Whether `who` is an officer.
    pub fn is_officer(&self, who: &str) -> bool {
        !who.is_empty() && self.has_role(who, OFFICER_ROLE, ADMIN_DOMAIN)
    }
}

/// Renders a request for messages: `subject domain METHOD path level=…`.
pub fn render(r: &AccessRequest<'_>) -> String {
    let mut s = format!("{} {} {} {}", r.subject, r.domain, r.method, r.path);
    if let Some(l) = r.level {
        s.push_str(&format!(" level={l}"));
    }
    if let Some(p) = r.provider {
        s.push_str(&format!(" provider={p}"));
    }
    if let Some(c) = r.client_cert {
        s.push_str(&format!(" cert={c}"));
    }
    s
}

/// The seven request values in casbin's order.
pub type CasbinArgs<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

fn casbin_args<'a>(r: &AccessRequest<'a>) -> CasbinArgs<'a> {
    (
        r.subject,
        r.domain,
        r.path,
        r.method,
        r.level.map_or("", Level::as_str),
        r.provider.unwrap_or(""),
        r.client_cert.unwrap_or(""),
    )
}

/// Model text without comments and whitespace, for comparison.
fn normalize_model(m: &str) -> String {
    m.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect()
}

/// One policy line split into fields.
struct Line<'a> {
    no: usize,
    text: &'a str,
    fields: Vec<&'a str>,
}

fn policy_lines<'a>(policy: &'a str, problems: &mut Vec<Problem>) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    for (i, raw) in policy.lines().enumerate() {
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields = match crate::csv::split_fields(text) {
            Ok(f) => f,
            Err(e) => {
                problems.push(Problem::policy(i + 1, e));
                continue;
            }
        };
        if let Some(pos) = fields.iter().position(|f| f.is_empty()) {
            problems.push(Problem::policy(
                i + 1,
                format!("field {} is empty", pos + 1),
            ));
            continue;
        }
        out.push(Line {
            no: i + 1,
            text,
            fields,
        });
    }
    out
}

// ---------------------------------------------------------------- roles

/// `g` lines with a domain: per domain, name -> direct roles.
#[derive(Default)]
struct RoleGraph {
    domains: HashMap<String, HashMap<String, Vec<String>>>,
}

impl RoleGraph {
    fn build(lines: &[Line<'_>]) -> Self {
        let mut g = Self::default();
        for l in lines {
            if let ["g", user, role, dom] = l.fields[..] {
                g.domains
                    .entry(dom.to_string())
                    .or_default()
                    .entry(user.to_string())
                    .or_default()
                    .push(role.to_string());
            }
        }
        g
    }

    /// `name` and every role reachable from it in `domain`, breadth first,
    /// at most [`MAX_HIERARCHY`] hops.
    fn closure(&self, domain: &str, name: &str) -> Vec<String> {
        let mut seen = vec![name.to_string()];
        let Some(d) = self.domains.get(domain) else {
            return seen;
        };
        let mut queue = VecDeque::from([(name.to_string(), 0usize)]);
        while let Some((n, depth)) = queue.pop_front() {
            if depth >= MAX_HIERARCHY {
                continue;
            }
            for r in d.get(&n).into_iter().flatten() {
                if !seen.contains(r) {
                    seen.push(r.clone());
                    queue.push_back((r.clone(), depth + 1));
                }
            }
        }
        seen
    }

    /// Names in `domain` that hold a role but are no one's role.
    fn members(&self, domain: &str) -> Vec<String> {
        let Some(d) = self.domains.get(domain) else {
            return Vec::new();
        };
        let roles: HashSet<&String> = d.values().flatten().collect();
        d.keys().filter(|k| !roles.contains(k)).cloned().collect()
    }
}

// ---------------------------------------------------------------- index

struct Rule {
    sub: Box<str>,
    path: PathPattern,
    methods: Methods,
    level: Option<Level>,
    idp: Attr,
    cert: Attr,
    deny: bool,
    line: usize,
    text: Arc<str>,
}

impl Rule {
    /// The first field that does not match, or `None` if the rule matches.
    fn mismatch(&self, r: &AccessRequest<'_>) -> Option<&'static str> {
        if !self.methods.matches(r.method) {
            Some("method")
        } else if !level_ok(r.level, self.level) {
            Some("level")
        } else if !self.idp.matches(r.provider) {
            Some("provider")
        } else if !self.cert.matches(r.client_cert) {
            Some("cert")
        } else if !self.path.matches(r.path) {
            Some("path")
        } else {
            None
        }
    }
}

#[derive(Default)]
struct DomainIndex {
    /// Rules whose subject is exactly this name (not `*`).
    direct: HashMap<Box<str>, Vec<u32>>,
    /// Rules with subject `*`.
    star: Vec<u32>,
    /// For each name in a `g` line of this domain: the rules of the name,
    /// of all its roles and `*`, deny rules first.
    closed: HashMap<Box<str>, Vec<u32>>,
}

struct Index {
    rules: Vec<Rule>,
    domains: HashMap<Box<str>, DomainIndex>,
}

impl Index {
    fn build(lines: &[Line<'_>], roles: &RoleGraph, problems: &mut Vec<Problem>) -> Option<Self> {
        let mut rules = Vec::new();
        let mut domains: HashMap<Box<str>, DomainIndex> = HashMap::new();
        for l in lines {
            match l.fields[0] {
                "p" => match parse_rule(l) {
                    Ok((dom, rule)) => {
                        let id = u32::try_from(rules.len()).unwrap_or(u32::MAX);
                        let d = domains.entry(dom.into()).or_default();
                        if &*rule.sub == "*" {
                            d.star.push(id);
                        } else {
                            d.direct.entry(rule.sub.clone()).or_default().push(id);
                        }
                        rules.push(rule);
                    }
                    Err(e) => problems.push(Problem::policy(l.no, e)),
                },
                "g" => {
                    if l.fields.len() != 4 {
                        problems.push(Problem::policy(
                            l.no,
                            format!(
                                "g needs 4 fields (g, user-or-role, role, domain), found {}",
                                l.fields.len()
                            ),
                        ));
                    }
                }
                other => problems.push(Problem::policy(
                    l.no,
                    format!("unknown line type {other:?}; the default model has p and g"),
                )),
            }
        }
        if !problems.is_empty() {
            return None;
        }
        let deny_first = |v: &mut Vec<u32>, rules: &[Rule]| {
            v.sort_by_key(|&i| (!rules[i as usize].deny, i));
            v.dedup();
        };
        for (dom, names) in &roles.domains {
            let d = domains.entry(dom.as_str().into()).or_default();
            let mut all: HashSet<&str> = HashSet::new();
            for (k, v) in names {
                all.insert(k);
                all.extend(v.iter().map(String::as_str));
            }
            for name in all {
                let mut list = d.star.clone();
                for r in roles.closure(dom, name) {
                    if let Some(v) = d.direct.get(r.as_str()) {
                        list.extend_from_slice(v);
                    }
                }
                deny_first(&mut list, &rules);
                d.closed.insert(name.into(), list);
            }
        }
        for d in domains.values_mut() {
            for v in d.direct.values_mut() {
                deny_first(v, &rules);
            }
            deny_first(&mut d.star, &rules);
        }
        Some(Self { rules, domains })
    }

    fn lists<'s>(&'s self, req: &AccessRequest<'_>) -> [&'s [u32]; 2] {
        let Some(d) = self.domains.get(req.domain) else {
            return [&[], &[]];
        };
        if let Some(c) = d.closed.get(req.subject) {
            [c, &[]]
        } else {
            [
                d.direct.get(req.subject).map_or(&[], Vec::as_slice),
                &d.star,
            ]
        }
    }

    fn decide(&self, req: &AccessRequest<'_>) -> (Decision, Reason, Option<u32>) {
        let lists = self.lists(req);
        for l in lists {
            for &i in l {
                let r = &self.rules[i as usize];
                if !r.deny {
                    break;
                }
                if r.mismatch(req).is_none() {
                    return (Decision::Deny, Reason::DeniedByRule, Some(i));
                }
            }
        }
        for l in lists {
            for &i in l {
                let r = &self.rules[i as usize];
                if !r.deny && r.mismatch(req).is_none() {
                    return (Decision::Allow, Reason::AllowedByRule, Some(i));
                }
            }
        }
        (Decision::Deny, Reason::NoMatchingRule, None)
    }

    fn considered(&self, req: &AccessRequest<'_>) -> Vec<ConsideredRule> {
        let mut ids: Vec<u32> = self.lists(req).concat();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|i| {
                let r = &self.rules[i as usize];
                let mismatch = r.mismatch(req);
                ConsideredRule {
                    line: r.line,
                    text: r.text.to_string(),
                    matched: mismatch.is_none(),
                    mismatch,
                }
            })
            .collect()
    }
}

fn parse_rule(l: &Line<'_>) -> Result<(String, Rule), String> {
    let [_, sub, dom, path, act, level, idp, cert, eft] = l.fields[..] else {
        return Err(format!(
            "p needs 9 fields (p, subject, domain, path, methods, level, provider, cert, allow|deny), found {}",
            l.fields.len()
        ));
    };
    let deny = match eft {
        "allow" => false,
        "deny" => true,
        other => return Err(format!("effect must be allow or deny, not {other:?}")),
    };
    Ok((
        dom.to_string(),
        Rule {
            sub: sub.into(),
            path: PathPattern::parse(path)?,
            methods: Methods::parse(act)?,
            level: parse_min_level(level)?,
            idp: Attr::parse(idp),
            cert: Attr::parse(cert),
            deny,
            line: l.no,
            text: l.text.into(),
        },
    ))
}

// ---------------------------------------------------------------- casbin

/// Runs a future that never waits on I/O to completion on this thread.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Builds casbin's enforcer for `set`, with the default model's functions.
/// Used for custom models and, in tests and benchmarks, as the reference.
pub fn casbin_enforcer(set: &PolicySet) -> Result<Enforcer, PolicyError> {
    let mut problems = Vec::new();
    let lines = policy_lines(&set.policy, &mut problems);
    match casbin_engine(set, &lines, &mut problems) {
        Some(e) if problems.is_empty() => Ok(e),
        _ => Err(PolicyError::Invalid(problems)),
    }
}

/// casbin's arguments for a request, in the default request definition.
pub fn casbin_request<'a>(r: &AccessRequest<'a>) -> CasbinArgs<'a> {
    casbin_args(r)
}

/// Reads `key = a, b, c` definitions from the model: section key -> tokens.
fn model_defs(model: &str, problems: &mut Vec<Problem>) -> HashMap<String, (usize, usize)> {
    let mut defs = HashMap::new();
    let mut matchers = Vec::new();
    let mut section = String::new();
    for (i, raw) in model.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            if !l.ends_with(']') {
                problems.push(Problem::model(i + 1, format!("bad section header {l:?}")));
            }
            section = l.trim_matches(['[', ']']).to_string();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            problems.push(Problem::model(
                i + 1,
                format!("expected `key = value`, found {l:?}"),
            ));
            continue;
        };
        let n = v.split(',').count();
        if section == "request_definition" && k.trim() == "r" {
            let toks: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            if toks != REQUEST_TOKENS {
                problems.push(Problem::model(
                    i + 1,
                    format!("the request definition must be r = {REQUEST_TOKENS} (the gateway fills these)"),
                ));
            }
        }
        if section == "policy_definition" || section == "role_definition" {
            defs.insert(k.trim().to_string(), (n, i + 1));
        }
        if section == "matchers" {
            matchers.push((i + 1, v.to_string()));
        }
        // casbin's effector panics on any other effect (found by
        // fuzz/policy): refuse it here, with the line.
        if section == "policy_effect" {
            let effect = v.trim().replace("p.", "p_");
            if !SUPPORTED_EFFECTS.contains(&effect.as_str()) {
                problems.push(Problem::model(
                    i + 1,
                    format!(
                        "unsupported policy effect {:?}; supported: {}",
                        v.trim(),
                        SUPPORTED_EFFECTS
                            .iter()
                            .map(|e| e.replace("p_", "p."))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ),
                ));
            }
        }
    }
    // An unknown function only fails when evaluation reaches it, which a
    // probe cannot guarantee: check the names called by the matchers.
    for (line, m) in matchers {
        for f in called_functions(&m) {
            if !KNOWN_FUNCTIONS.contains(&f) && !defs.contains_key(f) {
                problems.push(Problem::model(
                    line,
                    format!("matcher calls unknown function {f:?}"),
                ));
            }
        }
    }
    defs
}

/// The policy effects casbin's default effector implements, exactly as it
/// compares them (after `p.` became `p_`).
const SUPPORTED_EFFECTS: &[&str] = &[
    "some(where (p_eft == allow))",
    "some(where (p_eft == allow)) && !some(where (p_eft == deny))",
    "priority(p_eft) || deny",
    "!some(where (p_eft == deny))",
];

/// Functions a matcher may call: casbin's built-ins (without optional
/// features), the default model's and rhai's `eval`.
const KNOWN_FUNCTIONS: &[&str] = &[
    "keyMatch",
    "keyMatch2",
    "keyMatch3",
    "keyMatch4",
    "keyMatch5",
    "keyGet",
    "keyGet2",
    "keyGet3",
    "regexMatch",
    "eval",
    "pathMatch",
    "methodMatch",
    "levelAtLeast",
    "attrMatch",
];

/// Identifiers directly followed by `(` (not method calls after `.`).
fn called_functions(m: &str) -> Vec<&str> {
    let b = m.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let after_dot = start > 0 && b[start - 1] == b'.';
            if j < b.len() && b[j] == b'(' && !after_dot {
                out.push(&m[start..i]);
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

fn casbin_engine(
    set: &PolicySet,
    lines: &[Line<'_>],
    problems: &mut Vec<Problem>,
) -> Option<Enforcer> {
    let before = problems.len();
    let defs = model_defs(&set.model, problems);
    for l in lines {
        match defs.get(l.fields[0]) {
            None => problems.push(Problem::policy(
                l.no,
                format!("line type {:?} is not defined in the model", l.fields[0]),
            )),
            Some((n, _)) if *n != l.fields.len() - 1 => problems.push(Problem::policy(
                l.no,
                format!(
                    "{} needs {n} fields after the type, found {}",
                    l.fields[0],
                    l.fields.len() - 1
                ),
            )),
            Some(_) => {}
        }
    }
    if problems.len() > before {
        return None;
    }
    // casbin gets the lines as this module split them, written back in
    // the one form its reader takes the same way (quotes only where
    // needed, none followed by spaces).
    let text: String = lines
        .iter()
        .map(|l| crate::csv::join_fields(l.fields.iter().copied()) + "\n")
        .collect();
    let built = block_on(async {
        let m = DefaultModel::from_str(&set.model).await?;
        let mut e = Enforcer::new(m, StringAdapter::new(text)).await?;
        e.add_function("pathMatch", OperatorFunction::Arg2(casbin_fns::path_match));
        e.add_function(
            "methodMatch",
            OperatorFunction::Arg2(casbin_fns::method_match),
        );
        e.add_function(
            "levelAtLeast",
            OperatorFunction::Arg2(casbin_fns::level_at_least),
        );
        e.add_function("attrMatch", OperatorFunction::Arg2(casbin_fns::attr_match));
        // casbin's built-ins that panic on a bad pattern, replaced.
        for (name, f) in [
            ("regexMatch", casbin_fns::regex_match as fn(_, _) -> _),
            ("keyMatch2", casbin_fns::key_match2),
            ("keyMatch3", casbin_fns::key_match3),
            ("keyMatch4", casbin_fns::key_match4),
            ("keyMatch5", casbin_fns::key_match5),
        ] {
            e.add_function(name, OperatorFunction::Arg2(f));
        }
        e.add_function("keyGet3", OperatorFunction::Arg3(casbin_fns::key_get3));
        Ok::<_, casbin::Error>(e)
    });
    match built {
        Ok(e) => {
            // A matcher that names unknown functions or fields only fails
            // when evaluated: probe once.
            let probe = AccessRequest::new("probe", "probe", "/", "GET");
            match e.enforce(casbin_args(&probe)) {
                Ok(_) => Some(e),
                Err(err) => {
                    problems.push(Problem::model(
                        0,
                        format!("matcher cannot be evaluated: {err}"),
                    ));
                    None
                }
            }
        }
        Err(err) => {
            problems.push(Problem::model(
                0,
                format!("casbin rejects the model: {err}"),
            ));
            None
        }
    }
}
