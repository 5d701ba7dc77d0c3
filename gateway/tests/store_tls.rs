//! The state stores over TLS against real servers that accept nothing
//! else: a PostgreSQL cluster with `hostssl`-only `pg_hba.conf` and
//! SCRAM (`testkit::stores::TlsPostgres`, its own cluster on a free port,
//! not the shared one on 5432) and a `redis-server` with no plaintext port
//! (`testkit::stores::TlsRedis`). Certificates come from a test CA.
//!
//! What must hold: the policy store, the session store and the audit log
//! connect with `sslmode=verify-full` (with `channel_binding=require`, so
//! the SCRAM exchange is bound to the TLS session); a server whose
//! certificate comes from another CA, or names another host, is refused
//! with an error that says so; a plaintext client is refused by the server
//! (so the successes really were TLS).

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stadttor_gateway::config::StoreTls;
use stadttor_pki::devca::DevCa;
use stadttor_sessions::{SessionStore, StoreConfig, StoreOptions};
use testkit::backend::Backend;
use testkit::client::{self, Proto};
use testkit::stores::TlsPostgres;
use testkit::{Gateway, TempDir, TestPki};

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

/// A CA, a server certificate for `names` and a CA file for clients.
struct Pki {
    dir: TempDir,
    ca: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn pki(tag: &str, names: &[&str]) -> Pki {
    let dir = TempDir::new(tag);
    let ca = DevCa::generate(&format!("store CA {tag}")).unwrap();
    let server = ca.issue_server(names).unwrap();
    Pki {
        ca: dir.write("ca.pem", &ca.cert_pem()),
        cert_pem: server.cert_pem,
        key_pem: server.key_pem,
        dir,
    }
}

fn tls(ca: &std::path::Path, verify_name: bool) -> Option<StoreTls> {
    Some(StoreTls {
        ca_file: ca.to_owned(),
        verify_name,
    })
}

fn opts() -> StoreOptions {
    StoreOptions {
        max_staleness: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        op_timeout: Duration::from_secs(5),
        purge_interval: Duration::from_secs(60),
    }
}

/// The test's own view of the cluster, over its trusted Unix socket.
fn local(pg: &TlsPostgres) -> postgres::Client {
    postgres::Client::connect(&pg.local_dsn(), postgres::NoTls).unwrap()
}

/// The session store's configuration with the gateway's TLS material.
fn session_cfg(url: String, tls: Option<StoreTls>) -> StoreConfig {
    StoreConfig::Postgres {
        url,
        schema: "tls_sessions".into(),
        tls: tls.map(|t| stadttor_gateway::store_tls::client_config(&t).unwrap()),
    }
}

/// The policy store through the gateway's own function.
fn open_policy_store(
    url: &str,
    tls: Option<StoreTls>,
) -> Result<Arc<dyn stadttor_policies::PolicyStore>, stadttor_policies::StoreError> {
    stadttor_gateway::policy::open_store(&stadttor_gateway::config::PolicyStorage::Postgres {
        url: url.to_owned(),
        schema: "tls_policies".into(),
        tls,
    })
}

/// The audit log's PostgreSQL storage with the gateway's connector.
fn open_audit(url: &str, tls: Option<StoreTls>) -> Result<(), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let dir = TempDir::new("audit-key");
    let path = dir.path().join("audit.der");
    std::fs::write(&path, pkcs8.as_ref()).unwrap();
    let key = stadttor_hsm::KeyStore::new(Default::default())
        .resolve(&format!("file:{}", path.display()).parse().unwrap())
        .unwrap();
    let mut pc = stadttor_audit::pg::PgConfig::new(url, "tls_audit", "stadttor.test/tls");
    pc.connector = stadttor_gateway::store_tls::sync_connector(tls.as_ref()).unwrap();
    let chain = |e: stadttor_audit::Error| stadttor_gateway::respond::error_chain(&e);
    let (log, _) = stadttor_audit::pg::PgLog::open(pc, key).map_err(chain)?;
    log.close().map_err(chain)
}

