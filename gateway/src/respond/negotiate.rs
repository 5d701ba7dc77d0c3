//! Who is asking, and in which form and language the gateway answers.
//!
//! A browser sends `Accept: text/html,…` on every navigation; API clients
//! send `application/json` or `application/problem+json`, or `*/*`. The
//! gateway's own answers come in three forms ([`Format`]): an HTML page
//! for people, RFC 9457 problem details for programs, plain text for
//! clients that accept neither. The form is picked by the `Accept`
//! quality values (RFC 9110 §12.5.1); where they leave a tie (no `Accept`,
//! `*/*`), the route decides: an API route ([`is_api`]) gets problem
//! details, every other route (and no route) the page. A client that
//! accepts none of the three gets plain text.
//!
//! The language ([`Lang`]) is German unless `Accept-Language` names
//! English before German; pages carry both languages either way.

use http::{header, HeaderMap, HeaderValue};

use crate::config::RouteAuth;
use crate::identity::AuthMethod;

/// Page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Deutsch (default).
    De,
    /// English.
    En,
}

impl Lang {
    /// From the first language in `Accept-Language` that we have.
    pub fn from_headers(h: &HeaderMap) -> Self {
        Self::from_value(h.get(header::ACCEPT_LANGUAGE))
    }

    /// From an `Accept-Language` value: the first of German or English it
    /// names, German if neither.
    pub fn from_value(v: Option<&HeaderValue>) -> Self {
        let Some(v) = v.and_then(|v| v.to_str().ok()) else {
            return Self::De;
        };
        for part in v.split(',') {
            let tag = part.split(';').next().unwrap_or("").trim();
            let tag = tag.get(..2).unwrap_or("");
            if tag.eq_ignore_ascii_case("de") {
                return Self::De;
            }
            if tag.eq_ignore_ascii_case("en") {
                return Self::En;
            }
        }
        Self::De
    }

    /// The BCP 47 tag.
    pub fn code(self) -> &'static str {
        match self {
            Self::De => "de",
            Self::En => "en",
        }
    }

    /// The other language (the alternative on a page).
    pub fn other(self) -> Self {
        match self {
            Self::De => Self::En,
            Self::En => Self::De,
        }
    }
}

/// The form of a gateway answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/html`: a page for people.
    Html,
    /// `application/problem+json` (RFC 9457): for programs.
    Problem,
    /// `text/plain`: for clients that accept nothing else.
    Plain,
}

/// How to answer one client: form and language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    /// The form.
    pub format: Format,
    /// The first language.
    pub lang: Lang,
}

impl Audience {
    /// For a request with these headers, on an API route or not.
    pub fn of(headers: &HeaderMap, api: bool) -> Self {
        Self::from_values(
            headers.get(header::ACCEPT),
            headers.get(header::ACCEPT_LANGUAGE),
            api,
        )
    }

    /// From the `Accept` and `Accept-Language` values.
    pub fn from_values(
        accept: Option<&HeaderValue>,
        accept_language: Option<&HeaderValue>,
        api: bool,
    ) -> Self {
        Self {
            format: format(accept, api),
            lang: Lang::from_value(accept_language),
        }
    }
}

/// Whether a route is an API: marked `api`, or reachable only with bearer
/// tokens or client certificates (no login a browser could do). Public
/// routes and login routes are not.
pub fn is_api(auth: &RouteAuth) -> bool {
    auth.api || (!auth.methods.is_empty() && !auth.methods.contains(&AuthMethod::Session))
}

/// The form for `accept` (see the module doc).
fn format(accept: Option<&HeaderValue>, api: bool) -> Format {
    let order = if api {
        [Format::Problem, Format::Html, Format::Plain]
    } else {
        [Format::Html, Format::Problem, Format::Plain]
    };
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return order[0];
    };
    let ranges: Vec<Range<'_>> = accept.split(',').filter_map(Range::parse).collect();
    if ranges.is_empty() {
        return order[0];
    }
    let mut best = (Format::Plain, 0u16);
    for f in order {
        let q = quality(&ranges, f);
        if q > best.1 {
            best = (f, q);
        }
    }
    best.0
}

/// One media range of `Accept`, its quality in thousandths.
#[derive(Debug)]
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: u16,
}

