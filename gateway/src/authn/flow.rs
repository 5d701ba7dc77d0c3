//! The gateway's own login endpoints under `/.stadttor/`:
//!
//! - `GET  /.stadttor/login` provider choice, or straight to the provider;
//! - `GET  /.stadttor/callback/NAME` the authorization response;
//! - `POST /.stadttor/acs/NAME` a SAML Response ([`super::saml_flow`]);
//! - `GET|POST /.stadttor/logout` confirm, then end the session here and at
//!   the provider (RP-initiated logout; SAML Single Logout,
//!   [`super::saml_logout`]);
//! - `POST /.stadttor/slo/NAME` SAML Single Logout messages from the IdP;
//! - `POST /.stadttor/backchannel-logout/NAME` logout tokens from providers;
//! - `GET  /.stadttor/jwks.json` the assertion key for services.
//!
//! The login transaction (state, nonce, PKCE verifier, provider, expected
//! issuer, return path, level) and every check of the authorization
//! response are [`super::login_tx`]'s, shared with the officers' login:
//! the transaction travels in a sealed `__Host-` cookie named after the
//! state, which binds it to this browser, and sealed for the host the
//! login started on, as is the session cookie the callback sets
//! ([`super::cookie::CookieKeys::seal_for`]); state and code are marked
//! used in the session store, so a callback works exactly once. What is
//! citizen-specific stays here: the level check, the session, step-up.

use std::time::{Duration, UNIX_EPOCH};

use super::login_tx::{self, BeginError, Completed, LoginSite};
use super::pages;
use super::provider::{unix_now, Login, Provider, ProviderError, LEEWAY};
use super::session::{self, SessionData};
use super::{cookie, random_token, Auth};
use crate::config::url_origin;
use crate::http::body::ProxyBody;
use crate::identity::{AuthMethod, Level};
use crate::respond::{self, html, redirect, Audience, Lang, Problem};
use crate::state::State;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use stadttor_sessions::Revocation;

/// The citizens' login transaction cookies: `__Host-stadttor-login-` and
/// the state's first characters.
const TX_PREFIX: &str = "__Host-stadttor-login-";

/// Whether `return_to` is safe: a path on this origin, or an allowed origin.
pub(crate) fn safe_return_to(auth: &Auth, r: &str) -> bool {
    if r.is_empty() || r.len() > 2048 || r.chars().any(|c| c.is_control() || c == '\\') {
        return false;
    }
    if r.starts_with('/') {
        return !r.starts_with("//");
    }
    url_origin(r).is_some_and(|o| {
        auth.cfg.allowed_return_origins.contains(&o)
            && r.get(o.len()..)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Starts a login at `provider_name`: a 303 to the provider with the
/// transaction cookie set, sealed for `host` (the callback must come back
/// to the same host).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_login(
    auth: &Auth,
    host: &str,
    provider_name: &str,
    level: Option<Level>,
    force_login: bool,
    return_to: &str,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    if let Some(sp) = auth.saml(provider_name) {
        let return_to = if safe_return_to(auth, return_to) {
            return_to
        } else {
            "/"
        };
        return super::saml_flow::start(
            auth,
            host,
            sp,
            level,
            force_login,
            return_to,
            aud,
            request_id,
        )
        .await;
    }
    let Some(p) = auth.provider(provider_name) else {
        return Problem::LoginFailed
            .answer()
            .status(StatusCode::NOT_FOUND)
            .render(aud, request_id);
    };
    let return_to = if safe_return_to(auth, return_to) {
        return_to
    } else {
        "/"
    };
    let site = login_site(auth, host, p);
    match login_tx::begin(&site, p, level, force_login, return_to).await {
        Ok(started) => {
            tracing::info!(request_id, provider = %p.cfg.name, level = ?level, step_up = force_login, "login started");
            redirect(&started.url, vec![started.set_cookie])
        }
        Err(BeginError::Seal) => {
            tracing::error!(request_id, "cannot seal the login transaction");
            Problem::Internal.answer().render(aud, request_id)
        }
        Err(BeginError::Provider(e)) => {
            tracing::warn!(request_id, error = %e, "cannot start login");
            Problem::ProviderDown.answer().render(aud, request_id)
        }
    }
}

/// Where a citizen login at `p` runs.
fn login_site<'a>(auth: &'a Auth, host: &'a str, p: &'a Provider) -> LoginSite<'a> {
    LoginSite {
        cookies: &auth.cookies,
        cookie_prefix: TX_PREFIX,
        host,
        redirect_uri: &p.cfg.redirect_uri,
        timeout: auth.cfg.login_timeout,
    }
}

