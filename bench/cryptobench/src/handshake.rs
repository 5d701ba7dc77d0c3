//! TLS 1.3 handshakes between an in-memory rustls client and server, with
//! the CPU time of each side counted apart.
//!
//! The server is configured as the gateway's listeners are: the BSI
//! TR-02102-2 suites in the server's order, P-256 and P-384 (and, for the
//! post-quantum variants, the hybrid groups first), stateless session
//! tickets, a session cache, ALPN. Its certificate is an ECDSA P-256 leaf
//! under a test CA, and its CertificateVerify is signed with **ring** in
//! every variant: the gateway signs through `stadttor-hsm` (ring for `file:`
//! keys, the TPM or HSM otherwise), never through the rustls provider, so
//! only what the provider does (key exchange, HKDF, hashing, record
//! protection, tickets) differs between variants. The client verifies the
//! chain with its own provider and offers exactly one group, so no
//! variant pays a HelloRetryRequest.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, ring, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, HandshakeKind, RootCertStore, ServerConfig,
    ServerConnection,
};

use crate::measure::{run_for, thread_cpu, Sample};
use crate::prims::Lib;

/// The server's crypto provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// ring, BSI profile.
    Ring,
    /// aws-lc-rs, BSI profile.
    AwsLc,
    /// ring, BSI profile, with aws-lc-rs's hybrid groups in front.
    RingPq,
    /// aws-lc-rs, BSI profile, with its hybrid groups in front.
    AwsLcPq,
}

/// One handshake variant.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Row label.
    pub label: &'static str,
    /// The server's provider.
    pub server: Server,
    /// The client's provider.
    pub client: Lib,
    /// The one group the client offers.
    pub group: &'static dyn SupportedKxGroup,
    /// Resumed (ticket) instead of full handshakes.
    pub resumed: bool,
}

/// The variants, in report order.
pub fn variants() -> Vec<Variant> {
    let mut all = classic();
    all.extend(post_quantum());
    all
}

fn v(
    label: &'static str,
    server: Server,
    client: Lib,
    group: &'static dyn SupportedKxGroup,
    resumed: bool,
) -> Variant {
    Variant {
        label,
        server,
        client,
        group,
        resumed,
    }
}

/// Classic groups: P-256 full and resumed, X25519.
fn classic() -> Vec<Variant> {
    use Lib::{AwsLc, Ring};
    vec![
        v(
            "P-256, full",
            Server::Ring,
            Ring,
            ring::kx_group::SECP256R1,
            false,
        ),
        v(
            "P-256, full",
            Server::AwsLc,
            AwsLc,
            aws_lc_rs::kx_group::SECP256R1,
            false,
        ),
        v(
            "P-256, resumed",
            Server::Ring,
            Ring,
            ring::kx_group::SECP256R1,
            true,
        ),
        v(
            "P-256, resumed",
            Server::AwsLc,
            AwsLc,
            aws_lc_rs::kx_group::SECP256R1,
            true,
        ),
        v(
            "X25519, full",
            Server::Ring,
            Ring,
            ring::kx_group::X25519,
            false,
        ),
        v(
            "X25519, full",
            Server::AwsLc,
            AwsLc,
            aws_lc_rs::kx_group::X25519,
            false,
        ),
    ]
}

/// The hybrid groups, and a classic client against a listener offering them.
fn post_quantum() -> Vec<Variant> {
    use Lib::{AwsLc, Ring};
    vec![
        v(
            "SECP256R1MLKEM768, full",
            Server::RingPq,
            AwsLc,
            aws_lc_rs::kx_group::SECP256R1MLKEM768,
            false,
        ),
        v(
            "SECP256R1MLKEM768, full",
            Server::AwsLcPq,
            AwsLc,
            aws_lc_rs::kx_group::SECP256R1MLKEM768,
            false,
        ),
        v(
            "SECP256R1MLKEM768, resumed",
            Server::AwsLcPq,
            AwsLc,
            aws_lc_rs::kx_group::SECP256R1MLKEM768,
            true,
        ),
        v(
            "X25519MLKEM768, full",
            Server::RingPq,
            AwsLc,
            aws_lc_rs::kx_group::X25519MLKEM768,
            false,
        ),
        v(
            "X25519MLKEM768, full",
            Server::AwsLcPq,
            AwsLc,
            aws_lc_rs::kx_group::X25519MLKEM768,
            false,
        ),
        v(
            "P-256 client, PQ server, full",
            Server::RingPq,
            Ring,
            ring::kx_group::SECP256R1,
            false,
        ),
        v(
            "P-256 client, PQ server, full",
            Server::AwsLcPq,
            AwsLc,
            aws_lc_rs::kx_group::SECP256R1,
            false,
        ),
    ]
}

