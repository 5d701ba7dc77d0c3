//! Certificate chains from PEM files, checked against the key that serves them.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use stadttor_hsm::SigningKey;

use crate::Error;

/// Reads every `CERTIFICATE` block of a PEM file, leaf first.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadCertificate {
            path: path.display().to_string(),
            reason: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(Error::BadCertificate {
            path: path.display().to_string(),
            reason: "no `-----BEGIN CERTIFICATE-----` block found".into(),
        });
    }
    Ok(chain)
}

/// The DER `SubjectPublicKeyInfo` of a certificate.
pub fn spki_of(cert: &CertificateDer<'_>, path: &Path) -> Result<Vec<u8>, Error> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| Error::BadCertificate {
            path: path.display().to_string(),
            reason: format!("not a valid X.509 certificate: {e}"),
        })?;
    Ok(parsed.public_key().raw.to_vec())
}

/// Fails unless the leaf of `chain` certifies exactly `key`'s public key.
pub fn check_leaf_matches_key(
    chain: &[CertificateDer<'_>],
    chain_path: &Path,
    key: &dyn SigningKey,
) -> Result<(), Error> {
    let leaf = chain.first().ok_or_else(|| Error::BadCertificate {
        path: chain_path.display().to_string(),
        reason: "empty chain".into(),
    })?;
    if spki_of(leaf, chain_path)? != key.public_key_spki() {
        return Err(Error::KeyMismatch {
            cert: chain_path.display().to_string(),
            key: key.reference().to_owned(),
        });
    }
    Ok(())
}
