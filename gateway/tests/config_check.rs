//! `stadttor config check` on the real binary: exit 0 for a usable
//! configuration, 78 (EX_CONFIG) with every problem listed as
//! `file: key: reason` otherwise, and no port bound either way. systemd runs
//! it as `ExecStartPre`, so these exit codes are an interface.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stadttor_pki::devca::DevCa;
use testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");
const EX_CONFIG: i32 = 78;
const EX_UNAVAILABLE: i32 = 69;

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn config_check(file: &Path) -> Run {
    config_check_with(file, &[])
}

fn config_check_with(file: &Path, flags: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(["config", "check"])
        .args(flags)
        .arg(file)
        .env("STADTTOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run stadttor");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A directory with a dev CA, a server certificate and key, a client
/// certificate and key (for an mTLS upstream), all real PEM files.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let ca = DevCa::generate("config check test CA").unwrap();
        let server = ca.issue_server(&["localhost", "portal.example"]).unwrap();
        let other = ca.issue_server(&["localhost"]).unwrap();
        let client = ca.issue_client("stadttor-gateway").unwrap();
        dir.write("ca.pem", &ca.cert_pem());
        dir.write("tls/server.pem", &server.cert_pem);
        dir.write("tls/server.key", &server.key_pem);
        dir.write("tls/other.key", &other.key_pem);
        dir.write("upstream/client.pem", &client.cert_pem);
        dir.write("upstream/client.key", &client.key_pem);
        Self { dir }
    }

    fn write_config(&self, text: &str) -> PathBuf {
        self.dir.write("stadttor.toml", text)
    }
}

/// A complete configuration using every kind of file the check must load:
/// server chain and key, client CA, upstream CA, upstream client
/// certificate. Paths are relative to the config file.
fn good_config(listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"
[admin]
listen = "{admin}"

[[listeners]]
name = "public"
listen = "{listen}"

[[listeners.tls.certificates]]
chain = "tls/server.pem"
key = "file:tls/server.key"

[listeners.tls.client_auth]
ca = "ca.pem"
mode = "optional"

[[upstreams]]
name = "plain"
addresses = ["127.0.0.1:9"]

[[upstreams]]
name = "secure"
addresses = ["127.0.0.1:9"]

[upstreams.tls]
ca = "ca.pem"
server_name = "localhost"
client_chain = "upstream/client.pem"
client_key = "file:upstream/client.key"

[[routes]]
name = "plain"
upstream = "plain"

[[routes]]
name = "secure"
upstream = "secure"
path_prefix = "/secure"
forward_client_cert = true
"#
    )
}

/// Lines of stderr that report one issue: `  FILE: key `KEY`: REASON`.
fn issue_lines<'a>(stderr: &'a str, file: &Path) -> Vec<&'a str> {
    let prefix = format!("  {}: key `", file.display());
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn a_good_config_passes_without_binding_its_ports() {
    let pki = Pki::new("check-good");
    // Hold the configured ports ourselves: if `config check` tried to bind
    // them, it would fail.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let file = pki.write_config(&good_config(
        held.local_addr().unwrap(),
        held_admin.local_addr().unwrap(),
    ));
    let run = config_check(&file);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        format!("{}: ok (1 listener, 2 routes)", file.display())
    );
    // The ports were never taken from us.
    held.set_nonblocking(true).unwrap();
    assert!(matches!(
        held.accept().map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    ));
}

#[test]
fn several_errors_are_all_listed_with_file_and_key() {
    let pki = Pki::new("check-many");
    let text = good_config(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .replace("[admin]\n", "[server]\nmax_connections = 0\n\n[admin]\n")
    .replace("key = \"file:tls/server.key\"", "key = \"tls/server.key\"")
    .replace(
        "addresses = [\"127.0.0.1:9\"]\n\n[upstreams.tls]",
        "addresses = []\n\n[upstreams.tls]",
    )
    .replace("upstream = \"secure\"", "upstream = \"missing\"");
    let file = pki.write_config(&text);
    let run = config_check(&file);
    assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("{}: 4 errors in configuration\n", file.display())),
        "{}",
        run.stderr
    );
    let lines = issue_lines(&run.stderr, &file);
    let keys = [
        "server.max_connections",
        "listeners[0].tls.certificates[0].key",
        "upstreams[1].addresses",
        "routes[1].upstream",
    ];
    assert_eq!(lines.len(), keys.len(), "{}", run.stderr);
    for (line, key) in lines.iter().zip(keys) {
        assert!(line.contains(&format!("key `{key}`: ")), "{line}");
    }
}

