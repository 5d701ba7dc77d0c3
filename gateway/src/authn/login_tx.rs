//! The OIDC login transaction and the checks of an authorization response:
//! the one implementation behind every login of the gateway, the citizens'
//! (`flow`) and the security officers' (`crate::admin::officer`).
//!
//! [`begin`] makes state, nonce and PKCE verifier, asks the provider for
//! the authorization URL and seals the transaction into a `__Host-` cookie
//! named after the state and bound to the host the login started on.
//! [`complete`] checks the response, in this order, and exchanges the code:
//!
//! 1. the transaction cookie for the response's `state` exists in this
//!    browser, opens for this host, holds this state (login CSRF, forged
//!    state), belongs to the provider whose callback was called (mix-up)
//!    and has not expired;
//! 2. RFC 9207: `iss` is the issuer the browser was sent to, and present
//!    when the provider promises it (mix-up);
//! 3. the state is marked used in the session store: a callback works once
//!    across every gateway sharing the store, and across restarts;
//! 4. an `error` from the provider ends the login;
//! 5. the code is marked used in the session store (per issuer);
//! 6. the code is exchanged with PKCE, and the ID token verified
//!    (signature, issuer, audience, nonce, times: [`super::provider`]).
//!
//! What a login *means* (a citizen session with a level, an officer
//! session) is the caller's.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::provider::{unix_now, Login, Provider, ProviderError, LEEWAY};
use super::{cookie, random_token, Auth, CookieKeys};
use crate::identity::Level;
use crate::respond::Problem;

/// What the authorization request leaves for the callback, sealed in the
/// transaction cookie.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LoginTx {
    state: String,
    nonce: String,
    pkce: String,
    /// The provider the login went to.
    pub provider: String,
    /// The issuer the response must come from.
    pub issuer: String,
    /// Where to go after the login.
    pub return_to: String,
    /// The level of assurance asked for.
    pub level: Option<Level>,
    created: u64,
}

/// Where a login runs: the keys and name of its transaction cookie, the
/// host it is bound to, the redirect URI and how long it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginSite<'a> {
    /// Seals the transaction cookie.
    pub cookies: &'a CookieKeys,
    /// The transaction cookie's name before the state's first characters
    /// (a `__Host-` name).
    pub cookie_prefix: &'a str,
    /// The host the login started on; the callback must come back to it.
    pub host: &'a str,
    /// The redirect URI registered for this login.
    pub redirect_uri: &'a str,
    /// How long the login may take.
    pub timeout: Duration,
}

impl LoginSite<'_> {
    /// The transaction cookie's name for `state`.
    pub(crate) fn cookie_name(&self, state: &str) -> String {
        let short: String = state.chars().take(12).collect();
        format!("{}{short}", self.cookie_prefix)
    }
}

/// A started login: send the browser to `url` with `set_cookie`.
#[derive(Debug)]
pub(crate) struct Started {
    /// The provider's authorization URL.
    pub url: String,
    /// The `Set-Cookie` value of the transaction cookie.
    pub set_cookie: String,
}

/// Why a login could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BeginError {
    /// The provider cannot be reached.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The transaction could not be sealed.
    #[error("cannot seal the login transaction")]
    Seal,
}

/// Starts a login at `p`: the authorization URL and the sealed transaction.
pub(crate) async fn begin(
    site: &LoginSite<'_>,
    p: &Provider,
    level: Option<Level>,
    force_login: bool,
    return_to: &str,
) -> Result<Started, BeginError> {
    let state = random_token(24);
    let nonce = random_token(24);
    let req = p
        .authorization_request_at(site.redirect_uri, &state, &nonce, level, force_login)
        .await?;
    let name = site.cookie_name(&state);
    let tx = LoginTx {
        state,
        nonce,
        pkce: req.pkce_verifier,
        provider: p.cfg.name.clone(),
        issuer: req.issuer,
        return_to: return_to.to_owned(),
        level,
        created: unix_now(),
    };
    let sealed = serde_json::to_vec(&tx)
        .ok()
        .and_then(|j| site.cookies.seal_for(&name, site.host, &j))
        .ok_or(BeginError::Seal)?;
    Ok(Started {
        url: req.url,
        set_cookie: cookie::set(&name, &sealed, Some(site.timeout.as_secs())),
    })
}

/// Why an authorization response was refused. The texts go to logs and
/// the audit log, never to pages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No `state` in the response.
    #[error("missing state")]
    MissingState,
    /// No transaction cookie for the state in this browser.
    #[error("no login transaction for this state in this browser (forged state, other browser, or expired)")]
    NoTransaction,
    /// The transaction cookie does not open (other host, other key).
    #[error("login transaction cookie does not open")]
    BadTransaction,
    /// The cookie's state is not the response's.
    #[error("state does not match the transaction")]
    StateMismatch,
    /// The response came to another provider's callback.
    #[error("response arrived at another provider's callback (mix-up)")]
    WrongCallback,
    /// The login took too long.
    #[error("login transaction expired")]
    Expired,
    /// The provider is not configured.
    #[error("unknown provider")]
    UnknownProvider,
    /// RFC 9207: `iss` names another issuer.
    #[error("iss in the response is not the expected issuer (mix-up)")]
    IssuerMismatch,
    /// RFC 9207: `iss` missing although the provider promises it.
    #[error("iss missing although the provider promises it (RFC 9207)")]
    IssuerMissing,
    /// The state was used before.
    #[error("state replayed")]
    StateReplayed,
    /// The provider answered with an error (cancelled, denied).
    #[error("provider returned an error")]
    ProviderError,
    /// No code in the response.
    #[error("no code")]
    NoCode,
    /// The code was used before.
    #[error("authorization code replayed")]
    CodeReplayed,
    /// The session store cannot mark the state or code used.
    #[error("session store unavailable")]
    StoreDown,
    /// The provider cannot be reached for the code exchange.
    #[error("provider unavailable")]
    ProviderDown,
    /// The tokens did not verify.
    #[error("tokens refused")]
    BadTokens,
}

