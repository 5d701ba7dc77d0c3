//! Connections to the shared state stores (the PostgreSQL policy store,
//! session store and audit log; the Redis session store): whether they use
//! TLS, which CA verifies the server, and which plaintext connections leave
//! the machine (`stadttor config check` warns about those).
//!
//! One rule for every store, stricter than libpq where libpq would connect
//! without checking anything:
//!
//! | in the URL | TLS | the server's certificate |
//! |---|---|---|
//! | no `sslmode`, `sslmode=disable`, `redis://` | no | — (a warning if the host is not loopback) |
//! | `sslmode=allow`, `sslmode=prefer` | refused: a server (or an attacker) that declines TLS gets plaintext | |
//! | `sslmode=require`, `sslmode=verify-ca` | yes | chain to the CA file; name not checked (libpq's `require` with a root certificate) |
//! | `sslmode=verify-full`, `rediss://` | yes | chain to the CA file and the URL's host name |
//!
//! TLS always needs the CA file (`*_ca_file`): stadttor never encrypts
//! without verifying. For a server with a publicly trusted certificate
//! name the system bundle (`/etc/ssl/certs/ca-certificates.crt`). The
//! `sslmode` parameter is taken out of the URL here; the connection code
//! sets the mode itself ([`crate::store_tls`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How a store connection verifies the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTls {
    /// PEM file with the CA certificate(s) the server's chain must lead to.
    pub ca_file: PathBuf,
    /// Whether the server's certificate must also name the host in the URL
    /// (`verify-full`, `rediss://`); `false` for `require` and `verify-ca`.
    pub verify_name: bool,
}

/// A problem with a store's settings: in its URL or in its CA file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The URL (or connection string) is not acceptable.
    Url(String),
    /// The CA file key is missing, superfluous or names an unusable file.
    CaFile(String),
}

impl Problem {
    /// Reports the problem under `url_key` or `ca_key`.
    pub(super) fn report(self, url_key: &str, ca_key: &str, issue: &mut dyn FnMut(String, String)) {
        match self {
            Self::Url(r) => issue(url_key.to_owned(), r),
            Self::CaFile(r) => issue(ca_key.to_owned(), r),
        }
    }
}

/// Checks a PostgreSQL connection string (`postgres://` URL or libpq
/// `key=value` form) and its CA file (relative paths against `base`).
/// Returns the connection string without `sslmode`, for the client
/// library, and the TLS settings (`None`: plaintext).
pub(crate) fn postgres(
    dsn: &str,
    ca_file: Option<&Path>,
    base: &Path,
) -> Result<(String, Option<StoreTls>), Problem> {
    let params = dsn_params(dsn)?;
    if let Some(p) = params.iter().find(|p| {
        matches!(
            p.key.as_str(),
            "sslrootcert" | "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir"
        )
    }) {
        return Err(Problem::Url(format!(
            "`{}` in the connection string is not supported: name the CA in the CA file key",
            p.key
        )));
    }
    let mode = params
        .iter()
        .rev()
        .find(|p| p.key == "sslmode")
        .map(|p| p.value.clone());
    let verify_name = match mode.as_deref() {
        None | Some("disable") => {
            if ca_file.is_some() {
                return Err(Problem::CaFile(
                    "applies only to TLS: add `sslmode=verify-full` to the connection string"
                        .into(),
                ));
            }
            return Ok((dsn.to_owned(), None));
        }
        Some(m @ ("allow" | "prefer")) => {
            return Err(Problem::Url(format!(
                "`sslmode={m}` falls back to plaintext when the server (or someone in between) \
                 declines TLS: use `sslmode=verify-full` with a CA file, or `sslmode=disable`"
            )))
        }
        Some("require" | "verify-ca") => false,
        Some("verify-full") => true,
        Some(other) => {
            return Err(Problem::Url(format!(
                "unknown `sslmode={other}` (disable, require, verify-ca or verify-full)"
            )))
        }
    };
    let m = mode.unwrap_or_default();
    let tls = tls_with_ca(ca_file, base, &format!("`sslmode={m}`"), verify_name)?;
    Ok((strip_sslmode(dsn, &params), Some(tls)))
}

