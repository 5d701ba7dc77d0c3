//! Shared parts of the signature tests (stadttor-pki's and the gateway's):
//! a test PKI (root, seal and TSA certificates), a local RFC 3161 TSA
//! (`openssl ts -reply` behind a tiny HTTP server on 127.0.0.1), the Python
//! venv with the independent verifiers, and the test PDFs (in `pki/tests`).
//!
//! Only the independent tools live here; checks with stadttor's own
//! verifier stay in the crates' tests (this crate depends on no stadttor
//! crate).
//!
//! Missing tools make tests FAIL with the install command: a green run
//! must mean the independent verifiers ran.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use crate::hw::require;
use crate::TempDir;

/// The venv with the pinned Python verifiers.
pub const VENV: &str = "/var/tmp/stadttor-pyenv";

/// `pki/tests/…`
pub fn test_file(name: &str) -> PathBuf {
    // This crate is `tests/harness`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pki/tests")
        .join(name)
}

/// The venv's python, creating the venv from `requirements.txt` once.
pub fn python() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let py = Path::new(VENV).join("bin/python");
        let req = test_file("requirements.txt");
        let stamp = Path::new(VENV).join("stadttor-requirements.txt");
        let want = std::fs::read(&req).unwrap();
        if py.exists() && std::fs::read(&stamp).ok().as_ref() == Some(&want) {
            return py;
        }
        let install = format!(
            "python3 -m venv {VENV} && {VENV}/bin/pip install -q -r {}",
            req.display()
        );
        let out = Command::new("sh").arg("-c").arg(&install).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "could not install the Python verifiers (`{install}`; needs python3 with venv and pip, \
                 e.g. apt-get install python3-venv python3-pip):\n{}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run `{install}`: {e} (apt-get install python3-venv)"),
        }
        std::fs::write(&stamp, want).unwrap();
        py
    })
    .clone()
}

/// Runs `verify.py ARGS`; returns (success, combined output).
pub fn verify_py(args: &[&str]) -> (bool, String) {
    let out = Command::new(python())
        .arg(test_file("verify.py"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), both(&out))
}

pub fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command; returns (success, combined output).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (out.status.success(), both(&out))
}

/// A test PKI in a temporary directory: `ca.pem`, `tsa.pem`, `tsa.key`.
pub struct Pki {
    pub dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    n: std::sync::atomic::AtomicU32,
}

/// A critical key usage extension with the given bits (0 =
/// digitalSignature, 1 = nonRepudiation, 2 = keyEncipherment, …), in DER.
/// (rcgen 0.13.2 encodes digitalSignature + contentCommitment as a
/// non-minimal BIT STRING, which pyHanko re-encodes and then finds the CA
/// signature broken; and it writes no extensions at all for `key_usages`
/// alone.)
pub fn key_usage(bits: &[u8]) -> CustomExtension {
    let mut value: u16 = 0;
    for b in bits {
        value |= 0x8000 >> b;
    }
    let bytes = value.to_be_bytes();
    let used = if bytes[1] == 0 {
        &bytes[..1]
    } else {
        &bytes[..]
    };
    let unused = used.last().map_or(0, |b| b.trailing_zeros()) as u8;
    let mut der = vec![0x03, used.len() as u8 + 1, unused];
    der.extend_from_slice(used);
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 15], der);
    ext.set_criticality(true);
    ext
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(30);
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Self {
        let dir = TempDir::new("pki-sign");
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, "Stadt Musterhausen Test-CA");
        p.distinguished_name
            .push(DnType::OrganizationName, "Stadt Musterhausen");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p);
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();

        // The TSA: EKU timeStamping, critical (RFC 3161 §2.3).
        let tsa_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "Test-TSA");
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // SEQUENCE { id-kp-timeStamping }
        let eku = vec![
            0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
        ];
        let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], eku);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
        validity(&mut p);
        let tsa = p.signed_by(&tsa_key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("tsa.pem"), tsa.pem()).unwrap();
        std::fs::write(dir.join("tsa.key"), tsa_key.serialize_pem()).unwrap();
        Self {
            dir,
            ca,
            ca_key,
            n: Default::default(),
        }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A seal certificate for the public key `spki` (DER) with KU
    /// digitalSignature + nonRepudiation, written as `seal-N.pem`; its path.
    pub fn seal_cert_for_spki(&self, spki: &[u8]) -> PathBuf {
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, "Stadt Musterhausen, Bürgeramt");
        p.distinguished_name
            .push(DnType::OrganizationName, "Stadt Musterhausen");
        p.distinguished_name.push(DnType::CountryName, "DE");
        // digitalSignature (bit 0) + nonRepudiation (bit 1)
        p.custom_extensions = vec![key_usage(&[0, 1])];
        validity(&mut p);
        let cert = p.signed_by(&public, &self.ca, &self.ca_key).unwrap();
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!("seal-{n}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }

    /// A seal certificate with the given key usages, for negative tests.
    pub fn cert_with_usages_for_spki(&self, spki: &[u8], usages: &[u8]) -> CertificateDer<'static> {
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "wrong usage");
        p.custom_extensions = vec![key_usage(usages)];
        validity(&mut p);
        let cert = p.signed_by(&public, &self.ca, &self.ca_key).unwrap();
        CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()
    }

    /// Starts a local TSA; returns its URL. The server thread lives as long
    /// as the test process (it only listens on 127.0.0.1).
    pub fn start_tsa(&self) -> String {
        require("openssl", "openssl");
        let d = self.dir.path().to_path_buf();
        std::fs::write(d.join("tsaserial"), "01\n").unwrap();
        std::fs::write(
            d.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {dir}\nserial = $dir/tsaserial\n\
                 crypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n\
                 signer_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
                 digests = sha256, sha384, sha512\naccuracy = secs:1\nordering = yes\ntsa_name = yes\n\
                 ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
                dir = d.display()
            ),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/tsa", listener.local_addr().unwrap());
        let lock = Arc::new(Mutex::new(()));
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let _g = lock.lock().unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let q = d.join(format!("q{i}.tsq"));
                let r = d.join(format!("r{i}.tsr"));
                std::fs::write(&q, &body).unwrap();
                let ok = Command::new("openssl")
                    .args(["ts", "-reply", "-config"])
                    .arg(d.join("tsa.cnf"))
                    .arg("-queryfile")
                    .arg(&q)
                    .arg("-out")
                    .arg(&r)
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                let resp = if ok {
                    let reply = std::fs::read(&r).unwrap();
                    let mut h = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        reply.len()
                    )
                    .into_bytes();
                    h.extend(reply);
                    h
                } else {
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                };
                let _ = conn.write_all(&resp);
            }
        });
        url
    }
}

