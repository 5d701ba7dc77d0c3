//! `[admin]`: the admin listener's own TLS settings and its connection
//! cap, validated apart from the public listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::identity::KeyRefParser;
use super::listeners::{host_problem, socket_conflict};
use super::{raw, CertMode, Certificate, ClientAuth, Tls};

/// `admin.max_connections` when it is not set: plenty for scrapers, health
/// checks and the officers' pages, and far below the file-descriptor limit.
pub(super) fn default_max_connections() -> usize {
    256
}

/// The admin listener's connection cap (the default without `[admin]`).
pub(super) fn max_connections(a: Option<&raw::Admin>) -> usize {
    a.map_or(default_max_connections(), |a| a.max_connections)
}

/// Checks the `[admin]` keys that need no files: the address against the
/// public listeners' `sockets`, and the connection cap.
pub(super) fn check(
    a: &raw::Admin,
    sockets: &[(String, SocketAddr)],
    issue: &mut dyn FnMut(String, String),
) {
    if let Some(problem) = socket_conflict(sockets, a.listen) {
        issue("admin.listen".into(), problem);
    }
    if a.max_connections == 0 {
        issue("admin.max_connections".into(), "must be at least 1".into());
    }
}

/// The admin listener's `[admin.tls]`: certificates signed directly by
/// their keys (no short-lived leaves), optional client certificates.
pub(super) fn tls_config(
    t: &raw::Tls,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Tls {
    if t.certificates.is_empty() {
        issue(
            "admin.tls.certificates".into(),
            "at least one certificate is needed".into(),
        );
    }
    let mut certificates = Vec::new();
    for (j, c) in t.certificates.iter().enumerate() {
        let ck = format!("admin.tls.certificates[{j}]");
        if c.mode != CertMode::Direct {
            issue(
                format!("{ck}.mode"),
                "the admin listener signs handshakes directly; remove `mode`".into(),
            );
        }
        let mut names = Vec::new();
        for n in &c.server_names {
            let n = n.to_ascii_lowercase();
            if let Some(problem) = host_problem(&n) {
                issue(
                    format!("{ck}.server_names"),
                    format!("`{n}` is not a DNS name or `*.` wildcard: {problem}"),
                );
            }
            names.push(n);
        }
        certificates.push(Certificate {
            chain: abs(&c.chain),
            key: key_ref(&c.key, issue, format!("{ck}.key")),
            server_names: names,
            origin: ck,
            mode: CertMode::Direct,
            leaf_lifetime: c.leaf_lifetime,
        });
    }
    Tls {
        certificates,
        client_auth: t.client_auth.as_ref().map(|c| ClientAuth {
            ca: abs(&c.ca),
            mode: c.mode,
        }),
        allow_x25519: t.allow_x25519,
        post_quantum_key_exchange: t.post_quantum_key_exchange,
        session_tickets: t.session_tickets,
    }
}
