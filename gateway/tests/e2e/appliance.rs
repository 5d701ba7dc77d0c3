//! The appliance's security suite, run on the configuration the Debian
//! package installs (`packaging/examples/minimal.toml`, made runnable by
//! [`Setup::packaged`]): HTTP/1.1 framing attacks and header spoofing (the
//! cases of `framing.rs` and `proxy.rs`, reused), HTTP/2 rapid reset
//! (CVE-2023-44487, raw HTTP/2 frames as the attacker), and slow clients
//! with slowhttptest (slowloris and slow bodies). The TLS scan of the same
//! configuration is `gateway/tests/tls_scan.rs`.
//!
//! The attacks come from 127.0.0.1; the "normal client" whose answers are
//! measured connects from 127.0.0.2, as another citizen would from another
//! address (the per-IP connection cap is per address).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{require_tool, TempDir};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use crate::framing::refuses_framing_attacks;
use crate::proxy::spoofed_headers_never_reach_the_backend;
use crate::Setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_configuration_refuses_framing_attacks_and_spoofed_headers() {
    let b = Backend::start("app").await;
    let s = Setup::packaged(b.addr);
    refuses_framing_attacks(&s, &b).await;
    spoofed_headers_never_reach_the_backend(&s).await;
}

/// CPU time (user + system) in seconds and current RSS in KiB of `pid`.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    // USER_HZ is 100 on Linux.
    (ticks as f64 / 100.0, rss)
}

/// One GET `/` on a fresh connection from `127.0.0.2`: status and time.
async fn normal_get(cfg: Arc<ClientConfig>, addr: SocketAddr, proto: Proto) -> (u16, Duration) {
    let started = Instant::now();
    let attempt = async {
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.bind("127.0.0.2:0".parse().unwrap())
            .map_err(|e| e.to_string())?;
        let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let req = http::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        client::send_on(tls, addr, "localhost", proto, req).await
    };
    let status = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(r)) => r.status.as_u16(),
        _ => 0,
    };
    (status, started.elapsed())
}

/// A normal client asking every `every` until `stop` is set: statuses and
/// latencies, alternating HTTP/1.1 and h2.
fn spawn_normal_client(
    s: &Setup,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u16, Duration)>> {
    let h1 = s.client(Proto::H1);
    let h2 = s.client(Proto::H2);
    let addr = s.gw.addr();
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut n = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (cfg, proto) = if n.is_multiple_of(2) {
                (h1.clone(), Proto::H1)
            } else {
                (h2.clone(), Proto::H2)
            };
            out.push(normal_get(cfg, addr, proto).await);
            n += 1;
            tokio::time::sleep(every).await;
        }
        out
    })
}

fn summarise(results: &[(u16, Duration)]) -> (usize, usize, Duration, Duration) {
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let mut lat: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    lat.sort();
    let median = lat.get(lat.len() / 2).copied().unwrap_or_default();
    let max = lat.last().copied().unwrap_or_default();
    (ok, results.len(), median, max)
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One attacking HTTP/2 connection, written frame by frame as the real
/// attack is: HEADERS (GET /, END_STREAM) and RST_STREAM(CANCEL) for each
/// new stream, back to back, 50 streams per write, up to `max` streams or
/// `until`. (The `h2` crate is no good as the attacker: a stream reset
/// before its HEADERS left the queue is sent as a bare RST_STREAM on an
/// idle stream, a protocol error the server answers by closing at once.)
/// A reader answers SETTINGS and PING and records GOAWAY. Returns the
/// streams sent and how the connection ended.
async fn rapid_reset(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    max: u32,
    until: Instant,
) -> (u32, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = match client::connect(cfg, addr, "localhost").await {
        Ok(t) => t,
        Err(e) => return (0, format!("connect: {e}")),
    };
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let goaway = Arc::new(std::sync::Mutex::new(None::<String>));
    let reader = {
        let goaway = goaway.clone();
        tokio::spawn(async move {
            let mut head = [0u8; 9];
            loop {
                if rd.read_exact(&mut head).await.is_err() {
                    return "closed by the gateway";
                }
                let len = (usize::from(head[0]) << 16)
                    | (usize::from(head[1]) << 8)
                    | usize::from(head[2]);
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    return "closed by the gateway";
                }
                match (head[3], head[4] & 1) {
                    (4, 0) => drop(tx.send(frame(4, 1, 0, &[]))),
                    (6, 0) => drop(tx.send(frame(6, 1, 0, &payload))),
                    (7, _) if payload.len() >= 8 => {
                        let code =
                            u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                        let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                        *goaway.lock().unwrap() = Some(format!("GOAWAY error {code:#x} {debug:?}"));
                    }
                    _ => {}
                }
            }
        })
    };
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(4, 0, 0, &[]));
    if wr.write_all(&start).await.is_err() {
        return (0, "preface refused".into());
    }
    // GET / on https://localhost from the HPACK static table, no dynamic state.
    let mut block = vec![0x82, 0x87, 0x84, 0x01, 0x09];
    block.extend_from_slice(b"localhost");
    let mut sent = 0u32;
    let ended = loop {
        if let Some(g) = goaway.lock().unwrap().clone() {
            break g;
        }
        if sent >= max || Instant::now() > until {
            break "attacker stopped (limit)".to_owned();
        }
        let mut batch = Vec::new();
        while let Ok(f) = rx.try_recv() {
            batch.extend(f);
        }
        for _ in 0..50 {
            let id = 2 * sent + 1;
            batch.extend(frame(1, 0x5, id, &block));
            batch.extend(frame(3, 0, id, &8u32.to_be_bytes()));
            sent += 1;
        }
        if let Err(e) = wr.write_all(&batch).await {
            break format!("write failed: {e}");
        }
    };
    let _ = wr.shutdown().await;
    let closing = match tokio::time::timeout(Duration::from_secs(3), reader).await {
        Ok(Ok(how)) => how.to_owned(),
        _ => "still open".to_owned(),
    };
    let g = goaway.lock().unwrap().clone().unwrap_or_default();
    (sent, format!("{ended}; {closing} {g}"))
}

