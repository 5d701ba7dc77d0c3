//! Sealing small gateway secrets (session-cookie keys, TLS ticket keys) to the
//! TPM, optionally bound to the platform state (PCRs).
//!
//! # What sealing gives
//!
//! [`Sealer::seal`] asks the TPM to wrap a secret of at most 128 bytes as a
//! keyed-hash *sealed data object* under the persistent SRK. The result is
//! stored as a file; it can only be unsealed by the same TPM, under the same
//! SRK. With an empty PCR list the secret is unsealable by anyone who can talk
//! to this TPM and read the file (it protects against a copied disk or
//! backup, not against root on the running machine). With PCRs the object's
//! `authPolicy` is TPM2_PolicyPCR over the current values of those PCRs of the
//! sha256 bank: once one of them changes (other firmware, boot loader,
//! kernel, or an explicit `tpm2_pcrextend`), the TPM refuses to unseal and
//! [`Sealer::unseal`] returns [`Error::PlatformStateChanged`]. A file from
//! another TPM, or from before the TPM was cleared, gives
//! [`Error::ForeignTpm`].
//!
//! # File format
//!
//! TSS2 PEM (`-----BEGIN TSS2 PRIVATE KEY-----`, the format of
//! tpm2_encodeobject, tpm2-openssl and openssl_tpm2_engine) with the type
//! `id-sealedkey` (2.23.133.10.1.5), `emptyAuth` TRUE, the persistent parent
//! handle and the `TPM2B_PUBLIC` / `TPM2B_PRIVATE` blobs. A PCR-bound secret
//! carries one `TPMPolicy` with `commandCode` TPM_CC_PolicyPCR (0x17f) and
//! `commandPolicy` = the command's parameters as the TPM marshals them:
//! `TPM2B_DIGEST pcrDigest || TPML_PCR_SELECTION pcrs` (the order of the
//! TPM2_PolicyPCR command and of GRUB's tpm2key protector; note that
//! openssl_tpm2_engine writes the selection first). `pcrDigest` is SHA-256
//! over the bound PCR values in index order, exactly what TPM2_PolicyPCR
//! compares. Other policy commands are refused. The file is written with mode
//! 0600 and never overwritten.
//!
//! Interoperability with tpm2-tools 5.4: an unbound object sealed with
//! `tpm2_create -i` and written by `tpm2_encodeobject` (which labels it
//! `id-loadablekey`) is accepted, its public area being sealed data; the
//! other way round does not work, because tpm2-tools 5.4's `tpm2_unseal`
//! cannot read TSS2 PEM files.
//!
//! # Sessions: the secret never crosses the bus in clear
//!
//! TPM2_Create (the secret is in the command) runs under a **salted HMAC
//! session** whose salt is encrypted to the SRK, with AES-128-CFB parameter
//! encryption of the first command parameter (`decrypt`); TPM2_Unseal (the
//! secret is in the response) runs under the same kind of session with
//! response encryption (`encrypt`). A PCR-bound unseal uses two sessions:
//! the policy session authorises, the salted HMAC session (second slot)
//! only encrypts. Someone recording the bus (or, in tests, the swtpm command
//! log) sees neither the secret nor the session key: deriving the key needs
//! the salt, which only the SRK's private key decrypts. An *active*
//! interposer that answers TPM2_ReadPublic with its own key is not stopped
//! (that needs the SRK's name pinned out of band; not done here). Loading
//! the wrapped blob and TPM2_PolicyPCR use no secrets and run without
//! encryption.
//!
//! Every session is started for one operation and flushed afterwards, on
//! the device's owner thread (`tpm/device.rs`), so sealing never holds TPM
//! session slots between calls.
//!
//! # Cost
//!
//! Measured against swtpm on the shared 2-core test machine (load 4–6, test
//! profile, mean of 10; `tests/sealing.rs` prints them): seal 7–20 ms and
//! unseal 11–27 ms unbound (5 TPM commands: create or load, salted
//! StartAuthSession, unseal, flushes); seal 9–30 ms and unseal 12–40 ms
//! PCR-bound (PCR_Read, a trial or policy session and TPM2_PolicyPCR on
//! top). A signature costs about 1–2 ms on the same machine. Sealing and
//! unsealing happen at startup or key rotation, not per request.

use std::path::Path;
use std::sync::Arc;

