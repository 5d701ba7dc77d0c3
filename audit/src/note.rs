//! C2SP `signed-note` and `tlog-checkpoint`: encode, sign, parse, verify.
//!
//! A checkpoint body is `<origin>\n<size>\n<base64 root>\n` (extension lines
//! may follow; stadttor writes none). A signed note is the body, a blank
//! line, and one line per signature: `— <key name> base64(key ID || sig)`.
//!
//! Keys and key IDs (the verifier key string is
//! `<name>+<hex key ID>+<base64(type byte || public key)>`, as in
//! `golang.org/x/mod/sumdb/note`):
//!
//! | key | type byte | public key bytes | key ID | signature |
//! |---|---|---|---|---|
//! | Ed25519 | `0x01` | 32 raw bytes (RFC 8032) | `SHA-256(name \|\| 0x0A \|\| 0x01 \|\| pubkey)[:4]` | 64 raw bytes |
//! | ECDSA P-256 (TPM keys) | `0x02` | DER `SubjectPublicKeyInfo` | `SHA-256(SPKI DER)[:4]` | DER `ECDSA-Sig-Value` over SHA-256 |
//!
//! The ECDSA row is the C2SP assignment for type `0x02` (the format of
//! `transparency-dev/witness`, also used by Rekor v2). Go's x/mod verifier
//! only understands Ed25519; ECDSA checkpoints are checked by this module.
//!
//! Signing goes through a [`stadttor_hsm::SigningKey`]; verification takes
//! only a [`VerifierKey`] and needs no key store.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
use stadttor_hsm::{Algorithm, SigningKey};

use crate::merkle::Hash;

const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Signature type byte for Ed25519.
const TYPE_ED25519: u8 = 0x01;
/// Signature type byte for ECDSA.
const TYPE_ECDSA: u8 = 0x02;
/// At most this many signature lines are looked at.
const MAX_SIGNATURES: usize = 100;

/// Errors from the note and checkpoint formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note or checkpoint text is malformed.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// The verifier key string is malformed.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(String),
    /// A signature by the trusted key failed to verify.
    #[error("invalid signature for key {0}")]
    InvalidSignature(String),
    /// No signature from the trusted key was found.
    #[error("note has no signature from the trusted key {0}")]
    NoTrustedSignature(String),
    /// The key's algorithm cannot sign checkpoints.
    #[error("checkpoints cannot be signed with {0} keys (use Ed25519 or ECDSA P-256)")]
    UnsupportedAlgorithm(String),
    /// The key name is not allowed.
    #[error("invalid key name {0:?}: must be non-empty without spaces or '+'")]
    BadKeyName(String),
    /// The key store failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A public key that verifies notes, parsed from a C2SP verifier key string.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    kind: KeyKind,
}

