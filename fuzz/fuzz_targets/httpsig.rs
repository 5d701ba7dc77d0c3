//! RFC 9421 response signatures: `stadttor_pki::sign::httpsig::verify_response`
//! (structured-field parser, signature base, Content-Digest) on arbitrary
//! responses. Input: first line the status, then `name: value` header lines,
//! a blank line, the body. Every key id resolves to a fixed Ed25519 key, so
//! the fuzzer reaches the signature check. Invariant: a response signed by
//! `sign_response` over the same fields and body verifies.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey as _;
use stadttor_pki::sign::httpsig::{sign_response, verify_response};

const NOW: u64 = 1_790_000_000;

/// Ed25519 from a fixed seed (PKCS#8 v1), so crashes reproduce.
static KEY: LazyLock<FileKey> = LazyLock::new(|| {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[42u8; 32]);
    FileKey::from_pkcs8("fuzz".into(), &der).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.trim().parse::<u16>().ok())
        .unwrap_or(200);
    let fields: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v))
        .collect();
    let spki = KEY.public_key_spki().to_vec();
    let resolve = |_: &str| Some(spki.clone());
    let _ = verify_response(
        status,
        &fields,
        body.as_bytes(),
        &resolve,
        NOW,
        Duration::from_secs(300),
    );

    // Round trip over the same fields, minus the signature headers.
    let mut clean: Vec<(&str, &str)> = fields
        .iter()
        .copied()
        .filter(|(n, _)| {
            !["signature", "signature-input", "content-digest"]
                .iter()
                .any(|s| n.eq_ignore_ascii_case(s))
        })
        .collect();
    if let Ok(h) = sign_response(&*KEY, "k1", NOW, status, &clean, body.as_bytes()) {
        clean.push(("Content-Digest", &h.content_digest));
        clean.push(("Signature-Input", &h.signature_input));
        clean.push(("Signature", &h.signature));
        let v = verify_response(
            status,
            &clean,
            body.as_bytes(),
            &resolve,
            NOW,
            Duration::from_secs(300),
        );
        assert!(v.is_ok(), "own signature does not verify: {v:?} {clean:?}");
    }
});
