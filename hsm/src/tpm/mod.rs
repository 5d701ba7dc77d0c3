//! The `tpm:` backend: keys that live in a TPM 2.0 (cargo feature `tpm`).
//!
//! # Key references
//!
//! After `tpm:` come `;`-separated `name=value` parameters:
//!
//! ```text
//! tpm:handle=0x81010001            a persistent key (0x81000000–0x81FFFFFF)
//! tpm:pem=/etc/stadttor/k.tss2.pem a TSS2 PEM key ("TSS2 PRIVATE KEY", as
//!                                  written by tpm2_encodeobject or
//!                                  tpm2-openssl), loaded under the persistent
//!                                  parent named inside the file
//! ```
//!
//! [`KeyStore::resolve`](crate::KeyStore::resolve) takes exactly one of
//! `handle=` and `pem=`. [`KeyStore::generate`](crate::KeyStore::generate)
//! takes `handle=` and/or `pem=` (persist the new key there, write it there, or
//! both) and optionally `parent=0x81000001`, the persistent storage key
//! (SRK) to create it under; a missing SRK is created with the standard ECC
//! P-256 / AES-128-CFB template and persisted. Handles are hex (`0x…`) or
//! decimal. Keys must have an empty authorization value.
//!
//! The TPM is reached through [`KeyStoreConfig::tpm_tcti`](crate::KeyStoreConfig):
//! `device:/dev/tpmrm0` (production: the kernel resource manager),
//! `swtpm:host=127.0.0.1,port=2321` (tests), or `tabrmd:`.
//!
//! # Signing and decrypting
//!
//! The message is hashed on the host (SHA-256 for P-256 and RSA, SHA-384 for
//! P-384) and the TPM signs the digest; ECDSA signatures are DER
//! `ECDSA-Sig-Value`, RSA signatures RSASSA-PSS. RSA keys also decrypt
//! RSA-OAEP (TPM2_RSA_Decrypt; see `tpm/rsa.rs`). All
//! requests go through one owner thread per TPM, fed by a bounded queue with
//! a per-request deadline (see `tpm/device.rs`).
//!
//! # Sealed secrets
//!
//! [`Sealer`] (from [`KeyStore::tpm_sealer`](crate::KeyStore::tpm_sealer))
//! seals small secrets such as a session-cookie key or a TLS ticket key to
//! this TPM, optionally bound to PCR values, as TSS2 PEM files
//! ([`SealedSecret`]); see `tpm/seal.rs`.
//!
//! # Sessions
//!
//! Where a secret crosses the bus (TPM2_Create of a sealed object,
//! TPM2_Unseal), the command runs under a salted HMAC session (salt key = the
//! SRK) with AES-128-CFB parameter encryption. Signing, loading, certifying
//! and key creation stay on the password session: a digest, a signature, a
//! public area and a TPM-wrapped private blob are not secret, and the keys
//! have an empty authorization value, so there is nothing to hide.
//! Encryption would cost, per signature on swtpm (measured for
//! `/work/shared/notes/tpm-hsm.md`): 0.45–0.80 ms with a password session,
//! 3.0–3.9 ms with an HMAC session with parameter encryption and 2.9–4.6 ms
//! with a salted one, i.e. 4–7 times the TPM time for no confidentiality gain.

mod device;
mod rsa;
mod seal;
mod tss2pem;

use std::path::PathBuf;
use std::sync::Arc;

use ring::digest;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, EccPoint, EccScheme, HashScheme, HashcheckTicket, Private, Public, PublicBuffer,
    PublicBuilder, PublicEccParametersBuilder, Signature, SignatureScheme,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use zeroize::Zeroizing;

pub(crate) use self::device::Device;
use self::device::{ObjectId, Worker};
pub use self::seal::{SealedSecret, Sealer, MAX_SEALED_SECRET};
use self::tss2pem::{PemOut, Tss2Key};
pub(crate) use crate::error::BoxError;
use crate::{Algorithm, DecryptingKey, Error, KeyStats, KeyType, Oaep, Protection, SigningKey};

/// The conventional persistent handle of the storage root key.
pub const DEFAULT_SRK: u32 = 0x8100_0001;

