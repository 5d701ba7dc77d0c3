//! `[[listeners]]`: sockets, TLS certificates per SNI name, client
//! certificates; and the checks for host names and socket conflicts that
//! other tables use too.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::identity::KeyRefParser;
use super::{raw, CertMode, Certificate, ClientAuth, Listener, Tls};

/// The listeners, typed, and what later tables check against.
pub(super) struct Listeners {
    pub(super) listeners: Vec<Listener>,
    /// Every socket bound at start (listeners; the admin socket is added
    /// by its own check), to find pairs that cannot both be bound.
    pub(super) sockets: Vec<(String, SocketAddr)>,
    pub(super) names: HashSet<String>,
}

/// Checks `[[listeners]]`.
pub(super) fn validate(
    raw: &[raw::Listener],
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Listeners {
    if raw.is_empty() {
        issue(
            "listeners".into(),
            "at least one `[[listeners]]` table is needed".into(),
        );
    }
    let mut listener_names = HashSet::new();
    // Every socket bound at start, to find pairs that cannot both be bound.
    let mut sockets: Vec<(String, SocketAddr)> = Vec::new();
    let mut listeners = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let k = format!("listeners[{i}]");
        if l.name.is_empty() || !listener_names.insert(l.name.clone()) {
            issue(
                format!("{k}.name"),
                format!("`{}` is empty or used twice", l.name),
            );
        }
        if let Some(problem) = socket_conflict(&sockets, l.listen) {
            issue(format!("{k}.listen"), problem);
        }
        sockets.push((format!("{k} (`{}`)", l.name), l.listen));
        if l.tls.certificates.is_empty() {
            issue(
                format!("{k}.tls.certificates"),
                "at least one certificate is needed".into(),
            );
        }
        let certificates = certificates(&k, &l.tls.certificates, abs, key_ref, issue);
        let client_addr = std::sync::Arc::new(super::proxies::validate(&k, l, issue));
        listeners.push(Listener {
            name: l.name.clone(),
            listen: l.listen,
            client_addr,
            tls: Tls {
                certificates,
                client_auth: l.tls.client_auth.as_ref().map(|c| ClientAuth {
                    ca: abs(&c.ca),
                    mode: c.mode,
                }),
                allow_x25519: l.tls.allow_x25519,
                post_quantum_key_exchange: l.tls.post_quantum_key_exchange,
                session_tickets: l.tls.session_tickets,
            },
        });
    }

    Listeners {
        listeners,
        sockets,
        names: listener_names,
    }
}

/// The certificates of listener `k`, each with the SNI names it serves.
fn certificates(
    k: &str,
    raw: &[raw::Certificate],
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Vec<Certificate> {
    let mut certificates = Vec::new();
    // SNI name → the certificate that serves it; the first without names.
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut default_cert = None;
    for (j, c) in raw.iter().enumerate() {
        let ck = format!("{k}.tls.certificates[{j}]");
        let key = key_ref(&c.key, issue, format!("{ck}.key"));
        if c.server_names.is_empty() {
            match default_cert {
                None => default_cert = Some(j),
                Some(first) => issue(
                    format!("{ck}.server_names"),
                    format!(
                        "empty, but {k}.tls.certificates[{first}] is already the default \
                         certificate, so this one would never be served; give it \
                         `server_names` or remove it"
                    ),
                ),
            }
        }
        let mut names = Vec::new();
        for n in &c.server_names {
            let n = n.to_ascii_lowercase();
            if let Some(problem) = host_problem(&n) {
                issue(
                    format!("{ck}.server_names"),
                    format!("`{n}` is not a DNS name or `*.` wildcard: {problem}"),
                );
            } else if let Some(first) = served.get(&n) {
                issue(
                    format!("{ck}.server_names"),
                    format!(
                        "`{n}` is already served by {k}.tls.certificates[{first}]; \
                         a name may appear once per listener"
                    ),
                );
            } else {
                served.insert(n.clone(), j);
            }
            names.push(n);
        }
        if c.mode == CertMode::ShortLivedLeaf {
            if names.is_empty() {
                issue(
                    format!("{ck}.server_names"),
                    "short-lived-leaf mode needs server_names: they become the names in \
                     each leaf certificate"
                        .into(),
                );
            }
            if c.leaf_lifetime < Duration::from_secs(600)
                || c.leaf_lifetime > Duration::from_secs(48 * 3600)
            {
                issue(
                    format!("{ck}.leaf_lifetime"),
                    "must be between 10m and 48h (leaves are rotated at half their lifetime)"
                        .into(),
                );
            }
        }
        certificates.push(Certificate {
            chain: abs(&c.chain),
            key,
            server_names: names,
            origin: ck,
            mode: c.mode,
            leaf_lifetime: c.leaf_lifetime,
        });
    }
    certificates
}

/// Why `name` (lowercase) can never equal a request's host or SNI name.
pub(super) fn host_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => None,
            Err(_) => Some("not an IPv6 address in brackets"),
        };
    }
    if name.contains("://") || name.contains('/') {
        return Some("write the bare host name, without scheme or path");
    }
    if name.contains(':') {
        return Some("write the host name without a port (hosts match on any port)");
    }
    if name.ends_with('.') {
        return Some("drop the trailing dot (names are compared without it)");
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.contains('*') {
        return Some("`*` is only allowed as the whole first label, as in `*.example.org`");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !bare.split('.').all(label_ok) {
        return Some("only letters, digits, `-` and `_` in dot-separated, non-empty labels");
    }
    None
}

/// Whether `addr` cannot be bound next to the sockets already listed, and
/// why. Port 0 never conflicts. A wildcard address takes the port on every
/// address of its family; `[::]` also takes IPv4 (Linux dual-stack default).
pub(super) fn socket_conflict(
    sockets: &[(String, SocketAddr)],
    addr: SocketAddr,
) -> Option<String> {
    let covers =
        |w: &SocketAddr, o: &SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || o.is_ipv4());
    sockets.iter().find_map(|(name, other)| {
        let clash = addr.port() != 0
            && addr.port() == other.port()
            && (addr.ip() == other.ip() || covers(&addr, other) || covers(other, &addr));
        clash.then(|| {
            format!(
                "{addr} overlaps {other} of {name}; both cannot be bound. Give each its own \
                 address or port"
            )
        })
    })
}
