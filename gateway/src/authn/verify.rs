//! JWT verification: compact JWS parsing with the header checks RFC 8725
//! asks for, signature verification against a provider's JWKS (with ring,
//! keys decoded by [`super::jwk`]), and claim checks (free functions over
//! a claims map, so cached bearer claims are checked by the same code). Signing is not here: the gateway's own JWTs (identity
//! assertions, `private_key_jwt` client assertions) and its JWKS are made
//! by `stadttor_pki::jose`.
//!
//! openidconnect validates ID tokens itself; this module covers the tokens
//! it has no type for (back-channel logout tokens, bearer access tokens)
//! and is also run over every ID token first, so that a token carrying its
//! own key (`jwk`, `jku`, `x5u`, `x5c`) or critical extensions is refused
//! before anything else looks at it. Keys come only from the provider's
//! JWKS, never from a token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::jwk::KeySet;

/// Why a token was refused. The texts go to logs, never to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// Not three base64url parts with JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm that is not allowed here.
    #[error("algorithm `{0}` is not allowed for this provider")]
    AlgorithmNotAllowed(String),
    /// The header carries a key or a key URL.
    #[error("token header carries its own key (`{0}`); keys come only from the provider's JWKS")]
    KeyInHeader(&'static str),
    /// The header has critical extensions we do not understand.
    #[error("token header has critical extensions")]
    Critical,
    /// No key in the JWKS has the token's `kid`.
    #[error("no key with kid `{0}` in the provider's JWKS")]
    UnknownKid(String),
    /// The signature does not verify with any candidate key.
    #[error("signature does not verify")]
    BadSignature,
    /// A claim is missing or wrong.
    #[error("claim `{0}`: {1}")]
    Claim(&'static str, String),
}

/// A parsed, not yet verified token.
#[derive(Debug)]
pub struct Token<'a> {
    /// The header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> Token<'a> {
    /// Splits and decodes `token`, refusing keys in the header.
    pub fn parse(token: &'a str) -> Result<Self, VerifyError> {
        if token.len() > 16 * 1024 {
            return Err(VerifyError::Malformed("longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three parts"));
        };
        let signing_input = &token[..h.len() + 1 + p.len()];
        let header: Map<String, Value> = decode_json(h)?;
        let claims: Map<String, Value> = decode_json(p)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| VerifyError::Malformed("signature is not base64url"))?;
        for k in ["jwk", "jku", "x5u", "x5c"] {
            if header.contains_key(k) {
                return Err(VerifyError::KeyInHeader(k));
            }
        }
        if header.contains_key("crit") {
            return Err(VerifyError::Critical);
        }
        if !header.get("alg").is_some_and(Value::is_string) {
            return Err(VerifyError::Malformed("no alg"));
        }
        Ok(Self {
            header,
            claims,
            signing_input,
            signature,
        })
    }

    /// The header's `alg`.
    pub fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Verifies the signature with a key of `keys`, `alg` from `allowed`
    /// (never `none` or an HMAC algorithm). The signature primitive is
    /// ring's (see [`super::jwk`]).
    pub fn verify(&self, allowed: &[String], keys: &KeySet) -> Result<(), VerifyError> {
        let alg = self.alg();
        if !allowed.iter().any(|a| a == alg) || alg == "none" || alg.starts_with("HS") {
            return Err(VerifyError::AlgorithmNotAllowed(alg.to_owned()));
        }
        let kid = self.kid();
        let mut candidates = keys.candidates(kid).peekable();
        if candidates.peek().is_none() {
            return Err(VerifyError::UnknownKid(kid.unwrap_or("(none)").to_owned()));
        }
        let input = self.signing_input.as_bytes();
        if candidates.any(|k| k.verify(alg, input, &self.signature)) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// `iss` must equal `issuer`.
    pub fn check_issuer(&self, issuer: &str) -> Result<(), VerifyError> {
        check_issuer(&self.claims, issuer)
    }

    /// See [`check_audience`].
    pub fn check_audience(
        &self,
        audience: &str,
        azp_expected: Option<&str>,
    ) -> Result<(), VerifyError> {
        check_audience(&self.claims, audience, azp_expected)
    }

    /// See [`check_times`].
    pub fn check_times(
        &self,
        now: u64,
        leeway: u64,
        require_exp: bool,
        max_age: Option<u64>,
    ) -> Result<(), VerifyError> {
        check_times(&self.claims, now, leeway, require_exp, max_age)
    }
}

fn str_claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c str> {
    claims.get(name).and_then(Value::as_str)
}

/// `iss` of `claims` must equal `issuer`.
pub fn check_issuer(claims: &Map<String, Value>, issuer: &str) -> Result<(), VerifyError> {
    match str_claim(claims, "iss") {
        Some(i) if i == issuer => Ok(()),
        Some(i) => Err(VerifyError::Claim(
            "iss",
            format!("`{i}` is not `{issuer}`"),
        )),
        None => Err(VerifyError::Claim("iss", "missing".into())),
    }
}

/// `aud` (string or array) must contain `audience`; with several
/// audiences, `azp` must be `azp_expected` when given.
pub fn check_audience(
    claims: &Map<String, Value>,
    audience: &str,
    azp_expected: Option<&str>,
) -> Result<(), VerifyError> {
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(VerifyError::Claim("aud", "missing".into())),
    };
    if !auds.contains(&audience) {
        return Err(VerifyError::Claim(
            "aud",
            format!("does not contain `{audience}`"),
        ));
    }
    if auds.len() > 1 {
        if let Some(azp) = azp_expected {
            if str_claim(claims, "azp") != Some(azp) {
                return Err(VerifyError::Claim(
                    "azp",
                    "several audiences and azp is not us".into(),
                ));
            }
        }
    }
    Ok(())
}