use ring::digest;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{SessionType, Tss2ResponseCodeKind};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, KeyedHashScheme, PcrSelectSize, PcrSelectionList, PcrSlot, Public, PublicBuffer,
    PublicBuilder, PublicKeyedHashParameters, SensitiveData, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, WrapperErrorKind};
use zeroize::Zeroizing;

use super::device::{Device, Worker};
use super::tss2pem::PemOut;
use super::tss2pem::{PolicyCommand, Tss2Kind, Tss2Object};
use super::{ensure_srk, parse_blobs, DEFAULT_SRK};
use crate::Error;

/// The largest secret a TPM seals (`MAX_SYM_DATA`).
pub const MAX_SEALED_SECRET: usize = 128;
/// PCR indices of the sha256 bank that can be bound (0–23).
const PCR_COUNT: u8 = 24;
/// `TPM_CC_PolicyPCR`.
const TPM_CC_POLICY_PCR: u32 = 0x0000_017f;
/// `TPM_ALG_SHA256`.
const TPM_ALG_SHA256: u16 = 0x000b;
/// Reference used in errors before a sealed secret has a file.
const NEW_SECRET: &str = "(new sealed secret)";

/// Seals and unseals small secrets with one TPM (see the module doc).
///
/// Get one from [`KeyStore::tpm_sealer`](crate::KeyStore::tpm_sealer); it
/// shares the store's TPM owner thread with the store's keys.
#[derive(Clone)]
pub struct Sealer {
    device: Arc<Device>,
    parent: u32,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("tcti", &self.device.tcti())
            .field("parent", &format_args!("{:#x}", self.parent))
            .finish()
    }
}

impl Sealer {
    /// A sealer on `device` under the default SRK [`DEFAULT_SRK`].
    pub(crate) fn new(device: Arc<Device>) -> Self {
        Self {
            device,
            parent: DEFAULT_SRK,
        }
    }

    /// Seals under the SRK at `handle` (0x81000000–0x81FFFFFF) instead of
    /// [`DEFAULT_SRK`]. Unsealing always uses the parent named in the file.
    pub fn with_parent(mut self, handle: u32) -> Result<Self, Error> {
        if handle >> 24 != 0x81 {
            return Err(Error::SealedSecret {
                reference: NEW_SECRET.into(),
                reason: format!(
                    "parent {handle:#x} is not a persistent handle (0x81000000–0x81FFFFFF)"
                ),
            });
        }
        self.parent = handle;
        Ok(self)
    }

    /// Seals `secret` (1–128 bytes) under the SRK (created and persisted if
    /// missing). With a non-empty `pcrs` (indices 0–23 of the sha256 bank) the
    /// secret is bound to the current values of those PCRs.
    pub fn seal(&self, secret: &[u8], pcrs: &[u8]) -> Result<SealedSecret, Error> {
        self.seal_as(NEW_SECRET, secret, pcrs)
    }

    /// [`Sealer::seal`], then writes the result to `path` (mode 0600). Never
    /// overwrites: an existing file is [`Error::AlreadyExists`].
    pub fn seal_to_file(
        &self,
        path: &Path,
        secret: &[u8],
        pcrs: &[u8],
    ) -> Result<SealedSecret, Error> {
        let reference = path.display().to_string();
        // Claim the path first: a failure cannot leave a half-written file.
        let out = PemOut::create(path, &reference)?;
        match self.seal_as(&reference, secret, pcrs) {
            Ok(sealed) => {
                out.write_text(&sealed.to_pem())?;
                Ok(sealed)
            }
            Err(e) => {
                out.abandon();
                Err(e)
            }
        }
    }

    /// Unseals a secret sealed by this TPM.
    ///
    /// Fails with [`Error::PlatformStateChanged`] when a bound PCR changed,
    /// and with [`Error::ForeignTpm`] when the secret was sealed elsewhere.
    pub fn unseal(&self, sealed: &SealedSecret) -> Result<Zeroizing<Vec<u8>>, Error> {
        let reference = sealed.origin.clone();
        let (public, private) =
            parse_blobs(&sealed.public, &sealed.private).map_err(|reason| Error::SealedSecret {
                reference: reference.clone(),
                reason,
            })?;
        let binding = match &sealed.pcr_digest {
            Some(digest) => Some(PcrBinding::new(&reference, &sealed.pcrs, digest.clone())?),
            None => None,
        };
        let parent = sealed.parent;
        let r = reference.clone();
        self.device.call(&reference, move |w| {
            unseal_on(w, &r, parent, private, public, binding)
        })
    }

