#!/usr/bin/env bash
# Key-backend benchmark: file, SoftHSM2 (PKCS#11) and swtpm (TPM 2.0) keys,
# direct and short-lived-leaf mode, measured side by side in one run. See
# docs/BENCHMARKS.md, section "Key backends".
#
# Per run (KEYS_RUNS times):
#   1. signatures/s per backend: bench/keybench (its own cargo project) signs
#      through stadttor_hsm::KeyStore for KEYS_SIGN_SECONDS per backend.
#   2. one gateway with six listeners, one per key set-up:
#        file-direct  p11-direct  tpm-direct  tpm-leaf  file-leaf  file-chain2
#      (file-chain2: the file key with a [leaf, CA] chain, as long as the
#      [leaf, issuing] chain the leaf modes serve)
#      full and resumed handshakes/s with bench/hsload.py (every handshake
#      verified as full or resumed), gateway CPU per handshake, swtpm CPU
#      per handshake, and the per-key signature counters from /metrics
#      before and after each measurement.
#   3. slow TPM: a second gateway whose TPM TCTI goes through
#      bench/tpmrelay.py, which delays every TPM command by KEYS_SLOW_MS.
#      bench/keyprobe.py times requests on established keep-alive
#      connections and resumed handshakes, (a) idle, (b) during a stream of
#      full handshakes with the relay passing commands at once, (c) the
#      same stream with every TPM command delayed.
#
# Usage: bench/keys.sh
# Environment:
#   KEYS_RUNS          how many times the whole suite runs        (default 2)
#   KEYS_DURATION      seconds per measured handshake/probe run   (default 10)
#   KEYS_WARMUP        seconds of discarded warm-up per run       (default 2)
#   KEYS_SIGN_SECONDS  seconds per backend in keybench            (default 5)
#   KEYS_SLOW_MS       simulated TPM latency per command          (default 200)
#   KEYS_HS_PROCS      hsload.py client processes                 (default 4)
#   KEYS_CONFIGS       subset of: file-direct p11-direct tpm-direct tpm-leaf file-leaf
#                      file-chain2 (default: all six)
#   KEYS_PARTS         subset of: sign handshakes slow (default: all three)
#   BENCH_SCHED        rr (default: SCHED_RR 10 via chrt; swtpm and the relay
#                      at 15, the latency probe at 20), nice or none
#   KEYS_LOADER        native (bench/hsload, Rust + rustls; default) or
#                      python (bench/hsload.py, the first runs' client)
#   BENCH_SKIP_BUILD   set to 1 to use existing release binaries
#   BENCH_KEEP         set to 1 to keep the scratch directory
#   CARGO_TARGET_DIR   (default /work/target-bench)
#
# Pinning: the gateway and keybench on core 0; load generators, the nginx
# backend, swtpm and the relay on core 1 (swtpm plays a separate chip).
# With BENCH_SCHED=rr: gateway, keybench and hsload.py at SCHED_RR 10;
# swtpm, the relay and the backend at 15 (they must answer promptly, not
# wait out the clients' 100 ms RR slices); keyprobe.py at 20.
# Loopback only; every step is bounded in time; every process started here
# is stopped by the EXIT trap. Idempotent: each invocation makes a fresh
# scratch directory, TPM state and token.
#
# Output: a markdown report on stdout and in bench/results/keys-latest.md,
# raw rows in bench/results/keys-latest.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"
RUNS=${KEYS_RUNS:-2}
DUR=${KEYS_DURATION:-10}
WARM=${KEYS_WARMUP:-2}
SIGN_SECS=${KEYS_SIGN_SECONDS:-5}
SLOW_MS=${KEYS_SLOW_MS:-200}
HS_PROCS=${KEYS_HS_PROCS:-4}
CONFIGS=${KEYS_CONFIGS:-"file-direct p11-direct tpm-direct tpm-leaf file-leaf file-chain2"}
PARTS=" ${KEYS_PARTS:-sign handshakes slow} "
LOADER=${KEYS_LOADER:-native}
[[ $LOADER == native || $LOADER == python ]] || { echo "KEYS_LOADER must be native or python" >&2; exit 2; }
SCHED=${BENCH_SCHED:-rr}
case $SCHED in
rr) PRIO=(chrt -r 10); PRIO_DEV=(chrt -r 15); PRIO_PROBE=(chrt -r 20) ;;
nice) PRIO=(nice -n -10); PRIO_DEV=(nice -n -10); PRIO_PROBE=(nice -n -15) ;;
none) PRIO=(env); PRIO_DEV=(env); PRIO_PROBE=(env) ;;
*) echo "BENCH_SCHED must be rr, nice or none" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
HOST=127.0.0.1
P11_MODULE=/usr/lib/softhsm/libsofthsm2.so
export TSS2_LOG=all+none

