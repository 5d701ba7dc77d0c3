//! The HTTP plumbing: sockets, TLS, framing, headers, bodies, the upstream
//! pool, the canonical request target, and the credentials kept at the
//! gateway.
//!
//! Nothing here decides whether a request may pass; [`crate::proxy`] does
//! that and calls into these modules for the mechanics: [`listener`] accepts
//! and limits connections, [`tls`] terminates TLS, [`framing`] trips on
//! ambiguous HTTP/1.1 framing in front of hyper, [`target`] rewrites the
//! request target once into its canonical form, [`proxy_protocol`] reads a
//! load balancer's PROXY header and [`client_addr`] decides the client's
//! address from it and from trusted proxies' headers, [`credentials`] keeps the
//! client's credentials away from services, [`headers`] cleans headers in
//! both directions, [`body`] streams bodies under limits, [`upstream`] keeps
//! the upstream pools and [`tunnel`] carries upgraded connections.

pub(crate) mod body;
pub(crate) mod client_addr;
pub(crate) mod credentials;
pub mod framing;
pub(crate) mod headers;
pub(crate) mod listener;
pub mod proxy_protocol;
pub(crate) mod target;
pub mod tls;
pub(crate) mod tunnel;
pub mod upstream;
