//! Test harness for real key hardware: swtpm and SoftHSM2 in temporary
//! directories, on free ports, cleaned up on `Drop`.
//!
//! Used by the tests of stadttor-hsm, stadttor-pki and the gateway. Missing
//! tools make tests FAIL with an install hint: a green run must mean the
//! hardware paths were exercised.
//!
//! Call [`init`] first in every test: it sets the process environment once
//! (SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`, which happens once per
//! process), before any test thread touches a library.
//!
//! SoftHSM does not notice tokens initialised after `C_Initialize`, so
//! [`init`] initialises a pool of tokens up front (with `softhsm2-util`) and
//! [`SoftHsm::token`] hands each test its own, unused one.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::TempDir;

/// The SoftHSM2 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// SO PIN of every test token.
pub const SO_PIN: &str = "5678";
/// User PIN of every test token.
pub const USER_PIN: &str = "1234";
/// How many SoftHSM tokens [`init`] prepares for this test process.
pub const TOKEN_POOL: usize = 8;

/// Sets up the process environment once; call first in every test.
pub fn init() -> &'static SoftHsm {
    static SOFTHSM: OnceLock<SoftHsm> = OnceLock::new();
    SOFTHSM.get_or_init(|| {
        let softhsm = SoftHsm::create(TOKEN_POOL);
        // The only environment writes in this test binary. They happen inside
        // this OnceLock, which every test passes before using any library, so
        // no other thread reads the environment concurrently.
        #[allow(clippy::disallowed_methods)]
        {
            std::env::set_var("SOFTHSM2_CONF", &softhsm.conf);
            // ESYS logs expected failures (probing a free handle) as errors.
            std::env::set_var("TSS2_LOG", "all+none");
        }
        softhsm
    })
}

/// Panics unless `tool` is on `PATH`.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required test tool `{tool}` is missing: apt-get install {package}. \
         Hardware-backend tests do not skip."
    );
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Returns a port `p` such that `p` and `p + 1` were both free just now.
pub fn free_port_pair() -> u16 {
    crate::ports::free_ports(2)
}

/// A software TPM (swtpm) on free loopback ports, with its own state dir.
///
/// swtpm serves one client connection at a time and libtss2's swtpm TCTI
/// reconnects per command; on a loaded 2-core machine several simulators in
/// parallel starve each other, so TPM tests run one at a time: each `Swtpm`
/// (or pair, [`Swtpm::start_pair`]) holds a process-wide lock for its life.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    port: u16,
    /// State directory and scratch space for tpm2-tools files.
    pub dir: TempDir,
    log: Option<PathBuf>,
    _serial: Option<MutexGuard<'static, ()>>,
}

/// Serialises the TPM tests of this process.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed (panicking) TPM test poisons the lock; the next may run.
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

impl Swtpm {
    /// Starts swtpm (data port P, control port P+1) and waits until it listens.
    pub fn start() -> Self {
        Self::spawn(Some(serial()), false)
    }

    /// Like [`Swtpm::start`], with swtpm's command log at level 20: every
    /// command and response is logged as hex (see [`Swtpm::io_messages`]).
    pub fn start_logged() -> Self {
        Self::spawn(Some(serial()), true)
    }

    /// Two independent simulators (different seeds, so different SRKs).
    pub fn start_pair() -> (Self, Self) {
        let first = Self::spawn(Some(serial()), false);
        let second = Self::spawn(None, false);
        (first, second)
    }

