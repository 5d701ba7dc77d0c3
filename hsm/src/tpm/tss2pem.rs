//! The TSS2 PEM key format (`-----BEGIN TSS2 PRIVATE KEY-----`), as written by
//! `tpm2_encodeobject`, tpm2-openssl and tpm2-tss-engine.
//!
//! ```text
//! TPMKey ::= SEQUENCE {
//!     type        OBJECT IDENTIFIER,        -- 2.23.133.10.1.3 (loadable key)
//!     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
//!     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
//!     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
//!     authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
//!     parent      INTEGER,                  -- a TPM handle
//!     pubkey      OCTET STRING,             -- TPM2B_PUBLIC
//!     privkey     OCTET STRING              -- TPM2B_PRIVATE
//! }
//! ```
//!
//! ```text
//! TPMPolicy ::= SEQUENCE {
//!     commandCode   [0] EXPLICIT INTEGER,   -- e.g. TPM_CC_PolicyPCR
//!     commandPolicy [1] EXPLICIT OCTET STRING  -- the command's marshalled parameters
//! }
//! ```
//!
//! Signing keys ([`Tss2Key`]) must be loadable keys without policies:
//! stadttor cannot satisfy a key policy, and importable keys need a
//! duplication step it does not do. Sealed secrets ([`Tss2Object`] with
//! [`Tss2Kind::Sealed`], type `id-sealedkey`) may carry a policy; which
//! policies stadttor can execute is decided in `tpm/seal.rs`.
//!
//! [`PemOut`] writes these files: claimed with `create_new` (mode 0600, never
//! overwriting) before the TPM is asked, removed again if the TPM fails.

use crate::der::{self, DerError, Reader, INTEGER, OCTET_STRING, OID, SEQUENCE};
use crate::spki::tlv;

/// PEM label of the format.
pub(crate) const PEM_TAG: &str = "TSS2 PRIVATE KEY";
/// DER content of OID 2.23.133.10.1.3, `id-loadablekey`.
const OID_LOADABLE_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0a, 0x01, 0x03];
/// DER content of OID 2.23.133.10.1.4, `id-importablekey`.
const OID_IMPORTABLE_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0a, 0x01, 0x04];
/// DER content of OID 2.23.133.10.1.5, `id-sealedkey`.
const OID_SEALED_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0a, 0x01, 0x05];

/// The TSS2 object types stadttor reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tss2Kind {
    /// `id-loadablekey`: a key loaded with TPM2_Load.
    Loadable,
    /// `id-sealedkey`: a keyed-hash sealed data object (TPM2_Unseal).
    Sealed,
}

/// One `TPMPolicy` element: a policy command and its marshalled parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyCommand {
    /// The TPM command code (`TPM_CC_PolicyPCR` = 0x17f, …).
    pub(crate) code: u32,
    /// The command's parameters in TPM wire format (handles excluded).
    pub(crate) parameters: Vec<u8>,
}

/// A decoded TSS2 object of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tss2Object {
    /// Loadable key or sealed data.
    pub(crate) kind: Tss2Kind,
    /// What the file says about the object's password. Debian's tpm2-tools
    /// 5.4 writes this inverted (tpm2-tools #3458), so it is informational only.
    pub(crate) empty_auth: bool,
    /// The policy to run before use, if the file has one (`[1]`).
    pub(crate) policy: Option<Vec<PolicyCommand>>,
    /// The parent's TPM handle; stadttor requires a persistent one (0x81…).
    pub(crate) parent: u32,
    /// `TPM2B_PUBLIC` bytes, size prefix included.
    pub(crate) public: Vec<u8>,
    /// `TPM2B_PRIVATE` bytes, size prefix included.
    pub(crate) private: Vec<u8>,
}

