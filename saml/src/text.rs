//! Small text helpers: XML escaping, IDs, xs:dateTime, and reading a
//! verified element with roxmltree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Escapes text for an XML attribute value or element content.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// A fresh message ID: `_` and 40 hex digits (160 random bits; an xs:ID
/// must not start with a digit).
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 20];
    // SystemRandom only fails if the OS has no randomness at all.
    if SystemRandom::new().fill(&mut b).is_err() {
        b = [0; 20];
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_be_bytes();
        b[..16].copy_from_slice(&t);
    }
    let mut s = String::from("_");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// `t` as xs:dateTime in UTC, seconds precision (`2026-12-07T21:00:00Z`).
pub(crate) fn datetime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let dt = OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    dt.format(&Rfc3339).unwrap_or_default()
}

/// Parses an xs:dateTime (RFC 3339 with `Z` or an offset).
pub(crate) fn parse_datetime(s: &str) -> Option<SystemTime> {
    let dt = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    let secs = dt.unix_timestamp();
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The element children of `n` named `local` in namespace `ns`.
pub(crate) fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    n.children().filter(move |c| {
        c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == local
    })
}

/// The one child `local` of `n`, if there is exactly one.
pub(crate) fn only_child<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> Option<roxmltree::Node<'a, 'i>> {
    let mut it = children(n, ns, local);
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

/// All text below `n`, concatenated (comments were refused at parsing).
pub(crate) fn text(n: roxmltree::Node<'_, '_>) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect()
}

/// Whether `n` is the element `local` in `ns`.
pub(crate) fn is(n: roxmltree::Node<'_, '_>, ns: &str, local: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == local
}

/// Parses bytes the shim returned (UTF-8 by canonicalisation) with
/// roxmltree, which refuses DTDs.
pub(crate) fn parse(bytes: &[u8]) -> Result<roxmltree::Document<'_>, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    roxmltree::Document::parse(s).map_err(|e| e.to_string())
}
