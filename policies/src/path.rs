//! The canonical path: the one form of a request path that decisions are
//! made on, and the only one the gateway forwards.
//!
//! [`canonical_path`] applies RFC 3986 §6.2.2 normalisation: percent-encoded
//! unreserved characters are decoded, the remaining hex is uppercased,
//! characters outside `pchar` are encoded, dot segments are removed and
//! (optionally) `//` is merged. A service behind the gateway that resolves
//! `..`, `%2e` or `//` on its own therefore finds nothing left to resolve:
//! what the policy decided about is what the service serves.
//!
//! What cannot be made unambiguous is refused ([`Refusal`]): encoded `/` or
//! `\` (`%2F`, `%5C`), a raw `\`, control characters (raw or encoded,
//! `%00` included), encoded `?`, `#` or `;`, any double encoding
//! (`%25` + two hex digits: `%252e`, `%2573`), percent-encodings that are not UTF-8 (overlong
//! forms such as `%C0%AE`), malformed `%`, dot segments that climb above
//! the root, and dot or empty segments hiding behind `;` parameters
//! (`..;x`). `;` itself is kept; whether a route accepts path parameters is
//! the gateway's per-route choice, and decisions then use
//! [`decision_path`].
//!
//! The policy engine denies any path that is not canonical
//! ([`crate::Reason::NonCanonicalPath`]), so a caller that forgot this step
//! fails closed; `explain` and the tests table canonicalise first, as the
//! gateway does. Pure string work: no HTTP types.

use std::borrow::Cow;

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not an origin-form path (`*`, empty, or not starting with `/`).
    #[error("request target is not a path")]
    NotAPath,
    /// `%2F` or `%5C`: a slash the service might treat as a separator.
    #[error("encoded slash or backslash in the path")]
    EncodedSlash,
    /// A raw `\` (some services treat it as `/`).
    #[error("backslash in the path")]
    Backslash,
    /// A control character, raw or percent-encoded (`%00` included).
    #[error("control character in the path")]
    ControlCharacter,
    /// `%3F`, `%23` or `%3B`: a query, fragment or path-parameter
    /// delimiter hidden in the path. A service that decodes before it
    /// splits would see a delimiter the gateway did not (`/secret%3Bx/file`
    /// is `/secret/file` to a decode-then-strip-parameters service).
    #[error("encoded ?, # or ; in the path")]
    EncodedDelimiter,
    /// `%25` followed by two hex digits: a double encoding (`%252e`).
    #[error("double-encoded character in the path")]
    DoubleEncoding,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadPercentEncoding,
    /// Percent-encoded bytes that are not UTF-8 (overlong forms included).
    #[error("percent-encoded bytes in the path are not UTF-8")]
    NotUtf8,
    /// More `..` segments than there are segments to remove.
    #[error("dot segments climb above the root")]
    AboveRoot,
    /// A dot segment or empty segment with `;` parameters (`..;x`).
    #[error("dot segment with path parameters")]
    DotSegmentWithParameters,
    /// `;` parameters on a route that does not allow them.
    #[error("path parameters (;) are not allowed on this route")]
    Parameters,
    /// `//` on a route that refuses empty segments.
    #[error("empty path segment (//) on a route that refuses them")]
    EmptySegment,
}

impl Refusal {
    /// The fixed reason, for the 400 response and the audit event.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAPath => "request target is not a path",
            Self::EncodedSlash => "encoded slash or backslash in the path",
            Self::Backslash => "backslash in the path",
            Self::ControlCharacter => "control character in the path",
            Self::EncodedDelimiter => "encoded ?, # or ; in the path",
            Self::DoubleEncoding => "double-encoded character in the path",
            Self::BadPercentEncoding => "malformed percent-encoding in the path",
            Self::NotUtf8 => "percent-encoded bytes in the path are not UTF-8",
            Self::AboveRoot => "dot segments climb above the root",
            Self::DotSegmentWithParameters => "dot segment with path parameters",
            Self::Parameters => "path parameters are not allowed on this route",
            Self::EmptySegment => "empty path segment on a route that refuses them",
        }
    }

    /// A short machine name for metrics and audit attributes.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotAPath => "not_a_path",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::ControlCharacter => "control_character",
            Self::EncodedDelimiter => "encoded_delimiter",
            Self::DoubleEncoding => "double_encoding",
            Self::BadPercentEncoding => "bad_percent_encoding",
            Self::NotUtf8 => "not_utf8",
            Self::AboveRoot => "above_root",
            Self::DotSegmentWithParameters => "dot_segment_with_parameters",
            Self::Parameters => "parameters",
            Self::EmptySegment => "empty_segment",
        }
    }
}

