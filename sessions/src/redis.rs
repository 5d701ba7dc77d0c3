//! Redis backend (feature `redis`), shared by several gateways.
//!
//! Keys, all under the configured prefix `P`:
//!
//! * `P once:<namespace>:<sha256(key)>`: a single-use marker, `SET … NX PX ttl`.
//! * `P rev:seq`: the last revocation sequence number.
//! * `P rev:by_id`: sorted set, member `"<seq> <json>"`, score `seq`.
//! * `P rev:by_until`: the same members, score `until` (ms), for purging.
//! * channel `P rev`: every new member is `PUBLISH`ed here.
//!
//! A revocation is written by one Lua script (`INCR`, two `ZADD`s,
//! `PUBLISH`), so sequence numbers become visible in order and a poll for
//! `seq > last` misses nothing. Each store runs one background task: it
//! subscribes to the channel, loads `rev:by_id` whole, then applies
//! messages as they come and polls `rev:by_id` for `seq > last` every
//! `poll_interval` (in `MULTI` with `GET rev:seq`, which also detects a
//! Redis that lost its data: then everything is reloaded). Each successful
//! poll confirms the replica fresh. Any error ends the session; the task
//! reconnects, resubscribes and reloads. Every `purge_interval` it removes
//! members whose `until` has passed (by this gateway's clock).
//!
//! Redis must keep these keys: use persistence (AOF) if revocations must
//! survive a Redis restart, and a `maxmemory-policy` that does not evict
//! them (`noeviction`, or `volatile-*`: the revocation keys carry no TTL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::error::chain;
use crate::replica::{Replica, Wire};
use crate::{now_ms, redact, RedisTls, StoreError, StoreOptions};

/// Appends a revocation: KEYS = seq, by_id, by_until; ARGV = json, until, channel.
const REVOKE_SCRIPT: &str = r"
local seq = redis.call('INCR', KEYS[1])
local m = seq .. ' ' .. ARGV[1]
redis.call('ZADD', KEYS[2], seq, m)
redis.call('ZADD', KEYS[3], ARGV[2], m)
redis.call('PUBLISH', ARGV[3], m)
return seq
";

/// Members removed per purge round trip.
const PURGE_BATCH: isize = 1000;

#[derive(Clone)]
struct Keys {
    prefix: String,
    seq: String,
    by_id: String,
    by_until: String,
    channel: String,
}

/// The Redis side of a store.
pub(crate) struct RedisBackend {
    client: Client,
    keys: Keys,
    opts: StoreOptions,
    /// The request-path connection, made on first use and after errors.
    conn: Mutex<Option<MultiplexedConnection>>,
}

fn unavailable(what: &str) -> impl FnOnce(RedisError) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("redis: {what}: {}", chain(&e)))
}

async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| StoreError::Timeout(limit))?
}

