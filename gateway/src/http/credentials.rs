//! Credentials stay at the gateway: the one place that reads the client's
//! credentials (the `Authorization` header and the gateway's own
//! `__Host-stadttor-*` cookies) and the one place that keeps them, and the
//! gateway's cookie names, away from services.
//!
//! - [`check_unique`]: a request with two `Authorization` headers, or two
//!   of the gateway's cookies with the same name (across every `Cookie`
//!   header, names compared without case), is refused before
//!   authentication looks at it, so no stage can pick "the other one".
//!   [`authorization`] and [`cookie`] are the only readers authentication
//!   uses; they answer `None` for an ambiguous request as well.
//! - [`withhold`]: before forwarding, the gateway's cookies are cut out of
//!   the `Cookie` header (other cookies keep their order; several h2
//!   `cookie` fields become one header, RFC 9113 §8.2.3), and
//!   `Authorization` is dropped on routes that authenticate sessions or
//!   bearer tokens unless the route sets `forward_authorization = true`.
//! - [`refuse_set_cookies`]: an upstream cannot set, replace or delete one
//!   of the gateway's cookies; such `Set-Cookie` headers are dropped,
//!   logged and counted.
//! - [`request_host`]: the host a sealed cookie is bound to.
//!
//! It does not decide who the caller is (that is [`crate::authn`]) and does
//! not touch other headers (that is [`crate::http::headers`]).

use http::header::{self, HeaderMap, HeaderValue};
use http::Uri;

use crate::config::RouteAuth;
use crate::identity::AuthMethod;

/// Every cookie the gateway sets starts with this (compared without case).
pub(crate) const GATEWAY_COOKIE_PREFIX: &str = "__Host-stadttor-";

/// Why a request's credentials are ambiguous; the text goes into the 400.
pub(crate) type Ambiguous = &'static str;

const TWO_AUTHORIZATIONS: Ambiguous = "more than one Authorization header";
const TWO_GATEWAY_COOKIES: Ambiguous = "a gateway cookie sent more than once";

/// Whether `name` is one of the gateway's cookie names (any case).
pub(crate) fn is_gateway_cookie(name: &[u8]) -> bool {
    let p = GATEWAY_COOKIE_PREFIX.as_bytes();
    name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p)
}

/// Every `name=value` pair of every `Cookie` header, in order, with the
/// surrounding whitespace trimmed (a pair without `=` has an empty name).
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|b| *b == b'=') {
            Some(i) => (pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()),
            None => (&pair[..0], pair),
        })
}

/// Refuses a request whose credentials are ambiguous: more than one
/// `Authorization` header, or one of the gateway's cookies more than once.
pub(crate) fn check_unique(headers: &HeaderMap) -> Result<(), Ambiguous> {
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(TWO_AUTHORIZATIONS);
    }
    let mut seen: Vec<&[u8]> = Vec::new();
    for (name, _) in cookie_pairs(headers).filter(|(n, _)| is_gateway_cookie(n)) {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(TWO_GATEWAY_COOKIES);
        }
        seen.push(name);
    }
    Ok(())
}

/// The one `Authorization` header; `None` if there is none or more than one.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// The value of the gateway's cookie `name`; `None` if it is missing, not
/// text, or sent more than once (in any case).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = cookie_pairs(headers).filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
    let (n, v) = found.next()?;
    if found.next().is_some() || n != name.as_bytes() {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// What [`withhold`] removed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Withheld {
    /// Gateway cookies cut out of `Cookie`.
    pub(crate) cookies: usize,
    /// Whether `Authorization` was dropped.
    pub(crate) authorization: bool,
}

/// Whether the route keeps `Authorization` from its service: it
/// authenticates sessions or bearer tokens and did not opt in.
pub(crate) fn withholds_authorization(auth: &RouteAuth) -> bool {
    !auth.forward_authorization
        && auth
            .methods
            .iter()
            .any(|m| matches!(m, AuthMethod::Session | AuthMethod::Bearer))
}

