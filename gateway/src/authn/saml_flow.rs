//! The browser side of a SAML login (HTTP-POST binding both ways):
//!
//! - start: a signed AuthnRequest in an auto-submitting form to the IdP's
//!   SSO endpoint, with `RelayState` naming a sealed transaction cookie
//!   (`SameSite=None`: it must come back with the IdP's cross-site POST);
//! - `POST /.stadttor/acs/NAME`: the transaction cookie for `RelayState`
//!   (this browser, this host, this provider, in time), the request ID
//!   marked used in the session store (a response is accepted once across
//!   the cluster), the Response verified and decrypted
//!   ([`super::saml::SamlSp::read_response`]), the assertion ID marked used
//!   until it expires (replay), the level checked, then the same session,
//!   audit event and redirect as an OIDC login ([`super::flow`]).
//!
//! Every refusal is recorded as a failed `auth.login` audit event with the
//! threat-named reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::provider::unix_now;
use super::saml::{SamlSp, SKEW};
use super::{cookie, flow, login_tx, random_token, Auth};
use crate::http::body::ProxyBody;
use crate::identity::Level;
use crate::respond::{self, html, Audience, Lang, Problem};

/// The SAML login transaction cookies: this prefix and the relay state's
/// first characters.
const TX_PREFIX: &str = "__Host-stadttor-saml-";
/// Largest ACS form body read.
const MAX_FORM: usize = stadttor_saml::response::MAX_RESPONSE_B64 + 8 * 1024;

/// What the AuthnRequest leaves for the ACS, sealed in the cookie.
#[derive(Debug, Serialize, Deserialize)]
struct SamlTx {
    relay: String,
    request_id: String,
    provider: String,
    issuer: String,
    return_to: String,
    level: Option<Level>,
    created: u64,
}

fn cookie_name(relay: &str) -> String {
    let short: String = relay.chars().take(12).collect();
    format!("{TX_PREFIX}{short}")
}

/// Starts a login at `sp`: the auto-submitting form with the signed
/// AuthnRequest, and the transaction cookie.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start(
    auth: &Auth,
    host: &str,
    sp: &Arc<SamlSp>,
    level: Option<Level>,
    force: bool,
    return_to: &str,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    if let Some(why) = sp.down() {
        tracing::warn!(request_id, provider = %sp.cfg.name, reason = %why, "SAML IdP down; login refused");
        return Problem::ProviderDown.answer().render(aud, request_id);
    }
    let idp = match sp.idp() {
        Ok(idp) => idp,
        Err(why) => {
            tracing::warn!(request_id, provider = %sp.cfg.name, reason = %why, "SAML IdP metadata missing; login refused");
            return Problem::ProviderDown.answer().render(aud, request_id);
        }
    };
    let signer = sp.clone();
    let signed = tokio::task::spawn_blocking(move || signer.authn_request(level, force)).await;
    let msg = match signed {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::error!(request_id, provider = %sp.cfg.name, error = %e, "cannot sign the AuthnRequest");
            return Problem::ProviderDown.answer().render(aud, request_id);
        }
        Err(_) => return Problem::Internal.answer().render(aud, request_id),
    };
    let relay = random_token(24);
    let name = cookie_name(&relay);
    let tx = SamlTx {
        relay: relay.clone(),
        request_id: msg.id.clone(),
        provider: sp.cfg.name.clone(),
        issuer: idp.entity_id.clone(),
        return_to: return_to.to_owned(),
        level,
        created: unix_now(),
    };
    let Some(sealed) = serde_json::to_vec(&tx)
        .ok()
        .and_then(|j| auth.cookies.seal_for(&name, host, &j))
    else {
        tracing::error!(request_id, "cannot seal the SAML login transaction");
        return Problem::Internal.answer().render(aud, request_id);
    };
    let set = cookie::set_cross_site(&name, &sealed, auth.cfg.login_timeout.as_secs());
    tracing::info!(request_id, provider = %sp.cfg.name, level = ?level, step_up = force, "SAML login started");
    let display = display_name(auth, sp, aud.lang);
    let (title, text, button) = match aud.lang {
        Lang::De => (
            "Weiter zur Anmeldung",
            format!("Sie werden zur Anmeldung bei {display} weitergeleitet."),
            "Weiter",
        ),
        Lang::En => (
            "Continue to log in",
            format!("You are being taken to {display} to log in."),
            "Continue",
        ),
    };
    let page = html::post_form_page(
        aud.lang,
        title,
        &text,
        button,
        &idp.sso_post,
        &[("SAMLRequest", &msg.base64()), ("RelayState", &relay)],
    );
    let origin = crate::config::url_origin(&idp.sso_post).unwrap_or_default();
    respond::post_form(page, &origin, &[set])
}

