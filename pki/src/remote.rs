//! rcgen over a `stadttor-hsm` key: certificates and CSRs signed by keys
//! that never leave their hardware.

use std::sync::Arc;

use rcgen::{KeyPair, RemoteKeyPair, SignatureAlgorithm};
use stadttor_hsm::{Algorithm, SigningKey};

use crate::Error;

struct Remote {
    key: Arc<dyn SigningKey>,
    raw_public: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl RemoteKeyPair for Remote {
    fn public_key(&self) -> &[u8] {
        &self.raw_public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// An rcgen key pair whose private half is `key` in the key store.
pub fn key_pair(key: Arc<dyn SigningKey>) -> Result<KeyPair, Error> {
    let spki = key.public_key_spki();
    let (alg, raw_len): (&'static SignatureAlgorithm, usize) = match key.algorithm() {
        Algorithm::EcdsaP256Sha256 => (&rcgen::PKCS_ECDSA_P256_SHA256, 65),
        Algorithm::EcdsaP384Sha384 => (&rcgen::PKCS_ECDSA_P384_SHA384, 97),
        Algorithm::Ed25519 => (&rcgen::PKCS_ED25519, 32),
        other => {
            return Err(Error::UnsupportedAlgorithm {
                key: key.reference().to_owned(),
                algorithm: other.to_string(),
            })
        }
    };
    let raw_public = spki
        .get(spki.len().saturating_sub(raw_len)..)
        .unwrap_or_default()
        .to_vec();
    Ok(KeyPair::from_remote(Box::new(Remote {
        key,
        raw_public,
        alg,
    }))?)
}

/// A PKCS#10 certificate signing request, PEM, signed by `key`, for the
/// municipal CA: subject common name and DNS/IP subject alternative names.
/// RSA keys sign it RSASSA-PSS ([`crate::rsa_pss`]), the others through
/// rcgen.
pub fn csr_pem(
    key: Arc<dyn SigningKey>,
    common_name: &str,
    sans: &[String],
) -> Result<String, Error> {
    if key.algorithm() == Algorithm::RsaPssSha256 {
        return crate::rsa_pss::csr_pem(key.as_ref(), common_name, sans);
    }
    let kp = key_pair(key)?;
    let mut params = rcgen::CertificateParams::new(sans.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    Ok(params.serialize_request(&kp)?.pem()?)
}

/// A self-signed certificate, PEM, for `key` (e.g. for SAML SP metadata):
/// subject and issuer `CN=common_name`, valid from an hour ago for `days`
/// days (at most [`crate::rsa_pss::MAX_DAYS`]), a random 128-bit serial,
/// CA:false, key usage digitalSignature (and keyEncipherment for RSA),
/// optional DNS/IP subject alternative names. RSA keys sign it
/// RSASSA-PSS ([`crate::rsa_pss`]), the others through rcgen.
pub fn self_signed_pem(
    key: Arc<dyn SigningKey>,
    common_name: &str,
    sans: &[String],
    days: u32,
) -> Result<String, Error> {
    let now = time::OffsetDateTime::now_utc();
    if key.algorithm() == Algorithm::RsaPssSha256 {
        return crate::rsa_pss::self_signed_pem(key.as_ref(), common_name, sans, days, now);
    }
    if days == 0 || days > crate::rsa_pss::MAX_DAYS {
        return Err(Error::BadParameters {
            reason: format!(
                "validity of {days} days: give 1 to {} days",
                crate::rsa_pss::MAX_DAYS
            ),
        });
    }
    let kp = key_pair(key)?;
    let mut params = rcgen::CertificateParams::new(sans.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(
        |_| Error::BadParameters {
            reason: "no randomness from the operating system for the serial number".into(),
        },
    )?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(params.self_signed(&kp)?.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_is_signed_by_the_store_key_and_parses() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let key: Arc<dyn SigningKey> = Arc::new(
            stadttor_hsm::file::FileKey::from_pkcs8("file:test".into(), pkcs8.as_ref()).unwrap(),
        );
        let pem = csr_pem(
            key.clone(),
            "buergerportal.example.de",
            &["buergerportal.example.de".into()],
        )
        .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        use rustls_pki_types::pem::PemObject;
        use x509_parser::prelude::FromDer;
        let der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .unwrap();
        csr.verify_signature().unwrap();
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            key.public_key_spki()
        );
    }
}
