//! Interoperability: logs, proofs and checkpoints written by this crate are
//! checked by an independent implementation, Go's reference
//! `golang.org/x/mod/sumdb/{note,tlog}` (Debian: `golang-go`,
//! `golang-golang-x-mod-dev`), through the small program in
//! `tests/interop/tlogverify.go`, built offline from Debian's GOPATH.
//!
//! x/mod's note verifier only knows Ed25519, so this test uses an Ed25519
//! key; ECDSA checkpoints are covered by the Rust tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use stadttor_audit::verify::LogReader;

const GO_HINT: &str = "the Go interop test needs Debian's `golang-go` and \
`golang-golang-x-mod-dev` (apt-get install golang-go golang-golang-x-mod-dev)";

fn go_env(cmd: &mut Command, gopath: &Path) {
    cmd.env("GO111MODULE", "off")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
        .env("GOCACHE", gopath.join("cache"));
}

/// Builds the verifier once; panics with the install hint if Go is missing.
fn build_verifier(work: &Path) -> PathBuf {
    assert!(
        Path::new("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog").is_dir(),
        "{GO_HINT}"
    );
    let gopath = work.join("gopath");
    let src = gopath.join("src/tlogverify");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tlogverify.go"),
        src.join("main.go"),
    )
    .unwrap();
    let bin = work.join("tlogverify");
    let mut cmd = Command::new("go");
    go_env(&mut cmd, &gopath);
    let out = cmd
        .args(["build", "-o"])
        .arg(&bin)
        .arg("tlogverify")
        .output()
        .unwrap_or_else(|e| panic!("running `go`: {e}; {GO_HINT}"));
    assert!(
        out.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn run(bin: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success(), text)
}

#[test]
fn go_x_mod_verifies_our_log_and_rejects_tampering() {
    let work = TempDir::new("interop");
    let bin = build_verifier(work.path());
    let dir = work.path().join("log");
    let key = key_from(&ed25519_pkcs8());
    let vk = verifier(&key);
    let vks = vk.to_string();
    // 70,000 entries: full level-0 and level-1 tiles, partial tiles at
    // levels 0-2, several checkpoints (older ones served from full tiles).
    build_log(&dir, &key, 70_000, 30_000);

    let cp_file = dir.join("checkpoint");
    let (ok, out) = run(&bin, &["checkpoint", &vks, cp_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("size=70000"), "{out}");

    let (ok, out) = run(&bin, &["tiles", &vks, dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("all 70000 entries"), "{out}");
    println!("{out}");

    // Inclusion proofs made by us, checked by tlog.CheckRecord.
    let reader = LogReader::open(&dir, &vk).unwrap();
    for i in [0u64, 1, 255, 256, 613, 65_535, 65_536, 69_999] {
        let p = work.path().join(format!("inclusion-{i}.json"));
        std::fs::write(&p, serde_json::to_vec(&reader.prove(i).unwrap()).unwrap()).unwrap();
        let (ok, out) = run(&bin, &["inclusion", &vks, p.to_str().unwrap()]);
        assert!(ok, "entry {i}: {out}");
    }
    // A proof for a forged entry is rejected by Go too.
    let mut forged = reader.prove(613).unwrap();
    forged.entry = forged.entry.replacen("req-613", "req-614", 1);
    let p = work.path().join("forged.json");
    std::fs::write(&p, serde_json::to_vec(&forged).unwrap()).unwrap();
    let (ok, out) = run(&bin, &["inclusion", &vks, p.to_str().unwrap()]);
    assert!(!ok, "{out}");

    // Consistency proofs from every historical checkpoint (tlog.CheckTree).
    let hist = std::fs::read_to_string(dir.join("checkpoints.jsonl")).unwrap();
    let sizes: Vec<u64> = hist
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["size"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(sizes.len() >= 4, "{sizes:?}");
    for s in sizes.into_iter().filter(|s| *s > 0) {
        let p = work.path().join(format!("consistency-{s}.json"));
        std::fs::write(
            &p,
            serde_json::to_vec(&reader.prove_consistency(s).unwrap()).unwrap(),
        )
        .unwrap();
        let (ok, out) = run(&bin, &["consistency", &vks, p.to_str().unwrap()]);
        assert!(ok, "size {s}: {out}");
    }

    // Tampering, each rejected by Go as well.
    let tamper = |name: &str, f: &dyn Fn(&Path)| {
        let copy = work.path().join(name);
        copy_dir(&dir, &copy);
        f(&copy);
        let (ok, out) = run(&bin, &["tiles", &vks, copy.to_str().unwrap()]);
        assert!(!ok, "{name}: Go accepted the tampered log: {out}");
        println!("{name}: {out}");
        std::fs::remove_dir_all(&copy).unwrap();
    };
    tamper("changed-entry", &|d| {
        change_entry(d, 613, "req-613", "req-614")
    });
    tamper("removed-entry", &|d| {
        edit_bundle(d, 1, |e| drop(e.remove(44)))
    });
    tamper("changed-size", &|d| {
        let t = std::fs::read_to_string(d.join("checkpoint")).unwrap();
        std::fs::write(
            d.join("checkpoint"),
            t.replacen("\n70000\n", "\n69999\n", 1),
        )
        .unwrap();
    });
    tamper("foreign-key", &|d| {
        let t = std::fs::read_to_string(d.join("checkpoint")).unwrap();
        let cp = stadttor_audit::note::parse_unverified(&t).unwrap();
        let other = key_from(&ed25519_pkcs8());
        let n = stadttor_audit::note::sign_checkpoint(&cp, ORIGIN, other.as_ref()).unwrap();
        std::fs::write(d.join("checkpoint"), n).unwrap();
    });
    tamper("flipped-tile-bit", &|d| {
        let p = d.join("tile/0/002");
        let mut b = std::fs::read(&p).unwrap();
        b[77] ^= 0x04;
        std::fs::write(&p, b).unwrap();
    });
}
