//! A listener's load-balancer settings: `proxy_protocol`,
//! `trusted_proxies` and `forwarded_header`, checked into one
//! [`ClientAddrPolicy`] that [`crate::http::client_addr`] applies.
//!
//! Refused at load: a CIDR that does not parse or has host bits set, a
//! block that trusts every address, PROXY protocol without
//! `trusted_proxies` (nobody could connect), and `forwarded_header` without
//! `trusted_proxies` (it would have no effect).

use std::net::IpAddr;

use ipnet::IpNet;

use super::raw;

/// Whether a listener expects a PROXY protocol header before TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No header: the socket peer is the client (the default).
    #[default]
    Off,
    /// A v1 (text) header is required.
    V1,
    /// A v2 (binary) header is required.
    V2,
}

impl ProxyProtocol {
    /// The version to read, if any.
    pub fn version(self) -> Option<crate::http::proxy_protocol::Version> {
        match self {
            Self::Off => None,
            Self::V1 => Some(crate::http::proxy_protocol::Version::V1),
            Self::V2 => Some(crate::http::proxy_protocol::Version::V2),
        }
    }
}

/// Which request header the trusted proxies write the client into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx `$proxy_add_x_forwarded_for`, HAProxy
    /// `option forwardfor`; the default).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), its `for=` parameters.
    Forwarded,
    /// Neither: only the PROXY header or the socket says who the client is.
    None,
}

/// Addresses (CIDR blocks) of load balancers the gateway believes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Trusts these blocks (already checked with [`Self::parse_entry`]).
    pub fn from_nets(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses one entry: an address (a /32 or /128) or a CIDR block
    /// without host bits.
    pub fn parse_entry(s: &str) -> Result<IpNet, String> {
        let net = match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip.to_canonical()),
            Err(_) => s.parse::<IpNet>().map_err(|_| {
                format!("`{s}` is not an IP address or CIDR block (such as `10.0.0.0/24`)")
            })?,
        };
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set; write the block as `{}`",
                net.trunc()
            ));
        }
        if let IpNet::V6(v6) = net {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if v6.prefix_len() >= 96 {
                    return Err(format!(
                        "`{s}` is an IPv4-mapped block; write it as IPv4 (`{v4}/{}`): \
                         mapped client addresses are compared as IPv4",
                        v6.prefix_len() - 96
                    ));
                }
            }
        }
        if net.prefix_len() == 0 {
            return Err(format!(
                "`{s}` trusts every address, so any client could name any address; list the \
                 load balancers' addresses"
            ));
        }
        Ok(net)
    }
}

/// How one listener finds its clients' addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAddrPolicy {
    /// PROXY header required before TLS, and which version.
    pub proxy_protocol: ProxyProtocol,
    /// The balancers: only they may send a PROXY header, and only their
    /// `forwarded_header` is believed.
    pub trusted_proxies: TrustedProxies,
    /// The header trusted proxies write the client into.
    pub forwarded_header: ForwardedHeader,
}

/// Checks listener `k`'s load-balancer keys.
pub(super) fn validate(
    k: &str,
    l: &raw::Listener,
    issue: &mut dyn FnMut(String, String),
) -> ClientAddrPolicy {
    let mut nets = Vec::new();
    for (i, entry) in l.trusted_proxies.iter().enumerate() {
        match TrustedProxies::parse_entry(entry) {
            Ok(n) => nets.push(n),
            Err(reason) => issue(format!("{k}.trusted_proxies[{i}]"), reason),
        }
    }
    if l.trusted_proxies.is_empty() {
        if l.proxy_protocol != ProxyProtocol::Off {
            issue(
                format!("{k}.trusted_proxies"),
                "proxy_protocol is on, so list the load balancers' addresses here: only they \
                 may send a PROXY header (connections from anyone else are closed)"
                    .into(),
            );
        }
        if l.forwarded_header.is_some() {
            issue(
                format!("{k}.forwarded_header"),
                "has no effect without trusted_proxies: the header is believed only from \
                 them; list the proxies or remove the key"
                    .into(),
            );
        }
    }
    ClientAddrPolicy {
        proxy_protocol: l.proxy_protocol,
        trusted_proxies: TrustedProxies(nets),
        forwarded_header: l.forwarded_header.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let ok = |s: &str| TrustedProxies::parse_entry(s).unwrap().to_string();
        assert_eq!(ok("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(ok("192.0.2.7"), "192.0.2.7/32");
        assert_eq!(ok("::ffff:192.0.2.7"), "192.0.2.7/32");
        assert_eq!(ok("2001:db8::/32"), "2001:db8::/32");
        for (bad, why) in [
            (
                "10.0.0.1/8",
                "host bits set; write the block as `10.0.0.0/8`",
            ),
            ("0.0.0.0/0", "trusts every address"),
            ("::/0", "trusts every address"),
            ("10.0.0.300", "not an IP address or CIDR block"),
            ("10.0.0.0/33", "not an IP address or CIDR block"),
            ("lb.example", "not an IP address or CIDR block"),
            ("", "not an IP address or CIDR block"),
            ("::ffff:10.0.0.0/104", "write it as IPv4 (`10.0.0.0/8`)"),
        ] {
            let e = TrustedProxies::parse_entry(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn contains_mapped_addresses() {
        let t = TrustedProxies(vec![TrustedProxies::parse_entry("10.0.0.0/24").unwrap()]);
        assert!(t.contains("10.0.0.9".parse().unwrap()));
        assert!(t.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert!(!t.contains("10.0.1.9".parse().unwrap()));
        assert!(!TrustedProxies::default().contains("10.0.0.9".parse().unwrap()));
    }
}