#[derive(Clone, PartialEq, Eq)]
enum KeyKind {
    Ed25519([u8; 32]),
    /// DER SPKI and the uncompressed point inside it.
    EcdsaP256 {
        spki: Vec<u8>,
        point: Vec<u8>,
    },
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

fn id_of(bytes: &[u8]) -> [u8; 4] {
    let d = digest(&SHA256, bytes);
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

impl VerifierKey {
    /// Builds the verifier for a public key given as DER SPKI, as
    /// [`SigningKey::public_key_spki`] returns it.
    pub fn from_spki(name: &str, algorithm: Algorithm, spki: &[u8]) -> Result<Self, NoteError> {
        check_name(name)?;
        let kind = match algorithm {
            Algorithm::Ed25519 => {
                let raw = spki
                    .strip_prefix(ED25519_SPKI_PREFIX)
                    .and_then(|r| <[u8; 32]>::try_from(r).ok())
                    .ok_or_else(|| NoteError::BadVerifierKey("not an Ed25519 SPKI".into()))?;
                KeyKind::Ed25519(raw)
            }
            Algorithm::EcdsaP256Sha256 => {
                let point = spki
                    .strip_prefix(P256_SPKI_PREFIX)
                    .filter(|p| p.len() == 65 && p[0] == 4)
                    .ok_or_else(|| NoteError::BadVerifierKey("not a P-256 SPKI".into()))?;
                KeyKind::EcdsaP256 {
                    spki: spki.to_vec(),
                    point: point.to_vec(),
                }
            }
            other => return Err(NoteError::UnsupportedAlgorithm(other.to_string())),
        };
        let id = match &kind {
            KeyKind::Ed25519(raw) => {
                let mut b = Vec::with_capacity(name.len() + 34);
                b.extend_from_slice(name.as_bytes());
                b.push(b'\n');
                b.push(TYPE_ED25519);
                b.extend_from_slice(raw);
                id_of(&b)
            }
            KeyKind::EcdsaP256 { spki, .. } => id_of(spki),
        };
        Ok(Self {
            name: name.to_owned(),
            id,
            kind,
        })
    }

    /// Parses `<name>+<hex key ID>+<base64(type || key)>` and checks that the
    /// key ID matches the key.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::BadVerifierKey(why.to_owned());
        let s = s.trim();
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <name>+<hex id>+<base64 key>"));
        };
        let id = u32::from_str_radix(id_hex, 16)
            .ok()
            .filter(|_| id_hex.len() == 8)
            .ok_or_else(|| bad("key ID must be 8 hex digits"))?;
        let key = B64
            .decode(key_b64)
            .map_err(|_| bad("key is not valid base64"))?;
        let (ty, rest) = key.split_first().ok_or_else(|| bad("empty key"))?;
        let vk = match *ty {
            TYPE_ED25519 => {
                let mut spki = ED25519_SPKI_PREFIX.to_vec();
                spki.extend_from_slice(rest);
                if rest.len() != 32 {
                    return Err(bad("Ed25519 key must be 32 bytes"));
                }
                Self::from_spki(name, Algorithm::Ed25519, &spki)?
            }
            TYPE_ECDSA => Self::from_spki(name, Algorithm::EcdsaP256Sha256, rest)?,
            t => return Err(bad(&format!("unsupported key type 0x{t:02x}"))),
        };
        if vk.id != id.to_be_bytes() {
            return Err(bad("key ID does not match the key"));
        }
        Ok(vk)
    }

    /// The key name (normally the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.kind {
            KeyKind::Ed25519(raw) => UnparsedPublicKey::new(&ED25519, raw).verify(msg, sig),
            KeyKind::EcdsaP256 { point, .. } => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(msg, sig)
            }
        }
        .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::new();
        match &self.kind {
            KeyKind::Ed25519(raw) => {
                key.push(TYPE_ED25519);
                key.extend_from_slice(raw);
            }
            KeyKind::EcdsaP256 { spki, .. } => {
                key.push(TYPE_ECDSA);
                key.extend_from_slice(spki);
            }
        }
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            u32::from_be_bytes(self.id),
            B64.encode(key)
        )
    }
}

/// A parsed checkpoint body (C2SP `tlog-checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line, unique per log.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// RFC 6962 root hash of the tree.
    pub root: Hash,
    /// Extension lines, if any (kept, not interpreted).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n` plus extension lines.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the note text, without signatures).
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::Malformed(format!("checkpoint: {why}"));
        let Some(text) = text.strip_suffix('\n') else {
            return Err(bad("must end in a newline"));
        };
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_s = lines.next().ok_or_else(|| bad("missing size"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(bad("size must be a decimal number without leading zeros"));
        }
        let size = size_s
            .parse::<u64>()
            .map_err(|_| bad("size out of range"))?;
        let root_s = lines.next().ok_or_else(|| bad("missing root hash"))?;
        let root = B64
            .decode(root_s)
            .ok()
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or_else(|| bad("root must be 32 bytes in base64"))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(bad("empty extension line"));
            }
            extensions.push(l.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// Signs `text` (which must end in a newline) as a signed note with key
/// name `name`, through the key store. Returns the complete note.
pub fn sign_note(text: &str, name: &str, key: &dyn SigningKey) -> Result<String, NoteError> {
    check_text(text)?;
    let vk = VerifierKey::from_spki(name, key.algorithm(), key.public_key_spki())?;
    let sig = key
        .sign(text.as_bytes())
        .map_err(|e| NoteError::Signing(e.to_string()))?;
    let mut blob = Vec::with_capacity(4 + sig.len());
    blob.extend_from_slice(&vk.id);
    blob.extend_from_slice(&sig);
    Ok(format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob)))
}