impl Tss2Object {
    /// Decodes the PEM text of a TSS2 file.
    pub(crate) fn from_pem(text: &[u8]) -> Result<Self, String> {
        let pem = pem::parse(text).map_err(|e| format!("not a PEM file: {e}"))?;
        if pem.tag() != PEM_TAG {
            return Err(format!(
                "expected a `{PEM_TAG}` PEM block (tpm2_encodeobject), found `{}`",
                pem.tag()
            ));
        }
        Self::from_der(pem.contents()).map_err(|e| e.to_string())
    }

    /// Decodes the DER `TPMKey` structure.
    pub(crate) fn from_der(bytes: &[u8]) -> Result<Self, Tss2Error> {
        let mut outer = Reader::new(bytes);
        let mut seq = Reader::new(outer.expect(SEQUENCE, "TPMKey is not a SEQUENCE")?);
        if !outer.is_empty() {
            return Err(DerError("trailing data after TPMKey").into());
        }
        let kind = match seq.expect(OID, "missing key type OID")? {
            OID_LOADABLE_KEY => Tss2Kind::Loadable,
            OID_SEALED_KEY => Tss2Kind::Sealed,
            OID_IMPORTABLE_KEY => return Err(Tss2Error::Unsupported("an importable key")),
            _ => return Err(Tss2Error::Unsupported("an unknown TSS2 key type")),
        };
        let mut empty_auth = false;
        let mut policy = None;
        while let Some(tag) = seq.peek_tag().filter(|t| t & 0xe0 == 0xa0) {
            let value = seq.any()?.1;
            match tag {
                0xa0 => {
                    let b = Reader::new(value).expect(0x01, "emptyAuth is not a BOOLEAN")?;
                    empty_auth = b.first().is_some_and(|v| *v != 0);
                }
                0xa1 => policy = Some(parse_policy(value)?),
                0xa2 => return Err(Tss2Error::Unsupported("a key with an imported secret")),
                0xa3 => return Err(Tss2Error::Unsupported("a key with signed policies")),
                _ => return Err(DerError("unknown context tag").into()),
            }
        }
        let parent = der::uint(seq.expect(INTEGER, "missing parent handle")?)?;
        let parent = u32::try_from(parent).map_err(|_| DerError("parent handle too large"))?;
        let public = seq.expect(OCTET_STRING, "missing pubkey")?.to_vec();
        let private = seq.expect(OCTET_STRING, "missing privkey")?.to_vec();
        if !seq.is_empty() {
            return Err(DerError("trailing data inside TPMKey").into());
        }
        Ok(Self {
            kind,
            empty_auth,
            policy,
            parent,
            public,
            private,
        })
    }

    /// Encodes as DER `TPMKey`.
    pub(crate) fn to_der(&self) -> Vec<u8> {
        let oid = match self.kind {
            Tss2Kind::Loadable => OID_LOADABLE_KEY,
            Tss2Kind::Sealed => OID_SEALED_KEY,
        };
        let mut body = tlv(OID, oid);
        if self.empty_auth {
            body.extend(tlv(0xa0, &tlv(0x01, &[0xff])));
        }
        if let Some(policy) = &self.policy {
            let commands: Vec<u8> = policy
                .iter()
                .flat_map(|c| {
                    let code = tlv(0xa0, &der::uint_der(&c.code.to_be_bytes()));
                    let params = tlv(0xa1, &tlv(OCTET_STRING, &c.parameters));
                    tlv(SEQUENCE, &[code, params].concat())
                })
                .collect();
            body.extend(tlv(0xa1, &tlv(SEQUENCE, &commands)));
        }
        body.extend(der::uint_der(&self.parent.to_be_bytes()));
        body.extend(tlv(OCTET_STRING, &self.public));
        body.extend(tlv(OCTET_STRING, &self.private));
        tlv(SEQUENCE, &body)
    }

    /// Encodes as PEM text.
    pub(crate) fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(PEM_TAG, self.to_der()))
    }
}

