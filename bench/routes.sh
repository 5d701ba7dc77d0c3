#!/usr/bin/env bash
# Route scale (#14 item 4): stadttor with one route against stadttor with
# ROUTES_HOSTS x ROUTES_PREFIXES routes (hosts x path prefixes, plus a `/`
# fallback) and ROUTES_POLICY policy lines. See docs/BENCHMARKS.md,
# "Route scale (#14 item 4)".
#
# Usage: bench/routes.sh
# Environment:
#   ROUTES_HOSTS     hosts                          (default 100; 0: the
#                    issue's layout, ROUTES_PREFIXES `/kN/` prefixes on any host)
#   ROUTES_PREFIXES  path prefixes per host         (default 100)
#   ROUTES_POLICY    policy lines (casbin, default model; 0: no [policies])
#                                                   (default 10000)
#   BENCH_DURATION   seconds per measured wrk run   (default 5)
#   BENCH_RUNS       rounds of the request tests    (default 3)
#   ROUTES_RELOADS   SIGHUP reloads under load, RSS read after each
#                    (default 10)
#   BENCH_SCHED      rr (default), nice or none, as in bench/run.sh
#   BENCH_SKIP_BUILD set to 1 to use an existing release binary
#   STADTTOR_BIN     the stadttor binary to measure (default: the release build)
#   BENCH_KEEP       set to 1 to keep the scratch directory
#   CARGO_TARGET_DIR (default /work/target-bench)
#
# What it measures, each for the one-route and the many-route config:
#   - `stadttor config check` wall time (median of 3);
#   - start-up: spawn to the listener's announcement on stdout;
#   - RSS after start-up and after the request tests (VmRSS);
#   - CPU per request (utime+stime of the gateway / requests) and req/s
#     with wrk, HTTP/1.1 keep-alive, 50 connections, on the first route of
#     the file, the last one and the fallback;
#   - a SIGHUP reload of the many-route config under wrk load: time from
#     the signal to "configuration reloaded" in the log, and wrk's socket
#     errors and non-2xx responses during it (must be 0), and RSS after
#     each reload (ROUTES_RELOADS of them: does it level off?).
# Pinning: stadttor on core 0; wrk and the nginx backend (answers 200 to
# everything) on core 1. Every run is bounded by BENCH_DURATION; traffic
# only goes to 127.0.0.1.
#
# Output: a markdown report on stdout and in bench/results/routes-latest.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
HOSTS=${ROUTES_HOSTS:-100}
PREFIXES=${ROUTES_PREFIXES:-100}
POLICY=${ROUTES_POLICY:-10000}
DUR=${BENCH_DURATION:-5}
RUNS=${BENCH_RUNS:-3}
RELOAD_RUNS=${ROUTES_RELOADS:-10}
SCHED=${BENCH_SCHED:-rr}
case $SCHED in
rr) PRIO=(chrt -r 10) ;;
nice) PRIO=(nice -n -10) ;;
none) PRIO=(env) ;;
*) echo "BENCH_SCHED must be rr, nice or none" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
HOST=127.0.0.1