/// A one-page PDF written by hand (classic xref table, no /Info, no /ID).
pub fn minimal_pdf() -> Vec<u8> {
    let content = b"BT /F1 24 Tf 72 720 Td (Bescheid der Stadt) Tj ET";
    let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(content);
    stream.extend_from_slice(b"\nendstream");
    let objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
        stream,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offs = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offs.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).bytes());
        out.extend(o);
        out.extend(b"\nendobj\n");
    }
    let x = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).bytes());
    for o in offs {
        out.extend(format!("{o:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{x}\n%%EOF\n",
            objs.len() + 1
        )
        .bytes(),
    );
    out
}

/// The test PDFs: (name, bytes).
pub fn test_pdfs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("minimal", minimal_pdf()),
        (
            "cairo",
            std::fs::read(test_file("fixtures/cairo.pdf")).unwrap(),
        ),
        (
            "qpdf-objstm",
            std::fs::read(test_file("fixtures/qpdf-objstm.pdf")).unwrap(),
        ),
    ]
}

/// An NSS database trusting the test CA, for `pdfsig`.
pub fn nss_db(pki: &Pki) -> String {
    require("pdfsig", "poppler-utils");
    require("certutil", "libnss3-tools");
    let db = pki.dir.join("nss");
    if !db.exists() {
        std::fs::create_dir_all(&db).unwrap();
        let spec = format!("sql:{}", db.display());
        let (ok, out) = run(Command::new("certutil").args(["-N", "-d", &spec, "--empty-password"]));
        assert!(ok, "{out}");
        let (ok, out) = run(Command::new("certutil")
            .args(["-A", "-d", &spec, "-n", "root", "-t", "CT,C,C", "-i"])
            .arg(pki.ca_pem()));
        assert!(ok, "{out}");
    }
    format!("sql:{}", db.display())
}

/// `pdfsig` on a file: its output. (pdfsig exits 0 even on a digest
/// mismatch, so callers match the text.)
pub fn pdfsig(pki: &Pki, file: &Path) -> String {
    let db = nss_db(pki);
    let (_, out) = run(Command::new("pdfsig").arg("-nssdir").arg(&db).arg(file));
    out
}

/// Flips one byte inside the signed part of a signed PDF (in our field's
/// name, so the file still parses).
pub fn tamper_pdf(signed: &[u8]) -> Vec<u8> {
    let mut t = signed.to_vec();
    let pos = t
        .windows(8)
        .rposition(|w| w == b"(Siegel-")
        .expect("our field name");
    t[pos + 1] = b'Z';
    t
}

