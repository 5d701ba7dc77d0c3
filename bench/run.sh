#!/usr/bin/env bash
# Whole-gateway benchmark: stadttor vs nginx as TLS reverse proxies in front
# of one shared nginx backend, all on 127.0.0.1. See docs/BENCHMARKS.md.
#
# Usage: bench/run.sh
# Environment:
#   BENCH_DURATION   seconds per measured run               (default 10)
#   BENCH_WARMUP     seconds of discarded warm-up per run   (default 2)
#   BENCH_RUNS       how many times the whole suite runs    (default 2)
#   BENCH_SCHED      how proxies, backend and loaders are scheduled:
#                    rr   (default) SCHED_RR priority 10 via chrt. Other
#                         jobs on the machine (compilers) then cannot delay
#                         them; the kernel's RT throttling still leaves 5 %
#                         of each second to everything else.
#                    nice nice -n -10 (CFS/EEVDF): much noisier when the
#                         machine is busy, throughput mostly measures the
#                         scheduler.
#                    none no change.
#   BENCH_TESTS      space-separated subset of: h1 h2 big hsfull hsresume
#                    bearer session  (default: all)
#   BENCH_CONNS      concurrency levels of h1 (wrk -cN) and h2 (h2load -cN
#                    -m10)                                   (default "10 64 256")
#   BENCH_SECURE_CONNS  connections of the bearer and session tests (default 64)
#   BENCH_SESSION_AUDIT the session route's audit mode: required (default:
#                    the response waits until its event is on disk) or
#                    best-effort (queued; the response does not wait)
#   BENCH_HS_PROCS   client processes for the handshake tests (default 4)
#   BENCH_PERF       set to 1 to add, after the suite, one profiled run per
#                    proxy and test (perf record, not counted in the table;
#                    reports in bench/results/perf-*.txt; for the bearer and
#                    session tests also each stage's share of stadttor's CPU,
#                    bench/results/stages-*.md)
#   BENCH_SKIP_BUILD set to 1 to use an existing release binary
#   STADTTOR_BIN     the stadttor binary to measure (default: the release build)
#   BENCH_KEEP       set to 1 to keep the scratch directory
#   CARGO_TARGET_DIR (default /work/target-bench)
#
# The secure-path tests (#14 item 2) compare a request that stadttor
# authenticates, authorizes and audits with the same request through nginx
# as a bare proxy: `bearer` (PS256 access token from the real test OP,
# `methods = ["bearer"]`, strip_prefix, audit off) and `session` (session
# cookie from a real login through the gateway, casbin policy, audit on).
# tests/testkit's `bench_identity` runs the OP and does the login.
#
# Pinning: both proxies on core 0 (taskset -c 0); the load generators and
# the backend on core 1. Every run is bounded by BENCH_DURATION. Traffic
# only ever goes to 127.0.0.1.
#
# Output: a markdown report on stdout and in bench/results/latest.md, the
# raw rows in bench/results/latest.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
RUNS=${BENCH_RUNS:-2}
SCHED=${BENCH_SCHED:-rr}
case $SCHED in
rr) PRIO=(chrt -r 10) ;;
nice) PRIO=(nice -n -10) ;;
none) PRIO=(env) ;;
*) echo "BENCH_SCHED must be rr, nice or none" >&2; exit 2 ;;
esac
TESTS=${BENCH_TESTS:-"h1 h2 big hsfull hsresume bearer session"}
CONNS=${BENCH_CONNS:-"10 64 256"}
SECURE_CONNS=${BENCH_SECURE_CONNS:-64}
SESSION_AUDIT=${BENCH_SESSION_AUDIT:-required}
HS_PROCS=${BENCH_HS_PROCS:-4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
HOST=127.0.0.1

log() { echo "[bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools ---
ensure_tools() {
    local missing=() cmd pkg
    for pair in nginx:nginx-light wrk:wrk h2load:nghttp2-client openssl:openssl \
                taskset:util-linux python3:python3 curl:curl ss:iproute2; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        apt-get update -qq
        # nginx-light is the small flavour; fall back to the full package.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                "${missing[@]/nginx-light/nginx}"
    fi
    # Debian's package may start a system nginx on :80; we never use it.
    # `http2` in `listen` needs the http_v2 module, in every Debian flavour.
    nginx -V 2>&1 | grep -q http_v2_module || die "this nginx lacks http_v2_module"
}

# ------------------------------------------------------------ processes ---
PIDS=()
WORK=""
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n "$WORK" ]] && mountpoint -q "$WORK/audit-fs" 2>/dev/null; then
        umount "$WORK/audit-fs"
    fi
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

