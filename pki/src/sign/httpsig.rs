//! HTTP Message Signatures (RFC 9421) on responses, with `Content-Digest`
//! (RFC 9530), and short-lived per-route response keys delegated by the
//! seal key.
//!
//! A signed response gets three header fields:
//!
//! ```text
//! Content-Digest: sha-256=:<base64>:
//! Signature-Input: sig1=("@status" "content-type" "content-digest");created=…;keyid="…";alg="…";tag="stadttor"
//! Signature: sig1=:<base64>:
//! ```
//!
//! `content-type` is covered when the response has one. Algorithms are
//! `ecdsa-p256-sha256` and `ecdsa-p384-sha384` (signature `r || s`) and
//! `ed25519`; RFC 9421 has no identifier for RSA-PSS with SHA-256, so RSA
//! keys are refused.
//!
//! **Delegation.** A TPM signs tens of times per second at best, a gateway
//! answers thousands of requests. [`delegate`] makes an in-memory key for
//! one route, valid for a short time, and has the seal key sign a
//! statement about it: a compact JWS (with `x5c`, so any JOSE library can
//! check it against the seal certificate) whose payload names the route,
//! the key (as a JWK), its `keyid` (the RFC 7638 JWK thumbprint) and the
//! validity. The gateway records [`Delegation`] in its audit log and
//! publishes the statement so verifiers can resolve the `keyid`. The
//! in-memory key is worth at most its lifetime if the process leaks; the
//! seal key stays in hardware.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use stadttor_hsm::file::FileKey;
use stadttor_hsm::{Algorithm, SigningKey};

use super::{AlgInfo, SealCertificate, SealCreator};
use crate::Error;

/// The `tag` parameter of every signature this module makes.
pub const TAG: &str = "stadttor";

/// The signature label used in `Signature-Input` and `Signature`.
pub const LABEL: &str = "sig1";

/// `Content-Digest` value (RFC 9530) for `body`: `sha-256=:…:`.
pub fn content_digest(body: &[u8]) -> String {
    let mut d = BodyDigest::new();
    d.update(body);
    d.finish().header_value()
}

/// SHA-256 of a body fed piece by piece while it streams in, so a signer
/// need not hold the body in one buffer nor read it twice.
#[derive(Clone)]
pub struct BodyDigest(ring::digest::Context);

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyDigest(sha-256)")
    }
}

impl Default for BodyDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyDigest {
    /// An empty SHA-256 state.
    pub fn new() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Adds the next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Sha256Digest {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Sha256Digest(out)
    }
}

/// The SHA-256 digest of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The `Content-Digest` field value (RFC 9530): `sha-256=:…:`.
    pub fn header_value(&self) -> String {
        format!("sha-256=:{}:", super::b64(&self.0))
    }
}

/// The three header fields to add to a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Content-Digest`.
    pub content_digest: String,
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
}

/// The RFC 9421 algorithm name for a key algorithm.
pub fn httpsig_alg(alg: Algorithm) -> Result<&'static str, Error> {
    Ok(match alg {
        Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        Algorithm::EcdsaP384Sha384 => "ecdsa-p384-sha384",
        Algorithm::Ed25519 => "ed25519",
        other => {
            return Err(Error::UnsupportedAlgorithm {
                key: "http message signature".into(),
                algorithm: other.to_string(),
            })
        }
    })
}

fn mal(reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: "HTTP signature",
        reason: reason.into(),
    }
}