/// Removes the gateway's credentials from a request about to be forwarded.
pub(crate) fn withhold(headers: &mut HeaderMap, auth: &RouteAuth) -> Withheld {
    let mut out = Withheld::default();
    if withholds_authorization(auth) {
        out.authorization = headers.remove(header::AUTHORIZATION).is_some();
    }
    // The common cases (no Cookie, or one without the gateway's cookies)
    // allocate nothing.
    let several = headers.get_all(header::COOKIE).iter().nth(1).is_some();
    if !several && !cookie_pairs(headers).any(|(n, _)| is_gateway_cookie(n)) {
        return out;
    }
    let mut kept: Vec<u8> = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        for pair in v.as_bytes().split(|b| *b == b';').map(<[u8]>::trim_ascii) {
            if pair.is_empty() {
                continue;
            }
            let name = pair.split(|b| *b == b'=').next().unwrap_or(pair);
            if pair.contains(&b'=') && is_gateway_cookie(name.trim_ascii()) {
                out.cookies += 1;
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(header::COOKIE);
    // The kept bytes are pieces of valid header values joined by "; ".
    if let Ok(v) = HeaderValue::from_bytes(&kept) {
        if !kept.is_empty() {
            headers.insert(header::COOKIE, v);
        }
    }
    out
}

/// [`withhold`] on a request for `auth`'s route, with a log line.
pub(crate) fn withhold_for_route(headers: &mut HeaderMap, auth: &RouteAuth, request_id: &str) {
    let w = withhold(headers, auth);
    if w != Withheld::default() {
        tracing::debug!(
            request_id,
            cookies = w.cookies,
            authorization = w.authorization,
            "gateway credentials withheld from the service"
        );
    }
}

/// [`refuse_set_cookies`] on `route`'s upstream response: logged and
/// counted (`stadttor_upstream_set_cookie_refused_total`).
pub(crate) fn refuse_set_cookies_for_route(
    headers: &mut HeaderMap,
    route: &crate::state::Route,
    request_id: &str,
) {
    let n = refuse_set_cookies(headers);
    if n > 0 {
        route.metrics.set_cookie_refused.inc_by(n as u64);
        tracing::warn!(
            request_id,
            route = %route.cfg.name,
            count = n,
            "upstream Set-Cookie for a gateway cookie refused"
        );
    }
}

/// Whether a `Set-Cookie` value would set, replace or delete one of the
/// gateway's cookies (also as a nameless cookie whose value is `name=…`).
fn sets_gateway_cookie(v: &HeaderValue) -> bool {
    let pair = v
        .as_bytes()
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let name = match pair.iter().position(|b| *b == b'=') {
        Some(0) => pair[1..].trim_ascii(),
        Some(i) => pair[..i].trim_ascii(),
        None => pair,
    };
    is_gateway_cookie(name)
}

/// Drops every upstream `Set-Cookie` for one of the gateway's cookie names;
/// returns how many were dropped.
pub(crate) fn refuse_set_cookies(headers: &mut HeaderMap) -> usize {
    if !headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(sets_gateway_cookie)
    {
        return 0;
    }
    let all: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let refused = all.iter().filter(|v| sets_gateway_cookie(v)).count();
    headers.remove(header::SET_COOKIE);
    for v in all.into_iter().filter(|v| !sets_gateway_cookie(v)) {
        headers.append(header::SET_COOKIE, v);
    }
    refused
}

/// The host a request is for, as sealed cookies are bound to it: from the
/// authority (h2, absolute form) or `Host`, lowercase, without port or
/// trailing dot. Empty when the request names none (HTTP/1.0).
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> String {
    let from_header = || {
        let h = headers.get(header::HOST)?;
        http::uri::Authority::try_from(h.as_bytes()).ok()
    };
    let host = match uri.authority() {
        Some(a) => a.host().to_owned(),
        None => from_header()
            .map(|a| a.host().to_owned())
            .unwrap_or_default(),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
