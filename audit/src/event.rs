//! The audit event schema (version 1) and pseudonymisation of subjects.
//!
//! One log entry is one [`Event`] serialised as compact JSON, fields in the
//! fixed order of the struct, unknown fields rejected on reading. The schema
//! is documented in `docs/AUDIT.md`; any change that is not purely additive
//! bumps [`SCHEMA_VERSION`], and readers refuse versions they do not know.
//!
//! Personal data never enters the log in clear: the log cannot be erased
//! (GDPR Art. 17), so subjects (user IDs, client certificate subjects, IP
//! addresses, ...) are recorded as a [`Pseudonym`]: HMAC-SHA256 under a
//! secret pseudonymisation key that is kept apart from the log. Whoever
//! holds the key can compute the pseudonym of a known subject and search for
//! it; without the key, pseudonyms cannot be reversed by guessing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::tiles::MAX_ENTRY_LEN;

/// Initial buffer for an encoded event (typical events are 200–350 bytes).
const ENTRY_CAPACITY: usize = 384;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors about events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event could not be encoded or decoded.
    #[error("event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The encoded event is larger than a log entry may be.
    #[error("event is {0} bytes, more than the 65535 an entry may hold")]
    TooLarge(usize),
    /// The entry has a schema version this build does not know.
    #[error("unsupported event schema version {0} (this build reads version 1)")]
    Version(u32),
    /// The pseudonymisation key is too short.
    #[error("pseudonymisation key must be at least 32 bytes, got {0}")]
    ShortKey(usize),
}

/// The outcome of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action succeeded.
    Success,
    /// The action was refused by authentication or authorization.
    Denied,
    /// The action failed for another reason.
    Failure,
}

/// A pseudonymised subject: `p1:<key id>:<hex HMAC-SHA256>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pseudonym(String);

impl Pseudonym {
    /// The pseudonym as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One audit event, schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Schema version, always [`SCHEMA_VERSION`].
    pub v: u32,
    /// When the event happened: RFC 3339, UTC, milliseconds
    /// (`2026-11-26T04:24:00.123Z`). The gateway's clock, not a trusted
    /// time; checkpoints bound it only by their order.
    pub time: String,
    /// What happened, as a dotted name (`request`, `authn.login`,
    /// `authz.deny`, `policy.change`, `key.sign`, `config.reload`, ...).
    pub kind: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Who acted, pseudonymised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Pseudonym>,
    /// The tenant (municipality) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What was acted on: a route name, policy ID, key reference. Never a
    /// raw URI with query values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The gateway's request ID, to join with operational logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Further attributes. Values must not hold personal data in clear.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// A new event of `kind` with `outcome`, stamped with the current time.
    pub fn new(kind: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            v: SCHEMA_VERSION,
            time: rfc3339_now(),
            kind: kind.into(),
            outcome,
            subject: None,
            tenant: None,
            target: None,
            request_id: None,
            attrs: BTreeMap::new(),
        }
    }

    /// Sets the pseudonymised subject.
    pub fn subject(mut self, p: Pseudonym) -> Self {
        self.subject = Some(p);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.tenant = Some(t.into());
        self
    }

    /// Sets the target.
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }

    /// Sets the request ID.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Adds an attribute.
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.attrs.insert(key.into(), value.into());
        self
    }

    /// Encodes the event as a log entry (compact JSON, at most 65,535 bytes).
    pub fn to_entry(&self) -> Result<Vec<u8>, EventError> {
        // Sized for a typical event, so that encoding does not regrow the
        // buffer several times on the request path.
        let mut bytes = Vec::with_capacity(ENTRY_CAPACITY);
        serde_json::to_writer(&mut bytes, self)?;
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EventError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Decodes a log entry, refusing unknown schema versions and fields.
    pub fn from_entry(entry: &[u8]) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let Version { v } = serde_json::from_slice(entry)?;
        if v != SCHEMA_VERSION {
            return Err(EventError::Version(v));
        }
        Ok(serde_json::from_slice(entry)?)
    }
}