/// CVE-2023-44487: clients that open and reset thousands of h2 streams must
/// neither take the gateway down nor starve a normal client, and the
/// gateway's memory and CPU must stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_neither_takes_the_gateway_down_nor_starves_others() {
    const CONNECTIONS: usize = 4;
    const STREAMS_PER_CONNECTION: u32 = 20_000;
    let b = Backend::start("app").await;
    let s = Setup::packaged(b.addr);
    let pid = s.gw.pid();
    // Warm up, then the baseline.
    for _ in 0..3 {
        assert_eq!(
            normal_get(s.client(Proto::H2), s.gw.addr(), Proto::H2)
                .await
                .0,
            200
        );
    }
    let (cpu0, rss0) = cpu_and_rss(pid);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let normal = spawn_normal_client(&s, Duration::from_millis(100), stop.clone());
    let started = Instant::now();
    let until = started + Duration::from_secs(10);
    // Each attacker reconnects as soon as the gateway closes on it, for 10 s.
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let cfg = s.client(Proto::H2);
            let addr = s.gw.addr();
            tokio::spawn(async move {
                let (mut streams, mut conns) = (0u64, 0u32);
                let mut endings = std::collections::BTreeMap::<String, u32>::new();
                while Instant::now() < until {
                    let (n, how) =
                        rapid_reset(cfg.clone(), addr, STREAMS_PER_CONNECTION, until).await;
                    streams += u64::from(n);
                    conns += 1;
                    *endings.entry(how).or_default() += 1;
                }
                (streams, conns, endings)
            })
        })
        .collect();
    let mut total = 0;
    let mut connections = 0;
    let mut endings = std::collections::BTreeMap::<String, u32>::new();
    for a in attackers {
        let (n, c, e) = a.await.unwrap();
        total += n;
        connections += c;
        for (k, v) in e {
            *endings.entry(k).or_default() += v;
        }
    }
    let attack = started.elapsed();
    let (cpu1, rss1) = cpu_and_rss(pid);
    // A second wave on fresh connections: the gateway keeps refusing the
    // pattern rather than having given up on h2.
    let (second, second_how) = rapid_reset(
        s.client(Proto::H2),
        s.gw.addr(),
        STREAMS_PER_CONNECTION,
        Instant::now() + Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = normal.await.unwrap();
    // After the attack: idle CPU, and normal service on h1 and h2.
    let (cpu2, _) = cpu_and_rss(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu3, rss3) = cpu_and_rss(pid);
    let peak = s.gw.peak_rss_kib();
    for proto in [Proto::H1, Proto::H2] {
        assert_eq!(normal_get(s.client(proto), s.gw.addr(), proto).await.0, 200);
    }
    let (ok, n, median, max) = summarise(&during);
    eprintln!(
        "rapid reset: {CONNECTIONS} attackers, {connections} connections, {total} streams written \
         (HEADERS + RST_STREAM; most never read: the gateway closes first) in {attack:.1?} \
         ({:.0}/s); endings: {endings:?}; second wave: {second} streams, {second_how}; \
         backend saw {} requests; gateway CPU {:.2} s during the attack, {:.2} s in the idle second \
         after; RSS {} KiB before, {} KiB after the attack, {} KiB a second later, peak {} KiB; \
         normal client: {ok}/{n} answered 200, median {median:.1?}, max {max:.1?}",
        total as f64 / attack.as_secs_f64(),
        b.requests(),
        cpu1 - cpu0,
        cpu3 - cpu2,
        rss0,
        rss1,
        rss3,
        peak
    );
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "the gateway died"
    );
    assert!(total >= 10_000, "the attack did not run: {endings:?}");
    assert!(n >= 20, "too few normal requests measured: {n}");
    assert_eq!(ok, n, "normal client refused during the attack: {during:?}");
    assert!(
        max < Duration::from_secs(2),
        "normal client waited {max:?} during the attack"
    );
    assert!(
        peak < rss0 + 64 * 1024,
        "memory grew by {} KiB under the attack",
        peak - rss0
    );
    assert!(
        cpu3 - cpu2 < 0.2,
        "the gateway kept working after the attack: {:.2} s CPU in one idle second",
        cpu3 - cpu2
    );
}

