//! Threat: evidence vanishes. A client is served and then the gateway is
//! killed (SIGKILL: a crash, the OOM killer, or an attacker who can crash
//! it) before the access events reached the disk. On a route with
//! `audit = "required"` every 2xx response a client received must have its
//! `http.access` event in the log recovered after the restart, although no
//! checkpoint was signed since the load began (the period is 60 s).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use stadttor_audit::verify::LogReader;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{Gateway, TempDir, TestPki};

use crate::audit::{audit_toml, verifier_key_from_logs};
use crate::BIN;

/// Connections kept busy, each sending one request after another over h2.
const CONNECTIONS: usize = 16;

/// One client connection: sends requests until `stop`, and notes the
/// request id of every 2xx response it received.
async fn load(
    tls: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    served: Arc<Mutex<HashSet<String>>>,
    stop: Instant,
) {
    let Ok(stream) = client::connect(tls, addr, "localhost").await else {
        return;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
    else {
        return;
    };
    tokio::spawn(conn);
    while Instant::now() < stop {
        let req = http::Request::get(format!("https://localhost:{}/akte", addr.port()))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let Ok(resp) = sender.send_request(req).await else {
            return; // the gateway is gone
        };
        let ok = resp.status().is_success();
        let id = resp.headers().get("x-request-id").cloned();
        // Served means the client has the whole response.
        if resp.into_body().collect().await.is_err() {
            return;
        }
        if let (true, Some(id)) = (ok, id) {
            served
                .lock()
                .unwrap()
                .insert(id.to_str().unwrap().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_evidence_of_a_served_request() {
    let b = Backend::start("app").await;
    let dir = TempDir::new("evidence");
    let pki = TestPki::new(&dir, "main", &[]);
    let audit = audit_toml(&dir).replace(
        "checkpoint_period = \"200ms\"",
        "checkpoint_period = \"60s\"",
    );
    let cfg = crate::config_text(&pki, b.addr, "", "audit = \"required\"", &audit);
    let mut gw = Gateway::start(BIN, &dir, &cfg);
    assert!(gw.wait_for_log("audit log open", Duration::from_secs(10)));
    let key = verifier_key_from_logs(&gw.logs());
    let tls = Arc::new(client::tls_config(&pki.ca_pem, None, Proto::H2));
    let served = Arc::new(Mutex::new(HashSet::new()));
    let stop = Instant::now() + Duration::from_secs(90);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(load(tls.clone(), gw.addr(), served.clone(), stop)))
        .collect();
    // Kill in the middle of the load, long after the first checkpoint and
    // long before the next.
    let t0 = Instant::now();
    // 1,500 responses: at least a few hundred commits under load, and
    // reached on a busy 2-core CI machine too.
    while served.lock().unwrap().len() < 1500 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "load made no progress: {} served",
            served.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.signal("KILL");
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some());
    for c in clients {
        c.await.unwrap();
    }
    let served = served.lock().unwrap().clone();

    // Restart: recovery replays the WAL and signs what it holds; a clean
    // stop signs the final checkpoint.
    let mut gw = Gateway::start(BIN, &dir, &cfg);
    assert!(
        gw.wait_for_log("audit log open", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).unwrap().success());

    let reader = LogReader::open(&dir.path().join("audit"), &key).unwrap();
    let mut recorded = HashSet::new();
    reader
        .for_each_entry(|_, e| {
            let ev: serde_json::Value = serde_json::from_slice(e).unwrap();
            if ev["kind"] == "http.access" {
                recorded.insert(ev["request_id"].as_str().unwrap().to_owned());
            }
            true
        })
        .unwrap();
    let missing: Vec<_> = served.difference(&recorded).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} served requests have no access event after SIGKILL, e.g. {missing:?}",
        served.difference(&recorded).count(),
        served.len()
    );
    println!(
        "{} responses served before SIGKILL, all {} in the recovered log ({} access events in all)",
        served.len(),
        served.len(),
        recorded.len()
    );
}