    /// Reads a sealed-secret file and unseals it (see [`Sealer::unseal`]).
    pub fn unseal_file(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.unseal(&SealedSecret::read(path)?)
    }

    fn seal_as(&self, reference: &str, secret: &[u8], pcrs: &[u8]) -> Result<SealedSecret, Error> {
        let invalid = |reason: String| Error::SealedSecret {
            reference: reference.to_owned(),
            reason,
        };
        if secret.is_empty() || secret.len() > MAX_SEALED_SECRET {
            return Err(invalid(format!(
                "a sealed secret must be 1–{MAX_SEALED_SECRET} bytes, not {}",
                secret.len()
            )));
        }
        let pcrs = normalise_pcrs(pcrs).map_err(invalid)?;
        let data = SensitiveData::try_from(secret)
            .map_err(|e| Error::device(reference, "seal (secret)", e))?;
        let selection = if pcrs.is_empty() {
            None
        } else {
            Some(selection(&pcrs).map_err(|e| Error::device(reference, "seal (PCR list)", e))?)
        };
        let parent = self.parent;
        let r = reference.to_owned();
        let Created {
            public,
            private,
            pcr_digest,
        } = self
            .device
            .call(reference, move |w| seal_on(w, &r, parent, data, selection))?;
        Ok(SealedSecret {
            origin: reference.to_owned(),
            parent,
            pcrs,
            pcr_digest,
            public,
            private,
        })
    }
}

/// A sealed secret: the TPM-wrapped blobs, their parent and PCR binding.
///
/// Holds no secret in clear; the blobs are only useful to the TPM that made
/// them.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Where it came from, for errors (file path or a placeholder).
    origin: String,
    parent: u32,
    /// Bound PCR indices of the sha256 bank, ascending; empty if unbound.
    pcrs: Vec<u8>,
    /// SHA-256 over the bound PCR values at sealing time; `Some` iff bound.
    pcr_digest: Option<Vec<u8>>,
    /// `TPM2B_PUBLIC`, size prefix included.
    public: Vec<u8>,
    /// `TPM2B_PRIVATE`, size prefix included.
    private: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("origin", &self.origin)
            .field("parent", &format_args!("{:#x}", self.parent))
            .field("pcrs", &self.pcrs)
            .finish_non_exhaustive()
    }
}

impl SealedSecret {
    /// Decodes a TSS2 PEM sealed-data file's text.
    pub fn from_pem(text: &[u8]) -> Result<Self, Error> {
        Self::decode("(sealed secret from memory)", text)
    }

    /// Reads and decodes a sealed-secret file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::decode(&path.display().to_string(), &text)
    }

    /// Encodes as TSS2 PEM text (see the module doc for the layout).
    pub fn to_pem(&self) -> String {
        let policy = self.pcr_digest.as_ref().map(|digest| {
            vec![PolicyCommand {
                code: TPM_CC_POLICY_PCR,
                parameters: pcr_policy_parameters(digest, &self.pcrs),
            }]
        });
        Tss2Object {
            kind: Tss2Kind::Sealed,
            empty_auth: true,
            policy,
            parent: self.parent,
            public: self.public.clone(),
            private: self.private.clone(),
        }
        .to_pem()
    }

    /// The PCR indices (sha256 bank) the secret is bound to; empty if unbound.
    pub fn pcrs(&self) -> &[u8] {
        &self.pcrs
    }

    /// The persistent handle of the SRK the secret is sealed under.
    pub fn parent(&self) -> u32 {
        self.parent
    }

    fn decode(origin: &str, text: &[u8]) -> Result<Self, Error> {
        let invalid = |reason: String| Error::SealedSecret {
            reference: origin.to_owned(),
            reason,
        };
        let object = Tss2Object::from_pem(text).map_err(invalid)?;
        // tpm2_encodeobject (tpm2-tools 5.4) labels every object loadable;
        // accept those whose public area is sealed data.
        if object.kind != Tss2Kind::Sealed && !is_sealed_data(&object.public) {
            return Err(invalid(
                "this TSS2 file holds a key, not a sealed secret (id-sealedkey)".into(),
            ));
        }
        if object.parent >> 24 != 0x81 {
            return Err(invalid(format!(
                "parent {:#x} is not a persistent handle",
                object.parent
            )));
        }
        let (pcrs, pcr_digest) = match object.policy.as_deref() {
            None => (Vec::new(), None),
            Some([command]) if command.code == TPM_CC_POLICY_PCR => {
                let (digest, pcrs) = parse_pcr_policy(&command.parameters).map_err(invalid)?;
                (pcrs, Some(digest))
            }
            Some(_) => {
                return Err(invalid(
                    "only a single TPM2_PolicyPCR policy is supported in sealed secrets".into(),
                ))
            }
        };
        Ok(Self {
            origin: origin.to_owned(),
            parent: object.parent,
            pcrs,
            pcr_digest,
            public: object.public,
            private: object.private,
        })
    }
}

