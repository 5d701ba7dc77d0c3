//! One OpenID provider at run time: discovery, JWKS with rotation, the
//! authorization request, the code exchange with full ID token validation,
//! userinfo, and validation of logout and bearer tokens.
//!
//! The openidconnect crate builds the requests and validates ID tokens
//! (issuer, audience, expiry, nonce, signature with the pinned algorithms).
//! What it leaves to the application is done here: the RFC 9207 `iss`
//! check (in `flow`), refusal of keys in token headers, `iat` freshness,
//! `azp`, `at_hash`, `acr` mapping, userinfo `sub` equality, logout and
//! bearer tokens, and a rate-limited JWKS refetch when a token names an
//! unknown `kid`. Bearer and logout token signatures are verified with
//! ring against the keys decoded once per JWKS fetch (`jwk`); ID token
//! signatures still by openidconnect. A provider that cannot be reached is an error, never
//! a pass: callers fail closed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalProviderMetadata, AuthType, AuthenticationContextClass,
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, JsonWebKeySet, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stadttor_hsm::SigningKey;
use tokio::sync::{Mutex, RwLock};

use super::jwk::KeySet;
use super::verify::{Token, VerifyError};
use crate::config::{self, ProviderAuth};
use crate::identity::Level;
use crate::respond::error_chain;
use stadttor_pki::jose::{self, JwsHeader};

/// Clock skew allowed on token times, in seconds.
pub(crate) const LEEWAY: u64 = 60;
/// Least time between two JWKS fetches caused by unknown key ids.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Least time between two discovery attempts after a failure.
const DISCOVERY_RETRY: Duration = Duration::from_secs(3);
/// Largest provider response read.
const MAX_RESPONSE: usize = 1024 * 1024;

/// Why talking to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider cannot be reached or answered garbage.
    #[error("identity provider `{provider}` unavailable: {detail}")]
    Unavailable {
        /// The provider's name.
        provider: String,
        /// What happened.
        detail: String,
    },
    /// A token was refused.
    #[error("token from `{provider}` refused: {detail}")]
    Refused {
        /// The provider's name.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// The gateway's own client key failed.
    #[error("client key: {0}")]
    ClientKey(String),
}

/// Metadata fields openidconnect's core type lacks.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct ExtraMetadata {
    /// RFC 9207.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RP-initiated logout.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery found.
#[derive(Debug)]
struct Discovered {
    metadata: Metadata,
    /// The JWKS's signing keys, decoded for ring once per fetch.
    keys: KeySet,
}

impl Discovered {
    fn new(metadata: Metadata) -> Self {
        let keys = KeySet::from_jwks(metadata.jwks());
        Self { metadata, keys }
    }
}

/// The outcome of a successful login at the provider.
#[derive(Debug, Clone)]
pub struct Login {
    /// `sub`.
    pub sub: String,
    /// `sid`, if the provider sends one.
    pub sid: Option<String>,
    /// The level the provider's `acr` maps to; `None` if it sent no or an
    /// unmapped `acr`.
    pub level: Option<Level>,
    /// The raw `acr`.
    pub acr: Option<String>,
    /// `auth_time`, or now.
    pub auth_time: u64,
    /// ID token and userinfo claims (not tokens).
    pub claims: Map<String, Value>,
}

/// A validated back-channel logout token.
#[derive(Debug, Clone)]
pub struct Logout {
    /// `sub`, if present.
    pub sub: Option<String>,
    /// `sid`, if present.
    pub sid: Option<String>,
    /// `jti`.
    pub jti: String,
    /// `exp`, or `iat` + 10 minutes.
    pub exp: u64,
}

/// HTTP client towards providers (OIDC endpoints, SAML metadata URLs).
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

impl Http {
    fn new(cfg: &config::Provider) -> Result<Self, String> {
        Self::with(cfg.ca.as_deref(), cfg.allow_http, cfg.request_timeout)
    }

