//! SAML Single Logout (HTTP-POST binding both ways), where the IdP's
//! metadata offers an HTTP-POST `SingleLogoutService`:
//!
//! - SP-initiated: `POST /.stadttor/logout` ends the session here first
//!   ([`super::flow`]), then [`start`] sends the browser to the IdP with a
//!   signed LogoutRequest (the session's NameID with its format and
//!   qualifiers, [`NAME_ID_CLAIMS`], and its SessionIndex, the session's
//!   `sid`). The request ID travels in a sealed transaction cookie named
//!   after `RelayState` (`SameSite=None`: the IdP answers with a cross-site
//!   POST), as a SAML login's does.
//! - `POST /.stadttor/slo/NAME` ([`endpoint`]) takes either
//!   - the IdP's `SAMLResponse` to that request: the transaction cookie for
//!     `RelayState`, the LogoutResponse verified (signature required,
//!     `InResponseTo` this request), then the logged-out page; or
//!   - an IdP-initiated `SAMLRequest`: verified (signature required,
//!     `Destination` this endpoint, `Issuer`, times), its ID marked used in
//!     the session store (replay), every session it names revoked
//!     cluster-wide, an `auth.logout` audit event, and a signed
//!     LogoutResponse auto-posted back to the IdP's SLO endpoint.
//!
//! Which sessions an IdP-initiated request ends. With `SessionIndex`es:
//! the sessions of those IdP sessions (`Revocation::ProviderSession`; a
//! SAML session's `sid` is its assertion's SessionIndex). Without: every
//! session of the NameID (SAML core 3.7.3.2). The subject of a BundID
//! session is bPK2, not the NameID (transient: a fresh random value per
//! login), and nothing maps a NameID to bPK2 cluster-wide; so a SAML
//! session is also looked up in the revocations under the subject
//! `saml-name-id:` + its NameID ([`name_id_subject`]), and a NameID-only
//! request revokes that subject (`Revocation::Subject`, sessions issued
//! before now). A transient NameID thus ends exactly the sessions of that
//! login; a persistent one every earlier session of the person, while a
//! later login stays valid.
//!
//! A forged, expired, replayed or misdirected message is refused with a
//! 400 page and a failed `auth.logout` audit event with the threat-named
//! reason; no session is touched before the message is verified.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stadttor_saml::logout::{IdpLogoutRequest, NameId, Refused, STATUS_RESPONDER, STATUS_SUCCESS};
use stadttor_sessions::Revocation;

use super::provider::unix_now;
use super::saml::{SamlSp, SKEW};
use super::saml_flow::{display_name, Exchange, Fail};
use super::session::{self, SessionData};
use super::{cookie, pages, random_token, Auth};
use crate::http::body::ProxyBody;
use crate::respond::{self, html, redirect, Audience, Lang, Problem};

/// The claims a SAML session keeps for Single Logout: the NameID, its
/// `Format`, `NameQualifier` and `SPNameQualifier` (each if given). They
/// stay in the session cookie and reach a service only if a route maps
/// them (`routes.auth.claims`).
pub(crate) const NAME_ID_CLAIMS: [&str; 4] = [
    "saml_name_id",
    "saml_name_id_format",
    "saml_name_qualifier",
    "saml_sp_name_qualifier",
];
/// The SP-initiated logout transaction cookies: this prefix and the relay
/// state's first characters.
const TX_PREFIX: &str = "__Host-stadttor-slo-";
/// Largest SLO form body read.
const MAX_FORM: usize = stadttor_saml::logout::MAX_LOGOUT_B64 + 8 * 1024;
/// `RelayState` longer than this is refused (SAML bindings 3.5.3).
const MAX_RELAY_STATE: usize = 80;
/// The session store namespace of IdP LogoutRequest IDs (replay).
const USED_REQUESTS: &str = "saml-logout-request";

