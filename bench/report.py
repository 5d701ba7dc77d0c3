#!/usr/bin/env python3
"""Renders bench/run.sh's raw rows as markdown: raw numbers and ratios.

Usage: report.py RAW.tsv [VERSIONS.txt]
Ratios are stadttor / nginx. Throughput: higher is better for stadttor.
Latency and CPU per request: lower is better for stadttor.
"""

import csv
import math
import sys

NAMES = {
    "big": "HTTP/1.1 keep-alive, 1 MiB (wrk -t1 -c10)",
    "hsfull": "full TLS handshake per connection + 100 B GET",
    "hsresume": "resumed TLS handshake per connection + 100 B GET",
    "bearer": "bearer route (PS256 token, strip_prefix, audit off) vs nginx as bare proxy, 100 B, wrk",
    "session": "session cookie + casbin policy + audit vs nginx as bare proxy, 100 B, wrk",
}


def name(test):
    """What a test measures; h1-cN and h2-cN carry their concurrency."""
    kind, _, conns = test.partition("-c")
    if kind == "h1" and conns:
        return f"HTTP/1.1 keep-alive, 100 B (wrk -t1 -c{conns})"
    if kind == "h2" and conns:
        return f"h2, 100 B (h2load -t1 -c{conns} -m10)"
    return NAMES.get(test, test)


def f(x):
    try:
        return float(x)
    except ValueError:
        return float("nan")


def ratio(a, b):
    a, b = f(a), f(b)
    if not b or math.isnan(a) or math.isnan(b):
        return float("nan")
    return a / b


def fmt(x, nd=2):
    return "n/a" if math.isnan(x) else f"{x:.{nd}f}"


def geomean(xs):
    xs = [x for x in xs if x > 0 and not math.isnan(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    out = []
    out.append("# stadttor vs nginx: whole-gateway benchmark\n")
    if len(sys.argv) > 2:
        out.append("```")
        out.append(open(sys.argv[2]).read().rstrip())
        out.append("```\n")
    runs = sorted({r["run"] for r in rows}, key=int)
    tests = list(dict.fromkeys(r["test"] for r in rows))
    by = {(r["run"], r["test"], r["proxy"]): r for r in rows}

    out.append("## Ratios stadttor / nginx\n")
    out.append("Throughput > 1 and latency/CPU < 1 favour stadttor. One column per run, then the geometric mean.\n")
    hdr = "| test | metric | " + " | ".join(f"run {r}" for r in runs) + " | mean |"
    out.append(hdr)
    out.append("|" + "---|" * (len(runs) + 3))
    for t in tests:
        for key, label in (
            ("rps", "throughput"),
            ("p50_ms", "p50 latency"),
            ("p99_ms", "p99 latency"),
            ("cpu_us_per_req", "CPU / request"),
            ("rss_kib", "RSS after the test"),
        ):
            vals = []
            for r in runs:
                s, n = by.get((r, t, "stadttor")), by.get((r, t, "nginx"))
                vals.append(ratio(s[key], n[key]) if s and n else float("nan"))
            out.append(
                f"| {t} | {label} | "
                + " | ".join(fmt(v) + "x" for v in vals)
                + f" | **{fmt(geomean(vals))}x** |"
            )
    out.append("")
    out.append("## Raw numbers\n")
    out.append("| run | test | proxy | requests | req/s | p50 ms | p99 ms | CPU µs/req | schedstat µs/req | errors | load avg | RSS KiB | note |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out.append(
            "| {run} | {test} | {proxy} | {requests} | {rps} | {p50} | {p99} | {cpu} | {sched} | {errors} | {loadavg} | {rss} | {note} |".format(
                rss=r.get("rss_kib", "n/a"),
                p50=fmt(f(r["p50_ms"]), 3),
                p99=fmt(f(r["p99_ms"]), 3),
                cpu=r["cpu_us_per_req"],
                sched=r.get("sched_us_per_req", "n/a"),
                **{k: r[k] for k in ("run", "test", "proxy", "requests", "rps", "errors", "loadavg")},
                note=r["note"].replace("_", " ") if r["note"] != "-" else "",
            )
        )
    out.append("")
    out.append("Tests:")
    for t in tests:
        out.append(f"- `{t}`: {name(t)}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