/// Handles a request under `/.stadttor/`, or returns it if it is not one.
pub(crate) async fn handle(
    auth: &Auth,
    state: &State,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<ProxyBody>, Request<Incoming>> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/.stadttor/") else {
        return Err(req);
    };
    let aud = Audience::of(req.headers(), false);
    let lang = aud.lang;
    let host = crate::http::credentials::request_host(req.uri(), req.headers());
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let method = req.method().clone();
    let resp = match (method.clone(), rest) {
        (Method::GET, "login") => {
            login(
                auth,
                &host,
                state,
                q("route"),
                q("provider"),
                q("return_to"),
                q("step_up").is_some(),
                aud,
                request_id,
            )
            .await
        }
        (Method::GET, r) if r.starts_with("callback/") => {
            callback(
                auth,
                &host,
                &r["callback/".len()..],
                &query,
                req.headers(),
                aud,
                request_id,
            )
            .await
        }
        (Method::GET, "logout") => html(StatusCode::OK, pages::logout_confirm(lang)),
        (Method::POST, "logout") => logout(auth, &host, req.headers(), aud, request_id).await,
        (Method::GET, "logged-out") => html(StatusCode::OK, pages::logged_out(lang)),
        (Method::POST, r) if r.starts_with("acs/") => {
            let name = r["acs/".len()..].to_owned();
            super::saml_flow::acs(auth, &host, &name, req, aud, request_id).await
        }
        (Method::POST, r) if r.starts_with("slo/") => {
            let name = r["slo/".len()..].to_owned();
            super::saml_logout::endpoint(auth, &host, &name, req, aud, request_id).await
        }
        (Method::POST, r) if r.starts_with("backchannel-logout/") => {
            let name = r["backchannel-logout/".len()..].to_owned();
            let aud = Audience::of(req.headers(), true);
            backchannel(auth, &name, req, aud, request_id).await
        }
        (Method::GET, "jwks.json") => respond::jwks(auth.jwks().to_owned()),
        _ => Problem::NotFound.answer().render(aud, request_id),
    };
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn login(
    auth: &Auth,
    host: &str,
    state: &State,
    route: Option<&str>,
    provider: Option<&str>,
    return_to: Option<&str>,
    step_up: bool,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let lang = aud.lang;
    let route_auth = route
        .and_then(|r| state.config.routes.iter().find(|x| x.name == r))
        .map(|r| &r.auth);
    let (providers, level): (Vec<String>, Option<Level>) = match route_auth {
        Some(a) if a.methods.contains(&AuthMethod::Session) => (a.providers.clone(), a.min_level),
        Some(_) => (Vec::new(), None),
        None => (auth.cfg.provider_names(), None),
    };
    let return_to = return_to.filter(|r| safe_return_to(auth, r)).unwrap_or("/");
    if let Some(p) = provider {
        if !providers.iter().any(|x| x == p) {
            return Problem::LoginFailed.answer().render(aud, request_id);
        }
        return start_login(auth, host, p, level, step_up, return_to, aud, request_id).await;
    }
    match providers.as_slice() {
        [] => Problem::LoginFailed
            .answer()
            .status(StatusCode::NOT_FOUND)
            .render(aud, request_id),
        [one] => start_login(auth, host, one, level, step_up, return_to, aud, request_id).await,
        many => {
            let choices: Vec<pages::Choice> = many
                .iter()
                .filter_map(|n| Some((n, auth.cfg.display_name(n, lang == Lang::En)?)))
                .map(|(name, label)| {
                    let mut s = url::form_urlencoded::Serializer::new(String::new());
                    if let Some(r) = route {
                        s.append_pair("route", r);
                    }
                    s.append_pair("provider", name)
                        .append_pair("return_to", return_to);
                    if step_up {
                        s.append_pair("step_up", "1");
                    }
                    pages::Choice {
                        label,
                        href: format!("/.stadttor/login?{}", s.finish()),
                    }
                })
                .collect();
            html(StatusCode::OK, pages::choice(lang, &choices))
        }
    }
}

