//! The trusted-chain rules on hand-built connections and headers: which
//! address wins from trusted and untrusted peers, with PROXY headers,
//! spoofed and malformed entries, and both header kinds.

use super::*;
use crate::config::{ProxyProtocol, TrustedProxies};

fn policy(trusted: &[&str], header: ForwardedHeader) -> Arc<ClientAddrPolicy> {
    let nets = trusted
        .iter()
        .map(|t| TrustedProxies::parse_entry(t).unwrap())
        .collect();
    Arc::new(ClientAddrPolicy {
        proxy_protocol: ProxyProtocol::Off,
        trusted_proxies: TrustedProxies::from_nets(nets),
        forwarded_header: header,
    })
}

fn headers(name: &str, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The client for a request with `xff` on a connection from `peer`.
fn xff_client(trusted: &[&str], peer: &str, xff: &[&str]) -> IpAddr {
    let p = policy(trusted, ForwardedHeader::XForwardedFor);
    let conn = ConnAddr::new(SocketAddr::new(ip(peer), 40000), None, &p);
    conn.for_request(&headers("x-forwarded-for", xff)).ip()
}

#[test]
fn untrusted_peer_headers_are_ignored() {
    assert_eq!(
        xff_client(&["10.0.0.0/24"], "198.51.100.7", &["192.0.2.1"]),
        ip("198.51.100.7")
    );
    // Nothing is trusted: the socket peer, whatever the header says.
    assert_eq!(
        xff_client(&[], "198.51.100.7", &["10.0.0.1"]),
        ip("198.51.100.7")
    );
}

#[test]
fn right_most_untrusted_from_a_trusted_peer() {
    let t = &["10.0.0.0/24", "2001:db8:1::/48"];
    // nginx appended the client; the client's own entry (left) is not believed.
    assert_eq!(
        xff_client(t, "10.0.0.5", &["6.6.6.6, 192.0.2.1"]),
        ip("192.0.2.1")
    );
    // Two proxies: the inner one is skipped.
    assert_eq!(
        xff_client(t, "10.0.0.5", &["6.6.6.6, 192.0.2.1, 10.0.0.6"]),
        ip("192.0.2.1")
    );
    // Separate header lines count as one list, in order.
    assert_eq!(
        xff_client(t, "10.0.0.5", &["6.6.6.6", "192.0.2.1", "10.0.0.6"]),
        ip("192.0.2.1")
    );
    // Ports, IPv6, mapped addresses.
    assert_eq!(
        xff_client(t, "10.0.0.5", &["[2001:db8::7]:1234"]),
        ip("2001:db8::7")
    );
    assert_eq!(
        xff_client(t, "10.0.0.5", &["192.0.2.1:80"]),
        ip("192.0.2.1")
    );
    assert_eq!(
        xff_client(t, "::ffff:10.0.0.5", &["::ffff:192.0.2.1"]),
        ip("192.0.2.1")
    );
    // Every entry trusted: the left-most.
    assert_eq!(
        xff_client(t, "10.0.0.5", &["10.0.0.9, 10.0.0.6"]),
        ip("10.0.0.9")
    );
    // No header: the trusted peer itself.
    assert_eq!(xff_client(t, "10.0.0.5", &[]), ip("10.0.0.5"));
}

#[test]
fn garbage_stops_at_the_last_trusted_hop() {
    let t = &["10.0.0.0/24"];
    for xff in [
        "unknown",
        "1.2.3.4.5",
        "192.0.2.1 ",
        "_hidden",
        "\"192.0.2.1\"",
    ] {
        // Behind the garbage, an address the client wishes to be.
        let line = format!("6.6.6.6, {xff}, 10.0.0.6");
        let got = xff_client(t, "10.0.0.5", &[line.as_str()]);
        assert!(
            got == ip("10.0.0.6") || got == ip("192.0.2.1"),
            "{xff}: {got}"
        );
        assert_ne!(got, ip("6.6.6.6"), "{xff}");
    }
    // An unbalanced quote from the client does not hide the entry its
    // proxy appended.
    assert_eq!(
        xff_client(t, "10.0.0.5", &["\"6.6.6.6, 192.0.2.1"]),
        ip("192.0.2.1")
    );
}

#[test]
fn forwarded_header_rfc7239() {
    let p = policy(&["10.0.0.0/24"], ForwardedHeader::Forwarded);
    let conn = ConnAddr::new("10.0.0.5:4000".parse().unwrap(), None, &p);
    let client = |v: &[&str]| conn.for_request(&headers("forwarded", v)).ip();
    assert_eq!(
        client(&["for=6.6.6.6, for=192.0.2.1;proto=https;by=10.0.0.5"]),
        ip("192.0.2.1")
    );
    assert_eq!(
        client(&["For=\"[2001:db8::7]:4711\", for=10.0.0.6"]),
        ip("2001:db8::7")
    );
    assert_eq!(
        client(&["proto=https;for=192.0.2.1:_port"]),
        ip("192.0.2.1")
    );
    // unknown and obfuscated nodes are no address: the trusted hop stays.
    assert_eq!(client(&["for=6.6.6.6, for=unknown"]), ip("10.0.0.5"));
    assert_eq!(client(&["for=6.6.6.6, for=_hidden"]), ip("10.0.0.5"));
    assert_eq!(client(&["for=[2001:db8::7]"]), ip("2001:db8::7"));
    assert_eq!(client(&["for=\"[2001:db8::7\""]), ip("10.0.0.5"));
    // With `forwarded`, X-Forwarded-For is not read.
    assert_eq!(
        conn.for_request(&headers("x-forwarded-for", &["192.0.2.1"]))
            .ip(),
        ip("10.0.0.5")
    );
}

#[test]
fn proxy_header_names_the_connection_client() {
    let p = policy(&["10.0.0.0/24"], ForwardedHeader::XForwardedFor);
    let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
    let proxied = Header::Proxy {
        source: "192.0.2.1:50000".parse().unwrap(),
        destination: "10.0.0.1:443".parse().unwrap(),
    };
    let conn = ConnAddr::new(peer, Some(proxied), &p);
    assert_eq!(conn.client.ip(), ip("192.0.2.1"));
    assert_eq!(conn.peer, peer);
    // The client (not a proxy) wrote this header itself: ignored.
    let h = headers("x-forwarded-for", &["6.6.6.6"]);
    assert_eq!(conn.for_request(&h).ip(), ip("192.0.2.1"));
    // LOCAL and UNKNOWN: the socket peer.
    for h in [Header::Local, Header::Unknown] {
        assert_eq!(ConnAddr::new(peer, Some(h), &p).client.ip(), ip("10.0.0.5"));
    }
}

#[test]
fn none_believes_no_header() {
    let p = policy(&["10.0.0.0/24"], ForwardedHeader::None);
    let conn = ConnAddr::new("10.0.0.5:4000".parse().unwrap(), None, &p);
    let h = headers("x-forwarded-for", &["192.0.2.1"]);
    assert_eq!(conn.for_request(&h).ip(), ip("10.0.0.5"));
}
