//! Proxying basics: h1 and h2, request ids, forwarded headers, security
//! headers, identity-header spoofing, WebSockets, routing.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::Full;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use tokio_tungstenite::tungstenite::Message;

use crate::Setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2_reach_the_backend_with_gateway_headers() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    for proto in [Proto::H1, Proto::H2] {
        let r = s.get(proto, "/hello?x=1").await;
        assert_eq!(r.status, 200, "{proto:?}: {}", r.text());
        let echo = r.json();
        assert_eq!(echo["path"], "/hello");
        assert_eq!(echo["query"], "x=1");
        let h = &echo["headers"];
        let rid = r.headers["x-request-id"].to_str().unwrap();
        assert_eq!(rid.len(), 36, "gateway request id is a UUID");
        assert_eq!(
            h["x-request-id"][0], rid,
            "backend sees the same request id"
        );
        assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"][0], "https");
        assert!(h["forwarded"][0]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=https;host="));
        assert!(h["host"][0].as_str().unwrap().starts_with("localhost:"));
        for sec in [
            "strict-transport-security",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            assert!(r.headers.contains_key(sec), "{proto:?}: missing {sec}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_identity_and_forwarding_headers_never_reach_the_backend() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    spoofed_headers_never_reach_the_backend(&s).await;
}

/// Client-sent identity, forwarding and request-id headers against a
/// running gateway whose route for `/` goes to an echoing backend (also run
/// on the packaged configuration, see `appliance.rs`).
pub(crate) async fn spoofed_headers_never_reach_the_backend(s: &Setup) {
    for proto in [Proto::H1, Proto::H2] {
        let req = Request::get("/")
            .header("X-Stadttor-User", "admin")
            .header("x-stadttor-assertion", "eyJhbGciOiJub25lIn0.e30.")
            .header("x-stadttor-client-cert-subject", "CN=Bürgermeister")
            .header("X-Request-Id", "attacker-chosen")
            .header("X-Forwarded-For", "10.0.0.1")
            .header("X-Real-IP", "10.0.0.1")
            .header("Forwarded", "for=10.0.0.1;proto=http")
            .header("X-Forwarded-Host", "intranet.local")
            .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = client::send(s.client(proto), s.gw.addr(), "localhost", proto, req)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let h = &r.json()["headers"];
        let obj = h.as_object().unwrap();
        assert!(
            !obj.keys().any(|k| k.starts_with("x-stadttor-")),
            "{proto:?}: identity header leaked: {h}"
        );
        assert_ne!(h["x-request-id"][0], "attacker-chosen");
        assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
        assert_eq!(h["x-real-ip"], serde_json::json!(["127.0.0.1"]));
        assert!(!h["forwarded"][0].as_str().unwrap().contains("10.0.0.1"));
        assert!(h["x-forwarded-host"][0]
            .as_str()
            .unwrap()
            .starts_with("localhost"));
        assert!(h.get("proxy-authorization").is_none());
    }
    assert!(s.gw.wait_for_log(
        "removed client-sent identity headers",
        std::time::Duration::from_secs(2)
    ));
    assert!(
        s.gw.logs().contains("attacker-chosen"),
        "client request id is logged separately"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_prefix_with_strip_and_404_otherwise() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let extra = format!(
        r#"
[[upstreams]]
name = "b"
addresses = ["{}"]

[[routes]]
name = "b-api"
upstream = "b"
path_prefix = "/api"
strip_prefix = true

[[routes]]
name = "only-host"
upstream = "b"
host = "other.example"
path_prefix = "/"
"#,
        b.addr
    );
    let s = Setup::start(a.addr, "", "", &extra);
    let r = s.get(Proto::H1, "/api/v1/items?q=2").await;
    assert_eq!(r.json()["backend"], "b");
    assert_eq!(r.json()["path"], "/v1/items");
    assert_eq!(r.json()["query"], "q=2");
    let r = s.get(Proto::H1, "/api").await;
    assert_eq!(r.json()["path"], "/");
    let r = s.get(Proto::H1, "/apiary").await;
    assert_eq!(
        r.json()["backend"],
        "a",
        "prefix matches whole segments only"
    );
    // Host-specific route wins over the catch-all.
    let req = Request::get("/x")
        .header("host", "other.example")
        .body(Full::new(Bytes::new()))
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
    assert_eq!(r.json()["backend"], "b");

    // A gateway whose only route is host-bound answers 404 elsewhere.
    let only = format!(
        r#"
[[upstreams]]
name = "b"
addresses = ["{}"]
"#,
        b.addr
    );
    let s2 = Setup::start(a.addr, "", "host = \"portal.example\"", &only);
    let r = s2.get(Proto::H2, "/").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Request id:"));
    assert_eq!(a.requests() + b.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled_when_the_route_allows_it() {
    let b = Backend::start("ws").await;
    let s = Setup::start(b.addr, "", "websocket = true", "");
    let tls = client::connect(s.client(Proto::H1), s.gw.addr(), "localhost")
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", s.gw.addr().port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::Text(format!("hallo {i}"))).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap(), format!("hallo {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data(),
        vec![0u8, 1, 2, 255]
    );
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_refused_on_routes_without_it() {
    let b = Backend::start("ws").await;
    let s = Setup::start(b.addr, "", "", "");
    let tls = client::connect(s.client(Proto::H1), s.gw.addr(), "localhost")
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", s.gw.addr().port());
    // The gateway strips Upgrade; the backend sees a plain GET and says no.
    let err = tokio_tungstenite::client_async(url, tls).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_tunnel_is_closed_at_the_route_idle_timeout() {
    let b = Backend::start("ws").await;
    let s = Setup::start(
        b.addr,
        "",
        "websocket = true\n[routes.timeouts]\nidle = \"1s\"",
        "",
    );
    let tls = client::connect(s.client(Proto::H1), s.gw.addr(), "localhost")
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", s.gw.addr().port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    // Traffic keeps it open past the idle timeout…
    for i in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        ws.send(Message::Text(format!("ping {i}"))).await.unwrap();
        assert!(ws.next().await.unwrap().is_ok());
    }
    // …silence closes it.
    let t = std::time::Instant::now();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await;
    assert!(end.is_ok(), "tunnel not closed after 5 s of silence");
    assert!(matches!(
        end.unwrap(),
        None | Some(Err(_)) | Some(Ok(Message::Close(_)))
    ));
    assert!(
        t.elapsed() < std::time::Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert!(s.gw.wait_for_log(
        "tunnel closed by timeout",
        std::time::Duration::from_secs(2)
    ));
}
