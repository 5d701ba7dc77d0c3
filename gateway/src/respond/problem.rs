//! The templates of every error the gateway answers itself, and their
//! three renderings ([`Format`]): a German-first HTML page with the
//! English text below it (or the other way round for English readers),
//! RFC 9457 problem details (`application/problem+json`), plain text.
//!
//! Each [`Problem`] has one status, one machine-readable code and one
//! fixed text per language. Nothing of the request, the upstream or an
//! error chain is ever part of a text: the only variable parts are the
//! request id and, on login pages, a link the gateway chose. Every
//! rendering carries the request id (in the body and `x-request-id`), is
//! never cached (`Cache-Control: no-store`), varies on `Accept` and
//! `Accept-Language`, and says its content type and language.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::content;
use super::html::{self, esc};
use super::negotiate::{Audience, Format, Lang};
use crate::http::body::ProxyBody;
use crate::http::headers::REQUEST_ID;

/// What went wrong, as clients are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// 400: malformed or ambiguous request (framing, target, `Host`).
    BadRequest,
    /// 401: no or an invalid credential.
    LoginRequired,
    /// 401: a bearer token of too low a level (RFC 9470).
    StepUp,
    /// 403: the access policy does not allow the request.
    Forbidden,
    /// 403: the login or certificate is below the level the service needs.
    LevelTooLow,
    /// 404: no route, no such gateway endpoint or document.
    NotFound,
    /// 405: the method is not allowed here.
    MethodNotAllowed,
    /// 408: the request body did not arrive in time.
    RequestTimeout,
    /// 413: the request body is larger than the route allows.
    PayloadTooLarge,
    /// 431: the request head is larger than `max_header_bytes`.
    HeadersTooLarge,
    /// 500: a bug or an unexpected state.
    Internal,
    /// 502: no upstream address could be connected to.
    UpstreamUnreachable,
    /// 502: the upstream broke the exchange.
    UpstreamFailed,
    /// 502: a response that must be signed could not be.
    SigningFailed,
    /// 503: the gateway is shutting down.
    Draining,
    /// 503: the audit log cannot record, and the route requires it.
    AuditUnavailable,
    /// 503: the identity provider cannot be reached.
    ProviderDown,
    /// 503: the session store cannot answer.
    SessionsDown,
    /// 503: the identity for the service cannot be vouched for (signing).
    IdentityUnavailable,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
    /// 400: the login could not be completed (state, code, token).
    LoginFailed,
    /// 400: the login took too long or began in another browser.
    LoginExpired,
    /// 403: the login was cancelled or refused at the provider.
    Cancelled,
    /// 403: an officer's form without the session's CSRF token.
    CsrfFailed,
    /// 503: the policy store cannot answer (officers' pages).
    PolicyStoreDown,
    /// 503: a policy change is stored but the audit log did not record it.
    ChangeUnrecorded,
}

/// Title and text in one language.
struct Text {
    title: &'static str,
    text: &'static str,
}

/// One problem's status, code and texts.
struct Template {
    status: StatusCode,
    code: &'static str,
    de: Text,
    en: Text,
}

macro_rules! t {
    ($status:ident, $code:literal, $de_t:literal, $de:literal, $en_t:literal, $en:literal) => {
        Template {
            status: StatusCode::$status,
            code: $code,
            de: Text {
                title: $de_t,
                text: $de,
            },
            en: Text {
                title: $en_t,
                text: $en,
            },
        }
    };
}

impl Problem {
    /// Every problem, for tests and the documentation.
    pub const ALL: [Problem; 26] = [
        Self::BadRequest,
        Self::LoginRequired,
        Self::StepUp,
        Self::Forbidden,
        Self::LevelTooLow,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::HeadersTooLarge,
        Self::Internal,
        Self::UpstreamUnreachable,
        Self::UpstreamFailed,
        Self::SigningFailed,
        Self::Draining,
        Self::AuditUnavailable,
        Self::ProviderDown,
        Self::SessionsDown,
        Self::IdentityUnavailable,
        Self::UpstreamTimeout,
        Self::LoginFailed,
        Self::LoginExpired,
        Self::Cancelled,
        Self::CsrfFailed,
        Self::PolicyStoreDown,
        Self::ChangeUnrecorded,
    ];