/// The real binary with its audit log and policy store in the TLS-only
/// cluster: requests are served and recorded, and every TCP connection
/// the gateway holds is TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_keeps_audit_log_and_policies_in_postgresql_over_verified_tls() {
    let p = pki("pg-gw", &["localhost", "127.0.0.1"]);
    let pg = TlsPostgres::start("pg-gw", &p.cert_pem, &p.key_pem);
    let url = pg.url("localhost", "sslmode=verify-full&channel_binding=require");

    // A plaintext client gets nowhere: the successes below are TLS.
    let plain = tokio::task::block_in_place(|| {
        postgres::Client::connect(&pg.url("127.0.0.1", "sslmode=disable"), postgres::NoTls)
    })
    .err()
    .expect("plaintext must be refused");
    let plain = stadttor_gateway::respond::error_chain(&plain);
    assert!(plain.contains("no encryption"), "{plain}");

    let b = Backend::start("app").await;
    let d = TempDir::new("gw-tls-stores");
    let gw_pki = TestPki::new(&d, "main", &[]);
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = d.path().join("audit.der");
    std::fs::write(&key, pkcs8.as_ref()).unwrap();
    let pseudo = d.write_secret("pseudonym.key", "0123456789abcdef0123456789abcdef-tls");
    let cfg = format!(
        "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n{}\n\
         [[upstreams]]\nname = \"app\"\naddresses = [\"{}\"]\n\
         [[routes]]\nname = \"app\"\nupstream = \"app\"\n\
         [policies]\nstore = \"{url}\"\nstore_ca_file = {:?}\n\
         [audit]\npostgres_url = \"{url}\"\npostgres_ca_file = {:?}\n\
         origin = \"stadttor.test/tls\"\nkey = \"file:{}\"\npseudonym_key_file = {:?}\n\
         checkpoint_period = \"200ms\"\n",
        gw_pki.certificate_toml(&[]),
        b.addr,
        p.ca.display().to_string(),
        p.ca.display().to_string(),
        key.display(),
        pseudo.display().to_string()
    );
    let mut gw = Gateway::start(BIN, &d, &cfg);
    let c = Arc::new(client::tls_config(&gw_pki.ca_pem, None, Proto::H1));
    for i in 0..5 {
        let r = client::get(
            c.clone(),
            gw.addr(),
            "localhost",
            Proto::H1,
            &format!("/r{i}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", gw.logs());
    }
    let (n, all_tls): (i64, bool) = tokio::task::spawn_blocking({
        let dsn = pg.local_dsn();
        move || {
            let mut c = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
            let row = c
                .query_one(
                    "SELECT count(*), coalesce(bool_and(s.ssl), false)
                       FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                      WHERE a.client_addr IS NOT NULL",
                    &[],
                )
                .unwrap();
            (row.get(0), row.get(1))
        }
    })
    .await
    .unwrap();
    // The audit writer and the policy store (and its LISTEN connection).
    assert!(n >= 2, "only {n} TCP connections from the gateway");
    assert!(all_tls, "a connection without TLS");
    // A policy store that could not be opened at start (a slow, busy
    // machine) is retried in the background; wait for its tables before
    // stopping the gateway rather than racing the retry.
    let dsn = pg.local_dsn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dsn = dsn.clone();
        let tables: i64 = tokio::task::spawn_blocking(move || {
            let mut c = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
            c.query_one(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = 'stadttor_policies'",
                &[],
            )
            .unwrap()
            .get(0)
        })
        .await
        .unwrap();
        if tables == 3 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(15)).unwrap().success());

    let (size, tables) = tokio::task::block_in_place(|| {
        let mut c = local(&pg);
        let size: i64 = c
            .query_one("SELECT size FROM stadttor_audit.log_head", &[])
            .unwrap()
            .get(0);
        let tables: i64 = c
            .query_one(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = 'stadttor_policies'",
                &[],
            )
            .unwrap()
            .get(0);
        (size, tables)
    });
    assert!(size >= 5, "{size} audit entries for 5 requests");
    assert_eq!(tables, 3, "the policy store's tables");
}

/// The session store (tokio-postgres) with `verify-full` and channel
/// binding: markers work, and its connections are TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_store_reaches_postgresql_over_verified_tls() {
    let p = pki("pg-sess", &["localhost", "127.0.0.1"]);
    let pg = TlsPostgres::start("pg-sess", &p.cert_pem, &p.key_pem);
    let url = pg.url("127.0.0.1", "channel_binding=require");
    let store = SessionStore::open(&session_cfg(url, tls(&p.ca, true)), opts())
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    assert!(store.once("state", "k1", ttl).await.unwrap());
    assert!(!store.once("state", "k1", ttl).await.unwrap(), "a replay");
    store.close().await;
}

