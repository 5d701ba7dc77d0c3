//! The appliance as shipped: the systemd unit's sandbox, the man page, and
//! the Debian package (cargo-deb + lintian).
//!
//! * `systemd-analyze security --offline=true` must rate
//!   `packaging/systemd/stadttor.service` "OK" with an exposure of at most
//!   1.5, and the settings the appliance promises must be there (so the
//!   score is not bought by dropping one and adding another).
//! * Every subcommand that `stadttor --help` lists has a section in
//!   `packaging/stadttor.1`.
//! * The `.deb` builds from `[package.metadata.deb]`, passes
//!   `lintian --fail-on=error,warning`, and holds the binary, the unit, the
//!   man page and a configuration that is not world-readable, with
//!   maintainer scripts that create the `stadttor` user in group `tss`.
//! * [`systemd`]: that package installed into Debian 12 booted under a real
//!   systemd (`systemd-nspawn --boot`): start, serve, sandbox, `ExecStartPre`
//!   refusing a bad configuration, reload and stop through systemd.
//!
//! To keep CI fast the package is built with `cargo deb --no-build` around
//! the binary this test run already built (debug profile, every feature);
//! a release package is `cargo deb -p stadttor-gateway` (docs/OPERATIONS.md).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{require_tool, TempDir};

#[path = "packaging/systemd.rs"]
mod systemd;

const BIN: &str = env!("CARGO_BIN_EXE_stadttor");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn unit_path() -> PathBuf {
    repo().join("packaging/systemd/stadttor.service")
}

/// A cargo subcommand installed by tests/run.sh into the tools directory
/// (`STADTTOR_TOOLS`, default /var/tmp/stadttor-tools), or on PATH.
fn cargo_tool(name: &str) -> PathBuf {
    let tools = std::env::var_os("STADTTOR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/stadttor-tools"));
    let mut dirs = vec![tools.join("bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is missing: tests/run.sh installs it, or run \
                 `cargo install --locked --root /var/tmp/stadttor-tools {name}`"
            )
        })
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn systemd_unit_exposure_is_ok_and_the_promised_settings_are_there() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let (ok, out) = run(Command::new(analyze)
        .args(["security", "--offline=true", "--threshold=15", "--no-pager"])
        .arg(unit_path()));
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{out}"));
    eprintln!("{line}");
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score: {line}"));
    assert!(ok, "systemd-analyze exceeded threshold 1.5:\n{out}");
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{out}");
    assert!(line.contains(" OK"), "not rated OK: {line}");

    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let settings: BTreeSet<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for want in [
        "ExecStartPre=/usr/bin/stadttor config check --offline /etc/stadttor/stadttor.toml",
        "ExecReload=/usr/bin/stadttor config check /etc/stadttor/stadttor.toml",
        "Restart=on-abnormal",
        "RestartForceExitStatus=1 69",
        "RestartPreventExitStatus=64 78",
        "ExecStart=/usr/bin/stadttor serve --config /etc/stadttor/stadttor.toml",
        "User=stadttor",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "DevicePolicy=closed",
        "DeviceAllow=/dev/tpmrm0 rw",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "StateDirectory=stadttor",
    ] {
        assert!(settings.contains(want), "unit lacks `{want}`");
    }
    assert!(
        !unit.contains("ReadWritePaths=/etc"),
        "the configuration must stay read-only to the service"
    );
}

/// Every `stadttor ... <subcommand>` path, from the `Commands:` sections of
/// the `--help` output, recursively.
fn subcommands(prefix: &[String]) -> Vec<Vec<String>> {
    let out = Command::new(BIN)
        .args(prefix)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut found = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                in_commands = false;
                continue;
            }
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let mut path = prefix.to_vec();
            path.push(name.to_owned());
            if name == "help" {
                // clap's own `help` at every level: one section covers it.
                if prefix.is_empty() {
                    found.push(path);
                }
                continue;
            }
            found.extend(subcommands(&path));
            found.push(path);
        }
    }
    found
}

#[test]
fn man_page_has_a_section_for_every_subcommand() {
    let page = std::fs::read_to_string(repo().join("packaging/stadttor.1")).unwrap();
    // `.SS "stadttor keys session\-key \fIFILE\fP"` → `stadttor keys session-key`.
    let sections: Vec<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix(".SS "))
        .map(|l| l.trim_matches('"').replace("\\-", "-"))
        .collect();
    let all = subcommands(&[]);
    assert!(all.len() >= 18, "too few subcommands found: {all:?}");
    let mut missing = Vec::new();
    for path in &all {
        let want = format!("stadttor {}", path.join(" "));
        let covered = sections
            .iter()
            .any(|s| s == &want || s.starts_with(&format!("{want} ")));
        if !covered {
            missing.push(want);
        }
    }
    assert!(
        missing.is_empty(),
        "packaging/stadttor.1 lacks a section for: {missing:?}"
    );
}