# utime+stime in clock ticks of a process and, for nginx, its children.
CLK_TCK=$(getconf CLK_TCK)
ticks_of() {
    local total=0 pid s
    for pid in "$@"; do
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        s=${s##*) }                  # drop "pid (comm) " (comm may hold spaces)
        read -r -a f <<<"$s"         # f[0] is field 3 (state)
        total=$((total + f[11] + f[12]))   # fields 14 and 15
    done
    echo "$total"
}
# On-CPU nanoseconds of every thread of the given processes (schedstat,
# exact, unlike the tick-sampled utime+stime). A cross-check.
ns_of() {
    local total=0 pid f v
    for pid in "$@"; do
        for f in /proc/"$pid"/task/*/schedstat; do
            read -r v _ <"$f" 2>/dev/null || continue
            total=$((total + v))
        done
    done
    echo "$total"
}
# Resident memory (KiB) of the given processes, summed (nginx: master and
# worker), right after a test: the connections are still open.
rss_of() {
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

proc_tree() { # pid and its direct children (nginx master + workers)
    echo "$1"
    cat "/proc/$1/task/"*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
}

wait_http() { # url
    for _ in $(seq 100); do
        curl -sk -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.1
    done
    die "not answering: $1"
}

# ---------------------------------------------------------------- setup ---
setup_files() {
    WORK=$(mktemp -d /tmp/stadttor-bench.XXXXXX)
    chmod 755 "$WORK"
    mkdir -p "$WORK/www" "$WORK/tmp" "$RESULTS"
    # One ECDSA P-256 leaf for both proxies, issued by a throw-away CA (the
    # login of the session test verifies the gateway like a browser); the
    # key as PKCS#8 (stadttor's file: backend wants PKCS#8, nginx reads it).
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj "/CN=stadttor bench CA" -days 7 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ec.pem" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$WORK/ec.pem" -out "$WORK/key.pem"
    openssl req -new -key "$WORK/key.pem" -subj "/CN=localhost" -out "$WORK/leaf.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >"$WORK/leaf.ext"
    openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
        -CAcreateserial -days 7 -sha256 -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem" 2>/dev/null
    chmod 600 "$WORK/key.pem" "$WORK/ec.pem" "$WORK/ca.key"
    # Identity, policy and audit for the secure-path tests.
    openssl genpkey -algorithm ed25519 -outform DER -out "$WORK/audit-ed25519.key"
    openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/assertion-ec.pem" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$WORK/assertion-ec.pem" -outform DER -out "$WORK/assertion.p8"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/audit-pseudonym.key"
    chmod 600 "$WORK/audit-ed25519.key" "$WORK/assertion.p8" "$WORK/assertion-ec.pem" "$WORK/audit-pseudonym.key"
    "$BIN" keys session-key "$WORK/session.keys" >/dev/null
    # The audit log on a fresh journaled ext4 (mkfs defaults, as an
    # appliance's /var/lib), loop-mounted: this VM's root file system has no
    # journal, and after many deleted logs every new tile file is slow to
    # create there (docs/BENCHMARKS.md, "the file system was the cost").
    AUDIT_DIR="$WORK/audit"
    truncate -s 2G "$WORK/audit-fs.img"
    mkfs.ext4 -q -F "$WORK/audit-fs.img"
    mkdir -p "$WORK/audit-fs"
    if mount -o loop "$WORK/audit-fs.img" "$WORK/audit-fs" 2>/dev/null; then
        AUDIT_DIR="$WORK/audit-fs/audit"
    else
        log "WARNING: no loop mount; the audit log stays on $(df --output=fstype "$WORK" | tail -n1)"
    fi
    mkdir -p "$WORK/policy-src" "$WORK/sessions"
    cp "$ROOT/policies/default/model.conf" "$ROOT/policies/default/tests.csv" "$WORK/policy-src/"
    { cat "$ROOT/policies/default/policy.csv"
      echo "# bench: citizens read the benchmark's files"
      echo "p, *, musterstadt, /session/*, GET|HEAD, substantial, *, *, allow"
    } >"$WORK/policy-src/policy.csv"
    "$BIN" policy init --store "file:$WORK/policy" --from "$WORK/policy-src" \
        --officers bench-a,bench-b >/dev/null
    printf '%0100d' 0 | tr 0 a >"$WORK/www/small"           # 100 bytes
    head -c 1048576 /dev/urandom >"$WORK/www/1m"             # 1 MiB
    # Client-side OpenSSL config (wrk, h2load): offer P-256/P-384 only, so
    # the first key share is accepted and no HelloRetryRequest happens.
    cat >"$WORK/openssl-client.cnf" <<'EOF'
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Groups = P-256:P-384
EOF
}

write_configs() {
    cat >"$WORK/backend.conf" <<EOF
# Shared backend: plain HTTP on loopback, keep-alive, static files.
user root;
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/tmp/b-body;
    proxy_temp_path $WORK/tmp/b-proxy;
    fastcgi_temp_path $WORK/tmp/b-fcgi;
    uwsgi_temp_path $WORK/tmp/b-uwsgi;
    scgi_temp_path $WORK/tmp/b-scgi;
    default_type application/octet-stream;
    server {
        listen $HOST:$BACKEND_PORT backlog=4096;
        root $WORK/www;
    }
}
EOF
    cat >"$WORK/nginx-proxy.conf" <<EOF
# nginx as TLS reverse proxy, matched to stadttor's TLS profile.
user root;
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy-error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/tmp/p-body;
    proxy_temp_path $WORK/tmp/p-proxy;
    fastcgi_temp_path $WORK/tmp/p-fcgi;
    uwsgi_temp_path $WORK/tmp/p-uwsgi;
    scgi_temp_path $WORK/tmp/p-scgi;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384;
    # TLS 1.3 suites as stadttor: AES-GCM only, AES-256 first.
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
        # nginx 1.22 has no "http2 on;" (1.25.1+): the listen flag is the same.
        listen $HOST:$NGINX_PORT ssl http2 backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        # The secure-path tests' prefixes, stripped as stadttor does; nginx
        # checks nothing (the bare proxy the issue compares against).
        location /bearer/ {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /session/ {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Stream like stadttor does; never spool bodies to disk.
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    cat >"$WORK/stadttor.toml" <<EOF
# stadttor for the benchmark: one listener, no access log; the anonymous
# route all bare-proxy tests use, and the two secure-path routes.
[server]
access_log = false
max_connections_per_ip = 16384
max_connections = 16384

[[listeners]]
name = "bench"
listen = "$HOST:$STADTTOR_PORT"

[[listeners.tls.certificates]]
chain = "cert.pem"
key = "file:key.pem"

[[upstreams]]
name = "backend"
addresses = ["$HOST:$BACKEND_PORT"]

[audit]
dir = "$AUDIT_DIR"
origin = "bench/run"
key = "file:audit-ed25519.key"
pseudonym_key_file = "audit-pseudonym.key"

[policies]
store = "file:policy"

[identity]
session_key_file = "session.keys"
store = "file:sessions"
assertion_key = "file:assertion.p8"

EOF
    # The provider table comes from bench_identity (the OP's issuer).
    cat "$WORK/provider.toml" >>"$WORK/stadttor.toml"
    cat >>"$WORK/stadttor.toml" <<EOF

[[routes]]
name = "bearer"
upstream = "backend"
path_prefix = "/bearer/"
strip_prefix = true
audit = "off"
[routes.auth]
methods = ["bearer"]
providers = ["op"]
bearer_audience = "https://api.bench.example"
api = true
[routes.authz]
off = true

[[routes]]
name = "session"
upstream = "backend"
path_prefix = "/session/"
strip_prefix = true
audit = "$SESSION_AUDIT"
[routes.auth]
methods = ["session"]
providers = ["op"]
min_level = "substantial"
[routes.authz]
domain = "musterstadt"

[[routes]]
name = "all"
upstream = "backend"
path_prefix = "/"
audit = "off"
EOF
}

# The test OP and the login (tests/testkit src/bin/bench_identity.rs).
start_identity() {
    local tool="$CARGO_TARGET_DIR/release/bench_identity"
    "${PRIO[@]}" taskset -c 1 "$tool" --dir "$WORK" --gateway-port "$STADTTOR_PORT" \
        --ca "$WORK/ca.pem" >"$WORK/identity.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 300); do
        [[ -s "$WORK/provider.toml" ]] && return
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/identity.out" >&2; die "bench_identity exited"; }
        sleep 0.1
    done
    die "bench_identity wrote no provider.toml"
}

wait_login() {
    for _ in $(seq 300); do
        [[ -s "$WORK/cookie.txt" ]] && { COOKIE=$(cat "$WORK/cookie.txt"); BEARER=$(cat "$WORK/bearer.txt"); return; }
        sleep 0.1
    done
    cat "$WORK/identity.out" >&2
    die "the benchmark login did not complete"
}

start_backend() {
    "${PRIO[@]}" taskset -c 1 nginx -p "$WORK" -c "$WORK/backend.conf" \
        >"$WORK/backend.out" 2>&1 &
    PIDS+=($!)
    wait_http "http://$HOST:$BACKEND_PORT/small"
}

start_nginx_proxy() {
    "${PRIO[@]}" taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx-proxy.conf" \
        >"$WORK/nginx-proxy.out" 2>&1 &
    NGINX_PID=$!
    PIDS+=($NGINX_PID)
    wait_http "https://$HOST:$NGINX_PORT/small"
}

start_stadttor() {
    STADTTOR_LOG=warn "${PRIO[@]}" taskset -c 0 "$BIN" serve --config "$WORK/stadttor.toml" \
        >"$WORK/stadttor.out" 2>"$WORK/stadttor.err" &
    STADTTOR_PID=$!
    PIDS+=($STADTTOR_PID)
    local line=""
    for _ in $(seq 100); do
        line=$(grep -m1 '^stadttor listening: bench https://' "$WORK/stadttor.out" 2>/dev/null || true)
        [[ -n "$line" ]] && break
        kill -0 "$STADTTOR_PID" 2>/dev/null || { cat "$WORK/stadttor.err" >&2; die "stadttor exited"; }
        sleep 0.1
    done
    [[ -n "$line" ]] || die "stadttor did not announce its listener"
    wait_http "https://$HOST:$STADTTOR_PORT/small"
}

# ---------------------------------------------------------------- tests ---
# The credential of a secure-path test. The session cookie is bound to the
# host it was issued for, so these tests send `Host: localhost`.
secure_header() { # test
    if [[ $1 == session ]]; then echo "Cookie: $COOKIE"; else echo "Authorization: $BEARER"; fi
}

# wrk counts a 3xx as success; a secure-path test that measured login
# redirects instead of served requests would be worthless. So the request
# must be answered 200 with the backend's 100 bytes, before and after.
check_secure() { # test port
    local got
    got=$(curl -sk -o /dev/null -w '%{http_code} %{size_download}' -H "$(secure_header "$1")" \
        -H "Host: localhost" "https://$HOST:$2/$1/small")
    [[ $got == "200 100" ]] || die "$1 on :$2 answered '$got' instead of '200 100'"
}

# Each test prints: requests p50_ms p99_ms errors note   (on one line)
loader() { OPENSSL_CONF="$WORK/openssl-client.cnf" "${PRIO[@]}" taskset -c 1 "$@"; }

parse_wrk() { # file
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
print(n, q(50), q(99), err, "-")
EOF
}

parse_h2load() { # stdout file, log file
    python3 - "$1" "$2" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
lat = []
bad = 0
for line in open(sys.argv[2]):
    p = line.split("\t")
    if len(p) < 3: continue
    if p[1] != "200": bad += 1
    lat.append(int(p[2]))          # microseconds
lat.sort()
def q(pc):
    if not lat: return float("nan")
    return lat[min(len(lat) - 1, int(len(lat) * pc / 100))] / 1000.0
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", t)
done, failed, errored = int(m.group(3)), int(m.group(5)), int(m.group(6))
proto = re.search(r"Application protocol: (\S+)", t)
print(done, q(50), q(99), failed + errored + bad, proto.group(1) if proto else "?")
EOF
}

run_tool() { # test port outfile  -> prints "requests p50 p99 errors note"
    local test=$1 port=$2 out=$3 url="https://$HOST:$2" c=${1##*-c}
    case $test in
    h1-c*)
        loader wrk -t1 -c"$c" -d"${WARM}s" "$url/small" >/dev/null
        echo "@@measure" >"$out.mark"
        loader wrk -t1 -c"$c" -d"${DUR}s" --latency "$url/small" >"$out"
        ;;
    h2-c*)
        loader h2load -t1 -c"$c" -m10 -D "$WARM" "$url/small" >/dev/null
        echo "@@measure" >"$out.mark"
        loader h2load -t1 -c"$c" -m10 -D "$DUR" --log-file="$out.log" "$url/small" >"$out"
        ;;
    big)
        loader wrk -t1 -c10 -d"${WARM}s" "$url/1m" >/dev/null
        echo "@@measure" >"$out.mark"
        loader wrk -t1 -c10 -d"${DUR}s" --latency "$url/1m" >"$out"
        ;;
    bearer | session)
        local hdr
        hdr=$(secure_header "$test")
        check_secure "$test" "$port"
        loader wrk -t1 -c"$SECURE_CONNS" -d"${WARM}s" -H "$hdr" -H "Host: localhost" \
            "$url/$test/small" >/dev/null
        echo "@@measure" >"$out.mark"
        loader wrk -t1 -c"$SECURE_CONNS" -d"${DUR}s" --latency -H "$hdr" -H "Host: localhost" \
            "$url/$test/small" >"$out"
        check_secure "$test" "$port"
        ;;
    hsfull | hsresume)
        local mode=full
        [[ $test == hsresume ]] && mode=resume
        loader python3 "$BENCH/hsload.py" --port "$port" --mode $mode --procs "$HS_PROCS" \
            --duration "$WARM" --warmup 0 >/dev/null
        echo "@@measure" >"$out.mark"
        loader python3 "$BENCH/hsload.py" --port "$port" --mode $mode --procs "$HS_PROCS" \
            --duration "$DUR" --warmup 0 >"$out"
        ;;
    esac
}

measure() { # run proxy test port pids...
    local run=$1 proxy=$2 test=$3 port=$4; shift 4
    local out="$WORK/r$run-$proxy-$test.txt" load
    # CPU is sampled around the measured run only: run_tool does its own
    # warm-up first, so sample from a background watcher on the mark file.
    rm -f "$out.mark"
    (
        while [[ ! -e "$out.mark" ]]; do sleep 0.01; done
        echo "$(ticks_of "$@") $(ns_of "$@")" >"$out.t0"
    ) &
    local watcher=$!
    load=$(cut -d' ' -f1 /proc/loadavg)
    run_tool "$test" "$port" "$out"
    local t1 s1 t0 s0
    t1=$(ticks_of "$@"); s1=$(ns_of "$@")
    wait "$watcher"
    read -r t0 s0 <"$out.t0"
    local parsed
    case $test in
    h1-c* | big | bearer | session) parsed=$(parse_wrk "$out") ;;
    h2-c*) parsed=$(parse_h2load "$out" "$out.log"); rm -f "$out.log" ;;
    hs*)
        parsed=$(python3 - "$out" "$test" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
want_reused = sys.argv[2] == "hsresume"
bad = r["reused"] if not want_reused else r["full"]
# A handful of full handshakes in resume mode is expected: the first
# connection of each client process has no session yet.
ok = (bad == 0) if not want_reused else (bad <= 16)
note = "%s/%s full=%d reused=%d%s" % (r["proto"], r["cipher"], r["full"], r["reused"],
                                      "" if ok else " MISLABELED")
print(r["connections"], r["p50_ms"], r["p99_ms"], r["errors"], note.replace(" ", "_"))
EOF
        ) ;;
    esac
    read -r n p50 p99 err note <<<"$parsed"
    local cpu_us sched_us
    cpu_us=$(python3 -c "d=($t1-$t0)*1e6/$CLK_TCK; n=$n; print('%.1f' % (d/n if n else float('nan')))")
    sched_us=$(python3 -c "d=($s1-$s0)/1e3; n=$n; print('%.1f' % (d/n if n else float('nan')))")
    local rps rss
    rps=$(python3 -c "print('%.1f' % ($n/$DUR))")
    rss=$(rss_of "$@")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$run" "$test" "$proxy" "$n" "$rps" "$p50" "$p99" "$cpu_us" "$sched_us" "$err" "$load" "$rss" "$note" >>"$RAW"
    log "run $run $test $proxy: ${rps} req/s p50=${p50}ms p99=${p99}ms cpu=${cpu_us}us/req (schedstat ${sched_us}) err=$err load=$load rss=${rss}KiB $note"
}

# ----------------------------------------------------------------- main ---
ensure_tools
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building stadttor (release) into $CARGO_TARGET_DIR"
    # With the OP driver of the secure-path tests (one build: the same
    # feature set as stadttor, so nothing is built twice).
    (cd "$ROOT" && cargo build --release -p stadttor-gateway --bin stadttor \
        -p testkit --bin bench_identity >&2)
fi
[[ -x "$CARGO_TARGET_DIR/release/bench_identity" ]] ||
    die "no $CARGO_TARGET_DIR/release/bench_identity: run once without BENCH_SKIP_BUILD"
BIN="${STADTTOR_BIN:-$CARGO_TARGET_DIR/release/stadttor}"
[[ -x "$BIN" ]] || die "no binary at $BIN"

setup_files
BACKEND_PORT=$(free_port)
NGINX_PORT=$(free_port)
STADTTOR_PORT=$(free_port)
[[ "$BACKEND_PORT $NGINX_PORT" != *"$STADTTOR_PORT"* && "$BACKEND_PORT" != "$NGINX_PORT" ]] ||
    die "free_port returned one port twice; run again"
start_identity
write_configs
start_backend
start_nginx_proxy
start_stadttor
wait_login
# h1 and h2 run at every concurrency level.
EXPANDED=""
for t in $TESTS; do
    case $t in
    h1 | h2) for c in $CONNS; do EXPANDED+=" $t-c$c"; done ;;
    *) EXPANDED+=" $t" ;;
    esac
done
TESTS=$EXPANDED
NGINX_PIDS=$(proc_tree "$NGINX_PID" | tr '\n' ' ')
log "backend :$BACKEND_PORT (core 1), nginx :$NGINX_PORT pids [$NGINX_PIDS] (core 0), stadttor :$STADTTOR_PORT pid $STADTTOR_PID (core 0)"

# Check the negotiated TLS parameters are the same on both.
for p in "$NGINX_PORT" "$STADTTOR_PORT"; do
    echo | OPENSSL_CONF="$WORK/openssl-client.cnf" timeout 5 openssl s_client \
        -connect "$HOST:$p" -servername localhost 2>/dev/null |
        grep -E '^(New|Server Temp Key|Peer signature type)' | tr '\n' ' ' >&2 || true
    echo >&2
done

RAW="$WORK/raw.tsv"
printf 'run\ttest\tproxy\trequests\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tsched_us_per_req\terrors\tloadavg\trss_kib\tnote\n' >"$RAW"
for run in $(seq "$RUNS"); do
    for test in $TESTS; do
        # Alternate which proxy goes first, so slow drift in the machine's
        # load does not always favour the same one.
        if (( (run % 2) == 1 )); then order="nginx stadttor"; else order="stadttor nginx"; fi
        for proxy in $order; do
            if [[ $proxy == nginx ]]; then
                # shellcheck disable=SC2086
                measure "$run" nginx "$test" "$NGINX_PORT" $NGINX_PIDS
            else
                measure "$run" stadttor "$test" "$STADTTOR_PORT" "$STADTTOR_PID"
            fi
        done
    done
done

# Versions for the report.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); cores: $(nproc)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "openssl: $(openssl version)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "h2load: $(h2load --version 2>&1 | head -1 | awk '{print $2}')"
    echo "python: $(python3 -c 'import ssl,sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')"
    echo "stadttor: $("$BIN" --version) ($(rustc --version))"
    for p in "$NGINX_PORT" "$STADTTOR_PORT"; do
        echo "response head bytes on :$p (GET /small, HTTP/1.1): $(curl -sk -D - -o /dev/null "https://$HOST:$p/small" | wc -c)"
    done
    echo "duration: ${DUR}s measured after ${WARM}s warm-up; runs: $RUNS; scheduling: $SCHED (${PRIO[*]}); handshake client processes: $HS_PROCS; secure-path connections: $SECURE_CONNS"
} >"$WORK/versions.txt"

# Optional profile: perf samples the proxy during one extra run per test.
if [[ "${BENCH_PERF:-0}" == 1 ]] && command -v perf >/dev/null; then
    for test in $TESTS; do
        for proxy in nginx stadttor; do
            if [[ $proxy == nginx ]]; then port=$NGINX_PORT; pids=$(echo $NGINX_PIDS | tr ' ' ','); else port=$STADTTOR_PORT; pids=$STADTTOR_PID; fi
            # stadttor's secure-path tests also get call graphs (DWARF), for
            # the share of each stage of the request path (perf_stages.py).
            perf_opts=()
            if [[ $proxy == stadttor && ( $test == bearer || $test == session ) ]]; then
                perf_opts=(-F 499 --call-graph dwarf,16384)
            else
                perf_opts=(-F 1999)
            fi
            perf record "${perf_opts[@]}" -p "$pids" -o "$WORK/perf-$proxy-$test.data" -- sleep $((WARM + DUR)) 2>/dev/null &
            perfpid=$!
            run_tool "$test" "$port" "$WORK/perf-run-$proxy-$test.txt" >/dev/null
            wait "$perfpid" || true
            perf report -i "$WORK/perf-$proxy-$test.data" --no-children --sort dso,sym --percent-limit 0.5 \
                --stdio 2>/dev/null | grep -v '^$' | grep -v '^# \.\.' | sed 's/ *$//' | head -80 \
                >"$RESULTS/perf-$proxy-$test.txt" || true # head closes the pipe early
            # Grouped: kernel, libraries, and Rust code by crate.
            perf report -i "$WORK/perf-$proxy-$test.data" --no-children --sort dso,sym --stdio \
                --percent-limit 0 2>/dev/null | python3 "$BENCH/perf_group.py" \
                >"$RESULTS/perf-$proxy-$test-grouped.txt"
            if [[ ${#perf_opts[@]} -gt 2 ]]; then
                cpu=$(awk -F'\t' -v t="$test" '$2 == t && $3 == "stadttor" { s += $8; n++ } END { if (n) printf "%.1f", s / n; else print "nan" }' "$RAW")
                perf report -i "$WORK/perf-$proxy-$test.data" --children --sort sym -g none --stdio \
                    2>/dev/null | python3 "$BENCH/perf_stages.py" "$cpu" >"$RESULTS/stages-$test.md"
                log "stages: bench/results/stages-$test.md"
            fi
            log "profile: bench/results/perf-$proxy-$test.txt"
        done
    done
fi

cp "$RAW" "$RESULTS/latest.tsv"
python3 "$BENCH/report.py" "$RAW" "$WORK/versions.txt" | tee "$RESULTS/latest.md"
