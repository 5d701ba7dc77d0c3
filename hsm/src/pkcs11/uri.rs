//! RFC 7512 PKCS#11 URIs, reduced to what selects a signing key.

use crate::Error;

/// A parsed `pkcs11:` URI naming a private key on a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    reference: String,
    /// `token=`: the token label (CKA_LABEL of the token).
    pub token: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `object=`: the key's CKA_LABEL.
    pub object: Option<String>,
    /// `id=`: the key's CKA_ID (percent-encoded bytes, e.g. `%01`).
    pub id: Option<Vec<u8>>,
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reference)
    }
}

impl Pkcs11Uri {
    /// Parses a whole `pkcs11:` URI.
    ///
    /// Path attributes `token`, `serial`, `object`, `id` and `type=private`
    /// are understood; any other attribute is refused rather than ignored, and
    /// PINs in the URI (`pin-value`, `pin-source`) are refused: the PIN comes
    /// from [`crate::KeyStoreConfig::pkcs11_pin_file`].
    pub fn parse(uri: &str) -> Result<Self, Error> {
        // The query may hold a PIN (`pin-value`): never echo it in errors.
        let shown = match uri.split_once('?') {
            Some((path, _)) => format!("{path}?<query hidden>"),
            None => uri.to_owned(),
        };
        let invalid = |reason: String| Error::InvalidReference {
            reference: shown.clone(),
            reason,
        };
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| invalid("a PKCS#11 URI starts with `pkcs11:`".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parsed = Self {
            reference: uri.to_owned(),
            token: None,
            serial: None,
            object: None,
            id: None,
        };
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| invalid(format!("`{attr}` is not `name=value`")))?;
            let value = percent_decode(value)
                .ok_or_else(|| invalid(format!("bad percent-encoding in `{attr}`")))?;
            let text = || {
                String::from_utf8(value.clone())
                    .map_err(|_| invalid(format!("`{name}` is not UTF-8")))
            };
            let duplicate = match name {
                "token" => parsed.token.replace(text()?).is_some(),
                "serial" => parsed.serial.replace(text()?).is_some(),
                "object" => parsed.object.replace(text()?).is_some(),
                "id" => parsed.id.replace(value).is_some(),
                "type" if value == b"private" => false,
                "type" => {
                    return Err(invalid(
                        "only `type=private` makes sense for a signing key".into(),
                    ))
                }
                other => {
                    return Err(invalid(format!(
                        "unsupported attribute `{other}`; supported are token, serial, object, id, type"
                    )))
                }
            };
            if duplicate {
                return Err(invalid(format!("`{name}` given twice")));
            }
        }
        // No query attribute is supported; name the first one in the error.
        if let Some(attr) = query.split('&').find(|a| !a.is_empty()) {
            let name = attr.split_once('=').map_or(attr, |(n, _)| n);
            return Err(invalid(match name {
                "pin-value" | "pin-source" => {
                    "no PIN in the key reference: set `pkcs11_pin_file` in the key store configuration".into()
                }
                "module-path" | "module-name" => {
                    "set the module with `pkcs11_module` in the key store configuration".into()
                }
                other => format!("unsupported query attribute `{other}`"),
            }));
        }
        if parsed.object.is_none() && parsed.id.is_none() {
            return Err(invalid(
                "name the key with `object=LABEL` and/or `id=%XX`".into(),
            ));
        }
        Ok(parsed)
    }

    /// The URI as written.
    pub fn as_str(&self) -> &str {
        &self.reference
    }
}

fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7512_examples() {
        let u = Pkcs11Uri::parse("pkcs11:token=stadt%20tor;object=tls-key;id=%01%ff;type=private")
            .unwrap();
        assert_eq!(u.token.as_deref(), Some("stadt tor"));
        assert_eq!(u.object.as_deref(), Some("tls-key"));
        assert_eq!(u.id, Some(vec![0x01, 0xff]));
        assert_eq!(
            u.as_str(),
            "pkcs11:token=stadt%20tor;object=tls-key;id=%01%ff;type=private"
        );
    }

    #[test]
    fn refuses_pins_unknown_and_incomplete() {
        for (bad, needle) in [
            ("pkcs11:token=t;object=k?pin-value=1234", "pkcs11_pin_file"),
            ("pkcs11:token=t;object=k?module-path=/x.so", "pkcs11_module"),
            ("pkcs11:token=t;slot-id=3;object=k", "slot-id"),
            ("pkcs11:token=t", "object=LABEL"),
            ("pkcs11:token=t;id=%0", "percent"),
            ("pkcs11:token=t;object=k;type=cert", "type=private"),
            ("pkcs11:object=a;object=b", "twice"),
        ] {
            let err = Pkcs11Uri::parse(bad).unwrap_err().to_string();
            let shown = bad.split('?').next().unwrap();
            assert!(err.contains(needle) && err.contains(shown), "{err}");
            assert!(!err.contains("1234"), "PIN leaked: {err}");
        }
    }
}