/// True if `public` (`TPM2B_PUBLIC`) is a keyed-hash sealed data object:
/// neither a signing nor a decryption key.
fn is_sealed_data(public: &[u8]) -> bool {
    let parsed = PublicBuffer::unmarshall(public).and_then(Public::try_from);
    matches!(
        parsed,
        Ok(Public::KeyedHash { object_attributes, .. })
            if !object_attributes.sign_encrypt() && !object_attributes.decrypt()
    )
}

/// A PCR binding ready for TPM2_PolicyPCR.
struct PcrBinding {
    pcrs: Vec<u8>,
    selection: PcrSelectionList,
    digest: Digest,
}

impl PcrBinding {
    fn new(reference: &str, pcrs: &[u8], digest: Vec<u8>) -> Result<Self, Error> {
        let fail = |e| Error::device(reference, "unseal (PCR policy)", e);
        Ok(Self {
            pcrs: pcrs.to_vec(),
            selection: selection(pcrs).map_err(fail)?,
            digest: Digest::try_from(digest).map_err(fail)?,
        })
    }
}

/// Checks PCR indices, then sorts and de-duplicates them.
fn normalise_pcrs(pcrs: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(bad) = pcrs.iter().find(|i| **i >= PCR_COUNT) {
        return Err(format!(
            "PCR {bad} does not exist; PCRs of the sha256 bank are 0–{}",
            PCR_COUNT - 1
        ));
    }
    let mut sorted = pcrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted)
}

/// The sha256-bank selection of `pcrs` (indices already checked).
fn selection(pcrs: &[u8]) -> Result<PcrSelectionList, tss_esapi::Error> {
    let slots = pcrs
        .iter()
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionList::builder()
        .with_size_of_select(PcrSelectSize::ThreeOctets)
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
}

/// `TPM2B_DIGEST pcrDigest || TPML_PCR_SELECTION` (one sha256 selection).
fn pcr_policy_parameters(digest: &[u8], pcrs: &[u8]) -> Vec<u8> {
    let mut bitmap = [0u8; 3];
    for i in pcrs {
        if let Some(byte) = bitmap.get_mut(usize::from(i / 8)) {
            *byte |= 1 << (i % 8);
        }
    }
    // A digest is 32 bytes; the cast cannot truncate.
    let len = u16::try_from(digest.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + digest.len() + 10);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(digest);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    out.push(3);
    out.extend_from_slice(&bitmap);
    out
}