/// The subject under which a NameID-only LogoutRequest revokes, and under
/// which every SAML session is also looked up (see the module doc).
pub(crate) fn name_id_subject(name_id: &str) -> String {
    format!("saml-name-id:{name_id}")
}

/// What the LogoutRequest leaves for the IdP's answer, sealed in the cookie.
#[derive(Debug, Serialize, Deserialize)]
struct SloTx {
    relay: String,
    request_id: String,
    provider: String,
    created: u64,
}

fn cookie_name(relay: &str) -> String {
    let short: String = relay.chars().take(12).collect();
    format!("{TX_PREFIX}{short}")
}

/// SP-initiated Single Logout of `s`, already ended here: the
/// auto-submitting form with the signed LogoutRequest to the IdP, or
/// `None` (then the caller shows the logged-out page) when the IdP offers
/// no HTTP-POST SLO, is down, the session has no NameID (it began before
/// Single Logout was supported) or the request cannot be signed.
pub(crate) async fn start(
    auth: &Auth,
    host: &str,
    sp: &Arc<SamlSp>,
    s: &SessionData,
    aud: Audience,
    request_id: &str,
) -> Option<Response<ProxyBody>> {
    let slo = sp.idp_slo_post()?;
    if let Some(why) = sp.down() {
        tracing::info!(request_id, provider = %sp.cfg.name, reason = %why, "SAML IdP down; logged out here only");
        return None;
    }
    let claim = |i: usize| {
        s.claims
            .get(NAME_ID_CLAIMS[i])
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let Some(value) = claim(0) else {
        tracing::info!(request_id, provider = %sp.cfg.name, "session without a NameID; logged out here only");
        return None;
    };
    let name_id = NameId {
        value,
        format: claim(1),
        name_qualifier: claim(2),
        sp_name_qualifier: claim(3),
    };
    let signer = sp.clone();
    let index = s.sid.clone();
    let msg = match tokio::task::spawn_blocking(move || signer.logout_request(name_id, index)).await
    {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::error!(request_id, provider = %sp.cfg.name, error = %e, "cannot sign the LogoutRequest; logged out here only");
            return None;
        }
        Err(_) => return None,
    };
    let relay = random_token(24);
    let name = cookie_name(&relay);
    let tx = SloTx {
        relay: relay.clone(),
        request_id: msg.id.clone(),
        provider: sp.cfg.name.clone(),
        created: unix_now(),
    };
    let Some(sealed) = serde_json::to_vec(&tx)
        .ok()
        .and_then(|j| auth.cookies.seal_for(&name, host, &j))
    else {
        tracing::error!(request_id, "cannot seal the SAML logout transaction");
        return None;
    };
    let set = cookie::set_cross_site(&name, &sealed, auth.cfg.login_timeout.as_secs());
    tracing::info!(request_id, provider = %sp.cfg.name, "SAML Single Logout started");
    let display = display_name(auth, sp, aud.lang);
    let (title, text, button) = match aud.lang {
        Lang::De => (
            "Abmeldung",
            format!("Sie werden auch bei {display} abgemeldet."),
            "Weiter",
        ),
        Lang::En => (
            "Logging out",
            format!("You are being logged out of {display} as well."),
            "Continue",
        ),
    };
    let page = html::post_form_page(
        aud.lang,
        title,
        &text,
        button,
        &slo,
        &[("SAMLRequest", &msg.base64()), ("RelayState", &relay)],
    );
    let origin = crate::config::url_origin(&slo).unwrap_or_default();
    Some(respond::post_form(
        page,
        &origin,
        &[set, cookie::clear(session::COOKIE)],
    ))
}

/// The SLO refusals (the shared page is [`Fail::page`]).
impl Fail<'_> {
    fn refused(&self, refused: &Refused, clear: Option<&str>) -> Response<ProxyBody> {
        self.page(
            StatusCode::BAD_REQUEST,
            Problem::BadRequest,
            refused.reason(),
            &refused.to_string(),
            clear,
        )
    }

    fn malformed(&self, detail: &str) -> Response<ProxyBody> {
        self.page(
            StatusCode::BAD_REQUEST,
            Problem::BadRequest,
            "malformed",
            detail,
            None,
        )
    }
}

