//! The Debian package under a real systemd: installed into Debian 12 booted
//! with `systemd-nspawn --boot` (PID 1 of the CI machines is not systemd,
//! but a systemd boots inside nspawn there), then, through systemd and the
//! shipped unit:
//!
//! * `systemctl start stadttor` runs `ExecStartPre` (`config check`) and
//!   serves the packaged `minimal.toml` (with a test certificate and an
//!   upstream in this process; the container shares the host's network),
//!   asked with curl inside the container;
//! * the sandbox is really applied: in the service's own mount namespace,
//!   as its user, `/etc/stadttor` and `/usr` are read-only and only the
//!   state directory is writable; its `/proc/PID/status` shows no new
//!   privileges, a seccomp filter and only `CAP_NET_BIND_SERVICE`; and
//!   `systemctl show` reports what the unit file says;
//! * `systemctl reload` checks the file and sends SIGHUP (a new response
//!   header appears, same process); a bad file makes the reload fail and
//!   the old configuration keeps serving;
//! * a crash (SIGKILL) is restarted;
//! * `systemctl stop` drains: a request in flight completes, the process
//!   exits 0, the journal says "draining" and "drained";
//! * a bad configuration never starts: `ExecStartPre` fails, the journal
//!   names the file and the key, and systemd does not retry it;
//! * a state store out of reach at start (`serve` exits 69) is retried.
//!
//! The root file system is made by debootstrap (minbase plus systemd, dbus
//! and curl) and kept outside the clone, in `STADTTOR_NSPAWN_ROOTFS`
//! (default `/var/tmp/stadttor-nspawn-rootfs`), one directory per hash of
//! the suite, the mirror, those packages and the package's `Depends`. The
//! package's dependencies are downloaded into that root's APT cache but
//! not installed: the test installs the package with `apt-get install`
//! (from that cache), so a dependency the package forgot is missing in the
//! container as on a minimal server (this is how `/bin/kill` for
//! `ExecReload`, i.e. `procps`, was found). Each run boots that root with
//! `--volatile=overlay`: every write goes to a tmpfs and is gone when the
//! container stops. Making the root takes about a minute once (network
//! needed); a run on a made root about 25 s, 10 s of it `cargo deb`.
//!
//! Needs root, `debootstrap` and `systemd-nspawn` (tests/run.sh installs
//! them); it fails, never skips, when they are missing or the container
//! does not boot, and powers the container off (or kills it) even when an
//! assertion fails.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::backend::Backend;
use testkit::{free_port, require_tool, TempDir, TestPki};

use super::{build_deb, run};

/// Debian 12.
const SUITE: &str = "bookworm";
/// What debootstrap installs besides minbase: systemd as PID 1 and curl to
/// ask the gateway from inside.
const INCLUDE: &[&str] = &["systemd", "systemd-sysv", "dbus", "curl"];
/// Where the test's files appear in the container (read-only).
const SHARE: &str = "/srv/stadttor-test";
/// `PATH` inside the container.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The config file the unit names.
const CONFIG: &str = "/etc/stadttor/stadttor.toml";

