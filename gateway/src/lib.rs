//! `stadttor-gateway`: the gateway library behind the `stadttor` binary.
//!
//! One module per stage of a request's life (see `ARCHITECTURE.md`):
//! [`config`] → [`listener`] (accept, limits) → [`tls`] (rustls, keys from
//! `stadttor-hsm`) → hyper (HTTP/1.1, h2) → [`proxy`] (framing checks,
//! [`state`] route match, [`headers`] hygiene, [`upstream`] exchange,
//! [`body`] limits) → [`respond`] (the one place errors become responses).
//! Around them: [`server`] (reload, drain), [`admin`] and [`metrics`], and
//! [`demo`] for the first minute with stadttor. The login code keeps
//! single-use markers and session revocations in `stadttor-sessions`
//! (TLS material for it from [`store_tls`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit_event;
pub mod auditcmd;
pub mod authn;
pub mod body;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod framing;
pub mod headers;
pub mod identity;
pub mod keycmd;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod policycmd;
pub mod proxy;
pub mod respond;
pub mod server;
pub mod signcmd;
pub mod signing;
pub mod state;
pub mod store_tls;
pub mod target;
pub mod tls;
pub mod tunnel;
pub mod upstream;
