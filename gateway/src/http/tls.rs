//! TLS termination: a BSI TR-02102-2 profile on rustls, keys from `stadttor-hsm`.
//!
//! The profile: TLS 1.3 and 1.2 only; AES-GCM suites only (no ChaCha20, no
//! CBC); key exchange over P-256 and P-384, X25519 only when the operator
//! opts in, and the hybrid post-quantum groups (ML-KEM-768 with P-256, or
//! with X25519 where X25519 is allowed) only when the operator switches
//! them on; the server's suite order wins; resumption through stateless,
//! rotating session tickets (and a session cache for TLS 1.2 ids); ALPN `h2`
//! and `http/1.1`. Certificates are picked by SNI. Private keys are only ever
//! [`stadttor_hsm::SigningKey`]s wrapped by [`stadttor_pki::tls_key`], so this
//! module does not change when keys move into a TPM or an HSM.
//!
//! The crypto provider is rustls's **ring** provider; aws-lc-rs supplies
//! only the two hybrid groups, which ring does not have. `bench/crypto.sh`
//! measured both providers in one run (docs/BENCHMARKS.md, "Crypto provider
//! and post-quantum key exchange"): aws-lc-rs seals AES-GCM 1.2–1.4× faster,
//! but with it a TLS 1.3 handshake costs the server 1.14× the CPU (full)
//! and 1.22× (resumed), and handshakes are what a gateway for small
//! requests spends its TLS time on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{aws_lc_rs, ring, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, UnixTime};
use stadttor_hsm::{Protection, SigningKey};
use stadttor_pki::tls_key::HsmTlsKey;

use crate::config::{self, CertMode, ClientAuthMode, Issue};

pub(crate) mod dn;
use crate::keys::Keys;

/// The crypto provider restricted to the BSI TR-02102-2 profile, with
/// classic key exchange only (the TLS clients: upstreams, state stores,
/// `audit verify URL`).
pub fn bsi_provider(allow_x25519: bool) -> CryptoProvider {
    listener_provider(allow_x25519, false)
}

/// The crypto provider of a listener: the BSI TR-02102-2 profile, X25519
/// if `allow_x25519`, and with `post_quantum` the hybrid groups in front of
/// the classic ones: SECP256R1MLKEM768, then X25519MLKEM768 if X25519 is
/// allowed too. (rustls picks the first group in the *client's* list that
/// is offered here, so the order matters only for the record.)
pub fn listener_provider(allow_x25519: bool, post_quantum: bool) -> CryptoProvider {
    let base = ring::default_provider();
    let cipher_suites = vec![
        ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let mut kx_groups = Vec::new();
    if post_quantum {
        // ML-KEM exists only in aws-lc-rs; these two groups (TLS 1.3 only)
        // are all this provider takes from it.
        kx_groups.push(aws_lc_rs::kx_group::SECP256R1MLKEM768);
        if allow_x25519 {
            kx_groups.push(aws_lc_rs::kx_group::X25519MLKEM768);
        }
    }
    kx_groups.extend([ring::kx_group::SECP256R1, ring::kx_group::SECP384R1]);
    if allow_x25519 {
        kx_groups.push(ring::kx_group::X25519);
    }
    CryptoProvider {
        cipher_suites,
        kx_groups,
        ..base
    }
}

/// Makes the BSI profile the process's default rustls provider, for the
/// one library that builds its own rustls configuration from it (the
/// `redis` crate, for `rediss://`). With both of rustls's providers
/// compiled in there is no default otherwise, and such a library would
/// panic. Idempotent; the first installed provider stays.
pub fn install_process_default() {
    if CryptoProvider::get_default().is_none() {
        // Err: another thread installed one first; that one stays.
        let _ = CryptoProvider::install_default(bsi_provider(true));
    }
}

/// A listener's TLS configuration and the short-lived leaves it serves.
#[derive(Debug)]
pub(crate) struct ListenerTls {
    /// The rustls configuration.
    pub(crate) config: Arc<ServerConfig>,
    /// Rotating leaf slots (short-lived-leaf mode), for the rotation task.
    pub(crate) leaves: Vec<Arc<LeafSlot>>,
    /// The certificates served, for expiry warnings and the gauge.
    pub(crate) served: Vec<crate::certs::Served>,
}

/// Builds the rustls server configuration of one listener.
///
/// Every problem is reported as an [`Issue`] naming the config key.
pub(crate) fn server_config(
    listener: &config::Listener,
    index: usize,
    keys: &Arc<Keys>,
) -> Result<ListenerTls, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut resolver = SniResolver::default();
    let mut leaves = Vec::new();
    let mut served = Vec::new();
    let now = crate::certs::now_unix();
    for cert in &listener.tls.certificates {
        let slot = match cert.mode {
            CertMode::Direct => certified_key(cert, keys, &listener.name, now)
                .map(|(ck, s)| (Slot::Fixed(Arc::new(ck)), s)),
            CertMode::ShortLivedLeaf => {
                LeafSlot::new(cert, keys, &listener.name, now).map(|(l, s)| {
                    let l = Arc::new(l);
                    leaves.push(l.clone());
                    (Slot::Leaf(l), s)
                })
            }
        };
        match slot {
            Ok((slot, s)) => {
                served.push(s);
                resolver.add(&cert.server_names, Arc::new(slot));
            }
            Err(reason) => issues.push(Issue {
                key: cert.origin.clone(),
                reason,
            }),
        }
    }
    let provider = Arc::new(listener_provider(
        listener.tls.allow_x25519,
        listener.tls.post_quantum_key_exchange,
    ));
    let verifier = match &listener.tls.client_auth {
        None => None,
        Some(ca) => match client_verifier(ca, provider.clone()) {
            Ok(v) => Some(v),
            Err(reason) => {
                issues.push(Issue {
                    key: format!("listeners[{index}].tls.client_auth.ca"),
                    reason,
                });
                None
            }
        },
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| {
            vec![Issue {
                key: format!("listeners[{index}].tls"),
                reason: format!("TLS profile rejected by rustls: {e}"),
            }]
        })?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    if listener.tls.session_tickets {
        match ring::Ticketer::new() {
            Ok(t) => cfg.ticketer = t,
            Err(e) => {
                return Err(vec![Issue {
                    key: format!("listeners[{index}].tls.session_tickets"),
                    reason: format!("cannot create the ticket key: {e}"),
                }])
            }
        }
    }
    Ok(ListenerTls {
        config: Arc::new(cfg),
        leaves,
        served,
    })
}

