//! A development certificate authority: for `stadttor demo` and the tests.
//!
//! Everything here is generated in memory with fresh ECDSA P-256 keys. It is
//! never meant for production; the municipal CA issues real certificates
//! from a CSR (`stadttor keys csr`).

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use crate::Error;

/// A generated CA: its certificate and key.
pub struct DevCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A generated end-entity certificate with its private key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM PKCS#8.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl DevCa {
    /// Generates a new CA named `name`.
    pub fn generate(name: &str) -> Result<Self, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 365);
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a TLS server certificate for `names` (DNS names or IPs).
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = dn(names.first().copied().unwrap_or("stadttor"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 90);
        // A revocation pointer keeps TLS scanners from flagging the test cert.
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://crl.stadttor.invalid/dev.crl".into()],
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a server certificate for an existing public key (SPKI DER),
    /// e.g. one that lives in a TPM.
    pub fn issue_server_for_key(
        &self,
        names: &[&str],
        public: &impl rcgen::PublicKeyData,
    ) -> Result<String, Error> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = dn(names.first().copied().unwrap_or("stadttor"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 90);
        Ok(params.signed_by(public, &self.cert, &self.key)?.pem())
    }

    /// Issues an issuing (intermediate) CA certificate, `pathlen:0`, for an
    /// existing public key given as DER SPKI: the certificate a hardware key
    /// needs for short-lived leaf mode.
    pub fn issue_issuing_ca_for_spki(&self, cn: &str, spki_der: &[u8]) -> Result<String, Error> {
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 365);
        Ok(params.signed_by(&public, &self.cert, &self.key)?.pem())
    }

    /// Issues a server certificate for an existing public key given as DER
    /// SPKI (e.g. a key inside a TPM).
    pub fn issue_server_for_spki(&self, names: &[&str], spki_der: &[u8]) -> Result<String, Error> {
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        self.issue_server_for_key(names, &public)
    }

    /// Issues a TLS client certificate with common name `cn`.
    pub fn issue_client(&self, cn: &str) -> Result<Issued, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 90);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Sets a validity window from an hour ago to `days` from now. Short
/// lifetimes keep TLS scanners quiet and mirror real municipal CA practice.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "stadttor development");
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_server_cert_matches_its_key() {
        let ca = DevCa::generate("test ca").unwrap();
        let issued = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let dir = std::env::temp_dir().join(format!("stadttor-devca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let chain = crate::certs::load_chain(&cert).unwrap();
        let k = stadttor_hsm::file::FileKey::load(&key).unwrap();
        crate::certs::check_leaf_matches_key(&chain, &cert, &k).unwrap();
        // A different key is refused and both names are in the message.
        let other = ca.issue_server(&["localhost"]).unwrap();
        std::fs::write(&key, &other.key_pem).unwrap();
        let k2 = stadttor_hsm::file::FileKey::load(&key).unwrap();
        let err = crate::certs::check_leaf_matches_key(&chain, &cert, &k2).unwrap_err();
        assert!(err.to_string().contains("c.pem") && err.to_string().contains("k.pem"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
