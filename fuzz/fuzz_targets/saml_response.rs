//! SAML responses and IdP metadata: `stadttor_saml::response::read_xml`
//! on arbitrary bytes (and `read` on them as the base64 form field), with
//! the fixed expectations of the login the seeds answer; and
//! `stadttor_saml::IdpMetadata::parse`, unpinned and pinned. This drives
//! the C shim (libxml2's strict parse, ID registration, libxmlsec1's
//! signature check, the covered bytes handed back) and the Rust checks
//! behind it.
//!
//! The seeds (`fuzz/seeds/saml_response/`) are real responses of the test
//! IdP, a valid one and threat variants, all answering `_fuzz-request`,
//! and its metadata, whose signing certificate is the one pinned here, so
//! the seeds' signatures verify and the fuzzer starts past them. No
//! decryption key is given: an encrypted assertion stops at the key, and
//! no input can carry a plain assertion the IdP signed (it only signs
//! assertions it then encrypts), so every read must fail; one that
//! succeeds is a forgery that went through.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use stadttor_saml::response::{self, Expect};
use stadttor_saml::IdpMetadata;

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";
const REQUEST: &str = "_fuzz-request";
/// When the seeds were recorded (inside their validity window).
const NOW: u64 = 1_796_679_560;
/// The test IdP's metadata the seeds were recorded with.
const METADATA: &[u8] = include_bytes!("../seeds/saml_response/metadata.xml");

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

static IDP: LazyLock<IdpMetadata> = LazyLock::new(|| {
    IdpMetadata::parse(METADATA, None, now()).expect("the recorded IdP metadata parses")
});

fn expect(require_encryption: bool) -> Expect<'static> {
    Expect {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: &IDP.entity_id,
        idp_certs: &IDP.signing_certs,
        request_id: REQUEST,
        now: now(),
        skew: Duration::from_secs(60),
        require_encryption,
    }
}

fuzz_target!(|data: &[u8]| {
    // BundID (encryption required) and a generic IdP (plain assertions
    // allowed, so their signature check runs too).
    for require_encryption in [true, false] {
        if let Ok(a) = response::read_xml(data, &expect(require_encryption), None) {
            panic!("a response without an IdP-signed assertion was accepted: {a:?}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(response::read(text, &expect(true), None).is_err());
    }
    let _ = IdpMetadata::parse(data, None, now());
    let _ = IdpMetadata::parse(data, Some(&IDP.signing_certs), now());
});
