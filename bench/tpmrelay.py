#!/usr/bin/env python3
"""A slow TPM for bench/keys.sh: a TCP relay between a swtpm TCTI and swtpm.

Listens on 127.0.0.1:PORT (TPM commands) and PORT+1 (swtpm control
channel) and forwards to swtpm's TARGET and TARGET+1. On the command
channel every TPM command from the client is held back DELAY ms before it
is passed to swtpm (commands are framed by their 10-byte header: tag u16,
commandSize u32). Responses and the control channel pass through at once.
So with a delay of 200 ms every TPM command, and so every signature,
takes >= 200 ms, as on a slow discrete TPM.

The delay can be changed while running, so one gateway can be measured
with a fast and a slow TPM without reconnecting:
  SIGUSR1 -> delay = --slow-ms       SIGUSR2 -> delay = 0
Each signal also prints a line "relay: delay_ms=... commands=..." on
stderr (commands forwarded so far), which keys.sh uses as a counter.

Loopback only. Runs until SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
import struct
import sys
import time

state = {"delay": 0.0, "commands": 0, "conns": 0}


def log(msg):
    print(f"relay: {msg}", file=sys.stderr, flush=True)


async def pump_plain(reader, writer):
    try:
        while True:
            b = await reader.read(65536)
            if not b:
                break
            writer.write(b)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def pump_commands(reader, writer):
    """Client -> swtpm, each complete TPM command delayed by state['delay']."""
    queue: asyncio.Queue = asyncio.Queue()

    async def sender():
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    task = asyncio.create_task(sender())
    buf = b""
    first_at = None
    try:
        while True:
            b = await reader.read(65536)
            if not b:
                break
            if first_at is None:
                first_at = time.monotonic()
            buf += b
            # Cut complete commands out of the stream.
            while len(buf) >= 10:
                (size,) = struct.unpack(">I", buf[2:6])
                if size < 10 or size > 1 << 20:
                    # Not TPM framing: pass what we have, delayed as one unit.
                    queue.put_nowait((first_at + state["delay"], buf))
                    state["commands"] += 1
                    buf, first_at = b"", None
                    break
                if len(buf) < size:
                    break
                queue.put_nowait((first_at + state["delay"], buf[:size]))
                state["commands"] += 1
                buf = buf[size:]
                first_at = time.monotonic() if buf else None
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        if buf:
            queue.put_nowait((time.monotonic(), buf))
        queue.put_nowait(None)
        await task


async def handle(client_r, client_w, target, delayed):
    state["conns"] += 1
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target)
    except OSError as e:
        log(f"cannot reach swtpm on {target}: {e}")
        client_w.close()
        return
    up = pump_commands(client_r, up_w) if delayed else pump_plain(client_r, up_w)
    await asyncio.gather(up, pump_plain(up_r, client_w))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True, help="listen port (and port+1)")
    ap.add_argument("--target", type=int, required=True, help="swtpm port (and port+1)")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--slow-ms", type=float, default=200.0)
    a = ap.parse_args()
    state["delay"] = a.delay_ms / 1e3
    loop = asyncio.get_running_loop()

    def set_delay(ms):
        state["delay"] = ms / 1e3
        log(f"delay_ms={ms:g} commands={state['commands']} conns={state['conns']}")

    loop.add_signal_handler(signal.SIGUSR1, set_delay, a.slow_ms)
    loop.add_signal_handler(signal.SIGUSR2, set_delay, 0.0)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    s1 = await asyncio.start_server(
        lambda r, w: handle(r, w, a.target, True), "127.0.0.1", a.port)
    s2 = await asyncio.start_server(
        lambda r, w: handle(r, w, a.target + 1, False), "127.0.0.1", a.port + 1)
    log(f"ready port={a.port} target={a.target} delay_ms={a.delay_ms:g}")
    await stop.wait()
    log(f"exit commands={state['commands']} conns={state['conns']}")
    s1.close()
    s2.close()


if __name__ == "__main__":
    asyncio.run(main())
