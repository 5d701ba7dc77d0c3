//! `stadttor-pki`: certificates and everything that turns a key into a
//! signature somebody else can check.
//!
//! - [`certs`]: load PEM certificate chains and prove that a chain's leaf
//!   belongs to a key from `stadttor-hsm`.
//! - [`served`]: what a served TLS certificate must be (BSI key profile,
//!   validity, names).
//! - [`tls_key`]: the adapter that lets rustls sign handshakes with any
//!   `stadttor-hsm` key, keeping slow hardware off the async reactor.
//! - [`remote`]: rcgen signing through a key-store key (CSRs, certificates).
//! - [`rsa_pss`]: CSRs and self-signed certificates for RSA keys, signed
//!   RSASSA-PSS (which rcgen cannot do with an external key).
//! - [`leaf`]: short-lived TLS leaf certificates issued by a hardware key.
//! - [`devca`]: a throw-away development CA for `stadttor demo` and tests.
//! - [`jose`]: compact JWS (JWTs) signed with a key-store key, and the
//!   public keys as JWK/JWKS.
//! - [`hex`]: lowercase hex for fingerprints and digests, the one
//!   implementation for this crate and the gateway.
//! - [`sign`]: electronic seals on documents and responses: CMS/CAdES,
//!   PAdES, JWS, RFC 9421 HTTP message signatures, RFC 3161 timestamps.
//!
//! This crate does not speak HTTP as a server; the only socket it opens is
//! the RFC 3161 client's connection to a configured timestamp authority.

#![forbid(unsafe_code)]

pub mod certs;
pub mod devca;
mod error;
pub mod hex;
pub mod jose;
pub mod leaf;
pub mod remote;
pub mod rsa_pss;
pub mod served;
pub mod sign;
pub mod tls_key;

pub use error::Error;
