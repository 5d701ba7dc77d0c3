#!/usr/bin/env bash
# What "no served request without its evidence" costs (issue 12, part 4):
# the same audited route as `audit = "best-effort"` (the access event is
# queued; the response does not wait) and as `audit = "required"` (the
# response head waits until the event is in the WAL after fdatasync), and
# unaudited for reference. wrk at 10, 64 and 256 connections; stadttor and
# its writer thread pinned to core 0, wrk and the nginx backend to core 1;
# the log on a fresh journaled ext4 (as bench/audit.sh explains).
# Output: one markdown row per mode and concurrency: req/s, p50/p99
# latency, gateway CPU per request; medians over ROUNDS alternating rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
CONNS=${CONNS:-"10 64 256"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
for p in nginx wrk; do command -v $p >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx-light wrk >/dev/null; }; done
# STADTTOR_BIN: measure that binary instead of building one.
if [[ -z ${STADTTOR_BIN:-} ]]; then cargo build --release -q -p stadttor-gateway; fi
BIN=${STADTTOR_BIN:-$CARGO_TARGET_DIR/release/stadttor}
W=$(mktemp -d /tmp/stadttor-durable-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $W/nginx.pid ]] && nginx -c "$W/nginx.conf" -s stop 2>/dev/null || true
  mountpoint -q "$W/fs" && umount "$W/fs"
  rm -rf "$W"
}
trap cleanup EXIT
LOG_ROOT=$W
truncate -s 2G "$W/fs.img"; mkfs.ext4 -q -F "$W/fs.img"; mkdir "$W/fs"
if mount -o loop "$W/fs.img" "$W/fs" 2>/dev/null; then LOG_ROOT=$W/fs
else echo "WARNING: no loop mount; the log stays on $(df --output=fstype "$W" | tail -n1)" >&2; fi
cat > "$W/nginx.conf" <<NGX
worker_processes 1; pid $W/nginx.pid; error_log $W/error.log;
events { worker_connections 2048; }
http { access_log off; server { listen 127.0.0.1:18080 backlog=4096; keepalive_requests 100000;
  location / { return 200 "$(printf '%0100d' 0)"; } } }
NGX
taskset -c 1 nginx -c "$W/nginx.conf"
timeout 3 "$BIN" demo --dir "$W/pki" --listen 127.0.0.1:0 --admin 127.0.0.1:0 >/dev/null 2>&1 || true
config() { # $1 = off | best-effort | required
  cat <<CFG
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
audit = "$1"
[audit]
dir = "$LOG_ROOT/auditlog"
origin = "bench/durable"
key = "file:$W/pki/audit-ed25519.key"
pseudonym_key_file = "$W/pki/audit-pseudonym.key"
CFG
}
for m in off best-effort required; do config "$m" > "$W/$m.toml"; done
to_us() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); print v } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 } else { sub(/s$/, "", v); print v * 1e6 } }'; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  for c in $CONNS; do
    for mode in off best-effort required; do
      rm -rf "$LOG_ROOT/auditlog"
      taskset -c 0 "$BIN" serve --config "$W/$mode.toml" >/dev/null 2>"$W/$mode.err" & pid=$!; pids+=("$pid")
      sleep 1
      taskset -c 1 wrk -t1 -c"$c" -d2s https://127.0.0.1:18443/ >/dev/null # warm-up
      t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      out=$(taskset -c 1 wrk -t1 -c"$c" -d"$DURATION" --latency https://127.0.0.1:18443/)
      t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      p50=$(awk '$1 == "50%" {print $2}' <<<"$out" | to_us)
      p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_us)
      cpu=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
      errs=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
      echo "$c $mode $rps $p50 $p99 $cpu ${errs:-0}" >> "$W/rows.txt"
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n| connections | audit | req/s | p50 latency | p99 latency | CPU per request | non-2xx |\n|---|---|---|---|---|---|---|\n'
for c in $CONNS; do
  for mode in off best-effort required; do
    awk -v c="$c" -v m="$mode" '$1 == c && $2 == m' "$W/rows.txt" | sort -k3 -n | awk '
      { rps[NR] = $3; p50[NR] = $4; p99[NR] = $5; cpu[NR] = $6; e += $7; c = $1; m = $2 }
      END { i = int((NR + 1) / 2); n = asort(p50); asort(p99); asort(cpu)
            printf "| %s | %s | %d | %.0f µs | %.0f µs | %.1f µs | %d |\n", c, m, rps[i], p50[i], p99[i], cpu[i], e }'
  done
done