/// `POST /.stadttor/slo/NAME`.
pub(crate) async fn endpoint(
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
        exchange: Exchange::Logout,
    };
    let Some(sp) = auth.saml(provider).cloned() else {
        return fail.page(
            StatusCode::NOT_FOUND,
            Problem::NotFound,
            "unknown_provider",
            "",
            None,
        );
    };
    let headers = req.headers().clone();
    let form = match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fail.malformed("form too large or broken"),
    };
    let field = |k: &str| {
        url::form_urlencoded::parse(&form)
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let relay = field("RelayState");
    if relay.as_ref().is_some_and(|r| r.len() > MAX_RELAY_STATE) {
        return fail.malformed("RelayState longer than 80 bytes");
    }
    match (field("SAMLRequest"), field("SAMLResponse")) {
        (Some(request), None) => idp_initiated(&fail, &sp, request, relay).await,
        (None, Some(response)) => answered(&fail, host, &sp, response, relay, &headers).await,
        _ => fail.malformed("not exactly one of SAMLRequest and SAMLResponse"),
    }
}

/// An IdP-initiated LogoutRequest: verify, mark used, revoke, audit, answer.
async fn idp_initiated(
    fail: &Fail<'_>,
    sp: &Arc<SamlSp>,
    b64: String,
    relay: Option<String>,
) -> Response<ProxyBody> {
    let (auth, request_id) = (fail.auth, fail.request_id);
    let reader = sp.clone();
    let lr = match tokio::task::spawn_blocking(move || reader.read_logout_request(&b64)).await {
        Ok(Ok(r)) => r,
        Ok(Err(refused)) => return fail.refused(&refused, None),
        Err(_) => {
            return fail.page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Problem::Internal,
                "internal",
                "",
                None,
            )
        }
    };
    let Ok(idp) = sp.idp() else {
        return fail.page(
            StatusCode::SERVICE_UNAVAILABLE,
            Problem::ProviderDown,
            "no_metadata",
            "",
            None,
        );
    };
    let issuer = idp.entity_id.clone();
    let ttl = lr
        .replay_until
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .max(Duration::from_secs(1));
    match auth
        .store
        .once(USED_REQUESTS, &format!("{issuer}|{}", lr.id), ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return fail.page(
                StatusCode::BAD_REQUEST,
                Problem::BadRequest,
                "replayed",
                "LogoutRequest ID seen before",
                None,
            )
        }
        Err(e) => {
            tracing::warn!(request_id, error = %e, "session store unavailable");
            return Problem::SessionsDown.answer().render(fail.aud, request_id);
        }
    }
    let status = revoke_and_record(fail, sp, &issuer, &lr).await;
    answer_idp(fail, sp, &lr.id, status, relay).await
}

