//! The officers' HTML pages: the policy page (active version, open
//! proposals with diff and tests, approve and reject forms, history), the
//! "no access" and "logged out" pages. Server-rendered German or English,
//! no JavaScript; every value is escaped.

use http::{Response, StatusCode};
use stadttor_policies::{PolicyDiff, Proposal, ProposalStatus, TestReport};

use super::{OfficerSession, View};
use crate::http::body::ProxyBody;
use crate::respond::html::esc;
use crate::respond::officer::html;
use crate::respond::Lang;

pub(super) fn page(lang: Lang, title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – stadttor</title>
<style>
body{{font-family:system-ui,sans-serif;font-size:1rem;line-height:1.5;color:#1a1a1a;background:#fff;max-width:60rem;margin:2rem auto;padding:0 1rem}}
h1{{font-size:1.6rem}} h2{{font-size:1.3rem;margin-top:2rem}}
a,button{{color:#0b3d91;font-size:1rem}}
a:focus,button:focus,input:focus,textarea:focus{{outline:3px solid #b35900;outline-offset:2px}}
button{{padding:.4rem 1rem;border:2px solid #0b3d91;background:#fff;border-radius:4px;cursor:pointer}}
section.proposal{{border:2px solid #404040;border-radius:4px;padding:1rem;margin:1rem 0}}
pre{{background:#f3f3f3;padding:.5rem;overflow-x:auto}}
.msg{{border:3px solid #8a1f11;padding:.5rem 1rem}} .ok{{border:3px solid #1e5631;padding:.5rem 1rem}}
table{{border-collapse:collapse}} td,th{{border:1px solid #808080;padding:.2rem .5rem;text-align:left}}
.rid{{color:#404040}}
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
        code = match lang {
            Lang::De => "de",
            Lang::En => "en",
        }
    )
}

pub(super) fn diff_html(d: &PolicyDiff) -> String {
    if d.is_empty() {
        return "<p>–</p>".into();
    }
    let mut s = String::from("<pre class=\"diff\">");
    for (name, ld) in [
        ("model.conf", &d.model),
        ("policy.csv", &d.policy),
        ("tests.csv", &d.tests),
    ] {
        if ld.is_empty() {
            continue;
        }
        s.push_str(&format!("--- {name}\n"));
        for l in &ld.removed {
            s.push_str(&format!("- {}\n", esc(l)));
        }
        for l in &ld.added {
            s.push_str(&format!("+ {}\n", esc(l)));
        }
    }
    s.push_str("</pre>");
    s
}

/// The officers' policy page: session, messages, the active version, the
/// open proposals with their tests and diffs, and the latest history.
pub(super) fn policy_page(
    lang: Lang,
    session: &OfficerSession,
    v: &View,
    done: Option<&str>,
    error: Option<&str>,
) -> String {
    let de = lang == Lang::De;
    let t = |de_text: &'static str, en_text: &'static str| if de { de_text } else { en_text };
    let csrf = esc(&session.csrf);
    let mut b = String::new();
    b.push_str(&format!(
        "<p>{} <strong>{}</strong></p>\n<form method=\"post\" action=\"/policy/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{}</button></form>\n",
        t("Angemeldet als", "Logged in as"),
        esc(&session.name),
        t("Abmelden", "Log out")
    ));
    status_html(&mut b, lang, done, error);
    active_html(&mut b, lang, v);
    let active_version = v.active.as_ref().map(|p| p.version());
    b.push_str(&format!(
        "<h2>{}</h2>\n",
        t("Offene Vorschläge", "Open proposals")
    ));
    if v.open.is_empty() {
        b.push_str(&format!(
            "<p>{}</p>\n",
            t("Keine offenen Vorschläge.", "No open proposals.")
        ));
    }
    for (p, tests, diff) in &v.open {
        proposal_html(&mut b, lang, session, p, tests, diff, active_version);
    }
    history_html(&mut b, lang, v);
    page(lang, t("Zugriffsrichtlinie", "Access policy"), &b)
}

/// The results of the last action (`done`) or why it was not done.
fn status_html(b: &mut String, lang: Lang, done: Option<&str>, error: Option<&str>) {
    let de = lang == Lang::De;
    let t = |de_text: &'static str, en_text: &'static str| if de { de_text } else { en_text };
    if let Some(e) = error {
        b.push_str(&format!(
            "<p class=\"msg\" role=\"alert\"><strong>{}</strong> {}</p>\n",
            t("Nicht ausgeführt:", "Not done:"),
            esc(e)
        ));
    }
    if let Some(d) = done {
        let text = if let Some(ver) = d.strip_prefix("approved-") {
            match ver.parse::<u64>() {
                Ok(n) if de => format!("Freigegeben: Version {n} ist jetzt aktiv."),
                Ok(n) => format!("Approved: version {n} is active now."),
                Err(_) => String::new(),
            }
        } else if d == "approved" {
            t("Nachträglich freigegeben.", "Approved afterwards.").to_owned()
        } else if d == "rejected" {
            t("Abgelehnt.", "Rejected.").to_owned()
        } else {
            String::new()
        };
        if !text.is_empty() {
            b.push_str(&format!("<p class=\"ok\" role=\"status\">{text}</p>\n"));
        }
    }
}

/// The active version and its policy.
fn active_html(b: &mut String, lang: Lang, v: &View) {
    let de = lang == Lang::De;
    let t = |de_text: &'static str, en_text: &'static str| if de { de_text } else { en_text };
    b.push_str(&format!(
        "<h2>{}</h2>\n",
        t("Aktive Richtlinie", "Active policy")
    ));
    match (&v.active, &v.active_meta) {
        (Some(p), Some(m)) => {
            b.push_str(&format!(
                "<p id=\"active-version\">{} <strong>{}</strong> · {} {}{}{}</p>\n<details><summary>policy.csv</summary><pre>{}</pre></details>\n",
                t("Version", "Version"),
                p.version(),
                t("von", "by"),
                esc(&m.author),
                m.approver
                    .as_ref()
                    .map(|a| format!(", {} {}", t("freigegeben von", "approved by"), esc(a)))
                    .unwrap_or_default(),
                if m.emergency {
                    t(" · NOTFALLÄNDERUNG", " · EMERGENCY CHANGE")
                } else {
                    ""
                },
                esc(&p.set().policy)
            ));
        }
        _ => b.push_str(&format!(
            "<p>{}</p>\n",
            t(
                "Keine aktive Richtlinie: alle geschützten Routen werden abgelehnt.",
                "No active policy: every enforced route is denied."
            )
        )),
    }
}

/// One open proposal, with approve (not for its author) and reject forms.
fn proposal_html(
    b: &mut String,
    lang: Lang,
    session: &OfficerSession,
    p: &Proposal,
    tests: &Result<TestReport, String>,
    diff: &PolicyDiff,
    active_version: Option<u64>,
) {
    let de = lang == Lang::De;
    let t = |de_text: &'static str, en_text: &'static str| if de { de_text } else { en_text };
    let csrf = esc(&session.csrf);
    let id = esc(&p.id);
    let awaiting = p.awaiting_approval();
    let stale = matches!(p.status, ProposalStatus::Pending) && p.base_version != active_version;
    b.push_str(&format!(
        "<section class=\"proposal\" data-proposal=\"{id}\" aria-labelledby=\"h-{id}\">\n<h3 id=\"h-{id}\">{} {} {}</h3>\n",
        t("Vorschlag von", "Proposal by"),
        esc(&p.author),
        if awaiting {
            t("(NOTFALLÄNDERUNG, bereits aktiv, Freigabe ausstehend)", "(EMERGENCY CHANGE, already active, awaiting approval)")
        } else {
            ""
        }
    ));
    b.push_str(&format!(
        "<p>ID <code>{id}</code> · {} {} · {}</p>\n",
        t("auf Version", "on version"),
        p.base_version.map_or("–".into(), |v| v.to_string()),
        esc(&p.comment)
    ));
    if stale {
        b.push_str(&format!(
            "<p class=\"msg\">{}</p>\n",
            t(
                "Veraltet: seit dem Vorschlag wurde eine andere Version aktiv. Er kann nicht mehr freigegeben werden.",
                "Stale: another version became active since it was proposed. It can no longer be approved."
            )
        ));
    }
    match tests {
        Ok(r) => b.push_str(&format!(
            "<p class=\"tests\">{}: {} {}, {} {}</p>\n",
            t("Tests der Richtlinie", "The policy's tests"),
            r.passed,
            t("bestanden", "passed"),
            r.failures.len(),
            t("fehlgeschlagen", "failed")
        )),
        Err(e) => b.push_str(&format!("<p class=\"msg\">{}</p>\n", esc(e))),
    }
    b.push_str(&format!(
        "<h4>{}</h4>\n{}\n",
        t("Änderungen", "Changes"),
        diff_html(diff)
    ));
    if p.author == session.name {
        b.push_str(&format!(
            "<p>{}</p>\n",
            t(
                "Ihr eigener Vorschlag: eine zweite Person muss ihn freigeben (Vier-Augen-Prinzip).",
                "Your own proposal: a second officer must approve it (four eyes)."
            )
        ));
    } else {
        b.push_str(&format!(
            "<form method=\"post\" action=\"/policy/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><button type=\"submit\" name=\"approve\">{}</button></form>\n",
            t("Freigeben", "Approve")
        ));
    }
    b.push_str(&format!(
        "<form method=\"post\" action=\"/policy/reject\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><label for=\"r-{id}\">{}</label> <input id=\"r-{id}\" name=\"reason\" required> <button type=\"submit\" name=\"reject\">{}</button></form>\n</section>\n",
        t("Grund", "Reason"),
        t("Ablehnen", "Reject")
    ));
}

/// The latest 20 versions, newest first.
fn history_html(b: &mut String, lang: Lang, v: &View) {
    let de = lang == Lang::De;
    let t = |de_text: &'static str, en_text: &'static str| if de { de_text } else { en_text };
    b.push_str(&format!(
        "<h2>{}</h2>\n<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>\n",
        t("Verlauf", "History"),
        t("Version", "Version"),
        t("Art", "Kind"),
        t("Vorgeschlagen von", "Proposed by"),
        t("Freigegeben von", "Approved by"),
        t("Kommentar", "Comment")
    ));
    for h in v.history.iter().rev().take(20) {
        let m = &h.meta;
        b.push_str(&format!(
            "<tr><td>{}{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            m.version,
            if h.active {
                t(" (aktiv)", " (active)")
            } else {
                ""
            },
            match m.kind {
                stadttor_policies::ChangeKind::Bootstrap =>
                    t("Installation", "Bootstrap").to_owned(),
                stadttor_policies::ChangeKind::Change => t("Änderung", "Change").to_owned(),
                stadttor_policies::ChangeKind::Rollback { to } =>
                    format!("{} {to}", t("Rückkehr zu", "Rollback to")),
            },
            if m.emergency {
                t(", Notfall", ", emergency")
            } else {
                ""
            },
            esc(&m.author),
            esc(h.approved_by.as_deref().unwrap_or("–")),
            esc(&m.comment)
        ));
    }
    b.push_str("</tbody></table>\n");
}

/// The "logged out" page (no session needed).
pub(super) fn logged_out(lang: Lang) -> Response<ProxyBody> {
    html(
        StatusCode::OK,
        page(
            lang,
            match lang {
                Lang::De => "Abgemeldet",
                Lang::En => "Logged out",
            },
            "<p><a href=\"/policy\">/policy</a></p>",
        ),
    )
}

/// The page for a login that names no officer.
pub(super) fn no_access(lang: Lang, request_id: &str) -> String {
    page(
        lang,
        match lang {
            Lang::De => "Kein Zugang",
            Lang::En => "No access",
        },
        &format!(
            "<p>{}</p><p class=\"rid\">{}: <code>{}</code></p>",
            match lang {
                Lang::De => "Sie sind angemeldet, sind aber in der aktiven Richtlinie nicht als Sicherheitsbeauftragte oder Sicherheitsbeauftragter (Rolle <code>officer</code> in <code>stadttor-admin</code>) eingetragen.",
                Lang::En => "You are logged in, but the active policy does not name you as a security officer (role <code>officer</code> in <code>stadttor-admin</code>).",
            },
            match lang {
                Lang::De => "Vorgangsnummer",
                Lang::En => "Reference",
            },
            esc(request_id)
        ),
    )
}

/// The page for a login whose name claim the provider has not verified
/// (e.g. `email_verified` false): refused, whatever the policy says.
pub(super) fn unverified(lang: Lang, why: &str, request_id: &str) -> String {
    let de = lang == Lang::De;
    page(
        lang,
        if de {
            "Anmeldung abgelehnt"
        } else {
            "Login refused"
        },
        &format!(
            "<p>{}</p><p><code>{}</code></p><p class=\"rid\">{}: <code>{}</code></p>",
            if de {
                "Der Anmeldedienst hat die Angabe, die Sie als Sicherheitsbeauftragte oder Sicherheitsbeauftragten ausweisen würde (z. B. Ihre E-Mail-Adresse), nicht als bestätigt gemeldet. Eine unbestätigte Angabe berechtigt nie zur Verwaltung der Zugriffsrichtlinie. Bitte bestätigen Sie Ihre Adresse beim Anmeldedienst."
            } else {
                "The login service did not report the detail that would name you as a security officer (e.g. your e-mail address) as verified. An unverified detail never grants access to the policy administration. Please verify your address with the login service."
            },
            esc(why),
            if de { "Vorgangsnummer" } else { "Reference" },
            esc(request_id)
        ),
    )
}
