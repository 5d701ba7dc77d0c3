#!/usr/bin/env bash
# Crypto provider benchmark: ring against aws-lc-rs in one run, and the
# cost of hybrid post-quantum key exchange against classic P-256. See
# docs/BENCHMARKS.md, "Crypto provider and post-quantum key exchange".
#
# bench/cryptobench (its own cargo project) measures, per library, in one
# process pinned to one core:
#   - ECDSA P-256 sign and verify, Ed25519 sign, P-256 ECDHE,
#     ML-KEM-768 encapsulation and decapsulation (aws-lc-rs only);
#   - AES-128-GCM and AES-256-GCM sealing of 16 KiB records;
#   - TLS 1.3 handshakes between an in-memory rustls client and a server
#     configured like the gateway's listeners (BSI suites and order,
#     tickets), full and resumed, over P-256, X25519, SECP256R1MLKEM768 and
#     X25519MLKEM768, the server's and the client's CPU time apart. The
#     server signs with ring in every variant, as the gateway signs through
#     stadttor-hsm and not through the rustls provider.
# Every figure is the measuring thread's CPU time; the rounds alternate
# which library runs first. No sockets, no other processes.
#
# Usage: bench/crypto.sh
# Environment:
#   CRYPTO_ROUNDS    rounds                                   (default 3)
#   CRYPTO_SECONDS   CPU seconds per figure and round          (default 1.5)
#   CRYPTO_WARMUP    uncounted seconds before each figure      (default 0.3)
#   CRYPTO_PARTS     prims,handshakes or one of them           (default both)
#   CRYPTO_CPU       the core to pin to                        (default 0)
#   BENCH_SKIP_BUILD set to 1 to use the existing release binary
#   CARGO_TARGET_DIR (default /work/target-bench)
#
# Bounded: each figure stops after its CPU seconds or four times that in
# wall time, and the whole run is killed after CRYPTO_TIMEOUT seconds
# (default 1800).
#
# Output: a markdown report on stdout and in bench/results/crypto-latest.md,
# raw rows in bench/results/crypto-latest.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$ROOT/bench/results"
ROUNDS=${CRYPTO_ROUNDS:-3}
SECS=${CRYPTO_SECONDS:-1.5}
WARM=${CRYPTO_WARMUP:-0.3}
PARTS=${CRYPTO_PARTS:-prims,handshakes}
CPU=${CRYPTO_CPU:-0}
LIMIT=${CRYPTO_TIMEOUT:-1800}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}

command -v taskset >/dev/null || { echo "crypto.sh: taskset (util-linux) is needed" >&2; exit 2; }
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  # aws-lc-sys builds its C sources with the system compiler (cc); no
  # cmake, clang or Go needed on x86_64 Linux.
  cargo build --release --locked -q --manifest-path "$ROOT/bench/cryptobench/Cargo.toml"
fi
BIN=$CARGO_TARGET_DIR/release/stadttor-cryptobench
mkdir -p "$RESULTS"

{
  echo "# bench/crypto.sh, $(date -u +%FT%TZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "$(nproc) CPUs online; pinned to core $CPU; rustc $(rustc --version | cut -d' ' -f2)"
  echo
  timeout "$LIMIT" taskset -c "$CPU" "$BIN" --rounds "$ROUNDS" --seconds "$SECS" --warmup "$WARM" \
    --parts "$PARTS" --tsv "$RESULTS/crypto-latest.tsv"
} | tee "$RESULTS/crypto-latest.md"