async fn callback(
    auth: &Auth,
    host: &str,
    provider_name: &str,
    query: &[(String, String)],
    headers: &http::HeaderMap,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let fail = |status: StatusCode, problem: Problem, why: &str, clear: Option<&str>| {
        tracing::warn!(
            request_id,
            provider = provider_name,
            reason = why,
            "login callback refused"
        );
        auth.record(
            "auth.login",
            false,
            request_id,
            None,
            &[("idp", provider_name.into()), ("reason", why.into())],
        );
        let mut r = problem
            .answer()
            .status(status)
            .login_link("/.stadttor/login")
            .render(aud, request_id);
        if let Some(name) = clear {
            if let Ok(v) = HeaderValue::from_str(&cookie::clear(name)) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    };
    let Some(site) = auth
        .provider(provider_name)
        .map(|p| login_site(auth, host, p))
    else {
        return fail(
            StatusCode::NOT_FOUND,
            Problem::LoginFailed,
            "unknown provider",
            None,
        );
    };
    let Completed {
        tx,
        login,
        cookie: name,
    } = match login_tx::complete(auth, &site, provider_name, query, headers).await {
        Ok(c) => c,
        Err(r) => {
            return fail(
                r.why.status(),
                r.why.problem(),
                &r.why.to_string(),
                r.clear.as_deref(),
            )
        }
    };
    // The gateway enforces the level itself: providers do not always
    // honour acr_values.
    if let Some(min) = tx.level {
        if login.level.is_none_or(|l| l < min) {
            tracing::info!(request_id, provider = provider_name, got = ?login.acr, need = ?min, "login below the required level");
            return fail(
                StatusCode::FORBIDDEN,
                Problem::LevelTooLow,
                "level of assurance too low",
                Some(&name),
            );
        }
    }
    finish_login(
        auth,
        host,
        provider_name,
        &tx.issuer,
        &login,
        &tx.return_to,
        &name,
        headers,
        aud,
        request_id,
    )
    .await
}

/// The end of every verified citizen login (OIDC callback, SAML ACS):
/// the new session (a step-up keeps the old one's start and expiry), the
/// login recorded durably, the session cookie, and a 303 to `return_to`
/// with the transaction cookie `tx_cookie` cleared.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_login(
    auth: &Auth,
    host: &str,
    provider: &str,
    issuer: &str,
    login: &Login,
    return_to: &str,
    tx_cookie: &str,
    headers: &http::HeaderMap,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    // A revoked session is no base for a step-up: its start would carry a
    // subject revocation (`before`) over to the new session.
    let previous = auth
        .session(headers, host, unix_now())
        .ok()
        .flatten()
        .map(|(_, s)| s)
        .filter(|s| matches!(auth.session_revoked(s), Ok(false)));
    let (s, same_user) = new_session(auth, provider, issuer, login, previous.as_deref());
    let recorded = record_login(auth, &s, previous.as_deref(), same_user, request_id).await;
    if !recorded {
        tracing::warn!(
            request_id,
            provider,
            "audit log cannot record the login; refused"
        );
        let mut r = Problem::SessionsDown
            .answer()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .login_link("/.stadttor/login")
            .render(aud, request_id);
        if let Ok(v) = HeaderValue::from_str(&cookie::clear(tx_cookie)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        return r;
    }
    let Some(set) = auth.seal_session(&s, host, unix_now()) else {
        tracing::error!(request_id, "cannot seal the session");
        return Problem::Internal.answer().render(aud, request_id);
    };
    tracing::info!(request_id, provider, level = ?s.lvl, step_up = same_user, "login completed");
    let mut r = redirect(return_to, vec![cookie::clear(tx_cookie)]);
    r.headers_mut().append(header::SET_COOKIE, set);
    r
}

/// Ends the `previous` session (its id dies with the login: a copy of
/// the old cookie is worthless from now on) and records the login or
/// step-up durably; false if the audit log cannot.
async fn record_login(
    auth: &Auth,
    s: &SessionData,
    previous: Option<&SessionData>,
    same_user: bool,
    request_id: &str,
) -> bool {
    // The old session id dies with the login: a copy of the old cookie is
    // worthless from now on.
    if let Some(old) = previous {
        let _ = auth
            .store
            .revoke(Revocation::Session {
                id: old.id.clone(),
                until: UNIX_EPOCH + Duration::from_secs(old.exp),
            })
            .await;
    }
    let kind = if same_user {
        "auth.step_up"
    } else {
        "auth.login"
    };
    auth.record_durable(
        kind,
        request_id,
        Some((&s.iss, &s.sub)),
        &[
            ("idp", s.p.clone().into()),
            ("level", s.lvl.map(|l| l.as_str()).unwrap_or("none").into()),
        ],
    )
    .await
}

/// The session a verified `login` starts; with `previous` of the same
/// user (a step-up) it keeps that session's start, expiry and base level.
/// Also returns whether it is a step-up.
fn new_session(
    auth: &Auth,
    provider: &str,
    issuer: &str,
    login: &Login,
    previous: Option<&SessionData>,
) -> (SessionData, bool) {
    let now = unix_now();
    let same_user = previous.filter(|s| s.iss == issuer && s.sub == login.sub);
    let (base, iat, exp) = match same_user {
        Some(s) => (SessionData::base_after(s.base, login.level), s.iat, s.exp),
        None => (
            login.level,
            now,
            now + auth.cfg.session_absolute_timeout.as_secs(),
        ),
    };
    let claims = login
        .claims
        .iter()
        .filter(|(k, _)| auth.kept_claims.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let s = SessionData {
        v: 1,
        id: random_token(18),
        p: provider.to_owned(),
        iss: issuer.to_owned(),
        sub: login.sub.clone(),
        sid: login.sid.clone(),
        base,
        lvl: login.level,
        auth: login.auth_time.min(now),
        iat,
        exp,
        seen: now,
        claims,
    };
    (s, same_user.is_some())
}

async fn logout(
    auth: &Auth,
    host: &str,
    headers: &http::HeaderMap,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let session = auth
        .session(headers, host, unix_now())
        .ok()
        .flatten()
        .map(|(_, s)| s);
    let mut location = "/.stadttor/logged-out".to_owned();
    if let Some(s) = &session {
        if let Err(e) = auth
            .store
            .revoke(Revocation::Session {
                id: s.id.clone(),
                until: UNIX_EPOCH + Duration::from_secs(s.exp),
            })
            .await
        {
            tracing::warn!(request_id, error = %e, "cannot record the logout");
            return Problem::SessionsDown.answer().render(aud, request_id);
        }
        tracing::info!(request_id, provider = %s.p, "logout");
        let recorded = auth
            .record_durable(
                "auth.logout",
                request_id,
                Some((&s.iss, &s.sub)),
                &[("idp", s.p.clone().into())],
            )
            .await;
        if !recorded {
            return Problem::AuditUnavailable.answer().render(aud, request_id);
        }
        if let Some(sp) = auth.saml(&s.p) {
            let slo = super::saml_logout::start(auth, host, sp, s, aud, request_id).await;
            if let Some(r) = slo {
                return r;
            }
        }
        if let Some(p) = auth.provider(&s.p) {
            if let Some(end) = p.end_session_endpoint().await {
                if let Ok(mut u) = url::Url::parse(&end) {
                    u.query_pairs_mut()
                        .append_pair("client_id", &p.cfg.client_id);
                    if let Some(post) = &p.cfg.post_logout_redirect_uri {
                        u.query_pairs_mut()
                            .append_pair("post_logout_redirect_uri", post);
                    }
                    location = u.to_string();
                }
            }
        }
    }
    redirect(&location, vec![cookie::clear(session::COOKIE)])
}

/// The `logout_token` form field of a back-channel logout request.
async fn logout_token(req: Request<Incoming>) -> Result<String, &'static str> {
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err("body too large or broken"),
    };
    url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .ok_or("no logout_token")
}