/// Revokes what `lr` ends and records the logout; the status for the
/// IdP (Responder when the session store could not record it).
async fn revoke_and_record(
    fail: &Fail<'_>,
    sp: &Arc<SamlSp>,
    issuer: &str,
    lr: &IdpLogoutRequest,
) -> &'static str {
    let (auth, request_id) = (fail.auth, fail.request_id);
    let until = SystemTime::now() + auth.cfg.session_absolute_timeout;
    let mut status = STATUS_SUCCESS;
    for r in revocations(issuer, lr, until) {
        if let Err(e) = auth.store.revoke(r).await {
            tracing::warn!(request_id, error = %e, "cannot record the SAML Single Logout");
            status = STATUS_RESPONDER;
            break;
        }
    }
    let by = if lr.session_indexes.is_empty() {
        "name_id"
    } else {
        "session_index"
    };
    tracing::info!(request_id, provider = %sp.cfg.name, by, ok = status == STATUS_SUCCESS, "SAML IdP-initiated logout");
    // The NameID is the subject only where no subject attribute is configured.
    let subject = sp
        .cfg
        .subject_attribute
        .is_none()
        .then_some((issuer, lr.name_id.value.as_str()));
    if status == STATUS_SUCCESS {
        // The sessions are revoked either way; a failure is logged there.
        let _ = auth
            .record_durable(
                "auth.logout",
                request_id,
                subject,
                &[
                    ("idp", sp.cfg.name.clone().into()),
                    ("protocol", "saml".into()),
                    ("initiator", "idp".into()),
                    ("by", by.into()),
                ],
            )
            .await;
    } else {
        auth.record(
            "auth.logout",
            false,
            request_id,
            subject,
            &[
                ("idp", sp.cfg.name.clone().into()),
                ("protocol", "saml".into()),
                ("initiator", "idp".into()),
                ("reason", "store_down".into()),
            ],
        );
    }
    status
}

/// What a verified IdP LogoutRequest ends (see the module doc).
fn revocations(issuer: &str, lr: &IdpLogoutRequest, until: SystemTime) -> Vec<Revocation> {
    if lr.session_indexes.is_empty() {
        return vec![Revocation::Subject {
            issuer: issuer.to_owned(),
            sub: name_id_subject(&lr.name_id.value),
            before: SystemTime::now(),
            until,
        }];
    }
    lr.session_indexes
        .iter()
        .map(|sid| Revocation::ProviderSession {
            issuer: issuer.to_owned(),
            sid: sid.clone(),
            until,
        })
        .collect()
}

/// The signed LogoutResponse auto-posted to the IdP's SLO endpoint (or,
/// if its metadata has none for HTTP-POST, the logged-out page).
async fn answer_idp(
    fail: &Fail<'_>,
    sp: &Arc<SamlSp>,
    in_response_to: &str,
    status: &'static str,
    relay: Option<String>,
) -> Response<ProxyBody> {
    let lang = fail.aud.lang;
    let clear_session = cookie::clear(session::COOKIE);
    let Some(dest) = sp.idp_slo_post() else {
        let mut r = html(StatusCode::OK, pages::logged_out(lang));
        if let Ok(v) = HeaderValue::from_str(&clear_session) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        return r;
    };
    let signer = sp.clone();
    let (to, id) = (dest.clone(), in_response_to.to_owned());
    let msg = match tokio::task::spawn_blocking(move || signer.logout_response(&to, &id, status))
        .await
    {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::error!(request_id = fail.request_id, error = %e, "cannot sign the LogoutResponse");
            return Problem::Internal.answer().render(fail.aud, fail.request_id);
        }
        Err(_) => return Problem::Internal.answer().render(fail.aud, fail.request_id),
    };
    let display = display_name(fail.auth, sp, lang);
    let (title, text, button) = match lang {
        Lang::De => (
            "Abgemeldet",
            format!("Sie sind abgemeldet. Weiter zu {display}."),
            "Weiter",
        ),
        Lang::En => (
            "Logged out",
            format!("You are logged out. Continuing to {display}."),
            "Continue",
        ),
    };
    let b64 = msg.base64();
    let mut fields = vec![("SAMLResponse", b64.as_str())];
    if let Some(r) = &relay {
        fields.push(("RelayState", r.as_str()));
    }
    let page = html::post_form_page(lang, title, &text, button, &dest, &fields);
    let origin = crate::config::url_origin(&dest).unwrap_or_default();
    respond::post_form(page, &origin, &[clear_session])
}

