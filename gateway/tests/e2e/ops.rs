//! Operations: reload on SIGHUP, drain on SIGTERM, admin endpoints,
//! slow clients, connection caps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::backend::Backend;
use testkit::client::{self, Proto};
use tokio::io::AsyncWriteExt;

use crate::Setup;

async fn backend_name(s: &Setup) -> String {
    s.get(Proto::H1, "/").await.json()["backend"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_good_config_and_rejects_a_bad_one() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let s = Setup::start(a.addr, "", "", "");
    assert_eq!(backend_name(&s).await, "a");
    let good = std::fs::read_to_string(&s.gw.config_path).unwrap();

    // Good: point the route at b.
    let to_b = good.replace(&a.addr.to_string(), &b.addr.to_string());
    std::fs::write(&s.gw.config_path, &to_b).unwrap();
    s.gw.signal("HUP");
    assert!(s
        .gw
        .wait_for_log("configuration reloaded", Duration::from_secs(5)));
    assert_eq!(backend_name(&s).await, "b");

    // Bad, three ways: syntax, semantics, unusable certificate. Each is
    // rejected and b keeps serving.
    let bad_cases = [
        ("syntax", "this is [ not toml".to_owned()),
        (
            "unknown upstream",
            to_b.replace("upstream = \"app\"", "upstream = \"nope\""),
        ),
        (
            "missing certificate",
            to_b.replace("server.pem", "does-not-exist.pem"),
        ),
    ];
    for (i, (case, text)) in bad_cases.iter().enumerate() {
        std::fs::write(&s.gw.config_path, text).unwrap();
        s.gw.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if s.gw.logs().matches("reload rejected").count() > i {
                break;
            }
            assert!(Instant::now() < deadline, "{case}: no rejection logged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            backend_name(&s).await,
            "b",
            "{case}: old config keeps serving"
        );
    }
    let (_, metrics) = s.gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("stadttor_config_reloads_total{name=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stadttor_config_reloads_total{name=\"rejected\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let b = Backend::start("slow").await;
    let mut s = Setup::start(b.addr, "drain_timeout = \"10s\"", "", "");
    let c = s.client(Proto::H1);
    let addr = s.gw.addr();
    let inflight = tokio::spawn(client::get(
        c.clone(),
        addr,
        "localhost",
        Proto::H1,
        "/slow/1500",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.gw.signal("TERM");
    // The drain's order: first `/readyz` turns 503, then the log line, then
    // the listeners close. Sampled in that reverse order, whoever sees the
    // log line or a refused connection must find `/readyz` at 503 already;
    // this holds on every sample, however the threads are scheduled. (The
    // admin listener stays up while draining so load balancers see it.)
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut samples = 0;
    loop {
        let logged = s.gw.logs().contains("draining");
        let refused = tokio::net::TcpStream::connect(addr).await.is_err();
        let (code, body) = s.gw.admin_get("/readyz").await;
        samples += 1;
        if logged || refused {
            assert_eq!(
                code,
                503,
                "/readyz answered {code} after {} (sample {samples}): {body}",
                if logged {
                    "the log line \"draining\""
                } else {
                    "a refused connection"
                }
            );
            assert!(body.contains("draining"), "{body}");
        }
        if logged && refused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drain within 3 s (logged {logged}, refused {refused})"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "in-flight request completes");
    assert_eq!(r.text(), "slow 1500");
    let status =
        s.gw.wait_exit(Duration::from_secs(5))
            .expect("exits after drain");
    assert!(status.success(), "{status:?}");
    assert!(s.gw.logs().contains("drained"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_and_metrics() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    assert_eq!(s.get(Proto::H1, "/").await.status, 200);
    assert_eq!(s.get(Proto::H2, "/").await.status, 200);
    assert_eq!(s.gw.admin_get("/healthz").await.0, 200);
    assert_eq!(s.gw.admin_get("/readyz").await.0, 200);
    let (code, m) = s.gw.admin_get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        m.contains("stadttor_http_requests_total{route=\"app\",class=\"2xx\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("stadttor_http_request_duration_seconds_count{route=\"app\"} 2"),
        "{m}"
    );
    assert!(m.contains("stadttor_connections_accepted_total"), "{m}");
    // The public listener does not expose admin paths: /metrics goes to the
    // backend like any other path.
    let r = s.get(Proto::H1, "/metrics").await;
    assert_eq!(r.json()["path"], "/metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "header_read_timeout = \"1s\"", "", "");
    let addr = s.gw.addr();
    // Slowloris: an unfinished request head.
    let mut slow = client::connect(s.client(Proto::H1), addr, "localhost")
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n")
        .await
        .unwrap();
    // A TCP connection that never starts TLS.
    let idle_tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Others are served meanwhile.
    for _ in 0..3 {
        assert_eq!(s.get(Proto::H1, "/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut slow, &mut buf),
    )
    .await
    .expect("slow client is closed by the gateway, not left hanging");
    let text = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).into_owned();
    assert!(!text.contains("200"), "{text}");
    let mut idle_tcp = idle_tcp;
    let n = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut idle_tcp, &mut buf),
    )
    .await
    .expect("handshake timeout closes the connection");
    assert_eq!(n.unwrap_or(0), 0);
    assert_eq!(b.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_cap_refuses_the_excess() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "max_connections_per_ip = 2", "", "");
    let c: Arc<_> = s.client(Proto::H1);
    let addr = s.gw.addr();
    let one = client::connect(c.clone(), addr, "localhost").await.unwrap();
    let two = client::connect(c.clone(), addr, "localhost").await.unwrap();
    assert!(
        client::get(c.clone(), addr, "localhost", Proto::H1, "/")
            .await
            .is_err(),
        "third connection from the same IP is refused"
    );
    drop((one, two));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        client::get(c, addr, "localhost", Proto::H1, "/")
            .await
            .unwrap()
            .status,
        200
    );
    let (_, m) = s.gw.admin_get("/metrics").await;
    assert!(
        m.contains("stadttor_connections_refused_total{name=\"max_connections_per_ip\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_picks_up_a_renewed_certificate() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    let served = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let c = s.client(Proto::H1);
    let before = served(
        &client::connect(c.clone(), s.gw.addr(), "localhost")
            .await
            .unwrap(),
    );
    // Renew: same CA, new key and certificate, written over the old files.
    let renewed = s.pki.ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(&s.pki.server_chain, &renewed.cert_pem).unwrap();
    std::fs::write(&s.pki.server_key, &renewed.key_pem).unwrap();
    s.gw.signal("HUP");
    assert!(s
        .gw
        .wait_for_log("configuration reloaded", Duration::from_secs(5)));
    let after = served(
        &client::connect(c.clone(), s.gw.addr(), "localhost")
            .await
            .unwrap(),
    );
    assert_ne!(before, after, "new connections get the renewed certificate");
    assert_eq!(s.get(Proto::H2, "/").await.status, 200);
    // A certificate that does not match its key is rejected on reload.
    let other = s.pki.ca.issue_server(&["localhost"]).unwrap();
    std::fs::write(&s.pki.server_key, &other.key_pem).unwrap();
    s.gw.signal("HUP");
    assert!(s
        .gw
        .wait_for_log("does not match key", Duration::from_secs(5)));
    let still = served(&client::connect(c, s.gw.addr(), "localhost").await.unwrap());
    assert_eq!(still, after, "the previous certificate keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_settings_that_need_a_restart() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "max_connections = 100", "", "");
    let cfg = std::fs::read_to_string(&s.gw.config_path).unwrap();
    std::fs::write(
        &s.gw.config_path,
        cfg.replace("max_connections = 100", "max_connections = 5"),
    )
    .unwrap();
    s.gw.signal("HUP");
    assert!(s.gw.wait_for_log("reload rejected", Duration::from_secs(5)));
    assert!(
        s.gw.logs().contains("server.max_connections"),
        "{}",
        s.gw.logs()
    );
    assert_eq!(s.get(Proto::H1, "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_no_secrets() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "log_format = \"json\"", "", "");
    let req = http::Request::get("/private?token=s3cr3t-query")
        .header("authorization", "Bearer s3cr3t-token")
        .header("cookie", "session=s3cr3t-cookie")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = client::send(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        Proto::H1,
        req,
    )
    .await
    .unwrap();
    let rid = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(s.gw.wait_for_log(&rid, Duration::from_secs(2)));
    let logs = s.gw.logs();
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["request_id"] == rid.as_str())
        .collect();
    assert_eq!(access.len(), 1, "{logs}");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(
        access[0]["path"], "/private",
        "the query string is not logged"
    );
    assert_eq!(access[0]["route"], "app");
    assert!(!logs.contains("s3cr3t"), "secrets in logs: {logs}");
    // Every line is JSON.
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{line}"
        );
    }
}

/// Threat: a flood of connections to the admin listener (from a
/// compromised host on the management network) exhausts the process's
/// file descriptors. Its own cap closes the excess at accept; the public
/// listener keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connection_flood_is_capped_and_public_traffic_is_served() {
    use tokio::io::AsyncReadExt;
    let b = Backend::start("app").await;
    let dir = testkit::TempDir::new("e2e-admin-cap");
    let pki = testkit::TestPki::new(&dir, "main", &[]);
    let cfg = crate::config_text(&pki, b.addr, "", "", "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        "[admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 3\n",
    );
    assert!(cfg.contains("max_connections = 3"));
    let gw = testkit::Gateway::start(crate::BIN, &dir, &cfg);
    let admin = gw.admin.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(admin).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fourth is closed without an answer.
    let mut extra = tokio::net::TcpStream::connect(admin).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), extra.read_to_end(&mut buf))
        .await
        .expect("the refused connection must be closed at once");
    assert!(
        read.is_err() || buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(gw.wait_for_log("admin.max_connections reached", Duration::from_secs(2)));
    // The public listener has its own limits.
    let c = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H1));
    let r = client::get(c, gw.addr(), "localhost", Proto::H1, "/").await;
    assert_eq!(r.unwrap().status, 200);
    // Slots come back when connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, m) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        m.contains("stadttor_connections_refused_total{name=\"admin_max_connections\"} 1"),
        "{m}"
    );
}

/// The listening sockets' backlog (`ss` shows it as Send-Q of a LISTEN
/// socket): the configured one on the public and the admin listener, and a
/// default above the kernel's old 128 (capped by `net.core.somaxconn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_backlog_is_applied_to_every_listening_socket() {
    fn backlog(port: u16) -> u32 {
        let out = std::process::Command::new("ss")
            .args(["-ltnH"])
            .output()
            .expect("ss (iproute2) is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|a| a.ends_with(&format!(":{port}")))
            })
            .unwrap_or_else(|| panic!("no listening socket on port {port}: {text}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "listen_backlog = 77", "", "");
    assert_eq!(backlog(s.gw.addr().port()), 77);
    assert_eq!(backlog(s.gw.admin.unwrap().port()), 77);
    let d = Setup::start(b.addr, "", "", "");
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog(d.gw.addr().port()), somaxconn.min(4096));
}
