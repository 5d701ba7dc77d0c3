//! Errors of the PKI crate.

/// Errors when loading certificates or pairing them with keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate.
    #[error("{path}: {reason}")]
    BadCertificate {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate's public key is not the key's public key.
    #[error("certificate {cert} does not match key {key}: the certificate's public key differs from the key's")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key reference.
        key: String,
    },
    /// The key's algorithm cannot be used for TLS.
    #[error("key {key}: algorithm {algorithm} cannot sign TLS handshakes")]
    UnsupportedAlgorithm {
        /// The key reference.
        key: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// Generating a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A key store error.
    #[error(transparent)]
    Key(#[from] stadttor_hsm::Error),
}