impl Server {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::AwsLc => "aws-lc-rs",
            Self::RingPq => "ring + aws-lc-rs PQ groups",
            Self::AwsLcPq => "aws-lc-rs",
        }
    }

    fn provider(self) -> CryptoProvider {
        let pq = [
            aws_lc_rs::kx_group::SECP256R1MLKEM768,
            aws_lc_rs::kx_group::X25519MLKEM768,
        ];
        let (base, mut kx) = match self {
            Self::Ring | Self::RingPq => (
                ring::default_provider(),
                vec![
                    ring::kx_group::SECP256R1,
                    ring::kx_group::SECP384R1,
                    ring::kx_group::X25519,
                ],
            ),
            Self::AwsLc | Self::AwsLcPq => (
                aws_lc_rs::default_provider(),
                vec![
                    aws_lc_rs::kx_group::SECP256R1,
                    aws_lc_rs::kx_group::SECP384R1,
                    aws_lc_rs::kx_group::X25519,
                ],
            ),
        };
        if matches!(self, Self::RingPq | Self::AwsLcPq) {
            kx.splice(0..0, pq);
        }
        // The gateway's BSI suites, in its order: AES-256 first.
        let want = ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256"];
        let mut suites = Vec::new();
        for w in want {
            suites.extend(
                base.cipher_suites
                    .iter()
                    .filter(|s| format!("{:?}", s.suite()) == w)
                    .copied(),
            );
        }
        CryptoProvider {
            cipher_suites: suites,
            kx_groups: kx,
            ..base
        }
    }

    fn ticketer(self) -> Result<Arc<dyn rustls::server::ProducesTickets>, String> {
        match self {
            Self::Ring | Self::RingPq => ring::Ticketer::new(),
            Self::AwsLc | Self::AwsLcPq => aws_lc_rs::Ticketer::new(),
        }
        .map_err(|e| format!("ticketer: {e}"))
    }
}

/// The test PKI: a CA and an ECDSA P-256 leaf for `localhost`.
pub struct Pki {
    ca: CertificateDer<'static>,
    key: Arc<CertifiedKey>,
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl Pki {
    /// Generates the CA and the leaf; the leaf key signs with ring.
    pub fn new() -> Result<Self, String> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
        let err = |e: rcgen::Error| format!("test PKI: {e}");
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca = ca.self_signed(&ca_key).map_err(err)?;
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned()]).map_err(err)?;
        let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).map_err(err)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signer = ring::sign::any_ecdsa_type(&der).map_err(|e| format!("leaf key: {e}"))?;
        let chain = vec![leaf.der().clone(), ca.der().clone()];
        Ok(Self {
            ca: ca.der().clone(),
            key: Arc::new(CertifiedKey::new(chain, signer)),
        })
    }
}

/// The client and server configurations of one variant.
pub struct Pair {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
    resumed: bool,
    group: &'static dyn SupportedKxGroup,
}