/// A parsed `tpm:` reference (see the module doc for the grammar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TpmKeySpec {
    reference: String,
    handle: Option<u32>,
    pem: Option<PathBuf>,
    parent: Option<u32>,
}

impl TpmKeySpec {
    /// Parses the text after `tpm:` for [`crate::KeyStore::resolve`].
    pub(crate) fn parse(rest: &str) -> Result<Self, Error> {
        let spec = Self::parse_any(rest)?;
        match (&spec.handle, &spec.pem, &spec.parent) {
            (Some(_), Some(_), _) | (None, None, _) => {
                Err(spec.invalid("give exactly one of `handle=0x81…` or `pem=/path`"))
            }
            (_, _, Some(_)) => Err(spec
                .invalid("`parent=` is only for generating; a TSS2 PEM file names its own parent")),
            _ => Ok(spec),
        }
    }

    /// Parses the text after `tpm:` for [`crate::KeyStore::generate`].
    pub(crate) fn parse_for_generate(rest: &str) -> Result<Self, Error> {
        let spec = Self::parse_any(rest)?;
        if spec.handle.is_none() && spec.pem.is_none() {
            return Err(
                spec.invalid("say where the new key goes: `handle=0x81…` and/or `pem=/path`")
            );
        }
        Ok(spec)
    }

    fn parse_any(rest: &str) -> Result<Self, Error> {
        let mut spec = Self {
            reference: format!("tpm:{rest}"),
            handle: None,
            pem: None,
            parent: None,
        };
        for param in rest.split(';') {
            let (name, value) = param
                .split_once('=')
                .ok_or_else(|| spec.invalid(&format!("`{param}` is not `name=value`")))?;
            let duplicate = match name {
                "handle" => spec.handle.replace(spec.parse_handle(value)?).is_some(),
                "parent" => spec.parent.replace(spec.parse_handle(value)?).is_some(),
                "pem" if !value.is_empty() => spec.pem.replace(PathBuf::from(value)).is_some(),
                "pem" => return Err(spec.invalid("`pem=` needs a path")),
                other => {
                    return Err(spec.invalid(&format!(
                        "unknown parameter `{other}`; known are handle, pem, parent"
                    )))
                }
            };
            if duplicate {
                return Err(spec.invalid(&format!("`{name}` given twice")));
            }
        }
        Ok(spec)
    }