    fn spawn(serial: Option<MutexGuard<'static, ()>>, logged: bool) -> Self {
        require("swtpm", "swtpm swtpm-tools");
        require("tpm2_createprimary", "tpm2-tools");
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = TempDir::new("swtpm");
            let port = free_port_pair();
            let log = logged.then(|| dir.join("swtpm.log"));
            let mut cmd = Command::new("swtpm");
            cmd.args(["socket", "--tpm2", "--server"])
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.path().display()))
                .args(["--flags", "not-need-init,startup-clear"]);
            if let Some(log) = &log {
                cmd.arg("--log")
                    .arg(format!("file={},level=20", log.display()));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn swtpm");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!("swtpm exited with {status} (port race?)");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        dir,
                        log,
                        _serial: serial,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start: {last_err}");
    }

    /// The TPM commands and responses logged so far (needs
    /// [`Swtpm::start_logged`]): `(true, bytes)` for a command received,
    /// `(false, bytes)` for a response sent.
    pub fn io_messages(&self) -> Vec<(bool, Vec<u8>)> {
        let path = self.log.as_ref().expect("started with start_logged()");
        let text = std::fs::read_to_string(path).expect("read swtpm log");
        let mut messages: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut current: Option<usize> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("SWTPM_IO_Read:") || line.starts_with("SWTPM_IO_Write:") {
                messages.push((line.starts_with("SWTPM_IO_Read:"), Vec::new()));
                current = Some(messages.len() - 1);
                continue;
            }
            let bytes: Option<Vec<u8>> = line
                .split_whitespace()
                .map(|t| {
                    (t.len() == 2)
                        .then(|| u8::from_str_radix(t, 16).ok())
                        .flatten()
                })
                .collect();
            match (bytes, current) {
                (Some(bytes), Some(i)) if !line.is_empty() => messages[i].1.extend(bytes),
                // Any other line (control channel, libtpms) ends the message.
                _ => current = None,
            }
        }
        messages
    }

    /// The TCTI string for this simulator.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// A tpm2-tools command aimed at this simulator, run in its directory;
    /// killed after 60 s so a wedged simulator fails the test instead of
    /// hanging it.
    ///
    /// libtss2's swtpm TCTI opens its sockets without `SOCK_CLOEXEC`, and
    /// swtpm serves one connection at a time. A tool spawned while this
    /// process's TPM owner thread has a command in flight would inherit that
    /// connection and keep it open, so swtpm never accepts the tool's own
    /// connection: a deadlock until the timeout (seen as a flaky exit 124).
    /// The wrapper therefore closes every inherited descriptor above 2 first.
    pub fn tool(&self, name: &str) -> Command {
        const CLOSE_INHERITED: &str = r#"for p in /proc/$$/fd/*; do n=${p##*/}; if [ "$n" -gt 2 ]; then { exec {n}>&-; } 2>/dev/null; fi; done; exec timeout 60 "$@""#;
        let mut cmd = Command::new("bash");
        cmd.args(["-c", CLOSE_INHERITED, "swtpm-tool", name])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs a tpm2-tools command; panics with its output on failure.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        run(self.tool(name).args(args))
    }

    /// Freezes the simulator (SIGSTOP): the TPM stops answering.
    pub fn suspend(&self) {
        run(Command::new("kill").args(["-STOP", &self.child.id().to_string()]));
    }

    /// Thaws the simulator (SIGCONT).
    pub fn resume(&self) {
        run(Command::new("kill").args(["-CONT", &self.child.id().to_string()]));
    }

    /// Creates a restricted ECDSA P-256 attestation key under the persistent
    /// `parent` with tpm2-tools and persists it at `handle`.
    pub fn create_ak(&self, parent: &str, handle: &str) {
        self.run(
            "tpm2_create",
            &[
                "-C",
                parent,
                "-G",
                "ecc256:ecdsa-sha256:null",
                "-g",
                "sha256",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
                "-u",
                "ak.pub",
                "-r",
                "ak.priv",
            ],
        );
        self.run("tpm2_flushcontext", &["-t"]);
        self.run(
            "tpm2_load",
            &[
                "-C", parent, "-u", "ak.pub", "-r", "ak.priv", "-c", "ak.ctx",
            ],
        );
        self.run("tpm2_evictcontrol", &["-C", "o", "-c", "ak.ctx", handle]);
        self.run("tpm2_flushcontext", &["-t"]);
    }

    /// Creates the classic tpm2-tools SRK and persists it at `handle`.
    pub fn create_srk(&self, handle: &str) {
        self.run(
            "tpm2_createprimary",
            &[
                "-C",
                "o",
                "-g",
                "sha256",
                "-G",
                "ecc256:null:aes128cfb",
                "-c",
                "srk.ctx",
            ],
        );
        self.run("tpm2_evictcontrol", &["-C", "o", "-c", "srk.ctx", handle]);
        self.run("tpm2_flushcontext", &["-t"]);
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // Thaw first in case a test failed while the simulator was stopped.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SoftHSM2 configuration and token directory for this test process.
#[derive(Debug)]
pub struct SoftHsm {
    /// The `softhsm2.conf` exported as `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    tokens: Vec<TestToken>,
    next: AtomicU32,
    /// Holds the configuration and token files; removed on drop.
    _dir: TempDir,
}

impl SoftHsm {
    fn create(pool: usize) -> Self {
        require("softhsm2-util", "softhsm2");
        require("pkcs11-tool", "opensc");
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "{SOFTHSM_MODULE} is missing: apt-get install softhsm2"
        );
        let dir = TempDir::new("softhsm");
        let token_dir = dir.join("tokens");
        std::fs::create_dir_all(&token_dir).expect("token dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                token_dir.display()
            ),
        )
        .expect("write softhsm2.conf");
        let tokens = (0..pool)
            .map(|i| {
                let label = format!("stadttor-{i}");
                run(Command::new("softhsm2-util")
                    .env("SOFTHSM2_CONF", &conf)
                    .args([
                        "--init-token",
                        "--free",
                        "--label",
                        &label,
                        "--pin",
                        USER_PIN,
                        "--so-pin",
                        SO_PIN,
                    ]));
                let pin_file = dir.join(format!("{label}.pin"));
                std::fs::write(&pin_file, format!("{USER_PIN}\n")).expect("write PIN file");
                crate::set_secret_mode(&pin_file);
                TestToken {
                    label,
                    pin: USER_PIN.to_owned(),
                    pin_file,
                    conf: conf.clone(),
                }
            })
            .collect();
        Self {
            conf,
            tokens,
            next: AtomicU32::new(0),
            _dir: dir,
        }
    }

    /// Hands out a fresh token of the pool (its own label, PIN file).
    pub fn token(&self) -> TestToken {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        self.tokens.get(i).cloned().unwrap_or_else(|| {
            panic!(
                "all {} SoftHSM test tokens are used; raise TOKEN_POOL",
                self.tokens.len()
            )
        })
    }
}

