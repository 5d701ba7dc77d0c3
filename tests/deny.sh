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
# The RustSec database comes from the network; where it cannot be fetched
# (offline CI), say so plainly instead of failing or pretending to check.
if timeout 60 cargo deny fetch db >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  echo "WARNING: RustSec advisory database unreachable here: advisories NOT checked" >&2
fi
