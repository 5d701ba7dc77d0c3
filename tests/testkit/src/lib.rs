//! Test harness for stadttor's integration tests.
//!
//! - [`Gateway`] starts the real `stadttor` binary on port 0 with a given
//!   configuration, reads the bound addresses from its stdout, keeps its
//!   logs, and kills it on drop.
//! - [`TestPki`] writes a throw-away CA, server and client certificates.
//! - [`backend`] runs real HTTP/1.1 (and HTTPS, WebSocket) upstreams in the
//!   test process on port 0.
//! - [`client`] is a real TLS client (rustls + hyper) for h1 and h2, plus
//!   raw TLS sockets for framing attacks.
//! - [`oidc`] runs a real OpenID Provider (node `oidc-provider`,
//!   `tests/oidc-op`) with eIDAS test users; [`browser`] is a cookie-keeping
//!   HTTP client that walks login redirects and submits HTML forms;
//!   [`jwt`] forges and decodes tokens for negative tests; [`saml_idp`]
//!   runs a real SAML 2.0 IdP that behaves like BundID (pysaml2 + xmlsec1,
//!   `tests/saml-idp`) with threat knobs for the SAML attack corpus.
//! - [`nginx`] runs Debian's nginx serving files, and [`normalising`] a
//!   Python service that resolves paths on its own: the two upstreams of
//!   the path-confusion corpus, each logging the target it received; nginx
//!   also runs as a reverse proxy in front of the gateway, and
//!   [`haproxy`] runs HAProxy in TCP mode sending PROXY protocol v2.
//! - [`stores`] runs PostgreSQL and Redis servers that accept TLS only,
//!   with certificates the test issued.
//! - [`TempDir`], [`hw`] (swtpm, SoftHSM2) and [`signing`] (test seal PKI,
//!   TSA, pdfsig/pyHanko/openssl) are re-exported from
//!   `stadttor-test-harness`, which depends on no stadttor crate so that
//!   stadttor-hsm's and stadttor-pki's own tests can use them too.
//!
//! Nothing here uses fixed ports, `pkill` or global state.

#![allow(missing_docs, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod browser;
pub mod client;
pub mod haproxy;
pub mod jwt;
pub mod nginx;
pub mod normalising;
pub mod oidc;
pub mod saml_idp;
pub mod stores;

pub use browser::Browser;
pub use oidc::TestOp;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stadttor_pki::devca::DevCa;

/// The workspace's one temporary directory type and the swtpm/SoftHSM2 and
/// signature-verifier harnesses (from `stadttor-test-harness`).
pub use stadttor_test_harness::{hw, set_secret_mode, signing, TempDir};

/// Certificates for a test: one CA, a server certificate for `localhost`,
/// `127.0.0.1` and the extra names, and a client certificate.
pub struct TestPki {
    pub ca: DevCa,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub server_chain: PathBuf,
    pub server_key: PathBuf,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    pub fn new(dir: &TempDir, tag: &str, names: &[&str]) -> Self {
        let ca = DevCa::generate(&format!("stadttor test CA {tag}")).unwrap();
        let mut all = vec!["localhost", "127.0.0.1"];
        all.extend_from_slice(names);
        let server = ca.issue_server(&all).unwrap();
        let client = ca.issue_client(&format!("client-{tag}")).unwrap();
        let ca_pem = ca.cert_pem();
        Self {
            ca_path: dir.write(&format!("{tag}/ca.pem"), &ca_pem),
            server_chain: dir.write(&format!("{tag}/server.pem"), &server.cert_pem),
            server_key: dir.write(&format!("{tag}/server.key"), &server.key_pem),
            ca_pem,
            ca,
            client_cert_pem: client.cert_pem,
            client_key_pem: client.key_pem,
        }
    }

    /// A `[[listeners.tls.certificates]]` entry for this PKI's server cert.
    pub fn certificate_toml(&self, server_names: &[&str]) -> String {
        format!(
            "[[listeners.tls.certificates]]\nchain = {:?}\nkey = \"file:{}\"\nserver_names = {:?}\n",
            self.server_chain.display().to_string(),
            self.server_key.display(),
            server_names
        )
    }
}

