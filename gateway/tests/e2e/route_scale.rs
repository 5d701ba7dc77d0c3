//! Route scale (#14 item 4): a reload that brings in thousands of routes
//! while requests flow. No request fails during the reload, and the new
//! routes answer afterwards. Behaviour only; timings are in
//! `bench/routes.sh`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use testkit::backend::Backend;
use testkit::client::{self, Proto};

use crate::Setup;

const HOSTS: usize = 20;
const PREFIXES: usize = 100;

/// `HOSTS` x `PREFIXES` routes to upstream `new`: host `hI.land.example`,
/// prefix `/dienstJ`.
fn many_routes(new_backend: std::net::SocketAddr) -> String {
    let mut t = format!("\n[[upstreams]]\nname = \"new\"\naddresses = [\"{new_backend}\"]\n");
    for i in 0..HOSTS {
        for j in 0..PREFIXES {
            t.push_str(&format!(
                "\n[[routes]]\nname = \"r{i}-{j}\"\nupstream = \"new\"\n\
                 host = \"h{i}.land.example\"\npath_prefix = \"/dienst{j}\"\n"
            ));
        }
    }
    t
}

/// GET `path` with `Host: host` on a fresh HTTP/1.1 connection; the
/// backend's name, or the failure.
async fn backend_for(s: &Setup, host: &str, path: &str) -> Result<String, String> {
    let req = http::Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = client::send(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        Proto::H1,
        req,
    )
    .await?;
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    Ok(r.json()["backend"].as_str().unwrap_or("?").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_to_thousands_of_routes_fails_no_request_and_serves_them() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let s = Arc::new(Setup::start(old.addr, "", "", ""));
    let last_host = format!("h{}.land.example", HOSTS - 1);
    let last_path = format!("/dienst{}/akte/1", PREFIXES - 1);
    assert_eq!(
        backend_for(&s, &last_host, &last_path).await.unwrap(),
        "old",
        "before the reload only the fallback route exists"
    );

    // Load: two clients, one on the fallback and one on what will be the
    // last new route, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for (host, path) in [
        ("localhost".to_owned(), "/".to_owned()),
        (last_host.clone(), last_path.clone()),
    ] {
        let (s, stop, sent) = (s.clone(), stop.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = backend_for(&s, &host, &path).await {
                    failures.push(format!("{host}{path}: {e}"));
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }

    let config = std::fs::read_to_string(&s.gw.config_path).unwrap();
    std::fs::write(&s.gw.config_path, config + many_routes(new.addr).as_str()).unwrap();
    let before = sent.load(Ordering::Relaxed);
    s.gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.gw.logs().contains("configuration reloaded") {
        assert!(!s.gw.logs().contains("reload rejected"), "{}", s.gw.logs());
        assert!(Instant::now() < deadline, "no reload logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Keep the load on until requests have run after the swap, too.
    let after = sent.load(Ordering::Relaxed);
    while sent.load(Ordering::Relaxed) < after + 20 {
        assert!(Instant::now() < deadline, "load stalled after the reload");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for l in load {
        failures.extend(l.await.unwrap());
    }
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert!(
        after > before,
        "requests ran while the reload was in progress"
    );

    // The new routes are live: first, last, a middle one; the fallback
    // still answers what they do not cover.
    for (host, path) in [
        ("h0.land.example", "/dienst0"),
        (last_host.as_str(), last_path.as_str()),
        ("h7.land.example", "/dienst42/x"),
    ] {
        assert_eq!(
            backend_for(&s, host, path).await.unwrap(),
            "new",
            "{host}{path}"
        );
    }
    for (host, path) in [
        ("h7.land.example", "/dienst420"),
        ("h7.land.example", "/dienst4200/x"),
        ("other.example", "/dienst1"),
    ] {
        assert_eq!(
            backend_for(&s, host, path).await.unwrap(),
            "old",
            "{host}{path}"
        );
    }
}