/// Computes pseudonyms with HMAC-SHA256 under a secret key.
pub struct Pseudonymiser {
    key: hmac::Key,
    key_id: String,
    // Kept only to zeroize on drop; ring's key holds its own copy.
    _raw: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Pseudonymiser {
    /// A pseudonymiser for `key` (at least 32 random bytes).
    pub fn new(key: &[u8]) -> Result<Self, EventError> {
        if key.len() < 32 {
            return Err(EventError::ShortKey(key.len()));
        }
        let hkey = hmac::Key::new(hmac::HMAC_SHA256, key);
        let tag = hmac::sign(&hkey, b"stadttor-audit pseudonym key id");
        let key_id = hex(&tag.as_ref()[..4]);
        Ok(Self {
            key: hkey,
            key_id,
            _raw: Zeroizing::new(key.to_vec()),
        })
    }

    /// Identifies the key (8 hex digits) without revealing it, so that
    /// pseudonyms made under different keys are never confused.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The pseudonym of `value` in the namespace `kind` (`user`, `ip`,
    /// `cert`, ...): `p1:<key id>:<hex HMAC-SHA256(key, kind || 0x00 || value)>`.
    pub fn pseudonym(&self, kind: &str, value: &str) -> Pseudonym {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(kind.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        let tag = ctx.sign();
        let mut p = String::with_capacity(4 + self.key_id.len() + 64);
        p.push_str("p1:");
        p.push_str(&self.key_id);
        p.push(':');
        p.push_str(&hex(tag.as_ref()));
        Pseudonym(p)
    }
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 0xf)]));
    }
    s
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    let (secs, millis) = now();
    rfc3339(secs, millis)
}

fn now() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_millis())
}

/// Formats Unix seconds + milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(secs: u64, millis: u32) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, secs, millis);
    out
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix seconds + milliseconds.
fn push_rfc3339(out: &mut String, secs: u64, millis: u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = crate::time::civil_from_days(days);
    // Written digit by digit: this runs once per audited request, and
    // `format!` with padding costs several times as much.
    let year = u64::try_from(y).unwrap_or(0);
    for (sep, value, width) in [
        (None, year, 4),
        (Some('-'), m as u64, 2),
        (Some('-'), d as u64, 2),
        (Some('T'), rem / 3600, 2),
        (Some(':'), rem / 60 % 60, 2),
        (Some(':'), rem % 60, 2),
        (Some('.'), u64::from(millis), 3),
    ] {
        if let Some(c) = sep {
            out.push(c);
        }
        for i in (0..width).rev() {
            let digit = (value / 10u64.pow(i)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
    }
    out.push('Z');
}

/// The value of an [`EntryBuilder`] attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrValue<'a> {
    /// A string.
    Str(&'a str),
    /// A non-negative integer.
    Uint(u64),
}

impl<'a> From<&'a str> for AttrValue<'a> {
    fn from(s: &'a str) -> Self {
        Self::Str(s)
    }
}

impl From<u64> for AttrValue<'_> {
    fn from(n: u64) -> Self {
        Self::Uint(n)
    }
}

impl From<usize> for AttrValue<'_> {
    fn from(n: usize) -> Self {
        Self::Uint(n as u64)
    }
}

/// Encodes an event straight into log-entry bytes, borrowing every field:
/// the request path's way to write the entry [`Event::to_entry`] would
/// write, without building an [`Event`] (a dozen small allocations: the
/// strings, the attribute map and its values) first. The bytes are
/// identical to `Event::to_entry` of the same event (tested), so readers
/// see no difference.
#[derive(Debug, Clone)]
pub struct EntryBuilder<'a> {
    time: Option<(u64, u32)>,
    kind: &'a str,
    outcome: Outcome,
    subject: Option<&'a str>,
    tenant: Option<&'a str>,
    target: Option<&'a str>,
    request_id: Option<&'a str>,
    attrs: Vec<(&'a str, AttrValue<'a>)>,
}

impl<'a> EntryBuilder<'a> {
    /// An event of `kind` with `outcome`, stamped with the current time
    /// when encoded.
    pub fn new(kind: &'a str, outcome: Outcome) -> Self {
        Self {
            time: None,
            kind,
            outcome,
            subject: None,
            tenant: None,
            target: None,
            request_id: None,
            attrs: Vec::with_capacity(12),
        }
    }

    /// Stamps the event with Unix seconds and milliseconds instead of now.
    pub fn at(mut self, secs: u64, millis: u32) -> Self {
        self.time = Some((secs, millis.min(999)));
        self
    }

    /// Sets the pseudonymised subject.
    pub fn subject(mut self, p: &'a Pseudonym) -> Self {
        self.subject = Some(p.as_str());
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, t: &'a str) -> Self {
        self.tenant = Some(t);
        self
    }

    /// Sets the target.
    pub fn target(mut self, t: &'a str) -> Self {
        self.target = Some(t);
        self
    }

    /// Sets the request ID.
    pub fn request_id(mut self, id: &'a str) -> Self {
        self.request_id = Some(id);
        self
    }

    /// Adds an attribute (a later value for the same key wins, as with
    /// [`Event::attr`]).
    pub fn attr(mut self, key: &'a str, value: impl Into<AttrValue<'a>>) -> Self {
        self.attrs.push((key, value.into()));
        self
    }

