//! Route match cost with 1, 100 and 10,000 routes (#14 item 4): the first
//! route, the last route and a miss, through [`RouteIndex`] as the gateway
//! uses it, and the old linear scan over the same table for comparison.
//!
//! Routes are hosts x path prefixes (`hI.land.example`, `/dienstJ`) in
//! the gateway's order (exact hosts, longest prefix first), followed by
//! no fallback, so a miss is a miss. Besides criterion's mean, each case
//! prints p50/p99/max of single lookups timed in batches of 64 (one
//! `Instant` pair per batch, so the clock's own cost is spread).
//!
//! `cargo bench -p stadttor-gateway --bench routes`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use stadttor_gateway::route_index::{matches, RouteIndex, RouteKey};

struct Table {
    hosts: Vec<String>,
    prefixes: Vec<String>,
}

impl Table {
    /// `n` routes: as square as possible a grid of hosts x prefixes.
    fn new(n: usize) -> Self {
        let h = (n as f64).sqrt().floor().max(1.0) as usize;
        let p = n / h;
        assert_eq!(h * p, n, "{n} routes must be a full grid");
        Self {
            hosts: (0..h).map(|i| format!("h{i}.land.example")).collect(),
            prefixes: (0..p).map(|j| format!("/dienst{j}")).collect(),
        }
    }

    fn keys(&self) -> Vec<RouteKey<'_>> {
        let mut keys = Vec::new();
        for h in &self.hosts {
            for p in &self.prefixes {
                keys.push(RouteKey {
                    listeners: &[],
                    host: Some(h),
                    path_prefix: p,
                });
            }
        }
        // The gateway's order: longest prefix first (all hosts exact).
        keys.sort_by_key(|k| std::cmp::Reverse(k.path_prefix.len()));
        keys
    }
}

/// Host and path of the first route, the last route and a miss.
fn cases(keys: &[RouteKey<'_>]) -> [(&'static str, String, String); 3] {
    let first = keys.first().unwrap();
    let last = keys.last().unwrap();
    [
        (
            "first",
            first.host.unwrap().to_owned(),
            format!("{}/akte/1", first.path_prefix),
        ),
        (
            "last",
            last.host.unwrap().to_owned(),
            format!("{}/akte/1", last.path_prefix),
        ),
        ("miss", "h0.land.example".into(), "/nirgends/akte/1".into()),
    ]
}

fn percentiles(name: &str, mut f: impl FnMut()) {
    const BATCH: u32 = 64;
    let mut ns: Vec<f64> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(BATCH)
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p) as usize];
    println!(
        "{name}: p50 {:.0} ns, p99 {:.0} ns, max {:.0} ns (per lookup, batches of {BATCH})",
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [1usize, 100, 10_000] {
        let table = Table::new(n);
        let keys = table.keys();
        let index = RouteIndex::build(keys.iter().copied());
        for (case, host, path) in cases(&keys) {
            let expect = keys.iter().position(|k| matches(k, 0, &host, &path));
            assert_eq!(index.find(0, &host, &path), expect);
            let id = format!("{n}/{case}");
            g.bench_function(BenchmarkId::new("index", &id), |b| {
                b.iter(|| index.find(black_box(0), black_box(&host), black_box(&path)))
            });
            percentiles(&format!("route_match/index/{id}"), || {
                black_box(index.find(black_box(0), black_box(&host), black_box(&path)));
            });
            if n <= 100 || case != "miss" {
                g.bench_function(BenchmarkId::new("linear", &id), |b| {
                    b.iter(|| {
                        keys.iter()
                            .position(|k| matches(k, 0, black_box(&host), black_box(&path)))
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
