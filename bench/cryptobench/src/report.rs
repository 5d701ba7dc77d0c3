//! The report: medians and min–max over the rounds as markdown tables, the
//! raw rows as TSV, and the machine's load.

use std::fmt::Write as _;

use crate::handshake::{Server, Variant};
use crate::measure::{per_op, Sample};
use crate::prims::{Lib, Prim};

/// One measured figure of one round.
pub struct Row {
    round: usize,
    /// `prim` or `handshake`.
    part: &'static str,
    label: &'static str,
    /// The library (primitives) or the server's provider (handshakes).
    who: &'static str,
    /// The library the figure belongs to: `ring` or `aws-lc-rs`.
    base: &'static str,
    client: &'static str,
    throughput: bool,
    s: Sample,
}

impl Row {
    /// A primitive's figure.
    pub fn prim(round: usize, p: Prim, lib: Lib, s: Sample) -> Self {
        Self {
            round,
            part: "prim",
            label: p.label(),
            who: lib.name(),
            base: lib.name(),
            client: "",
            throughput: p.is_throughput(),
            s,
        }
    }

    /// A handshake variant's figure.
    pub fn handshake(round: usize, v: &Variant, s: Sample) -> Self {
        let base = match v.server {
            Server::Ring | Server::RingPq => "ring",
            Server::AwsLc | Server::AwsLcPq => "aws-lc-rs",
        };
        Self {
            round,
            part: "handshake",
            label: v.label,
            who: v.server.name(),
            base,
            client: v.client.name(),
            throughput: false,
            s,
        }
    }

    fn value(&self) -> f64 {
        if self.throughput {
            self.s.mb_per_s()
        } else {
            self.s.us_per_op()
        }
    }

    fn server_us(&self) -> f64 {
        per_op(self.s.server_cpu, self.s.ops)
    }

    fn client_us(&self) -> f64 {
        per_op(self.s.client_cpu, self.s.ops)
    }
}

/// `/proc/loadavg`'s three averages, or a note why not.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Median, min and max.
fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

fn pick<'a>(rows: &'a [Row], part: &str, label: &str, base: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| r.part == part && r.label == label && r.base == base)
        .collect()
}

fn fmt_stat(st: Option<(f64, f64, f64)>, digits: usize) -> String {
    match st {
        Some((m, lo, hi)) => format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})"),
        None => "–".into(),
    }
}

/// `f(aws-lc-rs) / f(ring)` within each round, where both ran: the
/// round's load hits both figures of the pair alike.
fn paired(rows: &[Row], part: &str, label: &str, f: fn(&Row) -> f64) -> Option<(f64, f64, f64)> {
    per_round(
        &pick(rows, part, label, "aws-lc-rs"),
        &pick(rows, part, label, "ring"),
        f,
    )
}

/// `f(a) / f(b)` of the rows of the same round.
fn per_round(a: &[&Row], b: &[&Row], f: fn(&Row) -> f64) -> Option<(f64, f64, f64)> {
    let ratios = b
        .iter()
        .filter_map(|r| {
            let x = a.iter().find(|x| x.round == r.round)?;
            (f(r) > 0.0).then(|| f(x) / f(r))
        })
        .collect();
    stats(ratios)
}

fn fmt_ratio(st: Option<(f64, f64, f64)>) -> String {
    match st {
        Some((m, lo, hi)) => format!("{m:.2}× ({lo:.2}–{hi:.2})"),
        None => "–".into(),
    }
}

fn labels(rows: &[Row], part: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in rows.iter().filter(|r| r.part == part) {
        if !out.contains(&r.label) {
            out.push(r.label);
        }
    }
    out
}

fn prim_table(rows: &[Row], out: &mut String) {
    out.push_str("\n### Primitives\n\nCPU µs per operation (lower is better); AES-GCM in MB per CPU second (higher is better).\n\n");
    out.push_str(
        "| primitive | ring | aws-lc-rs | aws-lc-rs / ring, per round |\n|---|---|---|---|\n",
    );
    for label in labels(rows, "prim") {
        let of = |base| {
            stats(
                pick(rows, "prim", label, base)
                    .iter()
                    .map(|r| r.value())
                    .collect(),
            )
        };
        let (r, a) = (of("ring"), of("aws-lc-rs"));
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            fmt_stat(r, 1),
            fmt_stat(a, 1),
            fmt_ratio(paired(rows, "prim", label, Row::value))
        );
    }
}