log() { echo "[keys] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools ---
ensure_tools() {
    local missing=() pair cmd pkg
    for pair in swtpm:swtpm swtpm_setup:swtpm-tools tpm2_startup:tpm2-tools \
                softhsm2-util:softhsm2 pkcs11-tool:opensc openssl:openssl python3:python3 \
                nginx:nginx-light curl:curl taskset:util-linux chrt:util-linux \
                pkg-config:pkg-config; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # tss-esapi links libtss2 at build time.
    pkg-config --exists tss2-esys 2>/dev/null || missing+=(libtss2-dev)
    [[ -e $P11_MODULE ]] || missing+=(softhsm2)
    if ((${#missing[@]})); then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        log "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                "${missing[@]/nginx-light/nginx}"
    fi
    [[ -e $P11_MODULE ]] || die "$P11_MODULE missing after installing softhsm2"
}

# ------------------------------------------------------------ processes ---
PIDS=()
WORK=""
stop_pid() { # pid: TERM, wait up to 5 s, then KILL
    local pid=$1
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
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
drop_pid() { # pid: no longer ours to stop (it has been waited for)
    local pid=$1 keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
forget_pid() { # pid: stop it and drop it from PIDS
    stop_pid "$1"
    drop_pid "$1"
}

free_port_pair() { # prints P such that P and P+1 were free
    python3 - <<'EOF'
import socket
for _ in range(50):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
EOF
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $HOST:$1"
}

CLK_TCK=$(getconf CLK_TCK)
# CPU time (utime+stime, ns) of whole processes. /proc/PID/stat counts
# threads that have exited too, which matters here: tokio's block_in_place
# starts threads that end after 10 s idle (per-thread schedstat would lose
# their time).
ns_of() {
    local total=0 pid s
    for pid in "$@"; do
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo $((total * 1000000000 / CLK_TCK))
}

# ---------------------------------------------------------------- setup ---
setup_dir() {
    WORK=$(mktemp -d /tmp/stadttor-keys.XXXXXX)
    chmod 755 "$WORK"
    mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/tpm" "$WORK/softhsm/tokens" "$RESULTS"
    printf '%0100d' 0 | tr 0 a >"$WORK/www/small"
}

start_backend() {
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
    default_type application/octet-stream;
    server { listen $HOST:$BACKEND_PORT backlog=4096; root $WORK/www; }
}
EOF
    # Above the load generators (same level as swtpm): otherwise SCHED_RR's
    # 100 ms time slices among the CPU-bound clients on core 1 show up as
    # upstream latency in the slow-TPM probe.
    "${PRIO_DEV[@]}" taskset -c 1 nginx -p "$WORK" -c "$WORK/backend.conf" >"$WORK/backend.out" 2>&1 &
    PIDS+=($!)
    wait_port "$BACKEND_PORT"
}

start_swtpm() {
    TPM_PORT=$(free_port_pair)
    "${PRIO_DEV[@]}" taskset -c 1 swtpm socket --tpm2 \
        --server "type=tcp,port=$TPM_PORT,bindaddr=$HOST" \
        --ctrl "type=tcp,port=$((TPM_PORT + 1)),bindaddr=$HOST" \
        --tpmstate "dir=$WORK/tpm" --flags not-need-init,startup-clear \
        </dev/null >"$WORK/swtpm.out" 2>&1 &
    SWTPM_PID=$!
    PIDS+=($SWTPM_PID)
    wait_port "$TPM_PORT"
    TCTI="swtpm:host=$HOST,port=$TPM_PORT"
}

setup_softhsm() {
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$WORK/softhsm/tokens" >"$WORK/softhsm/softhsm2.conf"
    export SOFTHSM2_CONF="$WORK/softhsm/softhsm2.conf"
    softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
    (umask 077; printf '1234\n' >"$WORK/pin")
    chmod 600 "$WORK/pin"
}

keys_cmd() { timeout 120 "$BIN" keys --tcti "$TCTI" --pkcs11-module "$P11_MODULE" --pin-file "$WORK/pin" "$@"; }

# A test CA (openssl), and for every key a CSR signed by the key itself
# (`stadttor keys csr`), turned into a leaf or an issuing certificate.
setup_pki() {
    cd "$WORK"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 7 -subj "/CN=stadttor bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out ca.pem 2>/dev/null
    cat >ext.cnf <<'EOF'
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[issuing]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
nameConstraints = critical,permitted;DNS:localhost,permitted;IP:127.0.0.1/255.255.255.255
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    K_FILE="file:$WORK/file-direct.p8"
    K_FILE_ISS="file:$WORK/file-issuing.p8"
    K_P11="pkcs11:token=bench;object=tls"
    K_TPM="tpm:handle=0x81010001"
    K_TPM_ISS="tpm:handle=0x81010002"
    local k name kind
    for spec in "$K_FILE|file-direct|leaf" "$K_FILE_ISS|file-issuing|issuing" \
                "$K_P11|p11-direct|leaf" "$K_TPM|tpm-direct|leaf" "$K_TPM_ISS|tpm-issuing|issuing"; do
        IFS='|' read -r k name kind <<<"$spec"
        keys_cmd generate "$k" >"$name.show" 2>"$name.err" || { cat "$name.err" >&2; die "generate $k"; }
        keys_cmd csr "$k" --cn "$name" --san localhost --san 127.0.0.1 -o "$name.csr" 2>>"$name.err" ||
            { cat "$name.err" >&2; die "csr $k"; }
        openssl req -verify -noout -in "$name.csr" 2>/dev/null || die "CSR of $k does not verify"
        openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 -sha256 \
            -extfile ext.cnf -extensions "$kind" -out "$name.pem" 2>/dev/null
        log "$k: $(grep -m1 -i 'protection\|backend' "$name.show" | tr -s ' ')"
    done
    # The file key again, served with a two-certificate chain (leaf + CA)
    # like short-lived-leaf mode serves [leaf, issuing]: separates the cost
    # of the longer chain from the cost of the mode.
    cat file-direct.pem ca.pem >file-chain2.pem
    cd - >/dev/null
}

# ----------------------------------------------------------- gateway(s) ---
cert_block() { # chain key mode
    printf '[[listeners.tls.certificates]]\nchain = "%s"\nkey = "%s"\nserver_names = ["localhost"]\n' "$1" "$2"
    [[ $3 == leaf ]] && printf 'mode = "short-lived-leaf"\nleaf_lifetime = "2h"\n'
    echo
}
write_gateway_config() { # file tcti listeners...   (listener = name)
    local file=$1 tcti=$2; shift 2
    {
        cat <<EOF
[server]
access_log = false
max_connections_per_ip = 16384
max_connections = 16384

[keys]
tpm_tcti = "$tcti"
pkcs11_module = "$P11_MODULE"
pkcs11_pin_file = "$WORK/pin"

[admin]
listen = "$HOST:0"

EOF
        local l
        for l in "$@"; do
            printf '[[listeners]]\nname = "%s"\nlisten = "%s:0"\n\n' "$l" "$HOST"
            case $l in
            file-direct) cert_block "$WORK/file-direct.pem" "$K_FILE" direct ;;
            file-chain2) cert_block "$WORK/file-chain2.pem" "$K_FILE" direct ;;
            p11-direct) cert_block "$WORK/p11-direct.pem" "$K_P11" direct ;;
            tpm-direct) cert_block "$WORK/tpm-direct.pem" "$K_TPM" direct ;;
            tpm-leaf) cert_block "$WORK/tpm-issuing.pem" "$K_TPM_ISS" leaf ;;
            file-leaf) cert_block "$WORK/file-issuing.pem" "$K_FILE_ISS" leaf ;;
            esac
        done
        cat <<EOF
[[upstreams]]
name = "backend"
addresses = ["$HOST:$BACKEND_PORT"]

[[routes]]
name = "all"
upstream = "backend"
path_prefix = "/"
EOF
    } >"$file"
}

