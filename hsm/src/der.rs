//! A small DER reader and the ECDSA signature encoding shared by the hardware
//! backends (TPMs and PKCS#11 tokens return `r` and `s` as raw integers).

// Shared by both hardware backends; with only one compiled in, parts idle.
#![cfg_attr(not(all(feature = "tpm", feature = "pkcs11")), allow(dead_code))]

use crate::spki::tlv;

/// DER tag of INTEGER.
pub(crate) const INTEGER: u8 = 0x02;
/// DER tag of OCTET STRING.
pub(crate) const OCTET_STRING: u8 = 0x04;
/// DER tag of OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// DER tag of SEQUENCE.
pub(crate) const SEQUENCE: u8 = 0x30;

/// DER content of the P-256 curve OID 1.2.840.10045.3.1.7.
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER content of the P-384 curve OID 1.3.132.0.34.
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Why a DER structure was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) &'static str);

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed DER: {}", self.0)
    }
}

/// Reads DER TLVs front to back; definite lengths only, at most 4 length bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// True when everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The tag of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads any element and returns its tag and value.
    pub(crate) fn any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self.data.split_first().ok_or(DerError("unexpected end"))?;
        let (&first, mut rest) = rest.split_first().ok_or(DerError("missing length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(DerError("bad length"));
            }
            let (bytes, tail) = rest.split_at(n);
            rest = tail;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return Err(DerError("truncated element"));
        }
        let (value, tail) = rest.split_at(len);
        self.data = tail;
        Ok((tag, value))
    }

    /// Reads an element that must carry `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], DerError> {
        match self.any()? {
            (t, v) if t == tag => Ok(v),
            _ => Err(DerError(what)),
        }
    }
}

/// Reads a non-negative DER INTEGER of at most 8 bytes (after a sign byte).
pub(crate) fn uint(value: &[u8]) -> Result<u64, DerError> {
    let value = match value {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return Err(DerError("negative integer")),
        v => v,
    };
    if value.is_empty() || value.len() > 8 {
        return Err(DerError("integer out of range"));
    }
    Ok(value.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Encodes an unsigned big-endian integer as DER INTEGER.
pub(crate) fn uint_der(be: &[u8]) -> Vec<u8> {
    let skip = be.iter().take_while(|b| **b == 0).count();
    let digits = &be[skip..];
    let mut value = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(digits);
    tlv(INTEGER, &value)
}

/// DER `ECDSA-Sig-Value` from the big-endian scalars `r` and `s`.
pub(crate) fn ecdsa_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[uint_der(r), uint_der(s)].concat())
}

/// DER `RSAPublicKey` (RFC 8017 A.1.1) from the big-endian modulus and
/// public exponent, as TPMs and PKCS#11 tokens hand them out.
pub(crate) fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[uint_der(modulus), uint_der(exponent)].concat())
}

/// DER `ECDSA-Sig-Value` from PKCS#11's fixed-width `r || s`.
#[cfg(feature = "pkcs11")]
pub(crate) fn ecdsa_sig_from_raw(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(ecdsa_sig(r, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_get_sign_byte_and_lose_leading_zeros() {
        assert_eq!(uint_der(&[0x00, 0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(uint_der(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint_der(&[0, 0]), vec![0x02, 0x01, 0x00]);
        assert_eq!(uint(&[0x00, 0x81, 0x00, 0x00, 0x01]), Ok(0x8100_0001));
        assert!(uint(&[0x81]).is_err());
    }

    #[test]
    fn reader_walks_nested_and_long_forms() {
        let inner = vec![0xaa; 200];
        let der = tlv(
            SEQUENCE,
            &[tlv(OCTET_STRING, &inner), tlv(OID, OID_P256)].concat(),
        );
        let mut outer = Reader::new(&der);
        let mut seq = Reader::new(outer.expect(SEQUENCE, "seq").unwrap());
        assert!(outer.is_empty());
        assert_eq!(seq.expect(OCTET_STRING, "os").unwrap(), &inner[..]);
        assert_eq!(seq.peek_tag(), Some(OID));
        assert_eq!(seq.expect(OID, "oid").unwrap(), OID_P256);
        assert!(seq.any().is_err());
        assert!(Reader::new(&[0x30, 0x05, 0x00]).any().is_err());
    }
}
