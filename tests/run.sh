#!/usr/bin/env bash
# The whole stadttor test suite, as CI runs it: installs what the tests
# need (Debian 12, as root or with sudo), then lints and tests every crate
# with every feature against real parts (swtpm, SoftHSM2, testssl.sh, ...).
#
#   tests/run.sh            everything
#   tests/run.sh --quick    skip fmt/clippy/deny, run the tests only
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

say() { printf '\n== %s ==\n' "$*"; }
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"

# --- system packages -------------------------------------------------------
APT_PACKAGES=(
  pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools   # TPM backend + software TPM
  softhsm2 opensc                                       # PKCS#11 backend + token
  testssl.sh curl jq openssl                            # independent TLS checks
  golang-go golang-golang-x-mod-dev                     # Go sumdb/tlog: independent audit-log verifier
  poppler-utils libnss3-tools                           # pdfsig + certutil: independent PAdES verifier
  redis-server                                          # session store tests (shared server + one per outage test)
  postgresql                                            # shared cluster; initdb/postgres for the TLS-only cluster of store_tls.rs
  chromium                                              # headless browser: officer approval page
  lintian dpkg-dev binutils systemd slowhttptest        # appliance: .deb lint + shlibdeps/objcopy, systemd-analyze, slow clients
  debootstrap systemd-container                         # appliance: the .deb in Debian 12 booted by systemd-nspawn
  nginx python3                                         # path-confusion corpus: two upstreams that resolve paths on their own
  iproute2                                              # ss: the listen backlog test reads it from the kernel
  haproxy                                               # behind a load balancer: PROXY protocol v2 in front of a listener
  python3-venv xmlsec1                                  # the test SAML IdP (tests/saml-idp: pysaml2 runs xmlsec1)
  libxml2-utils                                         # xmllint --exc-c14n: the SAML self-test signs RSA-PSS requests with openssl
  libxmlsec1-dev                                        # builds stadttor-saml's C shim (pkg-config xmlsec1-openssl; brings libxml2-dev, libssl-dev, libxmlsec1-openssl)
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node runs the test OpenID Provider (tests/oidc-op). Any node on PATH will
# do (NodeSource's bundles npm), so look for the commands, not the packages.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The test OpenID Provider's node modules, pinned by its package-lock.json.
if [[ ! -d tests/oidc-op/node_modules || tests/oidc-op/package-lock.json -nt tests/oidc-op/node_modules ]]; then
  say "npm ci (tests/oidc-op)"
  npm ci --prefix tests/oidc-op --no-audit --no-fund
  touch tests/oidc-op/node_modules
fi

# playwright-core drives Debian's chromium in the approval-page test; it
# downloads no browser of its own.
if [[ ! -d tests/browser/node_modules || tests/browser/package-lock.json -nt tests/browser/node_modules ]]; then
  say "npm ci (tests/browser)"
  npm ci --prefix tests/browser --no-audit --no-fund
  touch tests/browser/node_modules
fi
# The test SAML IdP's Python packages (pysaml2), pinned with hashes, in a
# venv of Debian's python3 (not whatever python3 comes first on PATH).
if [[ ! -x tests/saml-idp/.venv/bin/python || tests/saml-idp/requirements.txt -nt tests/saml-idp/.venv ]]; then
  say "pip install --require-hashes (tests/saml-idp)"
  rm -rf tests/saml-idp/.venv
  /usr/bin/python3 -m venv tests/saml-idp/.venv
  tests/saml-idp/.venv/bin/pip install --quiet --disable-pip-version-check \
    --require-hashes --only-binary :all: -r tests/saml-idp/requirements.txt
  touch tests/saml-idp/.venv
fi
# --- cargo tools for the appliance checks ------------------------------------
# Installed outside the clone and kept between runs (tests/fuzz.sh and
# tests/audit.sh install cargo-fuzz and cargo-audit there the same way).
export STADTTOR_TOOLS="${STADTTOR_TOOLS:-/var/tmp/stadttor-tools}"
export PATH="$STADTTOR_TOOLS/bin:$PATH"
if ! command -v cargo-deb >/dev/null; then
  say "cargo install cargo-deb (into $STADTTOR_TOOLS)"
  cargo install --locked --root "$STADTTOR_TOOLS" cargo-deb
fi

# --- services the tests talk to --------------------------------------------
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  say "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if command -v redis-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
fi

# A build cache outside the clone (CARGO_TARGET_DIR, as .ci/run sets) that
# a checkout at another path used last may hold this workspace's own crates
# built from that checkout's files, and cargo would call them fresh: its
# hashes leave the path out and it checks the other checkout's file times.
# Forget their fingerprints so they are rebuilt from this checkout; the
# dependencies stay cached. (The fuzz cache lives below the same directory.)
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
  marker="$CARGO_TARGET_DIR/.stadttor-checkout"
  if [[ -f $marker && "$(cat "$marker")" != "$PWD" ]]; then
    say "build cache last used by $(cat "$marker"): rebuilding stadttor's own crates"
    find "$CARGO_TARGET_DIR" -type d -path '*/.fingerprint/*' \
      \( -name 'stadttor*' -o -name 'testkit-*' \) -prune -exec rm -rf {} +
  fi
  mkdir -p "$CARGO_TARGET_DIR"
  echo "$PWD" >"$marker"
fi

export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1

if ((quick == 0)); then
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy (all targets, all features, -D warnings)"
  cargo clippy --workspace --all-targets --all-features -- -D warnings
  if [[ -x tests/deny.sh ]]; then
    say "cargo deny (licences, bans, sources)"
    tests/deny.sh
  fi
  say "cargo audit (RustSec advisories, where a database is available)"
  tests/audit.sh
  say "fuzzing (cargo-fuzz on stable, -s none; regressions replayed)"
  tests/fuzz.sh
fi

say "cargo test (workspace, all features)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo's own last line is the
# doc-test summary of the last crate, often "0 passed").
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