/// Threat: someone answers in the database's place (DNS, ARP, a rogue
/// server) with a certificate of their own CA. Every store refuses, and
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_refuse_a_postgresql_server_certified_by_another_ca() {
    let p = pki("pg-rogue", &["localhost", "127.0.0.1"]);
    let other = pki("pg-other", &["localhost"]);
    let pg = TlsPostgres::start("pg-rogue", &p.cert_pem, &p.key_pem);
    let url = pg.url("localhost", "");
    let wrong = tls(&other.ca, true);

    let e = SessionStore::open(&session_cfg(url.clone(), wrong.clone()), opts())
        .await
        .map(drop)
        .expect_err("session store must refuse")
        .to_string();
    assert!(e.contains("UnknownIssuer"), "session store: {e}");

    let (u, w) = (url.clone(), wrong.clone());
    let e = tokio::task::spawn_blocking(move || open_policy_store(&u, w).err())
        .await
        .unwrap()
        .expect("policy store must refuse")
        .to_string();
    assert!(e.contains("UnknownIssuer"), "policy store: {e}");

    let (u, w) = (url.clone(), wrong.clone());
    let e = tokio::task::spawn_blocking(move || open_audit(&u, w).err())
        .await
        .unwrap()
        .expect("audit log must refuse");
    assert!(e.contains("UnknownIssuer"), "audit log: {e}");

    // The right CA works for all three.
    let right = tls(&p.ca, true);
    let (u, r) = (url.clone(), right.clone());
    tokio::task::spawn_blocking(move || {
        open_policy_store(&u, r.clone()).unwrap();
        open_audit(&u, r).unwrap();
    })
    .await
    .unwrap();
    SessionStore::open(&session_cfg(url, right), opts())
        .await
        .unwrap()
        .close()
        .await;
}

/// Threat: a certificate the CA issued for another server (another
/// database of the same PKI). `verify-full` refuses it; `require` with a
/// CA file (libpq's semantics) checks the chain but not the name, and
/// still refuses a foreign CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_for_another_host_require_checks_the_chain() {
    let p = pki("pg-name", &["db.example"]);
    let other = pki("pg-name-other", &["db.example"]);
    let pg = TlsPostgres::start("pg-name", &p.cert_pem, &p.key_pem);
    let url = pg.url("127.0.0.1", "");

    let e = SessionStore::open(&session_cfg(url.clone(), tls(&p.ca, true)), opts())
        .await
        .map(drop)
        .expect_err("verify-full must refuse a certificate for db.example")
        .to_string();
    assert!(e.contains("not valid for name"), "{e}");

    SessionStore::open(&session_cfg(url.clone(), tls(&p.ca, false)), opts())
        .await
        .unwrap()
        .close()
        .await;

    let e = SessionStore::open(&session_cfg(url, tls(&other.ca, false)), opts())
        .await
        .map(drop)
        .expect_err("require must still check the chain")
        .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    drop(p.dir);
}

/// The Redis session store over `rediss://` to a server with no plaintext
/// port: works with the right CA, refuses another CA's certificate.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_store_reaches_redis_over_tls_and_refuses_another_ca() {
    let p = pki("redis-tls", &["localhost", "127.0.0.1"]);
    let other = pki("redis-other", &["localhost"]);
    let ca_pem = std::fs::read_to_string(&p.ca).unwrap();
    let redis = testkit::stores::TlsRedis::start("redis-tls", &p.cert_pem, &p.key_pem, &ca_pem);
    let cfg = |ca: &std::path::Path| StoreConfig::Redis {
        url: redis.url("localhost"),
        prefix: "tls-test:".into(),
        tls: tls(ca, true).map(|t| stadttor_gateway::store_tls::redis_tls(&t).unwrap()),
    };
    let store = SessionStore::open(&cfg(&p.ca), opts()).await.unwrap();
    let ttl = Duration::from_secs(60);
    assert!(store.once("state", "k1", ttl).await.unwrap());
    assert!(!store.once("state", "k1", ttl).await.unwrap(), "a replay");
    store.close().await;

    let e = SessionStore::open(&cfg(&other.ca), opts())
        .await
        .map(drop)
        .expect_err("another CA must be refused")
        .to_string();
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
}