    fn parse_handle(&self, text: &str) -> Result<u32, Error> {
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => text.parse(),
        };
        match parsed {
            Ok(h) if h >> 24 == 0x81 => Ok(h),
            Ok(h) => Err(self.invalid(&format!(
                "handle {h:#x} is not a persistent handle (0x81000000–0x81FFFFFF)"
            ))),
            Err(_) => Err(self.invalid(&format!("`{text}` is not a TPM handle"))),
        }
    }

    fn invalid(&self, reason: &str) -> Error {
        Error::InvalidReference {
            reference: self.reference.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// A key held in a TPM; signing goes through the device's owner thread.
pub struct TpmKey {
    reference: String,
    device: Arc<Device>,
    id: ObjectId,
    algorithm: Algorithm,
    restricted: bool,
    spki: Vec<u8>,
    /// Set for RSA keys.
    rsa: Option<rsa::RsaInfo>,
    stats: KeyStats,
}

impl std::fmt::Debug for TpmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmKey")
            .field("reference", &self.reference)
            .field("tcti", &self.device.tcti())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A TPM2_Certify result: the TPM's statement that a key is resident in it,
/// signed by an attestation key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Certification {
    /// The marshalled `TPMS_ATTEST` (the signed bytes; magic `ff 54 43 47`).
    pub attest: Vec<u8>,
    /// DER ECDSA signature over `attest` by the attestation key, hashed with
    /// the attestation key's hash: `openssl dgst -sha256 -verify ak.pem
    /// -signature sig attest` checks it.
    pub signature: Vec<u8>,
    /// The attestation key's `SubjectPublicKeyInfo` (DER).
    pub signer_spki: Vec<u8>,
}

impl TpmKey {
    /// Opens the key a resolve-spec names, and keeps it loaded.
    pub(crate) fn open(device: Arc<Device>, spec: &TpmKeySpec) -> Result<Self, Error> {
        let reference = spec.reference.clone();
        let r = reference.clone();
        let (id, public) = match (spec.handle, &spec.pem) {
            (Some(handle), _) => device.call(&reference, move |w| {
                w.hold_persistent(handle).map_err(|e| Error::NotFound {
                    reference: r,
                    reason: format!("no usable persistent object at {handle:#x}: {e}"),
                })
            })?,
            (None, Some(path)) => {
                let text = std::fs::read(path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                let key = Tss2Key::from_pem(&text).map_err(|reason| Error::UnsupportedKey {
                    reference: reference.clone(),
                    reason,
                })?;
                load_blob(&device, &reference, key)?
            }
            (None, None) => return Err(spec.invalid("nothing to open")),
        };
        Self::from_public(reference, device, id, &public)
    }

    /// Creates a key as the generate-spec says, and keeps it loaded.
    pub(crate) fn generate(
        device: Arc<Device>,
        spec: &TpmKeySpec,
        key_type: KeyType,
    ) -> Result<Self, Error> {
        let reference = spec.reference.clone();
        let template = match key_type {
            KeyType::EcdsaP256 => ecc_template(EccCurve::NistP256, HashingAlgorithm::Sha256),
            KeyType::EcdsaP384 => ecc_template(EccCurve::NistP384, HashingAlgorithm::Sha384),
            other => match rsa::key_bits(other) {
                Some(bits) => rsa::template(bits),
                None => {
                    return Err(Error::UnsupportedKey {
                        reference,
                        reason: format!(
                            "TPM generation supports ECDSA P-256 and P-384, RSA-3072 and \
                             RSA-4096, not {other}"
                        ),
                    })
                }
            },
        }
        .map_err(|e| Error::device(&reference, "build key template", e))?;
        let rsa_bits = rsa::key_bits(key_type);
        // Claim the PEM path first, so a failure cannot leave an orphan key.
        let pem_file = match &spec.pem {
            Some(path) => Some(PemOut::create(path, &reference)?),
            None => None,
        };
        let parent = spec.parent.unwrap_or(DEFAULT_SRK);
        let persist = spec.handle;
        let r = reference.clone();
        let timeout = match rsa_bits {
            Some(_) => rsa::GENERATE_TIMEOUT,
            None => device.timeout(),
        };
        let created = device.call_within(&reference, timeout, move |w| {
            if let Some(bits) = rsa_bits {
                rsa::check_supported(w, &r, bits)?;
            }
            generate_on(w, &r, parent, persist, template)
        });
        let (id, public, blob) = match created {
            Ok(c) => c,
            Err(e) => {
                if let Some(out) = pem_file {
                    out.abandon();
                }
                return Err(e);
            }
        };
        let key = Self::from_public(reference, device, id, &public)?;
        if let Some(out) = pem_file {
            out.write(&Tss2Key {
                empty_auth: true,
                parent,
                public: blob.public,
                private: blob.private,
            })?;
        }
        Ok(key)
    }

    /// TPM2_Certify: has `attestation_key` (a restricted signing key in the
    /// same TPM) sign a statement that this key is resident in the TPM,
    /// including its name and `qualifying_data` (a verifier's nonce).
    pub fn certify(
        &self,
        attestation_key: &TpmKey,
        qualifying_data: &[u8],
    ) -> Result<Certification, Error> {
        if !Arc::ptr_eq(&self.device, &attestation_key.device) {
            return Err(Error::UnsupportedKey {
                reference: attestation_key.reference.clone(),
                reason: "the attestation key must be in the same TPM (same key store)".into(),
            });
        }
        let reference = self.reference.clone();
        let hash = match attestation_key.algorithm {
            Algorithm::EcdsaP384Sha384 => HashingAlgorithm::Sha384,
            _ => HashingAlgorithm::Sha256,
        };
        let data = Data::try_from(qualifying_data.to_vec())
            .map_err(|e| Error::device(&reference, "certify (qualifying data)", e))?;
        let (object, signer) = (self.id, attestation_key.id);
        let r = reference.clone();
        let (attest, signature) = self.device.call(&reference, move |w| {
            let (Some(object), Some(signer)) = (w.key(object), w.key(signer)) else {
                return Err(Error::device(&r, "certify", "key is no longer loaded"));
            };
            let (attest, signature) = w
                .ctx()
                .execute_with_sessions(
                    (
                        Some(AuthSession::Password),
                        Some(AuthSession::Password),
                        None,
                    ),
                    |c| {
                        c.certify(
                            object.into(),
                            signer,
                            data,
                            SignatureScheme::EcDsa {
                                hash_scheme: HashScheme::new(hash),
                            },
                        )
                    },
                )
                .map_err(|e| Error::device(&r, "certify", e))?;
            let attest = attest
                .marshall()
                .map_err(|e| Error::device(&r, "certify (marshal)", e))?;
            Ok((attest, signature))
        })?;
        Ok(Certification {
            attest,
            signature: ecdsa_der(&reference, signature)?,
            signer_spki: attestation_key.spki.clone(),
        })
    }

    fn from_public(
        reference: String,
        device: Arc<Device>,
        id: ObjectId,
        public: &Public,
    ) -> Result<Self, Error> {
        let release = |device: &Device| device.post(move |w: &mut Worker| w.release(id));
        let described = describe(public).map_err(|reason| Error::UnsupportedKey {
            reference: reference.clone(),
            reason,
        });
        match described {
            Ok((algorithm, restricted, spki, rsa)) => Ok(Self {
                reference,
                device,
                id,
                algorithm,
                restricted,
                spki,
                rsa,
                stats: KeyStats::default(),
            }),
            Err(e) => {
                release(&device);
                Err(e)
            }
        }
    }

    fn sign_untracked(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        if self.restricted {
            return Err(Error::Signing {
                reference: self.reference.clone(),
                reason: "this is a restricted (attestation) key; it can only certify or quote"
                    .into(),
            });
        }
        let (alg, hash) = match self.algorithm {
            Algorithm::EcdsaP384Sha384 => (&digest::SHA384, HashingAlgorithm::Sha384),
            _ => (&digest::SHA256, HashingAlgorithm::Sha256),
        };
        let hash_scheme = HashScheme::new(hash);
        let scheme = match self.rsa {
            Some(_) => SignatureScheme::RsaPss { hash_scheme },
            None => SignatureScheme::EcDsa { hash_scheme },
        };
        let digest = Digest::try_from(digest::digest(alg, message).as_ref())
            .map_err(|e| Error::device(&self.reference, "sign", e))?;
        let id = self.id;
        let r = self.reference.clone();
        let signature = self.device.call(&self.reference, move |w| {
            let key = w
                .key(id)
                .ok_or_else(|| Error::device(&r, "sign", "key is no longer loaded"))?;
            let ticket = null_ticket().map_err(|e| Error::device(&r, "sign", e))?;
            w.ctx()
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.sign(key, digest, scheme, ticket)
                })
                .map_err(|e| Error::device(&r, "sign", e))
        })?;
        match self.rsa {
            Some(info) => rsa::signature_bytes(&self.reference, signature, info.modulus_len),
            None => ecdsa_der(&self.reference, signature),
        }
    }
}