/// The chain and key of a directly served certificate, checked
/// ([`crate::certs::check`], then the key matches the leaf).
fn certified_key(
    cert: &config::Certificate,
    keys: &Keys,
    listener: &str,
    now: i64,
) -> Result<(CertifiedKey, crate::certs::Served), String> {
    let chain = stadttor_pki::certs::load_chain(&cert.chain).map_err(|e| e.to_string())?;
    let served = crate::certs::check(cert, &chain, listener, now)?;
    let key = keys.resolve(&cert.key).map_err(|e| e.to_string())?;
    stadttor_pki::certs::check_leaf_matches_key(&chain, &cert.chain, key.as_ref())
        .map_err(|e| e.to_string())?;
    if key.protection() == Protection::Software {
        tracing::warn!(
            key = %cert.key,
            "TLS key is a software key file, not hardware-protected: fine for development, not for production"
        );
    }
    let signing = HsmTlsKey::new(key).map_err(|e| e.to_string())?;
    Ok((CertifiedKey::new(chain, Arc::new(signing)), served))
}

fn client_verifier(
    ca: &config::ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let roots = ca_roots(&ca.ca)?;
    let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let b = match ca.mode {
        ClientAuthMode::Required => b,
        ClientAuthMode::Optional => b.allow_unauthenticated(),
    };
    let v = b.build().map_err(|e| format!("client CA: {e}"))?;
    Ok(Arc::new(CountingVerifier(v)))
}

/// The CA certificates of a PEM bundle, for verifying peers (client
/// certificates, HTTPS upstreams, state stores). `Err` names the file and
/// what is wrong with it.
pub(crate) fn ca_roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&bytes) {
        let c = c.map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate found", path.display()));
    }
    Ok(roots)
}

/// A short-lived leaf certificate, re-issued by a (hardware) issuing key at
/// half its lifetime. See `stadttor_pki::leaf` for the trade-off.
#[derive(Debug)]
pub struct LeafSlot {
    current: ArcSwap<CertifiedKey>,
    issuer: Arc<dyn SigningKey>,
    issuer_chain: Vec<CertificateDer<'static>>,
    names: Vec<String>,
    lifetime: Duration,
    issued_at: Mutex<Instant>,
    /// The certificate's config key, for logs.
    pub(crate) origin: String,
    keys: Arc<Keys>,
}

