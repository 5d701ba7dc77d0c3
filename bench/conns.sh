#!/usr/bin/env bash
# Memory per connection and slow clients (#14 item 3): stadttor vs nginx as
# TLS reverse proxies in front of one nginx backend, all on 127.0.0.1, set
# up like bench/run.sh (same certificate, TLS profile, pinning).
#
# Usage: bench/conns.sh
# Environment:
#   CONNS_LEVELS     idle connection counts, each from a fresh proxy; set
#                    but empty (CONNS_LEVELS=) to skip the idle test
#                    (default "1000 3000 10000")
#   CONNS_PROTOS     "h1 h2" (default both)
#   CONNS_PROXIES    "nginx stadttor" (default both; one alone for quick
#                    experiments, the table then has no ratio)
#   CONNS_SLOW       slow clients of the p99 test (default 10000; 0 skips it)
#   CONNS_SLOW_SECS  seconds wrk measures, with and without slow clients
#                    (default 10)
#   CONNS_SLOW_ROUNDS rounds of the slow-client test, each with a fresh
#                    proxy per proxy kind, alternating (default 1)
#   BENCH_SCHED      rr (default): proxies, backend and wrk run SCHED_RR
#                    priority 10 (chrt), as in bench/run.sh; the slowloris
#                    client runs SCHED_RR priority 5, below wrk, so on the
#                    shared client core it gets what wrk leaves but cannot
#                    take wrk's CPU (before, wrk and the Python client
#                    shared core 1 as equals, and the test measured that
#                    contention for both proxies). none: no change.
#   CONNS_SETTLE     seconds to wait after the connections are up before
#                    reading RSS (default 2)
#   BENCH_SKIP_BUILD set to 1 to use an existing release binary
#   STADTTOR_BIN     the stadttor binary to measure (default: release build)
#   CARGO_TARGET_DIR (default /work/target-bench)
#
# Idle test: for each proxy, protocol and level N a fresh proxy process;
# RSS (VmRSS, nginx master + worker) before, then bench/idleconns.py opens
# N TLS 1.3 connections, one GET on each, and holds them; RSS once all are
# up. KB per connection = ΔRSS / N. Both proxies get a long idle timeout
# for this test (300 s), so none closes while the last ones are opened.
#
# Slow-client test (default timeouts: stadttor header_read_timeout 10 s,
# nginx client_header_timeout 10 s): wrk -c50 measures p99 of normal
# clients alone, then again while N slowloris clients (one header byte
# every 2 s, reopened when the server closes them) are in flight. Both
# proxies close a head that is not complete after 10 s, so how many slow
# clients are really open at once depends on how fast the client opens
# them: the `slow_open` column counts the proxy's established connections
# (minus wrk's 50) in the middle of the measurement.
#
# Pinning: proxies on core 0, backend and clients on core 1. Bounded: every
# client has a hold time; the whole script takes a few minutes.
# Output: markdown on stdout and bench/results/conns-latest.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
LEVELS=${CONNS_LEVELS-"1000 3000 10000"}
PROTOS=${CONNS_PROTOS:-"h1 h2"}
PROXIES=${CONNS_PROXIES:-"nginx stadttor"}
SLOW=${CONNS_SLOW:-10000}
SLOW_SECS=${CONNS_SLOW_SECS:-10}
SETTLE=${CONNS_SETTLE:-2}
SLOW_ROUNDS=${CONNS_SLOW_ROUNDS:-1}
case ${BENCH_SCHED:-rr} in
rr) PRIO=(chrt -r 10) ;;
none) PRIO=(env) ;;
*) echo "BENCH_SCHED must be rr or none" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
HOST=127.0.0.1