/// Builds the `.deb` into `dir` around the binary this test run built
/// (`cargo deb --no-build`), and returns its path.
fn build_deb(dir: &Path) -> PathBuf {
    let cargo_deb = cargo_tool("cargo-deb");
    // cargo-deb takes `target/release/stadttor` from CARGO_TARGET_DIR; give
    // it this run's binary there instead of a second (release) build.
    let target = dir.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(BIN, target.join("release/stadttor")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = std::time::Instant::now();
    let (ok, out) = run(Command::new(cargo_deb)
        .current_dir(repo())
        .env("CARGO", &cargo)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "deb",
            "-p",
            "stadttor-gateway",
            "--no-build",
            "--fast",
            "--offline",
            "--output",
        ])
        .arg(dir));
    assert!(ok, "cargo deb failed:\n{out}");
    eprintln!("cargo deb: {:.1?}", started.elapsed());
    let deb = dir.join("stadttor_0.1.0-1_amd64.deb");
    assert!(deb.is_file(), "no {}:\n{out}", deb.display());
    deb
}

/// The shared libraries `bin` needs (`readelf -d`) and the Debian package
/// that holds each on this machine (`dpkg -S`), without the essential and
/// protected packages.
fn needed_packages(bin: &str) -> Vec<(String, String)> {
    let readelf = require_tool("readelf", "binutils");
    let (ok, dynamic) = run(Command::new(readelf).arg("-d").arg(bin));
    assert!(ok, "readelf -d: {dynamic}");
    let libs: Vec<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect();
    assert!(!libs.is_empty(), "no NEEDED entries:\n{dynamic}");
    libs.into_iter()
        .map(|lib| {
            let (ok, owners) = run(Command::new("dpkg").arg("-S").arg(format!("*/{lib}")));
            assert!(ok, "no package holds {lib}: {owners}");
            let package = owners
                .lines()
                .filter(|l| l.ends_with(&format!("/{lib}")))
                .find_map(|l| l.split_once(": "))
                .and_then(|(p, _)| p.split(',').next())
                .map(|p| p.split(':').next().unwrap_or(p).trim().to_owned())
                .unwrap_or_else(|| panic!("no package holds {lib}: {owners}"));
            (lib, package)
        })
        .filter(|(_, package)| {
            let (ok, flags) = run(Command::new("dpkg-query")
                .args(["-W", "-f=${Essential} ${Protected}"])
                .arg(package));
            assert!(ok, "dpkg-query {package}: {flags}");
            !flags.split_whitespace().any(|f| f == "yes")
        })
        .collect()
}

