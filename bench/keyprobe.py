#!/usr/bin/env python3
"""Latency probe for bench/keys.sh (slow-TPM test).

While something else loads the gateway (a stream of full handshakes that
need the TPM), this measures what *other* clients see:

- keep-alive: --conns HTTP/1.1 connections, opened (and fully handshaken)
  before the measured window, each sending `GET PATH` every --interval-ms
  and timing request -> complete response;
  The window starts --warmup seconds after the set-up (--ready-file is
  touched when the set-up is done, so the caller can start its load then);
- resumed: every --resume-interval-ms a new connection that offers the
  session of the previous one, timed from connect() to EOF of one
  `Connection: close` GET. Every handshake is checked with
  SSLSocket.session_reused; full ones are counted separately (they would
  need the TPM) and are not mixed into the resumed percentiles.

Loopback only, bounded by --duration. Prints one JSON object.
"""

import argparse
import json
import socket
import ssl
import threading
import time


def make_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ecdh_curve("prime256v1")
    return ctx


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return round(v[min(len(v) - 1, int(len(v) * p / 100.0))] * 1e3, 3)


def read_response(s, buf):
    """Reads one HTTP/1.1 response with Content-Length; returns leftover."""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise OSError("closed")
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise OSError("status " + status.decode())
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v.strip())
    while len(rest) < n:
        b = s.recv(65536)
        if not b:
            raise OSError("closed in body")
        rest += b
    return rest[n:]


def keepalive(a, s, start, end, out):
    req = f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    lat, err, buf = [], 0, b""
    nxt = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if nxt > now:
            time.sleep(nxt - now)
        nxt += a.interval_ms / 1e3
        t0 = time.monotonic()
        try:
            s.sendall(req)
            buf = read_response(s, buf)
        except (OSError, ssl.SSLError):
            err += 1
            break
        if t0 >= start:
            lat.append(time.monotonic() - t0)
    out.append({"lat": lat, "err": err})


def resumer(a, session, start, end, out):
    ctx_holder = a.ctx
    req = f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    lat_res, lat_full, err = [], [], 0
    nxt = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if nxt > now:
            time.sleep(nxt - now)
        nxt += a.resume_interval_ms / 1e3
        t0 = time.monotonic()
        try:
            raw = socket.create_connection((a.host, a.port), timeout=10)
            s = ctx_holder.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(req)
            while s.recv(65536):
                pass
            t1 = time.monotonic()
            reused = s.session_reused
            session = s.session
            s.close()
        except (OSError, ssl.SSLError):
            err += 1
            continue
        if t0 < start:
            continue
        (lat_res if reused else lat_full).append(t1 - t0)
    out.append({"res": lat_res, "full": lat_full, "err": err})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--interval-ms", type=float, default=20)
    ap.add_argument("--resume-interval-ms", type=float, default=20)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--ready-file", help="touched once the connections are set up")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("keyprobe: loopback targets only")
    a.ctx = make_ctx()
    t_setup = time.monotonic()
    # Set up before the window: keep-alive connections and one session.
    conns = []
    for _ in range(a.conns):
        raw = socket.create_connection((a.host, a.port), timeout=30)
        conns.append(a.ctx.wrap_socket(raw, server_hostname="localhost"))
    raw = socket.create_connection((a.host, a.port), timeout=30)
    s = a.ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    while s.recv(65536):
        pass
    session = s.session
    s.close()
    setup_s = time.monotonic() - t_setup
    if a.ready_file:
        open(a.ready_file, "w").close()
    start = time.monotonic() + a.warmup
    end = start + a.duration
    ka_out, rs_out = [], []
    threads = [threading.Thread(target=keepalive, args=(a, c, start, end, ka_out)) for c in conns]
    threads.append(threading.Thread(target=resumer, args=(a, session, start, end, rs_out)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=a.duration + a.warmup + 60)
    ka = [x for r in ka_out for x in r["lat"]]
    rs = rs_out[0] if rs_out else {"res": [], "full": [], "err": 1}
    print(json.dumps({
        "setup_s": round(setup_s, 3),
        "keepalive": {"n": len(ka), "p50_ms": pct(ka, 50), "p99_ms": pct(ka, 99),
                      "max_ms": pct(ka, 100), "errors": sum(r["err"] for r in ka_out)},
        "resumed": {"n": len(rs["res"]), "p50_ms": pct(rs["res"], 50), "p99_ms": pct(rs["res"], 99),
                    "max_ms": pct(rs["res"], 100), "full_handshakes": len(rs["full"]),
                    "full_p50_ms": pct(rs["full"], 50), "errors": rs["err"]},
    }))
    for c in conns:
        try:
            c.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