declare -A LPORT
start_gateway() { # tag config -> GW_PID, ADMIN, LPORT[name]
    local tag=$1 cfg=$2
    timeout 120 "$BIN" config check "$cfg" >"$WORK/$tag.check" 2>&1 ||
        { cat "$WORK/$tag.check" >&2; die "config check failed for $tag"; }
    STADTTOR_LOG=warn "${PRIO[@]}" taskset -c 0 "$BIN" serve --config "$cfg" \
        >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
    GW_PID=$!
    PIDS+=($GW_PID)
    for _ in $(seq 600); do
        grep -q '^stadttor admin: ' "$WORK/$tag.out" 2>/dev/null && break
        kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/$tag.err" >&2; die "gateway $tag exited"; }
        sleep 0.1
    done
    ADMIN=$(grep -m1 '^stadttor admin: ' "$WORK/$tag.out" | sed 's/.*http:\/\///') ||
        die "gateway $tag did not announce its admin listener"
    local line name addr
    while read -r line; do
        name=$(awk '{print $3}' <<<"$line"); addr=${line##*https://}
        LPORT[$name]=${addr##*:}
    done < <(grep '^stadttor listening: ' "$WORK/$tag.out")
    log "gateway $tag pid $GW_PID admin $ADMIN listeners: $(for k in "${!LPORT[@]}"; do printf '%s=:%s ' "$k" "${LPORT[$k]}"; done)"
}

metrics() { # -> "key=value" per signature counter, one per line
    curl -s --max-time 5 "http://$ADMIN/metrics" |
        sed -n 's/^stadttor_key_signatures_total{\(.*\)} \([0-9.e+]*\)$/\1 \2/p' |
        sed 's/.*key="\([^"]*\)".* \(.*\)$/\1=\2/'
}
metric_delta() { # before-file after-file -> "key:+N,..." for changed keys and flat hardware keys
    python3 - "$1" "$2" <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        k, _, v = line.strip().rpartition("=")
        # Several short-lived leaves share the label memory:short-lived-leaf:
        # sum them.
        if k: d[k] = d.get(k, 0) + int(float(v))
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
out = []
for k in sorted(set(a) | set(b)):
    short = k.replace("file:/", "file:").split("/")[-1] if k.startswith("file:") else k
    out.append("%s:+%d" % (short.replace(" ", ""), a.get(k, 0) - b.get(k, 0)))
print(",".join(out) or "-")
EOF
}

loader() { "${PRIO[@]}" taskset -c 1 "$@"; }

# ---------------------------------------------------------------- tests ---
run_keybench() { # run
    local run=$1 k name out
    for spec in "$K_FILE|file" "$K_P11|pkcs11" "$K_TPM|tpm"; do
        IFS='|' read -r k name <<<"$spec"
        out=$("${PRIO[@]}" taskset -c 0 timeout $((SIGN_SECS + 60)) "$KEYBENCH" --key "$k" \
            --seconds "$SIGN_SECS" --warmup 0.5 --tcti "$TCTI" \
            --pkcs11-module "$P11_MODULE" --pin-file "$WORK/pin") || die "keybench $k"
        python3 - "$run" "$name" "$out" >>"$SIGRAW" <<'EOF'
import json, sys
r = json.loads(sys.argv[3])
print("\t".join(map(str, [sys.argv[1], sys.argv[2], r["signatures"], r["per_second"],
                          r["p50_us"], r["p99_us"], r["max_us"], r["key_stats_signatures"],
                          open("/proc/loadavg").read().split()[0]])))
EOF
        log "run $run keybench $name: $(tail -1 "$SIGRAW" | cut -f3-)"
    done
}

measure_hs() { # run config mode
    local run=$1 cfg=$2 mode=$3 port=${LPORT[$2]} out="$WORK/r$1-$2-$3.json"
    # Warm-up (discarded), then the measured run with counters around it.
    loader "${HSLOAD[@]}" --port "$port" --mode "$mode" --procs "$HS_PROCS" \
        --duration "$WARM" --warmup 0 >/dev/null
    metrics >"$out.m0"
    local g0 t0 load
    g0=$(ns_of "$GW_PID"); t0=$(ns_of "$SWTPM_PID")
    load=$(cut -d' ' -f1 /proc/loadavg)
    loader "${HSLOAD[@]}" --port "$port" --mode "$mode" --procs "$HS_PROCS" \
        --duration "$DUR" --warmup 0 >"$out"
    local g1 t1
    g1=$(ns_of "$GW_PID"); t1=$(ns_of "$SWTPM_PID")
    metrics >"$out.m1"
    local sig
    sig=$(metric_delta "$out.m0" "$out.m1")
    python3 - "$out" "$run" "$cfg" "$mode" "$g0" "$g1" "$t0" "$t1" "$load" "$sig" "$DUR" >>"$HSRAW" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
run, cfg, mode = sys.argv[2:5]
g0, g1, t0, t1 = map(int, sys.argv[5:9])
load, sig, dur = sys.argv[9], sys.argv[10], float(sys.argv[11])
n = r["connections"]
if mode == "full":
    ok = r["reused"] == 0
else:
    ok = r["full"] <= 16     # first connection of each client process
verdict = "ok" if ok else "MISLABELED"
print("\t".join(map(str, [run, cfg, mode, n, round(n / dur, 1), r["p50_ms"], r["p99_ms"],
    r["full"], r["reused"], r["errors"],
    round((g1 - g0) / 1e3 / n, 1) if n else "nan", round((t1 - t0) / 1e3 / n, 1) if n else "nan",
    load, verdict, sig])))
EOF
    log "run $run $cfg $mode: $(tail -1 "$HSRAW" | cut -f4-)"
}

run_handshakes() { # run
    local run=$1 order cfg
    write_gateway_config "$WORK/gw-a.toml" "$TCTI" $CONFIGS
    LPORT=()
    start_gateway "gw-a-r$run" "$WORK/gw-a.toml"
    local m0="$WORK/r$run-start.m"
    metrics >"$m0"
    log "run $run signature counters after start: $(tr '\n' ' ' <"$m0")"
    # Alternate the order between runs against drift in the machine's load.
    order=$CONFIGS
    (( run % 2 == 0 )) && order=$(tr ' ' '\n' <<<"$CONFIGS" | tac | tr '\n' ' ')
    for cfg in $order; do
        for mode in full resume; do
            measure_hs "$run" "$cfg" "$mode"
        done
    done
    forget_pid "$GW_PID"
}

probe() { # run condition
    # idle: no other load; stream-*-tpm: full handshakes on the TPM key;
    # stream-file-key: the same stream on a file key of the same gateway.
    local run=$1 cond=$2 port=${LPORT[tpm-direct]} out="$WORK/slow-r$1-$2"
    local hs_port=$port
    [[ $cond == stream-file-key ]] && hs_port=${LPORT[file-direct]}
    rm -f "$out.ready"
    "${PRIO_PROBE[@]}" taskset -c 1 timeout $((DUR + 120)) python3 "$BENCH/keyprobe.py" \
        --port "$port" --duration "$DUR" --warmup 1 --conns 4 --interval-ms 20 \
        --resume-interval-ms 20 --ready-file "$out.ready" >"$out.probe" &
    local probe_pid=$!
    PIDS+=($probe_pid)
    for _ in $(seq 1200); do [[ -e "$out.ready" ]] && break; sleep 0.05; done
    [[ -e "$out.ready" ]] || die "keyprobe did not set up its connections"
    metrics >"$out.m0"
    local c0 c1 w0 w1
    c0=$(ns_of "$GW_PID"); w0=$(date +%s%N)
    local hs_pid=""
    if [[ $cond != idle ]]; then
        loader "${HSLOAD[@]}" --port "$hs_port" --mode full --procs "$HS_PROCS" \
            --duration $((DUR + 1)) --warmup 0 >"$out.hs" &
        hs_pid=$!
        PIDS+=($hs_pid)
    fi
    wait "$probe_pid" || die "keyprobe failed"
    drop_pid "$probe_pid"
    c1=$(ns_of "$GW_PID"); w1=$(date +%s%N)
    metrics >"$out.m1"
    if [[ -n "$hs_pid" ]]; then
        wait "$hs_pid" || die "hsload failed"
        drop_pid "$hs_pid"
    fi
    python3 - "$out" "$run" "$cond" "$(metric_delta "$out.m0" "$out.m1")" "$DUR" \
        "$(python3 -c "print(round(100*($c1-$c0)/($w1-$w0)))")" >>"$SLOWRAW" <<'EOF'
import json, os, sys
out, run, cond, sig, dur = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
busy = sys.argv[6]
p = json.load(open(out + ".probe"))
h = json.load(open(out + ".hs")) if os.path.exists(out + ".hs") else None
ka, rs = p["keepalive"], p["resumed"]
row = [run, cond, ka["n"], ka["p50_ms"], ka["p99_ms"], ka["max_ms"], ka["errors"],
       rs["n"], rs["p50_ms"], rs["p99_ms"], rs["max_ms"], rs["full_handshakes"], rs["errors"]]
if h:
    row += [h["connections"], round(h["connections"] / (dur + 1), 1), h["p50_ms"], h["p99_ms"],
            h["reused"], h["errors"]]
else:
    row += ["-"] * 6
row += [busy, sig]
print("\t".join(map(str, row)))
EOF
    log "run $run slow-TPM $cond: $(tail -1 "$SLOWRAW" | cut -f3-)"
}

run_slow() { # run
    local run=$1 rport
    rport=$(free_port_pair)
    "${PRIO_DEV[@]}" taskset -c 1 python3 "$BENCH/tpmrelay.py" --port "$rport" --target "$TPM_PORT" \
        --delay-ms 0 --slow-ms "$SLOW_MS" 2>"$WORK/relay-r$run.err" &
    RELAY_PID=$!
    PIDS+=($RELAY_PID)
    wait_port "$rport"
    write_gateway_config "$WORK/gw-b.toml" "swtpm:host=$HOST,port=$rport" tpm-direct file-direct
    LPORT=()
    start_gateway "gw-b-r$run" "$WORK/gw-b.toml"
    probe "$run" idle
    probe "$run" stream-file-key
    probe "$run" stream-fast-tpm
    kill -USR1 "$RELAY_PID"
    sleep 0.2
    probe "$run" stream-slow-tpm
    kill -USR2 "$RELAY_PID"
    sleep 0.2
    forget_pid "$GW_PID"
    forget_pid "$RELAY_PID"
    grep 'relay:' "$WORK/relay-r$run.err" | tr '\n' ' ' >&2; echo >&2
}

# ----------------------------------------------------------------- main ---
ensure_tools
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building stadttor (release, --features tpm,pkcs11) and keybench into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p stadttor-gateway --bin stadttor --features tpm,pkcs11 >&2)
    (cd "$BENCH/keybench" && cargo build --release >&2)
    if [[ $LOADER == native ]]; then (cd "$BENCH/hsload" && cargo build --release >&2); fi
fi
[[ -x "$CARGO_TARGET_DIR/release/stadttor" ]] || die "no stadttor binary in $CARGO_TARGET_DIR/release"
[[ -x "$CARGO_TARGET_DIR/release/stadttor-keybench" ]] || die "no keybench binary in $CARGO_TARGET_DIR/release"
setup_dir
# Private copies: a concurrent build into the same target dir (bench/run.sh
# builds without the hardware features) cannot swap the binary mid-run.
cp "$CARGO_TARGET_DIR/release/stadttor" "$WORK/stadttor"
cp "$CARGO_TARGET_DIR/release/stadttor-keybench" "$WORK/keybench"
BIN="$WORK/stadttor"
KEYBENCH="$WORK/keybench"
if [[ $LOADER == native ]]; then
    [[ -x "$CARGO_TARGET_DIR/release/stadttor-hsload" ]] || die "no hsload binary in $CARGO_TARGET_DIR/release"
    cp "$CARGO_TARGET_DIR/release/stadttor-hsload" "$WORK/hsload"
    HSLOAD=("$WORK/hsload")
else
    HSLOAD=(python3 "$BENCH/hsload.py")
fi

start_backend
start_swtpm
setup_softhsm
setup_pki
log "backend :$BACKEND_PORT, swtpm :$TPM_PORT pid $SWTPM_PID (core 1), gateway on core 0"

SIGRAW="$WORK/sign.tsv"
HSRAW="$WORK/handshakes.tsv"
SLOWRAW="$WORK/slow.tsv"
printf 'run\tbackend\tsignatures\tper_s\tp50_us\tp99_us\tmax_us\tkey_stats\tloadavg\n' >"$SIGRAW"
printf 'run\tconfig\tmode\tconns\tper_s\tp50_ms\tp99_ms\tfull\treused\terrors\tgw_cpu_us\tswtpm_cpu_us\tloadavg\tcheck\tsignatures\n' >"$HSRAW"
printf 'run\tcondition\tka_n\tka_p50\tka_p99\tka_max\tka_err\tres_n\tres_p50\tres_p99\tres_max\tres_full\tres_err\ths_n\ths_per_s\ths_p50\ths_p99\ths_reused\ths_err\tgw_busy_pct\tsignatures\n' >"$SLOWRAW"

for run in $(seq "$RUNS"); do
    if [[ $PARTS == *" sign "* ]]; then run_keybench "$run"; fi
    if [[ $PARTS == *" handshakes "* ]]; then run_handshakes "$run"; fi
    if [[ $PARTS == *" slow "* ]]; then run_slow "$run"; fi
done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- gateway hsm pki 2>/dev/null || echo ' + uncommitted changes in gateway/hsm/pki')"
    echo "kernel: $(uname -r); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); cores: $(nproc)"
    echo "swtpm: $(swtpm --version 2>&1 | head -1); softhsm: $(softhsm2-util --version 2>&1 | head -1)"
    echo "stadttor: $("$BIN" --version) ($(rustc --version))"
    echo "duration: ${DUR}s measured after ${WARM}s warm-up; keybench ${SIGN_SECS}s per backend; runs: $RUNS; scheduling: $SCHED; handshake client: $LOADER, $HS_PROCS workers; slow TPM: ${SLOW_MS} ms per command"
} >"$WORK/versions.txt"

