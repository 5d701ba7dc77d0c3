//! Header hygiene between client, gateway and upstream.
//!
//! Requests: hop-by-hop headers are dropped (RFC 9110 §7.6.1, including any
//! header named in `Connection`), every client header under the identity
//! prefix is removed (also spelt with `_` for `-`: CGI, PHP, WSGI and nginx
//! variables turn both into the same name), a client-sent request id is
//! replaced by the gateway's,
//! and `Forwarded` / `X-Forwarded-*` / `X-Real-IP` are set by the gateway
//! for the client address it determined ([`crate::http::client_addr`]:
//! the socket peer, or what a trusted load balancer named); every value a
//! client or balancer sent is replaced.
//!
//! Responses: hop-by-hop headers are dropped and the security headers are
//! added unless the upstream set them or the route overrides them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The request id header, set by the gateway on requests and responses.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Default security headers; a route may override or remove each.
pub(crate) const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
];

/// Gives each header value its own allocation, for responses on h2
/// connections. hyper's client parses an upstream response head into
/// slices of its connection's 8 KiB read buffer, and an h2 connection's
/// HPACK encoder keeps the values it indexes (`server`, `content-type`,
/// ...) for the connection's life: each kept the whole buffer it pointed
/// into, 8 KiB per idle h2 connection (#14 item 3). The copies are a few
/// bytes each.
pub(crate) fn own_values(headers: &mut HeaderMap) {
    for v in headers.values_mut() {
        if let Ok(mut owned) = HeaderValue::from_bytes(v.as_bytes()) {
            owned.set_sensitive(v.is_sensitive());
            *v = owned;
        }
    }
}

/// Removes hop-by-hop headers, and those named in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay (WebSocket).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for h in &HOP_BY_HOP {
        if keep_upgrade && (h == header::CONNECTION || h == header::UPGRADE) {
            continue;
        }
        headers.remove(h);
    }
    if te_trailers {
        // `TE: trailers` is the one TE value that must pass (gRPC).
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether `name` starts with `prefix` once `_` counts as `-` and case is
/// ignored: `x_stadttor_sub` and `X_Stadttor_Sub` are `x-stadttor-sub` to a
/// service that reads headers through CGI-style variables.
pub(crate) fn has_prefix_folded(name: &str, prefix: &str) -> bool {
    let fold = |b: &u8| match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    };
    name.len() >= prefix.len()
        && name
            .as_bytes()
            .iter()
            .map(fold)
            .zip(prefix.as_bytes().iter().map(fold))
            .all(|(a, b)| a == b)
}

/// Removes every header whose name starts with `prefix`, with `_` folded
/// to `-` and case ignored (see [`has_prefix_folded`]).
/// Returns how many were removed.
pub(crate) fn strip_prefixed(headers: &mut HeaderMap, prefix: &str) -> usize {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| has_prefix_folded(k.as_str(), prefix))
        .cloned()
        .collect();
    let mut n = 0;
    for k in doomed {
        n += headers.get_all(&k).iter().count();
        headers.remove(&k);
    }
    n
}

/// A client's address, pre-rendered for the forwarding headers once per
/// connection instead of once per request.
#[derive(Debug, Clone)]
pub(crate) struct ForwardedFor {
    /// RFC 7239 `for=` node (IPv6 quoted and bracketed).
    node: String,
    /// The bare IP, for `X-Forwarded-For` and `X-Real-IP`.
    ip: HeaderValue,
}

impl ForwardedFor {
    /// Renders `ip`.
    pub(crate) fn new(ip: IpAddr) -> Self {
        let node = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let ip = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { node, ip }
    }
}

