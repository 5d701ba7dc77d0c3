//! Debian's HAProxy as a load balancer in TCP mode in front of a gateway
//! listener, sending PROXY protocol v2 (`send-proxy-v2`) or v1
//! (`send-proxy`): started in the
//! foreground (`-db`) as the current user with its configuration in a
//! [`TempDir`]; killed on drop.
//!
//! It connects to the gateway from 127.0.0.1 (`source`), so a test client
//! bound to another loopback address (127.0.0.5) is told apart from the
//! balancer by address. Like nginx, HAProxy cannot report a port-0 bind,
//! so the port comes from [`crate::free_port`]; a lost race is retried.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{require_tool, TempDir};

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy on 127.0.0.1 forwarding TCP to `backend` with a
    /// PROXY v2 header in front of each connection.
    pub fn send_proxy_v2(backend: SocketAddr) -> Self {
        Self::start(backend, "send-proxy-v2")
    }

    /// Like [`Haproxy::send_proxy_v2`], with the v1 (text) header.
    pub fn send_proxy_v1(backend: SocketAddr) -> Self {
        Self::start(backend, "send-proxy")
    }

    /// HAProxy with `option` on its one server line.
    fn start(backend: SocketAddr, option: &str) -> Self {
        let bin = require_tool("haproxy", "haproxy");
        for _ in 0..5 {
            let dir = TempDir::new("haproxy");
            let port = crate::free_port();
            let cfg = dir.write("haproxy.cfg", &config(port, backend, option));
            let mut child = Command::new(&bin)
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start haproxy");
            let log = Arc::new(Mutex::new(String::new()));
            {
                let mut stderr = child.stderr.take().unwrap();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        log.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                });
            }
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    std::thread::sleep(Duration::from_millis(50));
                    let text = log.lock().unwrap().clone();
                    if text.contains("Address already in use") {
                        break;
                    }
                    panic!("haproxy exited ({status}):\n{text}");
                }
                // Checked without connecting: a connection would reach the
                // gateway as a proxied one and count there.
                if port_listening(port) {
                    return Self {
                        child,
                        addr,
                        log,
                        _dir: dir,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy did not listen on {addr}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("haproxy: no free port after 5 attempts");
    }

    /// What HAProxy wrote to stderr, for failure messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp,
/// state 0A = LISTEN).
fn port_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
    })
}

fn config(port: u16, backend: SocketAddr, option: &str) -> String {
    format!(
        r#"global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend citizens
    bind 127.0.0.1:{port}
    default_backend stadttor

backend stadttor
    server gw {backend} {option} source 127.0.0.1
"#
    )
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