/// A SoftHSM2 token made by [`SoftHsm::token`].
#[derive(Debug, Clone)]
pub struct TestToken {
    /// Token label.
    pub label: String,
    /// User PIN.
    pub pin: String,
    /// File holding the PIN (with a trailing newline, as an operator writes it).
    pub pin_file: PathBuf,
    conf: PathBuf,
}

impl TestToken {
    /// A `pkcs11-tool` command logged in to this token.
    pub fn tool(&self) -> Command {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.env("SOFTHSM2_CONF", &self.conf).args([
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            &self.label,
            "--login",
            "--pin",
            &self.pin,
        ]);
        cmd
    }
}

/// Writes DER SPKI as a PEM public key file (for `openssl dgst -verify`).
pub fn spki_pem(spki: &[u8], path: &Path) {
    let der = path.with_extension("der");
    std::fs::write(&der, spki).expect("write SPKI");
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(path));
}

/// Verifies `sig` over `msg` with `openssl dgst -<hash> -verify`.
pub fn openssl_verify(spki: &[u8], hash: &str, msg: &[u8], sig: &[u8], dir: &TempDir) -> bool {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (pem, m, s) = (
        dir.join(format!("ossl{n}.pub.pem")),
        dir.join(format!("ossl{n}.msg")),
        dir.join(format!("ossl{n}.sig")),
    );
    spki_pem(spki, &pem);
    std::fs::write(&m, msg).expect("write msg");
    std::fs::write(&s, sig).expect("write sig");
    Command::new("openssl")
        .args(["dgst", &format!("-{hash}"), "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&s)
        .arg(&m)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
