//! `stadttor sign` and `stadttor verify`: the gateway's signature formats
//! from the command line, with a key from the key store.
//!
//! `verify` checks the signature itself (and a timestamp's imprint); it
//! names the signer but does not decide whether to trust it — that is the
//! relying party's job with its trust anchors (e.g. `openssl cms -verify
//! -CAfile`, pyHanko, pdfsig with an NSS database).
//!
//! Exit codes: `sign` 0 or 1 (78 for an unusable key store configuration);
//! `verify` 0 valid, 2 invalid, 64 unusable command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stadttor_hsm::{KeyRef, KeyStore};
use stadttor_pki::sign::{cms, jws, pades, tsa::HttpTsa, SealCertificate};

use super::{Exit, KeyBackend};

/// The arguments of `stadttor sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    pub(super) backend: KeyBackend,
    /// The document.
    file: PathBuf,
    /// cades, pades or jws.
    #[arg(long, value_enum, default_value = "cades")]
    format: Format,
    /// The seal key (`tpm:…`, `pkcs11:…`, `file:…`).
    #[arg(long)]
    key: String,
    /// PEM chain of the seal certificate, leaf first.
    #[arg(long)]
    cert: PathBuf,
    /// RFC 3161 timestamp authority (`http://…`) for B-T.
    #[arg(long)]
    tsa: Option<String>,
    /// Output file (default: next to FILE). An existing file is never
    /// replaced unless `--force` is given.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

/// Runs `stadttor sign` with a key from `store`.
pub(super) fn run_sign(store: &KeyStore, args: &SignArgs) -> Exit {
    let r = args
        .key
        .parse::<KeyRef>()
        .map_err(anyhow::Error::from)
        .and_then(|k| sign(store, &k, args).map_err(anyhow::Error::from))
        .map(|written| println!("signed: {}", written.display()));
    super::finish(r)
}

/// Runs `stadttor verify`.
pub(super) fn run_verify(file: &Path, sig: Option<&Path>) -> Exit {
    match verify(file, sig) {
        Ok(v) => {
            println!("valid {} signature", v.format);
            println!("signer: {}", v.signer);
            println!("timestamp: {}", if v.timestamped { "yes" } else { "no" });
            if let Some(w) = v.whole_file {
                println!("covers the whole file: {}", if w { "yes" } else { "NO" });
            }
            Exit::Ok
        }
        Err(SignCmdError::Usage(m)) => {
            eprintln!("stadttor verify: {m}");
            Exit::Usage
        }
        Err(e) => {
            eprintln!("INVALID: {e}");
            Exit::Rejected
        }
    }
}

/// Why a sign or verify command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignCmdError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key store refused.
    #[error(transparent)]
    Key(#[from] stadttor_hsm::Error),
    /// Signing, certificate or verification failure.
    #[error(transparent)]
    Pki(#[from] stadttor_pki::Error),
    /// The command line does not fit the file.
    #[error("{0}")]
    Usage(String),
}

/// Output formats of `stadttor sign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Detached CAdES (`FILE.p7s`).
    Cades,
    /// PAdES, embedded in the PDF (`FILE.signed.pdf`).
    Pades,
    /// Detached JWS, RFC 7797 (`FILE.jws`).
    Jws,
}

fn read(p: &Path) -> Result<Vec<u8>, SignCmdError> {
    std::fs::read(p).map_err(|source| SignCmdError::Io {
        path: p.to_owned(),
        source,
    })
}

/// Writes `data` to `p`; without `replace`, only if `p` does not exist yet
/// (checked atomically by the open).
fn write(p: &Path, data: &[u8], replace: bool) -> Result<(), SignCmdError> {
    use std::io::Write as _;
    let io = |source| SignCmdError::Io {
        path: p.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if replace {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            exists(p)
        } else {
            io(e)
        }
    })?;
    f.write_all(data).map_err(io)
}

fn exists(p: &Path) -> SignCmdError {
    SignCmdError::Usage(format!(
        "{} exists already; remove it or pass --force to replace it",
        p.display()
    ))
}

/// Where `sign` writes when no `--out` is given: next to `file`.
fn default_out(file: &Path, format: Format) -> PathBuf {
    match format {
        Format::Cades => file.with_extension(extension_plus(file, "p7s")),
        Format::Pades => file.with_extension("signed.pdf"),
        Format::Jws => file.with_extension(extension_plus(file, "jws")),
    }
}