/// Checks a Redis URL (`redis://` or `rediss://`) and its CA file.
pub(crate) fn redis(
    url: &str,
    ca_file: Option<&Path>,
    base: &Path,
) -> Result<Option<StoreTls>, Problem> {
    if url.starts_with("rediss://") {
        if url.contains('#') {
            return Err(Problem::Url(
                "a `#` fragment (`#insecure`) would turn off certificate checks: remove it".into(),
            ));
        }
        return tls_with_ca(ca_file, base, "`rediss://`", true).map(Some);
    }
    if ca_file.is_some() {
        return Err(Problem::CaFile(
            "applies only to TLS: use a `rediss://` URL".into(),
        ));
    }
    Ok(None)
}

fn tls_with_ca(
    ca_file: Option<&Path>,
    base: &Path,
    what: &str,
    verify_name: bool,
) -> Result<StoreTls, Problem> {
    let Some(ca) = ca_file else {
        return Err(Problem::CaFile(format!(
            "required with {what}: stadttor checks every store's certificate against a named CA \
             (for a public CA give /etc/ssl/certs/ca-certificates.crt)"
        )));
    };
    let ca_file = if ca.is_absolute() {
        ca.to_owned()
    } else {
        base.join(ca)
    };
    crate::http::tls::ca_roots(&ca_file).map_err(Problem::CaFile)?;
    Ok(StoreTls {
        ca_file,
        verify_name,
    })
}

/// Validates `[audit]`'s storage: exactly one of `dir` and `postgres_url`,
/// the schema, and the connection's TLS.
pub(super) fn audit_storage(
    a: &super::raw::Audit,
    base: &Path,
    issue: &mut dyn FnMut(String, String),
) -> super::AuditStorage {
    use super::AuditStorage;
    match (&a.dir, &a.postgres_url) {
        (Some(d), None) => {
            if a.postgres_ca_file.is_some() {
                issue(
                    "audit.postgres_ca_file".into(),
                    "applies only with `postgres_url`".into(),
                );
            }
            AuditStorage::Dir(if d.is_absolute() {
                d.clone()
            } else {
                base.join(d)
            })
        }
        (None, Some(url)) => {
            let schema = a
                .postgres_schema
                .clone()
                .unwrap_or_else(|| "stadttor_audit".into());
            if schema.is_empty()
                || schema.len() > 63
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                issue(
                    "audit.postgres_schema".into(),
                    "must be letters, digits and `_`, at most 63".into(),
                );
            }
            let (url, tls) = match postgres(url, a.postgres_ca_file.as_deref(), base) {
                Ok(v) => v,
                Err(p) => {
                    // One problem per store: the feature check below
                    // would only repeat that this store cannot be used.
                    p.report("audit.postgres_url", "audit.postgres_ca_file", issue);
                    return AuditStorage::Postgres {
                        url: url.clone(),
                        schema,
                        tls: None,
                    };
                }
            };
            if !cfg!(feature = "postgres") {
                issue(
                    "audit.postgres_url".into(),
                    "PostgreSQL audit storage needs the cargo feature `postgres`, which \
                     this stadttor was built without"
                        .into(),
                );
            }
            AuditStorage::Postgres { url, schema, tls }
        }
        _ => {
            issue(
                "audit".into(),
                "give exactly one of `dir` (one gateway) or `postgres_url` (a cluster)".into(),
            );
            AuditStorage::Dir(PathBuf::new())
        }
    }
}

/// One `key=value` of a connection string, with the byte range it covers.
#[derive(Debug)]
struct Param {
    key: String,
    value: String,
    span: std::ops::Range<usize>,
}

fn is_url(dsn: &str) -> bool {
    dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")
}