/// Parses [`pcr_policy_parameters`]: returns the digest and the PCR indices.
fn parse_pcr_policy(parameters: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let bad = |what: &str| format!("malformed TPM2_PolicyPCR policy in the file: {what}");
    let (len, rest) = parameters
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("truncated"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len != 32 || rest.len() < len {
        return Err(bad("pcrDigest is not a SHA-256 digest"));
    }
    let (digest, rest) = rest.split_at(len);
    let (count, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("truncated"))?;
    if u32::from_be_bytes(*count) != 1 {
        return Err(bad("exactly one PCR bank must be selected"));
    }
    let (alg, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("truncated"))?;
    if u16::from_be_bytes(*alg) != TPM_ALG_SHA256 {
        return Err(bad("only the sha256 PCR bank is supported"));
    }
    let (size, bitmap) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    if usize::from(*size) != bitmap.len() || !(3..=4).contains(size) {
        return Err(bad("bad sizeofSelect"));
    }
    if bitmap.get(3).is_some_and(|b| *b != 0) {
        return Err(bad("PCRs above 23 are selected"));
    }
    let pcrs: Vec<u8> = (0..PCR_COUNT)
        .filter(|i| {
            bitmap
                .get(usize::from(i / 8))
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
        })
        .collect();
    if pcrs.is_empty() {
        return Err(bad("no PCR selected"));
    }
    Ok((digest.to_vec(), pcrs))
}

/// What TPM2_Create returned, ready for the file.
struct Created {
    /// `TPM2B_PUBLIC`, size prefix included.
    public: Vec<u8>,
    /// `TPM2B_PRIVATE`, size prefix included.
    private: Vec<u8>,
    /// The PCR composite digest the policy was computed over, if bound.
    pcr_digest: Option<Vec<u8>>,
}

/// Runs on the owner thread: optional PCR policy, then TPM2_Create of the
/// sealed object under a salted, parameter-encrypting session.
fn seal_on(
    w: &mut Worker,
    reference: &str,
    parent: u32,
    secret: SensitiveData,
    selection: Option<PcrSelectionList>,
) -> Result<Created, Error> {
    let fail = |op: &'static str| move |e: tss_esapi::Error| Error::device(reference, op, e);
    let srk = KeyHandle::from(ensure_srk(w, parent).map_err(fail("create the SRK"))?);
    let mut flush = Vec::new();
    let result = seal_steps(w.ctx(), reference, srk, secret, selection, &mut flush);
    for handle in flush {
        let _ = w.ctx().flush_context(handle);
    }
    result
}

fn seal_steps(
    ctx: &mut Context,
    reference: &str,
    srk: KeyHandle,
    secret: SensitiveData,
    selection: Option<PcrSelectionList>,
    flush: &mut Vec<ObjectHandle>,
) -> Result<Created, Error> {
    let fail = |op: &'static str| move |e: tss_esapi::Error| Error::device(reference, op, e);
    let (auth_policy, pcr_digest) = match selection {
        None => (Digest::default(), None),
        Some(selection) => {
            let pcr_digest = pcr_composite(ctx, &selection).map_err(fail("read PCRs"))?;
            let trial = policy_session(ctx, SessionType::Trial, flush)
                .map_err(fail("start trial policy session"))?;
            let digest = Digest::try_from(pcr_digest.clone()).map_err(fail("PCR digest"))?;
            ctx.execute_without_session(|c| {
                c.policy_pcr(trial, digest, selection)?;
                c.policy_get_digest(trial)
            })
            .map(|policy| (policy, Some(pcr_digest)))
            .map_err(fail("compute the PCR policy"))?
        }
    };
    let bound = pcr_digest.is_some();
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        // Unbound: empty password. Bound: only the policy authorises.
        .with_user_with_auth(!bound)
        .build()
        .map_err(fail("build sealed object template"))?;
    let template = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(auth_policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(fail("build sealed object template"))?;
    let salted = salted_session(ctx, srk, Direction::Command, flush)
        .map_err(fail("start salted HMAC session"))?;
    let created = ctx
        .execute_with_session(Some(salted), |c| {
            c.create(srk, template, None, Some(secret), None, None)
        })
        .map_err(fail("seal (TPM2_Create)"))?;
    let public = PublicBuffer::try_from(created.out_public.clone())
        .and_then(|b| b.marshall())
        .map_err(fail("marshal public area"))?;
    let value = created.out_private.value();
    let len = u16::try_from(value.len())
        .map_err(|_| Error::device(reference, "seal", "private blob too large"))?;
    let private = [&len.to_be_bytes()[..], value].concat();
    Ok(Created {
        public,
        private,
        pcr_digest,
    })
}

/// Runs on the owner thread: load under the parent, satisfy the PCR policy,
/// and TPM2_Unseal with response encryption.
fn unseal_on(
    w: &mut Worker,
    reference: &str,
    parent: u32,
    private: tss_esapi::structures::Private,
    public: Public,
    binding: Option<PcrBinding>,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let srk = match w.persistent(parent) {
        Ok(object) => KeyHandle::from(object),
        Err(e) => {
            return Err(Error::ForeignTpm {
                reference: reference.to_owned(),
                source: format!("this TPM has no persistent SRK at {parent:#x}: {e}").into(),
            })
        }
    };
    let mut flush = Vec::new();
    let result = unseal_steps(
        w.ctx(),
        reference,
        srk,
        private,
        public,
        binding,
        &mut flush,
    );
    for handle in flush {
        let _ = w.ctx().flush_context(handle);
    }
    result
}

fn unseal_steps(
    ctx: &mut Context,
    reference: &str,
    srk: KeyHandle,
    private: tss_esapi::structures::Private,
    public: Public,
    binding: Option<PcrBinding>,
    flush: &mut Vec<ObjectHandle>,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let fail = |op: &'static str| move |e: tss_esapi::Error| Error::device(reference, op, e);
    let changed = |pcrs: &[u8]| Error::PlatformStateChanged {
        reference: reference.to_owned(),
        pcrs: pcrs.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
    };
    let object = ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(srk, private, public)
        })
        .map_err(|e| match kind(&e) {
            Some(Tss2ResponseCodeKind::Integrity) => Error::ForeignTpm {
                reference: reference.to_owned(),
                source: e.into(),
            },
            _ => Error::device(reference, "load the sealed object (TPM2_Load)", e),
        })?;
    flush.push(object.into());
    let salted = salted_session(ctx, srk, Direction::Response, flush)
        .map_err(fail("start salted HMAC session"))?;
    let sessions = match &binding {
        None => (Some(salted), None, None),
        Some(binding) => {
            let policy = policy_session(ctx, SessionType::Policy, flush)
                .map_err(fail("start policy session"))?;
            let digest = binding.digest.clone();
            let selection = binding.selection.clone();
            ctx.execute_without_session(|c| c.policy_pcr(policy, digest, selection))
                .map_err(|e| match kind(&e) {
                    // The TPM compared pcrDigest with the current PCRs.
                    Some(Tss2ResponseCodeKind::Value) => changed(&binding.pcrs),
                    _ => Error::device(reference, "PCR policy (TPM2_PolicyPCR)", e),
                })?;
            // The policy session authorises; the salted one only encrypts.
            (Some(AuthSession::from(policy)), Some(salted), None)
        }
    };
    let data = ctx
        .execute_with_sessions(sessions, |c| c.unseal(object.into()))
        .map_err(|e| match (&binding, kind(&e)) {
            (
                Some(binding),
                Some(Tss2ResponseCodeKind::PolicyFail | Tss2ResponseCodeKind::PcrChanged),
            ) => changed(&binding.pcrs),
            _ => Error::device(reference, "unseal (TPM2_Unseal)", e),
        })?;
    Ok(Zeroizing::new(data.value().to_vec()))
}

