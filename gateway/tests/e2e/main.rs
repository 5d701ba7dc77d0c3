//! End-to-end tests: the real `stadttor` binary on port 0, real backends,
//! real TLS clients. One test binary, as in hickory-dns.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod appliance;
mod audit;
mod cli;
mod credentials;
mod errors;
mod evidence;
mod foureyes;
mod framing;
mod lb;
mod login;
mod officer_login;
mod ops;
mod path_confusion;
mod policy;
mod proxy;
mod readiness;
mod route_scale;
mod saml;
mod saml_logout;
mod streaming;
mod tls;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use testkit::client::{self, Proto};
use testkit::{Gateway, TempDir, TestPki};

pub const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

/// A gateway with one TLS listener (`public`), an admin listener, one
/// upstream `app` and one route `app` for `/`, plus `extra` TOML.
pub struct Setup {
    pub dir: TempDir,
    pub pki: TestPki,
    pub gw: Gateway,
}

impl Setup {
    pub fn start(upstream: SocketAddr, server: &str, route: &str, extra: &str) -> Self {
        let dir = TempDir::new("e2e");
        let pki = TestPki::new(&dir, "main", &[]);
        let config = config_text(&pki, upstream, server, route, extra);
        let gw = Gateway::start(BIN, &dir, &config);
        Self { dir, pki, gw }
    }

    /// The configuration the Debian package installs
    /// (`packaging/examples/minimal.toml`), with this test's certificate and
    /// `upstream` as its service; see [`testkit::packaged_example`].
    pub fn packaged(upstream: SocketAddr) -> Self {
        let dir = TempDir::new("appliance");
        let pki = TestPki::new(&dir, "main", &[]);
        let path = testkit::packaged_example(&dir, &pki, upstream);
        let gw = Gateway::start_file(BIN, &path);
        Self { dir, pki, gw }
    }

    pub fn client(&self, proto: Proto) -> Arc<ClientConfig> {
        Arc::new(client::tls_config(&self.pki.ca_pem, None, proto))
    }

    pub async fn get(&self, proto: Proto, path: &str) -> client::Resp {
        client::get(self.client(proto), self.gw.addr(), "localhost", proto, path)
            .await
            .unwrap()
    }
}

pub fn config_text(
    pki: &TestPki,
    upstream: SocketAddr,
    server: &str,
    route: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[server]
{server}

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

{cert}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
name = "app"
upstream = "app"
path_prefix = "/"
{route}

{extra}
"#,
        cert = pki.certificate_toml(&[]),
    )
}
