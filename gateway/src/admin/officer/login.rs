//! The officers' OIDC login on the admin listener. The login transaction
//! and every check of the authorization response (state, PKCE, nonce,
//! RFC 9207 `iss`, state and code single use in the session store, token
//! verification) are the citizens' ([`crate::authn::login_tx`]); what is
//! officer-specific is here: which claim names an officer, and the officer
//! session cookie.
//!
//! The officer's name is the configured claim (`officer_subject_claim`).
//! A claim that the provider also verifies (`email` → `email_verified`,
//! `phone_number` → `phone_number_verified`, or the configured
//! `officer_subject_verified_claim`) must be verified (`true`), or the
//! login is refused: an unverified e-mail address must never name an
//! officer (see [`crate::policy::verified_claim`]).

use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use stadttor_audit::event::{Event, Outcome};

use super::Context;
use super::{OfficerSession, Officers, LOGIN_TIMEOUT, SESSION};
use crate::authn::cookie;
use crate::authn::login_tx::{self, BeginError, Completed, LoginSite, Refused};

use crate::authn::provider::{unix_now, Login};
use crate::authn::random_token;
use crate::http::body::ProxyBody;
use crate::policy::SubjectRefused;
use crate::respond::officer::{html, problem, redirect};
use crate::respond::{Audience, Problem};

/// The officers' login transaction cookies: this and the state's first
/// characters.
const TX_PREFIX: &str = "__Host-stadttor-officer-login-";

/// Where an officer login runs: the admin listener's host, the officers'
/// redirect URI, transaction cookies `__Host-stadttor-officer-login-…`.
fn site<'a>(officers: &'a Officers, host: &'a str) -> LoginSite<'a> {
    LoginSite {
        cookies: &officers.cookies,
        cookie_prefix: TX_PREFIX,
        host,
        redirect_uri: &officers.cfg.redirect_uri,
        timeout: Duration::from_secs(LOGIN_TIMEOUT),
    }
}

pub(super) async fn start_login(
    shared: &Context,
    officers: &Officers,
    host: &str,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let Some(p) = shared
        .auth
        .as_ref()
        .and_then(|a| a.provider(&officers.cfg.provider))
    else {
        tracing::error!(request_id, "officer provider not configured");
        return problem(Problem::ProviderDown.answer(), aud, request_id);
    };
    match login_tx::begin(&site(officers, host), p, None, false, "/policy").await {
        Ok(started) => {
            tracing::info!(request_id, provider = %officers.cfg.provider, "officer login started");
            redirect(&started.url, &[started.set_cookie])
        }
        Err(BeginError::Seal) => {
            tracing::error!(request_id, "officer login: cannot seal the transaction");
            problem(Problem::Internal.answer(), aud, request_id)
        }
        Err(BeginError::Provider(e)) => {
            tracing::warn!(request_id, error = %e, "officer login: provider unavailable");
            problem(Problem::ProviderDown.answer(), aud, request_id)
        }
    }
}

/// The officers' callback: the citizens' checks ([`login_tx::complete`]),
/// then the officer's name and the officer session.
pub(super) async fn callback(
    shared: &Context,
    officers: &Officers,
    req: &Request<Incoming>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let host = crate::http::credentials::request_host(req.uri(), req.headers());
    let Some(auth) = shared.auth.as_ref() else {
        tracing::error!(request_id, "officer provider not configured");
        return problem(Problem::ProviderDown.answer(), aud, request_id);
    };
    let site = site(officers, &host);
    let done = login_tx::complete(auth, &site, &officers.cfg.provider, &query, req.headers()).await;
    let Completed { login, cookie, .. } = match done {
        Ok(c) => c,
        Err(r) => return refuse(&r.why, r.clear.as_deref(), aud, request_id),
    };
    let name = match officer_name(officers, &login) {
        Ok(n) => n,
        Err(e @ SubjectRefused::Unverified { .. }) => {
            return refuse_unverified(shared, &login.sub, &e, &cookie, aud, request_id)
        }
        Err(SubjectRefused::Missing(_)) => {
            tracing::warn!(request_id, "officer login refused: no officer name claim");
            return error_page(
                StatusCode::BAD_REQUEST,
                Problem::LoginFailed,
                Some(&cookie),
                aud,
                request_id,
            );
        }
    };
    let s = OfficerSession {
        name,
        csrf: random_token(24),
        exp: unix_now() + officers.lifetime,
    };
    let Some(sealed) = serde_json::to_vec(&s)
        .ok()
        .and_then(|j| officers.cookies.seal(SESSION, &j))
    else {
        tracing::error!(request_id, "officer login: cannot seal the session");
        return problem(Problem::Internal.answer(), aud, request_id);
    };
    tracing::info!(request_id, provider = %officers.cfg.provider, "officer login completed");
    if let Some(log) = &shared.audit {
        let _ = log.record(
            &Event::new("admin.login", Outcome::Success)
                .target("policy")
                .request_id(request_id)
                .subject(log.pseudonym("officer", &s.name)),
        );
    }
    redirect(
        "/policy",
        &[
            cookie::clear(&cookie),
            cookie::set(SESSION, &sealed, Some(officers.lifetime)),
        ],
    )
}

/// A refused authorization response: logged with the reason, a page
/// without it, the transaction cookie cleared.
fn refuse(
    why: &Refused,
    clear: Option<&str>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    tracing::warn!(request_id, reason = %why, "officer login refused");
    error_page(why.status(), why.problem(), clear, aud, request_id)
}

/// The error page of a failed officer login, back to `/policy`, clearing
/// the transaction cookie `clear`.
fn error_page(
    status: StatusCode,
    what: Problem,
    clear: Option<&str>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let mut r = problem(
        what.answer().status(status).login_link("/policy"),
        aud,
        request_id,
    );
    if let Some(name) = clear {
        if let Ok(v) = HeaderValue::from_str(&cookie::clear(name)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The officer's name from a verified login: `sub`, or the configured
/// claim if the provider verified it ([`crate::policy::verified_claim`]).
fn officer_name(officers: &Officers, login: &Login) -> Result<String, SubjectRefused> {
    let claim = &officers.cfg.subject_claim;
    if claim == "sub" {
        return Ok(login.sub.clone());
    }
    let verified_by = officers.cfg.subject_verified_claim.as_deref();
    crate::policy::verified_claim(&login.claims, claim, verified_by).map(str::to_owned)
}

/// Refuses a login whose name claim is not verified: a page that says
/// why, the login cookie cleared, a denied `admin.login` audit event.
fn refuse_unverified(
    shared: &Context,
    sub: &str,
    e: &SubjectRefused,
    tx_cookie: &str,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    tracing::warn!(request_id, reason = %e, "officer login refused: claim not verified");
    if let Some(log) = &shared.audit {
        let _ = log.record(
            &Event::new("admin.login", Outcome::Denied)
                .target("policy")
                .request_id(request_id)
                .subject(log.pseudonym("officer", sub))
                .attr("reason", e.to_string()),
        );
    }
    let mut r = html(
        StatusCode::FORBIDDEN,
        super::page::unverified(aud.lang, &e.to_string(), request_id),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie::clear(tx_cookie)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