fn handshake_table(rows: &[Row], out: &mut String) {
    out.push_str(
        "\n### TLS 1.3 handshakes, in memory\n\nCPU µs per handshake, server and client apart. \
         For the hybrid groups, the ring column is ring with aws-lc-rs's hybrid groups in front \
         (and an aws-lc-rs client: ring has no ML-KEM).\n\n",
    );
    out.push_str(
        "| handshake | server: ring | server: aws-lc-rs | server aws-lc-rs / ring, per round | client: ring column | client: aws-lc-rs column | bytes c→s / s→c |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for label in labels(rows, "handshake") {
        let (r, a) = (
            pick(rows, "handshake", label, "ring"),
            pick(rows, "handshake", label, "aws-lc-rs"),
        );
        let srv = |v: &[&Row]| stats(v.iter().map(|r| r.server_us()).collect());
        let cli = |v: &[&Row]| stats(v.iter().map(|r| r.client_us()).collect());
        let bytes = r.first().or(a.first()).map_or("–".into(), |x| {
            format!("{} / {}", x.s.c2s_bytes, x.s.s2c_bytes)
        });
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {bytes} |",
            fmt_stat(srv(&r), 0),
            fmt_stat(srv(&a), 0),
            fmt_ratio(paired(rows, "handshake", label, Row::server_us)),
            fmt_stat(cli(&r), 0),
            fmt_stat(cli(&a), 0),
        );
    }
}

fn pq_table(rows: &[Row], out: &mut String) {
    out.push_str(
        "\n### Against classic P-256 (full handshakes, same server provider, per round)\n\n",
    );
    out.push_str(
        "| group | server provider | server CPU / P-256 | client CPU / P-256 |\n|---|---|---|---|\n",
    );
    for base in ["ring", "aws-lc-rs"] {
        let p256 = pick(rows, "handshake", "P-256, full", base);
        for label in labels(rows, "handshake") {
            if label == "P-256, full" || label.ends_with("resumed") {
                continue;
            }
            let v = pick(rows, "handshake", label, base);
            let Some(first) = v.first() else { continue };
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} |",
                first.who,
                fmt_ratio(per_round(&v, &p256, Row::server_us)),
                fmt_ratio(per_round(&v, &p256, Row::client_us)),
            );
        }
    }
}

/// The markdown report.
pub fn markdown(
    rounds: &usize,
    seconds: f64,
    rows: &[Row],
    clock_ns: f64,
    before: &str,
    after: &str,
) -> String {
    let on_cpu = stats(rows.iter().map(|r| r.s.on_cpu()).collect());
    let mut out = String::new();
    let _ = writeln!(out, "## cryptobench: ring against aws-lc-rs\n");
    let _ = writeln!(
        out,
        "{} × {rounds} rounds, {seconds} s of CPU per figure, libraries' order alternating per round; \
         medians (min–max over the rounds).  \nload average (1/5/15 min) before: {before}; after: {after}.  \n\
         the measuring thread's share of the wall time on a CPU: median {:.2}, min {:.2}.  \n\
         one thread-CPU clock read: {clock_ns:.0} ns (a handshake reads it about eleven times, each read charged to one side).",
        cpu_model(),
        on_cpu.map_or(0.0, |s| s.0),
        on_cpu.map_or(0.0, |s| s.1),
    );
    prim_table(rows, &mut out);
    handshake_table(rows, &mut out);
    pq_table(rows, &mut out);
    out
}

/// Every row, tab-separated.
pub fn tsv(rows: &[Row]) -> String {
    let mut out = String::from(
        "round\tpart\tlabel\tprovider\tclient\tops\tcpu_s\twall_s\tvalue\tserver_us\tclient_us\tc2s_bytes\ts2c_bytes\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{:.6}\t{:.6}\t{:.3}\t{:.2}\t{:.2}\t{}\t{}",
            r.round + 1,
            r.part,
            r.label,
            r.who,
            r.client,
            r.s.ops,
            r.s.cpu.as_secs_f64(),
            r.s.wall.as_secs_f64(),
            r.value(),
            r.server_us(),
            r.client_us(),
            r.s.c2s_bytes,
            r.s.s2c_bytes,
        );
    }
    out
}
