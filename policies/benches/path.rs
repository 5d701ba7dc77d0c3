//! Cost of the canonical path (`stadttor_policies::path`) on 200-byte
//! paths: one already canonical (most requests), one that needs work
//! (dot segments, encodings, `//`), one refused.
//!
//! First prints p50/p99/p99.9 of single calls timed one by one (each
//! includes ~20 ns of clock reading), then runs criterion on the mean.
//! Target (issue 12): under 1 µs per request at p99.

#![allow(missing_docs)] // criterion_group! generates an undocumented function
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use stadttor_policies::path::{canonical_path, is_decision_form};

fn paths() -> [(&'static str, String); 3] {
    let canonical = "/fachverfahren/meldewesen/antraege/2026/12/07/".to_owned()
        + "abcdefghij/".repeat(14).as_str()
        + "bescheid-4711.pdf";
    let messy = "/fachverfahren//meldewesen/./antraege/../antraege/%32%30%32%36/12/07/".to_owned()
        + "abc%64efghij/".repeat(11).as_str()
        + "x/%2e%2e/bescheid%2d4711%2Epdf";
    let refused = "/fachverfahren/meldewesen/antraege/".to_owned()
        + "abcdefghij/".repeat(15).as_str()
        + "..%2fadmin";
    [
        ("canonical-200B", canonical),
        ("rewritten-200B", messy),
        ("refused-200B", refused),
    ]
}

fn percentiles() {
    for (name, p) in paths() {
        let mut t = Vec::with_capacity(200_000);
        for _ in 0..200_000 {
            let s = Instant::now();
            let r = canonical_path(black_box(&p), true);
            black_box(&r);
            t.push(s.elapsed().as_nanos() as u64);
        }
        t.sort_unstable();
        let q = |f: f64| t[((t.len() as f64) * f) as usize];
        println!(
            "{name} ({} bytes): p50 {} ns, p99 {} ns, p99.9 {} ns",
            p.len(),
            q(0.5),
            q(0.99),
            q(0.999)
        );
    }
}

fn bench(c: &mut Criterion) {
    percentiles();
    let mut g = c.benchmark_group("canonical_path");
    for (name, p) in paths() {
        g.bench_function(name, |b| b.iter(|| canonical_path(black_box(&p), true)));
    }
    let [(_, canonical), ..] = paths();
    g.bench_function("engine-check-200B", |b| {
        b.iter(|| is_decision_form(black_box(&canonical)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