/// Which SAML exchange a refusal ends: it names the audit event and
/// whether the page offers a new login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exchange {
    /// A login response at the ACS.
    Login,
    /// A Single Logout message ([`super::saml_logout`]).
    Logout,
}

/// A refused SAML message (ACS or SLO): logged, audited with `reason`,
/// the page.
pub(super) struct Fail<'a> {
    pub(super) auth: &'a Auth,
    pub(super) provider: &'a str,
    pub(super) aud: Audience,
    pub(super) request_id: &'a str,
    pub(super) exchange: Exchange,
}

/// The name citizens see for provider `sp`, in `lang`.
pub(super) fn display_name(auth: &Auth, sp: &SamlSp, lang: Lang) -> String {
    auth.cfg
        .display_name(&sp.cfg.name, lang == Lang::En)
        .unwrap_or_else(|| sp.cfg.name.clone())
}

impl Fail<'_> {
    /// Marks `value` of `kind` used for `ttl`; the refusal page if it was
    /// used before (`replayed`) or the session store cannot say.
    async fn once(
        &self,
        kind: &str,
        value: &str,
        ttl: Duration,
        replayed: &str,
        tx_cookie: &str,
    ) -> Option<Response<ProxyBody>> {
        let why = login_tx::mark_used(self.auth, kind, value, ttl)
            .await
            .err()?;
        let reason = if why == login_tx::Refused::StoreDown {
            "store_down"
        } else {
            replayed
        };
        Some(self.page(
            why.status(),
            why.problem(),
            reason,
            &why.to_string(),
            Some(tx_cookie),
        ))
    }

    pub(super) fn page(
        &self,
        status: StatusCode,
        problem: Problem,
        reason: &str,
        detail: &str,
        clear: Option<&str>,
    ) -> Response<ProxyBody> {
        let event = match self.exchange {
            Exchange::Login => "auth.login",
            Exchange::Logout => "auth.logout",
        };
        tracing::warn!(
            request_id = self.request_id,
            provider = self.provider,
            event,
            reason,
            detail,
            "SAML message refused"
        );
        self.auth.record(
            event,
            false,
            self.request_id,
            None,
            &[
                ("idp", self.provider.into()),
                ("protocol", "saml".into()),
                ("reason", reason.into()),
            ],
        );
        let mut answer = problem.answer().status(status);
        if self.exchange == Exchange::Login {
            answer = answer.login_link("/.stadttor/login");
        }
        let mut r = answer.render(self.aud, self.request_id);
        if let Some(name) = clear {
            if let Ok(v) = HeaderValue::from_str(&cookie::clear(name)) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }
}