/// The configuration the Debian package installs as
/// `/etc/stadttor/stadttor.toml` (`packaging/examples/minimal.toml`), made
/// runnable here: written to `dir/stadttor.toml` with `pki`'s certificate
/// and key at the relative paths it names (`tls/server.pem`,
/// `tls/server.key`), the listener on `127.0.0.1:0` instead of `[::]:443`
/// and `upstream` as the service. Everything else is the shipped text.
pub fn packaged_example(dir: &TempDir, pki: &TestPki, upstream: SocketAddr) -> PathBuf {
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/examples/minimal.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let mut out = text.clone();
    for (from, to) in [
        (
            "listen = \"[::]:443\"",
            "listen = \"127.0.0.1:0\"".to_owned(),
        ),
        (
            "addresses = [\"127.0.0.1:8080\"]",
            format!("addresses = [\"{upstream}\"]"),
        ),
    ] {
        assert!(
            out.contains(from),
            "{}: no `{from}` any more",
            shipped.display()
        );
        out = out.replacen(from, &to, 1);
    }
    for want in [
        "chain = \"tls/server.pem\"",
        "key = \"file:tls/server.key\"",
    ] {
        assert!(
            text.contains(want),
            "{}: no `{want}` any more",
            shipped.display()
        );
    }
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    std::fs::copy(&pki.server_chain, dir.path().join("tls/server.pem")).unwrap();
    std::fs::copy(&pki.server_key, dir.path().join("tls/server.key")).unwrap();
    dir.write("stadttor.toml", &out)
}

/// A running `stadttor serve` process.
pub struct Gateway {
    child: Child,
    pub listeners: HashMap<String, SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub config_path: PathBuf,
    logs: Arc<Mutex<String>>,
}

/// Collects `child`'s stderr into `logs` and hands its stdout over line by
/// line, each on a background thread (a child's pipes must be drained or it
/// blocks): how the gateway, the test OP and the test SAML IdP are watched.
pub fn capture_output(
    child: &mut Child,
    logs: Arc<Mutex<String>>,
) -> std::sync::mpsc::Receiver<String> {
    if let Some(mut stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                logs.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

impl Gateway {
    /// Writes `config` to `dir/stadttor.toml` and starts `bin serve` on it.
    pub fn start(bin: &str, dir: &TempDir, config: &str) -> Self {
        let config_path = dir.write("stadttor.toml", config);
        Self::start_file(bin, &config_path)
    }

    /// Like [`Gateway::start`], with extra environment variables.
    pub fn start_env(bin: &str, dir: &TempDir, config: &str, env: &[(&str, &str)]) -> Self {
        let config_path = dir.write("stadttor.toml", config);
        Self::spawn(bin, &config_path, env)
    }

    /// Starts `bin serve --config path` and waits until it listens.
    pub fn start_file(bin: &str, config_path: &Path) -> Self {
        Self::spawn(bin, config_path, &[])
    }

    fn spawn(bin: &str, config_path: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config_path)
            .envs(env.iter().copied())
            .env("STADTTOR_LOG", "info,stadttor::access=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stadttor");
        let logs = Arc::new(Mutex::new(String::new()));
        let rx = capture_output(&mut child, logs.clone());
        let mut listeners = HashMap::new();
        let mut admin = None;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("stadttor listening: ") {
                        let (name, url) = rest.split_once(' ').unwrap();
                        let addr = url.trim_start_matches("https://").parse().unwrap();
                        listeners.insert(name.to_owned(), addr);
                    } else if let Some(url) = line.strip_prefix("stadttor admin: ") {
                        admin = Some(
                            url.trim_start_matches("http://")
                                .trim_start_matches("https://")
                                .parse()
                                .unwrap(),
                        );
                    }
                    // The admin line, when configured, comes last.
                    if !listeners.is_empty()
                        && (admin.is_some()
                            || !std::fs::read_to_string(config_path)
                                .unwrap_or_default()
                                .contains("[admin]"))
                    {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "stadttor did not start (status {status:?}); logs:\n{}",
                        logs.lock().unwrap()
                    );
                }
            }
        }
        Self {
            child,
            listeners,
            admin,
            config_path: config_path.to_owned(),
            logs,
        }
    }

    /// The first (or only) public listener.
    pub fn addr(&self) -> SocketAddr {
        *self
            .listeners
            .get("public")
            .or_else(|| self.listeners.values().next())
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Everything the gateway logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until `needle` appears in the logs.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// GETs a path on the admin listener; returns status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let addr = self.admin.expect("no admin listener");
        client::plain_get(addr, path).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- stadttor logs ----\n{}", self.logs());
        }
    }
}

/// Path of a program on PATH, or a loud failure naming how to install it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("required tool `{name}` is missing: install the Debian package `{package}` (tests/run.sh does)");
}

/// A port that was free a moment ago and that the kernel does not hand out
/// on its own (see [`stadttor_test_harness::ports`]); prefer port 0 where
/// the port need not be known in advance.
pub fn free_port() -> u16 {
    stadttor_test_harness::ports::free_port()
}
