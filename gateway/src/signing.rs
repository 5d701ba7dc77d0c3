//! The response signing stage: seals documents on their way out with the
//! municipality's key (an *advanced* electronic seal; never called
//! qualified — a remote qualified sealing service would plug in through
//! `stadttor_pki::sign::SealCreator`).
//!
//! Per route, the first `[[routes.sign]]` rule that matches the response's
//! media type and the request path decides:
//!
//! - `pades`: the PDF comes back with an embedded PAdES signature (B-B, or
//!   B-T with a timestamp);
//! - `cades`: a detached CAdES signature is stored and named in the
//!   `stadttor-signature` header (`/.stadttor/signatures/ID.p7s`); the
//!   store has a size and an age limit ([`SignatureStore`]);
//! - `jws`: a detached JWS (RFC 7797) in the `stadttor-jws` header;
//! - `http-signature`: RFC 9421 `Signature-Input`/`Signature` with an
//!   RFC 9530 `Content-Digest`, signed by a short-lived per-route key that
//!   the seal key certified (the delegation statement is audited and
//!   served at `/.stadttor/keys/KEYID.jws`), or by the seal key itself.
//!
//! Only successful (2xx) responses are signed. A body that must be signed
//! is buffered up to `[signing] max_body`; a larger one, or any signing
//! failure, is a 502 and a log line: never an unsigned body where a
//! signature is required. Every signature is an audit event with the
//! document's SHA-256, the route, the format and the certificate.
//!
//! Fail closed on the evidence: when an audit log is configured, a sealed
//! response leaves only after its `document.sign` event was accepted. If
//! the log refuses it, the client gets the same 503 as an audited route
//! whose access event cannot be recorded, never the sealed body, and a
//! stored CAdES signature of that response is deleted again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use stadttor_hsm::{Protection, SigningKey};
use stadttor_pki::sign::{cms, httpsig, jws, pades, tsa::HttpTsa, SealCertificate};

use crate::authn::provider::unix_now;
use crate::config::{self, SignFormat, SignRule};
use crate::http::body::ProxyBody;
use stadttor_pki::hex::encode as hex;

mod store;
mod streamed;
pub use store::SignatureStore;

/// Why a response could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The body is larger than `max_body`.
    #[error("response body larger than signing.max_body ({0} bytes)")]
    TooLarge(u64),
    /// Reading the upstream body failed.
    #[error("reading the response body: {0}")]
    Body(String),
    /// The signature could not be made (key, TSA, PDF structure).
    #[error("signing failed: {0}")]
    Sign(String),
    /// The detached signature could not be stored.
    #[error("storing the signature: {0}")]
    Store(String),
    /// The audit log cannot record the signature: the sealed response is
    /// withheld (answered like an audited route's unrecordable access).
    #[error("audit log cannot record the signature: {0}")]
    Unrecorded(String),
}

/// Response header naming a stored detached CMS signature.
pub const CMS_HEADER: &str = "stadttor-signature";
/// Response header carrying a detached JWS.
pub const JWS_HEADER: &str = "stadttor-jws";