impl<'a> Range<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let mut parts = s.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let mut q = 1000;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = qvalue(v.trim())?;
                }
            }
        }
        Some(Self {
            kind: kind.trim(),
            subtype: subtype.trim(),
            q,
        })
    }

    /// How specifically this range matches `kind/subtype`: 3 exact, 2
    /// `kind/*`, 1 `*/*`, 0 not at all.
    fn specificity(&self, kind: &str, subtype: &str) -> u8 {
        match (self.kind, self.subtype) {
            ("*", "*") => 1,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 2,
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => 3,
            _ => 0,
        }
    }
}

/// An RFC 9110 qvalue in thousandths (`0`, `0.5`, `1.000`).
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The quality the client gives to `f`: that of the most specific range
/// matching one of its media types, the best over its types.
fn quality(ranges: &[Range<'_>], f: Format) -> u16 {
    let types: &[(&str, &str)] = match f {
        Format::Html => &[("text", "html")],
        Format::Problem => &[("application", "problem+json"), ("application", "json")],
        Format::Plain => &[("text", "plain")],
    };
    types
        .iter()
        .map(|(kind, subtype)| {
            ranges
                .iter()
                .map(|r| (r.specificity(kind, subtype), r.q))
                .filter(|(s, _)| *s > 0)
                .max_by_key(|(s, _)| *s)
                .map_or(0, |(_, q)| q)
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(accept: &str, api: bool) -> Format {
        format(Some(&HeaderValue::from_str(accept).unwrap()), api)
    }

    #[test]
    fn browsers_get_pages_and_programs_problem_details() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(fmt(firefox, false), Format::Html);
        assert_eq!(
            fmt(firefox, true),
            Format::Html,
            "a browser on an API route"
        );
        assert_eq!(fmt("application/json", false), Format::Problem);
        assert_eq!(fmt("application/problem+json", false), Format::Problem);
        assert_eq!(
            fmt("application/json, text/html;q=0.5", false),
            Format::Problem
        );
        assert_eq!(
            fmt("text/html;q=0.4, application/*;q=0.5", false),
            Format::Problem
        );
    }

    #[test]
    fn a_tie_is_the_routes_to_decide() {
        assert_eq!(format(None, false), Format::Html);
        assert_eq!(format(None, true), Format::Problem);
        assert_eq!(fmt("*/*", false), Format::Html);
        assert_eq!(fmt("*/*", true), Format::Problem);
        assert_eq!(fmt("", true), Format::Problem);
        assert_eq!(fmt("garbage", false), Format::Html);
    }

    #[test]
    fn plain_text_only_when_nothing_else_is_acceptable() {
        assert_eq!(fmt("text/plain", false), Format::Plain);
        assert_eq!(fmt("text/plain", true), Format::Plain);
        assert_eq!(fmt("image/png", false), Format::Plain);
        assert_eq!(fmt("text/html;q=0, */*;q=0", false), Format::Plain);
        assert_eq!(fmt("text/*", true), Format::Html);
        assert_eq!(fmt("text/html;q=0, text/plain;q=0.1", false), Format::Plain);
        // The most specific range wins: html is refused although */* is not.
        assert_eq!(fmt("*/*;q=0.5, text/html;q=0", false), Format::Problem);
    }

    #[test]
    fn bad_quality_values_drop_the_range() {
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue("0.1234"), None);
        assert_eq!(qvalue("-1"), None);
        assert_eq!(
            fmt("application/json;q=2, text/html;q=0.1", false),
            Format::Html
        );
    }

    #[test]
    fn language_from_accept_language() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(Lang::from_value(None), Lang::De);
        assert_eq!(
            Lang::from_value(Some(&v("en-GB,en;q=0.9,de;q=0.5"))),
            Lang::En
        );
        assert_eq!(Lang::from_value(Some(&v("fr, DE-at"))), Lang::De);
        assert_eq!(Lang::from_value(Some(&v("fr, e"))), Lang::De);
        assert_eq!(Lang::En.other(), Lang::De);
    }

    #[test]
    fn api_routes() {
        let mut a = RouteAuth::default();
        assert!(!is_api(&a), "a public route");
        a.methods = vec![AuthMethod::Session, AuthMethod::Bearer];
        assert!(!is_api(&a), "a login route");
        a.api = true;
        assert!(is_api(&a));
        a.api = false;
        a.methods = vec![AuthMethod::ClientCert];
        assert!(is_api(&a), "client certificates only");
        a.methods = vec![AuthMethod::Bearer];
        assert!(is_api(&a), "bearer only");
    }
}
