//! `bench-identity`: the identity side of the secure-path benchmark
//! (`bench/run.sh`, tests `bearer` and `session`). It starts the real test
//! OpenID Provider (node `oidc-provider`, `tests/oidc-op`), writes the
//! gateway's `[[identity.providers]]` table for it and an access token
//! signed with the OP's own RSA key (PS256), waits until the gateway under
//! test listens, logs in through it as a citizen (the real code flow:
//! gateway -> OP login form -> callback) and writes the session cookie.
//! Then it keeps the OP running until it is killed.
//!
//! ```text
//! bench-identity --dir DIR --gateway-port PORT --ca CA.pem
//!   DIR/provider.toml  the provider table (name "op")
//!   DIR/bearer.txt     `Bearer <jwt>`, audience https://api.bench.example
//!   DIR/cookie.txt     `name=value` of the session cookie, once logged in
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use testkit::browser::Browser;
use testkit::oidc::{self, Level, TestOp, CITIZEN_HIGH};
use testkit::{jwt, TempDir};

/// The audience bearer routes of the benchmark demand.
const AUDIENCE: &str = "https://api.bench.example";
/// The session cookie's name (`stadttor_gateway::authn::session::COOKIE`).
const COOKIE: &str = "__Host-stadttor-session";

struct Args {
    dir: PathBuf,
    port: u16,
    ca: PathBuf,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut dir, mut port, mut ca) = (None, None, None);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--gateway-port" => port = Some(value.parse().expect("--gateway-port: a port")),
            "--ca" => ca = Some(PathBuf::from(value)),
            other => panic!("unknown argument {other}"),
        }
    }
    Args {
        dir: dir.expect("--dir"),
        port: port.expect("--gateway-port"),
        ca: ca.expect("--ca"),
    }
}

fn provider_toml(op: &TestOp, secret_file: &std::path::Path, redirect: &str) -> String {
    format!(
        r#"[[identity.providers]]
name = "op"
display_name = "Anmeldung (Benchmark)"
issuer = "{issuer}"
client_id = "stadttor"
client_secret_file = {secret:?}
redirect_uri = "{redirect}"
scopes = ["openid", "profile"]
id_token_algs = ["ES256", "PS256"]
allow_http = true
request_timeout = "3s"
"#,
        issuer = op.issuer(),
        secret = secret_file.display().to_string(),
    )
}

fn bearer(op: &TestOp) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": op.issuer(), "aud": AUDIENCE, "sub": CITIZEN_HIGH.sub,
        "acr": oidc::ACR_HIGH, "iat": now, "exp": now + 3600, "client_id": "fachverfahren",
    });
    let head = json!({"alg": "PS256", "kid": "ps256-1", "typ": "at+jwt"});
    jwt::sign_jws(&head, &claims, &op.key("ps256-1"))
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the gateway never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let scratch = TempDir::new("bench-op");
    let secret = "bench-client-secret-0123456789abcdef";
    let redirect = format!("https://localhost:{}/.stadttor/callback/op", a.port);
    let op = TestOp::start(
        &scratch,
        json!([oidc::basic_client("stadttor", secret, &redirect)]),
    );
    let secret_file = a.dir.join("client-secret");
    std::fs::write(&secret_file, secret).unwrap();
    testkit::set_secret_mode(&secret_file);
    std::fs::write(
        a.dir.join("provider.toml"),
        provider_toml(&op, &secret_file, &redirect),
    )
    .unwrap();
    std::fs::write(a.dir.join("bearer.txt"), format!("Bearer {}", bearer(&op))).unwrap();
    eprintln!("bench-identity: OP at {}", op.issuer());

    let gateway: SocketAddr = ([127, 0, 0, 1], a.port).into();
    wait_listening(gateway);
    let browser = Browser::builder()
        .trust_ca_pem(&std::fs::read_to_string(&a.ca).unwrap())
        .resolve("localhost", gateway)
        .build();
    let base = format!("https://localhost:{}", a.port);
    let chain = browser
        .login_at_op(
            format!("{base}/session/").as_str(),
            CITIZEN_HIGH,
            Level::High,
        )
        .await;
    let Some(cookie) = browser.cookie(&base, COOKIE) else {
        panic!("no session cookie after the login: {chain:?}");
    };
    std::fs::write(a.dir.join("cookie.txt"), format!("{COOKIE}={cookie}")).unwrap();
    eprintln!("bench-identity: logged in; the OP stays up until this process is killed");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