/// A structured-field string: printable ASCII, `"` and `\` escaped.
fn sf_string(s: &str) -> Result<String, Error> {
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(mal("keyid must be printable ASCII"));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The value of header `name` in `fields`: all lines joined by `, `, each
/// trimmed (RFC 9421 §2.1); `None` if absent.
fn field_value(fields: &[(&str, &str)], name: &str) -> Option<String> {
    let values: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The signature base (RFC 9421 §2.5) of `components` (name and value;
/// `@status`'s value is the status code). Runs on every signed response:
/// one allocation, no formatting machinery.
fn signature_base(components: &[(&str, String)], params: &str) -> String {
    let len = components
        .iter()
        .map(|(n, v)| n.len() + v.len() + 5)
        .sum::<usize>();
    let mut base = String::with_capacity(len + params.len() + 24);
    for (name, value) in components {
        base.push('"');
        base.push_str(name);
        base.push_str("\": ");
        base.push_str(value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params);
    base
}

/// Signs a response: status, its header fields (`content-type` is
/// covered if present) and body, at `created` (Unix seconds), with
/// `keyid`. The returned `Content-Digest` replaces any the response had.
pub fn sign_response<K: SealCreator + ?Sized>(
    key: &K,
    keyid: &str,
    created: u64,
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
) -> Result<SignatureHeaders, Error> {
    let mut digest = BodyDigest::new();
    digest.update(body);
    sign_response_digest(key, keyid, created, status, fields, &digest.finish())
}

/// [`sign_response`] for a body whose SHA-256 was taken while it streamed
/// ([`BodyDigest`]); the body itself is not needed.
pub fn sign_response_digest<K: SealCreator + ?Sized>(
    key: &K,
    keyid: &str,
    created: u64,
    status: u16,
    fields: &[(&str, &str)],
    body_sha256: &Sha256Digest,
) -> Result<SignatureHeaders, Error> {
    let alg = httpsig_alg(key.algorithm())?;
    let info = AlgInfo::of(key.algorithm(), key.reference())?;
    let digest = body_sha256.header_value();
    let mut components: Vec<(&str, String)> = vec![("@status", status.to_string())];
    if let Some(ct) = field_value(fields, "content-type") {
        components.push(("content-type", ct));
    }
    components.push(("content-digest", digest.clone()));
    // The signature parameters (§2.3), built in one string.
    let keyid = sf_string(keyid)?;
    let mut params = String::with_capacity(96 + keyid.len() + alg.len() + TAG.len());
    params.push('(');
    for (i, (name, _)) in components.iter().enumerate() {
        if i > 0 {
            params.push(' ');
        }
        params.push('"');
        params.push_str(name);
        params.push('"');
    }
    params.push_str(");created=");
    params.push_str(&created.to_string());
    params.push_str(";keyid=");
    params.push_str(&keyid);
    params.push_str(";alg=\"");
    params.push_str(alg);
    params.push_str("\";tag=\"");
    params.push_str(TAG);
    params.push('"');
    let base = signature_base(&components, &params);
    let sig = key.sign(base.as_bytes())?;
    let sig = match info.ecdsa_scalar {
        Some(n) => super::ecdsa_der_to_fixed(&sig, n)?,
        None => sig,
    };
    Ok(SignatureHeaders {
        content_digest: digest,
        signature_input: format!("{LABEL}={params}"),
        signature: format!("{LABEL}=:{}:", super::b64(&sig)),
    })
}

/// What [`verify_response`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse {
    /// The `keyid` of the signature.
    pub keyid: String,
    /// Its `created` time, Unix seconds.
    pub created: u64,
    /// The covered components, in order.
    pub components: Vec<String>,
}

/// Verifies the `tag="stadttor"` signature of a response: the signature
/// over `@status`, the covered fields and `content-digest` with the key
/// `resolve(keyid)` returns (DER SPKI), and that `Content-Digest` matches
/// `body`. Fails if the signature does not cover `@status` and
/// `content-digest`, or if it was created more than `max_age` before `now`
/// (Unix seconds) or after `now` plus a minute.
pub fn verify_response(
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
    resolve: &dyn Fn(&str) -> Option<Vec<u8>>,
    now: u64,
    max_age: Duration,
) -> Result<VerifiedResponse, Error> {
    let inputs = field_value(fields, "signature-input").ok_or_else(|| mal("no Signature-Input"))?;
    let sigs = field_value(fields, "signature").ok_or_else(|| mal("no Signature"))?;
    let inputs = sf::dictionary(&inputs)?;
    let sigs = sf::dictionary(&sigs)?;
    let (label, input_raw, members, params) = inputs
        .iter()
        .find_map(|(label, m)| match m {
            sf::Member::InnerList { raw, items, params }
                if params
                    .iter()
                    .any(|(k, v)| k == "tag" && *v == sf::Bare::Str(TAG.into())) =>
            {
                Some((label, raw, items, params))
            }
            _ => None,
        })
        .ok_or_else(|| mal("no signature with tag=\"stadttor\""))?;
    let sig = sigs
        .iter()
        .find_map(|(l, m)| match m {
            sf::Member::Bytes(b) if l == label => Some(b.clone()),
            _ => None,
        })
        .ok_or_else(|| mal("Signature has no byte sequence for the label"))?;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let keyid = match param("keyid") {
        Some(sf::Bare::Str(s)) => s.clone(),
        _ => return Err(mal("no keyid")),
    };
    let created = match param("created") {
        Some(sf::Bare::Int(n)) if *n >= 0 => *n as u64,
        _ => return Err(mal("no created")),
    };
    if created > now + 60 || created + max_age.as_secs() < now {
        return Err(Error::BadSignature {
            reason: format!("created={created} is outside the accepted window"),
        });
    }
    let spki = resolve(&keyid).ok_or_else(|| Error::BadSignature {
        reason: format!("unknown keyid {keyid}"),
    })?;
    let alg = super::algorithm_of_spki(&spki)?;
    if let Some(a) = param("alg") {
        if *a != sf::Bare::Str(httpsig_alg(alg)?.into()) {
            return Err(mal("alg does not match the key"));
        }
    }
    let mut components: Vec<(&str, String)> = Vec::new();
    for m in members {
        let name = m.as_str();
        if name == "@status" {
            components.push(("@status", status.to_string()));
        } else if name.starts_with('@') {
            return Err(mal(format!("unsupported component {name}")));
        } else {
            let v = field_value(fields, name)
                .ok_or_else(|| mal(format!("covered field {name} is missing")))?;
            components.push((name, v));
        }
    }
    for required in ["@status", "content-digest"] {
        if !members.iter().any(|m| m == required) {
            return Err(Error::BadSignature {
                reason: format!("the signature does not cover {required}"),
            });
        }
    }
    let base = signature_base(&components, input_raw);
    super::verify_raw(alg, &spki, base.as_bytes(), &sig, true)?;
    // The signature covers Content-Digest; now the body must match it.
    let cd = field_value(fields, "content-digest").unwrap_or_default();
    let want = super::b64(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    let cd = sf::dictionary(&cd)?;
    let ok = cd
        .iter()
        .any(|(k, v)| k == "sha-256" && matches!(v, sf::Member::Bytes(b) if super::b64(b) == want));
    if !ok {
        return Err(Error::BadSignature {
            reason: "Content-Digest does not match the body (or has no sha-256)".into(),
        });
    }
    Ok(VerifiedResponse {
        keyid,
        created,
        components: members.clone(),
    })
}

/// A delegation of response signing for one route to an in-memory key.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The route the key may sign for.
    pub route: String,
    /// The delegated key's `keyid` (RFC 7638 JWK thumbprint, base64url).
    pub keyid: String,
    /// The delegated public key, DER SPKI.
    pub public_key_spki: Vec<u8>,
    /// Valid from, Unix seconds.
    pub not_before: u64,
    /// Valid until, Unix seconds.
    pub not_after: u64,
    /// The statement signed by the seal key: a compact JWS (`x5c` = seal
    /// chain) whose payload is the JSON of the fields above.
    pub statement: String,
}

/// An in-memory response key and the delegation that certifies it.
#[derive(Debug, Clone)]
pub struct DelegatedKey {
    /// The in-memory key; sign responses with it.
    pub key: Arc<dyn SigningKey>,
    /// What the seal key signed about it.
    pub delegation: Delegation,
}

fn jwk(alg: Algorithm, spki: &[u8]) -> Result<Map<String, Value>, Error> {
    let raw = raw_public(spki)?;
    let mut m = Map::new();
    match alg {
        Algorithm::Ed25519 => {
            m.insert("crv".into(), json!("Ed25519"));
            m.insert("kty".into(), json!("OKP"));
            m.insert("x".into(), json!(super::b64url(&raw)));
        }
        Algorithm::EcdsaP256Sha256 if raw.len() == 65 => {
            m.insert("crv".into(), json!("P-256"));
            m.insert("kty".into(), json!("EC"));
            m.insert("x".into(), json!(super::b64url(&raw[1..33])));
            m.insert("y".into(), json!(super::b64url(&raw[33..])));
        }
        other => {
            return Err(Error::UnsupportedAlgorithm {
                key: "delegated response key".into(),
                algorithm: other.to_string(),
            })
        }
    }
    Ok(m)
}

fn raw_public(spki: &[u8]) -> Result<Vec<u8>, Error> {
    use super::der::{read_exact, tag, Reader};
    let seq = read_exact(spki, tag::SEQUENCE)?;
    let mut r = Reader::new(seq.value);
    r.expect(tag::SEQUENCE)?;
    let bits = r.expect(tag::BIT_STRING)?;
    Ok(bits.value.get(1..).unwrap_or_default().to_vec())
}

/// RFC 7638 thumbprint of a JWK with only its required members (which
/// `jwk` produces, in lexicographic order).
fn thumbprint(jwk: &Map<String, Value>) -> Result<String, Error> {
    let canonical = serde_json::to_vec(jwk).map_err(|e| mal(e.to_string()))?;
    Ok(super::b64url(
        ring::digest::digest(&ring::digest::SHA256, &canonical).as_ref(),
    ))
}

/// Makes a fresh in-memory key (`alg`: ECDSA P-256 or Ed25519) for `route`,
/// valid from `now` (Unix seconds) for `lifetime`, certified by `seal_key`
/// (one hardware signature).
pub fn delegate<K: SealCreator + ?Sized>(
    seal_key: &K,
    seal_cert: &SealCertificate,
    route: &str,
    alg: Algorithm,
    now: u64,
    lifetime: Duration,
) -> Result<DelegatedKey, Error> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = match alg {
        Algorithm::Ed25519 => ring::signature::Ed25519KeyPair::generate_pkcs8(&rng),
        Algorithm::EcdsaP256Sha256 => ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        ),
        other => {
            return Err(Error::UnsupportedAlgorithm {
                key: "delegated response key".into(),
                algorithm: other.to_string(),
            })
        }
    }
    .map_err(|_| mal("key generation failed"))?;
    let key = FileKey::from_pkcs8(format!("memory:response-key:{route}"), pkcs8.as_ref())?;
    let spki = SigningKey::public_key_spki(&key).to_vec();
    let jwk = jwk(alg, &spki)?;
    let keyid = thumbprint(&jwk)?;
    let not_after = now + lifetime.as_secs();
    let payload = json!({
        "typ": "stadttor-response-key",
        "route": route,
        "keyid": keyid,
        "jwk": jwk,
        "alg": httpsig_alg(alg)?,
        "nbf": now,
        "exp": not_after,
        "iss": seal_cert.subject(),
    });
    let payload = super::b64url(&serde_json::to_vec(&payload).map_err(|e| mal(e.to_string()))?);
    let mut header = Map::new();
    header.insert(
        "alg".into(),
        json!(super::jws::jose_alg(seal_key.algorithm())?),
    );
    header.insert("typ".into(), json!("stadttor-response-key+jws"));
    header.insert(
        "x5c".into(),
        Value::Array(
            seal_cert
                .chain()
                .iter()
                .map(|c| json!(super::b64(c)))
                .collect(),
        ),
    );
    let (h, s) = super::jws::sign_parts(seal_key, &header, payload.as_bytes())?;
    Ok(DelegatedKey {
        key: Arc::new(key),
        delegation: Delegation {
            route: route.to_owned(),
            keyid,
            public_key_spki: spki,
            not_before: now,
            not_after,
            statement: format!("{h}.{payload}.{s}"),
        },
    })
}

/// Checks a delegation statement: its JWS signature by the `x5c` leaf,
/// and that its payload is well-formed; returns the delegation and the
/// `x5c` chain, which the caller must check against its trust anchors
/// (for example with [`SealCertificate`]'s issuer).
pub fn verify_delegation(statement: &str) -> Result<(Delegation, Vec<Vec<u8>>), Error> {
    let (v, payload) = super::jws::verify(statement, None, None)?;
    let p: Value = serde_json::from_slice(&payload).map_err(|e| mal(e.to_string()))?;
    let field = |n: &str| p.get(n).ok_or_else(|| mal(format!("delegation lacks {n}")));
    if field("typ")? != "stadttor-response-key" {
        return Err(mal("not a stadttor response-key delegation"));
    }
    let jwk = field("jwk")?
        .as_object()
        .ok_or_else(|| mal("jwk is not an object"))?;
    let keyid = field("keyid")?.as_str().unwrap_or_default().to_owned();
    if thumbprint(jwk)? != keyid {
        return Err(Error::BadSignature {
            reason: "keyid is not the key's thumbprint".into(),
        });
    }
    let b64 = |n: &str| -> Result<Vec<u8>, Error> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk.get(n).and_then(Value::as_str).unwrap_or_default())
            .map_err(|e| mal(format!("jwk {n}: {e}")))
    };
    let spki = match jwk.get("crv").and_then(Value::as_str) {
        Some("Ed25519") => stadttor_hsm::spki::ed25519(&b64("x")?),
        Some("P-256") => {
            let mut point = vec![4u8];
            point.extend(b64("x")?);
            point.extend(b64("y")?);
            stadttor_hsm::spki::ec(Algorithm::EcdsaP256Sha256, &point)
        }
        _ => return Err(mal("unsupported jwk")),
    };
    let num = |n: &str| field(n).ok().and_then(Value::as_u64).unwrap_or_default();
    Ok((
        Delegation {
            route: field("route")?.as_str().unwrap_or_default().to_owned(),
            keyid,
            public_key_spki: spki,
            not_before: num("nbf"),
            not_after: num("exp"),
            statement: statement.to_owned(),
        },
        v.chain,
    ))
}

