//! Lowercase hexadecimal: the one implementation for this crate and the
//! gateway (fingerprints, digests in headers and log lines, key files,
//! command-line nonces).

use std::fmt::Write as _;

/// Lowercase hex of `data`, two digits per byte.
pub fn encode(data: &[u8]) -> String {
    data.iter()
        .fold(String::with_capacity(data.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes of a hex string (either case); `None` for an odd length or a
/// character that is not a hex digit.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(decode("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
    }

    #[test]
    fn refuses_what_is_not_hex() {
        for bad in ["0", "abc", "0g", "zz", "äb", "+1", " 1"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
