#!/usr/bin/env python3
"""Many TLS 1.3 connections for bench/conns.sh (#14 item 3).

idle mode: opens N TLS 1.3 keep-alive connections (HTTP/1.1, or h2 by ALPN),
sends one small GET on each (h2: one stream), reads the response and then
holds the connection idle (h2: answers PINGs and SETTINGS, so the server's
keep-alive ping does not drop it). When all N are up it prints one JSON
line {"event": "up", ...} and then, at the end of --hold seconds (or when
stdin closes / SIGTERM arrives), a final {"event": "done", ...} line with
how many connections the server closed in between.

slow mode: N HTTP/1.1 connections that each send a request head one byte
every --interval seconds (slowloris). A connection the server closes (its
header read timeout) is opened again, so N stay in flight all the time.
Prints {"event": "up"} when N have been opened once, then "done" with the
counts at the end.

Only ever connects to 127.0.0.1. Certificates are not verified (the bench
uses a throw-away CA). Raises RLIMIT_NOFILE to its hard limit.
"""

import argparse
import asyncio
import json
import resource
import signal
import ssl
import struct
import sys
import time

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def context(proto):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([proto])
    # Tickets are not needed; a full handshake per connection.
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""

    def s(b):
        assert len(b) < 127
        return bytes([len(b)]) + b

    return b"\x00" + s(name) + s(value)


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


async def read_frame(reader):
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, await reader.readexactly(length)


