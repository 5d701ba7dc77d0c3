//! The one place where errors and refusals become responses, and the only
//! builders of HTML, JSON and redirect responses in the gateway.
//!
//! Every failure on the request path is a [`GatewayError`]. Each variant says
//! whose fault it is (client, upstream, gateway) and maps to one
//! [`Problem`], whose template ([`problem`]) gives the status and a fixed
//! text in German and English. Internals (addresses, error chains) go to
//! the log under the request id, never into the response. Authentication
//! and authorization refusals are a [`Refusal`], rendered from the same
//! templates.
//!
//! Every error answer comes in the form the client asks for
//! ([`negotiate`]): an accessible German-first page with the English text
//! for browsers ([`html`] is the frame of every page the gateway writes),
//! RFC 9457 problem details for programs, plain text for clients that
//! accept neither; always with the request id.
//!
//! Each audience has one set of security headers, applied by one function:
//!
//! - citizens ([`harden_citizen`]): `Cache-Control: no-store` on every page
//!   the gateway writes itself, and the pages' own strict CSP
//!   ([`html::csp`]); the route's security headers (HSTS, `X-Frame-Options`,
//!   …, `headers::security_headers_for`) are added to every response on the
//!   public listeners by `proxy` where the answer has none;
//! - officers and the admin listener ([`officer::harden`]): no-store, a
//!   strict CSP without scripts, `X-Frame-Options: DENY`, nosniff,
//!   `Referrer-Policy: no-referrer` and HSTS;
//! - machines ([`harden_api`]): nosniff, and no-store unless the answer
//!   says how long it may be cached (JWKS).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::http::body::ProxyBody;

pub(crate) mod html;
mod negotiate;
mod problem;

pub use negotiate::{is_api, Audience, Format, Lang};
pub use problem::Problem;

/// A failure on the request path.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Malformed or ambiguous request framing; the connection is closed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No route matches host and path.
    #[error("no route")]
    NoRoute,
    /// A gateway endpoint has nothing at this path (a signature, a key).
    #[error("not found")]
    NotFound,
    /// The request head is larger than `max_header_bytes`; the connection
    /// is closed.
    #[error("request head too large")]
    HeadersTooLarge,
    /// The request body is larger than the route allows.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The client sent its body too slowly.
    #[error("request body timed out")]
    RequestTimeout,
    /// No upstream address could be connected to.
    #[error("upstream {upstream} unreachable: {detail}")]
    UpstreamUnreachable {
        /// The upstream pool.
        upstream: String,
        /// What happened (logged only).
        detail: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream {upstream} timed out")]
    UpstreamTimeout {
        /// The upstream pool.
        upstream: String,
    },
    /// The upstream broke the exchange.
    #[error("upstream {upstream} failed: {detail}")]
    UpstreamFailed {
        /// The upstream pool.
        upstream: String,
        /// What happened (logged only).
        detail: String,
    },
    /// The gateway is shutting down.
    #[error("draining")]
    Draining,
    /// The audit log cannot record, and the route requires it.
    #[error("audit log unavailable: {0}")]
    AuditUnavailable(String),
    /// A response that must be signed could not be.
    #[error("response signing failed: {0}")]
    SigningFailed(String),
    /// Already answered by a stage (login redirect, 401, 403, gateway
    /// endpoint); the response goes out as it is.
    #[error("answered by the gateway")]
    Answered(Box<http::Response<ProxyBody>>),
    /// Anything else: a bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error and its sources, `a: b: c`, for logs (never for clients). A
/// source whose text its wrapper already ends with (`#[error("…: {0}")]`)
/// is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Whose fault an error is, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something wrong.
    Downstream,
    /// The service behind the gateway failed.
    Upstream,
    /// The gateway itself.
    Internal,
}