/// Which way the secret travels, so which parameter gets encrypted.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Secret in the command (TPM2_Create): `decrypt`.
    Command,
    /// Secret in the response (TPM2_Unseal): `encrypt`.
    Response,
}

/// A salted HMAC session (salt encrypted to `srk`) with AES-128-CFB
/// parameter encryption in one direction; queued for flushing.
fn salted_session(
    ctx: &mut Context,
    srk: KeyHandle,
    direction: Direction,
    flush: &mut Vec<ObjectHandle>,
) -> Result<AuthSession, tss_esapi::Error> {
    // StartAuthSession fails (0x98b) while a password session is set.
    ctx.clear_sessions();
    let session = ctx
        .start_auth_session(
            Some(srk),
            None,
            None,
            SessionType::Hmac,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )?
        .ok_or(tss_esapi::Error::WrapperError(
            WrapperErrorKind::WrongValueFromTpm,
        ))?;
    flush.push(SessionHandle::from(session).into());
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .with_decrypt(matches!(direction, Direction::Command))
        .with_encrypt(matches!(direction, Direction::Response))
        .build();
    ctx.tr_sess_set_attributes(session, attributes, mask)?;
    Ok(session)
}

/// An unsalted policy (or trial) session; queued for flushing.
fn policy_session(
    ctx: &mut Context,
    kind: SessionType,
    flush: &mut Vec<ObjectHandle>,
) -> Result<PolicySession, tss_esapi::Error> {
    ctx.clear_sessions();
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::Null,
            HashingAlgorithm::Sha256,
        )?
        .ok_or(tss_esapi::Error::WrapperError(
            WrapperErrorKind::WrongValueFromTpm,
        ))?;
    flush.push(SessionHandle::from(session).into());
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .build();
    ctx.tr_sess_set_attributes(session, attributes, mask)?;
    PolicySession::try_from(session)
}