impl LeafSlot {
    fn new(
        cert: &config::Certificate,
        keys: &Arc<Keys>,
        listener: &str,
        now: i64,
    ) -> Result<(Self, crate::certs::Served), String> {
        let chain = stadttor_pki::certs::load_chain(&cert.chain).map_err(|e| e.to_string())?;
        let served = crate::certs::check(cert, &chain, listener, now)?;
        let issuer = keys.resolve(&cert.key).map_err(|e| e.to_string())?;
        stadttor_pki::certs::check_leaf_matches_key(&chain, &cert.chain, issuer.as_ref())
            .map_err(|e| e.to_string())?;
        let is_ca = chain
            .first()
            .and_then(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
            .and_then(|(_, c)| c.basic_constraints().ok().flatten().map(|b| b.value.ca))
            .unwrap_or(false);
        if !is_ca {
            return Err(format!(
                "{} is not a CA certificate; short-lived-leaf mode needs an issuing \
                 certificate (CA:true, pathlen:0, ideally name-constrained) for key {}",
                cert.chain.display(),
                cert.key
            ));
        }
        let keys = keys.clone();
        let first = issue_leaf(
            &issuer,
            &chain,
            &cert.server_names,
            cert.leaf_lifetime,
            &keys,
        )?;
        Ok((
            Self {
                current: ArcSwap::from_pointee(first),
                issuer,
                issuer_chain: chain,
                names: cert.server_names.clone(),
                lifetime: cert.leaf_lifetime,
                issued_at: Mutex::new(Instant::now()),
                origin: cert.origin.clone(),
                keys,
            },
            served,
        ))
    }

    /// Whether the leaf is past half its lifetime.
    pub(crate) fn due(&self) -> bool {
        self.issued_at
            .lock()
            .map(|t| t.elapsed() >= self.lifetime / 2)
            .unwrap_or(true)
    }

    /// Issues a new leaf (one signature by the issuing key) and swaps it in.
    /// Blocking: call from a blocking thread.
    pub(crate) fn rotate(&self) -> Result<(), String> {
        let ck = issue_leaf(
            &self.issuer,
            &self.issuer_chain,
            &self.names,
            self.lifetime,
            &self.keys,
        )?;
        self.current.store(Arc::new(ck));
        if let Ok(mut t) = self.issued_at.lock() {
            *t = Instant::now();
        }
        Ok(())
    }
}

fn issue_leaf(
    issuer: &Arc<dyn SigningKey>,
    chain: &[CertificateDer<'static>],
    names: &[String],
    lifetime: Duration,
    keys: &Keys,
) -> Result<CertifiedKey, String> {
    let leaf = stadttor_pki::leaf::issue(issuer.clone(), chain, names, lifetime).map_err(|e| {
        format!(
            "cannot issue a short-lived leaf with {}: {e}",
            issuer.reference()
        )
    })?;
    keys.track(&leaf.key);
    tracing::info!(issuer = issuer.reference(), not_after = %leaf.not_after, "issued a short-lived TLS leaf");
    let signing = HsmTlsKey::new(leaf.key).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(leaf.chain, Arc::new(signing)))
}

/// What an SNI name resolves to.
#[derive(Debug)]
enum Slot {
    Fixed(Arc<CertifiedKey>),
    Leaf(Arc<LeafSlot>),
}

impl Slot {
    fn get(&self) -> Arc<CertifiedKey> {
        match self {
            Self::Fixed(ck) => ck.clone(),
            Self::Leaf(l) => l.current.load_full(),
        }
    }
}

/// Logs refused client certificates (with the reason), then defers.
#[derive(Debug)]
struct CountingVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for CountingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let r = self.0.verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &r {
            tracing::info!(error = %e, "client certificate refused");
        }
        r
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
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Picks a certificate by SNI: exact name, then `*.` wildcard, then default.
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<Slot>>,
    wildcard: HashMap<String, Arc<Slot>>,
    default: Option<Arc<Slot>>,
    explicit_default: bool,
}

impl SniResolver {
    fn add(&mut self, names: &[String], ck: Arc<Slot>) {
        // The first certificate without server names is the default; if all
        // have names, the first one is.
        if (names.is_empty() && !self.explicit_default) || self.default.is_none() {
            self.default = Some(ck.clone());
            self.explicit_default = names.is_empty();
        }
        for n in names {
            match n.strip_prefix("*.") {
                Some(suffix) => self.wildcard.insert(suffix.to_owned(), ck.clone()),
                None => self.exact.insert(n.clone(), ck.clone()),
            };
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(slot) = self.exact.get(&name) {
                return Some(slot.get());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(slot) = self.wildcard.get(parent) {
                    return Some(slot.get());
                }
            }
        }
        self.default.as_ref().map(|s| s.get())
    }
}

/// The verified client certificate of a connection, for later stages.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The subject distinguished name as an RFC 4514 string, most specific
    /// RDN first and escaped (see [`dn`]): `CN=Amt 32,O=Stadt Muenster,C=DE`.
    pub subject: String,
}

impl ClientCert {
    /// Extracts the subject of the verified end-entity certificate.
    pub(crate) fn from_der(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(Self {
            subject: dn::rfc4514(cert.subject()),
        })
    }
}