    /// The log entry: compact JSON in [`Event`]'s field order, attributes
    /// sorted by key, at most 65,535 bytes.
    pub fn to_entry(&self) -> Result<Vec<u8>, EventError> {
        let mut attrs = self.attrs.clone();
        // Stable: among equal keys the last added stays last, and is kept.
        attrs.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.extend_from_slice(b"{\"v\":");
        push_uint(&mut out, u64::from(SCHEMA_VERSION));
        out.extend_from_slice(b",\"time\":\"");
        let (secs, millis) = self.time.unwrap_or_else(now);
        push_time(&mut out, secs, millis);
        out.extend_from_slice(b"\",\"kind\":");
        push_json_str(&mut out, self.kind)?;
        out.extend_from_slice(b",\"outcome\":");
        serde_json::to_writer(&mut out, &self.outcome)?;
        for (name, value) in [
            ("subject", self.subject),
            ("tenant", self.tenant),
            ("target", self.target),
            ("request_id", self.request_id),
        ] {
            if let Some(v) = value {
                out.push(b',');
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                push_json_str(&mut out, v)?;
            }
        }
        let mut first = true;
        for (i, (key, value)) in attrs.iter().enumerate() {
            if attrs.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            out.extend_from_slice(if first { b",\"attrs\":{" } else { b"," });
            first = false;
            push_json_str(&mut out, key)?;
            out.push(b':');
            match value {
                AttrValue::Str(s) => push_json_str(&mut out, s)?,
                AttrValue::Uint(n) => push_uint(&mut out, *n),
            }
        }
        if !first {
            out.push(b'}');
        }
        out.push(b'}');
        if out.len() > MAX_ENTRY_LEN {
            return Err(EventError::TooLarge(out.len()));
        }
        Ok(out)
    }
}

impl EntryBuilder<'_> {
    /// The encoded length when no string needs escaping (the usual case),
    /// so that [`EntryBuilder::to_entry`] allocates once: the fixed
    /// fields, each string with its quotes, name and separators, and 20
    /// digits for each number.
    fn encoded_len_hint(&self) -> usize {
        const FIXED: usize = 96; // v, time, kind and outcome names, braces
        let fields: usize = [self.subject, self.tenant, self.target, self.request_id]
            .iter()
            .flatten()
            .map(|v| v.len() + 16)
            .sum();
        let attrs: usize = self
            .attrs
            .iter()
            .map(|(k, v)| {
                k.len()
                    + 4
                    + match v {
                        AttrValue::Str(s) => s.len() + 2,
                        AttrValue::Uint(_) => 20,
                    }
            })
            .sum();
        FIXED + self.kind.len() + fields + attrs
    }
}

/// Appends `s` as a JSON string: as is when nothing needs escaping (the
/// usual route names, methods and ids), else through serde_json.
fn push_json_str(out: &mut Vec<u8>, s: &str) -> Result<(), EventError> {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        Ok(serde_json::to_writer(out, s)?)
    }
}

/// Appends the RFC 3339 time; the date and time up to the second are
/// formatted once per second and thread.
fn push_time(out: &mut Vec<u8>, secs: u64, millis: u32) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let mut t = String::with_capacity(24);
            push_rfc3339(&mut t, secs, 0);
            t.truncate(19); // YYYY-MM-DDTHH:MM:SS
            *last = (secs, t);
        }
        out.extend_from_slice(last.1.as_bytes());
    });
    let m = millis.min(999);
    out.extend_from_slice(&[
        b'.',
        b'0' + (m / 100) as u8,
        b'0' + (m / 10 % 10) as u8,
        b'0' + (m % 10) as u8,
        b'Z',
    ]);
}

fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_666_440, 123), "2026-11-26T04:14:00.123Z");
        assert_eq!(rfc3339(253_402_300_799, 999), "9999-12-31T23:59:59.999Z");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // The per-second cache of push_time follows the seconds.
        for (secs, millis) in [(5, 1), (5, 999), (6, 0), (1_795_666_440, 123), (5, 42)] {
            let mut out = Vec::new();
            push_time(&mut out, secs, millis);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339(secs, millis));
        }
    }

    #[test]
    fn round_trip_and_strictness() {
        let p = Pseudonymiser::new(&[7; 32]).unwrap();
        let e = Event::new("authn.login", Outcome::Denied)
            .subject(p.pseudonym("user", "alice"))
            .tenant("musterstadt")
            .target("route:buergerportal")
            .attr("method", "oidc");
        let entry = e.to_entry().unwrap();
        assert_eq!(Event::from_entry(&entry).unwrap(), e);
        let text = String::from_utf8(entry).unwrap();
        assert!(text.starts_with("{\"v\":1,\"time\":"));
        assert!(!text.contains("alice"));
        assert!(Event::from_entry(br#"{"v":2,"time":"","kind":"x","outcome":"success"}"#).is_err());
        assert!(Event::from_entry(
            br#"{"v":1,"time":"","kind":"x","outcome":"success","extra":1}"#
        )
        .is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_and_namespaced() {
        let a = Pseudonymiser::new(&[1; 32]).unwrap();
        let b = Pseudonymiser::new(&[2; 32]).unwrap();
        assert_eq!(a.pseudonym("user", "x"), a.pseudonym("user", "x"));
        assert_ne!(a.pseudonym("user", "x"), b.pseudonym("user", "x"));
        assert_ne!(a.pseudonym("user", "x"), a.pseudonym("ip", "x"));
        assert!(a.pseudonym("user", "x").as_str().starts_with("p1:"));
        assert!(Pseudonymiser::new(&[0; 16]).is_err());
    }

    #[test]
    fn entry_builder_writes_what_event_writes() {
        let p = Pseudonymiser::new(&[7; 32]).unwrap();
        let pseudo = p.pseudonym("user", "alice");
        let odd = "quote\" backslash\\ nl\n tab\t ctl\u{1} ü €";
        let (secs, millis) = (1_795_666_440, 7);
        type Case<'a> = (EntryBuilder<'a>, Event);
        let mut cases: Vec<Case<'_>> = vec![
            (
                EntryBuilder::new("http.access", Outcome::Success),
                Event::new("http.access", Outcome::Success),
            ),
            (
                EntryBuilder::new("authz.decision", Outcome::Denied)
                    .subject(&pseudo)
                    .tenant("musterstadt")
                    .target("app")
                    .request_id("01JDXK3V8Q")
                    .attr("method", "GET")
                    .attr("listener", "public")
                    .attr("authz_line", 7usize)
                    .attr("policy_version", u64::MAX)
                    .attr("a", 0u64),
                Event::new("authz.decision", Outcome::Denied)
                    .subject(pseudo.clone())
                    .tenant("musterstadt")
                    .target("app")
                    .request_id("01JDXK3V8Q")
                    .attr("method", "GET")
                    .attr("listener", "public")
                    .attr("authz_line", 7)
                    .attr("policy_version", u64::MAX)
                    .attr("a", 0),
            ),
            (
                EntryBuilder::new(odd, Outcome::Failure)
                    .target(odd)
                    .attr(odd, odd)
                    .attr("dup", "first")
                    .attr("dup", "second")
                    .attr("z", "last"),
                Event::new(odd, Outcome::Failure)
                    .target(odd)
                    .attr(odd, odd)
                    .attr("dup", "first")
                    .attr("dup", "second")
                    .attr("z", "last"),
            ),
        ];
        for (b, mut e) in cases.drain(..) {
            e.time = rfc3339(secs, millis);
            let got = b.at(secs, millis).to_entry().unwrap();
            assert_eq!(
                String::from_utf8(got.clone()).unwrap(),
                String::from_utf8(e.to_entry().unwrap()).unwrap()
            );
            assert_eq!(Event::from_entry(&got).unwrap(), e);
        }
        let now = EntryBuilder::new("x", Outcome::Success).to_entry().unwrap();
        let e = Event::from_entry(&now).unwrap();
        assert_eq!(e.time.len(), 24);
        let big = "a".repeat(70_000);
        assert!(matches!(
            EntryBuilder::new("x", Outcome::Success)
                .attr("blob", big.as_str())
                .to_entry(),
            Err(EventError::TooLarge(_))
        ));
    }

    #[test]
    fn the_length_hint_covers_an_unescaped_entry() {
        let long = "x".repeat(300);
        let pseudo = Pseudonymiser::new(&[7; 32])
            .unwrap()
            .pseudonym("user", "alice");
        let b = EntryBuilder::new("http.access", Outcome::Success)
            .subject(&pseudo)
            .tenant("musterstadt")
            .target("session")
            .request_id("01JDXK3V8Q0000000000000001")
            .attr("method", "GET")
            .attr("client", long.as_str())
            .attr("authz_line", u64::MAX)
            .attr("policy_version", 7u64);
        let e = b.to_entry().unwrap();
        assert!(e.len() <= b.encoded_len_hint(), "{} > hint", e.len());
    }

    #[test]
    fn oversized_event_is_refused() {
        let e = Event::new("x", Outcome::Success).attr("blob", "a".repeat(70_000));
        assert!(matches!(e.to_entry(), Err(EventError::TooLarge(_))));
    }
}
