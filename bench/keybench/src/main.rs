//! keybench: resolves one key through `stadttor_hsm::KeyStore` and signs a
//! TLS-1.3-CertificateVerify-sized message in a loop for a bounded time.
//!
//! Usage: keybench --key REF [--seconds S] [--warmup S] [--threads N]
//!                 [--tcti TCTI] [--pkcs11-module SO] [--pin-file F]
//!
//! Prints one JSON line: signatures, seconds, signatures/s, latency per
//! signature (p50/p99/max, µs) and the key's own stats counter, so the
//! count can be cross-checked against what the backend saw.

use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stadttor_hsm::{KeyRef, KeyStore, KeyStoreConfig, SigningKey};

struct Args {
    key: String,
    seconds: f64,
    warmup: f64,
    threads: usize,
    tcti: Option<String>,
    module: Option<String>,
    pin_file: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        key: String::new(),
        seconds: 5.0,
        warmup: 0.5,
        threads: 1,
        tcti: None,
        module: None,
        pin_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--key" => a.key = val()?,
            "--seconds" => a.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => a.warmup = val()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--threads" => a.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--tcti" => a.tcti = Some(val()?),
            "--pkcs11-module" => a.module = Some(val()?),
            "--pin-file" => a.pin_file = Some(val()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.key.is_empty() {
        return Err("--key is required".into());
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    Ok(a)
}

/// Signs until `until`; returns per-signature latencies in µs.
fn sign_loop(key: &Arc<dyn SigningKey>, until: Instant) -> Result<Vec<u32>, String> {
    // TLS 1.3 CertificateVerify input: 64 spaces, the context string, a
    // zero byte and a SHA-384 transcript hash (130 bytes in all).
    let mut msg = vec![0x20u8; 64];
    msg.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    msg.extend((0..48u8).map(|i| i.wrapping_mul(37)));
    let mut lat = Vec::with_capacity(1 << 16);
    let mut n: u8 = 0;
    loop {
        let t0 = Instant::now();
        if t0 >= until {
            return Ok(lat);
        }
        // Vary the message so no backend can cache anything.
        n = n.wrapping_add(1);
        msg[129] = n;
        let sig = key.sign(&msg).map_err(|e| format!("sign: {e}"))?;
        if sig.len() < 8 {
            return Err(format!("implausible signature length {}", sig.len()));
        }
        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
}

fn run() -> Result<(), String> {
    let a = parse()?;
    let mut cfg = KeyStoreConfig::default();
    cfg.tpm_tcti = a.tcti.clone();
    cfg.pkcs11_module = a.module.clone().map(Into::into);
    cfg.pkcs11_pin_file = a.pin_file.clone().map(Into::into);
    cfg.pkcs11_sessions = a.threads.max(1);
    let store = KeyStore::new(cfg);
    let key_ref = KeyRef::from_str(&a.key).map_err(|e| format!("{}: {e}", a.key))?;
    let t_open = Instant::now();
    let key = store
        .resolve(&key_ref)
        .map_err(|e| format!("resolve {}: {e}", a.key))?;
    let open_ms = t_open.elapsed().as_secs_f64() * 1e3;

    if a.warmup > 0.0 {
        sign_loop(&key, Instant::now() + Duration::from_secs_f64(a.warmup))?;
    }
    let before = key.stats().map(|s| s.snapshot().signatures);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(a.seconds);
    let mut lat: Vec<u32> = Vec::new();
    if a.threads <= 1 {
        lat = sign_loop(&key, until)?;
    } else {
        let handles: Vec<_> = (0..a.threads)
            .map(|_| {
                let k = key.clone();
                std::thread::spawn(move || sign_loop(&k, until))
            })
            .collect();
        for h in handles {
            lat.extend(
                h.join()
                    .map_err(|_| "signing thread panicked".to_string())??,
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = key.stats().map(|s| s.snapshot().signatures);
    lat.sort_unstable();
    let q = |p: f64| -> u32 {
        if lat.is_empty() {
            return 0;
        }
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
    };
    let counted = match (before, after) {
        (Some(b), Some(a)) => (a - b).to_string(),
        _ => "null".into(),
    };
    println!(
        "{{\"key\":\"{}\",\"protection\":\"{}\",\"threads\":{},\"open_ms\":{:.1},\"signatures\":{},\"key_stats_signatures\":{},\"seconds\":{:.3},\"per_second\":{:.1},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        a.key,
        key.protection(),
        a.threads,
        open_ms,
        lat.len(),
        counted,
        secs,
        lat.len() as f64 / secs,
        q(0.50),
        q(0.99),
        lat.last().copied().unwrap_or(0)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keybench: {e}");
            ExitCode::from(1)
        }
    }
}
