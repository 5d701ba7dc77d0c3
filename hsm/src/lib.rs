//! `stadttor-hsm`: the only place in stadttor that talks to key material.
//!
//! Everything that signs (TLS handshakes, identity assertions, documents,
//! audit checkpoints) asks this crate for a [`SigningKey`] by a [`KeyRef`]
//! taken from the configuration, and never sees the private key itself.
//!
//! Backends:
//! - `file:PATH`: a PKCS#8 key file, always compiled in. It is the embedded
//!   default for development and is labelled [`Protection::Software`]
//!   everywhere it shows up: it is **not** hardware-protected.
//! - `tpm:handle=0x81010001` or `tpm:pem=/path/key.tss2.pem`: a TPM 2.0 key
//!   (cargo feature `tpm`; grammar in the `tpm` module).
//! - `pkcs11:token=LABEL;object=LABEL` (or `;id=%01`): an RFC 7512 PKCS#11
//!   URI (cargo feature `pkcs11`; grammar in the `pkcs11` module).
//!
//! RSA keys (3072 or 4096 bits, [`KeyType`]) sign RSA-PSS SHA-256 and, as
//! [`DecryptingKey`]s from [`KeyStore::resolve_decrypting`], decrypt
//! RSA-OAEP in every backend (the key transport of XML Encryption).
//!
//! Naming a backend that was not compiled in is an explicit error that names
//! the cargo feature. [`KeyStore::generate`] creates non-exportable keys where
//! the reference points, and every built-in key exposes [`KeyStats`]
//! (signatures, failures, queue depth, latency) through [`SigningKey::stats`].
//!
//! [`secret_file`] is the one permissions check for secret files (PIN
//! files here; session keys, pseudonym keys, client secrets in the gateway).
//!
//! With the `tpm` feature, `KeyStore::tpm_sealer` also seals small gateway
//! secrets (session-cookie or TLS ticket keys, ≤ 128 bytes) to the TPM,
//! optionally bound to PCR values, as TSS2 PEM files (`tpm::Sealer`).
//!
//! What this crate does not do: no HTTP, no TLS, no async runtime. Signing is
//! synchronous and may block on a device; callers on an async runtime move
//! the call off the reactor (see `stadttor-pki`).

#![forbid(unsafe_code)]

#[cfg(any(feature = "tpm", feature = "pkcs11"))]
mod der;
mod error;
pub mod file;
mod key;
mod keyref;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod secret_file;
pub mod spki;
mod stats;
mod store;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use error::{BoxError, Error};
pub use key::{Algorithm, DecryptingKey, KeyType, Oaep, Protection, SigningKey};
pub use keyref::KeyRef;
pub use stats::{KeyStats, KeyStatsSnapshot};
pub use store::{KeyStore, KeyStoreConfig};
