//! The responses recorded from the test SAML IdP in `saml/benches/data/`
//! (by `examples/record_saml_data.rs`), for the benchmark `acs` and the
//! test `recorded_responses`: one reader for both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stadttor_hsm::{DecryptingKey, KeyRef, KeyStore, KeyStoreConfig};

/// `saml/benches/data`.
pub(crate) fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/data")
}

/// One line of `responses.tsv`.
pub(crate) struct Recorded {
    pub(crate) name: String,
    pub(crate) request_id: String,
    pub(crate) now: SystemTime,
    pub(crate) b64: String,
}

/// Every recorded response.
pub(crate) fn recorded() -> Vec<Recorded> {
    let tsv = std::fs::read_to_string(data().join("responses.tsv")).unwrap();
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, request_id, now, file] = f.as_slice() else {
                panic!("bad line in responses.tsv: {l}");
            };
            Recorded {
                name: (*name).to_owned(),
                request_id: (*request_id).to_owned(),
                now: UNIX_EPOCH + Duration::from_secs(now.parse().unwrap()),
                b64: std::fs::read_to_string(data().join(file)).unwrap(),
            }
        })
        .collect()
}

/// The `file:` key `file` of the data directory, as a decrypting key.
pub(crate) fn decrypting_key(file: &str) -> Arc<dyn DecryptingKey> {
    let key_ref: KeyRef = format!("file:{}", data().join(file).display())
        .parse()
        .unwrap();
    KeyStore::new(KeyStoreConfig::default())
        .resolve_decrypting(&key_ref)
        .unwrap()
}
