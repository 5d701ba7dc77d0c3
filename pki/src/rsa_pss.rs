//! PKCS#10 requests and self-signed certificates signed with RSASSA-PSS.
//!
//! RSA keys in the key store sign only RSASSA-PSS SHA-256 (MGF1-SHA-256,
//! salt 32). rcgen 0.13 keeps its RSA-PSS algorithm crate-private, so the
//! two structures an operator needs for such a key (a CSR for the CA, and
//! the self-signed certificate SAML SP metadata carries) are written here
//! with the crate's small DER encoder (`sign::der`). The signature
//! `AlgorithmIdentifier` is id-RSASSA-PSS with explicit RSASSA-PSS-params
//! (RFC 4055: sha256, mgf1 with sha256, saltLength 32, trailerField
//! default); the `SubjectPublicKeyInfo` is the key's own, byte for byte.
//! Every signature is checked against that SPKI before anything is
//! returned, so a backend that signs wrongly fails here, not at the CA.

use std::net::IpAddr;

use stadttor_hsm::{Algorithm, SigningKey};

use crate::sign::der::{self, tag};
use crate::sign::AlgInfo;
use crate::Error;

/// id-at-commonName 2.5.4.3
const CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectKeyIdentifier 2.5.29.14
const SKI: &[u8] = &[0x55, 0x1d, 0x0e];
/// id-ce-keyUsage 2.5.29.15
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// id-ce-subjectAltName 2.5.29.17
const SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// id-ce-basicConstraints 2.5.29.19
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// pkcs-9-at-extensionRequest 1.2.840.113549.1.9.14
const EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// UTF8String
const UTF8_STRING: u8 = 0x0c;
/// `[2] IMPLICIT IA5String` (GeneralName dNSName)
const DNS_NAME: u8 = 0x82;
/// `[7] IMPLICIT OCTET STRING` (GeneralName iPAddress)
const IP_ADDRESS: u8 = 0x87;

/// The longest validity `self_signed_pem` issues (about 10 years).
pub const MAX_DAYS: u32 = 3650;

fn bad(reason: impl Into<String>) -> Error {
    Error::BadParameters {
        reason: reason.into(),
    }
}

/// A PKCS#10 certificate signing request (PEM) for the RSA key `key`:
/// subject `CN=common_name`, and the subject alternative names `sans`
/// (DNS names, or IP addresses) as an extensionRequest attribute.
pub fn csr_pem(key: &dyn SigningKey, common_name: &str, sans: &[String]) -> Result<String, Error> {
    let alg_id = rsa_pss_alg_id(key)?;
    let mut attributes = Vec::new();
    if !sans.is_empty() {
        let extensions = der::seq(&[&extension(SAN, false, &san_value(sans)?)]);
        attributes = der::seq(&[&der::oid(EXTENSION_REQUEST), &der::set_of(&[&extensions])]);
    }
    let info = der::seq(&[
        &der::small_int(0),
        &name(common_name)?,
        key.public_key_spki(),
        // attributes [0] IMPLICIT SET OF Attribute
        &der::tlv(0xa0, &attributes),
    ]);
    let signed = sign(key, &info, &alg_id)?;
    Ok(pem("CERTIFICATE REQUEST", &signed))
}

/// A self-signed X.509 v3 certificate (PEM) for the RSA key `key`: subject
/// and issuer `CN=common_name`, valid from an hour before `now` for `days`
/// days, a random positive 128-bit serial, basicConstraints CA:false and
/// keyUsage digitalSignature + keyEncipherment (both critical), a subject
/// key identifier and, if `sans` is not empty, subject alternative names.
pub fn self_signed_pem(
    key: &dyn SigningKey,
    common_name: &str,
    sans: &[String],
    days: u32,
    now: time::OffsetDateTime,
) -> Result<String, Error> {
    let alg_id = rsa_pss_alg_id(key)?;
    if days == 0 || days > MAX_DAYS {
        return Err(bad(format!(
            "validity of {days} days: give 1 to {MAX_DAYS} days"
        )));
    }
    let subject = name(common_name)?;
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(days));
    let spki = key.public_key_spki();
    // Subject key identifier: the leftmost 160 bits of the SHA-256 of the
    // SPKI (RFC 7093, section 2, method 4).
    let ski = ring::digest::digest(&ring::digest::SHA256, spki);
    // digitalSignature (bit 0) and keyEncipherment (bit 2); five unused bits.
    let key_usage = der::tlv(tag::BIT_STRING, &[0x05, 0xa0]);
    let mut extensions = vec![
        extension(BASIC_CONSTRAINTS, true, &der::seq(&[])),
        extension(KEY_USAGE, true, &key_usage),
        extension(SKI, false, &der::octets(&ski.as_ref()[..20])),
    ];
    if !sans.is_empty() {
        extensions.push(extension(SAN, false, &san_value(sans)?));
    }
    let extensions: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    let tbs = der::seq(&[
        &der::explicit(0, &der::small_int(2)),
        &der::uint(&serial()?),
        &alg_id,
        &subject,
        &der::seq(&[&der::time(not_before), &der::time(not_after)]),
        &subject,
        spki,
        &der::explicit(3, &der::seq(&extensions)),
    ]);
    let signed = sign(key, &tbs, &alg_id)?;
    Ok(pem("CERTIFICATE", &signed))
}

