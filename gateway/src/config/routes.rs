//! `[[routes]]`: which requests go to which upstream, with what
//! authentication, authorization, auditing and signing; and that no route
//! is shadowed by an earlier one.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    identity, listeners::host_problem, paths, policies, raw, signing, AuditMode, Identity, Route,
    Signing,
};

/// What routes refer to, from the tables checked before them.
pub(super) struct Context<'a> {
    pub(super) listener_names: &'a HashSet<String>,
    pub(super) upstream_names: &'a BTreeMap<String, usize>,
    pub(super) identity: Option<&'a Identity>,
    /// A `[policies]` table exists.
    pub(super) policies: bool,
    pub(super) signing: Option<&'a Signing>,
}

/// Checks `[[routes]]`.
pub(super) fn validate(
    raw: &raw::File,
    ctx: &Context<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Vec<Route> {
    let mut route_names = HashSet::new();
    if raw.routes.is_empty() {
        issue(
            "routes".into(),
            "at least one `[[routes]]` table is needed".into(),
        );
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        if r.name.is_empty() || !route_names.insert(r.name.clone()) {
            issue(
                format!("routes[{i}].name"),
                format!("`{}` is empty or used twice", r.name),
            );
        }
        routes.push(route(raw, i, r, ctx, issue));
    }
    shadowed(&routes, issue);
    routes
}

/// Checks `routes[i]`.
fn route(
    raw: &raw::File,
    i: usize,
    r: &raw::Route,
    ctx: &Context<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Route {
    let k = format!("routes[{i}]");
    let upstream = match ctx.upstream_names.get(&r.upstream) {
        Some(i) => *i,
        None => {
            issue(
                format!("{k}.upstream"),
                format!(
                    "no upstream named `{}`; defined are: {}",
                    r.upstream,
                    ctx.upstream_names
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            0
        }
    };
    check_matching(raw, &k, r, ctx, issue);
    let t = &r.timeouts;
    for (name, d) in [
        ("connect", t.connect),
        ("response_header", t.response_header),
        ("idle", t.idle),
        ("total", t.total),
    ] {
        if d.is_zero() {
            issue(format!("{k}.timeouts.{name}"), "must be positive".into());
        }
    }
    let response_headers = response_headers(&k, &r.response_headers, issue);
    let auth = r
        .auth
        .as_ref()
        .map(|a| identity::validate_route_auth(&format!("{k}.auth"), a, ctx.identity, issue))
        .unwrap_or_default();
    Route {
        name: r.name.clone(),
        upstream,
        listeners: r.listeners.clone(),
        host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
        paths: paths::validate(&k, &r.path_prefix, r.paths.as_ref(), issue),
        path_prefix: r.path_prefix.clone(),
        strip_prefix: r.strip_prefix,
        max_request_body: r.max_request_body.0,
        websocket: r.websocket,
        forward_client_cert: r.forward_client_cert,
        // With an audit log, routes are audited (fail closed) unless they
        // say otherwise; without one there is nothing to record to.
        audit: r.audit.unwrap_or(if raw.audit.is_some() {
            AuditMode::Required
        } else {
            AuditMode::Off
        }),
        timeouts: raw::Timeouts {
            connect: t.connect,
            response_header: t.response_header,
            idle: t.idle,
            total: t.total,
        },
        response_headers,
        authz: policies::validate_route_authz(
            &k,
            r.authz.as_ref(),
            &auth.methods,
            ctx.policies,
            issue,
        ),
        auth,
        sign: signing::validate_rules(&format!("{k}.sign"), &r.sign, ctx.signing, issue),
    }
}

/// What decides whether route `k` matches: its listeners, host and path
/// prefix, and that a forwarded client certificate can exist.
fn check_matching(
    raw: &raw::File,
    k: &str,
    r: &raw::Route,
    ctx: &Context<'_>,
    issue: &mut dyn FnMut(String, String),
) {
    for l in &r.listeners {
        if !ctx.listener_names.contains(l) {
            issue(
                format!("{k}.listeners"),
                format!(
                    "no listener named `{l}`; defined are: {}",
                    raw.listeners
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if let Some(h) = &r.host {
        if let Some(problem) = host_problem(&h.to_ascii_lowercase()) {
            issue(
                format!("{k}.host"),
                format!("`{h}` is not a host name or `*.` wildcard: {problem}"),
            );
        }
    }
    if !r.path_prefix.starts_with('/') {
        issue(
            format!("{k}.path_prefix"),
            format!("`{}` must start with `/`", r.path_prefix),
        );
    } else if r
        .path_prefix
        .contains(|c: char| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
    {
        issue(
            format!("{k}.path_prefix"),
            format!(
                "`{}` would never match: a path prefix has no query, fragment or whitespace",
                r.path_prefix
            ),
        );
    }
    if r.forward_client_cert
        && !raw.listeners.iter().any(|l| {
            l.tls.client_auth.is_some() && (r.listeners.is_empty() || r.listeners.contains(&l.name))
        })
    {
        issue(
            format!("{k}.forward_client_cert"),
            "no listener of this route verifies client certificates, so there is nothing \
             to forward; add `[listeners.tls.client_auth]` to its listener or remove \
             `forward_client_cert`"
                .into(),
        );
    }
}

/// `response_headers` of route `k`, names lowercased.
fn response_headers(
    k: &str,
    raw: &BTreeMap<String, String>,
    issue: &mut dyn FnMut(String, String),
) -> BTreeMap<String, String> {
    let mut response_headers = BTreeMap::new();
    for (name, value) in raw {
        let lname = name.to_ascii_lowercase();
        let hk = format!("{k}.response_headers.{name}");
        if http::HeaderName::from_bytes(lname.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            issue(
                hk,
                "not a valid header name or value (CR, LF and NUL are refused, CWE-113)".into(),
            );
        } else if let Some(why) = reserved_response_header(&lname) {
            issue(
                hk,
                format!("`{lname}` cannot be overridden: {why}; remove it"),
            );
        } else if response_headers.contains_key(&lname) {
            issue(
                hk,
                "given twice (header names are case-insensitive); keep one".into(),
            );
        }
        response_headers.insert(lname, value.clone());
    }
    response_headers
}

/// Reports routes that can never match because an earlier one wins.
fn shadowed(routes: &[Route], issue: &mut dyn FnMut(String, String)) {
    // A route is dead if an earlier one has the same host and prefix and
    // applies to at least the same listeners: ties keep file order. Only
    // routes with the same host and prefix are compared, so this stays
    // linear in the number of routes (it compared every pair before).
    let mut earlier: HashMap<(Option<&str>, &str), Vec<usize>> = HashMap::new();
    for (j, b) in routes.iter().enumerate() {
        let same = earlier
            .entry((b.host.as_deref(), b.path_prefix.as_str()))
            .or_default();
        let shadow = same.iter().copied().find(|&i| {
            let a = &routes[i];
            a.listeners.is_empty()
                || (!b.listeners.is_empty() && b.listeners.iter().all(|l| a.listeners.contains(l)))
        });
        same.push(j);
        if let Some(i) = shadow {
            issue(
                format!("routes[{j}]"),
                format!(
                    "route `{}` can never match: routes[{i}] (`{}`) has the same host and \
                 path_prefix on the same listeners and comes first; change its host, \
                 path_prefix or listeners, or remove one of them",
                    b.name, routes[i].name
                ),
            );
        }
    }
}

/// Why a route may not override response header `name`, if it may not.
fn reserved_response_header(name: &str) -> Option<&'static str> {
    match name {
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te"
        | "trailer" | "upgrade" | "content-length" => {
            Some("it belongs to the HTTP framing, which the gateway manages")
        }
        "x-request-id" => Some("the gateway sets it on every response"),
        _ => None,
    }
}