/// `exp` (required if `require_exp`), `nbf` and `iat` of `claims` against
/// `now` with `leeway` seconds; `iat` not older than `max_age` if given.
pub fn check_times(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
    require_exp: bool,
    max_age: Option<u64>,
) -> Result<(), VerifyError> {
    // `as u64` saturates (1e30 becomes u64::MAX, negatives 0); the sums
    // saturate too, so a far-future claim never wraps into the past.
    let num = |n: &str| claims.get(n).and_then(Value::as_f64).map(|f| f as u64);
    let late = now.saturating_add(leeway);
    match num("exp") {
        Some(exp) if exp.saturating_add(leeway) <= now => {
            return Err(VerifyError::Claim("exp", "expired".into()))
        }
        None if require_exp => return Err(VerifyError::Claim("exp", "missing".into())),
        _ => {}
    }
    if let Some(nbf) = num("nbf") {
        if nbf > late {
            return Err(VerifyError::Claim("nbf", "not yet valid".into()));
        }
    }
    match num("iat") {
        Some(iat) if iat > late => {
            return Err(VerifyError::Claim("iat", "issued in the future".into()))
        }
        Some(iat) => {
            if let Some(max) = max_age {
                if now > iat.saturating_add(max).saturating_add(leeway) {
                    return Err(VerifyError::Claim("iat", "too old".into()));
                }
            }
        }
        None if max_age.is_some() => return Err(VerifyError::Claim("iat", "missing".into())),
        None => {}
    }
    Ok(())
}

fn decode_json(part: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed("part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(VerifyError::Malformed("part is not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn es256_pair() -> (EcdsaKeyPair, KeySet) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pt = kp.public_key().as_ref();
        let jwk = serde_json::json!({"kty":"EC","crv":"P-256","kid":"k1","use":"sig",
            "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..])});
        (kp, KeySet::from_json(&serde_json::json!({"keys":[jwk]})))
    }

    fn make(kp: &EcdsaKeyPair, header: Value, claims: Value) -> String {
        let mut s = URL_SAFE_NO_PAD.encode(header.to_string());
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = kp
            .sign(&ring::rand::SystemRandom::new(), s.as_bytes())
            .unwrap();
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        s
    }

    #[test]
    fn verifies_and_refuses_forgeries() {
        let (kp, jwks) = es256_pair();
        let algs = vec!["ES256".to_owned()];
        let claims = serde_json::json!({"iss":"https://op","aud":"rp","exp": 2_000_000_000u64,"iat": 1_000u64});
        let t = make(
            &kp,
            serde_json::json!({"alg":"ES256","kid":"k1"}),
            claims.clone(),
        );
        let tok = Token::parse(&t).unwrap();
        tok.verify(&algs, &jwks).unwrap();
        tok.check_issuer("https://op").unwrap();
        assert!(tok.check_issuer("https://other").is_err());
        tok.check_audience("rp", Some("rp")).unwrap();
        assert!(tok.check_audience("x", None).is_err());
        assert!(tok.check_times(1_500, 60, true, None).is_ok());
        assert!(tok.check_times(2_000_000_100, 60, true, None).is_err());
        // Found by fuzz/jwt: claims near u64::MAX overflowed `exp + leeway`
        // (a panic in debug builds, a wrap to "expired" in release).
        let huge = serde_json::json!({"exp": 1e30, "nbf": 1e30, "iat": 1.8e19});
        let t = make(&kp, serde_json::json!({"alg":"ES256","kid":"k1"}), huge);
        let tok = Token::parse(&t).unwrap();
        assert!(tok.check_times(1_500, 60, true, Some(600)).is_err());
        let far = serde_json::json!({"exp": 1e30, "iat": 1_000u64});
        let t = make(&kp, serde_json::json!({"alg":"ES256","kid":"k1"}), far);
        let tok = Token::parse(&t).unwrap();
        assert!(tok.check_times(1_500, 60, true, Some(u64::MAX)).is_ok());

        // Unknown kid, alg none, HS256, embedded jwk/jku, crit.
        let t = make(
            &kp,
            serde_json::json!({"alg":"ES256","kid":"other"}),
            claims.clone(),
        );
        assert!(matches!(
            Token::parse(&t).unwrap().verify(&algs, &jwks),
            Err(VerifyError::UnknownKid(_))
        ));
        let t = make(
            &kp,
            serde_json::json!({"alg":"none","kid":"k1"}),
            claims.clone(),
        );
        assert!(matches!(
            Token::parse(&t).unwrap().verify(&algs, &jwks),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
        let t = make(
            &kp,
            serde_json::json!({"alg":"HS256","kid":"k1"}),
            claims.clone(),
        );
        assert!(matches!(
            Token::parse(&t)
                .unwrap()
                .verify(&["HS256".to_owned()], &jwks),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
        for k in ["jwk", "jku", "x5u", "x5c"] {
            let t = make(
                &kp,
                serde_json::json!({"alg":"ES256","kid":"k1", k: "x"}),
                claims.clone(),
            );
            assert!(matches!(Token::parse(&t), Err(VerifyError::KeyInHeader(_))));
        }
        let t = make(
            &kp,
            serde_json::json!({"alg":"ES256","kid":"k1","crit":["x"]}),
            claims.clone(),
        );
        assert!(matches!(Token::parse(&t), Err(VerifyError::Critical)));
        // A changed payload breaks the signature.
        let t = make(&kp, serde_json::json!({"alg":"ES256","kid":"k1"}), claims);
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://op","aud":"rp","sub":"admin"}"#);
        let forged = parts.join(".");
        assert_eq!(
            Token::parse(&forged).unwrap().verify(&algs, &jwks),
            Err(VerifyError::BadSignature)
        );
    }
}
