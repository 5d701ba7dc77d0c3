//! Unit tests of the URI rewrite and the canonical host.

use super::*;

#[test]
fn the_uri_gets_the_canonical_path_and_keeps_its_query() {
    let mut uri: http::Uri = "/a/../b%7e?x=%2e%2e/..&y".parse().unwrap();
    let facts = canonicalise_uri(&mut uri).unwrap();
    assert!(facts.changed);
    assert_eq!(uri.path(), "/b~");
    assert_eq!(uri.query(), Some("x=%2e%2e/..&y"));
    let mut abs: http::Uri = "https://Example.org//x/./y".parse().unwrap();
    let facts = canonicalise_uri(&mut abs).unwrap();
    assert!(facts.changed && facts.empty_segments);
    assert_eq!(abs.to_string(), "https://Example.org/x/y");
    let mut plain: http::Uri = "/x/y?q".parse().unwrap();
    assert_eq!(
        canonicalise_uri(&mut plain).unwrap(),
        TargetFacts::default()
    );
    let mut bad: http::Uri = "/a%2fb".parse().unwrap();
    assert_eq!(canonicalise_uri(&mut bad), Err(Refusal::EncodedSlash));
}

#[test]
fn hosts_are_lowercased_without_trailing_dot() {
    assert_eq!(
        canonical_host("Example.ORG.").as_deref(),
        Some("example.org")
    );
    assert_eq!(
        canonical_host("a_b.example").as_deref(),
        Some("a_b.example")
    );
    assert_eq!(canonical_host("[::1]").as_deref(), Some("[::1]"));
    assert_eq!(canonical_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
    for bad in [
        "",
        ".",
        "a..b",
        "example.org..",
        "a%2eb",
        "a b",
        "[zz]",
        "a/b",
    ] {
        assert_eq!(canonical_host(bad), None, "{bad:?}");
    }
}
