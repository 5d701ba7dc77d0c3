//! `stadttor-gateway`: the gateway library behind the `stadttor` binary.
//!
//! One module per stage of a request's life (see `ARCHITECTURE.md`):
//! [`config`] → [`http::listener`] (accept, limits) → [`http::tls`] (rustls,
//! keys from `stadttor-hsm`) → hyper (HTTP/1.1, h2) → `proxy` (framing
//! checks, [`state`] route match, [`http::headers`] hygiene, [`authn`],
//! [`policy`], [`audit_event`], [`http::upstream`] exchange, [`http::body`]
//! limits, [`signing`]) → [`respond`] (the one place errors become
//! responses). The process-wide state the request path reads is in
//! [`runtime`]; who a caller is, in [`identity`]. Around them: [`preflight`]
//! (the one load-and-validate path of `serve` and `config check`),
//! [`certs`] (served certificates: checks, expiry), [`server`]
//! (reload, drain), [`admin`] (health, metrics, the officers' page) and
//! [`metrics`]. The login code keeps single-use markers and session
//! revocations in `stadttor-sessions` (TLS material for it from
//! [`store_tls`]).
//!
//! The command line (`serve`, `config check`, `keys`, `sign`, `verify`,
//! `audit`, `policy`, `demo`) is not part of this library: it is the
//! binary's `src/cli/` (`src/main.rs` calls `cli::main()`), the only code
//! in this package that uses `anyhow`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit_event;
pub mod authn;
pub mod certs;
pub mod config;
pub mod http;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod preflight;
pub(crate) mod proxy;
pub mod respond;
pub mod route_index;
pub mod runtime;
pub mod server;
pub mod signing;
pub mod state;
pub mod store_tls;
