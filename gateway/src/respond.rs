//! The one place where errors become responses.
//!
//! Every failure on the request path is a [`GatewayError`]. Each variant says
//! whose fault it is (client, upstream, gateway) and maps to one status and
//! one short, fixed text. Internals (addresses, error chains) go to the log
//! under the request id, never into the response.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::body::ProxyBody;

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
        let body = format!(
            "{} {}\n{text}\nRequest id: {request_id}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let mut resp = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
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
