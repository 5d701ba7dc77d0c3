//! Just enough DER for the signature formats: an encoder for the structures
//! we build (CMS, timestamp requests) and a strict reader for the few we
//! take apart (timestamp responses, our own CMS when verifying).
//!
//! Only definite lengths, single-byte tags and lengths up to 2^32 are
//! supported; anything else is refused as malformed, never guessed.

use crate::Error;

/// Universal tags used here.
pub(crate) mod tag {
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const NULL: u8 = 0x05;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
}

/// Object identifiers, as DER content bytes (without tag and length).
pub(crate) mod oid {
    /// id-data 1.2.840.113549.1.7.1
    pub(crate) const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// id-signedData 1.2.840.113549.1.7.2
    pub(crate) const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// id-contentType 1.2.840.113549.1.9.3
    pub(crate) const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    /// id-messageDigest 1.2.840.113549.1.9.4
    pub(crate) const MESSAGE_DIGEST: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// id-signingTime 1.2.840.113549.1.9.5
    pub(crate) const SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
    /// id-aa-signingCertificateV2 1.2.840.113549.1.9.16.2.47
    pub(crate) const SIGNING_CERTIFICATE_V2: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x2f,
    ];
    /// id-aa-signatureTimeStampToken 1.2.840.113549.1.9.16.2.14
    pub(crate) const SIGNATURE_TIME_STAMP_TOKEN: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x0e,
    ];
    /// id-ct-TSTInfo 1.2.840.113549.1.9.16.1.4
    pub(crate) const TST_INFO: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
    ];
    /// id-sha256 2.16.840.1.101.3.4.2.1
    pub(crate) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// id-sha384 2.16.840.1.101.3.4.2.2
    pub(crate) const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    /// id-sha512 2.16.840.1.101.3.4.2.3
    pub(crate) const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    /// ecdsa-with-SHA256 1.2.840.10045.4.3.2
    pub(crate) const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// ecdsa-with-SHA384 1.2.840.10045.4.3.3
    pub(crate) const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// id-Ed25519 1.3.101.112
    pub(crate) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// id-RSASSA-PSS 1.2.840.113549.1.1.10
    pub(crate) const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    /// id-mgf1 1.2.840.113549.1.1.8
    pub(crate) const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
}

/// One tag-length-value.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    push_tlv(&mut out, tag, value);
    out
}

/// Appends one tag-length-value to `out`.
pub(crate) fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

/// A SEQUENCE of already encoded parts.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &parts.concat())
}

/// A SET OF already encoded parts, sorted as DER requires.
pub(crate) fn set_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut sorted: Vec<&[u8]> = parts.to_vec();
    sorted.sort();
    tlv(tag::SET, &sorted.concat())
}

/// An OBJECT IDENTIFIER from its content bytes.
pub(crate) fn oid(content: &[u8]) -> Vec<u8> {
    tlv(tag::OID, content)
}

/// An OCTET STRING.
pub(crate) fn octets(content: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, content)
}

/// A non-negative INTEGER from big-endian magnitude bytes.
pub(crate) fn uint(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let skip = magnitude
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(magnitude.len().saturating_sub(1));
        &magnitude[skip..]
    };
    if trimmed.is_empty() {
        return tlv(tag::INTEGER, &[0]);
    }
    if trimmed[0] & 0x80 != 0 {
        let mut v = vec![0];
        v.extend_from_slice(trimmed);
        tlv(tag::INTEGER, &v)
    } else {
        tlv(tag::INTEGER, trimmed)
    }
}

/// A small INTEGER.
pub(crate) fn small_int(n: u32) -> Vec<u8> {
    uint(&n.to_be_bytes())
}

/// `[n] EXPLICIT` (constructed context tag) around an encoded value.
pub(crate) fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// A UTCTime (years 1950–2049) or GeneralizedTime, as RFC 5280 requires.
pub(crate) fn time(t: time::OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        tlv(tag::UTC_TIME, text.as_bytes())
    } else {
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        tlv(tag::GENERALIZED_TIME, text.as_bytes())
    }
}

/// One parsed element: its tag, its content and its whole encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The tag byte.
    pub(crate) tag: u8,
    /// The content octets.
    pub(crate) value: &'a [u8],
    /// Tag, length and content together.
    pub(crate) raw: &'a [u8],
}

fn malformed(what: &str) -> Error {
    Error::Malformed {
        what: "DER",
        reason: what.to_owned(),
    }
}

/// Reads one element from the front of `input`; returns it and the rest.
pub(crate) fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), Error> {
    let (&t, rest) = input.split_first().ok_or_else(|| malformed("truncated"))?;
    if t & 0x1f == 0x1f {
        return Err(malformed("multi-byte tag"));
    }
    let (&l0, rest) = rest.split_first().ok_or_else(|| malformed("truncated"))?;
    let (len, rest) = if l0 < 0x80 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(malformed("indefinite or oversized length"));
        }
        let bytes = rest.get(..n).ok_or_else(|| malformed("truncated length"))?;
        let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        if len < 0x80 || bytes[0] == 0 {
            return Err(malformed("non-minimal length"));
        }
        (len, &rest[n..])
    };
    let value = rest
        .get(..len)
        .ok_or_else(|| malformed("truncated value"))?;
    let header = input.len() - rest.len();
    Ok((
        Tlv {
            tag: t,
            value,
            raw: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// Reads one element of tag `tag` and requires nothing after it.
pub(crate) fn read_exact(input: &[u8], tag: u8) -> Result<Tlv<'_>, Error> {
    let (t, rest) = read(input)?;
    if t.tag != tag {
        return Err(malformed(&format!(
            "expected tag {tag:#04x}, got {:#04x}",
            t.tag
        )));
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(t)
}

/// Iterates over the elements inside a constructed value.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over the content of a SEQUENCE, SET or explicit tag.
    pub(crate) fn new(content: &'a [u8]) -> Self {
        Self { rest: content }
    }

    /// The next element, which must have tag `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, Error> {
        let (t, rest) = read(self.rest)?;
        if t.tag != tag {
            return Err(malformed(&format!(
                "expected tag {tag:#04x}, got {:#04x}",
                t.tag
            )));
        }
        self.rest = rest;
        Ok(t)
    }

    /// The next element if it has tag `tag`.
    pub(crate) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, Error> {
        if self.rest.first() == Some(&tag) {
            self.expect(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The next element, whatever it is.
    pub(crate) fn any(&mut self) -> Result<Option<Tlv<'a>>, Error> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (t, rest) = read(self.rest)?;
        self.rest = rest;
        Ok(Some(t))
    }

    /// Whether everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_round_trip() {
        let long = vec![7u8; 300];
        let enc = octets(&long);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let t = read_exact(&enc, tag::OCTET_STRING).unwrap();
        assert_eq!(t.value, &long[..]);
        assert_eq!(uint(&[0x00, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[0x00, 0x00, 0x01]), vec![0x02, 0x01, 0x01]);
        assert_eq!(small_int(0), vec![0x02, 0x01, 0x00]);
        // Non-minimal lengths and indefinite lengths are refused.
        assert!(read(&[0x04, 0x81, 0x01, 0x00]).is_err());
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_err());
        assert!(read(&[0x04, 0x05, 0x00]).is_err());
    }

    #[test]
    fn sets_are_sorted() {
        let a = oid(&[1]);
        let b = octets(&[0]);
        assert_eq!(set_of(&[&a, &b]), set_of(&[&b, &a]));
    }
}