impl Pair {
    /// Builds both sides.
    pub fn new(v: &Variant, pki: &Pki) -> Result<Self, String> {
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let sp = Arc::new(v.server.provider());
        let mut s = ServerConfig::builder_with_provider(sp)
            .with_protocol_versions(versions)
            .map_err(|e| format!("server: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(pki.key.clone())));
        s.ignore_client_order = true;
        s.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        s.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
        s.ticketer = v.server.ticketer()?;
        let base = match v.client {
            Lib::Ring => ring::default_provider(),
            Lib::AwsLc => aws_lc_rs::default_provider(),
        };
        let cp = CryptoProvider {
            kx_groups: vec![v.group],
            ..base
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(pki.ca.clone())
            .map_err(|e| format!("roots: {e}"))?;
        let mut c = ClientConfig::builder_with_provider(Arc::new(cp))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("client: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec()];
        c.resumption = if v.resumed {
            Resumption::in_memory_sessions(256)
        } else {
            Resumption::disabled()
        };
        Ok(Self {
            server: Arc::new(s),
            client: Arc::new(c),
            name: ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            resumed: v.resumed,
            group: v.group,
        })
    }

    /// One handshake, each side's CPU time added to `s`; checks the
    /// handshake kind and the group.
    fn once(&self, s: &mut Sample, buf: &mut Vec<u8>, laps: &mut Laps) -> Result<(), String> {
        laps.restart();
        let mut c = ClientConnection::new(self.client.clone(), self.name.clone())
            .map_err(|e| format!("client: {e}"))?;
        s.client_cpu += laps.lap();
        let mut srv =
            ServerConnection::new(self.server.clone()).map_err(|e| format!("server: {e}"))?;
        s.server_cpu += laps.lap();
        for _ in 0..8 {
            let up = step(
                &mut c,
                &mut srv,
                buf,
                laps,
                &mut s.client_cpu,
                &mut s.server_cpu,
            )?;
            let down = step(
                &mut srv,
                &mut c,
                buf,
                laps,
                &mut s.server_cpu,
                &mut s.client_cpu,
            )?;
            s.c2s_bytes += up;
            s.s2c_bytes += down;
            if up == 0 && down == 0 {
                break;
            }
        }
        if c.is_handshaking() || srv.is_handshaking() {
            return Err("the handshake did not complete".into());
        }
        let want = if self.resumed {
            HandshakeKind::Resumed
        } else {
            HandshakeKind::Full
        };
        if c.handshake_kind() != Some(want) {
            return Err(format!("expected {want:?}, got {:?}", c.handshake_kind()));
        }
        let got = srv.negotiated_key_exchange_group().map(|g| g.name());
        if got != Some(self.group.name()) {
            return Err(format!("negotiated {got:?}, not {:?}", self.group.name()));
        }
        s.ops += 1;
        Ok(())
    }

    /// Handshakes for `seconds` of CPU time.
    pub fn run(&self, seconds: f64, warmup: f64) -> Result<Sample, String> {
        let mut buf = Vec::with_capacity(32 * 1024);
        let mut scratch = Sample::default();
        if self.resumed {
            // The first connection is full and leaves tickets behind.
            let full = Self {
                resumed: false,
                ..self.clone_configs()
            };
            full.once(&mut scratch, &mut buf, &mut Laps::default())?;
        }
        let mut acc = Sample::default();
        let mut laps = Laps::default();
        let mut s = run_for(seconds, warmup, 8, || {
            self.once(&mut acc, &mut buf, &mut laps).map(|_| 0)
        })?;
        // The warm-up went into `acc` too: scale its split to the counted
        // run's total, which is what `cpu` measured.
        let split = acc.server_cpu + acc.client_cpu;
        if !split.is_zero() {
            let f = s.cpu.as_secs_f64() / split.as_secs_f64();
            s.server_cpu = acc.server_cpu.mul_f64(f);
            s.client_cpu = acc.client_cpu.mul_f64(f);
        }
        s.c2s_bytes = acc.c2s_bytes / acc.ops.max(1);
        s.s2c_bytes = acc.s2c_bytes / acc.ops.max(1);
        Ok(s)
    }

    fn clone_configs(&self) -> Self {
        Self {
            server: self.server.clone(),
            client: self.client.clone(),
            name: self.name.clone(),
            resumed: self.resumed,
            group: self.group,
        }
    }
}

/// Successive readings of the thread's CPU clock: each lap is charged to
/// the side whose calls it covered.
#[derive(Default)]
struct Laps {
    last: Duration,
}

impl Laps {
    fn restart(&mut self) {
        self.last = thread_cpu();
    }

    fn lap(&mut self) -> Duration {
        let now = thread_cpu();
        let d = now.saturating_sub(self.last);
        self.last = now;
        d
    }
}

/// Moves everything `from` wants to write into `to`, which processes it.
/// Returns the bytes moved (0: `from` had nothing to say, and no clock
/// was read).
fn step<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
    buf: &mut Vec<u8>,
    laps: &mut Laps,
    t_from: &mut Duration,
    t_to: &mut Duration,
) -> Result<u64, String> {
    if !from.wants_write() {
        return Ok(0);
    }
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).map_err(|e| format!("write_tls: {e}"))?;
    }
    *t_from += laps.lap();
    let moved = buf.len() as u64;
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).map_err(|e| format!("read_tls: {e}"))?;
        to.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
    }
    *t_to += laps.lap();
    Ok(moved)
}
