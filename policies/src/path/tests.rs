//! Unit tests of the canonical path; the corpus through the real gateway
//! and real upstreams is in `gateway/tests/e2e/path_confusion.rs`.

use super::*;

fn canon(raw: &str) -> Result<String, Refusal> {
    canonical_path(raw, true).map(|c| c.path.into_owned())
}

#[test]
fn canonical_paths_are_borrowed_unchanged() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/a/b.c",
        "/~x/-_./y",
        "/a:b@c!$&'()*+,=",
        "/%C3%A4",
    ] {
        let c = canonical_path(p, true).unwrap();
        assert!(!c.changed(), "{p}");
        assert_eq!(c.path, p);
    }
}

#[test]
fn dot_segments_are_removed_raw_and_encoded() {
    let cases = [
        ("/a/../b", "/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E%2e/b", "/b"),
        ("/a/.%2E/b", "/b"),
        ("/a/%2e/b", "/a/b"),
        (
            "/fachverfahren/meldewesen/../freigabe/7",
            "/fachverfahren/freigabe/7",
        ),
        ("/./", "/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("/..a/b", "/..a/b"),
        ("/a/.../b", "/a/.../b"),
    ];
    for (raw, want) in cases {
        assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn encoded_unreserved_characters_are_decoded_and_hex_uppercased() {
    assert_eq!(canon("/%73ecret/").as_deref(), Ok("/secret/"));
    assert_eq!(
        canon("/fachverfahren/meldewesen/%77artung/reindex").as_deref(),
        Ok("/fachverfahren/meldewesen/wartung/reindex")
    );
    assert_eq!(canon("/a%7eb%2D").as_deref(), Ok("/a~b-"));
    assert_eq!(canon("/a%c3%a4").as_deref(), Ok("/a%C3%A4"));
    assert_eq!(canon("/a%20b").as_deref(), Ok("/a%20b"));
}

#[test]
fn raw_characters_outside_pchar_are_encoded() {
    assert_eq!(canon("/a b").as_deref(), Ok("/a%20b"));
    assert_eq!(
        canon("/a\"<>{}|^`").as_deref(),
        Ok("/a%22%3C%3E%7B%7D%7C%5E%60")
    );
    assert_eq!(canon("/ä").as_deref(), Ok("/%C3%A4"));
}

#[test]
fn repeated_slashes_are_merged_or_kept() {
    assert_eq!(canon("//x//y").as_deref(), Ok("/x/y"));
    assert_eq!(canon("/a///b/").as_deref(), Ok("/a/b/"));
    assert_eq!(canon("//").as_deref(), Ok("/"));
    let kept = canonical_path("/a//b", false).unwrap();
    assert_eq!(kept.path, "/a//b");
    assert!(kept.empty_segments);
    assert_eq!(canonical_path("/a//../b", false).unwrap().path, "/a/b");
    assert!(canonical_path("/a//b", true).unwrap().empty_segments);
}

#[test]
fn ambiguous_targets_are_refused_with_their_reason() {
    let cases = [
        ("/a%2fb", Refusal::EncodedSlash),
        ("/a%2Fb", Refusal::EncodedSlash),
        ("/a%5cb", Refusal::EncodedSlash),
        ("/a\\b", Refusal::Backslash),
        ("/a%00b", Refusal::ControlCharacter),
        ("/a%0d%0ab", Refusal::ControlCharacter),
        ("/a%7f", Refusal::ControlCharacter),
        ("/a\tb", Refusal::ControlCharacter),
        ("/secret%3f.txt", Refusal::EncodedDelimiter),
        ("/secret%23x", Refusal::EncodedDelimiter),
        ("/secret%3bx/file", Refusal::EncodedDelimiter),
        ("/secret%3Bx/file", Refusal::EncodedDelimiter),
        // Found by the fuzz target: a raw `#` was encoded to `%23`, which
        // canonicalising again refused (not a fixed point).
        ("//a;xb/#.;/", Refusal::RawDelimiter),
        ("/a?b/c", Refusal::RawDelimiter),
        ("/secret%253bx/file", Refusal::DoubleEncoding),
        ("/a/%252e%252e/b", Refusal::DoubleEncoding),
        ("/a%252fb", Refusal::DoubleEncoding),
        ("/a/%25%32%65%25%32%65/b", Refusal::DoubleEncoding),
        ("/a%2", Refusal::BadPercentEncoding),
        ("/a%zz", Refusal::BadPercentEncoding),
        ("/a%", Refusal::BadPercentEncoding),
        ("/%c0%ae%c0%ae/secret", Refusal::NotUtf8),
        ("/%e0%80%ae", Refusal::NotUtf8),
        ("/%ff", Refusal::NotUtf8),
        ("/..", Refusal::AboveRoot),
        ("/a/../../b", Refusal::AboveRoot),
        ("/%2e%2e/etc", Refusal::AboveRoot),
        ("/a/..;x/b", Refusal::DotSegmentWithParameters),
        ("/a/.;x/b", Refusal::DotSegmentWithParameters),
        ("/a/;x/b", Refusal::DotSegmentWithParameters),
        ("*", Refusal::NotAPath),
        ("", Refusal::NotAPath),
        ("a/b", Refusal::NotAPath),
    ];
    for (raw, want) in cases {
        assert_eq!(canon(raw), Err(want), "{raw}");
    }
}

#[test]
fn an_encoded_percent_that_is_not_a_double_encoding_stays_encoded() {
    assert_eq!(canon("/100%25").as_deref(), Ok("/100%25"));
    assert_eq!(canon("/a%25zz").as_deref(), Ok("/a%25zz"));
    assert_eq!(
        canon("/a%2541"),
        Err(Refusal::DoubleEncoding),
        "a double-decoding service would see /aA"
    );
    assert_eq!(canon("/%2573ecret/file"), Err(Refusal::DoubleEncoding));
}

#[test]
fn parameters_are_kept_and_reported() {
    let c = canonical_path("/a;jsessionid=1/b", true).unwrap();
    assert!(c.parameters);
    assert_eq!(c.path, "/a;jsessionid=1/b");
    assert_eq!(decision_path(&c.path), "/a/b");
    assert_eq!(decision_path("/secret;x"), "/secret");
    assert_eq!(decision_path("/plain/path"), "/plain/path");
    assert_eq!(
        canonical_path("/a;x/../b", true).unwrap().path,
        "/b",
        "a segment with parameters is one segment for `..`"
    );
}

#[test]
fn canonicalisation_is_idempotent_on_a_sample() {
    let sample = [
        "/a/../b",
        "//x//y/",
        "/%73ecret/",
        "/a b/%c3%a4",
        "/a;p=1/b",
        "/x/./y/.",
        "/A%2d%7E",
    ];
    for raw in sample {
        let once = canon(raw).unwrap();
        assert_eq!(canon(&once).as_deref(), Ok(once.as_str()), "{raw}");
        assert!(!canonical_path(&once, true).unwrap().changed(), "{raw}");
    }
}
