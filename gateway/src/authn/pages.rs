//! The few pages the gateway shows citizens that are not errors:
//! choosing a login provider, confirming a logout, "logged out". German
//! or English (from `Accept-Language`), in the one page frame of
//! [`crate::respond::html`] (accessibility rules there). Error pages,
//! login errors included, are [`crate::respond::Problem`]s.

use crate::respond::html::{esc, page};
use crate::respond::Lang;

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
    fn choices_are_escaped() {
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
        assert!(logout_confirm(Lang::De).contains("action=\"/.stadttor/logout\""));
    }
}