/// A small parser for the structured fields (RFC 8941) these headers use.
mod sf {
    use crate::Error;

    /// A bare item.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Bare {
        Str(String),
        Int(i64),
        Token(String),
        Bytes(Vec<u8>),
        Bool(bool),
    }

    /// A dictionary member.
    #[derive(Debug, Clone)]
    pub(super) enum Member {
        /// An inner list of strings (component identifiers) with
        /// parameters; `raw` is its serialization as received.
        InnerList {
            raw: String,
            items: Vec<String>,
            params: Vec<(String, Bare)>,
        },
        /// A byte sequence.
        Bytes(Vec<u8>),
        /// Anything else.
        Other,
    }

    fn mal(reason: &str) -> Error {
        Error::Malformed {
            what: "structured field",
            reason: reason.to_owned(),
        }
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn ows(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.i += 1;
            }
        }
        fn key(&mut self) -> Result<String, Error> {
            let start = self.i;
            while matches!(
                self.peek(),
                Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
            ) {
                self.i += 1;
            }
            if start == self.i {
                return Err(mal("expected a key"));
            }
            Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
        }
        fn bare(&mut self) -> Result<Bare, Error> {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    let mut out = String::new();
                    loop {
                        match self.peek() {
                            Some(b'"') => {
                                self.i += 1;
                                return Ok(Bare::Str(out));
                            }
                            Some(b'\\') => {
                                self.i += 1;
                                match self.peek() {
                                    Some(c @ (b'"' | b'\\')) => out.push(c as char),
                                    _ => return Err(mal("bad escape")),
                                }
                                self.i += 1;
                            }
                            Some(c @ 0x20..=0x7e) => {
                                out.push(c as char);
                                self.i += 1;
                            }
                            _ => return Err(mal("unterminated string")),
                        }
                    }
                }
                Some(b':') => {
                    self.i += 1;
                    let start = self.i;
                    while self.peek().is_some_and(|c| c != b':') {
                        self.i += 1;
                    }
                    let text = &self.s[start..self.i];
                    if self.peek() != Some(b':') {
                        return Err(mal("unterminated byte sequence"));
                    }
                    self.i += 1;
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map(Bare::Bytes)
                        .map_err(|_| mal("bad base64"))
                }
                Some(b'?') => {
                    // RFC 8941 §4.2.8: `?0` or `?1`, nothing else. Never
                    // step past the end (a trailing `?` used to, and the
                    // caller's slice then panicked: found by fuzzing).
                    self.i += 1;
                    let b = match self.peek() {
                        Some(b'1') => true,
                        Some(b'0') => false,
                        _ => return Err(mal("bad boolean")),
                    };
                    self.i += 1;
                    Ok(Bare::Bool(b))
                }
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.i;
                    self.i += 1;
                    while matches!(self.peek(), Some(b'0'..=b'9')) {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .map(Bare::Int)
                        .ok_or_else(|| mal("bad integer"))
                }
                Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                    let start = self.i;
                    while matches!(self.peek(), Some(c) if c.is_ascii_graphic() && !b"(),;=\" ".contains(&c))
                    {
                        self.i += 1;
                    }
                    Ok(Bare::Token(
                        String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                    ))
                }
                _ => Err(mal("expected an item")),
            }
        }
        fn params(&mut self) -> Result<Vec<(String, Bare)>, Error> {
            let mut out = Vec::new();
            while self.peek() == Some(b';') {
                self.i += 1;
                self.ows();
                let k = self.key()?;
                let v = if self.peek() == Some(b'=') {
                    self.i += 1;
                    self.bare()?
                } else {
                    Bare::Bool(true)
                };
                out.push((k, v));
            }
            Ok(out)
        }
    }

    /// Parses a dictionary; members in order.
    pub(super) fn dictionary(s: &str) -> Result<Vec<(String, Member)>, Error> {
        let mut p = P {
            s: s.as_bytes(),
            i: 0,
        };
        let mut out = Vec::new();
        p.ows();
        while p.peek().is_some() {
            let k = p.key()?;
            let m = if p.peek() == Some(b'=') {
                p.i += 1;
                if p.peek() == Some(b'(') {
                    let start = p.i;
                    p.i += 1;
                    let mut items = Vec::new();
                    loop {
                        p.ows();
                        if p.peek() == Some(b')') {
                            p.i += 1;
                            break;
                        }
                        match p.bare()? {
                            Bare::Str(s) => items.push(s),
                            _ => return Err(mal("component identifiers are strings")),
                        }
                        // Component parameters (;sf, ;key=…) are not supported.
                        if p.peek() == Some(b';') {
                            return Err(mal("component parameters are not supported"));
                        }
                    }
                    let params = p.params()?;
                    Member::InnerList {
                        raw: String::from_utf8_lossy(&p.s[start..p.i]).into_owned(),
                        items,
                        params,
                    }
                } else {
                    let b = p.bare()?;
                    p.params()?;
                    match b {
                        Bare::Bytes(b) => Member::Bytes(b),
                        _ => Member::Other,
                    }
                }
            } else {
                p.params()?;
                Member::Other
            };
            out.push((k, m));
            p.ows();
            match p.peek() {
                None => break,
                Some(b',') => {
                    p.i += 1;
                    p.ows();
                }
                Some(_) => return Err(mal("expected `,`")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9530_example_digest() {
        // RFC 9530 §2 example: {"hello": "world"}
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}"),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
    }

    #[test]
    fn structured_fields_parse() {
        let d = sf::dictionary(
            "sig1=(\"@status\" \"content-digest\");created=5;keyid=\"a\\\"b\";tag=\"stadttor\", sig2=:AAE=:",
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        match &d[0].1 {
            sf::Member::InnerList { raw, items, params } => {
                assert_eq!(items, &["@status", "content-digest"]);
                assert!(raw.starts_with("(\"@status\""));
                assert!(raw.ends_with("tag=\"stadttor\""));
                assert_eq!(params[1], ("keyid".into(), sf::Bare::Str("a\"b".into())));
            }
            _ => panic!(),
        }
        assert!(matches!(&d[1].1, sf::Member::Bytes(b) if b == &[0, 1]));
    }

    /// Threat: a crafted `Signature-Input` crashes the verifier. A trailing
    /// `?` once stepped past the end of the header and a slice panicked
    /// (found by the `httpsig` fuzz target); booleans other than `?0`/`?1`
    /// are malformed.
    #[test]
    fn malformed_booleans_are_errors_not_panics() {
        for input in [
            "sig1=(\"@status\");x=?",
            "sig1=(\"@status\");x=?2",
            "sig1=?",
            "sig1=(\"@status\");x=?1;y=?0",
        ] {
            let r = std::panic::catch_unwind(|| sf::dictionary(input));
            assert!(r.is_ok(), "panicked on {input:?}");
        }
        assert!(sf::dictionary("sig1=(\"@status\");x=?").is_err());
        assert!(sf::dictionary("sig1=(\"@status\");x=?2").is_err());
        assert!(sf::dictionary("sig1=(\"@status\");x=?1;y=?0").is_ok());
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = FileKey::from_pkcs8("file:t".into(), pkcs8.as_ref()).unwrap();
        let body = b"{\"a\":1}";
        let fields = [("Content-Type", "application/json")];
        let h = sign_response(&key, "k1", 1000, 200, &fields, body).unwrap();
        let spki = SigningKey::public_key_spki(&key).to_vec();
        let all = |h: &SignatureHeaders| {
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("content-digest".to_owned(), h.content_digest.clone()),
                ("signature-input".to_owned(), h.signature_input.clone()),
                ("signature".to_owned(), h.signature.clone()),
            ]
        };
        let owned = all(&h);
        let f: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let resolve = |id: &str| (id == "k1").then(|| spki.clone());
        let v = verify_response(200, &f, body, &resolve, 1001, Duration::from_secs(60)).unwrap();
        assert_eq!(v.keyid, "k1");
        assert!(verify_response(201, &f, body, &resolve, 1001, Duration::from_secs(60)).is_err());
        assert!(verify_response(200, &f, b"{}", &resolve, 1001, Duration::from_secs(60)).is_err());
        assert!(verify_response(200, &f, body, &resolve, 9001, Duration::from_secs(60)).is_err());
    }
}