log() { echo "[conns $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for cmd in nginx wrk openssl taskset chrt python3 curl ss; do
    command -v "$cmd" >/dev/null || die "missing $cmd (bench/run.sh installs the tools)"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"

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
    [[ -n "$WORK" && -d "$WORK" && $rc -eq 0 ]] && rm -rf "$WORK"
    [[ $rc -ne 0 && -n "$WORK" ]] && log "scratch directory kept: $WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
rss_of() { # KiB, summed over the given pids
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
ticks_of() { # utime+stime (clock ticks) of the given pids
    local total=0 p s f
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
proc_tree() { echo "$1"; cat "/proc/$1/task/"*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true; }
wait_http() {
    for _ in $(seq 100); do
        curl -sk -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.1
    done
    die "not answering: $1"
}
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- setup ---
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building stadttor (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p stadttor-gateway --bin stadttor >&2)
fi
BIN="${STADTTOR_BIN:-$CARGO_TARGET_DIR/release/stadttor}"
[[ -x "$BIN" ]] || die "no binary at $BIN"

WORK=$(mktemp -d /tmp/stadttor-conns.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/tmp" "$RESULTS"
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ec.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$WORK/ec.pem" -out "$WORK/key.pem"
openssl req -x509 -new -key "$WORK/key.pem" -sha256 -days 7 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out "$WORK/cert.pem" 2>/dev/null
chmod 600 "$WORK/key.pem" "$WORK/ec.pem"
printf '%0100d' 0 | tr 0 a >"$WORK/www/small"
cat >"$WORK/openssl-client.cnf" <<'EOF'
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Groups = P-256:P-384
EOF
BACKEND_PORT=$(free_port)
NGINX_PORT=$(free_port)
[[ "$BACKEND_PORT" != "$NGINX_PORT" ]] || NGINX_PORT=$(free_port)

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
    default_type application/octet-stream;
    server { listen $HOST:$BACKEND_PORT backlog=4096; root $WORK/www; }
}
EOF

# nginx_conf IDLE_TIMEOUT: the proxy config of bench/run.sh; the idle
# timeouts as given (keepalive_timeout and, for h2, the same setting since
# nginx 1.19.7), client_header_timeout 10 s like stadttor's default.
nginx_conf() {
    cat >"$WORK/nginx-proxy.conf" <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy-error.log warn;
events { worker_connections 32768; }
http {
    access_log off;
    keepalive_timeout $1;
    keepalive_requests 10000000;
    client_header_timeout 10s;
    client_body_temp_path $WORK/tmp/p-body;
    proxy_temp_path $WORK/tmp/p-proxy;
    fastcgi_temp_path $WORK/tmp/p-fcgi;
    uwsgi_temp_path $WORK/tmp/p-uwsgi;
    scgi_temp_path $WORK/tmp/p-scgi;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384;
    ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256;
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve prime256v1:secp384r1;
    ssl_session_tickets on;
    ssl_session_cache shared:SSL:10m;
    upstream backend {
        server $HOST:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen $HOST:$NGINX_PORT ssl http2 backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
}

# stadttor_conf HEADER_READ_TIMEOUT
stadttor_conf() {
    cat >"$WORK/stadttor.toml" <<EOF
[server]
access_log = false
max_connections_per_ip = 32768
max_connections = 32768
header_read_timeout = "$1"

[[listeners]]
name = "bench"
listen = "$HOST:0"

[[listeners.tls.certificates]]
chain = "cert.pem"
key = "file:key.pem"

[[upstreams]]
name = "backend"
addresses = ["$HOST:$BACKEND_PORT"]

[[routes]]
name = "all"
upstream = "backend"
path_prefix = "/"
EOF
}

# Starts a proxy; sets PROXY_PIDS (all processes to sum) and PROXY_PORT.
start_proxy() { # nginx|stadttor
    if [[ $1 == nginx ]]; then
        "${PRIO[@]}" taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx-proxy.conf" >"$WORK/nginx.out" 2>&1 &
        PROXY_MAIN=$!
        PIDS+=("$PROXY_MAIN")
        PROXY_PORT=$NGINX_PORT
        wait_http "https://$HOST:$PROXY_PORT/small"
        PROXY_PIDS=$(proc_tree "$PROXY_MAIN" | tr '\n' ' ')
    else
        : >"$WORK/stadttor.out"
        STADTTOR_LOG=warn "${PRIO[@]}" taskset -c 0 "$BIN" serve --config "$WORK/stadttor.toml" \
            >"$WORK/stadttor.out" 2>"$WORK/stadttor.err" &
        PROXY_MAIN=$!
        PIDS+=("$PROXY_MAIN")
        local line=""
        for _ in $(seq 100); do
            line=$(grep -m1 '^stadttor listening: bench https://' "$WORK/stadttor.out" || true)
            [[ -n "$line" ]] && break
            kill -0 "$PROXY_MAIN" || { cat "$WORK/stadttor.err" >&2; die "stadttor exited"; }
            sleep 0.1
        done
        [[ -n "$line" ]] || die "stadttor did not announce its listener"
        PROXY_PORT=${line##*:}
        wait_http "https://$HOST:$PROXY_PORT/small"
        PROXY_PIDS=$PROXY_MAIN
    fi
}

# exec: in a coproc the recorded pid is then the client itself.
# The slowloris client (SLOW_PRIO=1) runs below wrk: SCHED_RR priority 5.
client() {
    local prio=(env)
    [[ -n "${SLOW_PRIO:-}" && ${PRIO[0]} == chrt ]] && prio=(chrt -r 5)
    OPENSSL_CONF="$WORK/openssl-client.cnf" exec "${prio[@]}" taskset -c 1 python3 "$BENCH/idleconns.py" "$@"
}

# ----------------------------------------------------------- idle test ---
"${PRIO[@]}" taskset -c 1 nginx -p "$WORK" -c "$WORK/backend.conf" >"$WORK/backend.out" 2>&1 &
PIDS+=($!)
wait_http "http://$HOST:$BACKEND_PORT/small"
nginx_conf 300s
stadttor_conf 300s

ROWS="$WORK/idle.tsv"
printf 'proxy\tproto\tconns\tup\trss_before_kib\trss_after_kib\tkib_per_conn\tloadavg\n' >"$ROWS"
for proto in $PROTOS; do
    alpn=http/1.1
    [[ $proto == h2 ]] && alpn=h2
    for n in $LEVELS; do
        for proxy in $PROXIES; do
            start_proxy "$proxy"
            # One request first, as every measured connection makes one:
            # allocations made once per process are not counted per conn.
            (client --port "$PROXY_PORT" --conns 8 --proto "$alpn" --hold 0 >/dev/null)
            sleep 1
            # shellcheck disable=SC2086
            before=$(rss_of $PROXY_PIDS)
            coproc CL { client --port "$PROXY_PORT" --conns "$n" --proto "$alpn" --hold 120; }
            read -r -t 180 up_line <&"${CL[0]}" || die "client did not report"
            sleep "$SETTLE"
            # shellcheck disable=SC2086
            after=$(rss_of $PROXY_PIDS)
            up=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["up"])' "$up_line")
            kill -KILL "$CL_PID" 2>/dev/null || true
            wait "$CL_PID" 2>/dev/null || true
            per=$(python3 -c "print('%.1f' % (($after - $before) / max(1, $up)))")
            load=$(cut -d' ' -f1 /proc/loadavg)
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$proto" "$n" "$up" "$before" "$after" "$per" "$load" >>"$ROWS"
            log "$proxy $proto n=$n up=$up rss ${before} -> ${after} KiB: ${per} KiB/conn (load $load)"
            log "stopping $proxy"
            stop_pid "$PROXY_MAIN"
        done
    done
done

# ---------------------------------------------------- slow-client test ---
SLOWROWS="$WORK/slow.tsv"
printf 'round\tproxy\tslow_clients\tslow_open\trequests\tp50_ms\tp99_ms\tcpu_us\terrors\tslow_reopened\tloadavg\n' >"$SLOWROWS"
parse_wrk() {
    python3 - "$1" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def ms(v, u):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
def q(p):
    m = re.search(r"^\s*%d%%\s+([\d.]+)(us|ms|s|m)\s*$" % p, t, re.M)
    return ms(*m.groups()) if m else float("nan")
n = int(re.search(r"(\d+) requests in", t).group(1))
err = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
if m: err += sum(map(int, m.groups()))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if m: err += int(m.group(1))
print(n, q(50), q(99), err)
EOF
}
# Established connections to the proxy's port (from the proxy's side).
open_conns() { ss -Htn state established "( sport = :$1 )" | wc -l; }
wrk_() { OPENSSL_CONF="$WORK/openssl-client.cnf" "${PRIO[@]}" taskset -c 1 wrk "$@"; }
if ((SLOW > 0)); then
    nginx_conf 75s
    stadttor_conf 10s
    for round in $(seq "$SLOW_ROUNDS"); do
        order="nginx stadttor"
        ((round % 2 == 0)) && order="stadttor nginx"
        for proxy in $order; do
            start_proxy "$proxy"
            url="https://$HOST:$PROXY_PORT/small"
            for slow in 0 "$SLOW"; do
                reopened=0
                if ((slow > 0)); then
                    coproc SL { SLOW_PRIO=1 client --port "$PROXY_PORT" --conns "$slow" --mode slow \
                        --interval 2 --hold $((SLOW_SECS + 120)); }
                    PIDS+=("$SL_PID")
                    read -r -t 180 _ <&"${SL[0]}" || die "slow client did not report"
                fi
                wrk_ -t1 -c50 -d2s "$url" >/dev/null
                (sleep "$((SLOW_SECS / 2))"; echo $(($(open_conns "$PROXY_PORT") - 50)) >"$WORK/open-$slow") &
                sampler=$!
                # shellcheck disable=SC2086
                t0=$(ticks_of $PROXY_PIDS)
                wrk_ -t1 -c50 -d"${SLOW_SECS}s" --latency "$url" >"$WORK/wrk-$proxy-$slow.txt"
                # shellcheck disable=SC2086
                t1=$(ticks_of $PROXY_PIDS)
                wait "$sampler" || true
                slow_open=$(cat "$WORK/open-$slow")
                if ((slow > 0)); then
                    kill -TERM "$SL_PID" 2>/dev/null || true
                    done_line=""
                    read -r -t 30 done_line <&"${SL[0]}" || true
                    wait "$SL_PID" 2>/dev/null || true
                    reopened=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["reopened"] if sys.argv[1] else "?")' "$done_line")
                fi
                read -r n p50 p99 err <<<"$(parse_wrk "$WORK/wrk-$proxy-$slow.txt")"
                # The proxy's CPU in the measured seconds per wrk request (slow
                # clients' handshakes and bytes included).
                cpu_us=$(python3 -c "print('%.1f' % (($t1 - $t0) * 1e6 / $CLK_TCK / max(1, $n)))")
                load=$(cut -d' ' -f1 /proc/loadavg)
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$proxy" "$slow" "$slow_open" "$n" "$p50" "$p99" "$cpu_us" "$err" "$reopened" "$load" >>"$SLOWROWS"
                log "round $round $proxy slow=$slow (open $slow_open): $n requests p50=${p50}ms p99=${p99}ms cpu=${cpu_us}us/req err=$err reopened=$reopened (load $load)"
                sleep 2
            done
            stop_pid "$PROXY_MAIN"
        done
    done
fi

python3 - "$ROWS" "$SLOWROWS" <<'EOF' | tee "$RESULTS/conns-latest.md"
import csv, sys
idle = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("## Idle TLS 1.3 keep-alive connections: RSS growth per connection\n")
print("| proto | conns | nginx KiB/conn | stadttor KiB/conn | ratio | up (nginx/stadttor) | load |")
print("|---|---|---|---|---|---|---|")
keys = sorted({(r["proto"], int(r["conns"])) for r in idle})
for proto, n in keys:
    rs = {r["proxy"]: r for r in idle if r["proto"] == proto and int(r["conns"]) == n}
    ng, st = rs.get("nginx"), rs.get("stadttor")
    if not (ng and st):
        continue
    a, b = float(ng["kib_per_conn"]), float(st["kib_per_conn"])
    print("| %s | %d | %.1f | %.1f | %.2f× | %s/%s | %s |" % (proto, n, a, b, b / a if a else float("nan"),
          ng["up"], st["up"], st["loadavg"]))
slow = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
if slow:
    print("\n## Normal clients' latency (wrk -c50) with and without slow clients\n")
    print("| round | proxy | slow clients | open | req | p50 ms | p99 ms | proxy CPU µs/req | errors | slow reopened | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in slow:
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (r["round"], r["proxy"], r["slow_clients"],
              r["slow_open"], r["requests"], r["p50_ms"], r["p99_ms"], r["cpu_us"], r["errors"], r["slow_reopened"],
              r["loadavg"]))
EOF