/// Signs a checkpoint with key name `name`.
pub fn sign_checkpoint(
    cp: &Checkpoint,
    name: &str,
    key: &dyn SigningKey,
) -> Result<String, NoteError> {
    sign_note(&cp.body(), name, key)
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline".into()));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed(
            "control characters other than newline".into(),
        ));
    }
    Ok(())
}

/// Verifies a signed note against one trusted key and returns its text.
///
/// Signatures by other keys are ignored; a bad signature by the trusted key
/// rejects the note, and at least one signature by it must verify.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, NoteError> {
    check_text(note)?;
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::Malformed("no blank line before signatures".into()))?;
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    let mut verified = false;
    for (n, line) in sigs.split_terminator('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures".into()));
        }
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| NoteError::Malformed("signature line must start with '— '".into()))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| NoteError::Malformed("signature line without signature".into()))?;
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64".into()))?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed("signature too short".into()));
        }
        if name != key.name || blob[..4] != key.id {
            continue;
        }
        if !key.verify(text.as_bytes(), &blob[4..]) {
            return Err(NoteError::InvalidSignature(key.to_string()));
        }
        verified = true;
    }
    if !verified {
        return Err(NoteError::NoTrustedSignature(key.to_string()));
    }
    Ok(text)
}

/// Verifies a signed checkpoint and parses it.
pub fn verify_checkpoint(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse_body(open_note(note, key)?)
}

/// Parses a checkpoint's body without checking any signature (for tools
/// that report on untrusted input before verifying it).
pub fn parse_unverified(note: &str) -> Result<Checkpoint, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::Malformed("no blank line before signatures".into()))?;
    Checkpoint::parse_body(&note[..split + 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use stadttor_hsm::file::FileKey;

    pub(crate) fn ed25519_key() -> FileKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        FileKey::from_pkcs8("test".into(), pkcs8.as_ref()).unwrap()
    }

    fn p256_key() -> FileKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        FileKey::from_pkcs8("test".into(), pkcs8.as_ref()).unwrap()
    }

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "example.org/log".into(),
            size: 42,
            root: [7; 32],
            extensions: vec![],
        }
    }

    #[test]
    fn sign_and_verify_both_algorithms() {
        for key in [ed25519_key(), p256_key()] {
            let vk =
                VerifierKey::from_spki("example.org/log", key.algorithm(), key.public_key_spki())
                    .unwrap();
            let parsed = VerifierKey::parse(&vk.to_string()).unwrap();
            assert_eq!(parsed, vk);
            let note = sign_checkpoint(&cp(), "example.org/log", &key).unwrap();
            assert_eq!(verify_checkpoint(&note, &vk).unwrap(), cp());
            let tampered = note.replace("\n42\n", "\n43\n");
            assert!(matches!(
                verify_checkpoint(&tampered, &vk),
                Err(NoteError::InvalidSignature(_))
            ));
        }
    }

    #[test]
    fn foreign_key_is_rejected() {
        let (a, b) = (ed25519_key(), ed25519_key());
        let vb =
            VerifierKey::from_spki("example.org/log", b.algorithm(), b.public_key_spki()).unwrap();
        let note = sign_checkpoint(&cp(), "example.org/log", &a).unwrap();
        assert!(matches!(
            verify_checkpoint(&note, &vb),
            Err(NoteError::NoTrustedSignature(_))
        ));
    }

    #[test]
    fn bad_bodies_are_rejected() {
        for body in [
            "",
            "o\n",
            "o\n01\nAAAA\n",
            "o\n1\nAAAA\n",
            "\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ] {
            assert!(Checkpoint::parse_body(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn verifier_key_with_wrong_id_is_rejected() {
        let key = ed25519_key();
        let vk = VerifierKey::from_spki("n", key.algorithm(), key.public_key_spki()).unwrap();
        let s = vk.to_string();
        let mut parts: Vec<&str> = s.split('+').collect();
        parts[1] = "00000000";
        assert!(VerifierKey::parse(&parts.join("+")).is_err());
    }
}