impl Drop for TpmKey {
    fn drop(&mut self) {
        let id = self.id;
        self.device.post(move |w| w.release(id));
    }
}

impl SigningKey for TpmKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }

    fn protection(&self) -> Protection {
        Protection::Tpm
    }

    fn reference(&self) -> &str {
        &self.reference
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.stats.track(
            || self.sign_untracked(message),
            |e| matches!(e, Error::Busy { .. }),
        )
    }

    fn stats(&self) -> Option<&KeyStats> {
        Some(&self.stats)
    }
}

impl DecryptingKey for TpmKey {
    fn modulus_bits(&self) -> usize {
        self.rsa.map_or(0, |info| info.modulus_len * 8)
    }

    fn decrypt_oaep(&self, oaep: Oaep, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        rsa::decrypt(self, oaep, ciphertext)
    }
}

/// The wire blobs of a created key, for the TSS2 PEM file.
struct Blob {
    public: Vec<u8>,
    private: Vec<u8>,
}

/// Loads a TSS2 key's blobs under its persistent parent.
fn load_blob(device: &Device, reference: &str, key: Tss2Key) -> Result<(ObjectId, Public), Error> {
    let unsupported = |reason: String| Error::UnsupportedKey {
        reference: reference.to_owned(),
        reason,
    };
    if key.parent >> 24 != 0x81 {
        return Err(unsupported(format!(
            "parent {:#x} is not a persistent handle; re-encode the key under a persistent \
             SRK (tpm2_evictcontrol, then tpm2_encodeobject -C 0x81000001)",
            key.parent
        )));
    }
    let (public, private) = parse_blobs(&key.public, &key.private).map_err(unsupported)?;
    let parent = key.parent;
    let r = reference.to_owned();
    device.call(reference, move |w| {
        w.hold_loaded(parent, private, public).map_err(|e| {
            Error::device(
                r,
                "load key under its parent (is the parent the SRK it was created under?)",
                e,
            )
        })
    })
}