/// The RSASSA-PSS `AlgorithmIdentifier`, or an error for a key that does
/// not sign RSA-PSS SHA-256.
fn rsa_pss_alg_id(key: &dyn SigningKey) -> Result<Vec<u8>, Error> {
    if key.algorithm() != Algorithm::RsaPssSha256 {
        return Err(Error::UnsupportedAlgorithm {
            key: key.reference().to_owned(),
            algorithm: key.algorithm().to_string(),
        });
    }
    Ok(AlgInfo::of(Algorithm::RsaPssSha256, key.reference())?.signature_algorithm_id())
}

/// `SEQUENCE { to_be_signed, alg_id, BIT STRING signature }`, after
/// checking the signature against the key's SPKI.
fn sign(key: &dyn SigningKey, to_be_signed: &[u8], alg_id: &[u8]) -> Result<Vec<u8>, Error> {
    let signature = key.sign(to_be_signed)?;
    crate::sign::verify_raw(
        Algorithm::RsaPssSha256,
        key.public_key_spki(),
        to_be_signed,
        &signature,
        false,
    )?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0);
    bits.extend_from_slice(&signature);
    Ok(der::seq(&[
        to_be_signed,
        alg_id,
        &der::tlv(tag::BIT_STRING, &bits),
    ]))
}

/// The `Name` `CN=common_name` (UTF8String, at most 64 characters as
/// RFC 5280's ub-common-name says).
fn name(common_name: &str) -> Result<Vec<u8>, Error> {
    let chars = common_name.chars().count();
    if chars == 0 || chars > 64 || common_name.chars().any(char::is_control) {
        return Err(bad(format!(
            "common name {common_name:?}: give 1 to 64 printable characters"
        )));
    }
    let atv = der::seq(&[
        &der::oid(CN),
        &der::tlv(UTF8_STRING, common_name.as_bytes()),
    ]);
    Ok(der::seq(&[&der::set_of(&[&atv])]))
}

/// One `Extension`: OID, critical flag (only when true, DER omits the
/// default), value wrapped in an OCTET STRING.
fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let oid = der::oid(oid);
    let value = der::octets(value);
    if critical {
        der::seq(&[&oid, &der::tlv(tag::BOOLEAN, &[0xff]), &value])
    } else {
        der::seq(&[&oid, &value])
    }
}

/// `GeneralNames` of DNS names and IP addresses.
fn san_value(sans: &[String]) -> Result<Vec<u8>, Error> {
    let mut names = Vec::with_capacity(sans.len());
    for san in sans {
        names.push(match san.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => der::tlv(IP_ADDRESS, &ip.octets()),
            Ok(IpAddr::V6(ip)) => der::tlv(IP_ADDRESS, &ip.octets()),
            Err(_) => {
                let ok = !san.is_empty()
                    && san.len() <= 253
                    && san
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b));
                if !ok {
                    return Err(bad(format!(
                        "subject alternative name {san:?} is neither an IP address nor a DNS \
                         name (ASCII letters, digits, `-`, `.`, `*`; IDNs as xn--)"
                    )));
                }
                der::tlv(DNS_NAME, san.as_bytes())
            }
        });
    }
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    Ok(der::seq(&names))
}

/// 16 random bytes, as a positive INTEGER of exactly 16 content bytes.
fn serial() -> Result<[u8; 16], Error> {
    let mut s = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
        .map_err(|_| bad("no randomness from the operating system for the serial number"))?;
    s[0] = (s[0] & 0x7f) | 0x40;
    Ok(s)
}

/// PEM with 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::sign::b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
#[path = "rsa_pss_tests.rs"]
mod tests;
