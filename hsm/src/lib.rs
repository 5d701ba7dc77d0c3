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
//! - `tpm:…`: a TPM 2.0 key (cargo feature `tpm`).
//! - `pkcs11:…`: an RFC 7512 PKCS#11 URI (cargo feature `pkcs11`).
//!
//! What this crate does not do: no HTTP, no TLS, no async runtime. Signing is
//! synchronous and may block on a device; callers on an async runtime move
//! the call off the reactor (see `stadttor-pki`).

#![forbid(unsafe_code)]

mod error;
pub mod file;
pub mod spki;
mod key;
mod keyref;
mod store;

pub use error::Error;
pub use key::{Algorithm, Protection, SigningKey};
pub use keyref::KeyRef;
pub use store::{KeyStore, KeyStoreConfig};
