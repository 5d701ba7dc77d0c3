//! Unit tests of the stages that take plain data or request heads.

use http::{Method, Request, Uri, Version};
use stadttor_audit::event::Outcome;

use super::stages::{
    audited, check_framing, decision_path, event_kind, strip_segments, target_rule, upstream_path,
    TargetRule,
};
use crate::config::{AuditMode, PathRules};
use crate::http::target::{Refusal, TargetFacts};
use crate::respond::GatewayError;

fn rules(merge_slashes: bool, redirect_to_canonical: bool, parameters: bool) -> PathRules {
    PathRules {
        merge_slashes,
        redirect_to_canonical,
        parameters,
    }
}

fn facts(changed: bool, empty_segments: bool, parameters: bool) -> TargetFacts {
    TargetFacts {
        changed,
        empty_segments,
        parameters,
    }
}

fn parts(version: Version, uri: &str, hosts: &[&str]) -> http::request::Parts {
    let mut b = Request::builder().version(version).uri(uri);
    for h in hosts {
        b = b.header(http::header::HOST, *h);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn prefixes_are_stripped_by_segments() {
    assert_eq!(strip_segments("/app/x/y", "/app"), "/x/y");
    assert_eq!(strip_segments("/app", "/app"), "/");
    assert_eq!(strip_segments("/app/", "/app/"), "/");
    assert_eq!(strip_segments("/a/b/c", "/a/b"), "/c");
    assert_eq!(strip_segments("/app;jsessionid=1/x", "/app"), "/x");
}

#[test]
fn upstream_path_strips_the_prefix_only_when_asked_and_keeps_the_query() {
    let uri: Uri = "/app/x?q=1".parse().unwrap();
    assert_eq!(upstream_path(false, "/app", &uri).unwrap(), "/app/x?q=1");
    assert_eq!(upstream_path(true, "/", &uri).unwrap(), "/app/x?q=1");
    assert_eq!(upstream_path(true, "/app", &uri).unwrap(), "/x?q=1");
    let whole: Uri = "/app".parse().unwrap();
    assert_eq!(upstream_path(true, "/app", &whole).unwrap(), "/");
}

#[test]
fn upstream_path_refuses_a_target_that_is_not_a_path() {
    let star: Uri = "*".parse().unwrap();
    assert!(matches!(
        upstream_path(false, "/", &star),
        Err(GatewayError::BadRequest(_))
    ));
}

#[test]
fn route_target_rules_refuse_what_the_route_does_not_accept() {
    let strict = rules(false, false, false);
    assert_eq!(
        target_rule(strict, facts(true, false, true), &Method::GET),
        TargetRule::Refuse(Refusal::Parameters)
    );
    assert_eq!(
        target_rule(strict, facts(true, true, false), &Method::GET),
        TargetRule::Refuse(Refusal::EmptySegment)
    );
    assert_eq!(
        target_rule(strict, facts(false, false, false), &Method::GET),
        TargetRule::Pass
    );
    let lenient = rules(true, false, true);
    assert_eq!(
        target_rule(lenient, facts(true, true, true), &Method::GET),
        TargetRule::Pass
    );
}

#[test]
fn route_target_rules_redirect_only_safe_methods_to_the_canonical_form() {
    let redirect = rules(true, true, false);
    let changed = facts(true, true, false);
    assert_eq!(
        target_rule(redirect, changed, &Method::GET),
        TargetRule::Redirect
    );
    assert_eq!(
        target_rule(redirect, changed, &Method::HEAD),
        TargetRule::Redirect
    );
    assert_eq!(
        target_rule(redirect, changed, &Method::POST),
        TargetRule::Pass
    );
    assert_eq!(
        target_rule(redirect, facts(false, false, false), &Method::GET),
        TargetRule::Pass
    );
}

#[test]
fn decisions_ignore_path_parameters_only_when_there_are_some() {
    assert_eq!(decision_path("/a;x=1/b", facts(false, false, true)), "/a/b");
    assert_eq!(decision_path("/a/b", facts(false, false, false)), "/a/b");
}

#[test]
fn audit_records_only_audited_routes_and_names_denials() {
    assert!(audited(true, AuditMode::Required));
    assert!(audited(true, AuditMode::BestEffort));
    assert!(!audited(false, AuditMode::Required));
    assert_eq!(event_kind(false), ("http.access", Outcome::Success));
    assert_eq!(event_kind(true), ("authz.decision", Outcome::Denied));
}

#[test]
fn framing_needs_exactly_one_host_that_agrees_with_the_authority() {
    let ok = check_framing(&parts(Version::HTTP_11, "/", &["Example.ORG.:8443"])).unwrap();
    assert_eq!(ok.name, "example.org");
    assert_eq!(ok.original, "example.org:8443");
    let two = parts(Version::HTTP_11, "/", &["a.example", "b.example"]);
    assert!(check_framing(&two).is_err());
    assert!(check_framing(&parts(Version::HTTP_11, "/", &[])).is_err());
    let http10 = check_framing(&parts(Version::HTTP_10, "/", &[])).unwrap();
    assert_eq!(http10.name, "");
    let differs = parts(Version::HTTP_2, "https://a.example/", &["b.example"]);
    assert!(check_framing(&differs).is_err());
    assert!(check_framing(&parts(Version::HTTP_11, "/", &["user@a.example"])).is_err());
}

#[test]
fn a_head_over_the_limit_is_counted_as_on_the_wire() {
    use super::head_too_large;
    // "GET /abc HTTP/1.1\r\n" (19) + "host: x\r\n" (9) + "\r\n" (2) = 30.
    let req = Request::get("/abc").header("host", "x").body(()).unwrap();
    assert!(!head_too_large(&req, 30));
    assert!(head_too_large(&req, 29));
    // The absolute form counts scheme and authority too.
    let req = Request::get("https://h.example/abc").body(()).unwrap();
    assert!(head_too_large(&req, 19 + 2 + "https://h.example".len() - 1));
    assert!(!head_too_large(&req, 19 + 2 + "https://h.example".len()));
    let big = "a".repeat(10 * 1024);
    let req = Request::get("/").header("x-big", big).body(()).unwrap();
    assert!(head_too_large(&req, 8 * 1024));
    assert!(!head_too_large(&req, 16 * 1024));
}