/// The IdP's LogoutResponse to this SP's LogoutRequest. The session was
/// ended before the request was sent; a response grants nothing, so its
/// transaction cookie (cleared here) is its only single-use guard.
async fn answered(
    fail: &Fail<'_>,
    host: &str,
    sp: &Arc<SamlSp>,
    b64: String,
    relay: Option<String>,
    headers: &http::HeaderMap,
) -> Response<ProxyBody> {
    let Some(relay) = relay else {
        return fail.malformed("LogoutResponse without RelayState");
    };
    let name = cookie_name(&relay);
    let tx = match open_tx(fail.auth, host, &name, headers, &relay, &sp.cfg.name) {
        Ok(tx) => tx,
        Err(reason) => {
            return fail.page(
                StatusCode::BAD_REQUEST,
                Problem::BadRequest,
                reason,
                "",
                Some(&name),
            )
        }
    };
    let reader = sp.clone();
    let read =
        tokio::task::spawn_blocking(move || reader.read_logout_response(&b64, &tx.request_id))
            .await;
    match read {
        Ok(Ok(())) => {
            tracing::info!(request_id = fail.request_id, provider = %sp.cfg.name, "SAML Single Logout confirmed by the IdP");
        }
        Ok(Err(status @ Refused::Status { .. })) => {
            // Logged out here; the IdP says its session lives on.
            fail.auth.record(
                "auth.logout",
                false,
                fail.request_id,
                None,
                &[
                    ("idp", sp.cfg.name.clone().into()),
                    ("protocol", "saml".into()),
                    ("reason", "idp_status".into()),
                ],
            );
            tracing::warn!(request_id = fail.request_id, provider = %sp.cfg.name, error = %status, "IdP did not end its session");
        }
        Ok(Err(refused)) => return fail.refused(&refused, Some(&name)),
        Err(_) => {
            return fail.page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Problem::Internal,
                "internal",
                "",
                Some(&name),
            )
        }
    }
    redirect("/.stadttor/logged-out", vec![cookie::clear(&name)])
}

/// The transaction cookie `name` for `relay`: this browser, this host,
/// this provider, in time.
fn open_tx(
    auth: &Auth,
    host: &str,
    name: &str,
    headers: &http::HeaderMap,
    relay: &str,
    provider: &str,
) -> Result<SloTx, &'static str> {
    let sealed = cookie::get(headers, name).ok_or("no_transaction")?;
    let tx = auth
        .cookies
        .open_for(name, host, sealed)
        .and_then(|p| serde_json::from_slice::<SloTx>(&p).ok())
        .ok_or("bad_transaction")?;
    if tx.relay != relay {
        return Err("relay_state_mismatch");
    }
    if tx.provider != provider {
        return Err("wrong_slo");
    }
    let limit = auth.cfg.login_timeout.as_secs() + SKEW.as_secs();
    if unix_now() > tx.created.saturating_add(limit) {
        return Err("expired_transaction");
    }
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stadttor_saml::logout::NameId;

    fn request(indexes: &[&str]) -> IdpLogoutRequest {
        IdpLogoutRequest {
            id: "_r".into(),
            name_id: NameId {
                value: "_transient-1".into(),
                ..NameId::default()
            },
            session_indexes: indexes.iter().map(|s| (*s).to_owned()).collect(),
            replay_until: SystemTime::now(),
        }
    }

    #[test]
    fn session_indexes_revoke_those_provider_sessions_only() {
        let until = SystemTime::now();
        let r = revocations("https://idp", &request(&["_a", "_b"]), until);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|x| matches!(x,
            Revocation::ProviderSession { issuer, sid, .. } if issuer == "https://idp" && (sid == "_a" || sid == "_b"))));
    }

    #[test]
    fn name_id_only_revokes_the_name_id_subject_not_a_subject_named_like_it() {
        let r = revocations("https://idp", &request(&[]), SystemTime::now());
        match r.as_slice() {
            [Revocation::Subject { issuer, sub, .. }] => {
                assert_eq!(issuer, "https://idp");
                // Never the bare NameID: a subject (bPK2, OIDC sub) that
                // happens to equal it must not be revoked.
                assert_eq!(sub, "saml-name-id:_transient-1");
            }
            other => panic!("{other:?}"),
        }
    }
}
