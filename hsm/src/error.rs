//! Errors of the key store; each names the key reference it is about.

/// Everything that can go wrong when resolving a key or signing with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key reference string could not be parsed.
    #[error("invalid key reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as written in the configuration.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The reference names a backend that this binary was built without.
    #[error("key reference `{reference}` needs the `{feature}` backend, but this stadttor was built without the cargo feature `{feature}`")]
    BackendNotCompiled {
        /// The reference as written in the configuration.
        reference: String,
        /// The cargo feature that would enable it.
        feature: &'static str,
    },
    /// Reading a key file failed.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key material is not in a supported format or algorithm.
    #[error("key {reference}: {reason}")]
    UnsupportedKey {
        /// The key reference.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// The backend failed to produce a signature.
    #[error("signing with key {reference} failed: {reason}")]
    Signing {
        /// The key reference.
        reference: String,
        /// The backend's reason.
        reason: String,
    },
}
