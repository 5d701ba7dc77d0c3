//! Authentication: who sends a request, and how sure we are.
//!
//! ```text
//! /.stadttor/*  ─▶ flow (login, callback, logout, back-channel logout, JWKS),
//!                  saml_flow (ACS), saml_logout (SAML Single Logout)
//! route request ─▶ authenticate: session cookie | bearer JWT | client cert
//!               ─▶ level check (step-up or RFC 9470 401)
//!               ─▶ identity headers + signed assertion for the service
//! ```
//!
//! Submodules: [`cookie`] (sealed cookies), [`session`] (what a session
//! holds), [`verify`] (JWT parsing and checks), [`jwk`] (a provider's
//! keys for ring signature verification), [`bearer_cache`] (verified bearer
//! tokens), [`session_cache`] (opened session cookies), `expiring` (the
//! bounded map behind both), [`provider`] (one OIDC
//! provider: discovery, JWKS, code exchange, token validation),
//! [`login_tx`] (the login transaction and the authorization response's
//! checks, shared with the officers' login), [`flow`] (the gateway's own
//! endpoints), [`assertion`] (the signed identity
//! assertion to services, cached per session), [`pages`] (citizen-facing
//! HTML). Every refusal is a `respond::Refusal` or a page, made a response by
//! [`crate::respond`]; nothing fails open: a
//! provider, key or session store that cannot answer means no access.

pub(crate) mod assertion;
pub mod bearer_cache;
pub mod cookie;
mod expiring;
pub(crate) mod flow;
pub mod jwk;
pub(crate) mod login_tx;
pub(crate) mod pages;
pub(crate) mod provider;
pub(crate) mod saml;
pub(crate) mod saml_flow;
pub(crate) mod saml_logout;
pub mod session;
pub mod session_cache;
#[cfg(test)]
mod session_tests;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderName, HeaderValue, Response};
use ring::rand::SecureRandom;
use stadttor_sessions::{SessionRef, SessionStore, StoreConfig, StoreError, StoreOptions};

use crate::config;
use crate::http::body::ProxyBody;
use crate::identity::{AuthMethod, Identity, Level};
use crate::respond::{is_api, redirect, Audience, Problem, Refusal};
use cookie::CookieKeys;
use provider::{unix_now, Provider};
use session::SessionData;

/// What the request stage adds after a successful authentication.
#[derive(Debug, Default)]
pub struct Verified {
    /// The identity, if the route needs one.
    pub identity: Option<Identity>,
    /// Headers for the upstream request (identity, assertion, claims).
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
    /// A refreshed session cookie for the response.
    pub set_cookie: Option<HeaderValue>,
}

/// An opened session cookie with its cache key ([`session_cache::key`]).
type CachedSession = ([u8; 32], Arc<SessionData>);

/// Process-wide authentication state.
#[derive(Debug)]
pub struct Auth {
    /// The `[identity]` configuration.
    pub cfg: config::Identity,
    providers: Vec<Arc<Provider>>,
    saml: Vec<Arc<saml::SamlSp>>,
    cookies: CookieKeys,
    store: SessionStore,
    assertions: assertion::Assertions,
    /// Claims some route forwards: the only ones kept in session cookies.
    kept_claims: BTreeSet<String>,
    /// Verified bearer tokens (per-request checks still run on a hit).
    bearer_cache: bearer_cache::BearerCache,
    /// Opened session cookies (per-request checks still run on a hit).
    session_cache: session_cache::SessionCache,
    /// `[server] identity_header_prefix`, for the routes' claim headers.
    prefix: String,
    /// The fixed identity header names, built once.
    names: IdentityHeaderNames,
    audit: Option<Arc<crate::audit_event::AuditLog>>,
}

/// The identity headers every authenticated request carries upstream,
/// named once from `[server] identity_header_prefix` (the prefix is
/// validated at load as a header-name prefix).
#[derive(Debug)]
struct IdentityHeaderNames {
    sub: HeaderName,
    provider: HeaderName,
    auth_method: HeaderName,
    level: HeaderName,
    assertion: HeaderName,
}

