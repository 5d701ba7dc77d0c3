//! The one place where errors and refusals become responses, and the only
//! builders of plain, HTML, JSON and redirect responses in the gateway.
//!
//! Every failure on the request path is a [`GatewayError`]. Each variant says
//! whose fault it is (client, upstream, gateway) and maps to one status and
//! one short, fixed text. Internals (addresses, error chains) go to the log
//! under the request id, never into the response. Authentication and
//! authorization refusals are a [`Refusal`].
//!
//! Each audience has one set of security headers, applied by one function:
//!
//! - citizens ([`harden_citizen`]): `Cache-Control: no-store` on every page
//!   the gateway writes itself; the route's security headers (HSTS, CSP,
//!   `X-Frame-Options`, …, `headers::security_headers_for`) are added to
//!   every response on the public listeners by `proxy`;
//! - officers and the admin listener ([`officer::harden`]): no-store, a
//!   strict CSP without scripts, `X-Frame-Options: DENY`, nosniff,
//!   `Referrer-Policy: no-referrer` and HSTS;
//! - machines ([`harden_api`]): nosniff, and no-store unless the answer
//!   says how long it may be cached (JWKS).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::http::body::ProxyBody;

/// A failure on the request path.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Malformed or ambiguous request framing; the connection is closed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No route matches host and path.
    #[error("no route")]
    NoRoute,
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
            | Self::PayloadTooLarge
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

    fn status_and_text(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "The request is malformed."),
            Self::NoRoute => (
                StatusCode::NOT_FOUND,
                "No service is published at this address.",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is larger than this service accepts.",
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive in time.",
            ),
            Self::UpstreamUnreachable { .. } => (
                StatusCode::BAD_GATEWAY,
                "The service behind this gateway is not reachable right now.",
            ),
            Self::UpstreamFailed { .. } => (
                StatusCode::BAD_GATEWAY,
                "The service behind this gateway gave no valid answer.",
            ),
            Self::UpstreamTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "The service behind this gateway did not answer in time.",
            ),
            Self::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway is restarting; please try again.",
            ),
            Self::AuditUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "This service is unavailable because its access cannot be recorded right now.",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The gateway could not handle the request.",
            ),
            Self::SigningFailed(_) => (
                StatusCode::BAD_GATEWAY,
                "The service's answer must be signed and could not be; it was withheld.",
            ),
            // Never rendered: the stage's own response is sent.
            Self::Answered(r) => (r.status(), ""),
        }
    }

    /// Whether the connection must be closed after answering.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_) | Self::PayloadTooLarge | Self::RequestTimeout
        )
    }

    /// The response the client sees: status, fixed text and request id.
    pub fn to_response(&self, request_id: &str) -> Response<ProxyBody> {
        let (status, text) = self.status_and_text();
        let mut resp = plain(status, text, request_id);
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// An authentication or authorization refusal on a route. Pages for
/// browsers are rendered by the caller (`authn::pages`), so this module
/// does not depend on the login code.
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
    /// (not GET/HEAD): 401 with this page and `WWW-Authenticate: stadttor-login`.
    LoginRequired {
        /// The rendered page.
        page: String,
    },
    /// Denied by the policy: 403, with this page for browsers.
    Forbidden {
        /// The rendered page (browsers), or `None` (plain text).
        page: Option<String>,
    },
    /// A client certificate of too low a level: 403.
    LevelTooLow,
    /// Something authentication depends on cannot answer (fail closed): 503.
    Unavailable {
        /// What, in a few words (plain text).
        what: &'static str,
        /// The rendered page (browsers), or `None` (plain text).
        page: Option<String>,
    },
}

impl Refusal {
    /// The response for the client.
    pub(crate) fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        match self {
            Self::Unauthenticated { challenge } => unauthorized(&challenge, request_id),
            Self::StepUp { acr } => unauthorized(
                &format!(
                    "Bearer realm=\"stadttor\", error=\"insufficient_user_authentication\", \
                     error_description=\"a higher level of assurance is required\", acr_values=\"{acr}\""
                ),
                request_id,
            ),
            Self::LoginRequired { page } => {
                let mut r = html(StatusCode::UNAUTHORIZED, page);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("stadttor-login"),
                );
                r
            }
            Self::Forbidden { page: Some(page) } => html(StatusCode::FORBIDDEN, page),
            Self::Forbidden { page: None } => {
                plain(StatusCode::FORBIDDEN, "access denied by policy", request_id)
            }
            Self::LevelTooLow => plain(
                StatusCode::FORBIDDEN,
                "level of assurance too low",
                request_id,
            ),
            Self::Unavailable { page: Some(page), .. } => {
                html(StatusCode::SERVICE_UNAVAILABLE, page)
            }
            Self::Unavailable { what, page: None } => {
                plain(StatusCode::SERVICE_UNAVAILABLE, what, request_id)
            }
        }
    }
}

/// A 401 with the standard text and `challenge` as `WWW-Authenticate`.
fn unauthorized(challenge: &str, request_id: &str) -> Response<ProxyBody> {
    let mut r = plain(
        StatusCode::UNAUTHORIZED,
        "authentication required",
        request_id,
    );
    if let Ok(v) = HeaderValue::from_str(challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
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

/// A citizen-facing HTML page that is never cached.
pub(crate) fn html(status: StatusCode, page: String) -> Response<ProxyBody> {
    harden_citizen(content(
        status,
        HeaderValue::from_static("text/html; charset=utf-8"),
        page,
    ))
}

/// A short plain-text answer with status line and request id.
pub(crate) fn plain(status: StatusCode, text: &str, request_id: &str) -> Response<ProxyBody> {
    let b = format!(
        "{} {}\n{text}\nRequest id: {request_id}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    harden_citizen(content(
        status,
        HeaderValue::from_static("text/plain; charset=utf-8"),
        b,
    ))
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

    /// One line of plain text.
    pub(crate) fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
        harden(content(
            status,
            HeaderValue::from_static("text/plain; charset=utf-8"),
            format!("{text}\n"),
        ))
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

    #[test]
    fn responses_never_carry_internals() {
        let e = GatewayError::UpstreamUnreachable {
            upstream: "secret-backend".into(),
            detail: "10.1.2.3:8080 connection refused".into(),
        };
        let resp = e.to_response("rid-1");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let body = futures_executor(resp.into_body());
        assert!(body.contains("rid-1"));
        assert!(!body.contains("10.1.2.3") && !body.contains("secret-backend"));
    }

    fn futures_executor(b: ProxyBody) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(b.collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn framing_errors_close_the_connection() {
        let r = GatewayError::BadRequest("cl+te").to_response("x");
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = GatewayError::NoRoute.to_response("x");
        assert!(r.headers().get(header::CONNECTION).is_none());
    }
}