/// The process's signer.
pub struct Signer {
    key: Arc<dyn SigningKey>,
    cert: SealCertificate,
    cert_sha256: String,
    tsa: Option<HttpTsa>,
    max_body: u64,
    store_dir: PathBuf,
    store: SignatureStore,
    delegation_lifetime: Duration,
    delegation_algorithm: stadttor_hsm::Algorithm,
    delegated: Mutex<HashMap<String, Arc<httpsig::DelegatedKey>>>,
    audit: Option<Arc<crate::audit_event::AuditLog>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key.reference())
            .field("certificate", &self.cert.subject())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The seal key and its certificate (checked: key usage, validity, key
    /// match). Used by [`Signer::new`] and by the start-up check.
    pub fn load_key(
        cfg: &config::Signing,
        keys: &crate::keys::Keys,
    ) -> Result<(Arc<dyn stadttor_hsm::SigningKey>, SealCertificate), String> {
        let key = keys
            .resolve(&cfg.key)
            .map_err(|e| format!("signing.key: {e}"))?;
        let cert = SealCertificate::load(&cfg.certificate, key.as_ref())
            .map_err(|e| format!("signing.certificate: {e}"))?;
        Ok((key, cert))
    }

    /// Loads key and certificate (checked: key usage, validity, key match)
    /// and prepares the signature store.
    /// The signature store's metrics are registered in `metrics`.
    pub fn new(
        cfg: &config::Signing,
        keys: &crate::keys::Keys,
        audit: Option<Arc<crate::audit_event::AuditLog>>,
        metrics: &mut crate::metrics::Metrics,
    ) -> Result<Self, String> {
        let (key, cert) = Self::load_key(cfg, keys)?;
        if key.protection() == Protection::Software {
            tracing::warn!(
                key = key.reference(),
                "documents are sealed with a software key (development only)"
            );
        }
        let tsa = match &cfg.tsa_url {
            Some(u) => Some(
                HttpTsa::new(u, Duration::from_secs(10))
                    .map_err(|e| format!("signing.tsa_url: {e}"))?,
            ),
            None => None,
        };
        let store = SignatureStore::open(
            &cfg.store_dir,
            cfg.store_max_bytes,
            cfg.store_max_age,
            metrics.register_signature_store(),
        )?;
        let cert_sha256 = hex(ring::digest::digest(&ring::digest::SHA256, cert.leaf()).as_ref());
        tracing::info!(subject = cert.subject(), "document signing ready");
        Ok(Self {
            key,
            cert,
            cert_sha256,
            tsa,
            max_body: cfg.max_body,
            store_dir: cfg.store_dir.clone(),
            store,
            delegation_lifetime: cfg.delegation_lifetime,
            delegation_algorithm: match cfg.delegation_algorithm {
                config::DelegationAlgorithm::Ed25519 => stadttor_hsm::Algorithm::Ed25519,
                config::DelegationAlgorithm::EcdsaP256 => stadttor_hsm::Algorithm::EcdsaP256Sha256,
            },
            delegated: Mutex::new(HashMap::new()),
            audit,
        })
    }

    /// The first rule of `rules` for this response, if it is to be signed.
    pub fn rule_for<'r>(
        rules: &'r [SignRule],
        status: StatusCode,
        headers: &http::HeaderMap,
        path: &str,
    ) -> Option<&'r SignRule> {
        if rules.is_empty() || !status.is_success() {
            return None;
        }
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        rules.iter().find(|r| r.matches(&media, path))
    }

    /// Buffers and signs a response by `rule`. An RFC 9421 body is hashed
    /// while it arrives and sent on in the pieces it came in; the other
    /// formats need the whole document in one buffer.
    pub async fn sign<B>(
        &self,
        route: &str,
        rule: &SignRule,
        resp: Response<B>,
        request_id: &str,
    ) -> Result<Response<ProxyBody>, SignError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ct = content_type.as_deref();
        let mut extra_attrs = Vec::new();
        let (body, doc_sha256) = if rule.format == SignFormat::HttpSignature {
            let (pieces, sha) = streamed::read_digesting(body, self.max_body).await?;
            let hs = self.off_reactor(rule, || self.http_signature(route, status, ct, &sha))?;
            insert_all(&mut parts.headers, hs);
            let body = pieces.map_err(|never| match never {}).boxed_unsync();
            (body, hex(&sha.0))
        } else {
            let body = self.read_whole(body).await?;
            let signed =
                self.off_reactor(rule, || self.sign_blocking(route, rule, status, ct, &body))?;
            // The document's hash for the audit event (none without a log).
            let doc = match self.audit {
                Some(_) => hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref()),
                None => String::new(),
            };
            let body = match signed {
                Signed::Body(b) => Bytes::from(b),
                Signed::Headers(hs) => {
                    insert_all(&mut parts.headers, hs);
                    body
                }
                Signed::Stored(id, hs) => {
                    extra_attrs.push(("signature_id", id));
                    insert_all(&mut parts.headers, hs);
                    body
                }
            };
            let body = Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync();
            (body, doc)
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.remove(header::ETAG);
        self.evidence(route, rule, &doc_sha256, request_id, &extra_attrs)
            .await?;
        tracing::debug!(
            request_id,
            route,
            format = rule.format.name(),
            "response signed"
        );
        Ok(Response::from_parts(parts, body))
    }

    /// Reads a body into one buffer, at most `max_body` bytes.
    async fn read_whole<B>(&self, body: B) -> Result<Bytes, SignError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        match Limited::new(body, limit).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(SignError::TooLarge(self.max_body))
            }
            Err(e) => Err(SignError::Body(e.to_string())),
        }
    }

    /// Runs `sign` on this worker thread when it is fast (an in-memory or
    /// software key: tens of microseconds, less than handing the thread
    /// over would cost), else off the reactor: a TPM or a TSA may block.
    fn off_reactor<T>(
        &self,
        rule: &SignRule,
        sign: impl FnOnce() -> Result<T, SignError>,
    ) -> Result<T, SignError> {
        let inline = match rule.format {
            SignFormat::HttpSignature => {
                !self.delegation_lifetime.is_zero() || self.key.protection() == Protection::Software
            }
            SignFormat::Jws => self.key.protection() == Protection::Software,
            SignFormat::Pades | SignFormat::Cades => false,
        };
        if inline {
            sign()
        } else {
            tokio::task::block_in_place(sign)
        }
    }

    /// Records the `document.sign` event and waits until it is durable.
    /// [`SignError::Unrecorded`] when the log refuses it: the sealed
    /// response must not leave.
    async fn evidence(
        &self,
        route: &str,
        rule: &SignRule,
        doc_sha256: &str,
        request_id: &str,
        extra_attrs: &[(&str, String)],
    ) -> Result<(), SignError> {
        if self.audit.is_none() {
            return Ok(());
        }
        let Err(e) = self
            .record(route, rule, doc_sha256, request_id, extra_attrs)
            .await
        else {
            return Ok(());
        };
        tracing::error!(
            request_id,
            route,
            error = %e,
            "audit log cannot record a document signature: the sealed response is withheld"
        );
        if let Some((_, id)) = extra_attrs.iter().find(|(k, _)| *k == "signature_id") {
            self.store.remove(id);
        }
        Err(SignError::Unrecorded(e.to_string()))
    }

    async fn record(
        &self,
        route: &str,
        rule: &SignRule,
        doc: &str,
        request_id: &str,
        extra: &[(&str, String)],
    ) -> Result<(), stadttor_audit::Error> {
        let Some(log) = &self.audit else {
            return Ok(());
        };
        let mut ev = stadttor_audit::event::Event::new(
            "document.sign",
            stadttor_audit::event::Outcome::Success,
        )
        .target(route)
        .request_id(request_id)
        .attr("format", rule.format.name())
        .attr("document_sha256", doc)
        .attr("certificate_sha256", self.cert_sha256.as_str())
        .attr("timestamp", rule.timestamp);
        for (k, v) in extra {
            ev = ev.attr(*k, v.as_str());
        }
        log.record_durable(&ev).await
    }

    fn sign_blocking(
        &self,
        route: &str,
        rule: &SignRule,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Signed, SignError> {
        let err = |e: stadttor_pki::Error| SignError::Sign(e.to_string());
        let tsa = if rule.timestamp {
            self.tsa
                .as_ref()
                .map(|t| t as &dyn stadttor_pki::sign::tsa::TimestampAuthority)
        } else {
            None
        };
        match rule.format {
            SignFormat::Pades => {
                let opts = pades::PadesOptions {
                    signing_time: None,
                    tsa,
                    reason: None,
                    location: None,
                    reserve: None,
                };
                pades::sign_pdf(self.key.as_ref(), &self.cert, body, &opts)
                    .map(Signed::Body)
                    .map_err(err)
            }
            SignFormat::Cades => {
                let opts = cms::CmsOptions {
                    signing_time: Some(time::OffsetDateTime::now_utc()),
                    tsa,
                };
                let sig =
                    cms::sign_detached(self.key.as_ref(), &self.cert, body, &opts).map_err(err)?;
                let id = crate::authn::random_token(18);
                self.store.put(&id, &sig).map_err(SignError::Store)?;
                Ok(Signed::Stored(
                    id.clone(),
                    vec![(
                        HeaderName::from_static(CMS_HEADER),
                        format!("/.stadttor/signatures/{id}.p7s"),
                    )],
                ))
            }
            SignFormat::Jws => jws::sign_detached(self.key.as_ref(), &self.cert, body, None)
                .map(|j| Signed::Headers(vec![(HeaderName::from_static(JWS_HEADER), j)]))
                .map_err(err),
            SignFormat::HttpSignature => {
                let mut d = httpsig::BodyDigest::new();
                d.update(body);
                self.http_signature(route, status, content_type, &d.finish())
                    .map(Signed::Headers)
            }
        }
    }

    /// The RFC 9421 fields of a response whose body has `body_sha256`:
    /// signed by the route's delegated key, or by the seal key itself when
    /// delegation is off.
    fn http_signature(
        &self,
        route: &str,
        status: u16,
        content_type: Option<&str>,
        body_sha256: &httpsig::Sha256Digest,
    ) -> Result<Vec<(HeaderName, String)>, SignError> {
        let err = |e: stadttor_pki::Error| SignError::Sign(e.to_string());
        let mut fields = Vec::new();
        if let Some(ct) = content_type {
            fields.push(("content-type", ct));
        }
        let now = unix_now();
        let h = if self.delegation_lifetime.is_zero() {
            let keyid = self.cert_sha256.as_str();
            httpsig::sign_response_digest(
                self.key.as_ref(),
                keyid,
                now,
                status,
                &fields,
                body_sha256,
            )
        } else {
            let dk = self.delegated_key(route, now)?;
            httpsig::sign_response_digest(
                dk.key.as_ref(),
                &dk.delegation.keyid,
                now,
                status,
                &fields,
                body_sha256,
            )
        }
        .map_err(err)?;
        Ok(vec![
            (HeaderName::from_static("content-digest"), h.content_digest),
            (
                HeaderName::from_static("signature-input"),
                h.signature_input,
            ),
            (HeaderName::from_static("signature"), h.signature),
        ])
    }

    /// The route's delegated key, made (and audited) when missing or past
    /// half its lifetime.
    fn delegated_key(
        &self,
        route: &str,
        now: u64,
    ) -> Result<Arc<httpsig::DelegatedKey>, SignError> {
        let mut map = self
            .delegated
            .lock()
            .map_err(|_| SignError::Sign("delegation cache poisoned".into()))?;
        if let Some(dk) = map.get(route) {
            let half = (dk.delegation.not_after - dk.delegation.not_before) / 2;
            if now < dk.delegation.not_before + half {
                return Ok(dk.clone());
            }
        }
        // One signature by the seal key (a TPM takes milliseconds): rare,
        // at most once per route and half lifetime.
        let dk = httpsig::delegate(
            self.key.as_ref(),
            &self.cert,
            route,
            self.delegation_algorithm,
            now,
            self.delegation_lifetime,
        )
        .map_err(|e| SignError::Sign(e.to_string()))?;
        let statement_path = self
            .store_dir
            .join(format!("key-{}.jws", dk.delegation.keyid));
        std::fs::write(&statement_path, &dk.delegation.statement)
            .map_err(|e| SignError::Store(e.to_string()))?;
        if let Some(log) = &self.audit {
            let ev = stadttor_audit::event::Event::new(
                "key.delegate",
                stadttor_audit::event::Outcome::Success,
            )
            .target(route)
            .attr("keyid", dk.delegation.keyid.as_str())
            .attr("not_before", dk.delegation.not_before)
            .attr("not_after", dk.delegation.not_after)
            .attr("statement", dk.delegation.statement.as_str())
            .attr("certificate_sha256", self.cert_sha256.as_str());
            if let Err(e) = log.record(&ev) {
                return Err(SignError::Sign(format!(
                    "the delegation cannot be audited: {e}"
                )));
            }
        }
        tracing::info!(route, keyid = %dk.delegation.keyid, "new delegated HTTP signature key");
        let dk = Arc::new(dk);
        map.insert(route.to_owned(), dk.clone());
        Ok(dk)
    }

    /// Serves `/.stadttor/signatures/ID.p7s` and `/.stadttor/keys/KEYID.jws`:
    /// `None` for another path, `Some(None)` when there is no such
    /// document (the caller answers 404 from the error templates).
    pub fn endpoint(&self, path: &str) -> Option<Option<Response<ProxyBody>>> {
        let (file, ctype) = if let Some(name) = path.strip_prefix("/.stadttor/signatures/") {
            let id = name.strip_suffix(".p7s")?;
            (
                format!("{}.p7s", safe_id(id)?),
                "application/pkcs7-signature",
            )
        } else if let Some(name) = path.strip_prefix("/.stadttor/keys/") {
            let id = name.strip_suffix(".jws")?;
            (format!("key-{}.jws", safe_id(id)?), "application/jose")
        } else {
            return None;
        };
        let found = if file.ends_with(".p7s") {
            self.store.get(&file)
        } else {
            std::fs::read(self.store_dir.join(file)).ok()
        };
        let Some(body) = found else {
            return Some(None);
        };
        let mut r = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        Some(Some(r))
    }
}

