//! Short-lived TLS leaf certificates issued by a hardware key.
//!
//! A TPM signs a handful of ECDSA signatures per second; a TLS server needs
//! one per full handshake. In *short-lived leaf* mode the hardware key is an
//! issuing key (its certificate has `CA:true, pathlen:0`, best with name
//! constraints): every few hours the gateway makes a fresh P-256 key in
//! memory, has the hardware key sign a certificate for it valid for a few
//! hours, and serves `[leaf, issuing certificate, …]`. Full handshakes are
//! then signed in memory; the hardware signs once per rotation.
//!
//! Trade-off: the in-memory leaf key can leak with the process memory, but
//! it is worth at most its lifetime, and the long-lived identity stays in
//! hardware. Direct signing (the default) keeps every handshake in hardware
//! at the cost of handshake throughput.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::CertificateDer;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;

use crate::Error;

/// A freshly issued leaf: its chain (leaf first) and its in-memory key.
#[derive(Debug)]
pub struct Leaf {
    /// `[leaf, issuer chain…]`.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key, in memory only.
    pub key: Arc<dyn SigningKey>,
    /// When the leaf stops being valid.
    pub not_after: time::OffsetDateTime,
}

/// Issues a leaf for `names`, valid for `lifetime`, signed by `issuer_key`
/// whose certificate chain is `issuer_chain` (issuer first).
pub fn issue(
    issuer_key: Arc<dyn SigningKey>,
    issuer_chain: &[CertificateDer<'static>],
    names: &[String],
    lifetime: Duration,
) -> Result<Leaf, Error> {
    let issuer_der = issuer_chain.first().ok_or_else(|| Error::BadCertificate {
        path: issuer_key.reference().to_owned(),
        reason: "empty issuing chain".into(),
    })?;
    let issuer_key_ref = issuer_key.reference().to_owned();
    let issuer_kp = crate::remote::key_pair(issuer_key)?;
    let issuer_params = CertificateParams::from_ca_cert_der(issuer_der)?;
    // rcgen wants the issuer as a certificate object; only its name is used
    // (the AKI extension is off), so a throw-away key makes that view and
    // the hardware signs exactly once per leaf. The view is never served.
    let view_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let issuer = issuer_params.self_signed(&view_key)?;

    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn.as_str());
    }
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // The issuer's real SKI may not be what rcgen would compute.
    params.use_authority_key_identifier_extension = false;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
    params.not_after = not_after;
    let cert = params.signed_by(&leaf_key, &issuer, &issuer_kp)?;

    // Named after its issuer, so each certificate's leaves are their own
    // metric series.
    let key = FileKey::from_pkcs8(
        format!("memory:leaf-of:{issuer_key_ref}"),
        &leaf_key.serialize_der(),
    )?;
    let mut chain = vec![cert.der().clone()];
    chain.extend(issuer_chain.iter().cloned());
    Ok(Leaf {
        chain,
        key: Arc::new(key),
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn leaf_chains_to_the_root_through_the_issuing_key() {
        let ca = crate::devca::DevCa::generate("root").unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let issuer: Arc<dyn SigningKey> =
            Arc::new(FileKey::from_pkcs8("file:issuer".into(), pkcs8.as_ref()).unwrap());
        let issuer_pem = ca
            .issue_issuing_ca_for_spki("gateway issuing key", issuer.public_key_spki())
            .unwrap();
        let issuer_chain = vec![CertificateDer::from_pem_slice(issuer_pem.as_bytes()).unwrap()];
        let leaf = issue(
            issuer,
            &issuer_chain,
            &["localhost".into()],
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(leaf.chain.len(), 2);
        // An independent verifier (webpki through rustls) accepts the chain.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &leaf.chain[0],
                &leaf.chain[1..],
                &rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
        let hours = (leaf.not_after - time::OffsetDateTime::now_utc()).whole_hours();
        assert!((0..=1).contains(&hours), "{hours}");
        // The leaf key is the one in the leaf certificate.
        crate::certs::check_leaf_matches_key(
            &leaf.chain,
            std::path::Path::new("leaf"),
            leaf.key.as_ref(),
        )
        .unwrap();
    }
}