    fn template(self) -> Template {
        match self {
            Self::BadRequest => t!(BAD_REQUEST, "bad_request",
                "Ungültige Anfrage", "Die Anfrage ist fehlerhaft und wurde nicht bearbeitet.",
                "Bad request", "The request is malformed and was not processed."),
            Self::LoginRequired => t!(UNAUTHORIZED, "authentication_required",
                "Anmeldung erforderlich", "Für diesen Dienst müssen Sie angemeldet sein.",
                "Login required", "You need to log in to use this service."),
            Self::StepUp => t!(UNAUTHORIZED, "insufficient_user_authentication",
                "Höheres Vertrauensniveau nötig", "Dieser Dienst verlangt ein höheres Vertrauensniveau, als die Anmeldung erreicht hat.",
                "Higher level of assurance needed", "This service needs a higher level of assurance than the login reached."),
            Self::Forbidden => t!(FORBIDDEN, "forbidden",
                "Zugriff nicht erlaubt", "Sie dürfen diesen Bereich nicht nutzen. Wenn Sie meinen, dass das ein Fehler ist, wenden Sie sich bitte unter Angabe der Vorgangsnummer an die Verwaltung.",
                "Access not allowed", "You may not use this area. If you think this is a mistake, please contact the administration and quote the request id below."),
            Self::LevelTooLow => t!(FORBIDDEN, "level_too_low",
                "Höheres Vertrauensniveau nötig", "Dieser Dienst verlangt ein höheres Vertrauensniveau, als Ihre Anmeldung oder Ihr Zertifikat erreicht. Bitte melden Sie sich mit einem sichereren Verfahren an, zum Beispiel mit dem Online-Ausweis.",
                "Higher level of assurance needed", "This service needs a higher level of assurance than your login or certificate reached. Please log in with a stronger method, for example the German eID card."),
            Self::NotFound => t!(NOT_FOUND, "not_found",
                "Seite nicht gefunden", "Unter dieser Adresse ist kein Dienst veröffentlicht. Bitte prüfen Sie die Adresse.",
                "Page not found", "No service is published at this address. Please check the address."),
            Self::MethodNotAllowed => t!(METHOD_NOT_ALLOWED, "method_not_allowed",
                "Aktion nicht möglich", "Diese Art von Anfrage ist unter dieser Adresse nicht möglich.",
                "Action not possible", "This kind of request is not possible at this address."),
            Self::RequestTimeout => t!(REQUEST_TIMEOUT, "request_timeout",
                "Zeit überschritten", "Die Daten der Anfrage sind nicht rechtzeitig angekommen. Bitte versuchen Sie es erneut.",
                "Request timed out", "The request body did not arrive in time. Please try again."),
            Self::PayloadTooLarge => t!(PAYLOAD_TOO_LARGE, "payload_too_large",
                "Daten zu groß", "Die gesendeten Daten sind größer, als dieser Dienst annimmt. Bitte senden Sie kleinere Dateien.",
                "Request too large", "The request body is larger than this service accepts. Please send smaller files."),
            Self::HeadersTooLarge => t!(REQUEST_HEADER_FIELDS_TOO_LARGE, "request_header_fields_too_large",
                "Anfrage zu groß", "Die Kopfzeilen der Anfrage sind zu groß. Oft hilft es, die Cookies dieser Seite im Browser zu löschen.",
                "Request headers too large", "The request headers are too large. Deleting this site's cookies in the browser often helps."),
            Self::Internal => t!(INTERNAL_SERVER_ERROR, "internal_error",
                "Interner Fehler", "Die Anfrage konnte nicht bearbeitet werden. Bitte versuchen Sie es später erneut.",
                "Internal error", "The gateway could not handle the request. Please try again later."),
            Self::UpstreamUnreachable => t!(BAD_GATEWAY, "upstream_unreachable",
                "Dienst nicht erreichbar", "Der Dienst hinter diesem Zugang ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut.",
                "Service not reachable", "The service behind this gateway is not reachable right now. Please try again later."),
            Self::UpstreamFailed => t!(BAD_GATEWAY, "upstream_failed",
                "Dienst gestört", "Der Dienst hinter diesem Zugang hat keine gültige Antwort gegeben. Bitte versuchen Sie es später erneut.",
                "Service failed", "The service behind this gateway gave no valid answer. Please try again later."),
            Self::SigningFailed => t!(BAD_GATEWAY, "signing_failed",
                "Antwort zurückgehalten", "Die Antwort des Dienstes muss gesiegelt werden und konnte es nicht; sie wurde zurückgehalten. Bitte versuchen Sie es später erneut.",
                "Answer withheld", "The service's answer must be signed and could not be; it was withheld. Please try again later."),
            Self::Draining => t!(SERVICE_UNAVAILABLE, "draining",
                "Neustart", "Der Zugang startet gerade neu. Bitte versuchen Sie es gleich noch einmal.",
                "Restarting", "The gateway is restarting. Please try again in a moment."),
            Self::AuditUnavailable => t!(SERVICE_UNAVAILABLE, "audit_unavailable",
                "Dienst vorübergehend nicht verfügbar", "Dieser Dienst ist nicht verfügbar, weil Zugriffe gerade nicht protokolliert werden können. Bitte versuchen Sie es später erneut.",
                "Service temporarily unavailable", "This service is unavailable because its access cannot be recorded right now. Please try again later."),
            Self::ProviderDown => t!(SERVICE_UNAVAILABLE, "identity_provider_unavailable",
                "Anmeldedienst nicht erreichbar", "Der Anmeldedienst ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut. Ohne Anmeldung ist kein Zugang möglich.",
                "Login service unavailable", "The login service cannot be reached right now. Please try again later. Access is not possible without logging in."),
            Self::SessionsDown => t!(SERVICE_UNAVAILABLE, "session_store_unavailable",
                "Dienst vorübergehend nicht verfügbar", "Ihre Sitzung kann gerade nicht geprüft werden. Bitte versuchen Sie es in einigen Minuten erneut.",
                "Service temporarily unavailable", "Your session cannot be checked right now. Please try again in a few minutes."),
            Self::IdentityUnavailable => t!(SERVICE_UNAVAILABLE, "identity_unavailable",
                "Dienst vorübergehend nicht verfügbar", "Ihre Anmeldung kann dem Dienst gerade nicht bestätigt werden. Bitte versuchen Sie es später erneut.",
                "Service temporarily unavailable", "Your login cannot be confirmed to the service right now. Please try again later."),
            Self::UpstreamTimeout => t!(GATEWAY_TIMEOUT, "upstream_timeout",
                "Dienst antwortet nicht", "Der Dienst hinter diesem Zugang hat nicht rechtzeitig geantwortet. Bitte versuchen Sie es später erneut.",
                "Service did not answer", "The service behind this gateway did not answer in time. Please try again later."),
            Self::LoginFailed => t!(BAD_REQUEST, "login_failed",
                "Anmeldung fehlgeschlagen", "Die Anmeldung konnte nicht abgeschlossen werden. Bitte versuchen Sie es erneut.",
                "Login failed", "The login could not be completed. Please try again."),
            Self::LoginExpired => t!(BAD_REQUEST, "login_expired",
                "Anmeldung abgelaufen", "Die Anmeldung hat zu lange gedauert oder wurde in einem anderen Browser begonnen. Bitte melden Sie sich erneut an.",
                "Login expired", "The login took too long or was started in another browser. Please log in again."),
            Self::Cancelled => t!(FORBIDDEN, "login_cancelled",
                "Anmeldung abgebrochen", "Die Anmeldung wurde abgebrochen oder abgelehnt.",
                "Login cancelled", "The login was cancelled or refused."),
            Self::CsrfFailed => t!(FORBIDDEN, "csrf_failed",
                "Formular abgelaufen", "Das Formular wurde nicht von dieser Seite gesendet oder ist abgelaufen. Bitte laden Sie die Seite neu und versuchen Sie es erneut.",
                "Form expired", "The form was not sent from this page or has expired. Please reload the page and try again."),
            Self::PolicyStoreDown => t!(SERVICE_UNAVAILABLE, "policy_store_unavailable",
                "Richtlinienspeicher nicht erreichbar", "Der Speicher der Zugriffsrichtlinien ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut.",
                "Policy store unavailable", "The policy store cannot be reached right now. Please try again later."),
            Self::ChangeUnrecorded => t!(SERVICE_UNAVAILABLE, "change_unrecorded",
                "Änderung nicht protokolliert", "Die Änderung ist gespeichert, konnte aber nicht im Prüfprotokoll verzeichnet werden. Bitte prüfen Sie das Protokoll (stadttor audit verify) und /readyz.",
                "Change not recorded", "The change is stored, but the audit log could not record it. Please check the log (stadttor audit verify) and /readyz."),
        }
    }