/// One slowhttptest run against the gateway: `(seconds, closed, pending,
/// connected, service available)` per sample, from its CSV.
fn slowhttptest(s: &Setup, mode: &[&str], seconds: u32) -> Vec<(u32, u32, u32, u32, bool)> {
    let tool = require_tool("slowhttptest", "slowhttptest");
    let dir = TempDir::new("slowhttptest");
    let out = dir.path().join("run");
    // `/upload` makes the backend read the whole body, as an upload would.
    let url = format!("https://127.0.0.1:{}/upload", s.gw.addr().port());
    let result = std::process::Command::new(tool)
        .args(mode)
        .args(["-c", "200", "-r", "100", "-i", "5", "-p", "3"])
        .args(["-l", &seconds.to_string(), "-g", "-o"])
        .arg(&out)
        .args(["-u", &url])
        .output()
        .unwrap();
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap_or_else(|e| {
        panic!(
            "slowhttptest wrote no CSV ({e}): {}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        )
    });
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<u32> = l.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            (f.len() == 5).then(|| (f[0], f[1], f[2], f[3], f[4] != 0))
        })
        .collect()
}

async fn slow_clients(mode: &'static [&'static str], name: &str) {
    let b = Backend::start("app").await;
    let s = Setup::packaged(b.addr);
    let pid = s.gw.pid();
    let (_, rss0) = cpu_and_rss(pid);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let normal = spawn_normal_client(&s, Duration::from_millis(250), stop.clone());
    let samples = {
        let s = &s;
        tokio::task::block_in_place(|| slowhttptest(s, mode, 16))
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = normal.await.unwrap();
    let peak = s.gw.peak_rss_kib();
    let (ok, n, median, max) = summarise(&during);
    let most_connected = samples.iter().map(|x| x.3).max().unwrap_or(0);
    let closed = samples.last().map(|x| x.1).unwrap_or(0);
    eprintln!(
        "slowhttptest {name}: {} samples, up to {most_connected} slow connections held at once, \
         {closed} closed by the gateway by the end, service available in {}/{} samples; \
         normal client: {ok}/{n} answered 200, median {median:.1?}, max {max:.1?}; \
         RSS {rss0} KiB before, peak {peak} KiB",
        samples.len(),
        samples.iter().filter(|x| x.4).count(),
        samples.len()
    );
    assert!(samples.len() >= 10, "slowhttptest did not run: {samples:?}");
    assert!(
        most_connected >= 100,
        "the attack did not connect: {samples:?}"
    );
    assert!(
        samples.iter().all(|x| x.4),
        "slowhttptest saw the service unavailable: {samples:?}"
    );
    assert!(n >= 20, "too few normal requests measured: {n}");
    assert_eq!(ok, n, "normal client refused under {name}: {during:?}");
    assert!(
        max < Duration::from_secs(2),
        "normal client waited {max:?} under {name}"
    );
    assert!(
        peak < rss0 + 64 * 1024,
        "memory grew by {} KiB",
        peak - rss0
    );
    if name == "slowloris" {
        // header_read_timeout (10 s by default) cuts unfinished heads.
        assert!(closed >= 50, "slow heads were not cut off: {samples:?}");
    }
}

/// Slowloris: 200 connections each sending a header line every 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_and_does_not_starve_others() {
    slow_clients(&["-H"], "slowloris").await;
}

/// Slow bodies (R-U-Dead-Yet): 200 POSTs announcing 64 KiB and sending a few
/// bytes every 5 s. They are held until the route's idle timeout (60 s by
/// default); the point is that others are still served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_do_not_starve_others() {
    slow_clients(&["-B", "-s", "65536"], "slow body").await;
}
