//! A real OpenID Provider for the tests: `tests/oidc-op/op.mjs` (panva's
//! `oidc-provider`, pinned in its `package-lock.json`) run with node on
//! 127.0.0.1, port 0, killed on drop.
//!
//! ```text
//! let dir = TempDir::new("login");
//! let op = TestOp::start(&dir, json!([basic_client("stadttor", SECRET, &redirect_uri)]));
//! op.issuer();              // "http://127.0.0.1:PORT", also the discovery base
//! op.keys();                // the OP's private JWKs: forge tokens it would sign
//! op.rotate_keys();         // new ES256 signing key, old ones still published
//! op.stop(); op.restart();  // "IdP down", and back (same port, same keys)
//! ```
//!
//! What the OP offers (details in `op.mjs`): code flow only, PKCE S256
//! required, RFC 9207 `iss` in authorization responses, eIDAS levels as
//! `acr` ([`Level`]), the [`TestUser`]s below, an HTML login form
//! (`Browser::login_at_op` fills it), consent granted with the login,
//! `client_secret_basic` and `private_key_jwt` client authentication,
//! RP-initiated logout with back-channel logout tokens.
//!
//! Behaviour an RP test must know (oidc-provider 9.13.3, checked by
//! `tests/testkit/tests/oidc_op.rs`):
//! - `acr` is in the ID token only if the RP asks for it (`acr_values`, or
//!   `acr` in the `claims` parameter); `amr` only through `claims`; `sid`
//!   only for clients with `backchannel_logout_session_required` (see
//!   [`with_logout`]) or when `claims` asks for it.
//! - No level is enforced, not even an *essential* `acr` in `claims`: the
//!   OP issues the level the user reached. The RP must check.
//! - `prompt=login` and `max_age=0` bring the login form back although the
//!   OP session is alive (step-up); otherwise the session answers at once.
//!
//! What it does not do: persist anything but its keys (a restart forgets
//! sessions, grants and codes; a key rotation keeps them), or run without
//! `npm ci --prefix tests/oidc-op` (tests/run.sh does it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::TempDir;

/// eIDAS level of assurance, as the OP puts it into `acr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Low,
    Substantial,
    High,
}

impl Level {
    /// The `acr` value: `http://eidas.europa.eu/LoA/…`.
    pub fn acr(self) -> &'static str {
        match self {
            Level::Low => ACR_LOW,
            Level::Substantial => ACR_SUBSTANTIAL,
            Level::High => ACR_HIGH,
        }
    }

    /// The value of the OP login form's `level` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Substantial => "substantial",
            Level::High => "high",
        }
    }
}

pub const ACR_LOW: &str = "http://eidas.europa.eu/LoA/low";
pub const ACR_SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";
pub const ACR_HIGH: &str = "http://eidas.europa.eu/LoA/high";

/// A user the test OP knows (see `USERS` in `op.mjs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// What to type into the OP's login form.
    pub name: &'static str,
    /// The pseudonymous `sub` the OP issues.
    pub sub: &'static str,
    /// The highest level this user can reach; a higher choice is capped.
    pub max_level: Level,
}

/// Erika Mustermann (specimen data): eID, up to level high. Profile,
/// address and eID claims (`place_of_birth` Berlin, `nationality` D).
pub const CITIZEN_HIGH: TestUser = TestUser {
    name: "citizen-high",
    sub: "pseud-7f3a9c21e4b8d05a",
    max_level: Level::High,
};
/// A citizen who reaches at most level substantial.
pub const CITIZEN_SUBSTANTIAL: TestUser = TestUser {
    name: "citizen-substantial",
    sub: "pseud-2b6e0d94a1c7f358",
    max_level: Level::Substantial,
};
/// A citizen who reaches at most level low.
pub const CITIZEN_LOW: TestUser = TestUser {
    name: "citizen-low",
    sub: "pseud-c94f1a0e7d3b62b8",
    max_level: Level::Low,
};
/// A municipal staff member, `anna@kommune.example`, up to substantial.
pub const STAFF_ANNA: TestUser = TestUser {
    name: "staff-anna",
    sub: "staff-5d81e2c0a7f49b36",
    max_level: Level::Substantial,
};

/// A second staff member, `bernd@kommune.example`, up to substantial (the
/// second officer of four-eyes tests).
pub const STAFF_BERND: TestUser = TestUser {
    name: "staff-bernd",
    sub: "staff-9a03c7e5b21d48f6",
    max_level: Level::Substantial,
};

/// An account whose `email` is Anna's address, with `email_verified`
/// false (registered without proving the address): the attacker of the
/// e-mail verification tests.
pub const STAFF_UNVERIFIED: TestUser = TestUser {
    name: "staff-unverified",
    sub: "staff-e07b4c19d2a6f835",
    max_level: Level::Substantial,
};

/// Client metadata for a confidential client with `client_secret_basic`.
/// Add `backchannel_logout_uri`, `post_logout_redirect_uris` etc. by
/// indexing the returned value.
pub fn basic_client(client_id: &str, secret: &str, redirect_uri: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

/// Client metadata for a client that authenticates with `private_key_jwt`
/// (ES256) using the key whose public JWK is `public_jwk`.
pub fn private_key_jwt_client(client_id: &str, public_jwk: &Value, redirect_uri: &str) -> Value {
    json!({
        "client_id": client_id,
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks": { "keys": [crate::jwt::public_jwk(public_jwk)] },
    })
}

/// Adds logout metadata to a client: back-channel logout to
/// `backchannel_logout_uri` with `sid` required (which also puts `sid` into
/// the ID token), and one `post_logout_redirect_uri`.
pub fn with_logout(
    mut client: Value,
    backchannel_logout_uri: &str,
    post_logout_redirect_uri: &str,
) -> Value {
    client["backchannel_logout_uri"] = json!(backchannel_logout_uri);
    client["backchannel_logout_session_required"] = json!(true);
    client["post_logout_redirect_uris"] = json!([post_logout_redirect_uri]);
    client
}

/// A PKCE pair `(code_verifier, code_challenge)` for S256.
pub fn pkce_pair() -> (String, String) {
    let verifier = random_token(32);
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, crate::jwt::b64(digest.as_ref()))
}

