//! DER `SubjectPublicKeyInfo` encoding for the public keys backends return.

use crate::Algorithm;

const P256_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P384_PREFIX: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];
const ED25519_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const RSA_ALG_ID: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// SPKI for an uncompressed SEC1 EC point (`04 || x || y`).
pub fn ec(alg: Algorithm, point: &[u8]) -> Vec<u8> {
    let prefix = match alg {
        Algorithm::EcdsaP384Sha384 => P384_PREFIX,
        _ => P256_PREFIX,
    };
    [prefix, point].concat()
}

/// SPKI for a raw 32-byte Ed25519 public key.
pub fn ed25519(raw: &[u8]) -> Vec<u8> {
    [ED25519_PREFIX, raw].concat()
}

/// SPKI for a DER `RSAPublicKey`.
pub fn rsa(rsa_public_key: &[u8]) -> Vec<u8> {
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(rsa_public_key);
    let bit_string = tlv(0x03, &bit_string);
    tlv(0x30, &[RSA_ALG_ID, &bit_string].concat())
}

/// Encodes one DER tag-length-value.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}
