//! Debian's nginx as a real upstream, or as a reverse proxy in front of the
//! gateway ([`Nginx::reverse_proxy`]): started as the current user, not
//! daemonised, with its prefix, pid file, logs and temporary directories in
//! a [`TempDir`]; killed on drop.
//!
//! It serves files from a document root with `merge_slashes on` (nginx
//! decodes the path, merges slashes and removes dot segments on its own)
//! and writes one access-log line per request, `<x-request-id>\t<request
//! URI as received>`, which [`Nginx::seen`] reads back.
//!
//! nginx cannot bind port 0 and report it, so the port comes from
//! [`crate::free_port`]; a start that loses that race is retried.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{require_tool, TempDir};

/// A running nginx.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx serving `root` (a directory) on 127.0.0.1.
    pub fn start(root: &Path) -> Self {
        Self::launch(|dir, port| config(dir, root, port))
    }

    /// Starts nginx as a reverse proxy in front of a gateway: plain HTTP on
    /// 127.0.0.1, forwarding every request over TLS to `upstream` (its
    /// certificate verified with `ca` for the name `localhost`), connecting
    /// from 127.0.0.1 and appending the client to `X-Forwarded-For`
    /// (`$proxy_add_x_forwarded_for`), as a Land's balancer would.
    pub fn reverse_proxy(upstream: SocketAddr, ca: &Path) -> Self {
        Self::launch(|dir, port| proxy_config(dir, upstream, ca, port))
    }

    /// Runs nginx with the configuration `conf(dir, port)` on a free port.
    fn launch(conf: impl Fn(&Path, u16) -> String) -> Self {
        let bin = require_tool("nginx", "nginx");
        for _ in 0..5 {
            let dir = TempDir::new("nginx");
            let port = crate::free_port();
            dir.write("nginx.conf", &conf(dir.path(), port));
            for sub in [
                "tmp/body",
                "tmp/proxy",
                "tmp/fastcgi",
                "tmp/uwsgi",
                "tmp/scgi",
            ] {
                std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            }
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log =
                        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!("nginx exited ({status}):\n{log}");
                }
                if TcpStream::connect(addr).is_ok() {
                    return Self { child, addr, dir };
                }
                assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx: no free port after 5 attempts");
    }

    /// `(x-request-id, request URI)` of every request nginx logged so far.
    pub fn seen(&self) -> Vec<(String, String)> {
        crate::normalising::read_log(&self.dir.path().join("access.log"))
    }

    /// nginx's error log, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// The part of every configuration before the `server` block: foreground,
/// everything under `dir`, the corpus access log.
fn common(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format corpus "$http_x_request_id\t$request_uri";
    access_log {d}/access.log corpus;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
"#
    )
}

fn config(dir: &Path, root: &Path, port: u16) -> String {
    let head = common(dir);
    format!(
        r#"{head}    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        merge_slashes on;
        root {root};
        location / {{ }}
    }}
}}
"#,
        root = root.display()
    )
}

fn proxy_config(dir: &Path, upstream: SocketAddr, ca: &Path, port: u16) -> String {
    let head = common(dir);
    format!(
        r#"{head}    server {{
        listen 127.0.0.1:{port};
        server_name _;
        location / {{
            proxy_pass https://{upstream};
            proxy_http_version 1.1;
            proxy_bind 127.0.0.1;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_set_header Host localhost;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#,
        ca = ca.display()
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