/// The parameters of a connection string: the query of a URL, or the
/// `key=value` pairs of the libpq form (values quoted with `'`, `\`
/// escaping).
fn dsn_params(dsn: &str) -> Result<Vec<Param>, Problem> {
    let mut out = Vec::new();
    if is_url(dsn) {
        let Some(q) = dsn.find('?') else {
            return Ok(out);
        };
        let mut start = q + 1;
        for part in dsn[q + 1..].split('&') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push(Param {
                key: pct_decode(k),
                value: pct_decode(v),
                span: start..start + part.len(),
            });
            start += part.len() + 1;
        }
        return Ok(out);
    }
    let b = dsn.as_bytes();
    let mut i = 0;
    let bad = || Problem::Url("not a `key=value …` connection string or `postgres://` URL".into());
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = dsn[start..i].to_owned();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if key.is_empty() || i == b.len() || b[i] != b'=' {
            return Err(bad());
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let quoted = i < b.len() && b[i] == b'\'';
        if quoted {
            i += 1;
        }
        let mut value = Vec::new();
        loop {
            match b.get(i) {
                None if quoted => return Err(bad()),
                None => break,
                Some(b'\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if !quoted && c.is_ascii_whitespace() => break,
                Some(b'\\') if i + 1 < b.len() => {
                    value.push(b[i + 1]);
                    i += 2;
                }
                Some(&c) => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        out.push(Param {
            key,
            value: String::from_utf8_lossy(&value).into_owned(),
            span: start..i,
        });
    }
}

/// The connection string without its `sslmode` parameters.
fn strip_sslmode(dsn: &str, params: &[Param]) -> String {
    if is_url(dsn) {
        let Some(q) = dsn.find('?') else {
            return dsn.to_owned();
        };
        let kept: Vec<&str> = params
            .iter()
            .filter(|p| p.key != "sslmode")
            .map(|p| &dsn[p.span.clone()])
            .collect();
        if kept.is_empty() {
            return dsn[..q].to_owned();
        }
        return format!("{}?{}", &dsn[..q], kept.join("&"));
    }
    params
        .iter()
        .filter(|p| p.key != "sslmode")
        .map(|p| &dsn[p.span.clone()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hosts a PostgreSQL connection string names (`host`, `hostaddr`,
/// the URL's authority). Unix socket directories start with `/`.
fn postgres_hosts(dsn: &str) -> Vec<String> {
    let Ok(params) = dsn_params(dsn) else {
        return Vec::new();
    };
    let mut hosts: Vec<String> = params
        .iter()
        .filter(|p| p.key == "host" || p.key == "hostaddr")
        .flat_map(|p| p.value.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if let Some(rest) = dsn.split_once("://").map(|(_, r)| r) {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let hostspec = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        for h in hostspec.split(',').filter(|h| !h.is_empty()) {
            hosts.push(pct_decode(host_of(h)));
        }
    }
    hosts
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(hp: &str) -> &str {
    if let Some(v6) = hp.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    hp.split(':').next().unwrap_or(hp)
}

/// Whether a host stays on this machine: a Unix socket, `localhost`, a
/// loopback address. No host at all means the local default socket.
fn is_local(host: &str) -> bool {
    host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a plaintext PostgreSQL connection string leaves the machine.
pub(crate) fn postgres_is_remote(dsn: &str) -> bool {
    postgres_hosts(dsn).iter().any(|h| !is_local(h))
}

/// Whether a plaintext `redis://` URL leaves the machine.
pub(crate) fn redis_is_remote(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !is_local(host_of(hostport))
}

/// Every store that is reached over the network without TLS, as
/// `(key, warning)`. Not errors: a trusted network may be a deliberate
/// choice, but it should be a visible one.
pub fn plaintext_warnings(cfg: &super::Config) -> Vec<(String, String)> {
    use super::{AuditStorage, PolicyStorage, SessionStorage};
    const WHY: &str = "reaches a store over the network without TLS (passwords, sessions, \
                       policies and audit events travel in clear): add `sslmode=verify-full` \
                       and a CA file";
    let mut out = Vec::new();
    if let Some(p) = &cfg.policies {
        if let PolicyStorage::Postgres { url, tls: None, .. } = &p.storage {
            if postgres_is_remote(url) {
                out.push(("policies.store".into(), WHY.into()));
            }
        }
    }
    if let Some(i) = &cfg.identity {
        let remote = match &i.store {
            SessionStorage::Postgres { url, tls: None } => postgres_is_remote(url),
            SessionStorage::Redis { url, tls: None } => redis_is_remote(url),
            _ => false,
        };
        if remote {
            out.push((
                "identity.store".into(),
                WHY.replace(
                    "`sslmode=verify-full`",
                    "`sslmode=verify-full` (`rediss://`)",
                ),
            ));
        }
    }
    if let Some(a) = &cfg.audit {
        if let AuditStorage::Postgres { url, tls: None, .. } = &a.storage {
            if postgres_is_remote(url) {
                out.push(("audit.postgres_url".into(), WHY.into()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(dsn: &str) -> Result<(String, Option<StoreTls>), Problem> {
        postgres(dsn, None, Path::new("/"))
    }

    #[test]
    fn plaintext_modes_keep_the_string_and_refuse_a_ca_file() {
        for dsn in [
            "postgres://u@db/x",
            "postgres://u@db/x?sslmode=disable",
            "host=db user=u",
        ] {
            assert_eq!(pg(dsn).unwrap(), (dsn.to_owned(), None), "{dsn}");
            let with_ca = postgres(dsn, Some(Path::new("/ca.pem")), Path::new("/"));
            assert!(matches!(with_ca, Err(Problem::CaFile(_))), "{dsn}");
        }
    }

    #[test]
    fn downgradable_and_unknown_modes_are_refused() {
        for dsn in [
            "postgres://db/x?sslmode=prefer",
            "host=db sslmode=allow",
            "postgres://db/x?sslmode=verify",
            "postgres://db/x?sslrootcert=/ca.pem&sslmode=verify-full",
        ] {
            assert!(matches!(pg(dsn), Err(Problem::Url(_))), "{dsn}");
        }
    }

    #[test]
    fn tls_without_a_ca_file_is_refused() {
        for dsn in [
            "postgres://db/x?sslmode=require",
            "host=db sslmode='verify-full'",
            "host=db sslmode=verify-ca",
        ] {
            assert!(matches!(pg(dsn), Err(Problem::CaFile(_))), "{dsn}");
        }
        assert!(matches!(
            redis("rediss://db:6380", None, Path::new("/")),
            Err(Problem::CaFile(_))
        ));
        assert!(matches!(
            redis("rediss://db:6380/#insecure", None, Path::new("/")),
            Err(Problem::Url(_))
        ));
    }

    #[test]
    fn sslmode_is_taken_out_of_both_forms() {
        let p =
            dsn_params("postgres://u@h/d?application_name=a&sslmode=verify-full&port=5").unwrap();
        assert_eq!(
            strip_sslmode(
                "postgres://u@h/d?application_name=a&sslmode=verify-full&port=5",
                &p
            ),
            "postgres://u@h/d?application_name=a&port=5"
        );
        let s = "postgres://u@h/d?sslmode=require";
        assert_eq!(
            strip_sslmode(s, &dsn_params(s).unwrap()),
            "postgres://u@h/d"
        );
        let s = "host=h password='a b\\' c' sslmode = verify-full dbname=d";
        let p = dsn_params(s).unwrap();
        assert_eq!(p[1].value, "a b' c");
        assert_eq!(p[2].value, "verify-full");
        assert_eq!(strip_sslmode(s, &p), "host=h password='a b\\' c' dbname=d");
    }

    #[test]
    fn loopback_and_sockets_are_local() {
        for dsn in [
            "postgres://u@localhost/x",
            "postgres://127.0.0.1:5432/x",
            "postgres://[::1]:5432/x",
            "postgres://%2Fvar%2Frun%2Fpostgresql/x",
            "host=/var/run/postgresql dbname=x",
            "dbname=x",
        ] {
            assert!(!postgres_is_remote(dsn), "{dsn}");
        }
        for dsn in [
            "postgres://u:pw@db.example/x",
            "postgres://localhost,db2:5433/x",
            "host=10.0.0.5 dbname=x",
            "postgres:///x?host=db.example",
        ] {
            assert!(postgres_is_remote(dsn), "{dsn}");
        }
        assert!(!redis_is_remote("redis://127.0.0.1:6379/0"));
        assert!(!redis_is_remote("redis://:pw@localhost"));
        assert!(redis_is_remote("redis://:pw@cache.example:6379"));
    }
}
