//! Signature formats, gateway-side cost: CMS of 10 KiB, PAdES of a 1 MiB
//! PDF, RFC 9421 for a 10 KiB body, with a software P-256 key.
//!
//! `*/no-key` variants use a stand-in creator that returns a fixed
//! signature: they measure what the gateway spends (parsing, hashing,
//! DER, PDF update) without the key's signing time, which for a TPM is
//! tens of milliseconds and dominates everything else.
//!
//!     cargo bench -p stadttor-pki --bench sign
//!
//! Measured 2026-11-26 on the shared 2-core dev machine (medians, with
//! other builds running): CMS 10 KiB 9.3 µs without the key, 33 µs with
//! a file key; PAdES 1 MiB PDF 0.87 ms without the key (target: < 5 ms),
//! 1.04 ms with a file key; RFC 9421 10 KiB 10.4 µs / 34 µs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rcgen::{BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::{Algorithm, SigningKey};
use stadttor_pki::sign::cms::{self, CmsOptions};
use stadttor_pki::sign::pades::{self, PadesOptions};
use stadttor_pki::sign::{httpsig, SealCertificate, SealCreator, SealLevel};

/// Returns a constant, well-formed ECDSA signature: no key work.
struct NoKey {
    spki: Vec<u8>,
    sig: Vec<u8>,
}

impl SealCreator for NoKey {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EcdsaP256Sha256
    }
    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, stadttor_pki::Error> {
        Ok(self.sig.clone())
    }
    fn reference(&self) -> &str {
        "bench:no-key"
    }
    fn level(&self) -> SealLevel {
        SealLevel::Advanced
    }
}

fn setup() -> (FileKey, NoKey, SealCertificate) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let key = FileKey::from_pkcs8("file:bench".into(), pkcs8.as_ref()).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "bench CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "bench seal");
    // keyUsage digitalSignature + nonRepudiation, critical
    let mut ku = CustomExtension::from_oid_content(&[2, 5, 29, 15], vec![0x03, 0x02, 0x06, 0xc0]);
    ku.set_criticality(true);
    p.custom_extensions = vec![ku];
    let public = rcgen::SubjectPublicKeyInfo::from_der(SigningKey::public_key_spki(&key)).unwrap();
    let cert = p.signed_by(&public, &ca, &ca_key).unwrap();
    let chain = vec![
        CertificateDer::from(cert.der().to_vec()),
        CertificateDer::from(ca.der().to_vec()),
    ];
    let seal = SealCertificate::new(&chain, &key, time::OffsetDateTime::now_utc()).unwrap();
    let nokey = NoKey {
        spki: SigningKey::public_key_spki(&key).to_vec(),
        sig: SigningKey::sign(&key, b"x").unwrap(),
    };
    (key, nokey, seal)
}

/// A one-page PDF of about `size` bytes (a big content stream).
fn pdf_of_size(size: usize) -> Vec<u8> {
    let line = b"BT /F1 12 Tf 72 720 Td (Bescheid der Stadt Musterhausen) Tj ET\n";
    let mut content = Vec::with_capacity(size);
    while content.len() + line.len() < size {
        content.extend_from_slice(line);
    }
    let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(&content);
    stream.extend_from_slice(b"\nendstream");
    let objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
        stream,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
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

fn bench(c: &mut Criterion) {
    let (key, nokey, seal) = setup();
    let body = vec![b'x'; 10 * 1024];
    let pdf = pdf_of_size(1 << 20);
    let opts = CmsOptions {
        signing_time: Some(time::OffsetDateTime::now_utc()),
        tsa: None,
    };

    let mut g = c.benchmark_group("cms-10KiB");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("file-key", |b| {
        b.iter(|| cms::sign_detached(&key, &seal, &body, &opts).unwrap())
    });
    g.bench_function("no-key", |b| {
        b.iter(|| cms::sign_detached(&nokey, &seal, &body, &opts).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("pades-1MiB");
    g.throughput(Throughput::Bytes(pdf.len() as u64));
    g.sample_size(30);
    g.bench_function("file-key", |b| {
        b.iter(|| pades::sign_pdf(&key, &seal, &pdf, &PadesOptions::default()).unwrap())
    });
    g.bench_function("no-key", |b| {
        b.iter(|| pades::sign_pdf(&nokey, &seal, &pdf, &PadesOptions::default()).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("rfc9421-10KiB");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let fields = [("content-type", "application/json")];
    g.bench_function("file-key", |b| {
        b.iter(|| httpsig::sign_response(&key, "k", 1, 200, &fields, &body).unwrap())
    });
    g.bench_function("no-key", |b| {
        b.iter(|| httpsig::sign_response(&nokey, "k", 1, 200, &fields, &body).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