/// What a verified logout token ends: the provider session (`sid`), or
/// else every session of the subject that began before now.
fn revocations(
    logout: &super::provider::Logout,
    issuer: &str,
    until: std::time::SystemTime,
) -> Vec<Revocation> {
    let mut revocations = Vec::new();
    if let Some(sid) = &logout.sid {
        revocations.push(Revocation::ProviderSession {
            issuer: issuer.to_owned(),
            sid: sid.clone(),
            until,
        });
    }
    if let Some(sub) = &logout.sub {
        if logout.sid.is_none() {
            revocations.push(Revocation::Subject {
                issuer: issuer.to_owned(),
                sub: sub.clone(),
                before: std::time::SystemTime::now(),
                until,
            });
        }
    }
    revocations
}

async fn backchannel(
    auth: &Auth,
    provider_name: &str,
    req: Request<Incoming>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let bad = |why: &str| {
        tracing::warn!(
            request_id,
            provider = provider_name,
            reason = why,
            "back-channel logout refused"
        );
        auth.record(
            "auth.backchannel_logout",
            false,
            request_id,
            None,
            &[("idp", provider_name.into()), ("reason", why.into())],
        );
        Problem::BadRequest.answer().render(aud, request_id)
    };
    let Some(p) = auth.provider(provider_name) else {
        return bad("unknown provider");
    };
    let token = match logout_token(req).await {
        Ok(t) => t,
        Err(why) => return bad(why),
    };
    let logout = match p.validate_logout_token(&token).await {
        Ok(l) => l,
        Err(e @ ProviderError::Unavailable { .. }) => {
            tracing::warn!(request_id, error = %e, "cannot validate logout token");
            return Problem::ProviderDown.answer().render(aud, request_id);
        }
        Err(e) => return bad(&e.to_string()),
    };
    let issuer = p.issuer().await;
    let ttl = Duration::from_secs(logout.exp.saturating_sub(unix_now()) + 2 * LEEWAY);
    match auth
        .store
        .once("logout-jti", &format!("{issuer}|{}", logout.jti), ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => return bad("logout token replayed (jti seen before)"),
        Err(e) => {
            tracing::warn!(request_id, error = %e, "session store unavailable");
            return Problem::SessionsDown.answer().render(aud, request_id);
        }
    }
    let until =
        UNIX_EPOCH + Duration::from_secs(unix_now() + auth.cfg.session_absolute_timeout.as_secs());
    let revocations = revocations(&logout, &issuer, until);
    for r in revocations {
        if let Err(e) = auth.store.revoke(r).await {
            tracing::warn!(request_id, error = %e, "cannot record the back-channel logout");
            return Problem::SessionsDown.answer().render(aud, request_id);
        }
    }
    tracing::info!(
        request_id,
        provider = provider_name,
        by_sid = logout.sid.is_some(),
        "back-channel logout"
    );
    let recorded = auth
        .record_durable(
            "auth.backchannel_logout",
            request_id,
            logout.sub.as_deref().map(|sub| (issuer.as_str(), sub)),
            &[
                ("idp", provider_name.into()),
                ("by_sid", logout.sid.is_some().into()),
            ],
        )
        .await;
    if !recorded {
        // The IdP retries a logout token that was not answered with 200.
        return Problem::AuditUnavailable.answer().render(aud, request_id);
    }
    respond::empty_ok()
}
