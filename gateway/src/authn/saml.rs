//! One SAML identity provider at run time, and this gateway as its
//! service provider: the IdP's metadata, the SP's keys (signing and
//! decryption, from the key store: `tpm:`, `pkcs11:` or `file:`), the
//! signed AuthnRequest, the verified assertion turned into a [`Login`],
//! the Single Logout messages, the SP metadata and a reachability probe.
//!
//! The XML security is `stadttor_saml`'s (libxmlsec1); the browser side
//! (transaction cookie, ACS endpoint, session) is [`super::saml_flow`],
//! Single Logout's is [`super::saml_logout`]. The SP's SLO URL is not
//! configured: it is the ACS URL's origin with the path
//! `/.stadttor/slo/NAME` ([`slo_url`]), advertised in the SP metadata.
//! Signing and decryption may block on hardware: callers run them on the
//! blocking pool.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use stadttor_hsm::{DecryptingKey, SigningKey};
use stadttor_saml::logout::{self, ExpectLogout, IdpLogoutRequest, LogoutRequest, NameId};
use stadttor_saml::profile::{self, AkdbRequest, Profile};
use stadttor_saml::request::{self, AuthnRequest, Comparison, SignedMessage};
use stadttor_saml::response::{self, Assertion, Expect, Refused};
use stadttor_saml::{IdpMetadata, SpMetadata, BINDING_POST};

use super::provider::{unix_now, Http, Login};
use crate::config::SamlProvider;
use crate::identity::Level;

/// Clock skew allowed on assertion times.
pub(crate) const SKEW: Duration = Duration::from_secs(60);
/// How long a reachability probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// `NotOnOrAfter` of the SP's LogoutRequest, after its `IssueInstant`.
const LOGOUT_REQUEST_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// This SP's Single Logout URL for `cfg`: the ACS URL's origin with the
/// path `/.stadttor/slo/NAME` (the ACS URL is validated to be
/// `https://HOST/.stadttor/acs/NAME`).
pub(crate) fn slo_url(cfg: &SamlProvider) -> String {
    let origin = crate::config::url_origin(&cfg.acs_url).unwrap_or_default();
    format!("{origin}/.stadttor/slo/{}", cfg.name)
}

/// A SAML IdP and this SP's keys for it.
#[derive(Debug)]
pub(crate) struct SamlSp {
    /// The configuration.
    pub cfg: SamlProvider,
    /// The IdP's verified metadata: read at start, and refreshed from
    /// `idp_metadata_url` if configured; `None` until a first copy is there.
    idp: ArcSwapOption<IdpMetadata>,
    /// The pinned metadata signing certificates (DER), if configured.
    pinned: Option<Vec<Vec<u8>>>,
    /// Fetches `idp_metadata_url`.
    http: Option<Http>,
    /// This SP's SLO URL ([`slo_url`]).
    pub slo_url: String,
    signing_key: Arc<dyn SigningKey>,
    decryption_key: Option<Arc<dyn DecryptingKey>>,
    down: Mutex<Option<String>>,
}

/// The leaf certificate (DER) of a PEM file, checked to certify `key`.
fn certificate_for(path: &std::path::Path, key: &dyn SigningKey) -> Result<Vec<u8>, String> {
    let chain = stadttor_pki::certs::load_chain(path).map_err(|e| e.to_string())?;
    stadttor_pki::certs::check_leaf_matches_key(&chain, path, key).map_err(|e| e.to_string())?;
    Ok(chain[0].as_ref().to_vec())
}

/// The pinned metadata signing certificates of `cfg` (DER), if any.
fn pinned_certificates(cfg: &SamlProvider) -> Result<Option<Vec<Vec<u8>>>, String> {
    let Some(p) = &cfg.idp_metadata_certificate else {
        return Ok(None);
    };
    let chain = stadttor_pki::certs::load_chain(p).map_err(|e| e.to_string())?;
    Ok(Some(chain.iter().map(|c| c.as_ref().to_vec()).collect()))
}

