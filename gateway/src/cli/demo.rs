//! `stadttor demo`: a working gateway in one command, for newcomers.
//!
//! It creates (or reuses) a folder with a development CA, a server
//! certificate for `localhost` and `127.0.0.1` with a **software** key, and a
//! configuration; starts a small sample service on a free loopback port;
//! and serves it through TLS. Nothing here is fit for production: the key
//! is a file and the CA is throw-away.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stadttor_gateway::config::LogFormat;
use stadttor_gateway::server;
use tokio::net::TcpListener;

use super::serve::announce;
use super::{finish, init_tracing, runtime, Exit};

/// Runs `stadttor demo` until Ctrl-C.
pub(super) fn run(dir: PathBuf, listen: SocketAddr, admin: SocketAddr) -> Exit {
    init_tracing(LogFormat::Text);
    finish(runtime().and_then(|rt| rt.block_on(demo(dir, listen, admin))))
}

async fn demo(dir: PathBuf, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let backend = start_sample_service()
        .await
        .context("cannot start the sample service")?;
    let path = write_files(&dir, listen, admin, backend)?;
    let prepared = server::prepare(&path).await?;
    announce(&prepared.bound);
    let addr = prepared
        .bound
        .listeners
        .first()
        .map(|(_, a)| *a)
        .unwrap_or(listen);
    println!(
        "\nstadttor demo is running (development only: software key, throw-away CA).\n\
         Try:  curl --cacert {ca} https://localhost:{port}/\n\
         Metrics: curl http://{admin}/metrics\n\
         Config:  {cfg}\n\
         Audit:   stadttor audit verify {audit} --key {vkey}\n\
         Stop with Ctrl-C.",
        ca = dir.join("ca.pem").display(),
        port = addr.port(),
        cfg = path.display(),
        audit = dir.join("audit").display(),
        vkey = prepared.audit_verifier_key().unwrap_or_default(),
    );
    prepared.run().await?;
    Ok(())
}

/// Errors while setting up the demo.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] stadttor_pki::Error),
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Creates the demo folder contents (keeping an existing CA and key) and
/// writes `stadttor.toml` pointing at `backend`. Returns the config path.
fn write_files(
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    backend: SocketAddr,
) -> Result<PathBuf, DemoError> {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|source| DemoError::Io {
        path: tls.clone(),
        source,
    })?;
    let ca_path = dir.join("ca.pem");
    let cert_path = tls.join("server.pem");
    let key_path = tls.join("server.key");
    let audit_key = dir.join("audit-ed25519.key");
    if !audit_key.exists() {
        // Ed25519, as C2SP checkpoints expect; PKCS#8 DER, owner-only.
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| DemoError::Io {
                path: audit_key.clone(),
                source: std::io::Error::other("cannot generate an Ed25519 key"),
            })?;
        let io = |source| DemoError::Io {
            path: audit_key.clone(),
            source,
        };
        std::fs::write(&audit_key, pkcs8.as_ref()).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&audit_key, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    let pseudonym_key = dir.join("audit-pseudonym.key");
    if !pseudonym_key.exists() {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).map_err(
            |_| DemoError::Io {
                path: pseudonym_key.clone(),
                source: std::io::Error::other("no randomness"),
            },
        )?;
        write(&pseudonym_key, &stadttor_pki::hex::encode(&secret), true)?;
    }
    if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
        let ca = stadttor_pki::devca::DevCa::generate("stadttor demo CA")?;
        let issued = ca.issue_server(&["localhost", "127.0.0.1"])?;
        write(&ca_path, &ca.cert_pem(), false)?;
        write(&cert_path, &issued.cert_pem, false)?;
        write(&key_path, &issued.key_pem, true)?;
    }
    let config = format!(
        r#"# stadttor demo configuration: DEVELOPMENT ONLY.
# The TLS key is a software file and the CA is throw-away. See
# packaging/examples/ for production-shaped configurations.

[server]
log_format = "text"

[admin]
listen = "{admin}"

[[listeners]]
name = "public"
listen = "{listen}"

[[listeners.tls.certificates]]
chain = "tls/server.pem"
key = "file:tls/server.key"

[[upstreams]]
name = "sample-service"
addresses = ["{backend}"]

[[routes]]
name = "sample"
upstream = "sample-service"
path_prefix = "/"
websocket = true

# Every request is recorded (pseudonymised) in a signed, tamper-evident log.
[audit]
dir = "audit"
origin = "stadttor-demo/audit"
key = "file:audit-ed25519.key"
pseudonym_key_file = "audit-pseudonym.key"
"#
    );
    let path = dir.join("stadttor.toml");
    write(&path, &config, false)?;
    Ok(path)
}

/// Starts the sample service on a free loopback port.
async fn start_sample_service() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(sample))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn sample(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut body = String::from(
        "Hello from the sample service behind stadttor.\n\nWhat the gateway forwarded to me:\n",
    );
    let _ = writeln!(body, "  {} {}", req.method(), req.uri());
    for (k, v) in req.headers() {
        let _ = writeln!(body, "  {k}: {}", v.to_str().unwrap_or("<binary>"));
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
