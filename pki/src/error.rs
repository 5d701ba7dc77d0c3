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
    /// A certificate or request cannot be made with these parameters
    /// (common name, subject alternative names, validity).
    #[error("cannot make the certificate or request: {reason}")]
    BadParameters {
        /// What is wrong and what to give instead.
        reason: String,
    },
    /// Generating a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The seal certificate chain is unusable for sealing.
    #[error("seal certificate {subject}: {reason}")]
    SealCertificate {
        /// The leaf's subject (or the file, before it parsed).
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// Input that must follow a format does not (DER, PDF, JOSE, HTTP
    /// structured fields, a TSA response).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which format.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A signature, digest or timestamp did not verify.
    #[error("signature does not verify: {reason}")]
    BadSignature {
        /// What did not match.
        reason: String,
    },
    /// The timestamp authority could not be reached or refused the request.
    #[error("timestamp authority {url}: {reason}")]
    Tsa {
        /// The TSA's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The PDF cannot be sealed (encrypted, or a structure we do not read).
    #[error("cannot seal this PDF: {reason}")]
    Pdf {
        /// Why.
        reason: String,
    },
    /// A key store error.
    #[error(transparent)]
    Key(#[from] stadttor_hsm::Error),
}