/// A canonical path and what canonicalisation found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// The canonical path (borrowed when the input already was canonical).
    pub path: Cow<'a, str>,
    /// The input had empty segments (`//`), merged away or kept.
    pub empty_segments: bool,
    /// The path contains `;` (path parameters).
    pub parameters: bool,
}

impl CanonicalPath<'_> {
    /// Whether the input differed from the canonical form.
    pub fn changed(&self) -> bool {
        matches!(self.path, Cow::Owned(_))
    }
}

/// `unreserved` of RFC 3986 §2.3: decoded when percent-encoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes kept as they are in a canonical segment: `pchar` minus `%`
/// (RFC 3986 §3.3); `;` counts, it is judged separately.
fn is_plain(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path` is in the form decisions are made on: canonical, with
/// no `;` parameters. The policy engine denies any other path.
pub fn is_decision_form(path: &str) -> bool {
    already_canonical(path)
        || matches!(canonical_path(path, true), Ok(c) if !c.changed() && !c.parameters)
}

/// The form a decision is made on for a path as a client might send it:
/// canonical, `//` merged, `;` parameters removed. `explain` and the tests
/// table use it; the gateway additionally refuses `;` on routes that do
/// not accept parameters.
pub fn decision_form(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    let c = canonical_path(raw, true)?;
    Ok(match c.path {
        Cow::Borrowed(p) => decision_path(p),
        Cow::Owned(p) => Cow::Owned(decision_path(&p).into_owned()),
    })
}

/// Whether a path is canonical as it stands: only plain bytes, no empty
/// and no dot segments. Most requests pass this and cost no allocation.
fn already_canonical(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut seg_start = 1;
    for i in 1..=b.len() {
        if i == b.len() || b[i] == b'/' {
            let seg = &b[seg_start..i];
            let last = i == b.len();
            if (seg.is_empty() && !last) || seg == b"." || seg == b".." {
                return false;
            }
            seg_start = i + 1;
        } else if !is_plain(b[i]) || b[i] == b';' {
            return false;
        }
    }
    true
}

/// Canonicalises an origin-form path (see the module doc). With
/// `merge_slashes`, empty segments are merged; without, they are kept (the
/// caller decides whether to accept them).
pub fn canonical_path(raw: &str, merge_slashes: bool) -> Result<CanonicalPath<'_>, Refusal> {
    if already_canonical(raw) {
        return Ok(CanonicalPath {
            path: Cow::Borrowed(raw),
            empty_segments: false,
            parameters: false,
        });
    }
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(Refusal::NotAPath);
    }
    // Output segments as byte ranges into `out`, so `..` can pop them.
    let mut out = String::with_capacity(raw.len());
    let mut starts: Vec<usize> = Vec::with_capacity(8);
    let mut seg = String::with_capacity(32);
    let (mut empty_segments, mut parameters) = (false, false);
    let segments: Vec<&str> = raw[1..].split('/').collect();
    let count = segments.len();
    for (i, raw_seg) in segments.into_iter().enumerate() {
        let last = i + 1 == count;
        seg.clear();
        canonical_segment(raw_seg, &mut seg)?;
        let name = match seg.find(';') {
            Some(p) => {
                parameters = true;
                let name = &seg[..p];
                if name.is_empty() || name == "." || name == ".." {
                    return Err(Refusal::DotSegmentWithParameters);
                }
                name
            }
            None => seg.as_str(),
        };
        match name {
            "" if last => out.push('/'),
            "" => {
                empty_segments = true;
                if !merge_slashes {
                    starts.push(out.len());
                    out.push('/');
                }
            }
            "." => {
                if last {
                    out.push('/');
                }
            }
            ".." => {
                let start = starts.pop().ok_or(Refusal::AboveRoot)?;
                out.truncate(start);
                if last {
                    out.push('/');
                }
            }
            _ => {
                starts.push(out.len());
                out.push('/');
                out.push_str(&seg);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    if out == raw {
        return Ok(CanonicalPath {
            path: Cow::Borrowed(raw),
            empty_segments,
            parameters,
        });
    }
    Ok(CanonicalPath {
        path: Cow::Owned(out),
        empty_segments,
        parameters,
    })
}

/// Writes one segment in canonical encoding to `out`.
fn canonical_segment(raw: &str, out: &mut String) -> Result<(), Refusal> {
    let b = raw.as_bytes();
    // The segment as the service would decode it, to check UTF-8.
    let mut decoded: Vec<u8> = Vec::new();
    let mut any_encoded_high = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let v = percent_at(b, i)?;
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else if v == b'/' || v == b'\\' {
                    return Err(Refusal::EncodedSlash);
                } else if v < 0x20 || v == 0x7f {
                    return Err(Refusal::ControlCharacter);
                } else if matches!(v, b'?' | b'#' | b';') {
                    return Err(Refusal::EncodedDelimiter);
                } else {
                    push_encoded(out, v);
                }
                any_encoded_high |= v >= 0x80;
                decoded.push(v);
                i += 3;
            }
            b'\\' => return Err(Refusal::Backslash),
            c if c < 0x20 || c == 0x7f => return Err(Refusal::ControlCharacter),
            c if is_plain(c) => {
                out.push(char::from(c));
                decoded.push(c);
                i += 1;
            }
            c => {
                // Space, `"`, `<`, `>`, `{`, `}`, `|`, `^`, `` ` `` and raw
                // UTF-8 bytes: encoded, as RFC 3986 requires.
                push_encoded(out, c);
                decoded.push(c);
                i += 1;
            }
        }
    }
    if any_encoded_high && std::str::from_utf8(&decoded).is_err() {
        return Err(Refusal::NotUtf8);
    }
    // Judged on the canonical output, so `%25%32%65` is caught as well as
    // `%252e`, and canonicalising twice gives the same answer.
    let o = out.as_bytes();
    let doubled = (0..o.len().saturating_sub(4))
        .any(|j| o[j..].starts_with(b"%25") && double_encoded(o, j + 3));
    if doubled {
        return Err(Refusal::DoubleEncoding);
    }
    Ok(())
}

