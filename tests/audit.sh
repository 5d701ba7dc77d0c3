#!/usr/bin/env bash
# cargo-audit against the RustSec advisory database, where one is available
# (called by tests/run.sh). The database lives on GitHub, which offline CI
# cannot reach: without a database this prints a WARNING and exits 0 (as
# tests/deny.sh does for its advisories check). With one, any vulnerable
# crate in Cargo.lock fails loudly.
#
# Where the database is looked for, in order:
#   $STADTTOR_ADVISORY_DB (a checkout of github.com/rustsec/advisory-db),
#   ~/.cargo/advisory-db (cargo-audit's own), ~/.cargo/advisory-dbs/*
#   (cargo-deny's), then a shallow clone with a 30 s timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${STADTTOR_TOOLS:-/var/tmp/stadttor-tools}
export PATH="$tools/bin:$PATH"

db=""
for d in "${STADTTOR_ADVISORY_DB:-}" "$HOME/.cargo/advisory-db" "$HOME"/.cargo/advisory-dbs/*; do
  if [[ -n $d && -d $d/crates ]]; then db=$d; break; fi
done
if [[ -z $db ]]; then
  fetched="$tools/advisory-db"
  rm -rf "$fetched.tmp"
  if timeout 30 git clone -q --depth 1 https://github.com/rustsec/advisory-db "$fetched.tmp" 2>/dev/null; then
    rm -rf "$fetched"; mv "$fetched.tmp" "$fetched"; db=$fetched
  else
    rm -rf "$fetched.tmp"
    [[ -d $fetched/crates ]] && db=$fetched
  fi
fi
if [[ -z $db ]]; then
  echo "WARNING: no RustSec advisory database here: cargo audit NOT run" >&2
  exit 0
fi

if ! command -v cargo-audit >/dev/null; then
  echo "cargo-audit is missing; installing it into $tools (takes a few minutes)" >&2
  cargo install --locked --root "$tools" cargo-audit
fi
echo "advisory database: $db ($(git -C "$db" log -1 --format=%cs 2>/dev/null || echo 'date unknown'))"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
cargo audit --db "$db" --no-fetch --stale --json >"$out" || status=$?
found=$(jq -r '.vulnerabilities.count // 0' "$out" 2>/dev/null || echo "?")
jq -r '.vulnerabilities.list[]? | "VULNERABLE: \(.package.name) \(.package.version): \(.advisory.id) \(.advisory.title)"' "$out" 2>/dev/null || true
jq -r '.warnings | to_entries[]? | .key as $k | .value[] | "warning (\($k)): \(.package.name) \(.package.version) \(.advisory.id // "")"' "$out" 2>/dev/null || true
if [[ $status -ne 0 || $found != 0 ]]; then
  echo "cargo audit: $found vulnerable crate(s) in Cargo.lock (exit $status)" >&2
  [[ $found == "?" ]] && cat "$out" >&2
  exit 1
fi
echo "cargo audit: no known vulnerability in Cargo.lock"
