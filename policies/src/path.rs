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
    /// A raw `?` or `#` inside what should be the path: a target that was
    /// split wrongly (an HTTP parser never hands one over). Encoding it
    /// would produce the `%3F`/`%23` that [`Refusal::EncodedDelimiter`]
    /// refuses, so it is refused at once.
    #[error("? or # in the path")]
    RawDelimiter,
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
            Self::RawDelimiter => "? or # in the path",
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
            Self::RawDelimiter => "raw_delimiter",
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
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
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
            );
        b += 1;
    }
    t
};

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

/// Whether a path is canonical as it stands: only plain bytes, no `;`, no
/// empty and no dot segments. Most requests pass this and cost no
/// allocation: one table lookup per byte, segments judged at each `/`.
fn already_canonical(raw: &str) -> bool {
    let b = raw.as_bytes();
    let Some((&b'/', rest)) = b.split_first() else {
        return false;
    };
    let mut seg_start = 0;
    for (i, &c) in rest.iter().enumerate() {
        match FAST[usize::from(c)] {
            FAST_PLAIN => {}
            FAST_SLASH => {
                if !plain_segment(&rest[seg_start..i]) {
                    return false;
                }
                seg_start = i + 1;
            }
            _ => return false,
        }
    }
    // The last segment may be empty (a trailing slash).
    let last = &rest[seg_start..];
    last.is_empty() || plain_segment(last)
}

const FAST_PLAIN: u8 = 0;
const FAST_SLASH: u8 = 1;
const FAST_OTHER: u8 = 2;

/// The fast path's byte classes: plain (and not `;`), `/`, anything else.
const FAST: [u8; 256] = {
    let mut t = [FAST_OTHER; 256];
    let mut b = 0;
    while b < 256 {
        if PLAIN[b] && b != b';' as usize {
            t[b] = FAST_PLAIN;
        }
        b += 1;
    }
    t[b'/' as usize] = FAST_SLASH;
    t
};

/// A segment between two slashes that is neither empty nor a dot segment.
fn plain_segment(seg: &[u8]) -> bool {
    !matches!(seg, b"" | b"." | b"..")
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
    // Segments are written straight into `out` (ASCII only); `starts`
    // remembers where each kept one begins, so `..` can remove it again.
    let mut out: Vec<u8> = Vec::with_capacity(raw.len() + 8);
    let mut starts: Vec<usize> = Vec::with_capacity(16);
    let (mut empty_segments, mut parameters) = (false, false);
    let mut at = 1;
    loop {
        let start = out.len();
        out.push(b'/');
        let seg = canonical_segment(&b[at..], &mut out)?;
        at += seg.consumed + 1;
        let last = at > b.len();
        let name = match seg.parameters {
            Some(p) => {
                parameters = true;
                let name = &out[start + 1..p];
                if matches!(name, b"" | b"." | b"..") {
                    return Err(Refusal::DotSegmentWithParameters);
                }
                name
            }
            None => &out[start + 1..],
        };
        match name {
            b"" if last => {}
            b"" => {
                empty_segments = true;
                if merge_slashes {
                    out.truncate(start);
                } else {
                    starts.push(start);
                }
            }
            b"." => out.truncate(start + usize::from(last)),
            b".." => {
                let above = starts.pop().ok_or(Refusal::AboveRoot)?;
                out.truncate(if last { above + 1 } else { above });
            }
            _ => starts.push(start),
        }
        if last {
            break;
        }
    }
    // Only ASCII was written, so this cannot fail.
    let mut out = String::from_utf8(out).map_err(|_| Refusal::NotUtf8)?;
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

/// What [`canonical_segment`] read and found.
struct Segment {
    /// Input bytes of the segment (up to, not including, the next `/`).
    consumed: usize,
    /// Where the first `;` went in the output, if there is one.
    parameters: Option<usize>,
}

/// Appends the segment at the start of `b` (up to the next `/`) in
/// canonical encoding to `out`.
fn canonical_segment(b: &[u8], out: &mut Vec<u8>) -> Result<Segment, Refusal> {
    let start = out.len();
    let (mut encoded_high, mut encoded_percent) = (false, false);
    let mut parameters = None;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match FAST[usize::from(c)] {
            FAST_PLAIN => {
                out.push(c);
                i += 1;
                continue;
            }
            FAST_SLASH => break,
            _ => {}
        }
        match c {
            b';' => {
                parameters.get_or_insert(out.len());
                out.push(c);
                i += 1;
            }
            b'%' => {
                let v = percent_at(b, i)?;
                if is_unreserved(v) {
                    out.push(v);
                } else if v == b'/' || v == b'\\' {
                    return Err(Refusal::EncodedSlash);
                } else if v < 0x20 || v == 0x7f {
                    return Err(Refusal::ControlCharacter);
                } else if matches!(v, b'?' | b'#' | b';') {
                    return Err(Refusal::EncodedDelimiter);
                } else {
                    push_encoded(out, v);
                }
                encoded_high |= v >= 0x80;
                encoded_percent |= v == b'%';
                i += 3;
            }
            b'\\' => return Err(Refusal::Backslash),
            b'?' | b'#' => return Err(Refusal::RawDelimiter),
            c if c < 0x20 || c == 0x7f => return Err(Refusal::ControlCharacter),
            c => {
                // Space, `"`, `<`, `>`, `{`, `}`, `|`, `^`, `` ` `` and raw
                // UTF-8 bytes: encoded, as RFC 3986 requires.
                push_encoded(out, c);
                i += 1;
            }
        }
    }
    // The segment as the service would decode it must be UTF-8 (overlong
    // forms are not); checked only when something high was encoded.
    if encoded_high && std::str::from_utf8(&decode(&b[..i])).is_err() {
        return Err(Refusal::NotUtf8);
    }
    // Judged on the canonical output, so `%25%32%65` is caught as well as
    // `%252e`, and canonicalising twice gives the same answer.
    if encoded_percent {
        let o = &out[start..];
        let doubled = (0..o.len().saturating_sub(4))
            .any(|j| o[j..].starts_with(b"%25") && double_encoded(o, j + 3));
        if doubled {
            return Err(Refusal::DoubleEncoding);
        }
    }
    Ok(Segment {
        consumed: i,
        parameters,
    })
}

/// The bytes of an (already validated) segment with every `%XX` decoded.
fn decode(b: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match percent_at(b, i) {
            Ok(v) => {
                d.push(v);
                i += 3;
            }
            Err(_) => {
                d.push(b[i]);
                i += 1;
            }
        }
    }
    d
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

fn push_encoded(out: &mut Vec<u8>, v: u8) {
    out.extend_from_slice(&[b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 0xf)]]);
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
