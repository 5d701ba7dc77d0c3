//! The one HTML frame of every page the gateway writes for citizens
//! (error pages, provider choice, logout): server-rendered, no
//! JavaScript, built for WCAG 2.1 AA / BITV 2.0: `lang` set on the
//! document and on every passage in the other language, one `h1`, all
//! content inside the `main` landmark, real links and buttons, visible
//! focus, text contrast above 7:1, no information by colour alone.
//!
//! The style sheet is inline; the pages' own `Content-Security-Policy`
//! ([`CSP`]) allows exactly it (by hash) and nothing else, whatever the
//! route's policy says.

use std::sync::OnceLock;

use base64::Engine as _;

use super::negotiate::Lang;

/// The style sheet of every page.
const STYLE: &str = "body{font-family:system-ui,sans-serif;font-size:1.125rem;line-height:1.5;color:#1a1a1a;background:#fff;max-width:40rem;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.6rem}\
h2{font-size:1.3rem;margin-top:2.5rem;padding-top:1rem;border-top:1px solid #595959}\
a,button{color:#0b3d91;font-size:1.125rem}\
a:focus,button:focus{outline:3px solid #b35900;outline-offset:2px}\
ul.choice{list-style:none;padding:0}\
ul.choice li{margin:0 0 1rem}\
ul.choice a{display:block;padding:1rem;border:2px solid #0b3d91;border-radius:4px;text-decoration:none}\
button{padding:.6rem 1.2rem;border:2px solid #0b3d91;background:#fff;border-radius:4px;cursor:pointer}\
.rid{color:#404040;font-size:1rem}\
code{font-size:1rem;word-break:break-all}";

/// The `Content-Security-Policy` of the gateway's pages: nothing but the
/// inline style sheet, forms only to this origin, no framing.
pub(crate) fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// The one script of the gateway's pages: submits the form of
/// [`post_form_page`] (the SAML HTTP-POST binding).
const AUTO_SUBMIT: &str = "document.getElementById('f').submit();";

fn sha256_b64(s: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The CSP of [`post_form_page`]: the style sheet and the auto-submit
/// script by hash, forms only to `origin`.
pub(crate) fn csp_post_form(origin: &str) -> String {
    format!(
        "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; form-action {origin}; \
         frame-ancestors 'none'; base-uri 'none'",
        sha256_b64(STYLE),
        sha256_b64(AUTO_SUBMIT)
    )
}

/// A page that posts `fields` to `action`: submitted by script at once,
/// or by the visible button without JavaScript.
pub(crate) fn post_form_page(
    lang: Lang,
    title: &str,
    text: &str,
    button: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> String {
    let mut form = format!(
        "<p>{}</p>\n<form id=\"f\" method=\"post\" action=\"{}\">\n",
        esc(text),
        esc(action)
    );
    for (name, value) in fields {
        form.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            esc(name),
            esc(value)
        ));
    }
    form.push_str(&format!(
        "<button type=\"submit\">{}</button>\n</form>\n<script>{AUTO_SUBMIT}</script>",
        esc(button)
    ));
    page(lang, title, &form)
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// A complete page in `lang` with this (escaped) title; `body` is HTML
/// placed in `main` after the `h1`.
pub(crate) fn page(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{code}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        code = lang.code(),
        title = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_frame() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let p = page(Lang::En, "A <b>", "<p>x</p>");
        assert!(p.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(p.contains("<title>A &lt;b&gt;</title>") && p.contains("<h1>A &lt;b&gt;</h1>"));
        assert!(p.contains("<main>\n<h1>") && p.contains("<p>x</p>\n</main>"));
        assert!(!p.contains("<script"));
    }

    #[test]
    fn the_policy_allows_exactly_the_style_sheet() {
        // Recomputed independently of `csp()`: the hash of the bytes
        // between <style> and </style> of a rendered page.
        let p = page(Lang::De, "t", "");
        let start = p.find("<style>").unwrap() + "<style>".len();
        let end = p.find("</style>").unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &p.as_bytes()[start..end]);
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        assert!(
            csp().contains(&format!("style-src 'sha256-{hash}'")),
            "{}",
            csp()
        );
        assert!(csp().starts_with("default-src 'none';"));
        assert!(!csp().contains("unsafe"));
    }
}
