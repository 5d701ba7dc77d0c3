//! `[server]`: connection limits, header limits, the identity header
//! prefix, logging.

use super::{raw, Server};

/// Checks `[server]` and returns it typed.
pub(super) fn validate(s: &raw::Server, issue: &mut dyn FnMut(String, String)) -> Server {
    if s.max_connections == 0 {
        issue("server.max_connections".into(), "must be at least 1".into());
    }
    if s.max_connections_per_ip == 0 {
        issue(
            "server.max_connections_per_ip".into(),
            "must be at least 1".into(),
        );
    }
    if s.header_read_timeout.is_zero() {
        issue(
            "server.header_read_timeout".into(),
            "must be positive (it defends against slowloris)".into(),
        );
    }
    if s.max_header_bytes.0 < 8 * 1024 || s.max_header_bytes.0 > 1024 * 1024 {
        issue(
            "server.max_header_bytes".into(),
            "must be between 8KiB and 1MiB (8KiB is the smallest HTTP/1.1 read buffer)".into(),
        );
    }
    if s.h2_max_concurrent_streams == 0 {
        issue(
            "server.h2_max_concurrent_streams".into(),
            "must be at least 1 (0 would refuse every HTTP/2 request)".into(),
        );
    }
    let prefix = s.identity_header_prefix.to_ascii_lowercase();
    if prefix.len() < 3 || http::HeaderName::from_bytes(prefix.as_bytes()).is_err() {
        issue(
            "server.identity_header_prefix".into(),
            "must be a header-name prefix of at least 3 characters, e.g. `x-stadttor-`".into(),
        );
    }

    if s.listen_backlog == 0 || s.listen_backlog > 65_535 {
        issue(
            "server.listen_backlog".into(),
            "must be between 1 and 65535 (the kernel caps it at net.core.somaxconn)".into(),
        );
    }
    Server {
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        header_read_timeout: s.header_read_timeout,
        max_header_bytes: s.max_header_bytes.0 as usize,
        drain_timeout: s.drain_timeout,
        identity_header_prefix: prefix,
        log_format: s.log_format,
        access_log: s.access_log,
        h2_max_concurrent_streams: s.h2_max_concurrent_streams,
        listen_backlog: s.listen_backlog,
        certificate_expiry_warning: s.certificate_expiry_warning,
    }
}
