//! Records real responses of the test SAML IdP (tests/saml-idp, pysaml2 +
//! xmlsec1, BundID-like) for the benchmark and the fuzz target, so that
//! neither needs Python at run time:
//!
//! ```text
//! cargo run -p stadttor-saml --example record_saml_data -- saml/benches/data fuzz/seeds/saml_response
//! ```
//!
//! Into the first directory (`saml/benches/data/`): the IdP's metadata,
//! the SP's throwaway RSA-3072 keys and certificates (PKCS#8 PEM, made by
//! openssl for this recording only), and four BundID-like responses
//! (signed Response, `EncryptedAssertion` AES-256-GCM with RSA-OAEP key
//! transport, signed assertion, both rsa-sha256 by the IdP's RSA-3072 key),
//! listed in `responses.tsv` with the request each answers and a time
//! inside its validity window. Into the second (`fuzz/seeds/saml_response/`):
//! the IdP metadata as `metadata.xml` and decoded responses, a valid one and
//! threat variants, all answering the request `_fuzz-request`.
//!
//! Run it again when the IdP changes; the responses' windows stay valid
//! forever because the readers pass the recorded `now`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use testkit::saml_idp::{AuthnRequestSpec, SamlIdp, SpKeys, BPK2, GIVEN_NAME, MAIL, SURNAME};
use testkit::TempDir;

/// The SP of the recording (the bench and the fuzz target use the same).
const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";
/// The request every fuzz seed answers.
const FUZZ_REQUEST: &str = "_fuzz-request";

/// Bench responses: (name, user, requested attributes).
const BENCH: &[(&str, &str, &[&str])] = &[
    ("citizen-high", "citizen-high", &[BPK2, GIVEN_NAME, SURNAME]),
    (
        "citizen-substantial",
        "citizen-substantial",
        &[BPK2, GIVEN_NAME, SURNAME],
    ),
    ("citizen-low", "citizen-low", &[BPK2, GIVEN_NAME, SURNAME]),
    // Every attribute the user has (no akdb extension): the largest one.
    ("citizen-high-all-attributes", "citizen-high", &[]),
];

/// Fuzz seeds: `None` is the valid login.
const SEEDS: &[Option<&str>] = &[
    None,
    Some("expired"),
    Some("wrong-in-response-to"),
    Some("unsolicited"),
    Some("unsigned"),
    Some("unsigned-assertion"),
    Some("foreign-key"),
    Some("response-tampered"),
    Some("comment-nameid"),
    Some("sha1"),
    Some("rsa-1_5"),
    Some("xxe"),
    Some("entity-expansion"),
    Some("xsw1"),
    Some("xsw3"),
    Some("xsw5"),
    Some("xsw7"),
    Some("xsw8"),
];

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [bench_dir, seed_dir] = args.as_slice() else {
        panic!("usage: record_saml_data BENCH_DATA_DIR FUZZ_SEED_DIR");
    };
    std::fs::create_dir_all(bench_dir).unwrap();
    std::fs::create_dir_all(seed_dir).unwrap();
    let dir = TempDir::new("saml-record");
    let sp = SpKeys::generate(&dir, SP, ACS);
    let idp = SamlIdp::start(&dir, &sp);
    let metadata = idp.metadata();

    std::fs::write(bench_dir.join("idp-metadata.xml"), &metadata).unwrap();
    for (from, to) in [
        (&sp.encryption_key, "sp-encryption.key"),
        (&sp.encryption_cert, "sp-encryption.crt"),
        (&sp.signing_key, "sp-signing.key"),
        (&sp.signing_cert, "sp-signing.crt"),
    ] {
        std::fs::copy(from, bench_dir.join(to)).unwrap();
    }
    let mut tsv = String::from("# name\trequest_id\tnow_unix\tfile\n");
    for (name, user, attributes) in BENCH {
        let mut spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
        spec.id = format!("_bench-{name}");
        spec.attributes = attributes.iter().map(|a| (*a).to_owned()).collect();
        let (b64, now) = login(&sp, &idp, &spec, user, None);
        let file = format!("{name}.b64");
        std::fs::write(bench_dir.join(&file), &b64).unwrap();
        writeln!(tsv, "{name}\t{}\t{now}\t{file}", spec.id).unwrap();
        println!("{name}: {} bytes of base64", b64.len());
    }
    std::fs::write(bench_dir.join("responses.tsv"), tsv).unwrap();

    std::fs::write(seed_dir.join("metadata.xml"), &metadata).unwrap();
    for threat in SEEDS {
        let mut spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
        spec.id = FUZZ_REQUEST.to_owned();
        spec.attributes.push(MAIL.to_owned());
        let (b64, _) = login(&sp, &idp, &spec, "citizen-high", *threat);
        let xml = B64.decode(b64.as_bytes()).unwrap();
        let name = format!("response-{}.xml", threat.unwrap_or("valid"));
        std::fs::write(seed_dir.join(name), xml).unwrap();
    }
    println!("wrote {} and {}", bench_dir.display(), seed_dir.display());
}

/// One login at the IdP; returns the base64 `SAMLResponse` and the Unix
/// time it arrived (inside its validity window).
fn login(
    sp: &SpKeys,
    idp: &SamlIdp,
    spec: &AuthnRequestSpec,
    user: &str,
    threat: Option<&str>,
) -> (String, u64) {
    let req = sp.signed_authn_request(idp, spec);
    let mut query = vec![("user", user)];
    if let Some(t) = threat {
        query.push(("threat", t));
    }
    let answer = idp.post_sso(&req, Some("relay"), &query);
    assert_eq!(answer.status, 200, "IdP: {}", answer.body);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (answer.form_field("SAMLResponse").unwrap(), now)
}
