#!/usr/bin/env bash
# Gateway throughput with every request audited vs auditing off.
# stadttor (and its audit writer thread) pinned to core 0, wrk and the nginx
# backend to core 1; loopback only; ROUNDS alternating runs of DURATION each.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-8s}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
for p in nginx wrk; do command -v $p >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx-light wrk >/dev/null; }; done
cargo build --release -q -p stadttor-gateway
BIN=$CARGO_TARGET_DIR/release/stadttor
W=$(mktemp -d /tmp/stadttor-audit-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $W/nginx.pid ]] && nginx -c "$W/nginx.conf" -s stop 2>/dev/null || true
  mountpoint -q "$W/fs" && umount "$W/fs"
  rm -rf "$W"
}
trap cleanup EXIT
# The log goes to a fresh ext4 file system with a journal (mkfs.ext4
# defaults, as on an installed appliance's /var/lib), loop-mounted. This
# VM's root file system is ext4 *without* a journal, where every file
# creation scans the recently deleted inodes (the kernel's
# find_inode_bit/recently_deleted, only done without a journal): after a
# few bench runs had deleted their logs, creating one tile file cost
# milliseconds and tripled the writer's CPU. AUDIT_FS=plain keeps the log
# under $W instead.
LOG_ROOT=$W
if [[ ${AUDIT_FS:-ext4} == ext4 ]]; then
  truncate -s 2G "$W/fs.img"; mkfs.ext4 -q -F "$W/fs.img"; mkdir "$W/fs"
  if mount -o loop "$W/fs.img" "$W/fs" 2>/dev/null; then LOG_ROOT=$W/fs
  else echo "WARNING: cannot loop-mount an ext4 image; the log stays on $(df --output=fstype "$W" | tail -n1) under $W" >&2; fi
fi
cat > "$W/nginx.conf" <<NGX
worker_processes 1; pid $W/nginx.pid; error_log $W/error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:18080; location / { return 200 "$(printf '%0100d' 0)"; } } }
NGX
taskset -c 1 nginx -c "$W/nginx.conf"
# Keys and certificates from the demo generator (software keys: a benchmark).
timeout 3 "$BIN" demo --dir "$W/pki" --listen 127.0.0.1:0 --admin 127.0.0.1:0 >/dev/null 2>&1 || true
base() { cat <<CFG
[server]
access_log = false
[[listeners]]
name = "public"
listen = "127.0.0.1:18443"
[[listeners.tls.certificates]]
chain = "$W/pki/tls/server.pem"
key = "file:$W/pki/tls/server.key"
[[upstreams]]
name = "app"
addresses = ["127.0.0.1:18080"]
[[routes]]
name = "app"
upstream = "app"
CFG
}
base > "$W/off.toml"
{ base; cat <<CFG
[audit]
dir = "$LOG_ROOT/auditlog"
origin = "bench/audit"
key = "file:$W/pki/audit-ed25519.key"
pseudonym_key_file = "$W/pki/audit-pseudonym.key"
CFG
} > "$W/on.toml"
declare -A total=([off]=0 [on]=0)
declare -A cpu=()
ratios=()
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| round | off req/s (CPU µs/req) | on req/s (CPU µs/req) | on/off |\n|---|---|---|---|\n'
for r in $(seq 1 "$ROUNDS"); do
  declare -A rps=()
  for mode in off on; do
    rm -rf "$LOG_ROOT/auditlog"
    taskset -c 0 "$BIN" serve --config "$W/$mode.toml" >/dev/null 2>"$W/$mode.err" & pid=$!; pids+=("$pid")
    sleep 1
    if [[ -n ${PERF:-} && $r == 1 ]]; then  # profile both modes once: PERF=prefix -> prefix-off.txt, prefix-on.txt
      perf record -q -g -o "$W/perf-$mode.data" -p "$pid" -- sleep 4 >/dev/null 2>&1 &
      perfpid=$!
      taskset -c 1 wrk -t1 -c50 -d4s https://127.0.0.1:18443/ >/dev/null
      wait "$perfpid" || true
      { perf report -q -i "$W/perf-$mode.data" --no-children -g none --sort comm --stdio 2>/dev/null | grep "%" || true
        perf report -q -i "$W/perf-$mode.data" --no-children -g none --sort comm,symbol --stdio 2>/dev/null | grep "%" | head -300 || true
      } | sed 's/ *$//' > "$PERF-$mode.txt"
    fi
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(taskset -c 1 wrk -t1 -c50 -d"$DURATION" https://127.0.0.1:18443/)
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    rps[$mode]=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu[$mode]=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
    echo "$mode ${cpu[$mode]}" >> "$W/cpu.txt"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    total[$mode]=$(( ${total[$mode]} + ${rps[$mode]} ))
  done
  ratio=$(awk -v on="${rps[on]}" -v off="${rps[off]}" 'BEGIN { printf "%.3f", on / off }')
  ratios+=("$ratio")
  printf '| %s | %s (%s) | %s (%s) | %s |\n' "$r" "${rps[off]}" "${cpu[off]}" "${rps[on]}" "${cpu[on]}" "$ratio"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v on="${total[on]}" -v off="${total[off]}" 'BEGIN { printf "\non/off (sums) = %.3f\n", on / off }'
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
  med = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
  printf "per-round on/off: median %.3f, min %.3f, max %.3f, quartiles %.3f-%.3f (%d rounds)\n", med, r[1], r[NR], r[int((NR + 3) / 4)], r[int((3 * NR + 3) / 4)], NR }'
awk '{ s[$1] += $2; n[$1]++ } END { printf "gateway CPU per request (incl. the audit writer thread): off %.1f us, on %.1f us, off/on = %.3f\n", s["off"]/n["off"], s["on"]/n["on"], (s["off"]/n["off"]) / (s["on"]/n["on"]) }' "$W/cpu.txt"