#[test]
fn a_certificate_that_does_not_match_its_key_names_both_files() {
    let pki = Pki::new("check-mismatch");
    let text = good_config(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .replace("file:tls/server.key", "file:tls/other.key");
    let file = pki.write_config(&text);
    let run = config_check(&file);
    assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
    let lines = issue_lines(&run.stderr, &file);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    let line = lines[0];
    assert!(
        line.contains("key `listeners[0].tls.certificates[0]`"),
        "{line}"
    );
    assert!(line.contains("does not match"), "{line}");
    let cert = pki.dir.path().join("tls/server.pem");
    let key = pki.dir.path().join("tls/other.key");
    assert!(line.contains(&cert.display().to_string()), "{line}");
    assert!(line.contains(&key.display().to_string()), "{line}");
}

#[test]
fn files_named_in_the_config_must_exist() {
    let pki = Pki::new("check-files");
    let text = good_config(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .replace("chain = \"tls/server.pem\"", "chain = \"tls/nope.pem\"")
    .replace(
        "ca = \"ca.pem\"\nserver_name",
        "ca = \"upstream/nope-ca.pem\"\nserver_name",
    );
    let file = pki.write_config(&text);
    let run = config_check(&file);
    assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
    let lines = issue_lines(&run.stderr, &file);
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(lines[0].contains("key `listeners[0].tls.certificates[0]`"));
    assert!(lines[0].contains("tls/nope.pem"), "{}", lines[0]);
    assert!(lines[1].contains("key `upstreams[1].tls`"));
    assert!(lines[1].contains("upstream/nope-ca.pem"), "{}", lines[1]);
}

#[test]
fn the_admin_listeners_certificates_are_checked_too() {
    let pki = Pki::new("check-admin-tls");
    let admin_tls = "[[admin.tls.certificates]]\nchain = \"tls/server.pem\"\nkey = \"file:tls/server.key\"\n\n[[listeners]]";
    let good = good_config(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .replacen("[[listeners]]", admin_tls, 1);
    let file = pki.write_config(&good);
    let run = config_check(&file);
    assert_eq!(run.code, Some(0), "{run:?}");
    for (from, to, what) in [
        (
            "key = \"file:tls/server.key\"\n\n[[listeners]]",
            "key = \"file:tls/other.key\"\n\n[[listeners]]",
            "does not match",
        ),
        (
            "chain = \"tls/server.pem\"\nkey = \"file:tls/server.key\"\n\n[[listeners]]",
            "chain = \"tls/nope.pem\"\nkey = \"file:tls/server.key\"\n\n[[listeners]]",
            "tls/nope.pem",
        ),
    ] {
        assert!(good.contains(from));
        let file = pki.write_config(&good.replacen(from, to, 1));
        let run = config_check(&file);
        assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
        let lines = issue_lines(&run.stderr, &file);
        assert_eq!(lines.len(), 1, "{}", run.stderr);
        assert!(
            lines[0].contains("key `admin.tls.certificates[0]`"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains(what), "{}", lines[0]);
    }
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let dir = TempDir::new("check-missing");
    let file = dir.path().join("nope.toml");
    let run = config_check(&file);
    assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
    let lines = issue_lines(&run.stderr, &file);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("key `(file)`: cannot read the file"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_syntax_error_is_a_config_error_with_its_line() {
    let dir = TempDir::new("check-syntax");
    let file = dir.write("stadttor.toml", "[[listeners]]\nname = \"public\n");
    let run = config_check(&file);
    assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
    let lines = issue_lines(&run.stderr, &file);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("(line 2)"), "{}", lines[0]);
}

/// The audit log's key files in `pki`'s directory: an Ed25519 file key
/// and a pseudonym key (mode 0600).
fn audit_files(pki: &Pki) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    std::fs::write(pki.dir.path().join("audit.der"), pkcs8.as_ref()).unwrap();
    pki.dir.write_secret("pseudonym.key", [9u8; 32]);
}

/// Threat: passwords, sessions, policies and audit events crossing the
/// network in clear. A store configured without TLS on a host that is not
/// loopback is a warning (naming the key, never the password) and the
/// check still passes; loopback and TLS stores are quiet. (`--offline`:
/// the stores named here do not exist.)
#[cfg(feature = "postgres")]
#[test]
fn a_store_reached_over_the_network_without_tls_is_a_warning() {
    let pki = Pki::new("check-store-tls");
    audit_files(&pki);
    let base = good_config(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let stores = |policies: &str, audit: &str| {
        format!(
            "{base}\n[policies]\n{policies}\n\n[audit]\n{audit}\norigin = \"stadttor.test/a\"\n\
             key = \"file:audit.der\"\npseudonym_key_file = \"pseudonym.key\"\n"
        )
    };
    let config_check = |file: &Path| config_check_with(file, &["--offline"]);
    let warning = |run: &Run, key: &str| {
        run.stderr
            .lines()
            .any(|l| l.contains(&format!("key `{key}`: warning:")) && l.contains("without TLS"))
    };

    let file = pki.write_config(&stores(
        "store = \"postgres://stadttor:s3cret@db.example/stadttor\"",
        "postgres_url = \"host=10.1.2.3 user=audit password=s3cret dbname=audit\"",
    ));
    let run = config_check(&file);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(warning(&run, "policies.store"), "{run:?}");
    assert!(warning(&run, "audit.postgres_url"), "{run:?}");
    assert!(!run.stderr.contains("s3cret"), "{run:?}");

    let file = pki.write_config(&stores(
        "store = \"postgres://stadttor@127.0.0.1/stadttor\"",
        "postgres_url = \"host=/var/run/postgresql dbname=audit\"",
    ));
    let run = config_check(&file);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr.contains("warning"), "{run:?}");

    let file = pki.write_config(&stores(
        "store = \"postgres://stadttor@db.example/stadttor?sslmode=verify-full\"\nstore_ca_file = \"ca.pem\"",
        "postgres_url = \"host=10.1.2.3 dbname=audit sslmode=require\"\npostgres_ca_file = \"ca.pem\"",
    ));
    let run = config_check(&file);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr.contains("warning"), "{run:?}");
}

/// TLS that cannot verify is refused outright, with the key and the
/// reason: `sslmode=prefer` (downgradable), TLS without a CA file.
#[cfg(feature = "postgres")]
#[test]
fn store_tls_that_cannot_verify_is_refused() {
    let pki = Pki::new("check-store-tls-bad");
    let base = good_config(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    for (policies, key, reason) in [
        (
            "store = \"postgres://db.example/x?sslmode=prefer\"",
            "policies.store",
            "falls back to plaintext",
        ),
        (
            "store = \"postgres://db.example/x?sslmode=verify-full\"",
            "policies.store_ca_file",
            "required with `sslmode=verify-full`",
        ),
    ] {
        let file = pki.write_config(&format!("{base}\n[policies]\n{policies}\n"));
        let run = config_check(&file);
        assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
        let lines = issue_lines(&run.stderr, &file);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("key `{key}`:")) && l.contains(reason)),
            "{run:?}"
        );
    }
}

/// The store connections are part of the check (serve refuses a store it
/// cannot reach at start); `--offline` skips exactly those, nothing else.
#[cfg(feature = "postgres")]
#[test]
fn unreachable_stores_fail_the_check_unless_offline() {
    let pki = Pki::new("check-offline");
    audit_files(&pki);
    let dead = testkit::free_port();
    let base = good_config(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let file = pki.write_config(&format!(
        "{base}\n[policies]\nstore = \"postgres://stadttor@127.0.0.1:{dead}/stadttor\"\n\n\
         [audit]\npostgres_url = \"host=127.0.0.1 port={dead} user=audit dbname=audit\"\n\
         origin = \"stadttor.test/a\"\nkey = \"file:audit.der\"\npseudonym_key_file = \"pseudonym.key\"\n"
    ));
    // Only stores out of reach: 69 (EX_UNAVAILABLE), which systemd
    // retries, not 78 (EX_CONFIG), which it does not.
    let run = config_check(&file);
    assert_eq!(run.code, Some(EX_UNAVAILABLE), "{run:?}");
    let lines = issue_lines(&run.stderr, &file);
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines[0].contains("key `policies.store`: cannot reach the policy store"),
        "{run:?}"
    );
    assert!(
        lines[1].contains("key `audit.postgres_url`: cannot reach the audit database"),
        "{run:?}"
    );

    let run = config_check_with(&file, &["--offline"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("offline: store connections not checked"),
        "{run:?}"
    );

    // Offline still checks files: a missing pseudonym key fails.
    std::fs::remove_file(pki.dir.path().join("pseudonym.key")).unwrap();
    let run = config_check_with(&file, &["--offline"]);
    assert_eq!(run.code, Some(EX_CONFIG), "{run:?}");
    let lines = issue_lines(&run.stderr, &file);
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(
        lines[0].contains("key `audit.pseudonym_key_file`"),
        "{run:?}"
    );
}