/// Parses `SEQUENCE OF TPMPolicy` (the content of the `[1]` wrapper).
fn parse_policy(value: &[u8]) -> Result<Vec<PolicyCommand>, DerError> {
    let mut wrapper = Reader::new(value);
    let mut list = Reader::new(wrapper.expect(SEQUENCE, "policy is not a SEQUENCE OF")?);
    if !wrapper.is_empty() {
        return Err(DerError("trailing data after policy"));
    }
    let mut commands = Vec::new();
    while !list.is_empty() {
        let mut item = Reader::new(list.expect(SEQUENCE, "TPMPolicy is not a SEQUENCE")?);
        let code = Reader::new(item.expect(0xa0, "TPMPolicy lacks commandCode")?)
            .expect(INTEGER, "commandCode is not an INTEGER")
            .and_then(der::uint)?;
        let code = u32::try_from(code).map_err(|_| DerError("commandCode too large"))?;
        let parameters = Reader::new(item.expect(0xa1, "TPMPolicy lacks commandPolicy")?)
            .expect(OCTET_STRING, "commandPolicy is not an OCTET STRING")?
            .to_vec();
        if !item.is_empty() {
            return Err(DerError("trailing data inside TPMPolicy"));
        }
        commands.push(PolicyCommand { code, parameters });
    }
    Ok(commands)
}

/// A decoded TSS2 signing key: the blobs to pass to TPM2_Load under `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tss2Key {
    /// What the file says about the key's password (informational; see
    /// [`Tss2Object::empty_auth`]).
    pub(crate) empty_auth: bool,
    /// The parent's TPM handle; stadttor requires a persistent one (0x81…).
    pub(crate) parent: u32,
    /// `TPM2B_PUBLIC` bytes, size prefix included.
    pub(crate) public: Vec<u8>,
    /// `TPM2B_PRIVATE` bytes, size prefix included.
    pub(crate) private: Vec<u8>,
}

impl Tss2Key {
    /// Decodes the PEM text of a TSS2 key file.
    pub(crate) fn from_pem(text: &[u8]) -> Result<Self, String> {
        let object = Tss2Object::from_pem(text)?;
        Self::from_object(object).map_err(|e| e.to_string())
    }

    /// Decodes the DER `TPMKey` structure.
    #[cfg(test)]
    pub(crate) fn from_der(bytes: &[u8]) -> Result<Self, Tss2Error> {
        Self::from_object(Tss2Object::from_der(bytes)?)
    }

    fn from_object(object: Tss2Object) -> Result<Self, Tss2Error> {
        if object.kind == Tss2Kind::Sealed {
            return Err(Tss2Error::Unsupported("a sealed data object"));
        }
        if object.policy.is_some() {
            return Err(Tss2Error::Unsupported("a key with a policy"));
        }
        Ok(Self {
            empty_auth: object.empty_auth,
            parent: object.parent,
            public: object.public,
            private: object.private,
        })
    }

    /// Encodes as DER `TPMKey`.
    #[cfg(test)]
    pub(crate) fn to_der(&self) -> Vec<u8> {
        self.as_object().to_der()
    }

    /// Encodes as PEM text.
    pub(crate) fn to_pem(&self) -> String {
        self.as_object().to_pem()
    }

    fn as_object(&self) -> Tss2Object {
        Tss2Object {
            kind: Tss2Kind::Loadable,
            empty_auth: self.empty_auth,
            policy: None,
            parent: self.parent,
            public: self.public.clone(),
            private: self.private.clone(),
        }
    }
}

/// Why a TSS2 key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tss2Error {
    /// Not well-formed.
    Der(DerError),
    /// Well-formed, but a kind stadttor does not load.
    Unsupported(&'static str),
}

impl From<DerError> for Tss2Error {
    fn from(e: DerError) -> Self {
        Self::Der(e)
    }
}

impl std::fmt::Display for Tss2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Der(e) => write!(f, "TSS2 key: {e}"),
            Self::Unsupported(what) => {
                write!(
                    f,
                    "TSS2 key is {what}; only plain loadable keys are supported"
                )
            }
        }
    }
}