/// SHA-256 over the current values of the selected PCRs, in index order
/// (the `pcrDigest` TPM2_PolicyPCR compares).
fn pcr_composite(
    ctx: &mut Context,
    selection: &PcrSelectionList,
) -> Result<Vec<u8>, tss_esapi::Error> {
    let mut values = std::collections::BTreeMap::new();
    let mut remaining = selection.clone();
    while !remaining.is_empty() {
        let (_, read, digests) = ctx.execute_without_session(|c| c.pcr_read(remaining.clone()))?;
        let slots: Vec<PcrSlot> = read
            .get_selections()
            .iter()
            .flat_map(|s| s.selected())
            .collect();
        if slots.is_empty() || slots.len() != digests.len() {
            // The TPM has no sha256 bank (or answered nonsense): stop, do not spin.
            return Err(tss_esapi::Error::WrapperError(
                WrapperErrorKind::WrongValueFromTpm,
            ));
        }
        for (slot, value) in slots.into_iter().zip(digests.value()) {
            values.insert(u32::from(slot), value.value().to_vec());
        }
        remaining.subtract(&read)?;
    }
    let mut hash = digest::Context::new(&digest::SHA256);
    for value in values.values() {
        hash.update(value);
    }
    Ok(hash.finish().as_ref().to_vec())
}

/// The TPM response code kind of a tss-esapi error, if it is one.
fn kind(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        tss_esapi::Error::WrapperError(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_lists_are_checked_sorted_and_deduplicated() {
        assert_eq!(normalise_pcrs(&[16, 7, 16, 0]).unwrap(), vec![0, 7, 16]);
        assert!(normalise_pcrs(&[24]).unwrap_err().contains("PCR 24"));
        assert!(normalise_pcrs(&[]).unwrap().is_empty());
    }

    #[test]
    fn pcr_policy_parameters_round_trip_in_wire_format() {
        let digest = [0xab; 32];
        let params = pcr_policy_parameters(&digest, &[0, 7, 16, 23]);
        // TPM2B_DIGEST, then TPML_PCR_SELECTION { 1, { sha256, 3, 81 00 81 } }.
        assert_eq!(&params[..2], &[0x00, 0x20]);
        assert_eq!(
            &params[34..],
            &[0, 0, 0, 1, 0x00, 0x0b, 3, 0x81, 0x00, 0x81]
        );
        let (d, pcrs) = parse_pcr_policy(&params).unwrap();
        assert_eq!(
            (d.as_slice(), pcrs.as_slice()),
            (&digest[..], &[0, 7, 16, 23][..])
        );
        for cut in 0..params.len() {
            assert!(parse_pcr_policy(&params[..cut]).is_err());
        }
        let mut sha1 = params.clone();
        sha1[39] = 0x04;
        assert!(parse_pcr_policy(&sha1).unwrap_err().contains("sha256"));
        let mut none = params;
        none[41..44].copy_from_slice(&[0, 0, 0]);
        assert!(parse_pcr_policy(&none).is_err());
    }

    #[test]
    fn sealed_file_round_trips_and_refuses_keys_and_foreign_policies() {
        let sealed = SealedSecret {
            origin: "x".into(),
            parent: DEFAULT_SRK,
            pcrs: vec![16],
            pcr_digest: Some(vec![7; 32]),
            public: vec![0, 2, 1, 2],
            private: vec![0, 1, 9],
        };
        let back = SealedSecret::from_pem(sealed.to_pem().as_bytes()).unwrap();
        assert_eq!((back.pcrs(), back.parent()), (&[16][..], DEFAULT_SRK));
        assert_eq!(back.pcr_digest, sealed.pcr_digest);
        assert_eq!((back.public, back.private), (sealed.public, sealed.private));

        let key = super::super::tss2pem::Tss2Key {
            empty_auth: true,
            parent: DEFAULT_SRK,
            public: vec![0, 0],
            private: vec![0, 0],
        };
        let err = SealedSecret::from_pem(key.to_pem().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("not a sealed secret"), "{err}");

        let other_policy = Tss2Object {
            kind: Tss2Kind::Sealed,
            empty_auth: true,
            policy: Some(vec![PolicyCommand {
                code: 0x16b,
                parameters: vec![],
            }]),
            parent: DEFAULT_SRK,
            public: vec![0, 0],
            private: vec![0, 0],
        };
        let err = SealedSecret::from_pem(other_policy.to_pem().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("TPM2_PolicyPCR"), "{err}");
    }
}