/// Sets `Forwarded`, `X-Forwarded-For/Proto/Host` and `X-Real-IP` from what
/// the gateway observed, replacing any client-sent values (also those spelt
/// with `_`, such as `x_forwarded_for`, and a client's `x_request_id`).
pub(crate) fn set_forwarded(headers: &mut HeaderMap, peer: &ForwardedFor, host: &HeaderValue) {
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| {
            [
                &X_FORWARDED_FOR,
                &X_FORWARDED_PROTO,
                &X_FORWARDED_HOST,
                &X_REAL_IP,
                &REQUEST_ID,
            ]
            .iter()
            .any(|n| {
                n.as_str().len() == k.as_str().len() && has_prefix_folded(k.as_str(), n.as_str())
            })
        })
        .cloned()
        .collect();
    for k in underscored {
        headers.remove(k);
    }
    // Only a plain host[:port] goes into the quoted-string; odd input is
    // left out rather than escaped.
    let host_ok = !host.is_empty()
        && host
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(b));
    let mut fwd = String::with_capacity(64);
    fwd.push_str("for=");
    fwd.push_str(&peer.node);
    fwd.push_str(";proto=https");
    if host_ok {
        fwd.push_str(";host=\"");
        // host_ok guarantees ASCII.
        fwd.push_str(std::str::from_utf8(host.as_bytes()).unwrap_or(""));
        fwd.push('"');
    }
    if let Ok(v) = HeaderValue::from_str(&fwd) {
        headers.insert(header::FORWARDED, v);
    }
    headers.insert(X_FORWARDED_FOR, peer.ip.clone());
    headers.insert(X_REAL_IP, peer.ip.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    if host_ok {
        headers.insert(X_FORWARDED_HOST, host.clone());
    } else {
        headers.remove(X_FORWARDED_HOST);
    }
}

/// Security headers for a route: the defaults with the route's overrides
/// applied (an empty override value removes the header).
pub(crate) fn security_headers_for(
    overrides: &BTreeMap<String, String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out: BTreeMap<String, String> = SECURITY_HEADERS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (k, v) in overrides {
        out.insert(k.clone(), v.clone());
    }
    out.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(&v).ok()?,
            ))
        })
        .collect()
}

/// Adds each header the response does not carry yet.
pub(crate) fn add_missing(headers: &mut HeaderMap, add: &[(HeaderName, HeaderValue)]) {
    for (k, v) in add {
        if !headers.contains_key(k) {
            headers.insert(k.clone(), v.clone());
        }
    }
}

/// Whether the request asks for a WebSocket upgrade (RFC 6455 §4.1).
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    upgrade && connection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn websocket_keeps_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }

    #[test]
    fn prefixed_identity_headers_are_removed_all_of_them() {
        let mut h = HeaderMap::new();
        h.append("x-stadttor-user", HeaderValue::from_static("admin"));
        h.append("x-stadttor-user", HeaderValue::from_static("root"));
        h.insert("x-stadttor-assertion", HeaderValue::from_static("forged"));
        h.insert("x-other", HeaderValue::from_static("ok"));
        assert_eq!(strip_prefixed(&mut h, "x-stadttor-"), 3);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn identity_headers_spelt_with_underscores_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x_stadttor_sub", HeaderValue::from_static("admin"));
        h.insert("x-stadttor_level", HeaderValue::from_static("high"));
        h.insert("x_stadttor-assertion", HeaderValue::from_static("forged"));
        h.insert("x_stadttorsub", HeaderValue::from_static("kept"));
        h.insert("x-other_thing", HeaderValue::from_static("kept"));
        assert_eq!(strip_prefixed(&mut h, "x-stadttor-"), 3);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(has_prefix_folded("X_Stadttor_Sub", "x-stadttor-"));
        assert!(!has_prefix_folded("x-stadt", "x-stadttor-"));
    }

    #[test]
    fn forwarded_replaces_client_values() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(header::FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        let peer = ForwardedFor::new("192.0.2.7".parse().unwrap());
        h.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x_real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x_request_id", HeaderValue::from_static("mine"));
        set_forwarded(&mut h, &peer, &HeaderValue::from_static("portal.example"));
        assert!(!h.keys().any(|k| k.as_str().contains('_')), "{h:?}");
        assert_eq!(h[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(
            h[header::FORWARDED],
            "for=192.0.2.7;proto=https;host=\"portal.example\""
        );
        let peer = ForwardedFor::new("2001:db8::1".parse().unwrap());
        set_forwarded(&mut h, &peer, &HeaderValue::from_static("evil\"host"));
        assert_eq!(h[header::FORWARDED], "for=\"[2001:db8::1]\";proto=https");
        assert!(!h.contains_key(X_FORWARDED_HOST));
    }

    #[test]
    fn route_overrides_security_headers() {
        let mut o = BTreeMap::new();
        o.insert("x-frame-options".to_owned(), "SAMEORIGIN".to_owned());
        o.insert("content-security-policy".to_owned(), String::new());
        let hs = security_headers_for(&o);
        assert!(hs
            .iter()
            .any(|(k, v)| k == "x-frame-options" && v == "SAMEORIGIN"));
        assert!(!hs.iter().any(|(k, _)| k == "content-security-policy"));
        assert!(hs.iter().any(|(k, _)| k == "strict-transport-security"));
    }
}
