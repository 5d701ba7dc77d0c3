//! JSON Web Signatures for JSON bodies: detached, with an unencoded
//! payload (RFC 7515 + RFC 7797 `"b64": false`, `"crit": ["b64"]`).
//!
//! The result is the compact form with an empty payload part,
//! `BASE64URL(header)..BASE64URL(signature)`, over the exact body bytes as
//! sent, so the body does not need to be re-encoded or canonicalised. The
//! protected header carries `alg`, `x5c` (the seal chain) and `x5t#S256`
//! (the leaf's SHA-256), plus `kid` if given. This is a plain JWS, not
//! JAdES: the JAdES baseline header parameters (`sigT`, `sigD`, …) are not
//! produced.
//!
//! Algorithms: `ES256` (P-256), `ES384` (P-384), `EdDSA` (Ed25519),
//! `PS256` (RSA-PSS); ECDSA signatures are converted to `r || s`.

use serde_json::{json, Map, Value};
use stadttor_hsm::Algorithm;

use super::{SealCertificate, SealCreator};
use crate::jose::{self, JwsAlgorithm};
use crate::Error;

/// The JOSE `alg` name for a key algorithm (the table is
/// [`crate::jose::JwsAlgorithm`]).
pub fn jose_alg(alg: Algorithm) -> Result<&'static str, Error> {
    JwsAlgorithm::of_key(alg)
        .map(JwsAlgorithm::name)
        .ok_or_else(|| Error::UnsupportedAlgorithm {
            key: "jws".into(),
            algorithm: alg.to_string(),
        })
}

fn alg_of_jose(name: &str) -> Result<Algorithm, Error> {
    JwsAlgorithm::from_name(name)
        .map(JwsAlgorithm::key_algorithm)
        .map_err(|e| mal(e.to_string()))
}

fn mal(reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: "JWS",
        reason: reason.into(),
    }
}

/// Signs `header`'s base64url form and `payload` bytes per RFC 7515 §5.1;
/// returns `(encoded header, encoded signature)`. The signing step is
/// [`crate::jose`]'s, shared with compact JWTs.
pub(crate) fn sign_parts<K: SealCreator + ?Sized>(
    key: &K,
    header: &Map<String, Value>,
    payload_in_input: &[u8],
) -> Result<(String, String), Error> {
    let alg = jose::algorithm_of(key)?;
    if header.get("alg").and_then(Value::as_str) != Some(alg.name()) {
        return Err(mal("header alg is not the key's algorithm"));
    }
    Ok(jose::sign_parts(key, alg, header, payload_in_input)?)
}

/// A detached JWS with unencoded payload over `payload`, sealed with
/// `key` whose certificate chain is `cert`.
pub fn sign_detached<K: SealCreator + ?Sized>(
    key: &K,
    cert: &SealCertificate,
    payload: &[u8],
    kid: Option<&str>,
) -> Result<String, Error> {
    let mut header = Map::new();
    header.insert("alg".into(), json!(jose_alg(key.algorithm())?));
    header.insert("b64".into(), json!(false));
    header.insert("crit".into(), json!(["b64"]));
    header.insert(
        "x5c".into(),
        Value::Array(cert.chain().iter().map(|c| json!(super::b64(c))).collect()),
    );
    header.insert(
        "x5t#S256".into(),
        json!(super::b64url(
            ring::digest::digest(&ring::digest::SHA256, cert.leaf()).as_ref()
        )),
    );
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }
    let (h, s) = sign_parts(key, &header, payload)?;
    Ok(format!("{h}..{s}"))
}

/// What [`verify_detached`] found.
#[derive(Debug, Clone)]
pub struct JwsVerified {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The `x5c` chain (DER, leaf first), if the header has one.
    pub chain: Vec<Vec<u8>>,
}

fn b64url_decode(s: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| mal(format!("bad base64url: {e}")))
}

/// Verifies a JWS in compact form. With `detached_payload`, the payload
/// part must be empty and the payload is given here (unencoded if the
/// header says `"b64": false`). The key is `spki` if given, else the
/// `x5c` leaf, which the caller must then decide to trust. Returns the
/// header and the payload bytes.
pub fn verify(
    jws: &str,
    detached_payload: Option<&[u8]>,
    spki: Option<&[u8]>,
) -> Result<(JwsVerified, Vec<u8>), Error> {
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(mal("not three dot-separated parts"));
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&b64url_decode(h)?).map_err(|e| mal(format!("header: {e}")))?;
    let b64 = match header.get("b64") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(mal("b64 is not a boolean")),
    };
    if let Some(crit) = header.get("crit") {
        let Value::Array(names) = crit else {
            return Err(mal("crit is not an array"));
        };
        if names.iter().any(|n| n != "b64") {
            return Err(mal("unknown critical header parameter"));
        }
    }
    if !b64
        && header
            .get("crit")
            .is_none_or(|c| !c.to_string().contains("\"b64\""))
    {
        return Err(mal("b64:false must be listed in crit (RFC 7797 §6)"));
    }
    let (payload, input_payload): (Vec<u8>, Vec<u8>) = match (detached_payload, b64) {
        (Some(d), false) if p.is_empty() => (d.to_vec(), d.to_vec()),
        (Some(d), true) if p.is_empty() => (d.to_vec(), super::b64url(d).into_bytes()),
        (None, true) => (b64url_decode(p)?, p.as_bytes().to_vec()),
        (None, false) => (p.as_bytes().to_vec(), p.as_bytes().to_vec()),
        (Some(_), _) => return Err(mal("detached payload given, but the JWS carries one")),
    };
    let alg = alg_of_jose(header.get("alg").and_then(Value::as_str).unwrap_or(""))?;
    let mut chain = Vec::new();
    if let Some(Value::Array(x5c)) = header.get("x5c") {
        use base64::Engine;
        for c in x5c {
            let c = c.as_str().ok_or_else(|| mal("x5c entry is not a string"))?;
            chain.push(
                base64::engine::general_purpose::STANDARD
                    .decode(c)
                    .map_err(|e| mal(format!("x5c: {e}")))?,
            );
        }
    }
    let key = match (spki, chain.first()) {
        (Some(k), _) => k.to_vec(),
        (None, Some(leaf)) => super::cms::spki_of_cert(leaf)?,
        (None, None) => return Err(mal("no key given and no x5c in the header")),
    };
    if super::algorithm_of_spki(&key)? != alg {
        return Err(mal("alg does not match the key"));
    }
    let mut input = h.as_bytes().to_vec();
    input.push(b'.');
    input.extend_from_slice(&input_payload);
    super::verify_raw(alg, &key, &input, &b64url_decode(s)?, true)?;
    Ok((JwsVerified { header, chain }, payload))
}

/// Verifies a detached JWS over `payload` (see [`verify`]).
pub fn verify_detached(
    jws: &str,
    payload: &[u8],
    spki: Option<&[u8]>,
) -> Result<JwsVerified, Error> {
    verify(jws, Some(payload), spki).map(|(v, _)| v)
}
