//! `stadttor-gateway`: the gateway library behind the `stadttor` binary.
//!
//! One module per stage of a request's life (see `ARCHITECTURE.md`):
//! [`config`] → [`http::listener`] (accept, limits) → [`http::tls`] (rustls,
//! keys from `stadttor-hsm`) → hyper (HTTP/1.1, h2) → [`proxy`] (framing
//! checks, [`state`] route match, [`http::headers`] hygiene,
//! [`http::upstream`] exchange, [`http::body`] limits) → [`errors`] (the one
//! place errors become responses). The process-wide state the request path
//! reads is in [`runtime`]. Around them: [`server`] (reload, drain),
//! [`admin`] and [`metrics`], and [`demo`] for the first minute with
//! stadttor. The login code keeps single-use markers and session
//! revocations in `stadttor-sessions` (TLS material for it from
//! [`store_tls`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit_event;
pub mod auditcmd;
pub mod auth;
pub mod config;
pub mod demo;
pub mod errors;
pub mod http;
pub mod keycmd;
pub mod keys;
pub mod metrics;
pub mod officer;
pub mod policy;
pub mod policycmd;
pub(crate) mod proxy;
pub mod runtime;
pub mod server;
pub mod signcmd;
pub mod signing;
pub mod state;
pub mod store_tls;
