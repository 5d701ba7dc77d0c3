//! Throughput with policy enforcement on vs off (issue #5's "< 5 % loss").
//! Not part of the normal test run:
//!
//! ```sh
//! cargo build --release -p stadttor-gateway --bin stadttor
//! STADTTOR_BENCH_BIN=$CARGO_TARGET_DIR/release/stadttor \
//!   cargo test -p stadttor-gateway --test bench_policy -- --ignored --nocapture
//! ```
//!
//! One release gateway (pinned to core 0) with two routes that differ only
//! in `[routes.authz]`: `/on` is decided by the policy, `/off` says
//! `off = true`. Both authenticate the same sealed session cookie, have no
//! audit log and no access log, and go to one nginx backend; wrk (pinned
//! with nginx to core 1) runs HTTP/1.1 keep-alive, 50 connections, against
//! each route in alternation. Prints requests per second and the ratio.
//! Needs `wrk` and `nginx` (Debian `wrk`, `nginx-light`). Traffic only goes
//! to 127.0.0.1; every run is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stadttor_gateway::authn::cookie::CookieKeys;
use stadttor_gateway::authn::session::{SessionData, COOKIE};
use stadttor_gateway::identity::Level;
use testkit::{free_port, require_tool, Gateway, TempDir, TestPki};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        // SIGTERM, so nginx's master stops its worker too.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) of process `pid` so far, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces): utime is
    // field 14, stime 15 (1-based), in clock ticks (100 per second here).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks * 10_000.0
}

/// One wrk run: (requests per second, gateway CPU µs per request).
fn measure(pid: u32, url: &str, cookie: &str, secs: u64) -> (f64, f64) {
    let before = cpu_us(pid);
    let (rps, total) = wrk_run(url, cookie, secs);
    (rps, (cpu_us(pid) - before) / total)
}

fn wrk(url: &str, cookie: &str, secs: u64) -> f64 {
    wrk_run(url, cookie, secs).0
}

fn wrk_run(url: &str, cookie: &str, secs: u64) -> (f64, f64) {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c50"])
        .arg(format!("-d{secs}s"))
        .arg("-H")
        .arg(format!("Cookie: {COOKIE}={cookie}"))
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "errors in the benchmark run:\n{text}"
    );
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let total = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    (rps, total)
}