log() { echo "[routes] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for pair in nginx:nginx-light wrk:wrk openssl:openssl taskset:util-linux python3:python3 curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || die "missing ${pair%%:*} (Debian package ${pair#*:})"
done

PIDS=()
WORK=""
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ "${BENCH_KEEP:-0}" == 1 || $rc -ne 0 ]]; then
            log "scratch directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
CLK_TCK=$(getconf CLK_TCK)
ticks_of() { # utime+stime of a process, in clock ticks
    local s
    s=$(cat "/proc/$1/stat") && s=${s##*) } && read -r -a f <<<"$s" && echo $((f[11] + f[12]))
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print('%.0f' % ((float(sys.argv[2]) - float(sys.argv[1])) * 1e3))" "$1" "$(now)"; }

# ---------------------------------------------------------------- setup ---
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building stadttor (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p stadttor-gateway --bin stadttor >&2)
fi
BIN="${STADTTOR_BIN:-$CARGO_TARGET_DIR/release/stadttor}"
[[ -x "$BIN" ]] || die "no binary at $BIN"

WORK=$(mktemp -d /tmp/stadttor-routes.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/one" "$WORK/many" "$WORK/tmp" "$RESULTS"
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ec.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$WORK/ec.pem" -out "$WORK/key.pem"
openssl req -x509 -new -key "$WORK/key.pem" -sha256 -days 7 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out "$WORK/cert.pem" 2>/dev/null
chmod 600 "$WORK/key.pem" "$WORK/ec.pem"
for d in one many; do cp "$WORK/cert.pem" "$WORK/key.pem" "$WORK/$d/"; done

BACKEND_PORT=$(free_port)
cat >"$WORK/backend.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/tmp/b-body;
    proxy_temp_path $WORK/tmp/b-proxy;
    fastcgi_temp_path $WORK/tmp/b-fcgi;
    uwsgi_temp_path $WORK/tmp/b-uwsgi;
    scgi_temp_path $WORK/tmp/b-scgi;
    server {
        listen $HOST:$BACKEND_PORT backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
EOF
"${PRIO[@]}" taskset -c 1 nginx -p "$WORK" -c "$WORK/backend.conf" >"$WORK/backend.out" 2>&1 &
PIDS+=($!)

python3 "$BENCH/routes_config.py" "$WORK/one" "$HOST:$BACKEND_PORT" --hosts 0 --prefixes 0
python3 "$BENCH/routes_config.py" "$WORK/many" "$HOST:$BACKEND_PORT" \
    --hosts "$HOSTS" --prefixes "$PREFIXES" --policy "$POLICY"
NROUTES=$(grep -c '^\[\[routes\]\]' "$WORK/many/stadttor.toml")
if ((POLICY > 0)); then
    "$BIN" policy --store "file:$WORK/many/policies" init --officers alice,bob \
        --from "$WORK/many/policy-src" --author bench >"$WORK/policy-init.out" 2>&1 ||
        { cat "$WORK/policy-init.out" >&2; die "policy init failed"; }
fi
if ((HOSTS > 0)); then
    FIRST=("h0.land.example" "/dienst0/akte/1")
    LAST=("h$((HOSTS - 1)).land.example" "/dienst$((PREFIXES - 1))/akte/1")
else
    FIRST=("localhost" "/k0/akte/1")
    LAST=("localhost" "/k$((PREFIXES - 1))/akte/1")
fi
FALLBACK=("unknown.example" "/akte/1")
log "$NROUTES routes, $POLICY policy lines; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------- measures ---
REPORT="$RESULTS/routes-latest.md"
ROWS=()

config_check_ms() { # dir -> median of 3, ms
    local t ms=()
    for _ in 1 2 3; do
        t=$(now)
        "$BIN" config check "$1/stadttor.toml" >/dev/null 2>&1 || die "config check failed: $1"
        ms+=("$(ms_since "$t")")
    done
    printf '%s\n' "${ms[@]}" | sort -n | sed -n 2p
}

start_gw() { # dir -> sets GW_PID, GW_PORT, START_MS
    local t line=""
    t=$(now)
    STADTTOR_LOG=info "${PRIO[@]}" taskset -c 0 "$BIN" serve --config "$1/stadttor.toml" \
        >"$1/out" 2>"$1/err" &
    GW_PID=$!
    PIDS+=($GW_PID)
    for _ in $(seq 3000); do  # up to 30 s: a busy machine without RR is slow
        line=$(grep -m1 '^stadttor listening: bench https://' "$1/out" 2>/dev/null || true)
        [[ -n "$line" ]] && break
        kill -0 "$GW_PID" 2>/dev/null || { cat "$1/err" >&2; die "stadttor exited"; }
        sleep 0.01
    done
    [[ -n "$line" ]] || die "stadttor did not announce its listener"
    START_MS=$(ms_since "$t")
    GW_PORT=${line##*:}
    curl -sk -o /dev/null --max-time 5 "https://$HOST:$GW_PORT/" || die "not answering"
}

wrk_run() { # host path seconds outfile
    "${PRIO[@]}" taskset -c 1 wrk -t1 -c50 -d"$3s" --latency \
        -H "Host: $1" "https://$HOST:$GW_PORT$2" >"$4"
}

wrk_errors() { # file -> socket errors + non-2xx
    python3 - "$1" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
err = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
if m: err += sum(map(int, m.groups()))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if m: err += int(m.group(1))
print(int(re.search(r"(\d+) requests in", t).group(1)), err)
EOF
}

request_cpu() { # label host path -> appends a row
    local label=$1 host=$2 path=$3 t0 t1 n err cpu load out="$WORK/wrk.txt"
    wrk_run "$host" "$path" 1 "$out"
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(ticks_of "$GW_PID")
    wrk_run "$host" "$path" "$DUR" "$out"
    t1=$(ticks_of "$GW_PID")
    read -r n err < <(wrk_errors "$out")
    cpu=$(python3 -c "print('%.1f' % (($t1-$t0)*1e6/$CLK_TCK/$n))")
    ROWS+=("$label	$n	$(python3 -c "print('%.0f' % ($n/$DUR))")	$cpu	$err	$load")
    log "$label: $cpu us/req, $((n / DUR)) req/s, errors $err, load $load"
}

declare -A CHECK START RSS0 RSS1
for cfg in one many; do
    CHECK[$cfg]=$(config_check_ms "$WORK/$cfg")
    start_gw "$WORK/$cfg"
    START[$cfg]=$START_MS
    RSS0[$cfg]=$(rss_kb "$GW_PID")
    log "$cfg: config check ${CHECK[$cfg]} ms, start-up ${START[$cfg]} ms, RSS ${RSS0[$cfg]} kB"
    for run in $(seq "$RUNS"); do
        if [[ $cfg == one ]]; then
            request_cpu "1 route, run $run" localhost /akte/1
        else
            request_cpu "$NROUTES routes, first, run $run" "${FIRST[@]}"
            request_cpu "$NROUTES routes, last, run $run" "${LAST[@]}"
            request_cpu "$NROUTES routes, fallback, run $run" "${FALLBACK[@]}"
        fi
    done
    RSS1[$cfg]=$(rss_kb "$GW_PID")
    [[ $cfg == many ]] && break
    kill -TERM "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done

# SIGHUP under load, on the many-route gateway: reload the same file
# (the whole state is rebuilt) in the middle of a wrk run.
RELOADS=()
RELOAD_OUT="$WORK/wrk-reload.txt"
for run in $(seq "$RELOAD_RUNS"); do
    before=$(grep -c 'configuration reloaded' "$WORK/many/err" || true)
    wrk_run "${LAST[@]}" "$DUR" "$RELOAD_OUT" &
    wrk_pid=$!
    sleep "$(python3 -c "print($DUR / 3)")"
    t=$(now)
    kill -HUP "$GW_PID"
    until (($(grep -c 'configuration reloaded' "$WORK/many/err" || true) > before)); do
        grep -q 'reload rejected' "$WORK/many/err" && die "reload rejected"
        (($(ms_since "$t") < DUR * 1000)) || die "no reload within ${DUR}s"
        sleep 0.005
    done
    ms=$(ms_since "$t")
    wait "$wrk_pid"
    read -r n err < <(wrk_errors "$RELOAD_OUT")
    rss=$(($(rss_kb "$GW_PID") / 1024))
    load=$(cut -d' ' -f1 /proc/loadavg)
    RELOADS+=("$run	$ms	$n	$err	$rss	$load")
    log "reload $run: ${ms} ms, $n requests during the run, errors $err, RSS $rss MB, load $load"
done
RSS2=$(rss_kb "$GW_PID")

{
    echo "# Route scale: $NROUTES routes, $POLICY policy lines"
    echo
    echo "$(date -u +%F) on $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg); stadttor $("$BIN" --version)"
    echo
    echo "| | 1 route | $NROUTES routes |"
    echo "|---|---|---|"
    echo "| config check (ms, median of 3) | ${CHECK[one]} | ${CHECK[many]} |"
    echo "| start-up to listening (ms) | ${START[one]} | ${START[many]} |"
    echo "| RSS after start-up (MB) | $((RSS0[one] / 1024)) | $((RSS0[many] / 1024)) |"
    echo "| RSS after the request runs (MB) | $((RSS1[one] / 1024)) | $((RSS1[many] / 1024)) |"
    echo "| RSS after $RELOAD_RUNS reloads (MB) | | $((RSS2 / 1024)) |"
    echo
    echo "| wrk, h1, 50 connections, ${DUR}s | requests | req/s | CPU µs/request | errors | load |"
    echo "|---|---|---|---|---|---|"
    for r in "${ROWS[@]}"; do echo "| ${r//	/ | } |"; done
    echo
    echo "| SIGHUP reload under load | signal to reloaded (ms) | requests in the run | non-2xx + socket errors | RSS after (MB) | load |"
    echo "|---|---|---|---|---|---|"
    for r in "${RELOADS[@]}"; do echo "| ${r//	/ | } |"; done
} | tee "$REPORT"
