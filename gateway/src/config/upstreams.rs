//! `[[upstreams]]`: the services behind the gateway, their addresses,
//! TLS towards them and passive health checking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::identity::KeyRefParser;
use super::{raw, Upstream, UpstreamTls};

/// Checks `[[upstreams]]`; returns them typed and their index by name.
pub(super) fn validate(
    raw: &[raw::Upstream],
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> (Vec<Upstream>, BTreeMap<String, usize>) {
    let mut upstream_names = BTreeMap::new();
    let mut upstreams = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let k = format!("upstreams[{i}]");
        if u.name.is_empty() || upstream_names.insert(u.name.clone(), i).is_some() {
            issue(
                format!("{k}.name"),
                format!("`{}` is empty or used twice", u.name),
            );
        }
        if u.addresses.is_empty() {
            issue(
                format!("{k}.addresses"),
                "at least one address is needed".into(),
            );
        }
        for a in &u.addresses {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok || a.contains('/') {
                issue(
                    format!("{k}.addresses"),
                    format!("`{a}` is not `host:port` (no scheme, no path)"),
                );
            }
        }
        if u.eject_after_failures == 0 {
            issue(
                format!("{k}.eject_after_failures"),
                "must be at least 1".into(),
            );
        }
        let tls = u.tls.as_ref().map(|t| {
            let client_cert = match (&t.client_chain, &t.client_key) {
                (Some(c), Some(kk)) => {
                    Some((abs(c), key_ref(kk, issue, format!("{k}.tls.client_key"))))
                }
                (None, None) => None,
                _ => {
                    issue(
                        format!("{k}.tls"),
                        "client_chain and client_key must be given together".into(),
                    );
                    None
                }
            };
            if let Some(n) = &t.server_name {
                if let Err(e) = rustls_pki_types::ServerName::try_from(n.as_str()) {
                    issue(
                        format!("{k}.tls.server_name"),
                        format!("`{n}` is not a DNS name or IP address: {e}"),
                    );
                }
            }
            UpstreamTls {
                ca: abs(&t.ca),
                server_name: t.server_name.clone(),
                client_cert,
            }
        });
        upstreams.push(Upstream {
            name: u.name.clone(),
            addresses: u.addresses.clone(),
            tls,
            eject_after_failures: u.eject_after_failures,
            eject_for: u.eject_for,
            pool_idle_timeout: u.pool_idle_timeout,
        });
    }

    (upstreams, upstream_names)
}