impl Refused {
    /// The status of the refusal page.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::UnknownProvider => StatusCode::NOT_FOUND,
            Self::ProviderError => StatusCode::FORBIDDEN,
            Self::StoreDown | Self::ProviderDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// What the refusal page tells the user.
    pub(crate) fn problem(&self) -> Problem {
        match self {
            Self::NoTransaction | Self::Expired => Problem::LoginExpired,
            Self::ProviderError => Problem::Cancelled,
            Self::StoreDown => Problem::SessionsDown,
            Self::ProviderDown => Problem::ProviderDown,
            _ => Problem::LoginFailed,
        }
    }
}

/// A refused response, and the transaction cookie to clear, if any.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// Why.
    pub why: Refused,
    /// The transaction cookie's name, to be cleared.
    pub clear: Option<String>,
}

/// A verified login.
#[derive(Debug)]
pub(crate) struct Completed {
    /// The transaction it completes.
    pub tx: LoginTx,
    /// What the provider said, verified.
    pub login: Login,
    /// The transaction cookie's name, to be cleared.
    pub cookie: String,
}

/// Checks the authorization response `query` that arrived at the callback
/// of `provider_name`, marks state and code used and exchanges the code
/// (see the module documentation for the order).
pub(crate) async fn complete(
    auth: &Auth,
    site: &LoginSite<'_>,
    provider_name: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Completed, Refusal> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bare = |why| Refusal { why, clear: None };
    let state = q("state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bare(Refused::MissingState))?;
    let name = site.cookie_name(state);
    let refuse = |why| Refusal {
        why,
        clear: Some(name.clone()),
    };
    let tx = open_tx(site, &name, headers, state, provider_name).map_err(|why| match why {
        Refused::NoTransaction => bare(why),
        _ => refuse(why),
    })?;
    let p = auth
        .provider(provider_name)
        .ok_or_else(|| refuse(Refused::UnknownProvider))?;
    check_issuer(p, &tx, q("iss")).await.map_err(refuse)?;
    let ttl = site.timeout + Duration::from_secs(LEEWAY);
    mark_used(auth, "state", state, ttl)
        .await
        .map_err(|why| match why {
            Refused::StoreDown => bare(why),
            _ => refuse(why),
        })?;
    if let Some(err) = q("error") {
        tracing::info!(
            provider = provider_name,
            error = err,
            "provider returned an error"
        );
        return Err(refuse(Refused::ProviderError));
    }
    let code = q("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| refuse(Refused::NoCode))?;
    let code_hash =
        super::hex(ring::digest::digest(&ring::digest::SHA256, code.as_bytes()).as_ref());
    mark_used(auth, "code", &format!("{}|{code_hash}", tx.issuer), ttl)
        .await
        .map_err(|why| match why {
            Refused::StateReplayed => refuse(Refused::CodeReplayed),
            _ => bare(why),
        })?;
    let login = p
        .exchange_at(site.redirect_uri, code, &tx.pkce, &tx.nonce, site.timeout)
        .await
        .map_err(|e| {
            tracing::warn!(provider = provider_name, error = %e, "token exchange failed");
            refuse(match e {
                ProviderError::Unavailable { .. } => Refused::ProviderDown,
                _ => Refused::BadTokens,
            })
        })?;
    Ok(Completed {
        tx,
        login,
        cookie: name,
    })
}

/// Step 1: the transaction cookie `name` for `state`.
fn open_tx(
    site: &LoginSite<'_>,
    name: &str,
    headers: &HeaderMap,
    state: &str,
    provider_name: &str,
) -> Result<LoginTx, Refused> {
    let sealed = cookie::get(headers, name).ok_or(Refused::NoTransaction)?;
    let tx = site
        .cookies
        .open_for(name, site.host, sealed)
        .and_then(|p| serde_json::from_slice::<LoginTx>(&p).ok())
        .ok_or(Refused::BadTransaction)?;
    if !ct_eq(tx.state.as_bytes(), state.as_bytes()) {
        return Err(Refused::StateMismatch);
    }
    if tx.provider != provider_name {
        return Err(Refused::WrongCallback);
    }
    if unix_now() > tx.created.saturating_add(site.timeout.as_secs()) {
        return Err(Refused::Expired);
    }
    Ok(tx)
}

/// Step 2, RFC 9207: the issuer of the response must be the one we sent
/// the browser to; when the provider promises `iss`, it must be there.
async fn check_issuer(p: &Provider, tx: &LoginTx, iss: Option<&str>) -> Result<(), Refused> {
    match iss {
        Some(iss) if iss != tx.issuer => Err(Refused::IssuerMismatch),
        None if p.sends_iss().await => Err(Refused::IssuerMissing),
        _ => Ok(()),
    }
}

/// Steps 3 and 5: marks `value` of `kind` used in the session store;
/// [`Refused::StateReplayed`] if it was used before.
pub(crate) async fn mark_used(
    auth: &Auth,
    kind: &str,
    value: &str,
    ttl: Duration,
) -> Result<(), Refused> {
    match auth.store.once(kind, value, ttl).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused::StateReplayed),
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            Err(Refused::StoreDown)
        }
    }
}

/// Constant-time comparison.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
