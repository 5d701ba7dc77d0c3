//! The officers' OIDC login on the admin listener: the authorization
//! request (state, nonce and PKCE kept in a sealed `__Host-` cookie) and
//! the callback that turns a verified login into an officer session.
//!
//! The officer's name is the configured claim (`officer_subject_claim`).
//! A claim that the provider also verifies (`email` → `email_verified`,
//! `phone_number` → `phone_number_verified`, or the configured
//! `officer_subject_verified_claim`) must be verified (`true`), or the
//! login is refused: an unverified e-mail address must never name an
//! officer (see [`crate::policy::verified_claim`]).

use std::collections::HashMap;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use stadttor_audit::event::{Event, Outcome};

use super::{
    ct_eq, html, plain, redirect, OfficerSession, Officers, LOGIN, LOGIN_TIMEOUT, SESSION,
};
use crate::auth::cookie;
use crate::auth::pages::Lang;
use crate::auth::provider::{unix_now, Login};
use crate::auth::random_token;
use crate::body::ProxyBody;
use crate::policy::SubjectRefused;
use crate::proxy::Shared;

#[derive(Debug, Serialize, Deserialize)]
struct LoginTx {
    state: String,
    nonce: String,
    pkce: String,
    issuer: String,
    created: u64,
}

pub(super) async fn start_login(
    shared: &Shared,
    officers: &Officers,
    lang: Lang,
    request_id: &str,
) -> Response<ProxyBody> {
    let Some(p) = shared
        .auth
        .as_ref()
        .and_then(|a| a.provider(&officers.cfg.provider))
    else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "officer provider not configured",
        );
    };
    let state = random_token(24);
    let nonce = random_token(24);
    match p
        .authorization_request_at(&officers.cfg.redirect_uri, &state, &nonce, None, false)
        .await
    {
        Ok(req) => {
            let tx = LoginTx {
                state,
                nonce,
                pkce: req.pkce_verifier,
                issuer: req.issuer,
                created: unix_now(),
            };
            let Some(sealed) = serde_json::to_vec(&tx)
                .ok()
                .and_then(|j| officers.cookies.seal(LOGIN, &j))
            else {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot start a login");
            };
            tracing::info!(request_id, provider = %officers.cfg.provider, "officer login started");
            redirect(
                &req.url,
                &[cookie::set(LOGIN, &sealed, Some(LOGIN_TIMEOUT))],
            )
        }
        Err(e) => {
            tracing::warn!(request_id, error = %e, "officer login: provider unavailable");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::auth::pages::error(
                    lang,
                    crate::auth::pages::Problem::ProviderDown,
                    request_id,
                    None,
                ),
            )
        }
    }
}

pub(super) async fn callback(
    shared: &Shared,
    officers: &Officers,
    req: &Request<Incoming>,
    lang: Lang,
    request_id: &str,
) -> Response<ProxyBody> {
    let q: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let fail = |why: &str| {
        tracing::warn!(request_id, reason = why, "officer login refused");
        let mut r = html(
            StatusCode::BAD_REQUEST,
            crate::auth::pages::error(
                lang,
                crate::auth::pages::Problem::LoginFailed,
                request_id,
                Some("/policy"),
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&cookie::clear(LOGIN)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    let tx = cookie::get(req.headers(), LOGIN)
        .and_then(|raw| officers.cookies.open(LOGIN, raw))
        .and_then(|p| serde_json::from_slice::<LoginTx>(&p).ok());
    let Some(tx) = tx else {
        return fail("no login transaction in this browser");
    };
    let state = q.get("state").map(String::as_str).unwrap_or("");
    if !ct_eq(state, &tx.state) {
        return fail("state does not match the transaction");
    }
    if unix_now() > tx.created + LOGIN_TIMEOUT {
        return fail("login transaction expired");
    }
    if q.get("iss").is_some_and(|i| *i != tx.issuer) {
        return fail("iss in the response is not the expected issuer (mix-up)");
    }
    if !officers.use_state(state) {
        return fail("state replayed");
    }
    if q.contains_key("error") {
        return fail("provider returned an error");
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return fail("no code");
    };
    let Some(p) = shared
        .auth
        .as_ref()
        .and_then(|a| a.provider(&officers.cfg.provider))
    else {
        return fail("officer provider not configured");
    };
    let login = match p
        .exchange_at(
            &officers.cfg.redirect_uri,
            code,
            &tx.pkce,
            &tx.nonce,
            Duration::from_secs(LOGIN_TIMEOUT),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "officer login: token exchange failed");
            return fail("tokens refused");
        }
    };
    let name = match officer_name(officers, &login) {
        Ok(n) => n,
        Err(e @ SubjectRefused::Unverified { .. }) => {
            return refuse_unverified(shared, &login.sub, &e, lang, request_id)
        }
        Err(SubjectRefused::Missing(_)) => return fail("the login carries no officer name claim"),
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
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot create the session",
        );
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
            cookie::clear(LOGIN),
            cookie::set(SESSION, &sealed, Some(officers.lifetime)),
        ],
    )
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
    shared: &Shared,
    sub: &str,
    e: &SubjectRefused,
    lang: Lang,
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
        super::page::unverified(lang, &e.to_string(), request_id),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie::clear(LOGIN)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
