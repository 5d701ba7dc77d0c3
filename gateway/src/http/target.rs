//! The canonical request target: the request's URI rewritten once, before
//! anything looks at it, so that routing, policy, signing, audit and the
//! upstream all see the same path (the rules are in
//! [`stadttor_policies::path`]), and the canonical host.
//!
//! The query string is passed through unchanged and is never used for a
//! decision. Hosts are canonicalised in [`canonical_host`].

use std::borrow::Cow;

pub(crate) use stadttor_policies::path::{canonical_path, decision_path, Refusal};

/// What canonicalising a request's target found, for the route's checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TargetFacts {
    /// The client's path was not canonical (it was rewritten).
    pub(crate) changed: bool,
    /// The client's path had empty segments (`//`), now merged.
    pub(crate) empty_segments: bool,
    /// The path has `;` parameters.
    pub(crate) parameters: bool,
}

/// Replaces the path of `uri` by its canonical form; scheme, authority and
/// query stay byte for byte. Nothing after this sees the client's path.
pub(crate) fn canonicalise_uri(uri: &mut http::Uri) -> Result<TargetFacts, Refusal> {
    let c = canonical_path(uri.path(), true)?;
    let facts = TargetFacts {
        changed: c.changed(),
        empty_segments: c.empty_segments,
        parameters: c.parameters,
    };
    if let Cow::Owned(path) = c.path {
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = std::mem::take(uri).into_parts();
        // A canonical path holds only pchar, `/` and `%XX`, and the query
        // was accepted by the same parser before: this cannot fail.
        parts.path_and_query =
            Some(http::uri::PathAndQuery::try_from(pq).map_err(|_| Refusal::NotAPath)?);
        *uri = http::Uri::from_parts(parts).map_err(|_| Refusal::NotAPath)?;
    }
    Ok(facts)
}

/// A canonical host name: ASCII lowercase, one trailing dot removed.
/// Refuses empty labels, and characters outside letters, digits, `-`,
/// `_` and `.` (IP literals in brackets are kept as they are, lowercased).
pub(crate) fn canonical_host(host: &str) -> Option<String> {
    if host.starts_with('[') {
        let inner = host.strip_prefix('[')?.strip_suffix(']')?;
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(host.to_ascii_lowercase());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