/// A claimed (created, empty) output file for a TSS2 PEM key.
pub(crate) struct PemOut {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl PemOut {
    pub(crate) fn create(path: &std::path::Path, reference: &str) -> Result<Self, crate::Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => crate::Error::AlreadyExists {
                    reference: reference.to_owned(),
                },
                _ => crate::Error::Io {
                    path: path.display().to_string(),
                    source,
                },
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    pub(crate) fn write(self, key: &Tss2Key) -> Result<(), crate::Error> {
        self.write_text(&key.to_pem())
    }

    pub(crate) fn write_text(mut self, text: &str) -> Result<(), crate::Error> {
        use std::io::Write;
        let io = |source| crate::Error::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_all().map_err(io)
    }

    pub(crate) fn abandon(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tss2Key {
        Tss2Key {
            empty_auth: true,
            parent: 0x8100_0001,
            public: vec![0x00, 0x03, 1, 2, 3],
            private: vec![0x00, 0x02, 9, 9],
        }
    }

    #[test]
    fn round_trips_through_pem() {
        let key = sample();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
        assert_eq!(Tss2Key::from_pem(pem.as_bytes()).unwrap(), key);
    }

    #[test]
    fn parent_integer_has_sign_byte() {
        let der = sample().to_der();
        let needle = [0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01];
        assert!(der.windows(needle.len()).any(|w| w == needle));
    }

    fn sealed_sample() -> Tss2Object {
        Tss2Object {
            kind: Tss2Kind::Sealed,
            empty_auth: true,
            policy: Some(vec![
                PolicyCommand {
                    code: 0x17f,
                    parameters: vec![0, 2, 0xaa, 0xbb],
                },
                PolicyCommand {
                    code: 0x16b,
                    parameters: vec![],
                },
            ]),
            parent: 0x8100_0001,
            public: vec![0x00, 0x03, 1, 2, 3],
            private: vec![0x00, 0x02, 9, 9],
        }
    }

    #[test]
    fn refuses_policies_other_types_and_other_pem() {
        let mut with_policy = sealed_sample();
        with_policy.kind = Tss2Kind::Loadable;
        let err = Tss2Key::from_der(&with_policy.to_der()).unwrap_err();
        assert_eq!(err, Tss2Error::Unsupported("a key with a policy"));
        with_policy.policy = Some(vec![]);
        let err = Tss2Key::from_der(&with_policy.to_der()).unwrap_err();
        assert_eq!(err, Tss2Error::Unsupported("a key with a policy"));

        let err = Tss2Key::from_der(&sealed_sample().to_der()).unwrap_err();
        assert_eq!(err, Tss2Error::Unsupported("a sealed data object"));
        let importable = tlv(SEQUENCE, &tlv(OID, OID_IMPORTABLE_KEY));
        assert!(Tss2Object::from_der(&importable).is_err());

        let other = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2]));
        let err = Tss2Key::from_pem(other.as_bytes()).unwrap_err();
        assert!(err.contains("TSS2 PRIVATE KEY"), "{err}");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let der = sample().to_der();
        for cut in 0..der.len() {
            assert!(Tss2Key::from_der(&der[..cut]).is_err());
        }
        let der = sealed_sample().to_der();
        for cut in 0..der.len() {
            assert!(Tss2Object::from_der(&der[..cut]).is_err());
        }
    }

    #[test]
    fn sealed_object_with_policy_round_trips() {
        let object = sealed_sample();
        let pem = object.to_pem();
        assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
        assert_eq!(Tss2Object::from_pem(pem.as_bytes()).unwrap(), object);
        // The sealed-data OID 2.23.133.10.1.5 and commandCode [0] INTEGER 0x17f.
        let der = object.to_der();
        assert_eq!(
            &der[2..10],
            &[0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x05]
        );
        let code = [0xa0, 0x04, 0x02, 0x02, 0x01, 0x7f];
        assert!(der.windows(code.len()).any(|w| w == code));
    }
}