    /// A client trusting `ca` (or the system roots), plain http only with
    /// `allow_http`, each request bounded by `timeout`.
    pub(crate) fn with(
        ca: Option<&std::path::Path>,
        allow_http: bool,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(ca) => {
                for c in stadttor_pki::certs::load_chain(ca).map_err(|e| e.to_string())? {
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let b = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = if allow_http {
            b.https_or_http().enable_http1().wrap_connector(http)
        } else {
            b.https_only().enable_http1().wrap_connector(http)
        };
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Sends `req`; the body is read up to 1 MiB, all within the timeout.
    pub(crate) async fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let req = req.map(|b| Full::new(Bytes::from(b)));
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| HttpError(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| HttpError(format!("reading the response: {e}")))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| HttpError(format!("no answer within {:?}", self.timeout)))?
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<http::Response<Vec<u8>>, HttpError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: http::Request<Vec<u8>>) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// A provider at run time.
#[derive(Debug)]
pub struct Provider {
    /// Its configuration.
    pub cfg: config::Provider,
    http: Http,
    secret: Option<ClientSecret>,
    /// The `private_key_jwt` key and its public JWK (whose `kid` goes into
    /// the client assertion's header).
    client_key: Option<(Arc<dyn SigningKey>, jose::Jwk)>,
    discovered: RwLock<Option<Arc<Discovered>>>,
    last_attempt: Mutex<Option<(Instant, String)>>,
    jwks_refetched: Mutex<Option<Instant>>,
    /// Why the last health probe failed; `None` while the provider answers.
    down: std::sync::Mutex<Option<String>>,
}

/// What an authorization request needs to be checked later.
#[derive(Debug)]
pub struct AuthRequest {
    /// Where to send the browser.
    pub url: String,
    /// The PKCE verifier, kept in the login transaction.
    pub pkce_verifier: String,
    /// The issuer the response must come from.
    pub issuer: String,
}

impl Provider {
    /// Builds the provider: its HTTP client and client credentials.
    pub fn new(cfg: config::Provider, keys: &crate::keys::Keys) -> Result<Self, String> {
        let http =
            Http::new(&cfg).map_err(|e| format!("identity.providers `{}`: CA: {e}", cfg.name))?;
        let (secret, client_key) = match &cfg.client_auth {
            ProviderAuth::Secret(path) => {
                let bytes = stadttor_hsm::secret_file::read(path).map_err(|e| e.to_string())?;
                let s = std::str::from_utf8(&bytes)
                    .map_err(|_| format!("{}: the client secret file is not text", path.display()))?
                    .trim();
                if s.is_empty() {
                    return Err(format!(
                        "{}: the client secret file is empty",
                        path.display()
                    ));
                }
                (Some(ClientSecret::new(s.to_owned())), None)
            }
            ProviderAuth::PrivateKeyJwt(r) => {
                let key = keys.resolve(r).map_err(|e| e.to_string())?;
                let jwk = jose::public_jwk(key.as_ref())
                    .map_err(|e| format!("client key `{r}`: private_key_jwt: {e}"))?;
                (None, Some((key, jwk)))
            }
        };
        Ok(Self {
            cfg,
            http,
            secret,
            client_key,
            discovered: RwLock::new(None),
            last_attempt: Mutex::new(None),
            jwks_refetched: Mutex::new(None),
            down: std::sync::Mutex::new(None),
        })
    }

    /// The public JWK of the client key, for registration at the provider.
    pub fn client_jwk(&self) -> Option<Value> {
        self.client_key
            .as_ref()
            .map(|(_, jwk)| jwk.to_json().clone())
    }

    fn unavailable(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Unavailable {
            provider: self.cfg.name.clone(),
            detail: detail.into(),
        }
    }

    fn refused(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Refused {
            provider: self.cfg.name.clone(),
            detail: detail.into(),
        }
    }

    /// The provider's metadata, discovered once and kept; a failed
    /// discovery is retried at most every few seconds.
    async fn metadata(&self) -> Result<Arc<Discovered>, ProviderError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let mut last = self.last_attempt.lock().await;
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        if let Some((at, why)) = last.as_ref() {
            if at.elapsed() < DISCOVERY_RETRY {
                return Err(self.unavailable(why.clone()));
            }
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| self.unavailable(format!("issuer URL: {e}")))?;
        match Metadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                let d = Arc::new(Discovered::new(metadata));
                tracing::info!(provider = %self.cfg.name, "identity provider discovered");
                *self.discovered.write().await = Some(d.clone());
                *last = None;
                Ok(d)
            }
            Err(e) => {
                let why = format!("discovery failed: {}", error_chain(&e));
                tracing::warn!(provider = %self.cfg.name, error = %why, "identity provider unavailable");
                *last = Some((Instant::now(), why.clone()));
                Err(self.unavailable(why))
            }
        }
    }

    /// Fetches the JWKS again, at most once per interval. Returns whether
    /// it did.
    async fn refetch_jwks(&self, d: &Discovered) -> Result<bool, ProviderError> {
        let mut last = self.jwks_refetched.lock().await;
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        let jwks: CoreJsonWebKeySet = JsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| self.unavailable(format!("JWKS: {}", error_chain(&e))))?;
        tracing::info!(provider = %self.cfg.name, keys = jwks.keys().len(), "JWKS refreshed after an unknown key id");
        let metadata = d.metadata.clone().set_jwks(jwks);
        *self.discovered.write().await = Some(Arc::new(Discovered::new(metadata)));
        Ok(true)
    }

    fn algs(&self) -> Vec<CoreJwsSigningAlgorithm> {
        self.cfg
            .id_token_algs
            .iter()
            .filter_map(|a| serde_json::from_value(Value::String(a.clone())).ok())
            .collect()
    }

    /// Builds an authorization request: code flow, PKCE S256, state and
    /// nonce given by the caller, `acr_values` and a forced fresh login for
    /// step-up.
    pub async fn authorization_request(
        &self,
        state: &str,
        nonce: &str,
        level: Option<Level>,
        force_login: bool,
    ) -> Result<AuthRequest, ProviderError> {
        let redirect = self.cfg.redirect_uri.clone();
        self.authorization_request_at(&redirect, state, nonce, level, force_login)
            .await
    }

    /// [`Provider::authorization_request`] with another registered
    /// redirect URI (the officers' login on the admin listener).
    pub async fn authorization_request_at(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        level: Option<Level>,
        force_login: bool,
    ) -> Result<AuthRequest, ProviderError> {
        if let Some(why) = self.down() {
            return Err(self.unavailable(why));
        }
        let d = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            None,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| self.unavailable(format!("redirect_uri: {e}")))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let nonce = nonce.to_owned();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state.clone()),
                move || Nonce::new(nonce.clone()),
            )
            .set_pkce_challenge(challenge);
        for s in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        // Ask for `acr` in the ID token always (some providers include it
        // only when asked), and for the needed level when there is one. The
        // level is enforced here whatever the provider answers.
        let wanted = level.and_then(|l| self.cfg.acr_for(l));
        if let Some(acr) = wanted {
            req = req.add_auth_context_value(AuthenticationContextClass::new(acr.to_owned()));
        }
        req = req.add_extra_param(
            "claims",
            serde_json::json!({ "id_token": { "acr": { "essential": wanted.is_some() } } })
                .to_string(),
        );
        if force_login {
            req = req
                .add_prompt(CoreAuthPrompt::Login)
                .set_max_age(Duration::ZERO);
        }
        let (url, _, _) = req.url();
        Ok(AuthRequest {
            url: url.to_string(),
            pkce_verifier: verifier.secret().clone(),
            issuer: d.metadata.issuer().as_str().to_owned(),
        })
    }

    /// Why the provider is considered down, if it is.
    pub fn down(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    /// One health probe: the discovery document must be served. The
    /// result gates new logins (a citizen gets a clear page instead of a
    /// browser error at an unreachable provider).
    pub async fn probe(&self) {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let result = match http::Request::get(url.as_str()).body(Vec::new()) {
            Ok(req) => match self.http.send(req).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("discovery answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let Ok(mut down) = self.down.lock() else {
            return;
        };
        match (result, down.is_some()) {
            (Ok(()), true) => {
                tracing::info!(provider = %self.cfg.name, "identity provider reachable again");
                *down = None;
            }
            (Err(why), false) => {
                tracing::warn!(provider = %self.cfg.name, error = %why, "identity provider unavailable; new logins are refused until it answers");
                *down = Some(why);
            }
            (Err(why), true) => *down = Some(why),
            (Ok(()), false) => {}
        }
    }

    /// Whether the provider promises RFC 9207 `iss` in responses.
    pub async fn sends_iss(&self) -> bool {
        match self.metadata().await {
            Ok(d) => d
                .metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The end-session endpoint, if the provider has one.
    pub async fn end_session_endpoint(&self) -> Option<String> {
        self.metadata()
            .await
            .ok()?
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()
    }

    fn client_assertion(&self, audience: &str) -> Result<Option<String>, ProviderError> {
        let Some((key, jwk)) = &self.client_key else {
            return Ok(None);
        };
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": self.cfg.client_id, "sub": self.cfg.client_id, "aud": audience,
            "jti": super::random_token(16), "iat": now, "exp": now + 60,
        });
        let header = JwsHeader {
            kid: Some(jwk.kid()),
            typ: Some("JWT"),
            expect_alg: None,
        };
        jose::sign_compact(key.as_ref(), &header, &claims)
            .map(Some)
            .map_err(|e| ProviderError::ClientKey(e.to_string()))
    }

    /// Exchanges an authorization code and validates everything that came
    /// back.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        max_age: Duration,
    ) -> Result<Login, ProviderError> {
        let redirect = self.cfg.redirect_uri.clone();
        self.exchange_at(&redirect, code, pkce_verifier, nonce, max_age)
            .await
    }

    /// [`Provider::exchange`] for a login that used another registered
    /// redirect URI.
    pub async fn exchange_at(
        &self,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        max_age: Duration,
    ) -> Result<Login, ProviderError> {
        let d = self.metadata().await?;
        let token_url = d
            .metadata
            .token_endpoint()
            .map(|u| u.as_str().to_owned())
            .ok_or_else(|| self.unavailable("no token endpoint"))?;
        let client = CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            self.secret.clone(),
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| self.unavailable(format!("redirect_uri: {e}")))?,
        );
        let client = if self.client_key.is_some() {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        };
        // Signing may block on a TPM: off the reactor.
        let assertion = tokio::task::block_in_place(|| self.client_assertion(&token_url))?;
        let mut req = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| self.unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        if let Some(a) = assertion {
            req = req
                .add_extra_param(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .add_extra_param("client_assertion", a);
        }
        let tokens = req.request_async(&self.http).await.map_err(|e| {
            let s = error_chain(&e);
            match e {
                openidconnect::RequestTokenError::ServerResponse(_) => {
                    self.refused(format!("token endpoint: {s}"))
                }
                _ => self.unavailable(format!("token endpoint: {s}")),
            }
        })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| self.refused("no ID token in the token response"))?;
        let raw = id_token.to_string();
        let parsed = Token::parse(&raw).map_err(|e| self.refused(e.to_string()))?;

        let d = self
            .verify_id_token(d, id_token, tokens.access_token(), nonce)
            .await?;
        let now = unix_now();
        parsed
            .check_times(now, LEEWAY, true, Some(max_age.as_secs()))
            .map_err(|e| self.refused(format!("ID token: {e}")))?;
        parsed
            .check_audience(&self.cfg.client_id, Some(&self.cfg.client_id))
            .map_err(|e| self.refused(format!("ID token: {e}")))?;
        let sub = parsed
            .str_claim("sub")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.refused("ID token without sub"))?
            .to_owned();
        let acr = parsed.str_claim("acr").map(str::to_owned);
        let mut claims = parsed.claims.clone();
        for k in [
            "iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "jti",
        ] {
            claims.remove(k);
        }

        // Userinfo: more claims, and the same subject (OIDC Core 5.3.2).
        self.userinfo(&d, tokens.access_token().secret(), &sub, &mut claims)
            .await?;
        Ok(Login {
            level: acr.as_deref().and_then(|a| self.cfg.level_of(a)),
            sid: parsed.str_claim("sid").map(str::to_owned),
            auth_time: parsed
                .claims
                .get("auth_time")
                .and_then(Value::as_u64)
                .unwrap_or(now),
            acr,
            sub,
            claims,
        })
    }

    /// Verifies the ID token's signature (refetching the JWKS once for an
    /// unknown key), nonce and `at_hash`; returns the metadata it used.
    async fn verify_id_token(
        &self,
        mut d: Arc<Discovered>,
        id_token: &CoreIdToken,
        access_token: &AccessToken,
        nonce: &str,
    ) -> Result<Arc<Discovered>, ProviderError> {
        let mut refetched = false;
        loop {
            let client = CoreClient::from_provider_metadata(
                d.metadata.clone(),
                ClientId::new(self.cfg.client_id.clone()),
                None,
            );
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(self.algs())
                .set_other_audience_verifier_fn(|_| false);
            match id_token.claims(&verifier, &Nonce::new(nonce.to_owned())) {
                Ok(claims) => {
                    if let Some(expected) = claims.access_token_hash() {
                        let alg = id_token
                            .signing_alg()
                            .map_err(|e| self.refused(e.to_string()))?;
                        let key = id_token
                            .signing_key(&verifier)
                            .map_err(|e| self.refused(e.to_string()))?;
                        let actual = AccessTokenHash::from_token(access_token, alg, key)
                            .map_err(|e| self.refused(e.to_string()))?;
                        if &actual != expected {
                            return Err(self.refused("at_hash does not match the access token"));
                        }
                    }
                    break;
                }
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) if !refetched => {
                    refetched = true;
                    if !self.refetch_jwks(&d).await? {
                        return Err(self.refused("no key in the JWKS matches the ID token"));
                    }
                    d = self.metadata().await?;
                }
                Err(e) => return Err(self.refused(format!("ID token: {}", error_chain(&e)))),
            }
        }
        Ok(d)
    }

    /// Adds the userinfo endpoint's claims (when scopes beyond `openid`
    /// were asked for), refusing a userinfo answer for another subject.
    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: &str,
        sub: &str,
        claims: &mut Map<String, Value>,
    ) -> Result<(), ProviderError> {
        if let Some(url) = d.metadata.userinfo_endpoint() {
            if self.cfg.scopes.len() > 1 {
                let req = http::Request::get(url.as_str())
                    .header(
                        http::header::AUTHORIZATION,
                        format!("Bearer {access_token}"),
                    )
                    .header(http::header::ACCEPT, "application/json")
                    .body(Vec::new())
                    .map_err(|e| self.unavailable(e.to_string()))?;
                let resp = self
                    .http
                    .send(req)
                    .await
                    .map_err(|e| self.unavailable(format!("userinfo: {e}")))?;
                if !resp.status().is_success() {
                    return Err(self.unavailable(format!("userinfo: status {}", resp.status())));
                }
                let info: Map<String, Value> = serde_json::from_slice(resp.body())
                    .map_err(|_| self.refused("userinfo is not a JSON object"))?;
                if info.get("sub").and_then(Value::as_str) != Some(sub) {
                    return Err(self.refused("userinfo sub differs from the ID token's"));
                }
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
        }
        Ok(())
    }

    /// Verifies a token's signature with the provider's JWKS, refetching
    /// the JWKS once (rate-limited) for an unknown key id.
    async fn verify_signature(&self, token: &Token<'_>) -> Result<Arc<Discovered>, ProviderError> {
        let d = self.metadata().await?;
        match token.verify(&self.cfg.id_token_algs, &d.keys) {
            Ok(()) => Ok(d),
            Err(VerifyError::UnknownKid(_)) if self.refetch_jwks(&d).await? => {
                let d = self.metadata().await?;
                token
                    .verify(&self.cfg.id_token_algs, &d.keys)
                    .map_err(|e| self.refused(e.to_string()))?;
                Ok(d)
            }
            Err(e) => Err(self.refused(e.to_string())),
        }
    }

    /// Validates a back-channel logout token (OIDC Back-Channel Logout 1.0
    /// §2.6). Replay of `jti` is checked by the caller against the store.
    pub async fn validate_logout_token(&self, raw: &str) -> Result<Logout, ProviderError> {
        let t = Token::parse(raw).map_err(|e| self.refused(e.to_string()))?;
        if let Some(typ) = t.header.get("typ").and_then(Value::as_str) {
            if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("jwt") {
                return Err(self.refused(format!("typ `{typ}` is not logout+jwt")));
            }
        }
        let d = self.verify_signature(&t).await?;
        let r = |e: VerifyError| self.refused(e.to_string());
        t.check_issuer(d.metadata.issuer().as_str()).map_err(r)?;
        t.check_audience(&self.cfg.client_id, None).map_err(r)?;
        let now = unix_now();
        t.check_times(now, LEEWAY, false, Some(600)).map_err(r)?;
        let events = t
            .claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| self.refused("no events claim"))?;
        if !events.contains_key("http://schemas.openid.net/event/backchannel-logout") {
            return Err(self.refused("events has no back-channel logout event"));
        }
        if t.claims.contains_key("nonce") {
            return Err(self.refused("a logout token must not carry a nonce"));
        }
        let sub = t.str_claim("sub").map(str::to_owned);
        let sid = t.str_claim("sid").map(str::to_owned);
        if sub.is_none() && sid.is_none() {
            return Err(self.refused("neither sub nor sid"));
        }
        let jti = t
            .str_claim("jti")
            .filter(|j| !j.is_empty())
            .ok_or_else(|| self.refused("no jti"))?
            .to_owned();
        let iat = t.claims.get("iat").and_then(Value::as_u64).unwrap_or(now);
        let exp = t
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(iat + 600);
        Ok(Logout { sub, sid, jti, exp })
    }

    /// Validates a bearer JWT access token for `audience`.
    pub async fn validate_bearer(
        &self,
        t: &Token<'_>,
        audience: &str,
    ) -> Result<Login, ProviderError> {
        if let Some(typ) = t.header.get("typ").and_then(Value::as_str) {
            let typ = typ.to_ascii_lowercase();
            if typ != "at+jwt" && typ != "jwt" && typ != "application/at+jwt" {
                return Err(self.refused(format!("typ `{typ}` is not an access token")));
            }
        }
        let d = self.verify_signature(t).await?;
        let r = |e: VerifyError| self.refused(e.to_string());
        t.check_issuer(d.metadata.issuer().as_str()).map_err(r)?;
        t.check_audience(audience, None).map_err(r)?;
        let now = unix_now();
        t.check_times(now, LEEWAY, true, None).map_err(r)?;
        let sub = t
            .str_claim("sub")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.refused("no sub"))?
            .to_owned();
        let acr = t.str_claim("acr").map(str::to_owned);
        Ok(Login {
            level: acr.as_deref().and_then(|a| self.cfg.level_of(a)),
            sid: t.str_claim("sid").map(str::to_owned),
            auth_time: t
                .claims
                .get("auth_time")
                .and_then(Value::as_u64)
                .unwrap_or(now),
            acr,
            sub,
            claims: t.claims.clone(),
        })
    }

    /// The issuer as discovered (or as configured before discovery).
    pub async fn issuer(&self) -> String {
        match self.metadata().await {
            Ok(d) => d.metadata.issuer().as_str().to_owned(),
            Err(_) => self.cfg.issuer.clone(),
        }
    }

    /// Starts discovery in the background so the first login is fast and
    /// an unreachable provider shows up in the logs at start.
    pub async fn warm_up(&self) {
        let _ = self.metadata().await;
    }
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
