//! The session store against real Redis and PostgreSQL servers: two
//! `SessionStore`s on one backend stand for two gateways.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`; or
//! `STADTTOR_SESSION_PG_URL`), Redis on 127.0.0.1:6379 (or
//! `STADTTOR_SESSION_REDIS_URL`) and `redis-server` on the `PATH` (the
//! outage test starts its own). Each test uses its own key prefix or schema
//! and removes it at the end.

#![cfg(any(feature = "redis", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant, SystemTime};

use stadttor_sessions::{
    Revocation, SessionRef, SessionStore, StoreConfig, StoreError, StoreOptions,
};

/// Options for the tests: a short poll so outages show quickly.
fn opts() -> StoreOptions {
    StoreOptions {
        max_staleness: Duration::from_millis(1000),
        poll_interval: Duration::from_millis(200),
        op_timeout: Duration::from_millis(500),
        purge_interval: Duration::from_secs(60),
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn sref<'a>(
    id: &'a str,
    sid: Option<&'a str>,
    sub: &'a str,
    issued_at: SystemTime,
) -> SessionRef<'a> {
    SessionRef {
        id,
        issuer: "https://idp.example",
        sub,
        sid,
        issued_at,
    }
}

/// Waits until `f` holds, up to `limit`; returns the time it took.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// A revocation of each kind made on `a` is seen by `b` within 1 s.
async fn revocations_propagate(a: &SessionStore, b: &SessionStore) {
    let hour = SystemTime::now() + Duration::from_secs(3600);
    let issued = SystemTime::now() - Duration::from_secs(60);
    let cases: Vec<(Revocation, SessionRef<'static>)> = vec![
        (
            Revocation::Session {
                id: "sess-1".into(),
                until: hour,
            },
            sref("sess-1", None, "bob", issued),
        ),
        (
            Revocation::ProviderSession {
                issuer: "https://idp.example".into(),
                sid: "op-7".into(),
                until: hour,
            },
            sref("sess-2", Some("op-7"), "bob", issued),
        ),
        (
            Revocation::Subject {
                issuer: "https://idp.example".into(),
                sub: "carol".into(),
                before: SystemTime::now(),
                until: hour,
            },
            sref("sess-3", None, "carol", issued),
        ),
    ];
    for (rev, s) in cases {
        assert!(!b.is_revoked(&s).unwrap());
        let t0 = Instant::now();
        a.revoke(rev.clone()).await.unwrap();
        // The revoking gateway sees it at once.
        assert!(a.is_revoked(&s).unwrap());
        let seen = until(Duration::from_secs(3), || b.is_revoked(&s).unwrap())
            .await
            .expect("revocation never reached the other store");
        let total = t0.elapsed();
        eprintln!("revocation {rev:?}: seen by the other store {total:?} after revoke() began ({seen:?} after it returned)");
        assert!(total < Duration::from_secs(1), "took {total:?}");
    }
    // A session of the same subject issued after the cut is not revoked.
    let fresh = sref(
        "sess-4",
        None,
        "carol",
        SystemTime::now() + Duration::from_secs(1),
    );
    assert!(!b.is_revoked(&fresh).unwrap());
}