async def h1_request(reader, writer, path):
    writer.write(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("status: %r" % head[:20])
    await reader.readexactly(length)


async def h2_request(reader, writer, path):
    writer.write(H2_PREFACE + frame(4, 0, 0))  # empty SETTINGS
    block = (
        b"\x82"  # :method GET (static index 2)
        + b"\x87"  # :scheme https (static index 7)
        + hpack_literal(b":path", path.encode())
        + hpack_literal(b":authority", b"localhost")
    )
    writer.write(frame(1, 0x5, 1, block))  # HEADERS, END_STREAM|END_HEADERS
    await writer.drain()
    status_ok = None
    while True:
        ftype, flags, stream, payload = await read_frame(reader)
        if ftype == 4 and not flags & 1:  # SETTINGS -> ACK
            writer.write(frame(4, 1, 0))
        elif ftype == 6 and not flags & 1:  # PING -> ACK
            writer.write(frame(6, 1, 0, payload))
        elif ftype == 7:  # GOAWAY
            raise RuntimeError("GOAWAY")
        elif stream == 1 and ftype == 1:
            # :status 200 is static index 8 (0x88) when the server indexes it.
            status_ok = payload[:1] == b"\x88" or status_ok
            if flags & 1:
                break
        elif stream == 1 and ftype == 0:
            if payload:
                writer.write(frame(8, 0, 0, struct.pack(">I", len(payload))))
            if flags & 1:
                break
        elif stream == 1 and ftype == 3:
            raise RuntimeError("RST_STREAM")
    await writer.drain()
    if not status_ok:
        raise RuntimeError("h2 status not 200")


async def hold_h1(reader):
    await reader.read(1)  # returns b"" when the server closes


async def hold_h2(reader, writer):
    while True:
        ftype, flags, _, payload = await read_frame(reader)
        if ftype == 6 and not flags & 1:
            writer.write(frame(6, 1, 0, payload))
        elif ftype == 4 and not flags & 1:
            writer.write(frame(4, 1, 0))
        elif ftype == 7:
            return


class Stats:
    def __init__(self):
        self.up = 0
        self.failed = 0
        self.closed = 0
        self.reopened = 0
        self.errors = {}

    def error(self, e):
        self.failed += 1
        k = type(e).__name__ + ":" + str(e)[:60]
        self.errors[k] = self.errors.get(k, 0) + 1


async def idle_conn(args, ctx, sem, stats, all_up):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(
                args.host, args.port, ssl=ctx, server_hostname="localhost"
            )
            if args.proto == "h2":
                await h2_request(reader, writer, args.path)
            else:
                await h1_request(reader, writer, args.path)
        except Exception as e:  # noqa: BLE001 - counted and reported
            stats.error(e)
            return
    stats.up += 1
    try:
        if args.proto == "h2":
            await hold_h2(reader, writer)
        else:
            await hold_h1(reader)
        stats.closed += 1
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception:  # noqa: BLE001 - a reset counts as closed
        stats.closed += 1
    finally:
        writer.transport.abort()


async def slow_conn(args, ctx, sem, stats, first):
    head = b"GET %s HTTP/1.1\r\nHost: localhost\r\nX-Slow: " % args.path.encode() + b"a" * 4000
    opened = False
    while True:
        try:
            async with sem:
                reader, writer = await asyncio.open_connection(
                    args.host, args.port, ssl=ctx, server_hostname="localhost"
                )
        except Exception as e:  # noqa: BLE001
            stats.error(e)
            await asyncio.sleep(1)
            continue
        if not opened:
            opened = True
            stats.up += 1
            if stats.up >= args.conns:
                first.set()
        else:
            stats.reopened += 1
        try:
            for i in range(len(head)):
                writer.write(head[i : i + 1])
                await writer.drain()
                # Closed by the server? Do not wait out the interval.
                try:
                    await asyncio.wait_for(reader.read(4096), args.interval)
                    break  # the server answered (408) or closed
                except asyncio.TimeoutError:
                    pass
            stats.closed += 1
        except Exception:  # noqa: BLE001
            stats.closed += 1
        finally:
            writer.transport.abort()


def report(event, stats, t0, args):
    try:
        _report(event, stats, t0, args)
    except BrokenPipeError:
        pass  # nobody reads the final line any more


def _report(event, stats, t0, args):
    print(
        json.dumps(
            {
                "event": event,
                "mode": args.mode,
                "proto": args.proto,
                "conns": args.conns,
                "up": stats.up,
                "failed": stats.failed,
                "closed": stats.closed,
                "reopened": stats.reopened,
                "seconds": round(time.monotonic() - t0, 2),
                "errors": stats.errors,
            }
        ),
        flush=True,
    )


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.conns + 1024)) if hard != resource.RLIM_INFINITY else args.conns + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ctx = context(args.proto)
    sem = asyncio.Semaphore(args.parallel)
    stats = Stats()
    t0 = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.mode == "idle":
        tasks = [asyncio.create_task(idle_conn(args, ctx, sem, stats, None)) for _ in range(args.conns)]
        while stats.up + stats.failed < args.conns:
            await asyncio.sleep(0.05)
    else:
        first = asyncio.Event()
        tasks = [asyncio.create_task(slow_conn(args, ctx, sem, stats, first)) for _ in range(args.conns)]
        waiter = asyncio.create_task(first.wait())
        await asyncio.wait([waiter], timeout=args.hold)
    report("up", stats, t0, args)
    try:
        await asyncio.wait_for(stop.wait(), args.hold)
    except asyncio.TimeoutError:
        pass
    report("done", stats, t0, args)
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--proto", choices=["http/1.1", "h2"], default="http/1.1")
    p.add_argument("--mode", choices=["idle", "slow"], default="idle")
    p.add_argument("--path", default="/small")
    p.add_argument("--parallel", type=int, default=64, help="handshakes in flight at once")
    p.add_argument("--interval", type=float, default=2.0, help="slow mode: seconds between bytes")
    p.add_argument("--hold", type=float, default=60.0, help="seconds to hold after all are up")
    a = p.parse_args()
    if a.mode == "slow" and a.proto != "http/1.1":
        p.error("slow mode is HTTP/1.1 only")
    try:
        asyncio.run(main(a))
    except KeyboardInterrupt:
        sys.exit(130)
