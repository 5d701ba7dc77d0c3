//! The seal certificate chain from the configuration, checked before use.
//!
//! Checks (with x509-parser): every certificate parses and is valid now;
//! each certificate's issuer is the next one's subject (leaf first); the
//! leaf has a key usage extension with `digitalSignature` or
//! `nonRepudiation` (contentCommitment); the leaf certifies exactly the
//! signing key's public key. Signatures along the chain and revocation are
//! the relying party's business (and the CA's): a chain that does not lead
//! to a trust anchor fails there, not here.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use super::SealCreator;
use crate::Error;

/// A checked seal certificate chain, leaf first, and what the formats
/// need from the leaf.
#[derive(Debug, Clone)]
pub struct SealCertificate {
    chain: Vec<Vec<u8>>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
    subject: String,
    not_after: ::time::OffsetDateTime,
}

fn bad(subject: &str, reason: impl Into<String>) -> Error {
    Error::SealCertificate {
        subject: subject.to_owned(),
        reason: reason.into(),
    }
}

impl SealCertificate {
    /// Loads a PEM chain (leaf first) and checks it against `key` at the
    /// current time.
    pub fn load(path: &Path, key: &(impl SealCreator + ?Sized)) -> Result<Self, Error> {
        let chain = crate::certs::load_chain(path)?;
        Self::new(&chain, key, ::time::OffsetDateTime::now_utc())
    }

    /// Checks `chain` (leaf first) against `key` at time `now`.
    pub fn new(
        chain: &[CertificateDer<'_>],
        key: &(impl SealCreator + ?Sized),
        now: ::time::OffsetDateTime,
    ) -> Result<Self, Error> {
        let mut parsed = Vec::with_capacity(chain.len());
        for (i, der) in chain.iter().enumerate() {
            let (rest, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| {
                bad(
                    key.reference(),
                    format!("certificate {i} is not valid X.509: {e}"),
                )
            })?;
            if !rest.is_empty() {
                return Err(bad(
                    key.reference(),
                    format!("certificate {i}: trailing bytes"),
                ));
            }
            parsed.push(cert);
        }
        let leaf = parsed
            .first()
            .ok_or_else(|| bad(key.reference(), "empty certificate chain"))?;
        let subject = leaf.subject().to_string();
        let ts = now.unix_timestamp();
        for (i, cert) in parsed.iter().enumerate() {
            let v = cert.validity();
            if ts < v.not_before.timestamp() || ts > v.not_after.timestamp() {
                return Err(bad(
                    &subject,
                    format!(
                        "certificate {i} ({}) is not valid now: valid from {} to {}",
                        cert.subject(),
                        v.not_before,
                        v.not_after
                    ),
                ));
            }
            if let Some(next) = parsed.get(i + 1) {
                if cert.issuer().as_raw() != next.subject().as_raw() {
                    return Err(bad(
                        &subject,
                        format!(
                            "certificate {i} was issued by {}, but the next one in the chain is {}; order the chain leaf first",
                            cert.issuer(),
                            next.subject()
                        ),
                    ));
                }
            }
        }
        match leaf.key_usage() {
            Ok(Some(ku)) if ku.value.digital_signature() || ku.value.non_repudiation() => {}
            Ok(_) => return Err(bad(
                &subject,
                "the leaf needs key usage digitalSignature or nonRepudiation (contentCommitment)",
            )),
            Err(e) => return Err(bad(&subject, format!("bad key usage extension: {e}"))),
        }
        if leaf.public_key().raw != key.public_key_spki() {
            return Err(bad(
                &subject,
                format!(
                    "the leaf certifies a different public key than the key {}",
                    key.reference()
                ),
            ));
        }
        let not_after =
            ::time::OffsetDateTime::from_unix_timestamp(leaf.validity().not_after.timestamp())
                .map_err(|e| bad(&subject, format!("notAfter out of range: {e}")))?;
        Ok(Self {
            issuer: leaf.issuer().as_raw().to_vec(),
            serial: leaf.raw_serial().to_vec(),
            subject,
            not_after,
            chain: chain.iter().map(|c| c.as_ref().to_vec()).collect(),
        })
    }

    /// The chain, leaf first, DER.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> &[u8] {
        // `new` refuses an empty chain.
        self.chain.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The leaf's subject, for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> ::time::OffsetDateTime {
        self.not_after
    }

    /// The leaf's issuer `Name`, DER.
    pub(crate) fn issuer_der(&self) -> &[u8] {
        &self.issuer
    }

    /// The leaf's serial number, the INTEGER's content octets.
    pub(crate) fn serial(&self) -> &[u8] {
        &self.serial
    }
}
