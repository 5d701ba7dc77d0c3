//! Key references as written in the configuration: `file:`, `tpm:`, `pkcs11:`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// A parsed key reference.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRef {
    /// A PKCS#8 file (PEM or DER); software only.
    File(PathBuf),
    /// A TPM key; the text after `tpm:` is interpreted by the TPM backend.
    Tpm(String),
    /// An RFC 7512 PKCS#11 URI, kept whole (`pkcs11:…`).
    Pkcs11(String),
}

impl KeyRef {
    /// The backend name (`file`, `tpm`, `pkcs11`).
    pub fn backend(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Tpm(_) => "tpm",
            Self::Pkcs11(_) => "pkcs11",
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Tpm(s) => write!(f, "tpm:{s}"),
            Self::Pkcs11(s) => f.write_str(s),
        }
    }
}

impl FromStr for KeyRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected `file:PATH`, `tpm:…` or `pkcs11:…`"))?;
        if rest.is_empty() {
            return Err(invalid("nothing after the scheme"));
        }
        match scheme {
            "file" => Ok(Self::File(PathBuf::from(rest))),
            "tpm" => Ok(Self::Tpm(rest.to_owned())),
            "pkcs11" => Ok(Self::Pkcs11(s.to_owned())),
            other => Err(invalid(&format!(
                "unknown key backend `{other}`; known are file, tpm, pkcs11"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        assert_eq!(
            "file:/etc/k.pem".parse::<KeyRef>().unwrap(),
            KeyRef::File("/etc/k.pem".into())
        );
        assert_eq!(
            "tpm:handle=0x81010001".parse::<KeyRef>().unwrap(),
            KeyRef::Tpm("handle=0x81010001".into())
        );
        assert_eq!(
            "pkcs11:token=t;object=k".parse::<KeyRef>().unwrap(),
            KeyRef::Pkcs11("pkcs11:token=t;object=k".into())
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert!("vault:x".parse::<KeyRef>().is_err());
        assert!("file:".parse::<KeyRef>().is_err());
        assert!("/etc/key.pem".parse::<KeyRef>().is_err());
    }
}