    /// The status it is usually answered with.
    pub fn status(self) -> StatusCode {
        self.template().status
    }

    /// The machine-readable code (`code` in problem details).
    pub fn code(self) -> &'static str {
        self.template().code
    }

    /// Title and text in `lang`.
    pub fn text(self, lang: Lang) -> (&'static str, &'static str) {
        let t = self.template();
        let x = match lang {
            Lang::De => t.de,
            Lang::En => t.en,
        };
        (x.title, x.text)
    }

    /// The answer for this problem with its usual status and no link.
    pub(crate) fn answer(self) -> ErrorPage<'static> {
        ErrorPage {
            problem: self,
            status: self.status(),
            link: None,
        }
    }
}

/// One error answer before rendering: the problem, the status (the
/// problem's own unless a caller has a more precise one) and an optional
/// link offered on the page (a login to try again).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorPage<'a> {
    problem: Problem,
    status: StatusCode,
    link: Option<&'a str>,
}

impl<'a> ErrorPage<'a> {
    /// With another status than the problem's own.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// With a "log in again" link to `href` (a path the gateway chose).
    pub(crate) fn login_link<'b>(self, href: &'b str) -> ErrorPage<'b> {
        ErrorPage {
            problem: self.problem,
            status: self.status,
            link: Some(href),
        }
    }

    /// The response for `aud`, with the headers every rendering has (see
    /// the module doc); the caller's audience function adds the rest.
    pub(crate) fn render(&self, aud: Audience, request_id: &str) -> Response<ProxyBody> {
        let (ctype, body, language) = match aud.format {
            Format::Html => (
                "text/html; charset=utf-8",
                self.html(aud.lang, request_id),
                both(aud.lang),
            ),
            Format::Problem => (
                "application/problem+json",
                self.json(aud.lang, request_id),
                aud.lang.code(),
            ),
            Format::Plain => (
                "text/plain; charset=utf-8",
                self.plain(aud.lang, request_id),
                both(aud.lang),
            ),
        };
        let mut r = content(self.status, HeaderValue::from_static(ctype), body);
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Accept-Language"),
        );
        h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(language));
        if aud.format == Format::Html {
            if let Ok(v) = HeaderValue::from_str(html::csp()) {
                h.insert(header::CONTENT_SECURITY_POLICY, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(REQUEST_ID, v);
        }
        r
    }

    /// The page: the first language under `h1`, the other in its own
    /// section with its own `lang` and `h2`.
    fn html(&self, lang: Lang, request_id: &str) -> String {
        let other = lang.other();
        let (title, first) = self.problem.text(lang);
        let body = format!(
            "{}<section lang=\"{code}\" aria-labelledby=\"alt\">\n<h2 id=\"alt\">{}</h2>\n{}</section>",
            self.passage(lang, first, request_id),
            esc(self.problem.text(other).0),
            self.passage(other, self.problem.text(other).1, request_id),
            code = other.code(),
        );
        html::page(lang, title, &body)
    }

    /// Text, link and request id of one language.
    fn passage(&self, lang: Lang, text: &str, request_id: &str) -> String {
        let link = self
            .link
            .map(|href| {
                let label = match lang {
                    Lang::De => "Erneut anmelden",
                    Lang::En => "Log in again",
                };
                format!("<p><a href=\"{}\">{label}</a></p>\n", esc(href))
            })
            .unwrap_or_default();
        format!(
            "<p>{}</p>\n{link}<p class=\"rid\">{}: <code>{}</code></p>\n",
            esc(text),
            rid_label(lang),
            esc(request_id)
        )
    }

    /// RFC 9457 problem details; `detail` in `lang`, `code` and
    /// `request_id` as extension members, the occurrence as `urn:uuid:`.
    fn json(&self, lang: Lang, request_id: &str) -> String {
        serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or(""),
            "status": self.status.as_u16(),
            "detail": self.problem.text(lang).1,
            "instance": format!("urn:uuid:{request_id}"),
            "code": self.problem.code(),
            "request_id": request_id,
        })
        .to_string()
    }

    /// Status line, the text in both languages, the request id.
    fn plain(&self, lang: Lang, request_id: &str) -> String {
        let other = lang.other();
        format!(
            "{} {}\n{}\n{}\n{}: {request_id}\n{}: {request_id}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.problem.text(lang).1,
            self.problem.text(other).1,
            rid_label(lang),
            rid_label(other),
        )
    }
}

/// What the request id is called.
fn rid_label(lang: Lang) -> &'static str {
    match lang {
        Lang::De => "Vorgangsnummer",
        Lang::En => "Request id",
    }
}

/// `Content-Language` of a bilingual answer, the first language first.
fn both(lang: Lang) -> &'static str {
    match lang {
        Lang::De => "de, en",
        Lang::En => "en, de",
    }
}

#[cfg(test)]
pub(crate) mod tests;