/// Decodes the `TPM2B_PUBLIC` and `TPM2B_PRIVATE` blobs of a TSS2 file.
fn parse_blobs(public: &[u8], private: &[u8]) -> Result<(Public, Private), String> {
    let public = PublicBuffer::unmarshall(public)
        .and_then(Public::try_from)
        .map_err(|e| format!("bad TPM2B_PUBLIC in TSS2 file: {e}"))?;
    let private = match private {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
            Private::try_from(rest.to_vec())
                .map_err(|e| format!("bad TPM2B_PRIVATE in TSS2 file: {e}"))?
        }
        _ => return Err("bad TPM2B_PRIVATE size in TSS2 file".into()),
    };
    Ok((public, private))
}

/// Runs on the owner thread: ensure the SRK, create, then persist or hold.
fn generate_on(
    w: &mut Worker,
    reference: &str,
    parent: u32,
    persist: Option<u32>,
    template: Public,
) -> Result<(ObjectId, Public, Blob), Error> {
    let fail = |op: &'static str| move |e: tss_esapi::Error| Error::device(reference, op, e);
    if let Some(handle) = persist {
        if w.persistent(handle).is_ok() {
            return Err(Error::AlreadyExists {
                reference: reference.to_owned(),
            });
        }
    }
    let parent_handle = ensure_srk(w, parent).map_err(fail("create the SRK"))?;
    let created = w
        .ctx()
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create(parent_handle.into(), template, None, None, None, None)
        })
        .map_err(fail("create key"))?;
    let blob = Blob {
        public: PublicBuffer::try_from(created.out_public.clone())
            .and_then(|b| b.marshall())
            .map_err(fail("marshal public area"))?,
        private: {
            let value = created.out_private.value();
            let len = u16::try_from(value.len())
                .map_err(|_| Error::device(reference, "create key", "private blob too large"))?;
            [&len.to_be_bytes()[..], value].concat()
        },
    };
    let (id, public) = match persist {
        None => w
            .hold_loaded(parent, created.out_private, created.out_public)
            .map_err(fail("load new key"))?,
        Some(handle) => {
            let (loaded, _) = w
                .hold_loaded(parent, created.out_private, created.out_public)
                .map_err(fail("load new key"))?;
            let key = w
                .key(loaded)
                .ok_or_else(|| Error::device(reference, "persist key", "key vanished"))?;
            let persisted = persistent_handle(handle).and_then(|p| {
                w.ctx()
                    .execute_with_session(Some(AuthSession::Password), |c| {
                        c.evict_control(Provision::Owner, key.into(), p)
                    })
            });
            w.release(loaded);
            persisted.map_err(fail("persist key (TPM2_EvictControl)"))?;
            w.forget_persistent(handle);
            w.hold_persistent(handle)
                .map_err(fail("open persisted key"))?
        }
    };
    Ok((id, public, blob))
}

/// The template of an unrestricted ECDSA signing key.
fn ecc_template(curve: EccCurve, hash: HashingAlgorithm) -> Result<Public, tss_esapi::Error> {
    tss_esapi::utils::create_unrestricted_signing_ecc_public(
        EccScheme::EcDsa(HashScheme::new(hash)),
        curve,
    )
}

