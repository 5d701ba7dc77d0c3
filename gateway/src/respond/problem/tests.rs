//! Rendering of every problem in every form and language.

use std::collections::BTreeSet;

use http_body_util::BodyExt;

use super::*;

const RID: &str = "0b5e2f7c-9d1a-4c3e-8f00-123456789abc";

pub(crate) fn text_of(r: Response<ProxyBody>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn aud(format: Format, lang: Lang) -> Audience {
    Audience { format, lang }
}

#[test]
fn every_rendering_carries_the_request_id_and_is_never_cached() {
    for p in Problem::ALL {
        for format in [Format::Html, Format::Problem, Format::Plain] {
            for lang in [Lang::De, Lang::En] {
                let r = p.answer().render(aud(format, lang), RID);
                assert_eq!(r.status(), p.status(), "{p:?}");
                let h = r.headers().clone();
                assert_eq!(h["x-request-id"], RID);
                assert_eq!(h[header::CACHE_CONTROL], "no-store");
                assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
                assert_eq!(h[header::VARY], "Accept, Accept-Language");
                let ctype = h[header::CONTENT_TYPE].to_str().unwrap().to_owned();
                let expected = match format {
                    Format::Html => "text/html; charset=utf-8",
                    Format::Problem => "application/problem+json",
                    Format::Plain => "text/plain; charset=utf-8",
                };
                assert_eq!(ctype, expected);
                assert_eq!(
                    h.contains_key(header::CONTENT_SECURITY_POLICY),
                    format == Format::Html
                );
                let body = text_of(r);
                assert!(body.contains(RID), "{p:?} {format:?}: {body}");
            }
        }
    }
}

#[test]
fn pages_are_german_first_with_the_english_alternative() {
    let r = Problem::NotFound
        .answer()
        .render(aud(Format::Html, Lang::De), RID);
    assert_eq!(r.headers()[header::CONTENT_LANGUAGE], "de, en");
    let page = text_of(r);
    assert!(
        page.starts_with("<!DOCTYPE html>\n<html lang=\"de\">"),
        "{page}"
    );
    let de = page.find("Seite nicht gefunden</h1>").unwrap();
    let en = page
        .find("<section lang=\"en\" aria-labelledby=\"alt\">\n<h2 id=\"alt\">Page not found</h2>")
        .unwrap();
    assert!(de < en, "German first: {page}");
    assert!(page.contains("Vorgangsnummer: <code>") && page.contains("Request id: <code>"));
    assert!(page.contains("<main>") && page.contains("</main>"));
    assert!(!page.contains("<script"));

    let page = text_of(
        Problem::NotFound
            .answer()
            .render(aud(Format::Html, Lang::En), RID),
    );
    assert!(
        page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{page}"
    );
    assert!(page.contains("<section lang=\"de\""));
    assert!(
        page.find("Page not found</h1>").unwrap() < page.find("Seite nicht gefunden</h2>").unwrap()
    );
}

#[test]
fn problem_details_follow_rfc_9457() {
    let r = Problem::UpstreamTimeout
        .answer()
        .render(aud(Format::Problem, Lang::En), RID);
    assert_eq!(r.headers()[header::CONTENT_LANGUAGE], "en");
    let v: serde_json::Value = serde_json::from_str(&text_of(r)).unwrap();
    assert_eq!(v["type"], "about:blank");
    assert_eq!(v["title"], "Gateway Timeout");
    assert_eq!(v["status"], 504);
    assert_eq!(v["detail"], Problem::UpstreamTimeout.text(Lang::En).1);
    assert_eq!(v["instance"], format!("urn:uuid:{RID}"));
    assert_eq!(v["request_id"], RID);
    assert_eq!(v["code"], "upstream_timeout");
    let r = Problem::UpstreamTimeout
        .answer()
        .render(aud(Format::Problem, Lang::De), RID);
    let v: serde_json::Value = serde_json::from_str(&text_of(r)).unwrap();
    assert!(v["detail"].as_str().unwrap().contains("nicht rechtzeitig"));
}

#[test]
fn a_callers_status_and_link() {
    let p = Problem::LoginFailed
        .answer()
        .status(StatusCode::NOT_FOUND)
        .login_link("/.stadttor/login?route=a&x=\"><script>");
    let r = p.render(aud(Format::Html, Lang::De), RID);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let page = text_of(r);
    assert!(page.contains("<a href=\"/.stadttor/login?route=a&amp;x=&quot;&gt;&lt;script&gt;\">Erneut anmelden</a>"), "{page}");
    assert!(page.contains(">Log in again</a>"));
    assert!(!page.contains("<script"));
    let v: serde_json::Value =
        serde_json::from_str(&text_of(p.render(aud(Format::Problem, Lang::De), RID))).unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(v["title"], "Not Found");
}

#[test]
fn plain_text_has_both_languages() {
    let t = text_of(
        Problem::PayloadTooLarge
            .answer()
            .render(aud(Format::Plain, Lang::De), RID),
    );
    assert!(
        t.starts_with("413 Payload Too Large\nDie gesendeten Daten"),
        "{t}"
    );
    assert!(t.contains("The request body is larger"));
    assert!(t.contains(&format!("Vorgangsnummer: {RID}\nRequest id: {RID}\n")));
}

#[test]
fn codes_are_unique_and_statuses_are_errors() {
    let mut codes = BTreeSet::new();
    for p in Problem::ALL {
        assert!(codes.insert(p.code()), "{p:?}: code used twice");
        assert!(p.status().is_client_error() || p.status().is_server_error());
        for lang in [Lang::De, Lang::En] {
            let (title, text) = p.text(lang);
            assert!(!title.is_empty() && text.ends_with('.'), "{p:?} {lang:?}");
        }
        assert_ne!(p.text(Lang::De), p.text(Lang::En), "{p:?} is translated");
    }
    assert_eq!(Problem::HeadersTooLarge.status().as_u16(), 431);
}
