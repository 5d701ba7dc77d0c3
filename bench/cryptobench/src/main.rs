//! cryptobench: ring against aws-lc-rs in one process and one run.
//!
//! Measures, per library, ECDSA P-256 sign/verify, Ed25519 sign, P-256
//! ECDHE, ML-KEM-768 (aws-lc-rs only), AES-128/256-GCM sealing of 16 KiB
//! records, and TLS 1.3 handshakes between an in-memory rustls client and
//! server (full and resumed; P-256, X25519 and the hybrid groups
//! SECP256R1MLKEM768 and X25519MLKEM768), each side's CPU time apart.
//! Every figure is CPU time of the one measuring thread; rounds alternate
//! the order of the libraries so neither always runs first.
//!
//! Usage: cryptobench [--rounds 3] [--seconds 1] [--warmup 0.2]
//!                    [--parts prims,handshakes] [--tsv FILE]
//!                    [--prims ecdsa-sign,ed25519-sign,sha256-10k,...]
//!
//! Prints a markdown report (medians, min–max over the rounds) on stdout.

mod handshake;
mod measure;
mod prims;
mod report;

use std::process::ExitCode;

use handshake::{Pair, Pki};
use prims::{Lib, Prim};
use report::Row;

/// Command-line settings.
pub struct Args {
    rounds: usize,
    seconds: f64,
    warmup: f64,
    prims: bool,
    handshakes: bool,
    tsv: Option<String>,
    only: Option<Vec<Prim>>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        rounds: 3,
        seconds: 1.0,
        warmup: 0.2,
        prims: true,
        handshakes: true,
        tsv: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--seconds" => a.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => a.warmup = val()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--parts" => {
                let v = val()?;
                a.prims = v.split(',').any(|p| p == "prims");
                a.handshakes = v.split(',').any(|p| p == "handshakes");
            }
            "--tsv" => a.tsv = Some(val()?),
            "--prims" => {
                let mut only = Vec::new();
                for name in val()?.split(',') {
                    let p = Prim::ALL.into_iter().find(|p| p.key() == name).ok_or_else(|| {
                        let names: Vec<_> = Prim::ALL.iter().map(|p| p.key()).collect();
                        format!("--prims: unknown {name:?}; known: {}", names.join(","))
                    })?;
                    only.push(p);
                }
                a.only = Some(only);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(1..=20).contains(&a.rounds) {
        return Err("--rounds must be in 1..=20".into());
    }
    if !(a.seconds > 0.0 && a.seconds <= 30.0 && (0.0..=5.0).contains(&a.warmup)) {
        return Err("--seconds must be in (0, 30], --warmup in [0, 5]".into());
    }
    Ok(a)
}

fn measure_prims(a: &Args, round: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let order = if round.is_multiple_of(2) {
        [Lib::Ring, Lib::AwsLc]
    } else {
        [Lib::AwsLc, Lib::Ring]
    };
    let wanted = |p: &Prim| a.only.as_ref().is_none_or(|o| o.contains(p));
    for p in Prim::ALL.into_iter().filter(wanted) {
        for lib in order.into_iter().filter(|l| p.available(*l)) {
            let s = prims::run(p, lib, a.seconds, a.warmup)
                .map_err(|e| format!("{} ({}): {e}", p.label(), lib.name()))?;
            rows.push(Row::prim(round, p, lib, s));
        }
    }
    Ok(())
}

fn measure_handshakes(
    a: &Args,
    round: usize,
    pki: &Pki,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let mut vs = handshake::variants();
    if !round.is_multiple_of(2) {
        vs.reverse();
    }
    for v in &vs {
        let who = format!("{} ({})", v.label, v.server.name());
        let s = Pair::new(v, pki)
            .and_then(|p| p.run(a.seconds, a.warmup))
            .map_err(|e| format!("{who}: {e}"))?;
        rows.push(Row::handshake(round, v, s));
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cryptobench: {e}");
            return ExitCode::from(64);
        }
    };
    let load_before = report::loadavg();
    let clock_ns = measure::clock_cost_ns();
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cryptobench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    for round in 0..a.rounds {
        eprintln!("cryptobench: round {} of {}", round + 1, a.rounds);
        let r = (if a.prims {
            measure_prims(&a, round, &mut rows)
        } else {
            Ok(())
        })
        .and_then(|()| {
            if a.handshakes {
                measure_handshakes(&a, round, &pki, &mut rows)
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            eprintln!("cryptobench: {e}");
            return ExitCode::FAILURE;
        }
    }
    let load_after = report::loadavg();
    if let Some(path) = &a.tsv {
        if let Err(e) = std::fs::write(path, report::tsv(&rows)) {
            eprintln!("cryptobench: {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    print!(
        "{}",
        report::markdown(
            &a.rounds,
            a.seconds,
            &rows,
            clock_ns,
            &load_before,
            &load_after
        )
    );
    ExitCode::SUCCESS
}
