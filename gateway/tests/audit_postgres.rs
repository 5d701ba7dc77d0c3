//! Two gateways share one audit log in PostgreSQL: both record every request,
//! and the exported log verifies as one unforked history.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use stadttor_audit::verify::{verify_dir, LogReader};
use stadttor_audit::VerifierKey;
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::{Gateway, TempDir, TestPki};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

fn pg_url() -> String {
    std::env::var("STADTTOR_AUDIT_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_unforked_log_in_postgresql() {
    let schema = format!("stadttor_e2e_{}", std::process::id());
    let b = Backend::start("app").await;
    let dir = TempDir::new("audit-pg");
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = dir.path().join("audit.der");
    std::fs::write(&key, pkcs8.as_ref()).unwrap();
    let pseudo = dir.write_secret("pseudonym.key", "0123456789abcdef0123456789abcdef-shared");
    let audit = format!(
        "[audit]\npostgres_url = \"{}\"\npostgres_schema = \"{schema}\"\norigin = \"stadttor.test/cluster\"\nkey = \"file:{}\"\npseudonym_key_file = {:?}\ncheckpoint_period = \"200ms\"\n",
        pg_url(),
        key.display(),
        pseudo.display().to_string()
    );
    let mut gws = Vec::new();
    let mut pkis = Vec::new();
    for i in 0..2 {
        let d = TempDir::new(&format!("gw{i}"));
        let pki = TestPki::new(&d, "main", &[]);
        let cfg = format!(
            "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n{}\n[[upstreams]]\nname = \"app\"\naddresses = [\"{}\"]\n[[routes]]\nname = \"app\"\nupstream = \"app\"\n{audit}",
            pki.certificate_toml(&[]),
            b.addr
        );
        gws.push((Gateway::start(BIN, &d, &cfg), d));
        pkis.push(pki);
    }
    let mut ids = Vec::new();
    for round in 0..10 {
        for (i, (gw, _)) in gws.iter().enumerate() {
            let c = Arc::new(client::tls_config(&pkis[i].ca_pem, None, Proto::H1));
            let r = client::get(c, gw.addr(), "localhost", Proto::H1, &format!("/r{round}"))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
        }
    }
    let vkey = {
        let logs = gws[0].0.logs();
        let start = logs.find("verifier_key=").unwrap() + "verifier_key=".len();
        let k: String = logs[start..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        VerifierKey::parse(&k).unwrap()
    };
    for (gw, _) in gws.iter_mut() {
        gw.signal("TERM");
        assert!(gw.wait_exit(Duration::from_secs(15)).unwrap().success());
    }
    let out = dir.path().join("export");
    let cfg = stadttor_audit::pg::PgConfig::new(pg_url(), &schema, "stadttor.test/cluster");
    let o = out.clone();
    // The sync PostgreSQL client runs its own runtime: off the async worker.
    tokio::task::spawn_blocking(move || stadttor_audit::pg::export(&cfg, &o).unwrap())
        .await
        .unwrap();
    let report = verify_dir(&out, &vkey).unwrap();
    let reader = LogReader::open(&out, &vkey).unwrap();
    let mut text = Vec::new();
    reader.export(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let key_use = text
        .lines()
        .filter(|l| l.contains("\"kind\":\"key.use\""))
        .count() as u64;
    assert!(
        key_use >= 2,
        "each gateway reports its keys' use on shutdown"
    );
    assert_eq!(
        report.entries - key_use,
        2 + 20 + 2,
        "2 starts, 20 requests, 2 stops, besides key use"
    );
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "request {id} missing from the shared log"
        );
    }
    // Clean up the schema.
    tokio::task::spawn_blocking(move || {
        let mut db = postgres::Client::connect(&pg_url(), postgres::NoTls).unwrap();
        db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    })
    .await
    .unwrap();
}