/// Signs `file`; returns the path written.
fn sign(store: &KeyStore, key: &KeyRef, args: &SignArgs) -> Result<PathBuf, SignCmdError> {
    let (file, format, replace) = (args.file.as_path(), args.format, args.force);
    let out = args
        .out
        .as_deref()
        .map_or_else(|| default_out(file, format), Path::to_owned);
    // Before the key signs (a TPM or a TSA costs time): refuse early.
    if !replace && out.exists() {
        return Err(exists(&out));
    }
    let key = store.resolve(key)?;
    let cert = SealCertificate::load(&args.cert, key.as_ref())?;
    let tsa = args
        .tsa
        .as_deref()
        .map(|u| HttpTsa::new(u, Duration::from_secs(15)))
        .transpose()?;
    let tsa_ref = tsa
        .as_ref()
        .map(|t| t as &dyn stadttor_pki::sign::tsa::TimestampAuthority);
    let content = read(file)?;
    let data = match format {
        Format::Cades => {
            let opts = cms::CmsOptions {
                signing_time: Some(time::OffsetDateTime::now_utc()),
                tsa: tsa_ref,
            };
            cms::sign_detached(key.as_ref(), &cert, &content, &opts)?
        }
        Format::Pades => {
            if !content.starts_with(b"%PDF-") {
                return Err(SignCmdError::Usage(format!(
                    "{}: not a PDF (PAdES signs PDFs only)",
                    file.display()
                )));
            }
            let opts = pades::PadesOptions {
                signing_time: None,
                tsa: tsa_ref,
                reason: None,
                location: None,
                reserve: None,
            };
            pades::sign_pdf(key.as_ref(), &cert, &content, &opts)?
        }
        Format::Jws => {
            if tsa.is_some() {
                return Err(SignCmdError::Usage(
                    "--tsa applies to cades and pades only".into(),
                ));
            }
            jws::sign_detached(key.as_ref(), &cert, &content, None)?.into_bytes()
        }
    };
    write(&out, &data, replace)?;
    Ok(out)
}

fn extension_plus(file: &Path, ext: &str) -> String {
    match file.extension().and_then(|e| e.to_str()) {
        Some(e) => format!("{e}.{ext}"),
        None => ext.to_owned(),
    }
}

/// What `verify` found.
#[derive(Debug)]
struct Verdict {
    /// The format that was checked.
    format: &'static str,
    /// The signer certificate's subject.
    signer: String,
    /// Whether a signature timestamp is present (and matches).
    timestamped: bool,
    /// For PAdES: whether the signature covers the whole file.
    whole_file: Option<bool>,
}

fn subject(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "(unreadable certificate)".into())
}

/// Verifies `file`: an embedded PAdES signature, or the detached `sig`
/// (`.p7s` CMS or `.jws`).
fn verify(file: &Path, sig: Option<&Path>) -> Result<Verdict, SignCmdError> {
    let content = read(file)?;
    match sig {
        None => {
            if !content.starts_with(b"%PDF-") {
                return Err(SignCmdError::Usage(
                    "without --sig only PDFs with an embedded signature can be verified".into(),
                ));
            }
            let v = pades::verify_pdf(&content)?;
            Ok(Verdict {
                format: "PAdES",
                signer: subject(&v.cms.signer),
                timestamped: v.cms.timestamp.is_some(),
                whole_file: Some(v.covers_whole_file),
            })
        }
        Some(sig_path) => {
            let sig = read(sig_path)?;
            let text = std::str::from_utf8(&sig).ok().map(str::trim);
            match text {
                Some(t) if t.starts_with("ey") && t.contains("..") => {
                    let v = jws::verify_detached(t, &content, None)?;
                    Ok(Verdict {
                        format: "JWS (detached)",
                        signer: v.chain.first().map(|c| subject(c)).unwrap_or_default(),
                        timestamped: false,
                        whole_file: None,
                    })
                }
                _ => {
                    let v = cms::verify_detached(&sig, Some(&content))?;
                    Ok(Verdict {
                        format: "CMS/CAdES (detached)",
                        signer: subject(&v.signer),
                        timestamped: v.timestamp.is_some(),
                        whole_file: None,
                    })
                }
            }
        }
    }
}
