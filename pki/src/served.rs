//! What a certificate the gateway serves must be: its key type and size
//! against the BSI TR-02102-2 profile, its validity period, and whether its
//! names cover the names it is served for.
//!
//! This module only reads certificates and answers questions; deciding what
//! is an error and what a warning (and logging it) is the caller's job.

use std::path::Path;

use rustls_pki_types::CertificateDer;

use crate::Error;

/// The smallest RSA modulus BSI TR-02102-2 accepts for TLS (from 2024 on).
pub const MIN_RSA_BITS: usize = 3000;

/// The public key of a certificate, as far as the profile cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this modulus size in bits.
    Rsa {
        /// Modulus size.
        bits: usize,
    },
    /// ECDSA on a named curve (`P-256`, `P-384`, `P-521`, or the OID).
    Ec {
        /// The curve's name, or its OID when it is not a NIST curve.
        curve: String,
    },
    /// Ed25519.
    Ed25519,
    /// Anything else (the algorithm OID).
    Other(String),
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::Ec { curve } => write!(f, "ECDSA {curve}"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Other(oid) => write!(f, "key algorithm {oid}"),
        }
    }
}

impl KeyKind {
    /// Why this key may not serve TLS under BSI TR-02102-2, or `None` when
    /// it may: RSA of at least [`MIN_RSA_BITS`], ECDSA on P-256, P-384 or
    /// P-521.
    pub fn bsi_refusal(&self) -> Option<String> {
        match self {
            Self::Rsa { bits } if *bits >= MIN_RSA_BITS => None,
            Self::Rsa { bits } => Some(format!(
                "RSA-{bits} is below the BSI TR-02102-2 minimum of {MIN_RSA_BITS} bits; \
                 use a P-256/P-384 key (`stadttor keys generate`) or RSA-3072 or more"
            )),
            Self::Ec { curve } if matches!(curve.as_str(), "P-256" | "P-384" | "P-521") => None,
            other => Some(format!(
                "{other} is not allowed by the BSI TR-02102-2 profile; \
                 use ECDSA P-256/P-384/P-521 or RSA of at least {MIN_RSA_BITS} bits"
            )),
        }
    }
}

/// What the gateway needs to know of a served certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// `notBefore`, seconds since the Unix epoch.
    pub not_before: i64,
    /// `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
    /// `subjectAltName` DNS names, lowercase.
    pub dns_names: Vec<String>,
    /// The public key.
    pub key: KeyKind,
}

/// Reads serial, validity, DNS names and key of `cert`; `path` names the
/// file in errors.
pub fn inspect(cert: &CertificateDer<'_>, path: &Path) -> Result<CertInfo, Error> {
    let bad = |reason: String| Error::BadCertificate {
        path: path.display().to_string(),
        reason,
    };
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| bad(format!("not a valid X.509 certificate: {e}")))?;
    let dns_names = match c.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(bad(format!("unreadable subjectAltName: {e}"))),
    };
    Ok(CertInfo {
        serial: crate::hex::encode(c.raw_serial()),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        dns_names,
        key: key_kind(c.public_key()),
    })
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyKind {
    use x509_parser::oid_registry as oids;
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyKind::Rsa {
                bits: modulus_bits(rsa.modulus),
            },
            _ => KeyKind::Other(alg.to_id_string()),
        };
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let name = match curve {
            Some(c) if c == oids::OID_EC_P256 => "P-256".to_owned(),
            Some(c) if c == oids::OID_NIST_EC_P384 => "P-384".to_owned(),
            Some(c) if c == oids::OID_NIST_EC_P521 => "P-521".to_owned(),
            Some(c) => c.to_id_string(),
            None => "(no named curve)".to_owned(),
        };
        return KeyKind::Ec { curve: name };
    }
    if *alg == oids::OID_SIG_ED25519 {
        return KeyKind::Ed25519;
    }
    KeyKind::Other(alg.to_id_string())
}

/// The size of an RSA modulus in bits (its big-endian bytes may carry a
/// leading zero for the sign).
fn modulus_bits(modulus: &[u8]) -> usize {
    let m: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    (m.len() - 1) * 8 + (8 - m[0].leading_zeros() as usize)
}

/// Whether a certificate with `dns_names` is valid for `server_name` (an
/// SNI name from the configuration, lowercase, possibly `*.suffix`): an
/// exact name, or a certificate wildcard `*.suffix` covering one label.
/// A configured wildcard is covered only by the same wildcard.
pub fn names_cover(dns_names: &[String], server_name: &str) -> bool {
    dns_names.iter().any(|n| {
        if n.eq_ignore_ascii_case(server_name) {
            return true;
        }
        let Some(suffix) = n.strip_prefix("*.") else {
            return false;
        };
        match server_name.split_once('.') {
            Some((label, rest)) => {
                !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(suffix)
            }
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names_cover_exact_and_one_label_wildcards() {
        let n = names(&["portal.example", "*.dienste.example"]);
        assert!(names_cover(&n, "portal.example"));
        assert!(names_cover(&n, "a.dienste.example"));
        assert!(names_cover(&n, "*.dienste.example"));
        assert!(!names_cover(&n, "dienste.example"));
        assert!(!names_cover(&n, "a.b.dienste.example"));
        assert!(!names_cover(&n, "other.example"));
        assert!(!names_cover(&names(&["portal.example"]), "*.example"));
    }

    #[test]
    fn bsi_profile_refuses_small_rsa_and_other_curves() {
        assert!(KeyKind::Rsa { bits: 2048 }
            .bsi_refusal()
            .is_some_and(|r| r.contains("RSA-2048") && r.contains("3000")));
        assert_eq!(KeyKind::Rsa { bits: 3072 }.bsi_refusal(), None);
        for ok in ["P-256", "P-384", "P-521"] {
            assert_eq!(KeyKind::Ec { curve: ok.into() }.bsi_refusal(), None);
        }
        assert!(KeyKind::Ec {
            curve: "1.3.132.0.10".into()
        }
        .bsi_refusal()
        .is_some());
        assert!(KeyKind::Ed25519.bsi_refusal().is_some());
    }

    #[test]
    fn modulus_bits_ignores_the_sign_byte() {
        let mut m = vec![0u8, 0x80];
        m.extend([0u8; 255]);
        assert_eq!(modulus_bits(&m), 2048);
        // No sign byte, top byte 0x0b holds 4 bits: 4 + 375 * 8.
        let mut m = vec![0x0b_u8];
        m.extend([0u8; 375]);
        assert_eq!(modulus_bits(&m), 3004);
    }

    #[test]
    fn inspect_reads_a_dev_certificate() {
        let ca = crate::devca::DevCa::generate("served test").expect("ca");
        let leaf = ca.issue_server(&["Portal.Example"]).expect("leaf");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(leaf.cert_pem.as_bytes())
            .expect("pem");
        let info = inspect(&der, Path::new("leaf.pem")).expect("inspect");
        assert_eq!(info.dns_names, vec!["portal.example".to_owned()]);
        assert_eq!(
            info.key,
            KeyKind::Ec {
                curve: "P-256".into()
            }
        );
        assert!(info.not_after > info.not_before);
        assert!(!info.serial.is_empty());
    }
}