impl IdentityHeaderNames {
    fn new(prefix: &str) -> Result<Self, String> {
        let name = |suffix: &str| {
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                .map_err(|e| format!("identity_header_prefix `{prefix}`: {e}"))
        };
        Ok(Self {
            sub: name("sub")?,
            provider: name("provider")?,
            auth_method: name("auth-method")?,
            level: name("level")?,
            assertion: name("assertion")?,
        })
    }
}

/// Random URL-safe text of `n` random bytes.
pub fn random_token(n: usize) -> String {
    use base64::Engine as _;
    let mut b = vec![0u8; n];
    // SystemRandom fails only if the OS has no randomness; an all-zero
    // token would then be unusable anyway because state and session ids
    // are also checked for single use.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The claim holding each SAML attribute's trust level
/// ([`saml::SamlSp::login`]); the assertion repeats it for the forwarded ones.
pub(crate) const TRUST_LEVELS: &str = "trust_levels";

/// How often each provider's discovery document is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(3);

/// The session store's configuration: where, under which key prefix or
/// schema, and the TLS material built from the CA file (a CA file that
/// cannot be used is a store configuration error, as the store reports it).
fn session_store_config(cfg: &config::Identity) -> Result<StoreConfig, String> {
    let tls_err = |e: crate::store_tls::StoreTlsError| {
        format!("identity.store: {}", StoreError::Config(e.to_string()))
    };
    Ok(match &cfg.store {
        config::SessionStorage::Dir(d) => StoreConfig::File { dir: d.clone() },
        config::SessionStorage::Redis { url, tls } => StoreConfig::Redis {
            url: url.clone(),
            prefix: format!("{}:", cfg.store_namespace),
            tls: tls
                .as_ref()
                .map(crate::store_tls::redis_tls)
                .transpose()
                .map_err(tls_err)?,
        },
        config::SessionStorage::Postgres { url, tls } => StoreConfig::Postgres {
            url: url.clone(),
            schema: format!("{}_sessions", cfg.store_namespace),
            tls: tls
                .as_ref()
                .map(crate::store_tls::client_config)
                .transpose()
                .map_err(tls_err)?,
        },
    })
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Loads every file `[identity]` names, with the constructors
/// [`Auth::new`] uses (session keys, each provider's client secret or key
/// and CA, the assertion key), without opening the session store or
/// reaching a provider. Returns every problem as `(key, reason)`.
pub(crate) fn check_files(
    cfg: &config::Identity,
    keys: &crate::keys::Keys,
) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    if let Err(e) = CookieKeys::load(&cfg.session_key_file) {
        issues.push(("identity.session_key_file".into(), e.to_string()));
    }
    for (i, p) in cfg.providers.iter().enumerate() {
        if let Err(e) = Provider::new(p.clone(), keys) {
            issues.push((format!("identity.providers[{i}]"), e));
        }
    }
    for p in &cfg.saml_providers {
        if let Err(e) = saml::SamlSp::new(p.clone(), keys) {
            issues.push((format!("identity.providers `{}`", p.name), e));
        }
    }
    let assertions = keys
        .resolve(&cfg.assertion_key)
        .map_err(|e| e.to_string())
        .and_then(|key| assertion::Assertions::new(key, cfg));
    if let Err(e) = assertions {
        issues.push(("identity.assertion_key".into(), e));
    }
    issues
}

/// The SP metadata of the SAML provider `name` (`stadttor identity
/// saml-metadata`), built by the constructor `serve` uses, so the
/// certificates printed are the ones checked against the keys.
pub fn saml_metadata(
    cfg: &config::Identity,
    name: &str,
    keys: &crate::keys::Keys,
) -> Result<String, String> {
    let p = cfg
        .saml_providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = cfg.saml_providers.iter().map(|p| p.name.as_str()).collect();
            format!(
                "no SAML provider named `{name}` (protocol = \"saml\"); configured: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })?;
    saml::sp_metadata(p, keys)
}

/// Opens the session store of `cfg` and closes it again, if it is reached
/// over the network (Redis, PostgreSQL); a directory store is created at
/// start and not touched here. `Err` is the reason.
pub(crate) async fn check_store(cfg: &config::Identity) -> Result<(), String> {
    if matches!(cfg.store, config::SessionStorage::Dir(_)) {
        return Ok(());
    }
    let store = SessionStore::open(&session_store_config(cfg)?, StoreOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    Ok(())
}

/// A SAML provider's background work: its metadata URL fetched at start
/// and every `idp_metadata_refresh` (30 s after a failure), and the
/// reachability probe.
async fn watch_saml_provider(sp: Arc<saml::SamlSp>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_fetch = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() >= next_fetch {
            // Soon again after a failure, else after the refresh period.
            next_fetch = tokio::time::Instant::now()
                + match sp.refresh_metadata().await {
                    Ok(()) => sp.cfg.idp_metadata_refresh,
                    Err(e) => {
                        tracing::warn!(provider = %sp.cfg.name, error = %e, "SAML IdP metadata not refreshed; the verified copy in use stays");
                        Duration::from_secs(30)
                    }
                };
        }
        sp.probe().await;
    }
}

impl Auth {
    /// Builds providers, loads cookie keys, opens the session store.
    pub async fn new(
        config: &config::Config,
        keys: &crate::keys::Keys,
        audit: Option<Arc<crate::audit_event::AuditLog>>,
    ) -> Result<Option<Self>, String> {
        let Some(cfg) = config.identity.clone() else {
            return Ok(None);
        };
        let cookies = CookieKeys::load(&cfg.session_key_file)
            .map_err(|e| format!("identity.session_key_file: {e}"))?;
        let mut providers = Vec::new();
        for p in &cfg.providers {
            providers.push(Arc::new(Provider::new(p.clone(), keys)?));
        }
        let mut saml_sps = Vec::new();
        for p in &cfg.saml_providers {
            saml_sps.push(Arc::new(saml::SamlSp::new(p.clone(), keys)?));
        }
        let store = SessionStore::open(&session_store_config(&cfg)?, StoreOptions::default())
            .await
            .map_err(|e| format!("identity.store: {e}"))?;
        let key = keys
            .resolve(&cfg.assertion_key)
            .map_err(|e| format!("identity.assertion_key: {e}"))?;
        let assertions = assertion::Assertions::new(key, &cfg)
            .map_err(|e| format!("identity.assertion_key: {e}"))?;
        let kept_claims = config
            .routes
            .iter()
            .flat_map(|r| r.auth.claims.keys().cloned())
            // Each SAML attribute's trust level, for the assertion.
            .chain(std::iter::once(TRUST_LEVELS.to_owned()))
            // The SAML NameID, for Single Logout.
            .chain(saml_logout::NAME_ID_CLAIMS.map(str::to_owned))
            // Policy subjects taken from a claim must survive in the session.
            .chain(config.routes.iter().flat_map(|r| {
                r.authz
                    .as_ref()
                    .filter(|z| z.subject_claim != "sub")
                    .map(|z| {
                        // … and so must the claim that verifies it.
                        let by = crate::policy::verification_claim(
                            &z.subject_claim,
                            z.subject_verified_claim.as_deref(),
                        );
                        std::iter::once(z.subject_claim.clone()).chain(by)
                    })
                    .into_iter()
                    .flatten()
            }))
            .collect();
        for p in &providers {
            let p = p.clone();
            tokio::spawn(async move {
                p.warm_up().await;
                let mut tick = tokio::time::interval(PROBE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    p.probe().await;
                }
            });
        }
        for sp in &saml_sps {
            tokio::spawn(watch_saml_provider(sp.clone()));
        }
        let names = IdentityHeaderNames::new(&config.server.identity_header_prefix)?;
        Ok(Some(Self {
            prefix: config.server.identity_header_prefix.clone(),
            names,
            cfg,
            providers,
            saml: saml_sps,
            cookies,
            store,
            assertions,
            kept_claims,
            bearer_cache: bearer_cache::BearerCache::default(),
            session_cache: session_cache::SessionCache::default(),
            audit,
        }))
    }

    /// Records a refused authentication step, best effort (the request is
    /// refused either way).
    pub fn record(
        &self,
        kind: &str,
        ok: bool,
        request_id: &str,
        subject: Option<(&str, &str)>,
        attrs: &[(&str, serde_json::Value)],
    ) -> bool {
        let Some((log, ev)) = self.auth_event(kind, ok, request_id, subject, attrs) else {
            return true;
        };
        match log.record(&ev) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(request_id, kind, error = %e, "audit log cannot record an authentication event");
                false
            }
        }
    }

    /// Records an authentication event (login, step-up, logout) with the
    /// subject pseudonymised and waits until it is durable. Returns false
    /// if a configured log could not make it durable; callers refuse what
    /// they were about to grant.
    pub async fn record_durable(
        &self,
        kind: &str,
        request_id: &str,
        subject: Option<(&str, &str)>,
        attrs: &[(&str, serde_json::Value)],
    ) -> bool {
        let Some((log, ev)) = self.auth_event(kind, true, request_id, subject, attrs) else {
            return true;
        };
        match log.record_durable(&ev).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(request_id, kind, error = %e, "audit log cannot record an authentication event");
                false
            }
        }
    }

    fn auth_event(
        &self,
        kind: &str,
        ok: bool,
        request_id: &str,
        subject: Option<(&str, &str)>,
        attrs: &[(&str, serde_json::Value)],
    ) -> Option<(&crate::audit_event::AuditLog, stadttor_audit::event::Event)> {
        let log = self.audit.as_deref()?;
        let outcome = if ok {
            stadttor_audit::event::Outcome::Success
        } else {
            stadttor_audit::event::Outcome::Failure
        };
        let mut ev = stadttor_audit::event::Event::new(kind, outcome).request_id(request_id);
        if let Some((iss, sub)) = subject {
            ev = ev.subject(log.pseudonym(iss, sub));
        }
        for (k, v) in attrs {
            ev = ev.attr(*k, v.clone());
        }
        Some((log, ev))
    }

    /// A provider by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.cfg.name == name)
    }

    /// A SAML provider by name.
    pub(crate) fn saml(&self, name: &str) -> Option<&Arc<saml::SamlSp>> {
        self.saml.iter().find(|p| p.cfg.name == name)
    }

    /// Why provider `name` (either protocol) is considered down, if it is.
    pub fn provider_down(&self, name: &str) -> Option<String> {
        match self.provider(name) {
            Some(p) => p.down(),
            None => self.saml(name).and_then(|p| p.down()),
        }
    }

    /// For `/readyz`: the session store's health.
    pub fn health(&self) -> Result<(), String> {
        self.store.health()
    }

    /// The JWKS with the assertion key, for services.
    pub fn jwks(&self) -> &str {
        self.assertions.jwks()
    }

    /// The session cookie, if there is one, opened (from the cache or by
    /// [`Self::open_session`]) and checked for its lifetime at `now`; it
    /// opens only on the `host` it was issued for. Returns the cache key
    /// with the session.
    fn session(
        &self,
        headers: &HeaderMap,
        host: &str,
        now: u64,
    ) -> Result<Option<CachedSession>, session::Invalid> {
        let Some(raw) = cookie::get(headers, session::COOKIE) else {
            return Ok(None);
        };
        let key = session_cache::key(host, raw);
        let s = match self.session_cache.get(&key, now) {
            Some(s) => s,
            None => {
                let s = Arc::new(self.open_session(raw, host)?);
                self.session_cache.insert(key, s.clone(), now);
                s
            }
        };
        s.check(now, secs(self.cfg.session_idle_timeout))?;
        Ok(Some((key, s)))
    }

    /// The one check of a sealed session cookie: it opens with one of the
    /// gateway's keys for `host` and holds a session.
    fn open_session(&self, raw: &str, host: &str) -> Result<SessionData, session::Invalid> {
        let plain = self
            .cookies
            .open_for(session::COOKIE, host, raw)
            .ok_or(session::Invalid::Tampered)?;
        serde_json::from_slice(&plain).map_err(|_| session::Invalid::Tampered)
    }

    /// Whether session `s` is revoked (logout, back-channel logout, Single
    /// Logout): by its id, provider session or subject, and a SAML session
    /// also under its NameID (a NameID-only LogoutRequest, see
    /// [`saml_logout`]). Only the local replica is asked: no I/O.
    fn session_revoked(&self, s: &SessionData) -> Result<bool, StoreError> {
        let r = SessionRef {
            id: &s.id,
            issuer: &s.iss,
            sub: &s.sub,
            sid: s.sid.as_deref(),
            issued_at: UNIX_EPOCH + Duration::from_secs(s.iat),
        };
        if self.store.is_revoked(&r)? {
            return Ok(true);
        }
        let name_id = s
            .claims
            .get(saml_logout::NAME_ID_CLAIMS[0])
            .and_then(serde_json::Value::as_str)
            .filter(|_| self.saml(&s.p).is_some())
            .map(saml_logout::name_id_subject);
        match name_id {
            Some(sub) => self.store.is_revoked(&SessionRef {
                sub: &sub,
                sid: None,
                ..r
            }),
            None => Ok(false),
        }
    }

    fn seal_session(&self, s: &SessionData, host: &str, now: u64) -> Option<HeaderValue> {
        let json = serde_json::to_vec(s).ok()?;
        let sealed = self.cookies.seal_for(session::COOKIE, host, &json)?;
        let max_age = s.exp.saturating_sub(now);
        HeaderValue::from_str(&cookie::set(session::COOKIE, &sealed, Some(max_age))).ok()
    }

    /// Authenticates a request for `route`. `Err` is the complete response
    /// to send instead (login redirect, 401, 403, 503).
    pub async fn authenticate(
        &self,
        route: &config::Route,
        parts: &http::request::Parts,
        client_cert: Option<&crate::http::tls::ClientCert>,
        request_id: &str,
    ) -> Result<Verified, Response<ProxyBody>> {
        let a = &route.auth;
        if a.methods.is_empty() {
            return Ok(Verified::default());
        }
        let aud = Audience::of(&parts.headers, is_api(a));
        let host = crate::http::credentials::request_host(&parts.uri, &parts.headers);
        let now = unix_now();
        let mut identity = None;
        let mut set_cookie = None;
        for m in &a.methods {
            match m {
                AuthMethod::Session => {
                    identity = self
                        .session_identity(a, parts, &host, aud, request_id, &mut set_cookie)
                        .map_err(|r| *r)?;
                }
                AuthMethod::Bearer => {
                    let Some(token) = bearer(&parts.headers) else {
                        continue;
                    };
                    match self.bearer(a, token).await {
                        Ok(id) => identity = Some(id),
                        Err(BearerFailure::Invalid(detail)) => {
                            tracing::info!(request_id, error = %detail, "bearer token refused");
                            return Err(Refusal::Unauthenticated {
                                challenge: "Bearer realm=\"stadttor\", error=\"invalid_token\""
                                    .into(),
                            }
                            .into_response(aud, request_id));
                        }
                        Err(BearerFailure::Unavailable(detail)) => {
                            tracing::warn!(request_id, error = %detail, "cannot validate bearer token; refusing (fail closed)");
                            return Err(Refusal::Unavailable(Problem::ProviderDown)
                                .into_response(aud, request_id));
                        }
                    }
                }
                AuthMethod::ClientCert => {
                    if let Some(cc) = client_cert {
                        identity = Some(Identity {
                            method: AuthMethod::ClientCert,
                            provider: "client-cert".into(),
                            issuer: "client-cert".into(),
                            sub: cc.subject.clone(),
                            level: a.client_cert_level,
                            auth_time: now,
                            cache_key: format!("cert:{}", cc.subject),
                            claims: Default::default(),
                        });
                    }
                }
            }
            if identity.is_some() {
                break;
            }
        }

        let Some(id) = identity else {
            return Err(self
                .login_required(route, parts, aud, request_id, None, set_cookie)
                .await);
        };
        if let Some(min) = a.min_level {
            if id.level.is_none_or(|l| l < min) {
                tracing::info!(request_id, have = ?id.level, need = ?min, method = id.method.name(), "level of assurance too low");
                return Err(match id.method {
                    AuthMethod::Session => {
                        self.login_required(route, parts, aud, request_id, Some(min), set_cookie)
                            .await
                    }
                    AuthMethod::Bearer => Refusal::StepUp {
                        acr: self.acr_for(a, &id.provider, min),
                    }
                    .into_response(aud, request_id),
                    AuthMethod::ClientCert => Refusal::LevelTooLow.into_response(aud, request_id),
                });
            }
        }

        let upstream_headers = self
            .upstream_headers(route, &id, aud, request_id)
            .map_err(|r| *r)?;
        Ok(Verified {
            identity: Some(id),
            upstream_headers,
            set_cookie,
        })
    }

    /// The identity of the route's session cookie, if any: `Ok(None)` for
    /// no, a refused, a revoked or another provider's session (a refused
    /// cookie is cleared through `set_cookie`, a refreshed one set there).
    fn session_identity(
        &self,
        a: &config::RouteAuth,
        parts: &http::request::Parts,
        host: &str,
        aud: Audience,
        request_id: &str,
        set_cookie: &mut Option<HeaderValue>,
    ) -> Result<Option<Identity>, Box<Response<ProxyBody>>> {
        let now = unix_now();
        match self.session(&parts.headers, host, now) {
            Ok(Some((key, s))) => {
                if !a.providers.contains(&s.p) {
                    return Ok(None);
                }
                match self.session_revoked(&s) {
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::info!(request_id, "session revoked (logout)");
                        return Ok(None);
                    }
                    Err(e) => {
                        tracing::warn!(request_id, error = %e, "session store unavailable; refusing (fail closed)");
                        return Err(Box::new(
                            Refusal::Unavailable(Problem::SessionsDown)
                                .into_response(aud, request_id),
                        ));
                    }
                }
                if now.saturating_sub(s.seen) >= 60 {
                    *set_cookie = self.session_cache.refreshed(&key, now).or_else(|| {
                        let mut fresh = SessionData::clone(&s);
                        fresh.seen = now;
                        let c = self.seal_session(&fresh, host, now)?;
                        self.session_cache.set_refreshed(&key, now, c.clone());
                        Some(c)
                    });
                }
                Ok(Some(Identity {
                    method: AuthMethod::Session,
                    provider: s.p.clone(),
                    issuer: s.iss.clone(),
                    level: s.level(now, secs(self.cfg.step_up_lifetime)),
                    auth_time: s.auth,
                    cache_key: s.id.clone(),
                    sub: s.sub.clone(),
                    claims: s.claims.clone(),
                }))
            }
            Ok(None) => Ok(None),
            Err(why) => {
                tracing::info!(request_id, reason = ?why, "session cookie refused");
                // Clear it, so the browser stops sending it.
                *set_cookie = HeaderValue::from_str(&cookie::clear(session::COOKIE)).ok();
                Ok(None)
            }
        }
    }

    /// The identity headers for the service: subject, provider, method,
    /// level, the route's forwarded claims and the signed assertion.
    fn upstream_headers(
        &self,
        route: &config::Route,
        id: &Identity,
        aud: Audience,
        request_id: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Box<Response<ProxyBody>>> {
        let mut upstream_headers = Vec::with_capacity(5 + route.auth.claims.len());
        let mut push = |name: &HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(&header_safe(value)) {
                upstream_headers.push((name.clone(), v));
            }
        };
        let n = &self.names;
        push(&n.sub, &id.sub);
        push(&n.provider, &id.provider);
        push(&n.auth_method, id.method.name());
        if let Some(l) = id.level {
            push(&n.level, l.as_str());
        }
        let mut forwarded = serde_json::Map::new();
        for (claim, suffix) in &route.auth.claims {
            if let Some(v) = id.claims.get(claim) {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Ok(name) =
                    HeaderName::from_bytes(format!("{}{suffix}", self.prefix).as_bytes())
                {
                    push(&name, &text);
                }
                forwarded.insert(claim.clone(), v.clone());
            }
        }
        // SAML attributes carry their own trust level (BundID's
        // akdb:TrustLevel): the assertion says it for each forwarded one.
        if let Some(serde_json::Value::Object(levels)) = id.claims.get(TRUST_LEVELS) {
            let kept: serde_json::Map<String, serde_json::Value> = levels
                .iter()
                .filter(|(k, _)| forwarded.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() && !forwarded.contains_key(TRUST_LEVELS) {
                forwarded.insert(TRUST_LEVELS.into(), serde_json::Value::Object(kept));
            }
        }
        match self.assertions.get(id, &route.name, forwarded) {
            // A compact JWS is always a valid header value, made once per
            // cached assertion.
            Ok(jwt) => upstream_headers.push((n.assertion.clone(), jwt)),
            Err(e) => {
                tracing::error!(request_id, error = %e, "cannot sign the identity assertion; refusing (fail closed)");
                return Err(Box::new(
                    Refusal::Unavailable(Problem::IdentityUnavailable)
                        .into_response(aud, request_id),
                ));
            }
        }
        Ok(upstream_headers)
    }

    /// The `acr` value that asks `provider` (one of the route's) for
    /// `level`, or the level's eIDAS URI.
    fn acr_for(&self, a: &config::RouteAuth, provider: &str, level: Level) -> String {
        a.providers
            .iter()
            .filter_map(|p| self.provider(p))
            .find(|p| p.cfg.name == provider)
            .and_then(|p| p.cfg.acr_for(level).map(str::to_owned))
            .unwrap_or_else(|| level.uri().to_owned())
    }

    /// Authenticates a bearer token: from the cache or by full validation
    /// (signature and claims), then, on every request, the route's
    /// provider and audience, the token's times and revocation.
    async fn bearer(&self, a: &config::RouteAuth, token: &str) -> Result<Identity, BearerFailure> {
        let key = bearer_cache::key(token);
        let now = unix_now();
        let mut cached = self.bearer_cache.get(&key, now);
        if let Some(v) = &cached {
            // Only if this route would pick the same provider for its issuer.
            let same = self
                .route_provider(a, &v.issuer)
                .await
                .is_some_and(|p| p.cfg.name == v.provider);
            if !same {
                cached = None;
            }
        }
        let v = match cached {
            Some(v) => v,
            None => {
                let v = Arc::new(self.validate_bearer(a, token).await?);
                let exp = v
                    .login
                    .claims
                    .get("exp")
                    .and_then(serde_json::Value::as_f64);
                let exp = exp.map_or(0, |e| e as u64);
                self.bearer_cache.insert(key, v.clone(), now, exp);
                v
            }
        };
        let audience = a.bearer_audience.as_deref().unwrap_or("");
        v.check(audience, now)
            .map_err(|e| BearerFailure::Invalid(e.to_string()))?;
        let cache_key = format!("bearer:{}", hex(&key[..16]));
        self.bearer_revocation(&v, &cache_key)?;
        Ok(Identity {
            method: AuthMethod::Bearer,
            provider: v.provider.clone(),
            issuer: v.issuer.clone(),
            level: v.login.level,
            auth_time: v.login.auth_time,
            cache_key,
            sub: v.login.sub.clone(),
            claims: v.login.claims.clone(),
        })
    }

    /// The first of the route's providers whose issuer is `iss`.
    async fn route_provider(&self, a: &config::RouteAuth, iss: &str) -> Option<&Arc<Provider>> {
        for name in &a.providers {
            if let Some(p) = self.provider(name) {
                if p.issuer().await == iss {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Full validation of a bearer token not in the cache: signature with
    /// the provider's keys and every claim check of `validate_bearer`.
    async fn validate_bearer(
        &self,
        a: &config::RouteAuth,
        token: &str,
    ) -> Result<bearer_cache::VerifiedToken, BearerFailure> {
        let t = verify::Token::parse(token).map_err(|e| BearerFailure::Invalid(e.to_string()))?;
        let iss = t
            .str_claim("iss")
            .ok_or_else(|| BearerFailure::Invalid("no iss".into()))?;
        // The issuer picks which configured provider's keys verify it;
        // nothing else is taken from the token.
        let p = self.route_provider(a, iss).await.ok_or_else(|| {
            BearerFailure::Invalid(format!("issuer `{iss}` is not accepted on this route"))
        })?;
        let audience = a.bearer_audience.as_deref().unwrap_or("");
        let login = p.validate_bearer(&t, audience).await.map_err(|e| match e {
            provider::ProviderError::Unavailable { .. } => {
                BearerFailure::Unavailable(e.to_string())
            }
            _ => BearerFailure::Invalid(e.to_string()),
        })?;
        Ok(bearer_cache::VerifiedToken {
            provider: p.cfg.name.clone(),
            issuer: iss.to_owned(),
            login,
        })
    }

    /// Refuses a bearer token whose provider session (`sid`) or subject
    /// was logged out by back-channel logout after it was issued, as for
    /// sessions; a session store that cannot answer refuses (fail closed).
    fn bearer_revocation(
        &self,
        v: &bearer_cache::VerifiedToken,
        id: &str,
    ) -> Result<(), BearerFailure> {
        let iat = v
            .login
            .claims
            .get("iat")
            .and_then(serde_json::Value::as_f64);
        let issued_at = iat
            .and_then(|i| UNIX_EPOCH.checked_add(Duration::from_secs(i as u64)))
            .unwrap_or(UNIX_EPOCH);
        let r = SessionRef {
            id,
            issuer: &v.issuer,
            sub: &v.login.sub,
            sid: v.login.sid.as_deref(),
            issued_at,
        };
        match self.store.is_revoked(&r) {
            Ok(false) => Ok(()),
            Ok(true) => Err(BearerFailure::Invalid(
                "token revoked (back-channel logout)".into(),
            )),
            Err(e) => Err(BearerFailure::Unavailable(format!("session store: {e}"))),
        }
    }

    /// No identity (or too low a level): send browsers to a login, APIs a 401.
    async fn login_required(
        &self,
        route: &config::Route,
        parts: &http::request::Parts,
        aud: Audience,
        request_id: &str,
        step_up: Option<Level>,
        set_cookie: Option<HeaderValue>,
    ) -> Response<ProxyBody> {
        let a = &route.auth;
        if is_api(a) {
            let challenge = if a.methods.contains(&AuthMethod::Bearer) {
                "Bearer realm=\"stadttor\"".to_owned()
            } else {
                "stadttor-client-certificate".to_owned()
            };
            return Refusal::Unauthenticated { challenge }.into_response(aud, request_id);
        }
        let return_to = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let mut resp = if parts.method == http::Method::GET || parts.method == http::Method::HEAD {
            let level = step_up.or(a.min_level);
            if a.providers.len() == 1 {
                flow::start_login(
                    self,
                    &crate::http::credentials::request_host(&parts.uri, &parts.headers),
                    &a.providers[0],
                    level,
                    step_up.is_some(),
                    &return_to,
                    aud,
                    request_id,
                )
                .await
            } else {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair("route", &route.name)
                    .append_pair("return_to", &return_to);
                if step_up.is_some() {
                    q.append_pair("step_up", "1");
                }
                redirect(&format!("/.stadttor/login?{}", q.finish()), Vec::new())
            }
        } else {
            let login = format!(
                "/.stadttor/login?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("route", &route.name)
                    .finish()
            );
            Refusal::LoginRequired { login }.into_response(aud, request_id)
        };
        if let Some(c) = set_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }
}

enum BearerFailure {
    Invalid(String),
    Unavailable(String),
}

/// The bearer token of the one `Authorization` header (two are refused
/// before authentication, see [`crate::http::credentials::check_unique`]).
fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = crate::http::credentials::authorization(h)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Percent-encodes what is not printable ASCII, so any claim fits a header.
fn header_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(o)
}

/// Lowercase hex (the one implementation, in pki).
pub(crate) use stadttor_pki::hex::encode as hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_always_safe() {
        assert_eq!(header_safe("Müller"), "M%C3%BCller");
        assert_eq!(header_safe("a\r\nb"), "a%0D%0Ab");
        assert_eq!(header_safe("100%"), "100%25");
        assert!(HeaderValue::from_str(&header_safe("x\u{0}y")).is_ok());
    }

    #[test]
    fn bearer_scheme() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer good".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer forged".parse().unwrap());
        assert_eq!(bearer(&h), None, "never one of two");
    }
}
