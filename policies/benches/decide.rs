//! Decision latency at 1k, 10k and 100k policy lines.
//!
//! The policy is shaped like a real deployment: N municipalities (domains),
//! each with 10 departments; per department three roles in a chain
//! (`leitung` -> `bearbeitung` -> `lesen`), 4 services with read, write,
//! approval (eIDAS high + client certificate) and a deny rule each, 70
//! users; plus three `*` rules per municipality. About 1,000 lines per
//! municipality, so 1, 10 and 100 municipalities give 1k, 10k and 100k
//! lines. Requests mix own and other departments, municipalities, methods
//! and levels (roughly a third are allowed).
//!
//! First prints p50/p99/p99.9 of single `Authorizer::decide` calls timed
//! one by one (each includes ~20 ns of clock reading), compile times, and
//! casbin's own `enforce` on the same policy for comparison; then runs
//! criterion on the mean.

#![allow(missing_docs)] // criterion_group! generates an undocumented function
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use casbin::CoreApi;
use criterion::{criterion_group, criterion_main, Criterion};
use stadttor_policies::engine::{casbin_enforcer, casbin_request};
use stadttor_policies::{AccessRequest, Authorizer, CompiledPolicy, Level, PolicySet};

const SERVICES: [&str; 4] = ["akten", "register", "termine", "post"];
const DEPTS: usize = 10;
const USERS: usize = 70;

fn policy(municipalities: usize) -> PolicySet {
    let mut p = String::new();
    for m in 0..municipalities {
        let dom = format!("stadt{m:03}");
        p.push_str(&format!(
            "p, *, {dom}, /portal/*, GET|HEAD, low, *, *, allow\n"
        ));
        p.push_str(&format!(
            "p, *, {dom}, /antraege/*, GET|POST, substantial, *, *, allow\n"
        ));
        p.push_str(&format!(
            "p, *, {dom}, /portal/intern/*, *, *, *, *, deny\n"
        ));
        for d in 0..DEPTS {
            let dept = format!("amt{d}");
            p.push_str(&format!("g, {dept}-leitung, {dept}-bearbeitung, {dom}\n"));
            p.push_str(&format!("g, {dept}-bearbeitung, {dept}-lesen, {dom}\n"));
            for s in SERVICES {
                let base = format!("/{dept}/{s}");
                p.push_str(&format!(
                    "p, {dept}-lesen, {dom}, {base}/*, GET, substantial, *, *, allow\n"
                ));
                p.push_str(&format!("p, {dept}-bearbeitung, {dom}, {base}/akte/:id, POST|PUT, substantial, *, *, allow\n"));
                p.push_str(&format!("p, {dept}-bearbeitung, {dom}, {base}/vorgang/*, POST, substantial, *, *, allow\n"));
                p.push_str(&format!(
                    "p, {dept}-bearbeitung, {dom}, {base}/upload, POST, substantial, *, +, allow\n"
                ));
                p.push_str(&format!(
                    "p, {dept}-leitung, {dom}, {base}/freigabe/:id, POST, high, *, +, allow\n"
                ));
                p.push_str(&format!(
                    "p, {dept}-leitung, {dom}, {base}/admin/*, *, high, *, +, allow\n"
                ));
                p.push_str(&format!(
                    "p, *, {dom}, {base}/wartung/*, *, *, *, *, deny\n"
                ));
            }
            for u in 0..USERS {
                let role = match u % 10 {
                    0 => "leitung",
                    1..=5 => "bearbeitung",
                    _ => "lesen",
                };
                p.push_str(&format!("g, user{m}-{d}-{u}, {dept}-{role}, {dom}\n"));
            }
        }
    }
    PolicySet {
        model: stadttor_policies::set::DEFAULT_MODEL.to_string(),
        policy: p,
        tests: "subject, domain, path, method, expect\n".to_string(),
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Owned request values.
struct Req {
    subject: String,
    domain: String,
    path: String,
    method: &'static str,
    level: Option<Level>,
    cert: Option<&'static str>,
}

impl Req {
    fn as_request(&self) -> AccessRequest<'_> {
        AccessRequest {
            subject: &self.subject,
            domain: &self.domain,
            path: &self.path,
            method: self.method,
            level: self.level,
            provider: Some("bundid"),
            client_cert: self.cert,
        }
    }
}

fn requests(municipalities: usize, n: usize) -> Vec<Req> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            let m = rng.next(municipalities);
            let d = rng.next(DEPTS);
            let u = rng.next(USERS);
            // Mostly the user's own municipality and department.
            let dm = if rng.next(10) == 0 {
                rng.next(municipalities)
            } else {
                m
            };
            let dd = if rng.next(5) == 0 { rng.next(DEPTS) } else { d };
            let s = SERVICES[rng.next(SERVICES.len())];
            let tail = [
                "akte/17",
                "vorgang/a/b",
                "upload",
                "freigabe/9",
                "admin/x",
                "wartung/y",
                "liste",
            ][rng.next(7)];
            let path = match rng.next(8) {
                0 => "/portal/start".to_string(),
                1 => "/antraege/wohnsitz".to_string(),
                _ => format!("/amt{dd}/{s}/{tail}"),
            };
            Req {
                subject: if rng.next(20) == 0 {
                    format!("buerger{u}")
                } else {
                    format!("user{m}-{d}-{u}")
                },
                domain: format!("stadt{dm:03}"),
                path,
                method: ["GET", "GET", "POST", "PUT", "DELETE"][rng.next(5)],
                level: [
                    None,
                    Some(Level::Low),
                    Some(Level::Substantial),
                    Some(Level::High),
                    Some(Level::High),
                ][rng.next(5)],
                cert: [None, Some("cert-1")][rng.next(2)],
            }
        })
        .collect()
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