fn percent_at(b: &[u8], i: usize) -> Result<u8, Refusal> {
    match (b.get(i), b.get(i + 1), b.get(i + 2)) {
        (Some(b'%'), Some(&h), Some(&l)) => match (hex_value(h), hex_value(l)) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(Refusal::BadPercentEncoding),
        },
        _ => Err(Refusal::BadPercentEncoding),
    }
}

/// Whether `b[i..i + 2]` are two hex digits, so that `%25` before them is
/// a double encoding (`%252e`, `%2573`): a service that decodes twice would
/// see another character than the one decided on, so every such form is
/// refused, not only dots and slashes.
fn double_encoded(b: &[u8], i: usize) -> bool {
    matches!(
        (
            b.get(i).copied().and_then(hex_value),
            b.get(i + 1).copied().and_then(hex_value)
        ),
        (Some(_), Some(_))
    )
}

fn push_encoded(out: &mut String, v: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(v >> 4)]));
    out.push(char::from(HEX[usize::from(v & 0xf)]));
}

/// The path decisions are made on for a route that accepts `;` path
/// parameters: each segment without its parameters, the way a servlet
/// container resolves it (`/a;jsessionid=1/b` → `/a/b`). For a path without
/// `;` it is the path itself.
pub fn decision_path(canonical: &str) -> Cow<'_, str> {
    if !canonical.contains(';') {
        return Cow::Borrowed(canonical);
    }
    let mut out = String::with_capacity(canonical.len());
    for (i, seg) in canonical.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split_once(';').map_or(seg, |(name, _)| name));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