/// Returns the SRK at `handle`, creating and persisting it if missing.
fn ensure_srk(
    w: &mut Worker,
    handle: u32,
) -> Result<tss_esapi::handles::ObjectHandle, tss_esapi::Error> {
    if let Ok(existing) = w.persistent(handle) {
        return Ok(existing);
    }
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_decrypt(true)
        .with_restricted(true)
        .with_no_da(true)
        .build()?;
    let template = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()?;
    let persistent = persistent_handle(handle)?;
    let ctx = w.ctx();
    let primary = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })?;
    let persisted = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.evict_control(Provision::Owner, primary.key_handle.into(), persistent)
    });
    let _ = ctx.flush_context(primary.key_handle.into());
    persisted?;
    w.persistent(handle)
}

fn persistent_handle(handle: u32) -> Result<Persistent, tss_esapi::Error> {
    Ok(Persistent::Persistent(
        tss_esapi::handles::PersistentTpmHandle::new(handle)?,
    ))
}

/// The null hash-check ticket: "the digest was not produced by the TPM".
fn null_ticket() -> Result<HashcheckTicket, tss_esapi::Error> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
}

/// What a key's public area says: algorithm, restricted flag, SPKI and,
/// for RSA, modulus and decrypt attribute.
type Described = (Algorithm, bool, Vec<u8>, Option<rsa::RsaInfo>);

/// Describes an ECC signing key's or an RSA key's public area.
fn describe(public: &Public) -> Result<Described, String> {
    if let Some(described) = rsa::describe(public) {
        let rsa = described?;
        return Ok((
            Algorithm::RsaPssSha256,
            rsa.restricted,
            rsa.spki,
            Some(rsa.info),
        ));
    }
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err("only ECC and RSA keys are supported by the TPM backend".into());
    };
    if !object_attributes.sign_encrypt() {
        return Err("the TPM object is not a signing key (sign attribute not set)".into());
    }
    let (algorithm, width) = match parameters.ecc_curve() {
        EccCurve::NistP256 => (Algorithm::EcdsaP256Sha256, 32),
        EccCurve::NistP384 => (Algorithm::EcdsaP384Sha384, 48),
        other => {
            return Err(format!(
                "curve {other:?} is not supported; use P-256 or P-384"
            ))
        }
    };
    let mut point = vec![0x04];
    for coordinate in [unique.x().value(), unique.y().value()] {
        if coordinate.len() > width {
            return Err("public point does not fit the curve".into());
        }
        point.resize(point.len() + width - coordinate.len(), 0);
        point.extend_from_slice(coordinate);
    }
    Ok((
        algorithm,
        object_attributes.restricted(),
        crate::spki::ec(algorithm, &point),
        None,
    ))
}

/// DER `ECDSA-Sig-Value` from a TPM signature.
fn ecdsa_der(reference: &str, signature: Signature) -> Result<Vec<u8>, Error> {
    match signature {
        Signature::EcDsa(s) => Ok(crate::der::ecdsa_sig(
            s.signature_r().value(),
            s.signature_s().value(),
        )),
        _ => Err(Error::Signing {
            reference: reference.to_owned(),
            reason: "the TPM returned a non-ECDSA signature".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let s = TpmKeySpec::parse("handle=0x81010001").unwrap();
        assert_eq!(s.handle, Some(0x8101_0001));
        let s = TpmKeySpec::parse("pem=/k.tss2.pem").unwrap();
        assert_eq!(s.pem, Some(PathBuf::from("/k.tss2.pem")));
        assert_eq!(
            TpmKeySpec::parse("handle=2164326401").unwrap().handle,
            Some(0x8101_0001)
        );
        for bad in [
            "handle=0x81010001;pem=/x",
            "handle=0x01000001",
            "handle=zz",
            "pem=",
            "parent=0x81000001;pem=/x",
            "blob=/x",
            "handle",
            "handle=0x81010001;handle=0x81010002",
        ] {
            let err = TpmKeySpec::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("tpm:{bad}")), "{err}");
        }
        let g =
            TpmKeySpec::parse_for_generate("handle=0x81010002;pem=/x;parent=0x81000002").unwrap();
        assert_eq!((g.handle, g.parent), (Some(0x8101_0002), Some(0x8100_0002)));
        assert!(TpmKeySpec::parse_for_generate("parent=0x81000001").is_err());
    }
}