const SIZES: [(&str, usize); 3] = [("1k", 1), ("10k", 10), ("100k", 100)];

fn percentiles() {
    println!("\n== stadttor-policies decide latency (single calls, ns) ==");
    for (name, m) in SIZES {
        let set = policy(m);
        let t = Instant::now();
        let compiled = CompiledPolicy::compile(&set, 1).expect("benchmark policy compiles");
        let compile = t.elapsed();
        let lines = compiled.rule_lines();
        let authz = Authorizer::with_policy(compiled);
        let reqs = requests(m, 10_000);
        let views: Vec<AccessRequest<'_>> = reqs.iter().map(Req::as_request).collect();
        let allowed = views
            .iter()
            .filter(|r| authz.decide(r).is_allowed())
            .count();
        for r in views.iter().take(2_000) {
            black_box(authz.decide(r));
        }
        let mut ns = Vec::with_capacity(300_000);
        for i in 0..300_000 {
            let r = &views[i % views.len()];
            let t = Instant::now();
            black_box(authz.decide(black_box(r)));
            ns.push(t.elapsed().as_nanos() as u64);
        }
        ns.sort_unstable();
        println!(
            "{name:>5} ({lines} lines): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns; compile {:.1} ms; {:.0}% allowed",
            pct(&ns, 0.50),
            pct(&ns, 0.99),
            pct(&ns, 0.999),
            ns[ns.len() - 1],
            compile.as_secs_f64() * 1e3,
            100.0 * allowed as f64 / views.len() as f64
        );
        if m <= 10 {
            let e = casbin_enforcer(&set).expect("casbin loads the policy");
            let n = if m == 1 { 300 } else { 30 };
            let mut cs: Vec<u64> = views
                .iter()
                .take(n)
                .map(|r| {
                    let t = Instant::now();
                    let d = e.enforce(casbin_request(r)).unwrap_or(false);
                    let el = t.elapsed().as_nanos() as u64;
                    assert_eq!(
                        d,
                        authz.decide(r).is_allowed(),
                        "index and casbin disagree on {r:?}"
                    );
                    el
                })
                .collect();
            cs.sort_unstable();
            println!(
                "      casbin enforce on the same policy ({n} requests, same answers): p50 {:.1} us, p99 {:.1} us",
                pct(&cs, 0.5) as f64 / 1e3,
                pct(&cs, 0.99) as f64 / 1e3
            );
        }
    }
    println!();
}

fn bench(c: &mut Criterion) {
    percentiles();
    let mut g = c.benchmark_group("decide");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, m) in SIZES {
        let authz =
            Authorizer::with_policy(CompiledPolicy::compile(&policy(m), 1).expect("compiles"));
        let reqs = requests(m, 10_000);
        let views: Vec<AccessRequest<'_>> = reqs.iter().map(Req::as_request).collect();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % views.len();
                black_box(authz.decide(black_box(&views[i])))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
