#!/usr/bin/env bash
# Fuzz stage (called by tests/run.sh): builds the cargo-fuzz targets in
# fuzz/ (their own workspace) on stable with `-s none` (no sanitizer: ASan
# needs nightly; Rust's own checks, debug assertions and overflow checks
# are on), then per target:
#   1. replays every input in fuzz/regressions/<target>/ once (-runs=0);
#   2. fuzzes for FUZZ_SECONDS (default 20) from fuzz/seeds/<target>/ and a
#      corpus kept between runs outside the clone.
# A crash or a timeout fails the stage and prints the input; fix the bug and
# copy the input to fuzz/regressions/<target>/.
#
#   tests/fuzz.sh                 all targets
#   tests/fuzz.sh jwt audit       some
#   FUZZ_SECONDS=300 tests/fuzz.sh jwt
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tools=${STADTTOR_TOOLS:-/var/tmp/stadttor-tools}
export PATH="$tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is missing; installing it into $tools (about a minute)" >&2
  cargo install --locked --root "$tools" cargo-fuzz
fi

seconds=${FUZZ_SECONDS:-20}
cache=${STADTTOR_FUZZ_CACHE:-${CARGO_TARGET_DIR:-/var/tmp/stadttor-ci-target}/fuzz}
mkdir -p "$cache"
targets=("$@")
((${#targets[@]})) || targets=(config session_cookie jwt httpsig audit policy framing path proxy_protocol saml_response)
# Extra read-only seed directories, besides fuzz/seeds/<target>.
declare -A extra=(
  [config]="$root/packaging/examples $root/tests/fixtures/config/rejected"
  [policy]="$root/policies/default"
)
run_fuzz=(cargo fuzz run -s none --target-dir "$cache/target")

cd fuzz
cargo fmt -- --check
t0=$SECONDS
build_one=()
((${#targets[@]} == 1)) && build_one=("${targets[0]}")
cargo fuzz build -s none --target-dir "$cache/target" "${build_one[@]}"
echo "fuzz build: $((SECONDS - t0)) s"

failed=()
for t in "${targets[@]}"; do
  log="$cache/$t.log"
  if [[ -d regressions/$t ]] && [[ -n $(ls -A "regressions/$t") ]]; then
    n=$(ls -A "regressions/$t" | wc -l)
    if ! "${run_fuzz[@]}" "$t" "regressions/$t" -- -runs=0 >"$log" 2>&1; then
      echo "FAIL $t: a regression input crashes again:"; tail -n 40 "$log"
      failed+=("$t"); continue
    fi
    echo "$t: $n regression input(s) replayed, no crash"
  fi
  corpus="$cache/corpus/$t"; artifacts="$cache/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [[ -d seeds/$t ]] && seeds+=("seeds/$t")
  for d in ${extra[$t]:-}; do seeds+=("$d"); done
  s0=$SECONDS
  if "${run_fuzz[@]}" "$t" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    echo "$t: ${execs:-?} execs in $((SECONDS - s0)) s, $cov, corpus $(ls "$corpus" | wc -l) inputs, no crash"
  else
    echo "FAIL $t: crash or timeout (log $log):"
    grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written|Base64" "$log" | head -n 20
    failed+=("$t")
  fi
done
echo "fuzz stage: $((SECONDS - t0)) s"
if ((${#failed[@]})); then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
