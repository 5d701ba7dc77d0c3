#!/usr/bin/env python3
"""TLS handshake load generator for bench/run.sh.

Every connection does: TCP connect, TLS handshake, one `GET PATH` with
`Connection: close`, read to EOF, close. Mode `full` gives every connection
a fresh client state (no session offered), so each is a full handshake.
Mode `resume` offers the session (TLS 1.3 ticket / TLS 1.2 session) received
on the previous connection of the same worker, so after the first one every
handshake should be an abbreviated one.

Both modes are *verified* on the client side: `SSLSocket.session_reused`
says whether the server accepted the offered session. The output counts
resumed and full handshakes so run.sh can refuse a mislabeled result.

Latency is measured per connection from before `connect()` to EOF, so it
includes the TCP connect, the TLS handshake and one small request.

Traffic goes only to the address given, which run.sh sets to 127.0.0.1.
Runs are bounded by --duration. Prints one JSON object.
"""

import argparse
import json
import multiprocessing as mp
import socket
import ssl
import time


def make_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Offer P-256 as the only group (with OpenSSL 3 this is
    # SSL_CTX_set1_groups): both servers accept it, so the first key share
    # fits and no HelloRetryRequest round trip is needed. OpenSSL's default
    # first key share is X25519, which neither server offers.
    ctx.set_ecdh_curve("prime256v1")
    return ctx


def worker(args, q):
    host, port, path, mode, duration, warmup = args
    ctx = make_ctx()
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    session = None
    lat = []
    n_full = n_reused = n_err = 0
    proto = cipher = None
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + duration
    while True:
        t0 = time.monotonic()
        if t0 >= end:
            break
        try:
            raw = socket.create_connection((host, port), timeout=5)
            s = ctx.wrap_socket(
                raw,
                server_hostname="localhost",
                session=session if mode == "resume" else None,
            )
            s.sendall(req)
            got = 0
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += len(b)
            t1 = time.monotonic()
            reused = s.session_reused
            if mode == "resume":
                # After reading, TLS 1.3 tickets have arrived.
                session = s.session
            proto = s.version()
            cipher = s.cipher()[0] if s.cipher() else None
            try:
                s.close()
            except OSError:
                pass
            if got == 0:
                raise OSError("empty response")
        except (OSError, ssl.SSLError):
            n_err += 1
            continue
        if t0 < measure_from:
            continue
        lat.append(t1 - t0)
        if reused:
            n_reused += 1
        else:
            n_full += 1
    q.put(
        {
            "lat": lat,
            "full": n_full,
            "reused": n_reused,
            "errors": n_err,
            "proto": proto,
            "cipher": cipher,
        }
    )


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--mode", choices=["full", "resume"], required=True)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("hsload: loopback targets only")
    q = mp.Queue()
    ps = [
        mp.Process(target=worker, args=((a.host, a.port, a.path, a.mode, a.duration, a.warmup), q))
        for _ in range(a.procs)
    ]
    for p in ps:
        p.start()
    results = [q.get(timeout=a.duration + a.warmup + 60) for _ in ps]
    for p in ps:
        p.join(timeout=10)
    lat = sorted(x for r in results for x in r["lat"])
    n = len(lat)
    out = {
        "mode": a.mode,
        "connections": n,
        "rps": round(n / a.duration, 1),
        "p50_ms": round(pct(lat, 50) * 1e3, 3),
        "p99_ms": round(pct(lat, 99) * 1e3, 3),
        "full": sum(r["full"] for r in results),
        "reused": sum(r["reused"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "proto": next((r["proto"] for r in results if r["proto"]), None),
        "cipher": next((r["cipher"] for r in results if r["cipher"]), None),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