fn safe_id(id: &str) -> Option<&str> {
    (!id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(id)
}

enum Signed {
    Body(Vec<u8>),
    Headers(Vec<(HeaderName, String)>),
    Stored(String, Vec<(HeaderName, String)>),
}

/// Sets the signature's header fields (values are base64, structured
/// fields or paths: always valid; one that is not is left out).
fn insert_all(headers: &mut http::HeaderMap, fields: Vec<(HeaderName, String)>) {
    for (name, value) in fields {
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_media_type_and_path() {
        let rules = vec![
            SignRule {
                content_type: "application/pdf".into(),
                path_prefix: Some("/bescheide".into()),
                format: SignFormat::Pades,
                timestamp: false,
            },
            SignRule {
                content_type: "*".into(),
                path_prefix: None,
                format: SignFormat::HttpSignature,
                timestamp: false,
            },
        ];
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "Application/PDF; x=y".parse().unwrap(),
        );
        let r = Signer::rule_for(&rules, StatusCode::OK, &h, "/bescheide/1").unwrap();
        assert_eq!(r.format, SignFormat::Pades);
        let r = Signer::rule_for(&rules, StatusCode::OK, &h, "/other").unwrap();
        assert_eq!(r.format, SignFormat::HttpSignature);
        assert!(Signer::rule_for(&rules, StatusCode::NOT_FOUND, &h, "/bescheide/1").is_none());
        assert_eq!(safe_id("../x"), None);
        assert_eq!(safe_id("abc_-1"), Some("abc_-1"));
    }
}