fn mirror() -> String {
    std::env::var("STADTTOR_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

fn dpkg_field(deb: &Path, field: &str) -> String {
    let (ok, out) = run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(field));
    assert!(ok, "dpkg-deb --field {field}: {out}");
    out.trim().to_owned()
}

/// The cached root file system for `deb`'s dependencies; made when missing.
fn rootfs(deb: &Path) -> PathBuf {
    let key = format!(
        "{SUITE}\n{}\n{}\n{}\n",
        mirror(),
        INCLUDE.join(","),
        dpkg_field(deb, "Depends")
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = std::env::var_os("STADTTOR_NSPAWN_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/stadttor-nspawn-rootfs"));
    let root = base.join(format!("{SUITE}-{hash}"));
    // A root is renamed into place only when complete.
    if root.is_dir() {
        return root;
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!(".making-{SUITE}-{hash}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let started = Instant::now();
    let (ok, out) = run(Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", INCLUDE.join(",")),
        ])
        .arg(SUITE)
        .arg(&tmp)
        .arg(mirror()));
    assert!(ok, "debootstrap failed (network to {}?):\n{out}", mirror());
    // The package's dependencies into the APT cache, not installed.
    let debdir = deb.parent().unwrap();
    let name = deb.file_name().unwrap().to_str().unwrap();
    let (ok, out) = run(Command::new("systemd-nspawn")
        .args(["--quiet", "--register=no", "--keep-unit", "-D"])
        .arg(&tmp)
        .arg(format!("--bind-ro={}:/srv/deb", debdir.display()))
        .args([
            "env",
            "-i",
            &format!("PATH={PATH}"),
            "DEBIAN_FRONTEND=noninteractive",
        ])
        .args(["apt-get", "install", "--yes", "--download-only"])
        .arg(format!("/srv/deb/{name}")));
    assert!(ok, "downloading the package's dependencies failed:\n{out}");
    if std::fs::rename(&tmp, &root).is_err() {
        // Another run made it meanwhile.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    // Roots for other dependencies (about 300 MB each) are not kept.
    for old in std::fs::read_dir(&base).unwrap().flatten() {
        let name = old.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{SUITE}-")) && old.path() != root {
            let _ = std::fs::remove_dir_all(old.path());
        }
    }
    eprintln!("made {} in {:.0?}", root.display(), started.elapsed());
    root
}

/// The children of `pid` (all its threads').
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A booted container: `timeout` (a watchdog, should the test process die)
/// around `systemd-nspawn --boot`; powered off on drop.
struct Container {
    watchdog: Child,
    /// The container's PID 1 (systemd), as the host sees it.
    leader: u32,
    console: PathBuf,
}

impl Container {
    fn boot(root: &Path, share: &Path, console: PathBuf) -> Self {
        let log = std::fs::File::create(&console).unwrap();
        let watchdog = Command::new("timeout")
            .args(["--kill-after=10", "600", "systemd-nspawn", "--quiet", "-D"])
            .arg(root)
            .args([
                "--register=no",
                "--keep-unit",
                "--boot",
                "--volatile=overlay",
            ])
            .arg("--console=passive")
            .arg(format!("--machine=stadttor-test-{}", std::process::id()))
            .arg(format!("--bind-ro={}:{SHARE}", share.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("timeout + systemd-nspawn");
        let mut c = Self {
            watchdog,
            leader: 0,
            console,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.leader == 0 {
            if let Ok(Some(status)) = c.watchdog.try_wait() {
                panic!(
                    "systemd-nspawn exited ({status}) before booting:\n{}",
                    c.console()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no PID 1 in the container:\n{}",
                c.console()
            );
            c.leader = children(c.watchdog.id())
                .into_iter()
                .flat_map(children)
                .find(|p| comm(*p) == "systemd")
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until systemd has its socket, systemctl cannot connect: retry.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, out) = c.sh("timeout 30 systemctl is-system-running --wait");
            match out.trim() {
                "running" => break,
                "degraded" => {
                    eprintln!(
                        "booted degraded:\n{}",
                        c.sh("systemctl --failed --no-pager").1
                    );
                    break;
                }
                other => assert!(
                    Instant::now() < deadline,
                    "the container did not boot: {other}\n{}",
                    c.console()
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "env", "-i", &format!("PATH={PATH}"), "LANG=C.UTF-8"])
            .args([
                "SYSTEMD_PAGER=",
                "DEBIAN_FRONTEND=noninteractive",
                "sh",
                "-c",
                script,
            ]);
        cmd
    }

    /// Runs `script` with `sh` in the container: success and output.
    fn sh(&self, script: &str) -> (bool, String) {
        run(&mut self.command(script))
    }

    /// Runs `script`, which must succeed; its output.
    fn ok(&self, script: &str) -> String {
        let (ok, out) = self.sh(script);
        if !ok && script.contains("systemctl") {
            let journal = self.sh("journalctl -u stadttor -n 40 -o cat --no-pager").1;
            panic!("failed in the container: {script}\n{out}\njournal:\n{journal}");
        }
        assert!(ok, "failed in the container: {script}\n{out}");
        out
    }

    /// Starts `script` in the background.
    fn spawn(&self, script: &str) -> Child {
        self.command(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM to `timeout` reaches nspawn, which powers the container
        // off; if that hangs, the whole process group is killed.
        let pid = self.watchdog.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the container did not stop in 20 s; killing it");
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.watchdog.wait();
    }
}

/// `curl` inside the container: `https://localhost:PORT{path}` with the
/// test CA, retried while the listener comes up.
fn curl(port: u16, path: &str, extra: &str) -> String {
    format!(
        "for i in $(seq 1 50); do curl -sS --fail-with-body --max-time 10 {extra} \
         --cacert {SHARE}/tls/ca.pem --resolve localhost:{port}:127.0.0.1 \
         https://localhost:{port}{path} && exit 0; sleep 0.2; done; exit 1"
    )
}

/// The test's files: the packaged `minimal.toml` on `port` with `upstream`,
/// its certificate, a variant with one more response header, and one that
/// `config check` refuses.
fn share_files(share: &TempDir, pki: &TestPki, upstream: std::net::SocketAddr, port: u16) {
    let path = testkit::packaged_example(share, pki, upstream);
    let good = std::fs::read_to_string(&path).unwrap().replacen(
        "127.0.0.1:0",
        &format!("127.0.0.1:{port}"),
        1,
    );
    assert!(good.trim_end().ends_with("path_prefix = \"/\""), "{good}");
    std::fs::write(&path, &good).unwrap();
    std::fs::copy(&pki.ca_path, share.path().join("tls/ca.pem")).unwrap();
    share.write(
        "reload.toml",
        &format!("{good}response_headers = {{ x-config = \"reloaded\" }}\n"),
    );
    share.write(
        "bad.toml",
        &format!("{good}timeouts = {{ connect = \"forever\" }}\n"),
    );
    share.write(
        "store.toml",
        &format!("{good}\n[policies]\nstore = \"postgres://stadttor@127.0.0.1:1/none\"\n"),
    );
}

/// Installs the configuration file `name` of the share as the unit's.
fn install_config(c: &Container, name: &str) {
    c.ok(&format!(
        "install -o root -g stadttor -m 0640 {SHARE}/{name} {CONFIG}"
    ));
}

fn main_pid(c: &Container) -> String {
    let pid = c
        .ok("systemctl show -p MainPID --value stadttor")
        .trim()
        .to_owned();
    assert_ne!(pid, "0", "stadttor is not running");
    pid
}

#[test]
fn the_package_under_systemd_starts_serves_sandboxed_reloads_refuses_and_drains() {
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(
        euid, 0,
        "booting Debian with systemd-nspawn needs root (CI runs tests/run.sh as root)"
    );
    require_tool("debootstrap", "debootstrap");
    require_tool("systemd-nspawn", "systemd-container");
    require_tool("nsenter", "util-linux");
    let started = Instant::now();
    let dir = TempDir::new("nspawn");
    let deb_dir = dir.path().join("deb");
    std::fs::create_dir_all(&deb_dir).unwrap();
    let deb = build_deb(&deb_dir);
    let root = rootfs(&deb);
    eprintln!("package and root ready after {:.1?}", started.elapsed());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(Backend::start("app"));
    let share = TempDir::new("nspawn-share");
    let pki = TestPki::new(&dir, "nspawn", &[]);
    let port = free_port();
    share_files(&share, &pki, backend.addr, port);
    std::fs::copy(&deb, share.path().join("stadttor.deb")).unwrap();

    let booted = Instant::now();
    let c = Container::boot(&root, share.path(), dir.path().join("console.log"));
    eprintln!("booted in {:.1?}", booted.elapsed());
    install_and_serve(&c, port);
    sandbox_is_applied(&c);
    reload_through_systemd(&c, port);
    a_crash_is_restarted(&c, port);
    stop_drains(&c, port);
    bad_configuration_never_starts(&c);
    unreachable_store_is_retried(&c);
    drop(c);
    eprintln!("under systemd: {:.1?} in all", started.elapsed());
}

fn install_and_serve(c: &Container, port: u16) {
    // Only what the package declares, from the root's APT cache. (Not
    // `--no-download`: apt then refuses the local .deb's path.)
    c.ok(&format!(
        "apt-get install --yes -o Dpkg::Use-Pty=0 {SHARE}/stadttor.deb"
    ));
    // The package's Depends brought every library the binary links (the
    // TPM stack; libxmlsec1-openssl, libxmlsec1 and libxml2 for SAML once the
    // binary calls stadttor-saml), not the build machine.
    let ldd = c.ok("ldd /usr/bin/stadttor");
    assert!(!ldd.contains("not found"), "missing libraries:\n{ldd}");
    assert_eq!(
        c.ok("stat -c '%U:%G %a' /etc/stadttor /etc/stadttor/stadttor.toml /var/lib/stadttor"),
        "root:stadttor 750\nroot:stadttor 640\nstadttor:stadttor 750\n"
    );
    c.ok(&format!(
        "install -d -o root -g stadttor -m 0750 /etc/stadttor/tls && \
         install -o root -g stadttor -m 0640 {SHARE}/tls/server.pem {SHARE}/tls/server.key \
         /etc/stadttor/tls/"
    ));
    install_config(c, "stadttor.toml");
    c.ok("systemctl start stadttor");
    let body = c.ok(&curl(port, "/through/systemd", ""));
    assert!(body.contains("/through/systemd"), "{body}");
    assert_eq!(c.ok("systemctl is-active stadttor").trim(), "active");
}

/// Settings of the unit file that `systemctl show` reports in the same
/// words (some in lower case, lists in another order).
const SHOWN_AS_WRITTEN: &[&str] = &[
    "Type",
    "User",
    "Group",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateIPC",
    "ProtectProc",
    "ProcSubset",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "MemoryDenyWriteExecute",
    "LockPersonality",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "RemoveIPC",
    "KeyringMode",
    "DevicePolicy",
    "UMask",
    "StateDirectory",
    "StateDirectoryMode",
    "SystemCallArchitectures",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "RestrictAddressFamilies",
];

fn sandbox_is_applied(c: &Container) {
    // `systemctl show` (what systemd applied) against the unit file.
    let unit = std::fs::read_to_string(super::unit_path()).unwrap();
    let written = |key: &str| -> String {
        unit.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .to_owned()
    };
    let show = c.ok(&format!(
        "systemctl show stadttor -p {}",
        SHOWN_AS_WRITTEN.join(" -p ")
    ));
    for key in SHOWN_AS_WRITTEN {
        let applied = show
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("systemctl show has no {key}:\n{show}"));
        // Lists may come back in another order.
        let words =
            |v: &str| -> BTreeSet<String> { v.split_whitespace().map(str::to_lowercase).collect() };
        assert_eq!(
            words(applied),
            words(&written(key)),
            "{key}: systemd applied `{applied}`, the unit says `{}`",
            written(key)
        );
    }

    // The process itself: no new privileges, a seccomp filter, only
    // CAP_NET_BIND_SERVICE (bit 10), the service user.
    let pid = main_pid(c);
    let status = c.ok(&format!("cat /proc/{pid}/status"));
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2", "no seccomp filter");
    assert_eq!(field("CapBnd"), "0000000000000400");
    assert_eq!(field("CapEff"), "0000000000000400");
    let uid = c.ok("id -u stadttor").trim().to_owned();
    assert!(
        field("Uid").split_whitespace().all(|u| u == uid),
        "{status}"
    );

    // Writes in the service's own mount namespace, as its user: only the
    // state directory is writable, the configuration and /usr are not.
    let as_service = |cmd: &str| {
        c.sh(&format!(
            "nsenter -t {pid} -m setpriv --reuid=stadttor --regid=stadttor --init-groups \
             sh -c '{cmd}'"
        ))
    };
    for path in [
        "/etc/stadttor/written-by-the-service",
        "/usr/bin/written-by-the-service",
    ] {
        let (ok, out) = as_service(&format!("echo x > {path}"));
        assert!(!ok, "the service could write {path}");
        assert!(out.contains("Read-only file system"), "{path}: {out}");
    }
    let (ok, out) = as_service("echo x > /var/lib/stadttor/probe && rm /var/lib/stadttor/probe");
    assert!(
        ok,
        "the state directory is not writable for the service: {out}"
    );
    // The same write outside the service's namespace works: the refusal
    // above is the sandbox, not the container.
    c.ok("echo x > /usr/bin/written-by-root && rm /usr/bin/written-by-root");
    // Its own /tmp.
    as_service("echo x > /tmp/private-to-the-service");
    assert!(!c.sh("test -e /tmp/private-to-the-service").0, "PrivateTmp");
}

fn reload_through_systemd(c: &Container, port: u16) {
    let pid = main_pid(c);
    install_config(c, "reload.toml");
    c.ok("systemctl reload stadttor");
    // SIGHUP is asynchronous: wait for the new header.
    let headers = c.ok(&format!(
        "for i in $(seq 1 50); do h=$(curl -sS -o /dev/null -D - --cacert {SHARE}/tls/ca.pem \
         --resolve localhost:{port}:127.0.0.1 https://localhost:{port}/); \
         case \"$h\" in *x-config:*) echo \"$h\"; exit 0;; esac; sleep 0.1; done; \
         echo \"$h\"; exit 1"
    ));
    assert!(headers.contains("x-config: reloaded"), "{headers}");
    assert_eq!(main_pid(c), pid, "a reload must not restart the process");
    let journal = c.ok("journalctl -u stadttor -o cat --no-pager");
    assert!(journal.contains("configuration reloaded"), "{journal}");

    // A bad file: ExecReload's `config check` fails, no SIGHUP, the running
    // configuration keeps serving.
    install_config(c, "bad.toml");
    let (ok, out) = c.sh("systemctl reload stadttor");
    assert!(!ok, "a reload with a bad configuration succeeded: {out}");
    let journal = c.ok("journalctl -u stadttor -o cat --no-pager");
    assert!(
        journal.contains(&format!("{CONFIG}: key `routes[0].timeouts.connect`")),
        "{journal}"
    );
    assert_eq!(c.ok("systemctl is-active stadttor").trim(), "active");
    assert_eq!(main_pid(c), pid);
    let headers = c.ok(&curl(port, "/", "-o /dev/null -D -"));
    assert!(headers.contains("x-config: reloaded"), "{headers}");
    install_config(c, "stadttor.toml");
}

fn stop_drains(c: &Container, port: u16) {
    // A request in flight when the stop begins completes.
    let inflight = c.spawn(&curl(port, "/slow/2000", ""));
    std::thread::sleep(Duration::from_millis(700));
    let stopping = Instant::now();
    c.ok("systemctl stop stadttor");
    let out = inflight.wait_with_output().unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(body, "slow 2000");
    eprintln!("systemctl stop: {:.1?}", stopping.elapsed());
    let show = c.ok("systemctl show stadttor -p Result -p ExecMainCode -p ExecMainStatus");
    for want in ["Result=success", "ExecMainStatus=0"] {
        assert!(show.contains(want), "{show}");
    }
    let journal = c.ok("journalctl -u stadttor -o cat --no-pager");
    assert!(journal.contains("draining"), "{journal}");
    assert!(journal.contains("drained"), "{journal}");
}

fn bad_configuration_never_starts(c: &Container) {
    install_config(c, "bad.toml");
    let (ok, out) = c.sh("systemctl start stadttor");
    assert!(!ok, "started with a bad configuration: {out}");
    // Exit 78 (configuration) is in RestartPreventExitStatus: no retries.
    std::thread::sleep(Duration::from_millis(2500));
    let show =
        c.ok("systemctl show stadttor -p ActiveState -p Result -p NRestarts -p ExecStartPre");
    for want in [
        "ActiveState=failed",
        "Result=exit-code",
        "NRestarts=0",
        "status=78 ",
    ] {
        assert!(show.contains(want), "{want}:\n{show}");
    }
    // This start's lines only (the bad reload above logged the same).
    let journal = c.ok(
        "journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID \
         --value stadttor)",
    );
    assert!(
        journal.contains(&format!("{CONFIG}: key `routes[0].timeouts.connect`")),
        "the journal does not name the file and the key:\n{journal}"
    );
}

/// Waits until `systemctl show stadttor -p PROPERTY --value` is `want`.
fn wait_for(c: &Container, property: &str, want: impl Fn(&str) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = c.ok(&format!("systemctl show stadttor -p {property} --value"));
        if want(value.trim()) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {property}={value}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn a_crash_is_restarted(c: &Container, port: u16) {
    let pid = main_pid(c);
    c.ok("systemctl kill --signal=SIGKILL stadttor");
    wait_for(c, "NRestarts", |n| n == "1", "no restart after SIGKILL");
    wait_for(
        c,
        "ActiveState",
        |s| s == "active",
        "not active after the restart",
    );
    assert_ne!(main_pid(c), pid);
    let body = c.ok(&curl(port, "/after/restart", ""));
    assert!(body.contains("/after/restart"), "{body}");
}

fn unreachable_store_is_retried(c: &Container) {
    c.ok("systemctl reset-failed stadttor");
    install_config(c, "store.toml");
    // ExecStartPre checks offline and passes; `serve` exits 69.
    c.ok("systemctl start stadttor");
    wait_for(
        c,
        "NRestarts",
        |n| n.parse::<u32>().is_ok_and(|n| n >= 1),
        "a store out of reach is not retried",
    );
    let journal = c.ok("journalctl -u stadttor -o cat --no-pager");
    assert!(
        journal.contains(&format!("{CONFIG}: key `policies.store`: cannot reach")),
        "{journal}"
    );
    c.ok("systemctl stop stadttor");
}
