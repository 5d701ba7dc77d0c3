//! `docs/METRICS.md` lists exactly what `/metrics` exposes.
//!
//! The real binary runs with every part that registers metrics (listeners,
//! the admin listener, an upstream, a key, `[signing]` with its signature
//! store); one request goes through so that labelled families have series.
//! The scrape is compared with the table in METRICS.md: every exposed
//! family must be listed with its type and labels, and every listed metric
//! must be exposed (all of them are, without traffic).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::signing::Pki;
use testkit::{Gateway, TempDir, TestPki};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

/// One metric: its type and label names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Metric {
    kind: String,
    labels: BTreeSet<String>,
}

/// The metrics table of METRICS.md, by exposed name
/// (`| \`stadttor_x_total\` | counter | \`route\`, \`class\` | … |`).
fn documented(doc: &str) -> BTreeMap<String, Metric> {
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches('|').trim())
            .collect();
        let [name, kind, labels, ..] = cells.as_slice() else {
            continue;
        };
        // Only cells that are exactly one metric name (not an alert rule).
        let Some(name) = name
            .strip_prefix("`stadttor_")
            .and_then(|n| n.strip_suffix('`'))
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
        else {
            continue;
        };
        let labels = labels
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let metric = Metric {
            kind: (*kind).to_owned(),
            labels,
        };
        let name = format!("stadttor_{name}");
        assert!(
            out.insert(name.clone(), metric).is_none(),
            "{name} listed twice"
        );
    }
    out
}

/// The scraped families by exposed name: counters get `_total`, the label
/// names come from the samples (`le` of histogram buckets left out).
fn exposed(text: &str) -> BTreeMap<String, Metric> {
    let mut families: BTreeMap<String, Metric> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap();
            families.insert(
                family.to_owned(),
                Metric {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let (sample, labels) = match line.split_once('{') {
                Some((s, rest)) => (s, rest.split_once('}').unwrap().0),
                None => (line.split(' ').next().unwrap(), ""),
            };
            let family = families
                .keys()
                .filter(|f| sample.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .cloned()
                .unwrap_or_else(|| panic!("sample without a family: {line}"));
            let names = labels
                .split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
                .filter(|k| k != "le");
            families.get_mut(&family).unwrap().labels.extend(names);
        }
    }
    families
        .into_iter()
        .map(|(f, m)| {
            let name = if m.kind == "counter" {
                format!("{f}_total")
            } else {
                f
            };
            (name, m)
        })
        .collect()
}

/// A gateway with every metric-registering part and a `[signing]` table.
/// The seal PKI is returned too: its directory holds the certificate.
async fn start(dir: &TempDir, upstream: &Backend) -> (Gateway, TestPki, Pki) {
    let tls = TestPki::new(dir, "main", &[]);
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let key = dir.path().join("seal.p8");
    std::fs::write(&key, pkcs8.as_ref()).unwrap();
    let spki = FileKey::from_pkcs8("file:seal".into(), pkcs8.as_ref())
        .unwrap()
        .public_key_spki()
        .to_vec();
    let seal = Pki::new();
    let seal_pem = seal.seal_cert_for_spki(&spki);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n\n{cert}\n\n\
         [[upstreams]]\nname = \"app\"\naddresses = [\"{up}\"]\n\n\
         [signing]\nkey = \"file:{key}\"\ncertificate = {seal_pem:?}\nstore_dir = \"signatures\"\n\n\
         [[routes]]\nname = \"app\"\nupstream = \"app\"\n",
        cert = tls.certificate_toml(&[]),
        up = upstream.addr,
        key = key.display(),
        seal_pem = seal_pem.display().to_string(),
    );
    (Gateway::start(BIN, dir, &config), tls, seal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_md_lists_every_exposed_metric() {
    let dir = TempDir::new("metrics");
    let upstream = Backend::start("app").await;
    let (gw, tls, _seal) = start(&dir, &upstream).await;
    let cfg = Arc::new(client::tls_config(&tls.ca_pem, None, Proto::H1));
    let r = client::get(cfg, gw.addr(), "localhost", Proto::H1, "/hallo")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let (status, text) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200);

    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md");
    let doc = documented(&std::fs::read_to_string(doc_path).unwrap());
    let seen = exposed(&text);
    assert!(doc.len() >= 15 && seen.len() >= 15, "{doc:?}\n{seen:?}");
    let mut problems = Vec::new();
    for (name, m) in &seen {
        match doc.get(name) {
            None => problems.push(format!(
                "{name} ({}) is exposed but not in METRICS.md",
                m.kind
            )),
            Some(d) if d.kind != m.kind => problems.push(format!(
                "{name}: METRICS.md says {}, exposed as {}",
                d.kind, m.kind
            )),
            // A family without series shows no labels; one with series must
            // show exactly the documented ones.
            Some(d) if !m.labels.is_empty() && d.labels != m.labels => problems.push(format!(
                "{name}: METRICS.md says labels {:?}, exposed with {:?}",
                d.labels, m.labels
            )),
            Some(_) => {}
        }
    }
    for name in doc.keys() {
        if !seen.contains_key(name) {
            problems.push(format!("{name} is in METRICS.md but not exposed"));
        }
    }
    assert!(problems.is_empty(), "{}\n\n{text}", problems.join("\n"));
    // The labelled families the request touched did show their labels, so
    // the label check above was not vacuous.
    for name in [
        "stadttor_http_requests_total",
        "stadttor_key_signatures_total",
        "stadttor_certificate_expiry_seconds",
    ] {
        assert!(
            !seen[name].labels.is_empty(),
            "{name} has no series:\n{text}"
        );
    }
}

#[test]
fn the_scrape_parser_reads_families_types_and_labels() {
    let text = "# HELP stadttor_a A.\n# TYPE stadttor_a counter\nstadttor_a_total{name=\"x\"} 1\n\
                # TYPE stadttor_a_b gauge\nstadttor_a_b 3\n\
                # TYPE stadttor_h histogram\nstadttor_h_bucket{route=\"r\",le=\"0.5\"} 1\n# EOF\n";
    let m = exposed(text);
    assert_eq!(m["stadttor_a_total"].kind, "counter");
    assert_eq!(
        m["stadttor_a_total"].labels,
        BTreeSet::from(["name".to_owned()])
    );
    assert!(m["stadttor_a_b"].labels.is_empty());
    assert_eq!(m["stadttor_h"].labels, BTreeSet::from(["route".to_owned()]));
    let d = documented(
        "| `stadttor_a_total` | counter | `name` | x |\n| `other` | y | z |\n\
         | `stadttor_a_total > 0` | alert | x |\n",
    );
    assert_eq!(d.len(), 1);
}
