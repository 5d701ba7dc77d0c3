//! TLS from the gateway to its state stores: the one place that turns a
//! store's [`StoreTls`] (CA file, whether to check the name) into a rustls
//! client configuration, and the PostgreSQL connectors built on it.
//!
//! * [`client_config`]: roots from the CA file only (no system store), the
//!   BSI cipher suites of [`crate::http::tls::bsi_provider`], ALPN `postgresql`
//!   (what PostgreSQL 17 expects with direct TLS). With
//!   `verify_name = false` (`sslmode=require`/`verify-ca`) the chain is
//!   still checked in full (issuer, validity, key usage); only a name
//!   mismatch is forgiven. The PostgreSQL session store gets it as is
//!   (`stadttor_sessions::StoreConfig::Postgres`).
//! * [`sync_connector`] (feature `postgres`): how `stadttor-policies` and
//!   `stadttor-audit`, which know nothing of TLS, open their blocking
//!   `postgres` connections: they are handed a function that connects,
//!   over the session store's connector
//!   (`stadttor_sessions::pg_tls::MakeRustlsConnect`, tokio-postgres's TLS
//!   hook with `tls-server-end-point` channel binding).
//! * Redis: the `redis` crate builds its own rustls configuration from PEM
//!   roots, with the process's default provider; [`redis_tls`] hands the
//!   session store the same CA file, checked here, and makes the BSI
//!   profile that default ([`crate::http::tls::install_process_default`]),
//!   so Redis gets the same suites and groups as PostgreSQL.
//!
//! Where the mode comes from and which configurations are refused:
//! `crate::config::stores`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

pub use crate::config::StoreTls;

/// Why TLS to a store cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreTlsError {
    /// The CA file cannot be read or holds no usable certificate.
    #[error("store CA file: {0}")]
    Ca(String),
    /// rustls refused the configuration.
    #[error("store TLS configuration: {0}")]
    Config(String),
}

/// The rustls client configuration for one store.
pub fn client_config(tls: &StoreTls) -> Result<Arc<ClientConfig>, StoreTlsError> {
    let roots = Arc::new(crate::http::tls::ca_roots(&tls.ca_file).map_err(StoreTlsError::Ca)?);
    let provider = Arc::new(crate::http::tls::bsi_provider(true));
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| StoreTlsError::Config(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.verify_name {
        webpki
    } else {
        Arc::new(ChainOnly(webpki))
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreTlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Arc::new(cfg))
}

/// The CA file as PEM roots for the Redis session store (the `redis`
/// crate), after checking that it holds usable certificates (the same
/// check as [`client_config`]).
pub fn redis_tls(tls: &StoreTls) -> Result<stadttor_sessions::RedisTls, StoreTlsError> {
    crate::http::tls::install_process_default();
    crate::http::tls::ca_roots(&tls.ca_file).map_err(StoreTlsError::Ca)?;
    let root_pem = std::fs::read(&tls.ca_file)
        .map_err(|e| StoreTlsError::Ca(format!("cannot read {}: {e}", tls.ca_file.display())))?;
    Ok(stadttor_sessions::RedisTls { root_pem })
}

/// The full WebPKI check except the server name (`sslmode=require` or
/// `verify-ca` with a CA file, as libpq does).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error
        // means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// How the blocking stores (`stadttor-policies`, `stadttor-audit`) open
/// their connections: in plain with `sslmode=disable`, or over rustls with
/// `sslmode=require` (the server must agree to TLS; there is no fallback).
#[cfg(feature = "postgres")]
pub fn sync_connector(
    tls: Option<&StoreTls>,
) -> Result<stadttor_policies::PgConnector, StoreTlsError> {
    use postgres::config::SslMode;
    use stadttor_sessions::pg_tls::MakeRustlsConnect;

    let Some(tls) = tls else {
        return Ok(Arc::new(|c: &postgres::Config| {
            let mut c = c.clone();
            c.ssl_mode(SslMode::Disable);
            c.connect(postgres::NoTls)
        }));
    };
    let make = MakeRustlsConnect::new(client_config(tls)?);
    Ok(Arc::new(move |c: &postgres::Config| {
        let mut c = c.clone();
        c.ssl_mode(SslMode::Require);
        c.connect(make.clone())
    }))
}
