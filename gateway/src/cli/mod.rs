//! The `stadttor` command line: `serve`, `config check`, `keys`, `audit`,
//! `policy`, `demo`.
//!
//! Exit codes: 0 success, 64 unusable configuration (reported before any
//! port is bound, every problem listed), 1 any other failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stadttor_gateway::config::{self, LogFormat};
use stadttor_gateway::server::{self, ServeError};
use stadttor_gateway::state::State;

/// stadttor: a hardened TLS gateway for municipal online services.
#[derive(Debug, Parser)]
#[command(
    name = "stadttor",
    version,
    about = "stadttor: a hardened TLS gateway for municipal online services",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file (SIGHUP reloads, SIGTERM drains).
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/stadttor/stadttor.toml")]
        config: PathBuf,
    },
    /// Inspect configurations.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage keys in the TPM, the PKCS#11 token or (development) files.
    Keys {
        #[command(flatten)]
        backend: KeyBackend,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run a complete development gateway with generated certificates and a
    /// sample service, in a local folder. Not for production.
    Demo {
        /// Folder for the generated CA, certificate, key and config.
        #[arg(long, default_value = "stadttor-demo")]
        dir: PathBuf,
        /// Public TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Admin listener (metrics, health).
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: SocketAddr,
    },
    /// Seal a document with a key from the key store: detached CAdES
    /// (`--tsa` for B-T), PAdES embedded in a PDF, or a detached JWS.
    Sign {
        #[command(flatten)]
        backend: KeyBackend,
        /// The document.
        file: PathBuf,
        /// cades, pades or jws.
        #[arg(long, value_enum, default_value = "cades")]
        format: stadttor_gateway::signcmd::Format,
        /// The seal key (`tpm:…`, `pkcs11:…`, `file:…`).
        #[arg(long)]
        key: String,
        /// PEM chain of the seal certificate, leaf first.
        #[arg(long)]
        cert: PathBuf,
        /// RFC 3161 timestamp authority (`http://…`) for B-T.
        #[arg(long)]
        tsa: Option<String>,
        /// Output file (default: next to FILE).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check a signature: a PDF's embedded PAdES signature, or a detached
    /// `--sig` (CMS `.p7s` or JWS). Exit 0 valid, 2 invalid, 64 unusable
    /// command line. Trust in the signer is checked with your own trust
    /// anchors (openssl, pdfsig, pyHanko).
    Verify {
        /// The document.
        file: PathBuf,
        /// The detached signature.
        #[arg(long)]
        sig: Option<PathBuf>,
    },
    /// Check and query a published audit log offline, with only its public
    /// verifier key. Exit codes: 0 ok, 2 verification failed, 64 unusable
    /// command line, 1 other.
    Audit {
        #[command(subcommand)]
        command: stadttor_gateway::auditcmd::AuditCommand,
    },
    /// The security officers' policy commands: init, test, explain, diff,
    /// history, propose, approve, reject, rollback. Exit codes: 0 ok, 2
    /// refused (invalid policy, failing tests, four-eyes rules), 64 unusable
    /// command line, 1 other.
    Policy {
        #[command(flatten)]
        store: stadttor_gateway::policycmd::StoreArgs,
        #[command(subcommand)]
        command: stadttor_gateway::policycmd::PolicyCommand,
    },
}

/// Where the key store finds its hardware.
#[derive(Debug, clap::Args)]
struct KeyBackend {
    /// Read the `[keys]` table of this configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// TPM TCTI, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    #[arg(long, global = true)]
    tcti: Option<String>,
    /// PKCS#11 module (`.so`).
    #[arg(long, global = true)]
    pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN.
    #[arg(long, global = true)]
    pin_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a key inside its backend (non-exportable in a TPM or token)
    /// and print its public key. Never overwrites an existing key.
    Generate {
        /// `tpm:handle=0x81010002`, `tpm:pem=FILE`, `pkcs11:token=…;object=…`, `file:PATH`.
        key: String,
        /// p256 (default), p384 or ed25519 (backend permitting).
        #[arg(long, default_value = "p256")]
        algorithm: String,
    },
    /// Show a key: backend, protection, algorithm, fingerprint, public key.
    Show {
        /// The key reference.
        key: String,
    },
    /// Write a PKCS#10 certificate signing request signed by the key.
    Csr {
        /// The key reference.
        key: String,
        /// Subject common name.
        #[arg(long)]
        cn: String,
        /// Subject alternative names (DNS names or IP addresses), repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Output file (`-` for stdout).
        #[arg(long, short, default_value = "-")]
        out: PathBuf,
    },
    /// Seal a gateway secret (e.g. a session-cookie or ticket key, at most
    /// 128 bytes) to the TPM, optionally bound to PCR values; writes a TSS2 PEM
    /// file (mode 0600) that only this TPM, in this platform state, can unseal.
    Seal {
        /// The secret: a file to read, or `-` for 32 fresh random bytes.
        #[arg(long, default_value = "-")]
        secret: PathBuf,
        /// PCR indices (sha256 bank) to bind to, e.g. `--pcr 7 --pcr 14`.
        #[arg(long = "pcr")]
        pcrs: Vec<u8>,
        /// The sealed file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Unseal a secret sealed with `keys seal` and print its SHA-256
    /// fingerprint (the secret itself is never printed).
    Unseal {
        /// The sealed file.
        file: PathBuf,
    },
    /// Create or rotate the session-cookie key file (`[identity]
    /// session_key_file`): a new key goes on the first line and seals from
    /// the next start on; older keys stay below it and still open existing
    /// sessions. `--keep N` keeps at most N old keys.
    SessionKey {
        /// The key file (created with mode 0600).
        file: PathBuf,
        /// Old keys to keep below the new one.
        #[arg(long, default_value_t = 2)]
        keep: usize,
    },
    /// TPM2_Certify: prove with an attestation key that the key lives in the TPM.
    Attest {
        /// The key to attest (`tpm:`).
        key: String,
        /// The attestation key (`tpm:`), a restricted signing key.
        #[arg(long)]
        ak: String,
        /// Verifier's nonce, hex.
        #[arg(long, default_value = "")]
        nonce: String,
        /// Folder for attest.bin, attest.sig and ak.pem.
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration, including its certificates and keys.
    /// Exits 0 when usable, 64 with every problem listed otherwise.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    // Command-line mistakes exit 64 like an unusable config, not clap's 2:
    // `stadttor audit verify` exits 2 when a log fails verification.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check(&file),
        Command::Serve { config } => match config::load(&config) {
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EX_CONFIG)
            }
            Ok(cfg) => {
                init_tracing(cfg.server.log_format);
                finish(runtime().and_then(|rt| rt.block_on(serve(cfg))))
            }
        },
        Command::Keys { backend, command } => keys(backend, command),
        Command::Demo { dir, listen, admin } => {
            init_tracing(LogFormat::Text);
            finish(runtime().and_then(|rt| rt.block_on(demo(dir, listen, admin))))
        }
        Command::Sign {
            backend,
            file,
            format,
            key,
            cert,
            tsa,
            out,
        } => {
            let store = match key_store(&backend) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let r = key
                .parse::<stadttor_hsm::KeyRef>()
                .map_err(anyhow::Error::from)
                .and_then(|k| {
                    stadttor_gateway::signcmd::sign(
                        &store,
                        &k,
                        &cert,
                        &file,
                        format,
                        tsa.as_deref(),
                        out.as_deref(),
                    )
                    .map_err(anyhow::Error::from)
                })
                .map(|written| println!("signed: {}", written.display()));
            finish(r)
        }
        Command::Verify { file, sig } => {
            match stadttor_gateway::signcmd::verify(&file, sig.as_deref()) {
                Ok(v) => {
                    println!("valid {} signature", v.format);
                    println!("signer: {}", v.signer);
                    println!("timestamp: {}", if v.timestamped { "yes" } else { "no" });
                    if let Some(w) = v.whole_file {
                        println!("covers the whole file: {}", if w { "yes" } else { "NO" });
                    }
                    ExitCode::SUCCESS
                }
                Err(stadttor_gateway::signcmd::SignCmdError::Usage(m)) => {
                    eprintln!("stadttor verify: {m}");
                    ExitCode::from(EX_CONFIG)
                }
                Err(e) => {
                    eprintln!("INVALID: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Policy { store, command } => {
            match stadttor_gateway::policycmd::run(&store, command, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("stadttor policy: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Audit { command } => {
            match stadttor_gateway::auditcmd::run(command, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("stadttor audit: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    let result = config::load(file).and_then(|cfg| {
        // Warnings do not change the exit code: a trusted network may be a
        // deliberate choice, but it should be a visible one.
        for (key, why) in config::plaintext_warnings(&cfg) {
            eprintln!("{}: key `{key}`: warning: {why}", file.display());
        }
        let (l, r) = (cfg.listeners.len(), cfg.routes.len());
        let keys = stadttor_gateway::keys::Keys::new(cfg.keys.clone());
        // The admin listener's certificates and keys too, not only the
        // public listeners'.
        stadttor_gateway::server::admin_tls_config(&cfg, &keys)?;
        State::build(cfg, &stadttor_gateway::metrics::Metrics::new(), &keys).map(|_| (l, r))
    });
    match result {
        Ok((l, r)) => {
            println!(
                "{}: ok ({l} listener{}, {r} route{})",
                file.display(),
                if l == 1 { "" } else { "s" },
                if r == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// The key store described by `--config`/`--tcti`/… options.
fn key_store(backend: &KeyBackend) -> Result<stadttor_hsm::KeyStore, ExitCode> {
    let mut cfg = match &backend.config {
        Some(path) => match stadttor_gateway::keycmd::keys_config_from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Err(ExitCode::from(EX_CONFIG));
            }
        },
        None => Default::default(),
    };
    if backend.tcti.is_some() {
        cfg.tpm_tcti = backend.tcti.clone();
    }
    if backend.pkcs11_module.is_some() {
        cfg.pkcs11_module = backend.pkcs11_module.clone();
    }
    if backend.pin_file.is_some() {
        cfg.pkcs11_pin_file = backend.pin_file.clone();
    }
    Ok(stadttor_hsm::KeyStore::new(cfg))
}

fn keys(backend: KeyBackend, command: KeysCommand) -> ExitCode {
    use stadttor_gateway::keycmd;
    let mut cfg = match &backend.config {
        Some(path) => match keycmd::keys_config_from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        None => Default::default(),
    };
    if backend.tcti.is_some() {
        cfg.tpm_tcti = backend.tcti;
    }
    if backend.pkcs11_module.is_some() {
        cfg.pkcs11_module = backend.pkcs11_module;
    }
    if backend.pin_file.is_some() {
        cfg.pkcs11_pin_file = backend.pin_file;
    }
    let store = stadttor_hsm::KeyStore::new(cfg);
    let parse = |s: &str| s.parse::<stadttor_hsm::KeyRef>();
    let result: anyhow::Result<()> = (|| {
        match command {
            KeysCommand::Generate { key, algorithm } => {
                let alg = keycmd::parse_algorithm(&algorithm)?;
                let k = keycmd::generate(&store, &parse(&key)?, alg)?;
                print!("{}", keycmd::describe(&k));
            }
            KeysCommand::Show { key } => {
                let k = store.resolve(&parse(&key)?)?;
                print!("{}", keycmd::describe(&k));
            }
            KeysCommand::Csr { key, cn, sans, out } => {
                let pem = keycmd::csr(&store, &parse(&key)?, &cn, &sans)?;
                keycmd::write_out(&out, pem.as_bytes())?;
            }
            KeysCommand::Seal { secret, pcrs, out } => seal(&store, &secret, &pcrs, &out)?,
            KeysCommand::Unseal { file } => unseal(&store, &file)?,
            KeysCommand::SessionKey { file, keep } => {
                let n = stadttor_gateway::keycmd::rotate_session_key(&file, keep)?;
                println!(
                    "{}: new session key on the first line, {n} older key(s) kept",
                    file.display()
                );
            }
            KeysCommand::Attest {
                key,
                ak,
                nonce,
                out,
            } => {
                let nonce = (0..nonce.len() / 2)
                    .map(|i| u8::from_str_radix(&nonce[2 * i..2 * i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .context("--nonce must be hex")?;
                attest(&store, &parse(&key)?, &parse(&ak)?, &nonce, &out)?;
            }
        }
        Ok(())
    })();
    finish(result)
}

#[cfg(feature = "tpm")]
fn attest(
    store: &stadttor_hsm::KeyStore,
    key: &stadttor_hsm::KeyRef,
    ak: &stadttor_hsm::KeyRef,
    nonce: &[u8],
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let cmd = stadttor_gateway::keycmd::attest(store, key, ak, nonce, out)?;
    println!(
        "attestation written to {}; verify with:\n  {cmd}",
        out.display()
    );
    Ok(())
}

#[cfg(feature = "tpm")]
fn seal(
    store: &stadttor_hsm::KeyStore,
    secret: &std::path::Path,
    pcrs: &[u8],
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let bytes = if secret == std::path::Path::new("-") {
        let mut b = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        zeroize::Zeroizing::new(b)
    } else {
        zeroize::Zeroizing::new(
            std::fs::read(secret).with_context(|| format!("cannot read {}", secret.display()))?,
        )
    };
    store.tpm_sealer()?.seal_to_file(out, &bytes, pcrs)?;
    println!(
        "sealed {} bytes to {}{}; fingerprint SHA256:{}",
        bytes.len(),
        out.display(),
        if pcrs.is_empty() {
            String::new()
        } else {
            format!(" (bound to PCR {pcrs:?})")
        },
        fingerprint(&bytes)
    );
    Ok(())
}

#[cfg(feature = "tpm")]
fn unseal(store: &stadttor_hsm::KeyStore, file: &std::path::Path) -> anyhow::Result<()> {
    let secret = store.tpm_sealer()?.unseal_file(file)?;
    println!(
        "unsealed {} bytes from {}; fingerprint SHA256:{}",
        secret.len(),
        file.display(),
        fingerprint(&secret)
    );
    Ok(())
}

#[cfg(feature = "tpm")]
fn fingerprint(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(not(feature = "tpm"))]
fn seal(
    _: &stadttor_hsm::KeyStore,
    _: &std::path::Path,
    _: &[u8],
    _: &std::path::Path,
) -> anyhow::Result<()> {
    anyhow::bail!("`keys seal` needs the TPM backend: this stadttor was built without the cargo feature `tpm`")
}

#[cfg(not(feature = "tpm"))]
fn unseal(_: &stadttor_hsm::KeyStore, _: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("`keys unseal` needs the TPM backend: this stadttor was built without the cargo feature `tpm`")
}

#[cfg(not(feature = "tpm"))]
fn attest(
    _: &stadttor_hsm::KeyStore,
    _: &stadttor_hsm::KeyRef,
    _: &stadttor_hsm::KeyRef,
    _: &[u8],
    _: &std::path::Path,
) -> anyhow::Result<()> {
    anyhow::bail!("`keys attest` needs the TPM backend: this stadttor was built without the cargo feature `tpm`")
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ServeError::Config(c)) = e.downcast_ref::<ServeError>() {
                eprintln!("{c}");
                return ExitCode::from(EX_CONFIG);
            }
            eprintln!("stadttor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Multi-thread is required: hardware signing uses block_in_place.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stadttor-worker")
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STADTTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    for (key, why) in config::plaintext_warnings(&cfg) {
        tracing::warn!(key = %key, "{why}");
    }
    let prepared = server::prepare(cfg).await?;
    announce(&prepared.bound);
    prepared.run().await?;
    Ok(())
}

/// One line per bound socket on stdout: for operators and for test harnesses
/// that start the binary on port 0.
fn announce(bound: &server::Bound) {
    for (name, addr) in &bound.listeners {
        println!("stadttor listening: {name} https://{addr}");
    }
    if let Some(a) = bound.admin {
        let scheme = if bound.admin_https { "https" } else { "http" };
        println!("stadttor admin: {scheme}://{a}");
    }
}

async fn demo(dir: PathBuf, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let backend = stadttor_gateway::demo::start_sample_service()
        .await
        .context("cannot start the sample service")?;
    let path = stadttor_gateway::demo::write_files(&dir, listen, admin, backend)?;
    let cfg = config::load(&path)?;
    let prepared = server::prepare(cfg).await?;
    announce(&prepared.bound);
    let addr = prepared
        .bound
        .listeners
        .first()
        .map(|(_, a)| *a)
        .unwrap_or(listen);
    println!(
        "\nstadttor demo is running (development only: software key, throw-away CA).\n\
         Try:  curl --cacert {ca} https://localhost:{port}/\n\
         Metrics: curl http://{admin}/metrics\n\
         Config:  {cfg}\n\
         Audit:   stadttor audit verify {audit} --key {vkey}\n\
         Stop with Ctrl-C.",
        ca = dir.join("ca.pem").display(),
        port = addr.port(),
        cfg = path.display(),
        audit = dir.join("audit").display(),
        vkey = prepared.audit_verifier_key().unwrap_or_default(),
    );
    prepared.run().await?;
    Ok(())
}