impl RedisBackend {
    /// Connects, loads every revocation into `replica` and starts the
    /// background task.
    pub(crate) async fn open(
        url: &str,
        prefix: &str,
        tls: Option<&RedisTls>,
        opts: StoreOptions,
        replica: Arc<Replica>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<RedisBackend>, JoinHandle<()>), StoreError> {
        if prefix.is_empty() || prefix.len() > 200 {
            return Err(StoreError::Config(
                "redis prefix must be 1-200 bytes (e.g. \"stadttor:sess:\")".into(),
            ));
        }
        let bad_url = |e: RedisError| StoreError::Config(format!("redis url {}: {e}", redact(url)));
        let client = match tls {
            None if url.starts_with("rediss://") => {
                return Err(StoreError::Config(
                    "a rediss:// URL needs a CA file (identity.store_ca_file)".into(),
                ))
            }
            None => Client::open(url).map_err(bad_url)?,
            Some(_) if !url.starts_with("rediss://") => {
                return Err(StoreError::Config(
                    "a CA file applies only to a rediss:// URL".into(),
                ))
            }
            // The redis crate builds its rustls configuration from these
            // roots alone (not the system store) and checks the host name.
            Some(tls) => {
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.root_pem.clone()),
                };
                Client::build_with_tls(url, certs).map_err(bad_url)?
            }
        };
        let keys = Keys {
            prefix: prefix.to_owned(),
            seq: format!("{prefix}rev:seq"),
            by_id: format!("{prefix}rev:by_id"),
            by_until: format!("{prefix}rev:by_until"),
            channel: format!("{prefix}rev"),
        };
        let backend = Arc::new(RedisBackend {
            client,
            keys,
            opts,
            conn: Mutex::new(None),
        });
        let live = backend.connect_and_load(&replica).await?;
        let b = Arc::clone(&backend);
        let task = tokio::spawn(crate::follow_forever(b, live, replica, shutdown));
        Ok((backend, task))
    }

    fn conn_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.opts.op_timeout))
            .set_response_timeout(Some(self.opts.op_timeout))
    }

    async fn new_conn(&self) -> Result<MultiplexedConnection, StoreError> {
        timed(self.opts.op_timeout, async {
            self.client
                .get_multiplexed_async_connection_with_config(&self.conn_config())
                .await
                .map_err(unavailable("connecting"))
        })
        .await
    }

    /// The shared request-path connection (connecting if needed).
    async fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = self.new_conn().await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets the request-path connection after an error.
    async fn drop_conn(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs one request-path command, dropping the connection on failure.
    /// A command that failed because the connection had dropped (Redis
    /// restarted) runs once more on a new connection: for a marker whose
    /// first `SET` landed unseen that answers `false` (fail closed); a
    /// repeated revocation is harmless.
    async fn request<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut c = self.conn().await?;
            let r = tokio::time::timeout(self.opts.op_timeout, cmd.query_async::<T>(&mut c)).await;
            match r {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    self.drop_conn().await;
                    let dropped = e.is_connection_dropped() || e.is_io_error();
                    if !(dropped && attempt == 1) {
                        return Err(unavailable(what)(e));
                    }
                }
                Err(_) => {
                    self.drop_conn().await;
                    return Err(StoreError::Timeout(self.opts.op_timeout));
                }
            }
        }
    }

    /// `SET P once:<ns>:<digest> 1 NX PX <ttl>`.
    pub(crate) async fn once(
        &self,
        ns: &str,
        digest: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = format!("{}once:{ns}:{digest}", self.keys.prefix);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("NX").arg("PX").arg(ms);
        let r: Option<String> = self.request("SET NX", &cmd).await?;
        Ok(r.is_some())
    }

    /// Appends and publishes a revocation.
    pub(crate) async fn revoke(&self, w: &Wire) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REVOKE_SCRIPT)
            .arg(3)
            .arg(&self.keys.seq)
            .arg(&self.keys.by_id)
            .arg(&self.keys.by_until)
            .arg(w.to_json())
            .arg(w.until())
            .arg(&self.keys.channel);
        let _seq: i64 = self.request("appending a revocation", &cmd).await?;
        Ok(())
    }

    /// Subscribes, then loads everything (in that order, so nothing
    /// published in between is lost).
    async fn connect_and_load(&self, replica: &Replica) -> Result<Live, StoreError> {
        let mut data = self.new_conn().await?;
        let mut pubsub = timed(self.opts.op_timeout, async {
            self.client
                .get_async_pubsub()
                .await
                .map_err(unavailable("connecting for pub/sub"))
        })
        .await?;
        timed(self.opts.op_timeout, async {
            pubsub
                .subscribe(&self.keys.channel)
                .await
                .map_err(unavailable("subscribing"))
        })
        .await?;
        let t0 = Instant::now();
        let (seq, entries) = self.read_since(&mut data, None).await?;
        replica.apply_all(&entries);
        replica.confirm_fresh(t0);
        Ok(Live {
            data,
            messages: pubsub.into_on_message(),
            last: seq,
        })
    }

    /// Reads `GET seq` and the members after `after` (all if `None`) in one
    /// `MULTI`.
    async fn read_since(
        &self,
        data: &mut MultiplexedConnection,
        after: Option<u64>,
    ) -> Result<(u64, Vec<Wire>), StoreError> {
        let min = match after {
            Some(n) => format!("({n}"),
            None => "-inf".to_owned(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&self.keys.seq)
            .cmd("ZRANGEBYSCORE")
            .arg(&self.keys.by_id)
            .arg(min)
            .arg("+inf");
        let (seq, members): (Option<u64>, Vec<String>) = timed(self.opts.op_timeout, async {
            pipe.query_async(data)
                .await
                .map_err(unavailable("reading revocations"))
        })
        .await?;
        let mut out = Vec::with_capacity(members.len());
        for m in &members {
            out.push(parse_member(m)?);
        }
        Ok((seq.unwrap_or(0), out))
    }

    /// Removes members whose `until` has passed.
    async fn purge(&self, data: &mut MultiplexedConnection) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut removed = 0;
        loop {
            let mut cmd = redis::cmd("ZRANGEBYSCORE");
            cmd.arg(&self.keys.by_until)
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(PURGE_BATCH);
            let old: Vec<String> = timed(self.opts.op_timeout, async {
                cmd.query_async(data)
                    .await
                    .map_err(unavailable("listing expired revocations"))
            })
            .await?;
            if old.is_empty() {
                return Ok(removed);
            }
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("ZREM")
                .arg(&self.keys.by_id)
                .arg(&old)
                .ignore()
                .cmd("ZREM")
                .arg(&self.keys.by_until)
                .arg(&old)
                .ignore();
            timed(self.opts.op_timeout, async {
                pipe.query_async::<()>(data)
                    .await
                    .map_err(unavailable("purging revocations"))
            })
            .await?;
            removed += old.len();
            if old.len() < usize::try_from(PURGE_BATCH).unwrap_or(usize::MAX) {
                return Ok(removed);
            }
        }
    }

    /// Applies messages and polls until an error or shutdown.
    async fn follow(
        &self,
        mut live: Live,
        replica: &Replica,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let mut tick = tokio::time::interval(self.opts.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last_purge = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                msg = live.messages.next() => {
                    let Some(msg) = msg else {
                        return Err(StoreError::Unavailable("redis: pub/sub connection closed".into()));
                    };
                    match msg.get_payload::<String>() {
                        Ok(p) => match parse_member(&p) {
                            Ok(w) => replica.apply(&w),
                            Err(e) => tracing::warn!(error = %e, "session store: unreadable revocation message"),
                        },
                        Err(e) => tracing::warn!(error = %e, "session store: unreadable revocation message"),
                    }
                }
                _ = tick.tick() => {
                    let t0 = Instant::now();
                    let (seq, entries) = self.read_since(&mut live.data, Some(live.last)).await?;
                    if seq < live.last {
                        // Redis lost its data (restart without persistence,
                        // flush): start over from whatever it has now.
                        tracing::warn!(seq, last = live.last, "session store: redis revocation sequence went back; reloading");
                        let (seq, all) = self.read_since(&mut live.data, None).await?;
                        replica.apply_all(&all);
                        live.last = seq;
                    } else {
                        replica.apply_all(&entries);
                        live.last = seq;
                    }
                    replica.confirm_fresh(t0);
                    if last_purge.elapsed() >= self.opts.purge_interval {
                        last_purge = Instant::now();
                        let n = self.purge(&mut live.data).await?;
                        let m = replica.purge(std::time::SystemTime::now());
                        tracing::debug!(backend = n, replica = m, "session store: purged expired revocations");
                    }
                }
            }
        }
    }
}

/// A connected session of the background task.
pub(super) struct Live {
    data: MultiplexedConnection,
    messages: redis::aio::PubSubStream,
    last: u64,
}

/// Parses a `"<seq> <json>"` member.
fn parse_member(m: &str) -> Result<Wire, StoreError> {
    let (_, json) = m
        .split_once(' ')
        .ok_or_else(|| StoreError::BadEntry(format!("redis member without sequence: {m:.200}")))?;
    Wire::from_json(json)
}

impl super::Follow for RedisBackend {
    type Live = Live;
    const NAME: &'static str = "redis";

    fn retry_interval(&self) -> Duration {
        self.opts.poll_interval
    }

    fn connect(
        &self,
        replica: &Replica,
    ) -> impl std::future::Future<Output = Result<Live, StoreError>> + Send {
        self.connect_and_load(replica)
    }

    fn follow(
        &self,
        live: Live,
        replica: &Replica,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        RedisBackend::follow(self, live, replica, shutdown)
    }
}