#[test]
fn debian_package_passes_lintian_and_ships_what_it_promises() {
    let lintian = require_tool("lintian", "lintian");
    let dpkg_deb = require_tool("dpkg-deb", "dpkg");
    let dir = TempDir::new("deb");
    let deb = build_deb(dir.path());

    let started = std::time::Instant::now();
    let (ok, out) = run(Command::new(lintian)
        .args(["--fail-on=error,warning", "--info", "--pedantic"])
        .arg(&deb));
    eprintln!("lintian ({:.1?}):\n{out}", started.elapsed());
    assert!(ok, "lintian found errors or warnings:\n{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{out}"
    );

    // Contents, with modes.
    let (ok, listing) = run(Command::new(&dpkg_deb).arg("--contents").arg(&deb));
    assert!(ok, "{listing}");
    let entry = |path: &str| -> (String, String) {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_owned(), f[1].to_owned())
            })
            .unwrap_or_else(|| panic!("package lacks {path}:\n{listing}"))
    };
    assert_eq!(entry("./usr/bin/stadttor").0, "-rwxr-xr-x");
    assert_eq!(
        entry("./usr/lib/systemd/system/stadttor.service").0,
        "-rw-r--r--"
    );
    assert_eq!(entry("./usr/share/man/man1/stadttor.1.gz").0, "-rw-r--r--");
    assert_eq!(entry("./usr/share/doc/stadttor/copyright").0, "-rw-r--r--");
    assert_eq!(
        entry("./usr/share/doc/stadttor/changelog.Debian.gz").0,
        "-rw-r--r--"
    );
    assert_eq!(
        entry("./usr/share/doc/stadttor/OPERATIONS.md").0,
        "-rw-r--r--"
    );
    let (mode, owner) = entry("./etc/stadttor/stadttor.toml");
    assert_eq!(
        (mode.as_str(), owner.as_str()),
        ("-rw-r-----", "0/0"),
        "the configuration must never be world-readable"
    );
    assert!(
        !listing.contains("./usr/lib/debug/"),
        "debug info belongs in the -dbgsym package"
    );

    // The unit in the package is the one systemd-analyze rated.
    let ctl = dir.path().join("control");
    let (ok, out) = run(Command::new(&dpkg_deb).arg("--control").arg(&deb).arg(&ctl));
    assert!(ok, "{out}");
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/stadttor/stadttor.toml"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    for want in [
        "adduser --system",
        "adduser --quiet stadttor tss",
        "dpkg-statoverride --update --add root stadttor \"$mode\" \"$path\"",
        "\"0750 /etc/stadttor\"",
        "\"0640 /etc/stadttor/stadttor.toml\"",
        "install -d -o stadttor -g stadttor -m 0750 /var/lib/stadttor",
        // The secrets model of docs/OPERATIONS.md and the state
        // directories (setgid: root's files stay readable by the service).
        "install -d -o root -g stadttor -m 0750 /etc/stadttor/secrets",
        "install -d -o stadttor -g stadttor -m 2750 \"/var/lib/stadttor/$d\"",
        "deb-systemd-helper",
    ] {
        assert!(
            postinst.contains(want),
            "postinst lacks `{want}`:\n{postinst}"
        );
    }
    let (ok, out) = run(Command::new("sh").arg("-n").arg(ctl.join("postinst")));
    assert!(ok, "postinst: {out}");
    let (ok, out) = run(Command::new("sh").arg("-n").arg(ctl.join("postrm")));
    assert!(ok, "postrm: {out}");
    let control = std::fs::read_to_string(ctl.join("control")).unwrap();
    // procps: `/bin/kill` for the unit's `ExecReload` (the nspawn test in
    // `packaging/systemd.rs` reloads through systemd on a minimal Debian).
    for want in ["Package: stadttor", "adduser", "libtss2-esys", "procps"] {
        assert!(control.contains(want), "control lacks `{want}`:\n{control}");
    }
    // Every shared library the binary links comes from a package that
    // `Depends` names (`$auto`, i.e. dpkg-shlibdeps), so a minimal Debian
    // installs it: libtss2-esys for TPM keys, and libxmlsec1-openssl,
    // libxmlsec1 and libxml2 once the binary calls stadttor-saml. Essential
    // and protected packages (libgcc-s1, which dpkg-shlibdeps leaves out
    // when no symbol of it is used) are on every Debian system.
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .unwrap_or_else(|| panic!("no Depends:\n{control}"));
    let named: BTreeSet<&str> = depends
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    for (lib, package) in needed_packages(BIN) {
        assert!(
            named.contains(package.as_str()),
            "the binary needs {lib} from {package}, which Depends does not name: {depends}"
        );
    }

    // The packaged unit is byte-identical to the one rated above.
    let x = dir.path().join("x");
    let (ok, out) = run(Command::new(&dpkg_deb).arg("--extract").arg(&deb).arg(&x));
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read(x.join("usr/lib/systemd/system/stadttor.service")).unwrap(),
        std::fs::read(unit_path()).unwrap()
    );
}

