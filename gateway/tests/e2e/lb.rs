//! Behind a load balancer: Debian's HAProxy in TCP mode sending PROXY
//! protocol v2, and nginx ending TLS and appending `X-Forwarded-For`, in
//! front of the real gateway. The client connects from 127.0.0.5 (or .6),
//! the balancers from 127.0.0.1, the only trusted proxy. Checked: what the
//! service sees in the gateway's forwarding headers, the access log's
//! client, the audit events' client pseudonym, the per-IP cap counting
//! clients instead of the balancer, and the refusals (no PROXY header, an
//! untrusted peer on a PROXY listener, spoofed headers from clients).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use stadttor_audit::event::Pseudonymiser;
use stadttor_audit::verify::LogReader;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::haproxy::Haproxy;
use testkit::nginx::Nginx;
use testkit::{Gateway, TempDir, TestPki};
use tokio::io::AsyncWriteExt;

use crate::BIN;

const CLIENT: &str = "127.0.0.5";
const OTHER_CLIENT: &str = "127.0.0.6";
const SPOOF: &str = "6.6.6.6";

/// A gateway with an audit log, `public` (plain TLS, 127.0.0.1 trusted
/// for `X-Forwarded-For`) and `lb` (PROXY v2 from 127.0.0.1 only), at most
/// two connections per client address.
struct LbSetup {
    dir: TempDir,
    pki: TestPki,
    gw: Gateway,
}

impl LbSetup {
    fn start(upstream: SocketAddr) -> Self {
        Self::with_version(upstream, "v2")
    }

    /// With `proxy_protocol = version` on `lb`.
    fn with_version(upstream: SocketAddr, version: &str) -> Self {
        let dir = TempDir::new("lb");
        let pki = TestPki::new(&dir, "main", &[]);
        let lb = format!(
            "[[listeners]]\nname = \"lb\"\nlisten = \"127.0.0.1:0\"\nproxy_protocol = \"{version}\"\n\
             trusted_proxies = [\"127.0.0.1\"]\nforwarded_header = \"none\"\n{}",
            pki.certificate_toml(&[])
        );
        let extra = format!("{}\n{lb}", crate::audit::audit_toml(&dir));
        let server = "max_connections_per_ip = 2\nheader_read_timeout = \"3s\"";
        let config = crate::config_text(&pki, upstream, server, "", &extra).replacen(
            "name = \"public\"\nlisten = \"127.0.0.1:0\"\n",
            "name = \"public\"\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
            1,
        );
        let gw = Gateway::start(BIN, &dir, &config);
        Self { dir, pki, gw }
    }

    fn tls(&self) -> Arc<ClientConfig> {
        Arc::new(client::tls_config(&self.pki.ca_pem, None, Proto::H1))
    }

    /// The audit pseudonym of a client address.
    fn pseudonym(&self, ip: &str) -> String {
        let key = std::fs::read(self.dir.path().join("pseudonym.key")).unwrap();
        let p = Pseudonymiser::new(&key).unwrap().pseudonym("ip", ip);
        p.as_str().to_owned()
    }

