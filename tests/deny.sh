#!/usr/bin/env bash
# cargo-deny with the workspace's deny.toml: licences, bans (crate
# boundaries, see ARCHITECTURE.md), sources, and advisories (fetches the
# RustSec database; needs network). Called by tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
  echo "cargo-deny is missing; installing it (takes a few minutes)" >&2
  cargo install --locked cargo-deny
fi
cargo deny --locked check licenses bans sources
cargo deny --locked check advisories
