//! What a SAML login costs the gateway's CPU, with `file:` keys
//! (`cargo bench -p stadttor-saml --bench acs`):
//!
//! * `acs/read/*`: `response::read` on the BundID-like responses recorded
//!   from the test IdP in `benches/data/` (base64 decode, strict parse,
//!   Response signature, RSA-OAEP unwrap of the content key with the SP's
//!   RSA-3072 key, AES-256-GCM decryption, assertion signature, checks);
//! * `acs/rsa-oaep-unwrap`: the key unwrap alone, its largest part;
//! * `authn-request/sign`: a BundID AuthnRequest (akdb extension, level)
//!   signed RSA-PSS by the SP's RSA-3072 key, with its certificate.
//!
//! Before criterion, each read is run `CPU_CALLS` times in a row and the
//! process's CPU time (user + system, `/proc/self/stat`) divided by the
//! calls is printed: the figure the budget is about (issue 16: an ACS
//! request under 3 ms of gateway CPU with a file key).

#![allow(missing_docs)] // criterion_group! generates an undocumented function
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/recorded.rs"]
mod recorded;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use stadttor_hsm::{KeyRef, KeyStore, KeyStoreConfig, Oaep};
use stadttor_saml::profile::{bundid_attribute, AkdbRequest};
use stadttor_saml::response::{self, Expect};
use stadttor_saml::{AuthnRequest, Comparison, IdpMetadata};

use recorded::{data, decrypting_key as file_key, recorded};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";
const CPU_CALLS: u32 = 1000;

/// User + system CPU time of this process (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// The RSA-OAEP `CipherValue` of the response's `EncryptedKey` (the one
/// that decodes to 384 bytes, an RSA-3072 block).
fn encrypted_key(b64: &str) -> Vec<u8> {
    let xml = String::from_utf8(B64.decode(b64.trim()).unwrap()).unwrap();
    xml.split("CipherValue>")
        .filter_map(|s| s.strip_suffix("</xenc:"))
        .map(|v| {
            B64.decode(v.split_whitespace().collect::<String>())
                .unwrap()
        })
        .find(|v| v.len() == 384)
        .expect("an RSA-3072 EncryptedKey")
}

fn acs(c: &mut Criterion) {
    let key = file_key("sp-encryption.key");
    let metadata = std::fs::read(data().join("idp-metadata.xml")).unwrap();
    for r in recorded() {
        let idp = IdpMetadata::parse(&metadata, None, r.now).unwrap();
        let expect = Expect {
            sp_entity_id: SP,
            acs_url: ACS,
            idp_entity_id: &idp.entity_id,
            idp_certs: &idp.signing_certs,
            request_id: &r.request_id,
            now: r.now,
            skew: Duration::from_secs(60),
            require_encryption: true,
        };
        let a = response::read(&r.b64, &expect, Some(key.as_ref())).unwrap();
        assert!(!a.name_id.is_empty());
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        for _ in 0..CPU_CALLS {
            black_box(response::read(black_box(&r.b64), &expect, Some(key.as_ref())).unwrap());
        }
        let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
        println!(
            "acs/read/{} ({} B base64, {} attributes): {:.3} ms CPU, {:.3} ms wall per read over {CPU_CALLS} reads",
            r.name,
            r.b64.len(),
            a.attributes.len(),
            cpu.as_secs_f64() * 1e3 / f64::from(CPU_CALLS),
            wall.as_secs_f64() * 1e3 / f64::from(CPU_CALLS),
        );
        c.bench_function(&format!("acs/read/{}", r.name), |b| {
            b.iter(|| response::read(black_box(&r.b64), &expect, Some(key.as_ref())).unwrap())
        });
    }
    let first = &recorded()[0];
    let ek = encrypted_key(&first.b64);
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    for _ in 0..CPU_CALLS {
        black_box(key.decrypt_oaep(Oaep::Sha1, black_box(&ek)).unwrap());
    }
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    println!(
        "acs/rsa-oaep-unwrap (RSA-3072 file key): {:.3} ms CPU, {:.3} ms wall per unwrap over {CPU_CALLS}",
        cpu.as_secs_f64() * 1e3 / f64::from(CPU_CALLS),
        wall.as_secs_f64() * 1e3 / f64::from(CPU_CALLS),
    );
    c.bench_function("acs/rsa-oaep-unwrap (RSA-3072 file key)", |b| {
        b.iter(|| key.decrypt_oaep(Oaep::Sha1, black_box(&ek)).unwrap())
    });
}

fn authn_request(c: &mut Criterion) {
    let key_ref: KeyRef = format!("file:{}", data().join("sp-signing.key").display())
        .parse()
        .unwrap();
    let key = KeyStore::new(KeyStoreConfig::default())
        .resolve(&key_ref)
        .unwrap();
    let pem = std::fs::read_to_string(data().join("sp-signing.crt")).unwrap();
    let cert = B64
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let attributes: Vec<String> = ["bpk2", "given_name", "family_name"]
        .iter()
        .map(|s| bundid_attribute(s).unwrap().to_owned())
        .collect();
    let request = AuthnRequest {
        destination: "https://id.bund.de/idp/profile/SAML2/POST/SSO".into(),
        sp_entity_id: SP.into(),
        acs_url: ACS.into(),
        force_authn: false,
        authn_context: Some((Comparison::Minimum, vec!["STORK-QAA-Level-3".into()])),
        extensions: Some(
            AkdbRequest {
                attributes: &attributes,
                methods: &[],
                organization_display_name: Some("Stadt Musterstadt"),
                online_service_id: None,
            }
            .to_xml(),
        ),
        name_id_format: None,
    };
    let now = SystemTime::now();
    let signed = request.sign(key.as_ref(), Some(&cert), now).unwrap();
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    for _ in 0..CPU_CALLS {
        black_box(request.sign(key.as_ref(), Some(&cert), now).unwrap());
    }
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    println!(
        "authn-request/sign ({} B XML, RSA-PSS, RSA-3072 file key): {:.3} ms CPU, {:.3} ms wall per request over {CPU_CALLS}",
        signed.xml.len(),
        cpu.as_secs_f64() * 1e3 / f64::from(CPU_CALLS),
        wall.as_secs_f64() * 1e3 / f64::from(CPU_CALLS),
    );
    c.bench_function("authn-request/sign (RSA-PSS, RSA-3072 file key)", |b| {
        b.iter(|| request.sign(key.as_ref(), Some(&cert), now).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = acs, authn_request
}
criterion_main!(benches);
