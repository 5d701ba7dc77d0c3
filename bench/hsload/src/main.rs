//! hsload: TLS handshake load generator (native twin of bench/hsload.py).
//!
//! Every connection: TCP connect, TLS handshake, one `GET PATH` with
//! `Connection: close`, read to EOF, close. Mode `full` disables session
//! resumption, so every handshake is a full one; mode `resume` offers the
//! session from the thread's previous connection. Both are verified on the
//! client side (rustls' `handshake_kind`), and counted, so the caller can
//! refuse a mislabeled result. The client offers P-256 only (no
//! HelloRetryRequest against the gateway's BSI profile) and checks the
//! server's handshake signature, but not its certificate chain.
//!
//! Usage: hsload --port P [--host 127.0.0.1] [--path /small]
//!               --mode full|resume [--threads 4] [--duration 10] [--warmup 0.5]
//!
//! Prints one JSON object: mode, connections, rps, p50_ms, p99_ms, full,
//! reused, errors, proto, cipher. Loopback targets only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};

#[derive(Debug)]
struct SignatureOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Args {
    host: String,
    port: u16,
    path: String,
    resume: bool,
    threads: usize,
    duration: f64,
    warmup: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 0,
        path: "/small".into(),
        resume: false,
        threads: 4,
        duration: 10.0,
        warmup: 0.5,
    };
    let mut mode = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--host" => a.host = v,
            "--port" => a.port = v.parse().map_err(|e| format!("--port: {e}"))?,
            "--path" => a.path = v,
            "--mode" => mode = Some(v),
            "--threads" | "--procs" => a.threads = v.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--duration" => a.duration = num(&v)?,
            "--warmup" => a.warmup = num(&v)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    a.resume = match mode.as_deref() {
        Some("full") => false,
        Some("resume") => true,
        _ => return Err("--mode full|resume is required".into()),
    };
    if a.port == 0 {
        return Err("--port is required".into());
    }
    if !matches!(a.host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        return Err("loopback targets only".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    full: u64,
    reused: u64,
    errors: u64,
    proto: Option<String>,
    cipher: Option<String>,
}

fn config(resume: bool) -> Arc<ClientConfig> {
    let mut provider = ring::default_provider();
    provider.kx_groups = vec![ring::kx_group::SECP256R1];
    let provider = Arc::new(provider);
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignatureOnly(provider)))
        .with_no_client_auth();
    c.resumption = if resume {
        Resumption::in_memory_sessions(64)
    } else {
        Resumption::disabled()
    };
    Arc::new(c)
}

/// One connection; `Ok((resumed, proto, cipher))`.
fn connect(
    a: &Args,
    cfg: &Arc<ClientConfig>,
    req: &[u8],
) -> Result<(bool, String, String), String> {
    let tcp = TcpStream::connect((a.host.as_str(), a.port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(req).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 65536];
    let mut got = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            // A server that closes without close_notify after the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && got > 0 => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if got == 0 {
        return Err("empty response".into());
    }
    let resumed = s.conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let proto = format!("{:?}", s.conn.protocol_version());
    let cipher = format!("{:?}", s.conn.negotiated_cipher_suite().map(|c| c.suite()));
    Ok((resumed, proto, cipher))
}

fn worker(a: &Args, start: Instant) -> Tally {
    let cfg = config(a.resume);
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        a.path, a.host, a.port
    );
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let mut t = Tally::default();
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            return t;
        }
        match connect(a, &cfg, req.as_bytes()) {
            Ok((resumed, proto, cipher)) => {
                if t0 < measure_from {
                    continue;
                }
                t.lat.push(t0.elapsed());
                if resumed {
                    t.reused += 1;
                } else {
                    t.full += 1;
                }
                t.proto.get_or_insert(proto);
                t.cipher.get_or_insert(cipher);
            }
            Err(_) => t.errors += 1,
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0 * sorted.len() as f64 + 0.5).round() as usize).clamp(1, sorted.len()) - 1;
    sorted[k].as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("hsload: {e}");
            return ExitCode::from(64);
        }
    };
    let start = Instant::now();
    let handles: Vec<_> = (0..a.threads)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || worker(&a, start))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let Ok(t) = h.join() else {
            eprintln!("hsload: a worker panicked");
            return ExitCode::FAILURE;
        };
        all.lat.extend(t.lat);
        all.full += t.full;
        all.reused += t.reused;
        all.errors += t.errors;
        all.proto = all.proto.or(t.proto);
        all.cipher = all.cipher.or(t.cipher);
    }
    all.lat.sort();
    let n = all.lat.len();
    let q = |s: &Option<String>| s.as_ref().map_or("null".to_string(), |s| format!("{s:?}"));
    println!(
        "{{\"mode\": \"{}\", \"connections\": {n}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"full\": {}, \"reused\": {}, \"errors\": {}, \"proto\": {}, \"cipher\": {}}}",
        if a.resume { "resume" } else { "full" },
        n as f64 / a.duration,
        pct(&all.lat, 50.0),
        pct(&all.lat, 99.0),
        all.full,
        all.reused,
        all.errors,
        q(&all.proto),
        q(&all.cipher),
    );
    ExitCode::SUCCESS
}