/// Parses and checks metadata bytes (the pinned signature, `validUntil`).
fn verify_metadata(xml: &[u8], pinned: Option<&[Vec<u8>]>) -> Result<IdpMetadata, String> {
    IdpMetadata::parse(xml, pinned, SystemTime::now()).map_err(|e| e.to_string())
}

/// The metadata in `idp_metadata_file`, checked: `Ok(None)` when a URL is
/// configured and the cache file does not exist yet.
fn metadata_from_file(
    cfg: &SamlProvider,
    pinned: Option<&[Vec<u8>]>,
) -> Result<Option<IdpMetadata>, String> {
    let Some(path) = &cfg.idp_metadata_file else {
        return Ok(None);
    };
    let xml = match std::fs::read(path) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.idp_metadata_url.is_some() => {
            return Ok(None)
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    verify_metadata(&xml, pinned)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The SP's keys and certificates for one provider, each certificate
/// checked against its key.
struct SpCredentials {
    signing_key: Arc<dyn SigningKey>,
    signing_cert: Vec<u8>,
    decryption_key: Option<Arc<dyn DecryptingKey>>,
    decryption_cert: Option<Vec<u8>>,
}

impl SpCredentials {
    fn load(cfg: &SamlProvider, keys: &crate::keys::Keys) -> Result<Self, String> {
        let k = |key: &str| format!("identity.providers `{}`.{key}", cfg.name);
        let signing_key = keys
            .resolve(&cfg.signing_key)
            .map_err(|e| format!("{}: {e}", k("signing_key")))?;
        request::signature_method(signing_key.algorithm())
            .map_err(|e| format!("{}: {e}", k("signing_key")))?;
        let signing_cert = certificate_for(&cfg.signing_certificate, signing_key.as_ref())
            .map_err(|e| format!("{}: {e}", k("signing_certificate")))?;
        let (decryption_key, decryption_cert) =
            match (&cfg.decryption_key, &cfg.decryption_certificate) {
                (Some(key), Some(cert)) => {
                    let key = keys
                        .store()
                        .resolve_decrypting(key)
                        .map_err(|e| format!("{}: {e}", k("decryption_key")))?;
                    let signing: &dyn SigningKey = key.as_ref();
                    let cert = certificate_for(cert, signing)
                        .map_err(|e| format!("{}: {e}", k("decryption_certificate")))?;
                    (Some(key), Some(cert))
                }
                _ => (None, None),
            };
        Ok(Self {
            signing_key,
            signing_cert,
            decryption_key,
            decryption_cert,
        })
    }

    /// This SP's metadata for `cfg`.
    fn metadata(&self, cfg: &SamlProvider) -> String {
        let slo = slo_url(cfg);
        SpMetadata {
            entity_id: &cfg.entity_id,
            acs_url: &cfg.acs_url,
            slo_url: Some(&slo),
            signing_cert: &self.signing_cert,
            encryption_cert: self.decryption_cert.as_deref(),
            organization: None,
            contact: None,
        }
        .to_xml()
    }
}

/// The SP metadata of `cfg` (keys and certificates only: it does not need
/// the IdP's metadata, which an operator may not have yet).
pub(crate) fn sp_metadata(cfg: &SamlProvider, keys: &crate::keys::Keys) -> Result<String, String> {
    Ok(SpCredentials::load(cfg, keys)?.metadata(cfg))
}

impl SamlSp {
    /// Reads the IdP metadata, resolves the SP's keys and checks each
    /// certificate against its key. Errors name the config key.
    pub(crate) fn new(cfg: SamlProvider, keys: &crate::keys::Keys) -> Result<Self, String> {
        let key = |k: &str| format!("identity.providers `{}`.{k}", cfg.name);
        let pinned = pinned_certificates(&cfg)
            .map_err(|e| format!("{}: {e}", key("idp_metadata_certificate")))?;
        let idp = metadata_from_file(&cfg, pinned.as_deref())
            .map_err(|e| format!("{}: {e}", key("idp_metadata_file")))?;
        let http = match &cfg.idp_metadata_url {
            Some(_) => Some(
                Http::with(cfg.ca.as_deref(), cfg.allow_http, cfg.request_timeout)
                    .map_err(|e| format!("{}: {e}", key("ca")))?,
            ),
            None => None,
        };
        let c = SpCredentials::load(&cfg, keys)?;
        Ok(Self {
            slo_url: slo_url(&cfg),
            cfg,
            idp: ArcSwapOption::from(idp.map(Arc::new)),
            pinned,
            http,
            signing_key: c.signing_key,
            decryption_key: c.decryption_key,
            down: Mutex::new(None),
        })
    }

    /// The IdP's current metadata, or why there is none.
    pub(crate) fn idp(&self) -> Result<Arc<IdpMetadata>, String> {
        self.idp
            .load_full()
            .ok_or_else(|| "no verified IdP metadata yet (idp_metadata_url not fetched)".into())
    }

    /// Fetches `idp_metadata_url`, verifies it with the pinned certificate
    /// and, if it verifies, uses it from now on and keeps it in
    /// `idp_metadata_file`. A failure keeps the copy in use.
    pub(crate) async fn refresh_metadata(&self) -> Result<(), String> {
        let (Some(url), Some(http)) = (&self.cfg.idp_metadata_url, &self.http) else {
            return Ok(());
        };
        let req = http::Request::get(url.as_str())
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let resp = http.send(req).await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: answered {}", resp.status()));
        }
        let body = resp.into_body();
        let md =
            verify_metadata(&body, self.pinned.as_deref()).map_err(|e| format!("{url}: {e}"))?;
        if let Some(path) = &self.cfg.idp_metadata_file {
            let tmp = path.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, path)) {
                tracing::warn!(provider = %self.cfg.name, error = %e, "cannot keep the IdP metadata in {}", path.display());
            }
        }
        let changed = self.idp.load().as_deref() != Some(&md);
        self.idp.store(Some(Arc::new(md)));
        if changed {
            tracing::info!(provider = %self.cfg.name, url, "SAML IdP metadata loaded and verified");
        }
        Ok(())
    }

    /// A signed AuthnRequest for `level` (the lowest class reference that
    /// reaches it, `Comparison="minimum"`), `force` for a step-up. Blocks
    /// on a hardware key.
    pub(crate) fn authn_request(
        &self,
        level: Option<Level>,
        force: bool,
    ) -> Result<SignedMessage, String> {
        let akdb = matches!(self.cfg.profile, Profile::BundId | Profile::Muk);
        let class_ref = match level {
            Some(l) => Some(self.cfg.class_ref_for(l).ok_or_else(|| {
                format!(
                    "no AuthnContextClassRef of `{}` reaches level {l:?}",
                    self.cfg.name
                )
            })?),
            None if akdb => Some(profile::STORK_LEVELS[0].0),
            None => None,
        };
        let extensions = akdb.then(|| {
            AkdbRequest {
                attributes: &self.cfg.attributes,
                methods: &self.cfg.authn_methods,
                organization_display_name: self.cfg.organization_display_name.as_deref(),
                online_service_id: self.cfg.online_service_id.as_deref(),
            }
            .to_xml()
        });
        let idp = self.idp()?;
        AuthnRequest {
            destination: idp.sso_post.clone(),
            sp_entity_id: self.cfg.entity_id.clone(),
            acs_url: self.cfg.acs_url.clone(),
            force_authn: force,
            authn_context: class_ref.map(|c| (Comparison::Minimum, vec![c.to_owned()])),
            extensions,
            name_id_format: None,
        }
        .sign(self.signing_key.as_ref(), None, SystemTime::now())
        .map_err(|e| e.to_string())
    }

    /// Verifies and decrypts the `SAMLResponse` answering `request_id`
    /// (every check of `stadttor_saml::response`). Blocks on a hardware key.
    pub(crate) fn read_response(&self, b64: &str, request_id: &str) -> Result<Assertion, Refused> {
        let idp = self.idp().map_err(Refused::Key)?;
        let expect = Expect {
            sp_entity_id: &self.cfg.entity_id,
            acs_url: &self.cfg.acs_url,
            idp_entity_id: &idp.entity_id,
            idp_certs: &idp.signing_certs,
            request_id,
            now: SystemTime::now(),
            skew: SKEW,
            require_encryption: self.cfg.requires_encryption(),
        };
        response::read(b64, &expect, self.decryption_key.as_deref())
    }

    /// What a verified assertion means: subject (the subject attribute,
    /// e.g. bPK2, or the NameID), level, and the attributes as claims
    /// under their short names with `trust_levels` beside them.
    pub(crate) fn login(&self, a: &Assertion) -> Result<Login, &'static str> {
        let sub = match &self.cfg.subject_attribute {
            Some(attr) => a
                .attribute(attr)
                .ok_or("the subject attribute is missing")?,
            None => a.name_id.as_str(),
        };
        if sub.is_empty() {
            return Err("empty subject");
        }
        let mut claims = Map::new();
        let mut trust = Map::new();
        for attr in &a.attributes {
            let name = profile::bundid_short_name(&attr.name)
                .filter(|_| matches!(self.cfg.profile, Profile::BundId | Profile::Muk))
                .map(str::to_owned)
                .unwrap_or_else(|| attr.name.clone());
            let value = match attr.values.as_slice() {
                [one] => Value::String(one.clone()),
                many => Value::Array(many.iter().cloned().map(Value::String).collect()),
            };
            if let Some(t) = &attr.trust_level {
                trust.insert(name.clone(), Value::String(t.clone()));
            }
            claims.insert(name, value);
        }
        if !trust.is_empty() {
            claims.insert(super::TRUST_LEVELS.into(), Value::Object(trust));
        }
        // What Single Logout must echo; kept in the session, forwarded
        // only where a route maps it.
        let [value, format, nq, spnq] = super::saml_logout::NAME_ID_CLAIMS;
        let (name_qualifier, sp_name_qualifier) = &a.name_qualifiers;
        for (claim, v) in [
            (value, Some(&a.name_id)),
            (format, a.name_id_format.as_ref()),
            (nq, name_qualifier.as_ref()),
            (spnq, sp_name_qualifier.as_ref()),
        ] {
            if let Some(v) = v {
                claims.insert(claim.into(), Value::String(v.clone()));
            }
        }
        let now = unix_now();
        let auth_time = a
            .authn_instant
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(now);
        Ok(Login {
            sub: sub.to_owned(),
            sid: a.session_index.clone(),
            level: a
                .authn_context
                .as_deref()
                .and_then(|c| self.cfg.level_of(c)),
            acr: a.authn_context.clone(),
            auth_time,
            claims,
        })
    }

    /// The IdP's HTTP-POST SingleLogoutService, if its metadata offers one
    /// (an HTTP-Redirect one is not used).
    pub(crate) fn idp_slo_post(&self) -> Option<String> {
        self.idp
            .load()
            .as_ref()?
            .slo
            .as_ref()
            .filter(|(binding, _)| binding == BINDING_POST)
            .map(|(_, location)| location.clone())
    }

    /// A signed LogoutRequest for the session of `name_id` (and
    /// `session_index`) at the IdP's HTTP-POST SLO endpoint. Blocks on a
    /// hardware key.
    pub(crate) fn logout_request(
        &self,
        name_id: NameId,
        session_index: Option<String>,
    ) -> Result<SignedMessage, String> {
        let destination = self
            .idp_slo_post()
            .ok_or("the IdP offers no HTTP-POST SingleLogoutService")?;
        LogoutRequest {
            destination,
            sp_entity_id: self.cfg.entity_id.clone(),
            name_id,
            session_index,
            lifetime: LOGOUT_REQUEST_LIFETIME,
        }
        .sign(self.signing_key.as_ref(), None, SystemTime::now())
        .map_err(|e| e.to_string())
    }

    /// A signed LogoutResponse with `status` to the IdP's LogoutRequest
    /// `in_response_to`, for `destination` (the IdP's SLO endpoint).
    /// Blocks on a hardware key.
    pub(crate) fn logout_response(
        &self,
        destination: &str,
        in_response_to: &str,
        status: &'static str,
    ) -> Result<SignedMessage, String> {
        logout::LogoutResponse {
            destination: destination.to_owned(),
            sp_entity_id: self.cfg.entity_id.clone(),
            in_response_to: in_response_to.to_owned(),
            status,
        }
        .sign(self.signing_key.as_ref(), None, SystemTime::now())
        .map_err(|e| e.to_string())
    }

    fn expect_logout<'a>(&'a self, idp: &'a IdpMetadata) -> ExpectLogout<'a> {
        ExpectLogout {
            slo_url: &self.slo_url,
            idp_entity_id: &idp.entity_id,
            idp_certs: &idp.signing_certs,
            now: SystemTime::now(),
            skew: SKEW,
        }
    }

    /// Verifies an IdP-initiated LogoutRequest (`SAMLRequest`).
    pub(crate) fn read_logout_request(
        &self,
        b64: &str,
    ) -> Result<IdpLogoutRequest, logout::Refused> {
        let idp = self.idp().map_err(logout::Refused::Unverifiable)?;
        logout::read_request(b64, &self.expect_logout(&idp))
    }

    /// Verifies the IdP's LogoutResponse (`SAMLResponse`) to this SP's
    /// LogoutRequest `request_id`.
    pub(crate) fn read_logout_response(
        &self,
        b64: &str,
        request_id: &str,
    ) -> Result<(), logout::Refused> {
        let idp = self.idp().map_err(logout::Refused::Unverifiable)?;
        logout::read_response(b64, &self.expect_logout(&idp), request_id)
    }

    /// Why the IdP is considered down, if it is.
    pub(crate) fn down(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    /// One reachability probe of the SSO endpoint (a TCP connection to its
    /// host): the citizen gets a clear page instead of a browser error at
    /// an unreachable IdP.
    pub(crate) async fn probe(&self) {
        let sso = match self.idp() {
            Ok(idp) => idp.sso_post.clone(),
            Err(why) => {
                if let Ok(mut down) = self.down.lock() {
                    *down = Some(why);
                }
                return;
            }
        };
        let result = match sso_authority(&sso) {
            Some(addr) => {
                match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("SSO endpoint {addr}: {e}")),
                    Err(_) => Err(format!("SSO endpoint {addr}: no answer in 3 s")),
                }
            }
            None => Err(format!("SSO endpoint `{sso}` is not an http(s) URL")),
        };
        let Ok(mut down) = self.down.lock() else {
            return;
        };
        match (result, down.is_some()) {
            (Ok(()), true) => {
                tracing::info!(provider = %self.cfg.name, "SAML IdP reachable again");
                *down = None;
            }
            (Err(why), false) => {
                tracing::warn!(provider = %self.cfg.name, error = %why, "SAML IdP unavailable; new logins are refused until it answers");
                *down = Some(why);
            }
            (Err(why), true) => *down = Some(why),
            (Ok(()), false) => {}
        }
    }
}

/// `host:port` of an http(s) URL.
fn sso_authority(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let default = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let parsed = http::uri::Authority::try_from(authority).ok()?;
    Some(format!(
        "{}:{}",
        parsed.host(),
        parsed.port_u16().unwrap_or(default)
    ))
}

#[cfg(test)]
mod tests {
    use super::sso_authority;

    #[test]
    fn sso_authority_defaults_the_port() {
        assert_eq!(
            sso_authority("https://id.bund.de/sso").as_deref(),
            Some("id.bund.de:443")
        );
        assert_eq!(
            sso_authority("http://127.0.0.1:8080/sso").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(sso_authority("ftp://x/"), None);
    }
}