/// `openssl cms -verify -cades` of a detached signature.
pub fn openssl_cms_verify(pki: &Pki, sig: &[u8], content: &[u8], dir: &TempDir) -> (bool, String) {
    require("openssl", "openssl");
    std::fs::write(dir.join("sig.p7s"), sig).unwrap();
    std::fs::write(dir.join("content"), content).unwrap();
    run(Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-cades", "-inform", "DER", "-in",
        ])
        .arg(dir.join("sig.p7s"))
        .arg("-content")
        .arg(dir.join("content"))
        .arg("-CAfile")
        .arg(pki.ca_pem())
        .args(["-out", "/dev/null"]))
}

/// pyHanko's detached CMS validation of `sig.p7s` in `dir`.
pub fn pyhanko_cms(pki: &Pki, dir: &TempDir, content: &[u8], timestamp: bool) -> (bool, String) {
    std::fs::write(dir.join("content"), content).unwrap();
    let (sig, content, ca) = (dir.join("sig.p7s"), dir.join("content"), pki.ca_pem());
    let mut args = vec![
        "cms",
        sig.to_str().unwrap(),
        content.to_str().unwrap(),
        ca.to_str().unwrap(),
    ];
    if timestamp {
        args.push("--timestamp");
    }
    verify_py(&args)
}

/// PAdES checks with the independent tools: pdfsig, pyHanko, OpenSSL's
/// print of the CMS; and the same file tampered ([`tamper_pdf`]) must fail
/// pdfsig and pyHanko. (Callers add stadttor's own verifier.)
pub fn check_pades_independent(pki: &Pki, dir: &TempDir, name: &str, signed: &[u8], with_ts: bool) {
    let file = dir.join(format!("{name}.pdf"));
    std::fs::write(&file, signed).unwrap();
    // poppler
    let out = pdfsig(pki, &file);
    assert!(
        out.contains("Signature is Valid.") && out.contains("Certificate is Trusted."),
        "pdfsig {name}: {out}"
    );
    assert!(
        out.contains("Total document signed"),
        "pdfsig {name}: {out}"
    );
    assert!(out.contains("ETSI.CAdES.detached"), "pdfsig {name}: {out}");
    // pyHanko (also: no signingTime, signingCertificateV2 present)
    let ca = pki.ca_pem();
    let mut args = vec!["pades", file.to_str().unwrap(), ca.to_str().unwrap()];
    if with_ts {
        args.push("--timestamp");
    }
    let (ok, out) = verify_py(&args);
    assert!(ok, "pyHanko {name}: {out}");
    // OpenSSL's view of the embedded CMS.
    let cms_file = dir.join(format!("{name}.cms"));
    let pos = signed
        .windows(11)
        .rposition(|w| w == b"/Contents <")
        .unwrap()
        + 11;
    let end = pos + signed[pos..].iter().position(|c| *c == b'>').unwrap();
    // The /Contents placeholder is zero-padded; the CMS ends where its
    // outer DER length says (trimming trailing zeros would also cut a
    // real final 0x00 byte).
    let hex = std::str::from_utf8(&signed[pos..end]).unwrap();
    let padded: Vec<u8> = (0..hex.len() - hex.len() % 2)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let der = padded[..der_len(&padded)].to_vec();
    std::fs::write(&cms_file, &der).unwrap();
    let (ok, printed) = run(Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(&cms_file));
    assert!(ok, "{printed}");
    // Our signer's signed attributes (a timestamp token's own, printed
    // under unsignedAttrs, may have a signingTime).
    let ours = printed.split("unsignedAttrs").next().unwrap();
    let attrs = ours
        .split("signedAttrs")
        .nth(1)
        .expect("signedAttrs printed");
    assert!(!attrs.contains("signingTime"), "{attrs}");
    assert!(attrs.contains("signingCertificateV2"), "{attrs}");

    // Tampered: both verifiers say so.
    let tampered = tamper_pdf(signed);
    let tfile = dir.join(format!("{name}-tampered.pdf"));
    std::fs::write(&tfile, &tampered).unwrap();
    let out = pdfsig(pki, &tfile);
    assert!(
        out.contains("Digest Mismatch") || out.contains("Signature is Invalid"),
        "pdfsig accepted tampered {name}: {out}"
    );
    assert!(!out.contains("Signature is Valid."), "{out}");
    let (ok, out) = verify_py(&["pades", tfile.to_str().unwrap(), ca.to_str().unwrap()]);
    assert!(!ok, "pyHanko accepted tampered {name}: {out}");
}

/// Total length (header + content) of the DER value at the start of `b`.
fn der_len(b: &[u8]) -> usize {
    assert_eq!(b[0], 0x30, "CMS starts with a SEQUENCE");
    match b[1] {
        n if n < 0x80 => 2 + n as usize,
        n => {
            let k = (n & 0x7f) as usize;
            let len = b[2..2 + k]
                .iter()
                .fold(0usize, |a, x| (a << 8) | *x as usize);
            2 + k + len
        }
    }
}