impl GatewayError {
    /// Whose fault it is.
    pub fn source(&self) -> Source {
        match self {
            Self::BadRequest(_)
            | Self::NoRoute
            | Self::NotFound
            | Self::PayloadTooLarge
            | Self::HeadersTooLarge
            | Self::RequestTimeout
            | Self::Answered(_) => Source::Downstream,
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UpstreamFailed { .. } => Source::Upstream,
            Self::Draining
            | Self::AuditUnavailable(_)
            | Self::Internal(_)
            | Self::SigningFailed(_) => Source::Internal,
        }
    }

    /// What the client is told.
    pub fn problem(&self) -> Problem {
        match self {
            Self::BadRequest(_) => Problem::BadRequest,
            Self::NoRoute | Self::NotFound => Problem::NotFound,
            Self::PayloadTooLarge => Problem::PayloadTooLarge,
            Self::HeadersTooLarge => Problem::HeadersTooLarge,
            Self::RequestTimeout => Problem::RequestTimeout,
            Self::UpstreamUnreachable { .. } => Problem::UpstreamUnreachable,
            Self::UpstreamFailed { .. } => Problem::UpstreamFailed,
            Self::UpstreamTimeout { .. } => Problem::UpstreamTimeout,
            Self::Draining => Problem::Draining,
            Self::AuditUnavailable(_) => Problem::AuditUnavailable,
            Self::Internal(_) | Self::Answered(_) => Problem::Internal,
            Self::SigningFailed(_) => Problem::SigningFailed,
        }
    }

    /// Whether the connection must be closed after answering.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_)
                | Self::PayloadTooLarge
                | Self::HeadersTooLarge
                | Self::RequestTimeout
        )
    }

    /// The response the client sees: the problem's template for `aud`,
    /// with the request id. (An `Answered` error is sent as it is by the
    /// caller and never rendered; here it would be a 500.)
    pub fn to_response(&self, aud: Audience, request_id: &str) -> Response<ProxyBody> {
        let mut resp = self.problem().answer().render(aud, request_id);
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// An authentication or authorization refusal on a route, rendered from
/// the same templates for the client's [`Audience`].
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No or an invalid credential, for a client that cannot log in
    /// interactively: 401 with this `WWW-Authenticate` challenge.
    Unauthenticated {
        /// The `WWW-Authenticate` value.
        challenge: String,
    },
    /// A bearer token of too low a level (RFC 9470): 401 with
    /// `insufficient_user_authentication` and the `acr` values to ask for.
    StepUp {
        /// The provider's `acr` value (or eIDAS URI) of the level needed.
        acr: String,
    },
    /// A browser needs to log in, but the request cannot be redirected
    /// (not GET/HEAD): 401 with a link to this login and
    /// `WWW-Authenticate: stadttor-login`.
    LoginRequired {
        /// Where the page's login link goes.
        login: String,
    },
    /// Denied by the policy: 403.
    Forbidden,
    /// A client certificate of too low a level: 403.
    LevelTooLow,
    /// Something authentication depends on cannot answer (fail closed):
    /// 503 with this problem.
    Unavailable(Problem),
}