/// The SYNOPSIS of the man page as plain lines (`.br` separates them), with
/// the troff markup removed: `stadttor audit verify|prove|… ...`.
fn man_synopsis(page: &str) -> Vec<String> {
    let start = page.find(".SH SYNOPSIS").expect("man page has a SYNOPSIS");
    let end = page[start..]
        .find(".SH DESCRIPTION")
        .map(|i| start + i)
        .unwrap();
    let mut lines = vec![String::new()];
    for l in page[start..end].lines().skip(1) {
        if l == ".br" {
            lines.push(String::new());
            continue;
        }
        let text = l
            .split_once(' ')
            .map_or(
                "",
                |(macro_, rest)| if macro_.starts_with('.') { rest } else { l },
            )
            .replace("\\fB", "")
            .replace("\\fR", "")
            .replace("\\fI", "")
            .replace("\\fP", "")
            .replace("\\-", "-");
        let last = lines.last_mut().unwrap();
        last.push(' ');
        last.push_str(&text);
    }
    lines
        .into_iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn man_page_synopsis_names_every_command() {
    let page = std::fs::read_to_string(repo().join("packaging/stadttor.1")).unwrap();
    let synopsis = man_synopsis(&page);
    let mut missing = Vec::new();
    for path in subcommands(&[]) {
        let command = format!("stadttor {}", path[0]);
        let lines: Vec<&String> = synopsis
            .iter()
            .filter(|l| l.starts_with(&format!("{command} ")) || **l == command)
            .collect();
        let covered = match path.get(1) {
            None => !lines.is_empty(),
            // `stadttor audit verify|prove|…`: the subcommand is one of the
            // alternatives on its command's line.
            Some(sub) => lines.iter().any(|l| {
                l.split(|c: char| c.is_whitespace() || c == '|')
                    .any(|w| w == sub)
            }),
        };
        if !covered {
            missing.push(path.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "the SYNOPSIS of packaging/stadttor.1 lacks: {missing:?}\nsynopsis: {synopsis:#?}"
    );
}

/// The exit codes of `enum Exit` in `gateway/src/cli/mod.rs` (`Name = N,`).
fn exit_codes_in_code() -> BTreeSet<u8> {
    let src = std::fs::read_to_string(repo().join("gateway/src/cli/mod.rs")).unwrap();
    let start = src.find("enum Exit {").expect("cli/mod.rs has enum Exit");
    let body = &src[start..start + src[start..].find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_suffix(',')?.split_once(" = "))
        .map(|(_, n)| n.parse().unwrap())
        .collect()
}

#[test]
fn man_page_exit_status_lists_the_codes_of_the_binary() {
    let page = std::fs::read_to_string(repo().join("packaging/stadttor.1")).unwrap();
    let start = page.find(".SH EXIT STATUS").unwrap();
    let end = start + 1 + page[start + 1..].find("\n.SH ").unwrap();
    let lines: Vec<&str> = page[start..end].lines().collect();
    let documented: BTreeSet<u8> = lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| w[1].strip_prefix(".B ")?.trim().parse().ok())
        .collect();
    let code = exit_codes_in_code();
    assert!(code.len() >= 5, "enum Exit not parsed: {code:?}");
    assert_eq!(
        documented, code,
        "EXIT STATUS of packaging/stadttor.1 vs enum Exit in gateway/src/cli/mod.rs"
    );
    for (n, name) in [(64, "EX_USAGE"), (69, "EX_UNAVAILABLE"), (78, "EX_CONFIG")] {
        assert!(
            code.contains(&n) && page[start..end].contains(name),
            "sysexits: {n} is {name}"
        );
    }
}

#[test]
fn man_page_and_operations_name_the_unit_where_the_package_installs_it() {
    let installed = "/usr/lib/systemd/system/stadttor.service";
    let manifest = std::fs::read_to_string(repo().join("gateway/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("unit-scripts = \"../packaging/systemd/\""),
        "cargo-deb installs the unit from packaging/systemd/ into {installed}"
    );
    for doc in ["packaging/stadttor.1", "docs/OPERATIONS.md"] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        assert!(text.contains(installed), "{doc} does not name {installed}");
        let elsewhere = text
            .match_indices("/systemd/system/stadttor.service")
            .filter(|(i, _)| !text[..*i].ends_with("/usr/lib"))
            .count();
        assert_eq!(elsewhere, 0, "{doc} names the unit under another path");
    }
}

/// Text with all runs of whitespace made one space, and the Debian
/// copyright format's paragraph dots (` .` lines) dropped.
fn normalized(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| *l != ".")
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn licence_files_cargo_toml_and_debian_copyright_agree() {
    let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains("license = \"EUPL-1.2 OR Apache-2.0\""),
        "Cargo.toml's licence changed: update LICENSE*, packaging/debian/copyright and this test"
    );
    let copyright = std::fs::read_to_string(repo().join("packaging/debian/copyright")).unwrap();
    let files = copyright
        .split("\n\n")
        .find(|p| p.starts_with("Files: *"))
        .unwrap();
    assert!(
        files.contains("\nLicense: EUPL-1.2 or Apache-2.0"),
        "{files}"
    );
    // The full EUPL text (not in /usr/share/common-licenses) is the one in
    // LICENSE-EUPL-1.2.
    let eupl_paragraph = copyright
        .split("\nLicense: EUPL-1.2\n")
        .nth(1)
        .expect("copyright has a `License: EUPL-1.2` paragraph");
    let eupl = std::fs::read_to_string(repo().join("LICENSE-EUPL-1.2")).unwrap();
    assert!(eupl.starts_with("EUROPEAN UNION PUBLIC LICENCE v. 1.2\n"));
    assert_eq!(normalized(eupl_paragraph), normalized(&eupl));
    // Apache-2.0 is referred to Debian's copy; LICENSE-APACHE-2.0 is that text.
    assert!(copyright.contains("/usr/share/common-licenses/Apache-2.0"));
    let apache = std::fs::read_to_string(repo().join("LICENSE-APACHE-2.0")).unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    if let Ok(debian) = std::fs::read_to_string("/usr/share/common-licenses/Apache-2.0") {
        assert_eq!(normalized(&apache), normalized(&debian));
    }
    let top = std::fs::read_to_string(repo().join("LICENSE")).unwrap();
    for want in [
        "EUPL-1.2 OR Apache-2.0",
        "LICENSE-EUPL-1.2",
        "LICENSE-APACHE-2.0",
    ] {
        assert!(top.contains(want), "LICENSE lacks {want}");
    }
}
