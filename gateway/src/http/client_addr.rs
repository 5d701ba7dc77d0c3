//! Who the client is: the one [`ClientAddr`] that the per-IP connection
//! cap, the access log, the audit events and the forwarding headers sent
//! upstream all use.
//!
//! Without load balancers (`trusted_proxies` empty) the client is the
//! socket peer. With them, per listener ([`ClientAddrPolicy`]):
//!
//! 1. **Connection**: with `proxy_protocol` on, only a trusted peer may
//!    connect at all, and it must send a PROXY header first; the client is
//!    the header's source (LOCAL or UNKNOWN: the socket peer). The per-IP
//!    cap counts that client ([`ConnAddr`]).
//! 2. **Request**: if the connection's client is itself a trusted proxy
//!    (an HTTP proxy such as nginx), its `forwarded_header` is read from
//!    the right: each address that is a trusted proxy is a hop to look
//!    past; the first one that is not is the client. If every address is
//!    trusted, the left-most is. An entry that is not an address
//!    (`unknown`, an obfuscated RFC 7239 node, garbage) stops the walk at
//!    the last trusted hop, so nobody can choose the address by sending
//!    junk. From an untrusted connection the header is ignored.
//!
//! Either way, what goes upstream is written by the gateway alone: one
//! `X-Forwarded-For` and `X-Real-IP` holding the client address, and one
//! `Forwarded: for=…` (see [`crate::http::headers::set_forwarded`]); every
//! client- or balancer-sent `Forwarded`, `X-Forwarded-*` and `X-Real-IP` is
//! replaced. The balancer hops are not passed on: the services behind the
//! gateway trust the gateway, which vouches for one address.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};

use crate::config::{ClientAddrPolicy, ForwardedHeader};
use crate::http::headers::ForwardedFor;
use crate::http::proxy_protocol::Header;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address the gateway believes a request came from, with its
/// forwarding headers rendered once.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddr {
    ip: IpAddr,
    forwarded: ForwardedFor,
}

impl ClientAddr {
    /// `ip`, IPv4-mapped IPv6 written as IPv4.
    pub(crate) fn new(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        Self {
            ip,
            forwarded: ForwardedFor::new(ip),
        }
    }

    /// The address.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The `Forwarded`/`X-Forwarded-For` values for it.
    pub(crate) fn forwarded(&self) -> &ForwardedFor {
        &self.forwarded
    }
}

/// Where a connection came from: the socket peer and the client on whose
/// behalf it was opened.
#[derive(Debug)]
pub(crate) struct ConnAddr {
    /// The socket's peer (a load balancer when there is one).
    pub(crate) peer: SocketAddr,
    /// The client of the connection: the PROXY header's source, or `peer`.
    pub(crate) client: ClientAddr,
    /// Set when the connection's client is a trusted proxy whose
    /// forwarding header is believed.
    believe: Option<Arc<ClientAddrPolicy>>,
}

impl ConnAddr {
    /// The addresses of a connection from `peer`, after the PROXY `header`
    /// (if the listener reads one), under the listener's `policy`.
    pub(crate) fn new(
        peer: SocketAddr,
        header: Option<Header>,
        policy: &Arc<ClientAddrPolicy>,
    ) -> Self {
        let client = match header {
            Some(Header::Proxy { source, .. }) => source.ip(),
            Some(Header::Local | Header::Unknown) | None => peer.ip(),
        };
        let client = ClientAddr::new(client);
        let believe = (policy.forwarded_header != ForwardedHeader::None
            && policy.trusted_proxies.contains(client.ip))
        .then(|| policy.clone());
        Self {
            peer,
            client,
            believe,
        }
    }

    /// The client of one request on this connection: the connection's
    /// client, or the address its trusted proxy names in `headers`.
    pub(crate) fn for_request(&self, headers: &HeaderMap) -> Cow<'_, ClientAddr> {
        let Some(policy) = &self.believe else {
            return Cow::Borrowed(&self.client);
        };
        let ip = chain_client(self.client.ip, headers, policy);
        if ip == self.client.ip {
            Cow::Borrowed(&self.client)
        } else {
            Cow::Owned(ClientAddr::new(ip))
        }
    }
}

/// The right-most address in `policy.forwarded_header` that is not a
/// trusted proxy, starting from `hop` (trusted: it sent the header).
fn chain_client(hop: IpAddr, headers: &HeaderMap, policy: &ClientAddrPolicy) -> IpAddr {
    let (name, parse): (HeaderName, fn(&str) -> Option<IpAddr>) = match policy.forwarded_header {
        ForwardedHeader::XForwardedFor => (X_FORWARDED_FOR, xff_node),
        ForwardedHeader::Forwarded => (http::header::FORWARDED, forwarded_element),
        ForwardedHeader::None => return hop,
    };
    let mut client = hop;
    for line in headers.get_all(name).iter().rev() {
        let Ok(line) = line.to_str() else {
            return client;
        };
        // Split at every comma, quoted or not: the right-most entries are
        // the trusted proxies' own, which hold none, and a quote a client
        // left open must not swallow the entry its proxy appended.
        for entry in line
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .rev()
        {
            let Some(ip) = parse(entry) else {
                return client;
            };
            client = ip.to_canonical();
            if !policy.trusted_proxies.contains(client) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`192.0.2.7:1234`, `[2001:db8::7]:1234`).
fn xff_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The `for=` node of one RFC 7239 `Forwarded` element: IPv4, a quoted
/// `"[IPv6]"`, either with a port; `unknown` and obfuscated nodes are no
/// address. An element without `for=` names no address either.
fn forwarded_element(element: &str) -> Option<IpAddr> {
    let node = element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
    })?;
    let node = match node.strip_prefix('"') {
        Some(q) => q.strip_suffix('"')?,
        None => node,
    };
    if let Some(v6) = node.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        let port_ok = rest.is_empty() || rest.strip_prefix(':').is_some_and(port_like);
        return port_ok
            .then(|| addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    let (addr, port) = node.split_once(':').unwrap_or((node, ""));
    if !port.is_empty() && !port_like(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// RFC 7239 `node-port`: 1–5 digits, or an obfuscated `_token`.
fn port_like(p: &str) -> bool {
    let digits = (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    digits || (p.starts_with('_') && p.len() > 1)
}

#[cfg(test)]
mod tests;