/// `n` random bytes as base64url: states, nonces, jtis.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).unwrap();
    crate::jwt::b64(&buf)
}

/// A running test OP (node process), killed on drop.
pub struct TestOp {
    child: Option<Child>,
    port: u16,
    config_path: PathBuf,
    keys_path: PathBuf,
    clients: Value,
    logs: Arc<Mutex<String>>,
    extra_ca: Option<PathBuf>,
}

/// `tests/oidc-op` in the source tree.
pub fn op_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../oidc-op")
}

impl TestOp {
    /// Starts the OP on a free port with `clients` (a JSON array of
    /// oidc-provider client metadata); its config and keys go into `dir`.
    /// Panics (with node's stderr) if it is not ready within 30 s.
    pub fn start(dir: &TempDir, clients: Value) -> Self {
        assert!(clients.is_array(), "clients must be a JSON array");
        let mut op = Self {
            child: None,
            port: 0,
            config_path: dir.path().join("op-config.json"),
            keys_path: dir.path().join("op-keys.json"),
            clients,
            logs: Arc::new(Mutex::new(String::new())),
            extra_ca: None,
        };
        op.spawn();
        op
    }

    /// Like [`TestOp::start`], trusting the CA in `ca_pem_path` for the
    /// OP's own outgoing HTTPS (back-channel logout to a gateway with a
    /// test certificate), through node's `NODE_EXTRA_CA_CERTS`.
    pub fn start_with_ca(dir: &TempDir, clients: Value, ca_pem_path: &Path) -> Self {
        assert!(clients.is_array(), "clients must be a JSON array");
        let mut op = Self {
            child: None,
            port: 0,
            config_path: dir.path().join("op-config.json"),
            keys_path: dir.path().join("op-keys.json"),
            clients,
            logs: Arc::new(Mutex::new(String::new())),
            extra_ca: Some(ca_pem_path.to_owned()),
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let dir = op_dir();
        let script = dir.join("op.mjs");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            panic!(
                "the test OpenID Provider's node modules are missing ({}): run `npm ci --prefix tests/oidc-op` (tests/run.sh does)",
                dir.join("node_modules").display()
            );
        }
        let node = crate::require_tool("node", "nodejs");
        let config = json!({
            "port": self.port,
            "keys_file": self.keys_path,
            "clients": self.clients,
        });
        std::fs::write(&self.config_path, config.to_string()).unwrap();
        let mut cmd = Command::new(node);
        if let Some(ca) = &self.extra_ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let mut child = cmd
            .arg(&script)
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let rx = crate::capture_output(&mut child, self.logs.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("OP ready http://127.0.0.1:") {
                        break url.trim().parse::<u16>().unwrap();
                    }
                    self.logs
                        .lock()
                        .unwrap()
                        .push_str(&format!("stdout: {line}\n"));
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "the test OP ({}) did not start (status {status:?}); if node_modules is broken run `npm ci --prefix tests/oidc-op`; node stderr:\n{}",
                        script.display(),
                        self.logs()
                    );
                }
            }
        };
        self.port = port;
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`: issuer and base of every OP endpoint.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `issuer` + `path`, e.g. `op.url("/.well-known/openid-configuration")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    /// The OP's private signing keys, `{"keys": [JWK, …]}`, newest ES256
    /// first (the one that signs ID tokens), then older ES256 keys, then
    /// the PS256 key `ps256-1`.
    pub fn keys(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.keys_path).unwrap()).unwrap()
    }

    /// The private JWK with this `kid`.
    pub fn key(&self, kid: &str) -> Value {
        self.keys()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .cloned()
            .unwrap_or_else(|| panic!("the OP has no key {kid:?}"))
    }

    /// Path of the keys file.
    pub fn keys_path(&self) -> &Path {
        &self.keys_path
    }

    /// Adds a new ES256 key (`es256-2`, `es256-3`, …) that signs ID tokens
    /// from now on; the old keys stay in `jwks_uri`. Returns the new `kid`.
    /// Sessions and grants survive (oidc-provider's memory store outlives
    /// the rebuilt Provider).
    pub fn rotate_keys(&self) -> String {
        let (status, body) = self.post_plain("/__test/rotate");
        assert_eq!(status, 200, "rotate failed: {body}\n{}", self.logs());
        let v: Value = serde_json::from_str(&body).unwrap();
        v["kid"].as_str().unwrap().to_owned()
    }

    /// Kills the OP ("IdP down"). Its port stays reserved for
    /// [`TestOp::restart`] only by luck: nothing else should bind it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the OP again on the same port with the same keys and clients.
    /// Sessions, grants and codes of the old process are gone.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Everything node wrote to stderr (plus stray stdout lines).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// A blocking `POST path` with an empty body, over plain HTTP/1.1 (no
    /// async runtime needed).
    fn post_plain(&self, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }
}

/// Joins the chunks of a chunked HTTP/1.1 body.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for TestOp {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- test OP logs ----\n{}", self.logs());
        }
    }
}