/// 50 tasks race one key across both stores: exactly one wins.
async fn once_is_exclusive(a: &SessionStore, b: &SessionStore) {
    for round in 0..3 {
        let key = format!("code-{round}-{}", unique());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let k = key.clone();
            tasks.push(tokio::spawn(async move {
                s.once("oidc.code", &k, Duration::from_secs(60)).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

/// A marker is refused until its ttl has passed, then usable again.
async fn expired_markers_are_free(a: &SessionStore, b: &SessionStore) {
    let key = unique();
    assert!(a
        .once("oidc.state", &key, Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!b
        .once("oidc.state", &key, Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!a
        .once("oidc.state", &key, Duration::from_millis(300))
        .await
        .unwrap());
    // Same key, other namespace: independent.
    assert!(b
        .once("oidc.jti", &key, Duration::from_secs(60))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(b
        .once("oidc.state", &key, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(!a
        .once("oidc.state", &key, Duration::from_secs(60))
        .await
        .unwrap());
}

/// A third store opened later loads what is already there.
async fn late_opener_loads_everything(cfg: &StoreConfig) {
    let c = SessionStore::open(cfg, opts()).await.unwrap();
    let issued = SystemTime::now() - Duration::from_secs(60);
    assert!(c.is_revoked(&sref("sess-1", None, "x", issued)).unwrap());
    assert!(c.is_revoked(&sref("y", Some("op-7"), "x", issued)).unwrap());
    assert!(c.is_revoked(&sref("y", None, "carol", issued)).unwrap());
    assert!(c.replica_len() >= 3);
    c.close().await;
}

/// Waits until `s` reports stale; returns the time since `outage` began.
async fn wait_stale(s: &SessionStore, outage: Instant) -> Duration {
    let probe = sref("probe", None, "p", SystemTime::now());
    until(Duration::from_secs(10), || {
        matches!(s.is_revoked(&probe), Err(StoreError::Stale { .. }))
    })
    .await
    .expect("the store never went stale");
    let took = outage.elapsed();
    assert!(s.health().is_err());
    eprintln!("stale {took:?} after the outage began");
    // Not before max_staleness minus one poll interval (the last
    // confirmation may be that old when the outage begins).
    assert!(
        took >= opts().max_staleness - opts().poll_interval,
        "{took:?}"
    );
    took
}

async fn wait_fresh(s: &SessionStore, limit: Duration) -> Duration {
    let probe = sref("probe", None, "p", SystemTime::now());
    let took = until(limit, || s.is_revoked(&probe).is_ok())
        .await
        .expect("the store did not recover");
    assert!(s.health().is_ok());
    eprintln!("fresh again {took:?} after the backend came back");
    took
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};

    fn redis_url() -> String {
        std::env::var("STADTTOR_SESSION_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
    }

    /// Deletes every key under the prefix when the test ends.
    struct Cleanup {
        url: String,
        prefix: String,
    }
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let Ok(client) = redis::Client::open(self.url.as_str()) else {
                return;
            };
            let Ok(mut c) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut c);
            }
        }
    }

    fn setup() -> (StoreConfig, Cleanup) {
        let prefix = format!("stadttor-test:{}:", unique());
        let url = redis_url();
        (
            StoreConfig::Redis {
                url: url.clone(),
                prefix: prefix.clone(),
                tls: None,
            },
            Cleanup { url, prefix },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_gateways_share_revocations_and_markers() {
        let (cfg, _cleanup) = setup();
        let a = SessionStore::open(&cfg, opts()).await.unwrap();
        let b = SessionStore::open(&cfg, opts()).await.unwrap();
        revocations_propagate(&a, &b).await;
        late_opener_loads_everything(&cfg).await;
        once_is_exclusive(&a, &b).await;
        expired_markers_are_free(&a, &b).await;
        a.close().await;
        b.close().await;
    }

    /// A Redis server of this test's own, on a free port.
    struct Server {
        port: u16,
        child: Child,
    }
    impl Server {
        fn start(port: u16) -> Server {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH");
            let s = Server { port, child };
            let t0 = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            s
        }
        fn stop(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outage_fails_closed_and_reconnect_recovers() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let server = Server::start(port);
        let cfg = StoreConfig::Redis {
            url: format!("redis://127.0.0.1:{}/", server.port),
            prefix: "stadttor-test:".into(),
            tls: None,
        };
        let a = SessionStore::open(&cfg, opts()).await.unwrap();
        let b = SessionStore::open(&cfg, opts()).await.unwrap();
        let hour = SystemTime::now() + Duration::from_secs(3600);
        a.revoke(Revocation::Session {
            id: "before-outage".into(),
            until: hour,
        })
        .await
        .unwrap();
        assert!(a.health().is_ok());
        let old = sref("before-outage", None, "s", SystemTime::now());
        until(Duration::from_secs(3), || b.is_revoked(&old).unwrap())
            .await
            .unwrap();

        server.stop();
        let outage = Instant::now();
        // Writes fail at once (the caller fails closed) ...
        assert!(a.once("state", "k", Duration::from_secs(60)).await.is_err());
        assert!(a
            .revoke(Revocation::Session {
                id: "x".into(),
                until: hour
            })
            .await
            .is_err());
        // ... and the replica turns stale after max_staleness.
        let took = wait_stale(&a, outage).await;
        assert!(
            took < opts().max_staleness + Duration::from_secs(2),
            "{took:?}"
        );
        wait_stale(&b, outage).await;

        let server = Server::start(port);
        wait_fresh(&a, Duration::from_secs(5)).await;
        wait_fresh(&b, Duration::from_secs(5)).await;
        // What the replica held survives the outage (this Redis lost it all).
        assert!(b.is_revoked(&old).unwrap());
        // And the two stores talk again, through the new server.
        let t0 = Instant::now();
        a.revoke(Revocation::Session {
            id: "after-outage".into(),
            until: hour,
        })
        .await
        .unwrap();
        let new = sref("after-outage", None, "s", SystemTime::now());
        until(Duration::from_secs(3), || b.is_revoked(&new).unwrap())
            .await
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(a.once("state", "k", Duration::from_secs(60)).await.unwrap());
        assert!(!b.once("state", "k", Duration::from_secs(60)).await.unwrap());
        a.close().await;
        b.close().await;
        drop(server);
    }

    #[tokio::test]
    async fn unreachable_server_refuses_to_open() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = StoreConfig::Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            prefix: "p:".into(),
            tls: None,
        };
        let e = SessionStore::open(&cfg, opts()).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Unavailable(_) | StoreError::Timeout(_)),
            "{e}"
        );
    }
}

#[cfg(feature = "postgres")]
mod postgres_backend {
    use super::*;
    use std::net::SocketAddr;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    fn pg_url() -> String {
        std::env::var("STADTTOR_SESSION_PG_URL")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
    }

    /// Drops the schema when the test ends (on a plain thread: the sync
    /// client runs its own runtime).
    struct Cleanup {
        schema: String,
    }
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let schema = self.schema.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = postgres::Client::connect(&pg_url(), postgres::NoTls) {
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
                }
            })
            .join();
        }
    }

    fn setup() -> (String, Cleanup) {
        let schema = format!("sst_{}", unique());
        (schema.clone(), Cleanup { schema })
    }

    fn cfg(url: String, schema: &str) -> StoreConfig {
        StoreConfig::Postgres {
            url,
            schema: schema.to_owned(),
            tls: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_gateways_share_revocations_and_markers() {
        let (schema, _cleanup) = setup();
        let c = cfg(pg_url(), &schema);
        // Two gateways creating the schema at the same moment.
        let (a, b) = tokio::join!(
            SessionStore::open(&c, opts()),
            SessionStore::open(&c, opts())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        revocations_propagate(&a, &b).await;
        late_opener_loads_everything(&c).await;
        once_is_exclusive(&a, &b).await;
        expired_markers_are_free(&a, &b).await;
        a.close().await;
        b.close().await;
    }

    /// A TCP proxy in front of PostgreSQL that the test can cut and restore.
    struct Proxy {
        addr: SocketAddr,
        kill: watch::Sender<bool>,
        accept: tokio::task::JoinHandle<()>,
    }
    impl Proxy {
        async fn start(addr: SocketAddr, upstream: SocketAddr) -> Proxy {
            let listener = TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (kill, kill_rx) = watch::channel(false);
            let accept = tokio::spawn(async move {
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        return;
                    };
                    let mut kill_rx = kill_rx.clone();
                    tokio::spawn(async move {
                        let Ok(mut up) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                            _ = kill_rx.changed() => {}
                        }
                    });
                }
            });
            Proxy { addr, kill, accept }
        }
        /// Refuses new connections and cuts the open ones.
        fn cut(self) {
            self.accept.abort();
            let _ = self.kill.send(true);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outage_fails_closed_and_reconnect_recovers() {
        let (schema, _cleanup) = setup();
        let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), upstream).await;
        let addr = proxy.addr;
        let via_proxy = cfg(
            format!(
                "host=127.0.0.1 port={} user=postgres dbname=test",
                addr.port()
            ),
            &schema,
        );
        let direct = SessionStore::open(&cfg(pg_url(), &schema), opts())
            .await
            .unwrap();
        let a = SessionStore::open(&via_proxy, opts()).await.unwrap();
        let hour = SystemTime::now() + Duration::from_secs(3600);

        proxy.cut();
        let outage = Instant::now();
        assert!(a.once("state", "k", Duration::from_secs(60)).await.is_err());
        let took = wait_stale(&a, outage).await;
        assert!(
            took < opts().max_staleness + Duration::from_secs(2),
            "{took:?}"
        );
        // A revocation made elsewhere during the outage ...
        direct
            .revoke(Revocation::Session {
                id: "during-outage".into(),
                until: hour,
            })
            .await
            .unwrap();

        let proxy = Proxy::start(addr, upstream).await;
        wait_fresh(&a, Duration::from_secs(5)).await;
        // ... is there once the store is fresh again (full reload).
        let s = sref("during-outage", None, "s", SystemTime::now());
        assert!(a.is_revoked(&s).unwrap());
        assert!(a.once("state", "k", Duration::from_secs(60)).await.unwrap());
        assert!(!direct
            .once("state", "k", Duration::from_secs(60))
            .await
            .unwrap());
        a.close().await;
        direct.close().await;
        proxy.cut();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn terminated_backends_are_replaced() {
        let (schema, _cleanup) = setup();
        let app = format!("sst_app_{}", unique());
        let a = SessionStore::open(
            &cfg(format!("{} application_name={app}", pg_url()), &schema),
            opts(),
        )
        .await
        .unwrap();
        let b = SessionStore::open(&cfg(pg_url(), &schema), opts())
            .await
            .unwrap();
        assert!(a
            .once("state", "warm", Duration::from_secs(60))
            .await
            .unwrap());
        let killer = {
            let app = app.clone();
            move || {
                std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&pg_url(), postgres::NoTls).unwrap();
                    let rows = c
                        .query(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                            &[&app],
                        )
                        .unwrap();
                    rows.len()
                })
                .join()
                .unwrap()
            }
        };
        // The LISTEN connection and the request connection.
        assert_eq!(killer(), 2);
        let t0 = Instant::now();
        b.revoke(Revocation::Session {
            id: "after-kill".into(),
            until: SystemTime::now() + Duration::from_secs(3600),
        })
        .await
        .unwrap();
        let s = sref("after-kill", None, "s", SystemTime::now());
        until(Duration::from_secs(3), || a.is_revoked(&s).unwrap_or(false))
            .await
            .expect("the store did not reconnect");
        eprintln!("seen after reconnect in {:?}", t0.elapsed());
        assert!(a.health().is_ok());
        // The request connection is replaced on next use, without an error.
        assert!(a
            .once("state", "after-kill", Duration::from_secs(60))
            .await
            .unwrap());
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn bad_schema_names_are_refused() {
        for bad in ["", "1abc", "a-b", "a\"b", &"x".repeat(49)] {
            let e = SessionStore::open(&cfg(pg_url(), bad), opts())
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Config(_)), "{bad}: {e}");
        }
    }
}
