//! The few pages the gateway itself shows citizens: choosing a login
//! provider, errors, logout. Server-rendered, no JavaScript, German and
//! English (from `Accept-Language`), built for WCAG 2.1 AA / BITV 2.0:
//! `lang` set, one `h1`, real links and buttons, visible focus, text
//! contrast above 7:1, no information by colour alone, and a request id
//! on every error so support can find the log line. Nothing internal
//! (provider errors, addresses, tokens) ever appears on a page.

use http::HeaderMap;

/// Page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// Deutsch (default).
    De,
    /// English.
    En,
}

impl Lang {
    /// From the first language in `Accept-Language` that we have.
    pub(crate) fn from_headers(h: &HeaderMap) -> Self {
        let Some(v) = h
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Self::De;
        };
        for part in v.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("de") {
                return Self::De;
            }
            if tag.starts_with("en") {
                return Self::En;
            }
        }
        Self::De
    }

    fn code(self) -> &'static str {
        match self {
            Self::De => "de",
            Self::En => "en",
        }
    }
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

fn page(lang: Lang, title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;font-size:1.125rem;line-height:1.5;color:#1a1a1a;background:#fff;max-width:40rem;margin:2rem auto;padding:0 1rem}}
h1{{font-size:1.6rem}}
a,button{{color:#0b3d91;font-size:1.125rem}}
a:focus,button:focus{{outline:3px solid #b35900;outline-offset:2px}}
ul.choice{{list-style:none;padding:0}}
ul.choice li{{margin:0 0 1rem}}
ul.choice a{{display:block;padding:1rem;border:2px solid #0b3d91;border-radius:4px;text-decoration:none}}
button{{padding:.6rem 1.2rem;border:2px solid #0b3d91;background:#fff;border-radius:4px;cursor:pointer}}
.rid{{color:#404040;font-size:1rem}}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        code = lang.code()
    )
}

/// One entry of the provider choice.
#[derive(Debug)]
pub(crate) struct Choice {
    /// Name shown.
    pub label: String,
    /// Where the link goes.
    pub href: String,
}

/// "Choose how to log in".
pub(crate) fn choice(lang: Lang, choices: &[Choice]) -> String {
    let (title, intro) = match lang {
        Lang::De => (
            "Anmelden",
            "Bitte wählen Sie, wie Sie sich anmelden möchten.",
        ),
        Lang::En => ("Log in", "Please choose how you want to log in."),
    };
    let mut items = String::new();
    for c in choices {
        items.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>\n",
            esc(&c.href),
            esc(&c.label)
        ));
    }
    page(
        lang,
        title,
        &format!("<p>{intro}</p>\n<ul class=\"choice\">\n{items}</ul>"),
    )
}

/// What went wrong, as citizens are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The login could not be completed (state, code, token problems).
    LoginFailed,
    /// The login took too long or was started in another browser.
    LoginExpired,
    /// The provider cannot be reached.
    ProviderDown,
    /// The achieved level is below what the service needs.
    LevelTooLow,
    /// The login was cancelled or refused at the provider.
    Cancelled,
    /// Not allowed (e.g. no session for a non-GET request).
    LoginRequired,
    /// The session service is unavailable.
    SessionsDown,
    /// Logged in, but the access policy does not allow this request.
    Forbidden,
}

/// An error page with the request id.
pub(crate) fn error(lang: Lang, problem: Problem, request_id: &str, retry: Option<&str>) -> String {
    use Problem::*;
    let (title, text) = match (lang, problem) {
        (Lang::De, LoginFailed) => ("Anmeldung fehlgeschlagen", "Die Anmeldung konnte nicht abgeschlossen werden. Bitte versuchen Sie es erneut."),
        (Lang::En, LoginFailed) => ("Login failed", "The login could not be completed. Please try again."),
        (Lang::De, LoginExpired) => ("Anmeldung abgelaufen", "Die Anmeldung hat zu lange gedauert oder wurde in einem anderen Browser begonnen. Bitte melden Sie sich erneut an."),
        (Lang::En, LoginExpired) => ("Login expired", "The login took too long or was started in another browser. Please log in again."),
        (Lang::De, ProviderDown) => ("Anmeldedienst nicht erreichbar", "Der Anmeldedienst ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut. Ohne Anmeldung ist kein Zugang möglich."),
        (Lang::En, ProviderDown) => ("Login service unavailable", "The login service cannot be reached right now. Please try again later. Access is not possible without logging in."),
        (Lang::De, LevelTooLow) => ("Höheres Vertrauensniveau nötig", "Dieser Dienst verlangt ein höheres Vertrauensniveau, als Ihre Anmeldung erreicht hat. Bitte melden Sie sich mit einem sichereren Verfahren an, zum Beispiel mit dem Online-Ausweis."),
        (Lang::En, LevelTooLow) => ("Higher level of assurance needed", "This service needs a higher level of assurance than your login reached. Please log in with a stronger method, for example the German eID card."),
        (Lang::De, Cancelled) => ("Anmeldung abgebrochen", "Die Anmeldung wurde abgebrochen oder abgelehnt."),
        (Lang::En, Cancelled) => ("Login cancelled", "The login was cancelled or refused."),
        (Lang::De, LoginRequired) => ("Anmeldung erforderlich", "Für diesen Dienst müssen Sie angemeldet sein."),
        (Lang::En, LoginRequired) => ("Login required", "You need to log in to use this service."),
        (Lang::De, SessionsDown) => ("Dienst vorübergehend nicht verfügbar", "Ihre Sitzung kann gerade nicht geprüft werden. Bitte versuchen Sie es in einigen Minuten erneut."),
        (Lang::En, SessionsDown) => ("Service temporarily unavailable", "Your session cannot be checked right now. Please try again in a few minutes."),
        (Lang::De, Forbidden) => ("Zugriff nicht erlaubt", "Sie sind angemeldet, dürfen diesen Bereich aber nicht nutzen. Wenn Sie meinen, dass das ein Fehler ist, wenden Sie sich bitte unter Angabe der Vorgangsnummer an die Verwaltung."),
        (Lang::En, Forbidden) => ("Access not allowed", "You are logged in, but you may not use this area. If you think this is a mistake, please contact the administration and quote the reference below."),
    };
    let retry = retry
        .map(|href| {
            let label = match lang {
                Lang::De => "Erneut anmelden",
                Lang::En => "Log in again",
            };
            format!("<p><a href=\"{}\">{label}</a></p>\n", esc(href))
        })
        .unwrap_or_default();
    let rid = match lang {
        Lang::De => "Vorgangsnummer für Rückfragen",
        Lang::En => "Reference for support",
    };
    page(
        lang,
        title,
        &format!(
            "<p>{text}</p>\n{retry}<p class=\"rid\">{rid}: <code>{}</code></p>",
            esc(request_id)
        ),
    )
}

/// "Log out?" with a POST button (a GET must not log out: link
/// prefetchers and cross-site images would).
pub(crate) fn logout_confirm(lang: Lang) -> String {
    let (title, text, button) = match lang {
        Lang::De => ("Abmelden", "Möchten Sie sich abmelden?", "Abmelden"),
        Lang::En => ("Log out", "Do you want to log out?", "Log out"),
    };
    page(
        lang,
        title,
        &format!(
            "<p>{text}</p>\n<form method=\"post\" action=\"/.stadttor/logout\"><button type=\"submit\">{button}</button></form>"
        ),
    )
}

/// "You are logged out".
pub(crate) fn logged_out(lang: Lang) -> String {
    let (title, text) = match lang {
        Lang::De => (
            "Abgemeldet",
            "Sie sind abgemeldet. Sie können das Fenster jetzt schließen.",
        ),
        Lang::En => (
            "Logged out",
            "You are logged out. You can close this window now.",
        ),
    };
    page(lang, title, &format!("<p>{text}</p>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_and_escaping() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::De);
        h.insert(
            http::header::ACCEPT_LANGUAGE,
            "en-GB,en;q=0.9,de;q=0.5".parse().unwrap(),
        );
        assert_eq!(Lang::from_headers(&h), Lang::En);
        let p = choice(
            Lang::En,
            &[Choice {
                label: "<script>".into(),
                href: "/x?a=1&b=\"2\"".into(),
            }],
        );
        assert!(p.contains("lang=\"en\""));
        assert!(p.contains("&lt;script&gt;") && !p.contains("<script>"));
        assert!(p.contains("&amp;b=&quot;2&quot;"));
        let e = error(Lang::De, Problem::ProviderDown, "rid-7", None);
        assert!(e.contains("rid-7") && e.contains("nicht erreichbar"));
    }
}