    /// Stops the gateway and returns every audit event, by request id.
    fn audit_clients(mut self) -> std::collections::HashMap<String, String> {
        let log_dir = self.dir.path().join("audit");
        let t0 = std::time::Instant::now();
        while !log_dir.join("checkpoint").exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no checkpoint");
            std::thread::sleep(Duration::from_millis(20));
        }
        let key = crate::audit::verifier_key_from_logs(&self.gw.logs());
        self.gw.signal("TERM");
        assert!(self
            .gw
            .wait_exit(Duration::from_secs(10))
            .unwrap()
            .success());
        let mut out = Vec::new();
        LogReader::open(&log_dir, &key)
            .unwrap()
            .export(&mut out)
            .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
            .filter(|e| e["kind"] == "http.access")
            .map(|e| {
                let id = e["request_id"].as_str().unwrap().to_owned();
                (id, e["attrs"]["client"].as_str().unwrap_or("").to_owned())
            })
            .collect()
    }

    /// The access-log line of request `id`.
    fn access_line(&self, id: &str) -> String {
        assert!(self.gw.wait_for_log(id, Duration::from_secs(5)), "{id}");
        let logs = self.gw.logs();
        logs.lines()
            .find(|l| l.contains(id) && l.contains("stadttor::access"))
            .unwrap_or_else(|| panic!("no access line for {id}:\n{logs}"))
            .to_owned()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// GET `/who` with client-sent forwarding headers naming [`SPOOF`].
fn spoofed() -> Request<Full<Bytes>> {
    Request::get("/who")
        .header("x-forwarded-for", SPOOF)
        .header("forwarded", format!("for={SPOOF}"))
        .header("x-real-ip", SPOOF)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The forwarding headers the service saw, and the request id.
fn seen(r: &client::Resp) -> (String, String, String, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    let one = |name: &str| {
        let v = h[name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name}: {h}"));
        assert_eq!(v.len(), 1, "one {name} header: {h}");
        v[0].as_str().unwrap().to_owned()
    };
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    (
        one("x-forwarded-for"),
        one("x-real-ip"),
        one("forwarded"),
        id,
    )
}

/// A request over TLS from `from` to `addr` (the gateway, or HAProxy).
async fn tls_from(s: &LbSetup, from: &str, addr: SocketAddr) -> Result<client::Resp, String> {
    let tls = client::connect_from(s.tls(), ip(from), addr, "localhost")
        .await
        .map_err(|e| e.to_string())?;
    client::send_on(tls, addr, "localhost", Proto::H1, spoofed()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_proxy_v2_names_the_client() {
    let b = Backend::start("app").await;
    let s = LbSetup::start(b.addr);
    let lb = s.gw.listeners["lb"];
    let hap = Haproxy::send_proxy_v2(lb);

    // The per-IP cap (2) counts the client HAProxy names, not HAProxy:
    // two held connections of one client; its third is closed, another
    // client's is served, though all come from 127.0.0.1.
    let mut held = Vec::new();
    for _ in 0..2 {
        let c = client::connect_from(s.tls(), ip(CLIENT), hap.addr, "localhost").await;
        held.push(c.unwrap_or_else(|e| panic!("{e}; haproxy: {}", hap.log())));
    }
    let third = tls_from(&s, CLIENT, hap.addr).await;
    assert!(third.is_err(), "third connection of {CLIENT} served");
    let other = seen(&tls_from(&s, OTHER_CLIENT, hap.addr).await.unwrap());
    assert_eq!(other.0, OTHER_CLIENT);
    drop(held);

    // Through HAProxy, the service sees the client in the gateway's own
    // headers; the client's spoofed ones are gone. (Retried until the
    // gateway has seen the held connections close.)
    let t0 = std::time::Instant::now();
    let first = loop {
        match tls_from(&s, CLIENT, hap.addr).await {
            Ok(r) => break r,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (xff, real, fwd, id) = seen(&first);
    assert_eq!((xff.as_str(), real.as_str()), (CLIENT, CLIENT));
    assert!(
        fwd.starts_with(&format!("for={CLIENT};proto=https")),
        "{fwd}"
    );
    let line = s.access_line(&id);
    assert!(line.contains(&format!("client={CLIENT}")), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");

    // Without a PROXY header: refused before TLS, from the balancer's
    // address (the ClientHello is no header) and from anyone else.
    assert!(client::connect(s.tls(), lb, "localhost").await.is_err());
    assert!(client::connect_from(s.tls(), ip(CLIENT), lb, "localhost")
        .await
        .is_err());

    // A v2 LOCAL header (health check) and a PROXY header for an IPv6
    // client, written by this test from the trusted 127.0.0.1.
    let local = proxied_request(&s, lb, &v2_header(None)).await;
    assert_eq!(local.0, "127.0.0.1");
    let v6 = "[2001:db8::7]:50000".parse().unwrap();
    let six = proxied_request(&s, lb, &v2_header(Some(v6))).await;
    assert_eq!(six.0, "2001:db8::7");
    assert!(six.2.starts_with("for=\"[2001:db8::7]\";"), "{}", six.2);

    let (_, metrics) = s.gw.admin_get("/metrics").await;
    let refused = |name: &str| -> u64 {
        let key = format!("stadttor_connections_refused_total{{name=\"{name}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map_or(0, |v| v.parse().unwrap())
    };
    assert!(refused("max_connections_per_ip") >= 1, "{metrics}");
    assert_eq!(refused("proxy_header"), 1, "{metrics}");
    assert_eq!(refused("untrusted_proxy"), 1, "{metrics}");

    let clients = s.pseudonym(CLIENT);
    let other_client = s.pseudonym(OTHER_CLIENT);
    let balancer = s.pseudonym("127.0.0.1");
    let audit = s.audit_clients();
    assert_eq!(audit[&id], clients, "audit client of {id}");
    assert_eq!(audit[&other.3], other_client);
    assert_eq!(audit[&local.3], balancer, "LOCAL: the balancer itself");
    assert_ne!(clients, balancer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_proxy_v1_names_the_client_and_a_v2_header_is_refused() {
    let b = Backend::start("app").await;
    let s = LbSetup::with_version(b.addr, "v1");
    let lb = s.gw.listeners["lb"];
    let hap = Haproxy::send_proxy_v1(lb);
    let r = tls_from(&s, CLIENT, hap.addr).await;
    let (xff, _, _, id) = seen(&r.unwrap_or_else(|e| panic!("{e}; haproxy: {}", hap.log())));
    assert_eq!(xff, CLIENT);
    let line = s.access_line(&id);
    assert!(line.contains(&format!("client={CLIENT}")), "{line}");
    // The version is the listener's, never guessed: a v2 header is refused.
    let mut tcp = tokio::net::TcpStream::connect(lb).await.unwrap();
    tcp.write_all(&v2_header(None)).await.unwrap();
    assert!(client::tls_over(s.tls(), tcp, "localhost").await.is_err());
}

/// A PROXY v2 header: LOCAL for `None`, else PROXY TCP over IPv6 from
/// `source` to [::1]:443.
fn v2_header(source: Option<std::net::SocketAddrV6>) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match source {
        None => h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]),
        Some(src) => {
            h.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
            h.extend_from_slice(&src.ip().octets());
            h.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&443u16.to_be_bytes());
        }
    }
    h
}

/// Writes `header` on a connection from 127.0.0.1, then TLS and one
/// request; returns what the service saw.
async fn proxied_request(
    s: &LbSetup,
    lb: SocketAddr,
    header: &[u8],
) -> (String, String, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(lb).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let tls = client::tls_over(s.tls(), tcp, "localhost").await.unwrap();
    seen(
        &client::send_on(tls, lb, "localhost", Proto::H1, spoofed())
            .await
            .unwrap(),
    )
}

/// Plain HTTP/1.1 GET `/who` from `from` to nginx, with a spoofed
/// `X-Forwarded-For`; returns status, the gateway's request id and the
/// service's echo.
async fn via_nginx(from: &str, nginx: SocketAddr) -> (u16, String, serde_json::Value) {
    let tcp = client::tcp_from(ip(from), nginx).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/who")
        .header("host", "localhost")
        .header("x-forwarded-for", SPOOF)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, id, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_x_forwarded_for_names_the_client_and_spoofing_is_ignored() {
    let b = Backend::start("app").await;
    let s = LbSetup::start(b.addr);
    let public = s.gw.listeners["public"];
    let nginx = Nginx::reverse_proxy(public, &s.pki.ca_path);

    // nginx sends "6.6.6.6, 127.0.0.5": the right-most address that is not
    // a trusted proxy is the client; the spoofed entry is never reached.
    let (status, via_id, echo) = via_nginx(CLIENT, nginx.addr).await;
    assert_eq!(status, 200, "{echo}; nginx: {}", nginx.error_log());
    assert_eq!(echo["headers"]["x-forwarded-for"][0], CLIENT, "{echo}");
    assert_eq!(
        echo["headers"]["x-forwarded-for"].as_array().unwrap().len(),
        1
    );
    assert_eq!(echo["headers"]["x-real-ip"][0], CLIENT, "{echo}");
    let line = s.access_line(&via_id);
    assert!(line.contains(&format!("client={CLIENT}")), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");

    // Straight from a client that is not a trusted proxy: its forwarding
    // headers are ignored and replaced.
    let (xff, real, fwd, direct_id) = seen(&tls_from(&s, CLIENT, public).await.unwrap());
    assert_eq!((xff.as_str(), real.as_str()), (CLIENT, CLIENT));
    assert!(!fwd.contains(SPOOF), "{fwd}");
    let line = s.access_line(&direct_id);
    assert!(line.contains(&format!("client={CLIENT}")), "{line}");

    // The same headers from the trusted address are believed: the check
    // above is about trust, not about ignoring the header altogether.
    let trusted = seen(&tls_from(&s, "127.0.0.1", public).await.unwrap());
    assert_eq!(trusted.0, SPOOF);

    let clients = s.pseudonym(CLIENT);
    let spoofed = s.pseudonym(SPOOF);
    let balancer = s.pseudonym("127.0.0.1");
    let trusted_id = trusted.3;
    let audit = s.audit_clients();
    assert_eq!(audit[&via_id], clients, "via nginx");
    assert_eq!(audit[&direct_id], clients, "direct, spoofed");
    assert_eq!(audit[&trusted_id], spoofed, "from the trusted proxy");
    assert_ne!(clients, balancer);
}