#[test]
#[ignore = "benchmark: run by hand with a release binary (see module doc)"]
fn policy_on_vs_off_throughput() {
    let bin = std::env::var("STADTTOR_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_stadttor").to_owned());
    require_tool("wrk", "wrk");
    let nginx = require_tool("nginx", "nginx-light");
    let secs: u64 = std::env::var("BENCH_DURATION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = TempDir::new("bench-policy");
    let pki = TestPki::new(&dir, "main", &[]);

    // Backend: nginx answering 100 bytes.
    let backend_port = free_port();
    std::fs::create_dir_all(dir.path().join("nginx/logs")).unwrap();
    let conf = dir.write(
        "nginx/nginx.conf",
        &format!(
            "worker_processes 1;\nerror_log stderr error;\npid {pid};\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000; server {{ listen 127.0.0.1:{backend_port}; \
             location / {{ return 200 \"{body}\"; }} }} }}\n",
            pid = dir.path().join("nginx/nginx.pid").display(),
            body = "x".repeat(100)
        ),
    );
    let _nginx = Kill(
        Command::new("taskset")
            .args(["-c", "1"])
            .arg(&nginx)
            .args(["-p"])
            .arg(dir.path().join("nginx"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Policy store with a rule for /on.
    let store = format!("file:{}", dir.path().join("policies").display());
    let pol = dir.path().join("policy-src");
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::write(
        pol.join("policy.csv"),
        format!(
            "{}p, *, musterstadt, /on/*, GET, low, *, *, allow\n",
            stadttor_policies::set::DEFAULT_POLICY
        ),
    )
    .unwrap();
    std::fs::write(pol.join("tests.csv"), stadttor_policies::set::DEFAULT_TESTS).unwrap();
    let o = Command::new(&bin)
        .args([
            "policy",
            "--store",
            &store,
            "init",
            "--officers",
            "a,b",
            "--from",
        ])
        .arg(&pol)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");

    // Session cookie key and a sealed session.
    let keys_path = dir.path().join("session.keys");
    std::fs::write(&keys_path, format!("{}\n", CookieKeys::generate().unwrap())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let keys = CookieKeys::load(&keys_path).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = SessionData {
        v: 1,
        id: "bench-session".into(),
        p: "staff".into(),
        iss: "http://127.0.0.1:9".into(),
        sub: "bench-user".into(),
        sid: None,
        base: Some(Level::Substantial),
        lvl: Some(Level::Substantial),
        auth: now,
        iat: now,
        exp: now + 3600,
        seen: now,
        claims: Default::default(),
    };
    // Sealed for the host wrk sends (`https://127.0.0.1:PORT`).
    let cookie = keys
        .seal_for(COOKIE, "127.0.0.1", &serde_json::to_vec(&session).unwrap())
        .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let akey = dir.path().join("assertion.p8");
    std::fs::write(&akey, pkcs8.as_ref()).unwrap();
    dir.write_secret("secret", "x");

    let route = |name: &str, authz: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\nupstream = \"app\"\npath_prefix = \"/{name}\"\n\
             [routes.auth]\nmethods = [\"session\"]\nproviders = [\"staff\"]\n[routes.authz]\n{authz}\n"
        )
    };
    let config = format!(
        r#"
[server]
access_log = false

[[listeners]]
name = "public"
listen = "127.0.0.1:0"
{cert}

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:{backend_port}"]

[policies]
store = "{store}"

[identity]
session_key_file = {keys:?}
store = "file:{sessions}"
assertion_key = "file:{akey}"

[[identity.providers]]
name = "staff"
display_name = "Staff"
issuer = "http://127.0.0.1:9"
client_id = "stadttor"
client_secret_file = "secret"
redirect_uri = "https://localhost/.stadttor/callback/staff"
id_token_algs = ["ES256"]
allow_http = true

{on}
{off}
"#,
        cert = pki.certificate_toml(&[]),
        keys = keys_path.display().to_string(),
        sessions = dir.path().join("sessions").display(),
        akey = akey.display(),
        on = route("on", "domain = \"musterstadt\""),
        off = route("off", "off = true"),
    );
    let path = dir.write("stadttor.toml", &config);
    // Pin the gateway to core 0 through a wrapper.
    let wrapper = dir.write(
        "pinned.sh",
        &format!("#!/bin/sh\nexec taskset -c 0 {bin} \"$@\"\n"),
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let gw = Gateway::start_file(wrapper.to_str().unwrap(), &path);
    assert!(gw.wait_for_log("policy version active", Duration::from_secs(5)));
    let base = format!("https://127.0.0.1:{}", gw.addr().port());
    // Warm-up and sanity: both routes answer 200 (wrk refuses non-2xx).
    wrk(&format!("{base}/on/x"), &cookie, 1);
    wrk(&format!("{base}/off/x"), &cookie, 1);
    let pid = gw.pid();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate which goes first.
        if i % 2 == 0 {
            on.push(measure(pid, &format!("{base}/on/x"), &cookie, secs));
            off.push(measure(pid, &format!("{base}/off/x"), &cookie, secs));
        } else {
            off.push(measure(pid, &format!("{base}/off/x"), &cookie, secs));
            on.push(measure(pid, &format!("{base}/on/x"), &cookie, secs));
        }
    }
    let median = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let rps = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let (on_r, off_r) = (median(rps(&on)), median(rps(&off)));
    let (on_c, off_c) = (median(cpu(&on)), median(cpu(&off)));
    println!(
        "policy on : req/s {:?}, CPU µs/request {:?}",
        rps(&on),
        cpu(&on)
    );
    println!(
        "policy off: req/s {:?}, CPU µs/request {:?}",
        rps(&off),
        cpu(&off)
    );
    println!(
        "medians: on {on_r:.0} req/s, {on_c:.1} µs/request; off {off_r:.0} req/s, {off_c:.1} µs/request"
    );
    println!(
        "on/off throughput = {:.3} ({:+.1} %); CPU per request on/off = {:.3} ({:+.1} %)",
        on_r / off_r,
        (on_r / off_r - 1.0) * 100.0,
        on_c / off_c,
        (on_c / off_c - 1.0) * 100.0
    );
    assert!(gw.logs().matches("access denied").count() == 0);
}
