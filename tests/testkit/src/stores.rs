//! Throw-away state stores that speak TLS only: a PostgreSQL cluster
//! (`initdb` + `postgres` from Debian's `postgresql` package) and a
//! `redis-server`, each on a free port of 127.0.0.1 with a certificate the
//! test issued, and no way in without TLS:
//!
//! * PostgreSQL: `ssl = on`, `pg_hba.conf` with `hostssl` lines only
//!   (SCRAM-SHA-256, so `channel_binding=require` works) and a `trust`
//!   Unix socket in the temp dir for the test's own checks
//!   ([`TlsPostgres::local_dsn`]). The shared cluster on 5432 is not
//!   touched.
//! * Redis: `--port 0` (no plaintext listener) and `--tls-port`.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the
//! cluster is created and run as the `postgres` user (`runuser`), in a
//! directory that user owns. Each server is stopped on drop (by the
//! postmaster's own pid for PostgreSQL).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_tool, TempDir};

/// The password of the `postgres` user in a [`TlsPostgres`].
pub const PG_PASSWORD: &str = "stadttor-test-pw";

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn is_root() -> bool {
    id(&["-u"]) == 0
}

/// The newest PostgreSQL server binaries (`/usr/lib/postgresql/N/bin`).
fn pg_bin() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL server binaries are missing: install the Debian package `postgresql`")
}

/// A file owned by the server's user, readable only by it.
fn private_file(path: &Path, contents: &str, owner: Option<(u32, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(path, Some(u), Some(g)).unwrap();
    }
}

/// Runs `program` as the `postgres` user when we are root.
fn as_pg_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Waits until `log` contains `needle` or `child` exits.
fn wait_for(log: &Path, needle: &str, child: &mut Child, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A PostgreSQL cluster reachable over TCP only with TLS.
pub struct TlsPostgres {
    child: Child,
    data: PathBuf,
    /// The socket directory (`host=` for [`TlsPostgres::local_dsn`]).
    pub socket_dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

impl TlsPostgres {
    /// Creates and starts a cluster serving `cert_pem` (with `key_pem`).
    pub fn start(tag: &str, cert_pem: &str, key_pem: &str) -> Self {
        let bin = pg_bin();
        let root = is_root();
        let owner = root.then(|| (id(&["-u", "postgres"]), id(&["-g", "postgres"])));
        let dir = TempDir::new(tag);
        let home = dir.path().join("pg");
        std::fs::create_dir(&home).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        if let Some((u, g)) = owner {
            std::os::unix::fs::chown(&home, Some(u), Some(g)).unwrap();
        }
        let pwfile = home.join("pw");
        private_file(&pwfile, PG_PASSWORD, owner);
        let data = home.join("data");
        let out = as_pg_user(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        private_file(
            &data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
            owner,
        );
        private_file(&home.join("server.crt"), cert_pem, owner);
        private_file(&home.join("server.key"), key_pem, owner);
        for _attempt in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("postgres-{port}.log"));
            let f = File::create(&log).unwrap();
            let mut child = as_pg_user(&bin.join("postgres"), root)
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&home)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    home.join("server.crt").display()
                ))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    home.join("server.key").display()
                ))
                .args(["-c", "fsync=off", "-c", "max_connections=50"])
                .stdin(Stdio::null())
                .stdout(f.try_clone().unwrap())
                .stderr(f)
                .spawn()
                .unwrap();
            let needle = "database system is ready to accept connections";
            if wait_for(&log, needle, &mut child, Duration::from_secs(30)) {
                return Self {
                    child,
                    data,
                    socket_dir: home,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "postgres on port {port} did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("could not start a TLS PostgreSQL cluster");
    }

    /// `postgres://postgres:PW@host:PORT/postgres?query` over TCP.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres:{PG_PASSWORD}@{host}:{}/postgres?{query}",
            self.port
        )
    }

    /// A libpq `key=value` string for the test's own checks over the Unix
    /// socket (trusted, no TLS).
    pub fn local_dsn(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket_dir.display(),
            self.port
        )
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self._dir.path().join(format!("postgres-{}.log", self.port)))
            .unwrap_or_default()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // Signal the postmaster itself (`runuser` would not pass SIGKILL on):
        // SIGQUIT is PostgreSQL's immediate shutdown.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` with a TLS port and no plaintext port.
pub struct TlsRedis {
    child: Child,
    /// The TLS port on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

impl TlsRedis {
    /// Starts Redis serving `cert_pem` (with `key_pem`); `ca_pem` is only
    /// the (required) client CA setting, client certificates are not asked.
    pub fn start(tag: &str, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Self {
        let redis = require_tool("redis-server", "redis-server");
        let dir = TempDir::new(tag);
        let cert = dir.write("server.crt", cert_pem);
        let key = dir.write("server.key", key_pem);
        let ca = dir.write("ca.crt", ca_pem);
        for _attempt in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("redis-{port}.log"));
            let f = File::create(&log).unwrap();
            let mut child = Command::new(&redis)
                .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&ca)
                .args([
                    "--tls-auth-clients",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(f.try_clone().unwrap())
                .stderr(f)
                .spawn()
                .unwrap();
            if wait_for(
                &log,
                "Ready to accept connections",
                &mut child,
                Duration::from_secs(10),
            ) {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start a TLS redis-server");
    }

    /// `rediss://host:PORT/`.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}/", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