impl Refusal {
    /// The response for the client.
    pub(crate) fn into_response(self, aud: Audience, request_id: &str) -> Response<ProxyBody> {
        let (page, challenge) = match &self {
            Self::Unauthenticated { challenge } => {
                (Problem::LoginRequired.answer(), Some(challenge.clone()))
            }
            Self::StepUp { acr } => (
                Problem::StepUp.answer(),
                Some(format!(
                    "Bearer realm=\"stadttor\", error=\"insufficient_user_authentication\", \
                     error_description=\"a higher level of assurance is required\", acr_values=\"{acr}\""
                )),
            ),
            Self::LoginRequired { login } => (
                Problem::LoginRequired.answer().login_link(login),
                Some("stadttor-login".to_owned()),
            ),
            Self::Forbidden => (Problem::Forbidden.answer(), None),
            Self::LevelTooLow => (Problem::LevelTooLow.answer(), None),
            Self::Unavailable(p) => (
                p.answer().status(StatusCode::SERVICE_UNAVAILABLE),
                None,
            ),
        };
        let mut r = page.render(aud, request_id);
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// A complete body.
pub(crate) fn body(s: impl Into<Bytes>) -> ProxyBody {
    Full::new(s.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response with this status, content type and body, and no further
/// headers (the caller's audience function adds them).
pub(crate) fn content(
    status: StatusCode,
    content_type: HeaderValue,
    b: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(body(b));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r
}

/// The citizens' set: pages the gateway writes itself are never cached.
/// (The route's security headers are added by `proxy`.)
pub(crate) fn harden_citizen(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The machines' set: nosniff, and no-store unless a cache lifetime is set.
pub(crate) fn harden_api(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A citizen-facing HTML page (made with [`html::page`]) that is never
/// cached, under the pages' own CSP.
pub(crate) fn html(status: StatusCode, page: String) -> Response<ProxyBody> {
    let mut r = harden_citizen(content(
        status,
        HeaderValue::from_static("text/html; charset=utf-8"),
        page,
    ));
    if let Ok(v) = HeaderValue::from_str(html::csp()) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// The page that sends the browser on with an HTTP-POST form to
/// `action` (the SAML HTTP-POST binding): never cached, under a CSP that
/// allows its one auto-submit script by hash and forms only to `action`'s
/// origin. Without JavaScript the citizen presses the button.
pub(crate) fn post_form(
    page: String,
    action_origin: &str,
    cookies: &[String],
) -> Response<ProxyBody> {
    let mut r = harden_citizen(content(
        StatusCode::OK,
        HeaderValue::from_static("text/html; charset=utf-8"),
        page,
    ));
    if let Ok(v) = HeaderValue::from_str(&html::csp_post_form(action_origin)) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// A 303 to `location` with cookies to set (citizens).
pub(crate) fn redirect(location: &str, cookies: Vec<String>) -> Response<ProxyBody> {
    harden_citizen(see_other(location, &cookies))
}

/// An empty 200 that is never cached (back-channel logout).
pub(crate) fn empty_ok() -> Response<ProxyBody> {
    harden_citizen(Response::new(body(Bytes::new())))
}

/// The gateway's JWK set, cacheable for five minutes.
pub(crate) fn jwks(set: String) -> Response<ProxyBody> {
    let mut r = content(
        StatusCode::OK,
        HeaderValue::from_static("application/jwk-set+json"),
        set,
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    harden_api(r)
}

fn see_other(location: &str, cookies: &[String]) -> Response<ProxyBody> {
    let mut r = Response::new(body(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The officers' pages and API and the admin listener.
pub(crate) mod officer {
    use super::*;

    /// The officers' and admin listener's security headers.
    pub(crate) fn harden(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
        r
    }

    /// An officer page.
    pub(crate) fn html(status: StatusCode, page: String) -> Response<ProxyBody> {
        harden(content(
            status,
            HeaderValue::from_static("text/html; charset=utf-8"),
            page,
        ))
    }

    /// An officer API answer.
    pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
        harden(content(
            status,
            HeaderValue::from_static("application/json"),
            v.to_string(),
        ))
    }

    /// An error from the templates, for officers or the admin listener.
    pub(crate) fn problem(
        page: super::problem::ErrorPage<'_>,
        aud: Audience,
        request_id: &str,
    ) -> Response<ProxyBody> {
        harden(page.render(aud, request_id))
    }

    /// A 303 to `location` with cookies to set.
    pub(crate) fn redirect(location: &str, cookies: &[String]) -> Response<ProxyBody> {
        harden(see_other(location, cookies))
    }

    /// An admin listener answer (metrics, health, readiness, JWKS).
    pub(crate) fn admin(
        status: StatusCode,
        content_type: &'static str,
        b: String,
    ) -> Response<ProxyBody> {
        harden(content(status, HeaderValue::from_static(content_type), b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Response<ProxyBody>) -> String {
        problem::tests::text_of(r)
    }

    const EVERY: [Audience; 6] = [
        Audience {
            format: Format::Html,
            lang: Lang::De,
        },
        Audience {
            format: Format::Html,
            lang: Lang::En,
        },
        Audience {
            format: Format::Problem,
            lang: Lang::De,
        },
        Audience {
            format: Format::Problem,
            lang: Lang::En,
        },
        Audience {
            format: Format::Plain,
            lang: Lang::De,
        },
        Audience {
            format: Format::Plain,
            lang: Lang::En,
        },
    ];

    #[test]
    fn responses_never_carry_internals() {
        let secret = "10.1.2.3:8080 connection refused: tcp connect error: os error 111";
        let errors = [
            GatewayError::UpstreamUnreachable {
                upstream: "secret-backend".into(),
                detail: secret.into(),
            },
            GatewayError::UpstreamFailed {
                upstream: "secret-backend".into(),
                detail: secret.into(),
            },
            GatewayError::UpstreamTimeout {
                upstream: "secret-backend".into(),
            },
            GatewayError::AuditUnavailable(secret.into()),
            GatewayError::SigningFailed(secret.into()),
            GatewayError::Internal(secret.into()),
            GatewayError::BadRequest("secret-backend"),
        ];
        for e in &errors {
            for aud in EVERY {
                let resp = e.to_response(aud, "rid-1");
                assert_eq!(resp.status(), e.problem().status());
                let body = text(resp);
                assert!(body.contains("rid-1"), "{body}");
                assert!(
                    !body.contains("10.1.2.3")
                        && !body.contains("secret-backend")
                        && !body.contains("os error"),
                    "{e:?} leaks: {body}"
                );
            }
        }
    }

    #[test]
    fn each_error_has_its_status() {
        let aud = EVERY[0];
        for (e, status) in [
            (GatewayError::BadRequest("x"), 400),
            (GatewayError::NoRoute, 404),
            (GatewayError::NotFound, 404),
            (GatewayError::RequestTimeout, 408),
            (GatewayError::PayloadTooLarge, 413),
            (GatewayError::HeadersTooLarge, 431),
            (GatewayError::Internal("x".into()), 500),
            (
                GatewayError::UpstreamUnreachable {
                    upstream: "u".into(),
                    detail: "d".into(),
                },
                502,
            ),
            (GatewayError::Draining, 503),
            (GatewayError::AuditUnavailable("x".into()), 503),
            (
                GatewayError::UpstreamTimeout {
                    upstream: "u".into(),
                },
                504,
            ),
        ] {
            assert_eq!(e.to_response(aud, "r").status().as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn framing_errors_close_the_connection() {
        let aud = EVERY[2];
        let r = GatewayError::BadRequest("cl+te").to_response(aud, "x");
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = GatewayError::HeadersTooLarge.to_response(aud, "x");
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = GatewayError::NoRoute.to_response(aud, "x");
        assert!(r.headers().get(header::CONNECTION).is_none());
    }

    #[test]
    fn refusals_keep_their_challenges() {
        let api = EVERY[2];
        let r = Refusal::StepUp { acr: "high".into() }.into_response(api, "rid");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            c.contains("insufficient_user_authentication") && c.contains("acr_values=\"high\"")
        );
        let v: serde_json::Value = serde_json::from_str(&text(r)).unwrap();
        assert_eq!(v["code"], "insufficient_user_authentication");
        assert_eq!(v["request_id"], "rid");

        let r = Refusal::LoginRequired {
            login: "/.stadttor/login?route=a".into(),
        }
        .into_response(EVERY[0], "rid");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "stadttor-login");
        assert!(text(r).contains("href=\"/.stadttor/login?route=a\""));

        let r = Refusal::Unavailable(Problem::ProviderDown).into_response(api, "rid");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = Refusal::LevelTooLow.into_response(EVERY[0], "rid");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }
}
