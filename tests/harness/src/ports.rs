//! Ports a test must know before the process that binds them starts (the
//! test OP needs the gateway's exact redirect URIs; swtpm takes two ports).
//!
//! Binding port 0 and releasing it races: the kernel hands that same port
//! to the next port-0 bind or outgoing connection of any process, and a
//! gateway then fails with "Address already in use". These ports come from
//! below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so
//! the kernel never picks them on its own; a per-process start offset and
//! counter keep concurrent test binaries and threads apart, and each port
//! is checked free (bind) before it is handed out.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out; below it live well-known services.
const FLOOR: u32 = 10_000;

/// The first port of the kernel's ephemeral range (32768 by default).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|p| *p > FLOOR + 1_000)
        .unwrap_or(32_768)
}

/// Next candidate: spread by process id, then sequential in this process.
fn candidate(span: u32) -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % span;
    (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span
}

fn is_free(port: u32) -> bool {
    u16::try_from(port).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// Returns the first `p` (with `p..p + count` all free just now) among
/// ports the kernel does not assign by itself.
pub fn free_ports(count: u32) -> u16 {
    let top = ephemeral_start();
    let span = top - FLOOR - count;
    for _ in 0..span {
        let first = FLOOR + candidate(span);
        if (first..first + count).all(is_free) {
            return u16::try_from(first).expect("below the ephemeral range");
        }
    }
    panic!("no {count} free adjacent ports between {FLOOR} and {top} on 127.0.0.1");
}

/// One port that was free just now and that the kernel does not hand out.
pub fn free_port() -> u16 {
    free_ports(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_distinct() {
        let a = free_port();
        let b = free_ports(2);
        assert!(u32::from(a) < ephemeral_start() && u32::from(a) >= FLOOR);
        assert_ne!(a, b);
        assert!(is_free(u32::from(b) + 1));
    }
}