/// `POST /.stadttor/acs/NAME`.
pub(crate) async fn acs(
    auth: &Auth,
    host: &str,
    provider: &str,
    req: Request<Incoming>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let fail = Fail {
        auth,
        provider,
        aud,
        request_id,
        exchange: Exchange::Login,
    };
    let bad = StatusCode::BAD_REQUEST;
    let Some(sp) = auth.saml(provider).cloned() else {
        return fail.page(
            StatusCode::NOT_FOUND,
            Problem::LoginFailed,
            "unknown_provider",
            "",
            None,
        );
    };
    let headers = req.headers().clone();
    let (relay, response) = match acs_form(req).await {
        Ok(f) => f,
        Err(why) => return fail.page(bad, Problem::LoginFailed, "malformed", why, None),
    };
    let name = cookie_name(&relay);
    let tx = match open_tx(auth, host, &name, &headers, &relay, provider) {
        Ok(tx) => tx,
        Err((problem, reason)) => return fail.page(bad, problem, reason, "", Some(&name)),
    };
    let ttl = auth.cfg.login_timeout + SKEW;
    if let Some(refused) = fail
        .once(
            "saml_request",
            &tx.request_id,
            ttl,
            "replayed_response",
            &name,
        )
        .await
    {
        return refused;
    }
    let assertion = match read_assertion(&sp, response, &tx.request_id, &fail, &name).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let lifetime = assertion
        .not_on_or_after
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + SKEW;
    let marker = format!("{}|{}", tx.issuer, assertion.id);
    let ttl = lifetime.max(Duration::from_secs(1));
    if let Some(refused) = fail
        .once("saml_assertion", &marker, ttl, "replayed_assertion", &name)
        .await
    {
        return refused;
    }
    let login = match sp.login(&assertion) {
        Ok(l) => l,
        Err(why) => return fail.page(bad, Problem::LoginFailed, "incomplete", why, Some(&name)),
    };
    if let Some(min) = tx.level {
        if login.level.is_none_or(|l| l < min) {
            tracing::info!(request_id, provider, got = ?login.acr, need = ?min, "SAML login below the required level");
            return fail.page(
                StatusCode::FORBIDDEN,
                Problem::LevelTooLow,
                "level_too_low",
                "",
                Some(&name),
            );
        }
    }
    flow::finish_login(
        auth,
        host,
        provider,
        &tx.issuer,
        &login,
        &tx.return_to,
        &name,
        &headers,
        aud,
        request_id,
    )
    .await
}

/// The ACS form's `RelayState` and `SAMLResponse`.
async fn acs_form(req: Request<Incoming>) -> Result<(String, String), &'static str> {
    let form = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| "form too large or broken")?
        .to_bytes();
    let field = |k: &str| {
        url::form_urlencoded::parse(&form)
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    match (field("RelayState"), field("SAMLResponse")) {
        (Some(relay), Some(response)) => Ok((relay, response)),
        _ => Err("RelayState or SAMLResponse missing"),
    }
}

/// The verified assertion of `response` for `request_id` (on the blocking
/// pool: the SP key may be in hardware), or the refusal page.
async fn read_assertion(
    sp: &Arc<SamlSp>,
    response: String,
    request_id: &str,
    fail: &Fail<'_>,
    tx_cookie: &str,
) -> Result<stadttor_saml::Assertion, Response<ProxyBody>> {
    let reader = sp.clone();
    let request = request_id.to_owned();
    let read = tokio::task::spawn_blocking(move || reader.read_response(&response, &request)).await;
    match read {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(refused)) => {
            let (status, problem) = match &refused {
                stadttor_saml::Refused::Status { .. } => {
                    (StatusCode::FORBIDDEN, Problem::Cancelled)
                }
                stadttor_saml::Refused::Key(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, Problem::Internal)
                }
                _ => (StatusCode::BAD_REQUEST, Problem::LoginFailed),
            };
            Err(fail.page(
                status,
                problem,
                refused.reason(),
                &refused.to_string(),
                Some(tx_cookie),
            ))
        }
        Err(_) => Err(fail.page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Problem::Internal,
            "internal",
            "",
            Some(tx_cookie),
        )),
    }
}

/// The transaction cookie `name` for `relay`: this browser, this host,
/// this provider's ACS, in time.
fn open_tx(
    auth: &Auth,
    host: &str,
    name: &str,
    headers: &http::HeaderMap,
    relay: &str,
    provider: &str,
) -> Result<SamlTx, (Problem, &'static str)> {
    let sealed = cookie::get(headers, name).ok_or((Problem::LoginExpired, "no_transaction"))?;
    let tx = auth
        .cookies
        .open_for(name, host, sealed)
        .and_then(|p| serde_json::from_slice::<SamlTx>(&p).ok())
        .ok_or((Problem::LoginFailed, "bad_transaction"))?;
    if tx.relay != relay {
        return Err((Problem::LoginFailed, "relay_state_mismatch"));
    }
    if tx.provider != provider {
        return Err((Problem::LoginFailed, "wrong_acs"));
    }
    if unix_now() > tx.created.saturating_add(auth.cfg.login_timeout.as_secs()) {
        return Err((Problem::LoginExpired, "expired_transaction"));
    }
    Ok(tx)
}