cp "$HSRAW" "$RESULTS/keys-latest.tsv"
cp "$SIGRAW" "$RESULTS/keys-sign-latest.tsv"
cp "$SLOWRAW" "$RESULTS/keys-slow-latest.tsv"
python3 - "$WORK/versions.txt" "$SIGRAW" "$HSRAW" "$SLOWRAW" <<'EOF' | tee "$RESULTS/keys-latest.md"
import csv, math, sys
ver, sig, hs, slow = sys.argv[1:5]
rows = lambda p: list(csv.DictReader(open(p), delimiter="\t"))
print("# stadttor key backends\n\n```\n" + open(ver).read() + "```\n")
print("## Signatures/s (keybench, core 0, one thread)\n")
print("| run | backend | signatures/s | p50 µs | p99 µs | max µs | load |\n|---|---|---|---|---|---|---|")
for r in rows(sig):
    print(f"| {r['run']} | {r['backend']} | {float(r['per_s']):.0f} | {r['p50_us']} | {r['p99_us']} | {r['max_us']} | {r['loadavg']} |")
H = rows(hs)
print("\n## Handshakes (hsload.py, core 1 -> gateway on core 0)\n")
print("| run | config | mode | handshakes/s | p50 ms | p99 ms | full/resumed | gateway CPU µs/hs | swtpm CPU µs/hs | check | signatures during the run |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in H:
    print(f"| {r['run']} | {r['config']} | {r['mode']} | {r['per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['full']}/{r['reused']} | {r['gw_cpu_us']} | {r['swtpm_cpu_us']} | {r['check']} | {r['signatures'].replace(',', ' ')} |")
print("\n## Ratios to file-direct (same run, full handshakes)\n")
print("| run | config | handshakes/s ratio | gateway CPU/hs ratio |\n|---|---|---|---|")
for run in sorted({r["run"] for r in H}):
    base = next((r for r in H if r["run"] == run and r["config"] == "file-direct" and r["mode"] == "full"), None)
    if not base: continue
    for r in H:
        if r["run"] == run and r["mode"] == "full" and r["config"] != "file-direct":
            print(f"| {run} | {r['config']} | {float(r['per_s'])/float(base['per_s']):.2f} | {float(r['gw_cpu_us'])/float(base['gw_cpu_us']):.2f} |")
S = rows(slow)
if S:
    print("\n## Slow TPM (tpm-direct through tpmrelay.py; latency of other clients)\n")
    print("| run | condition | keep-alive p50 / p99 / max ms (n) | resumed p50 / p99 / max ms (n, full) | full-handshake stream: per s, p50 / p99 ms, errors | gateway core busy | signatures |")
    print("|---|---|---|---|---|---|---|")
    for r in S:
        print(f"| {r['run']} | {r['condition']} | {r['ka_p50']} / {r['ka_p99']} / {r['ka_max']} ({r['ka_n']}) | "
              f"{r['res_p50']} / {r['res_p99']} / {r['res_max']} ({r['res_n']}, {r['res_full']}) | "
              f"{r['hs_per_s']}, {r['hs_p50']} / {r['hs_p99']}, {r['hs_err']} | {r['gw_busy_pct']} % | {r['signatures'].replace(',', ' ')} |")
EOF
