#!/usr/bin/env python3
"""Where a stadttor request's CPU goes, by stage of the request path.

Reads `perf report --children --sort sym -g none --stdio` of a profile
recorded with call graphs (stdin) and prints, for each stage of the request
path, the share of all of stadttor's samples spent in it or below it
(inclusive), and that share of the measured CPU per request.

Usage: perf_stages.py CPU_US_PER_REQUEST < report.txt

Inclusive shares overlap (the kernel's send path runs below the TLS writes,
the audit writer is its own thread), so they do not add up to 100 %. A
stage whose functions were all inlined into their caller shows as 0.
"""
import re
import sys

# (stage, symbol pattern): the largest inclusive share of any symbol that
# matches is the stage's share (inlined frames repeat their parent's).
STAGES = [
    ("TLS: decrypt and parse records (rustls read_tls, process_new_packets)",
     r"rustls::conn::ConnectionCommon<Data>::(read_tls|process_new_packets)|ConnectionCore<Data>::process_new_packets"),
    ("TLS: encrypt and send (rustls send_plaintext)",
     r"ConnectionCommon<T>>::send_plaintext"),
    ("canonical request target", r"stadttor_gateway::http::target::canonicalise_uri"),
    ("route match", r"stadttor_gateway::(state::State::route|proxy::stages::match_route)"),
    # The stage is inlined into its caller in some builds: Auth::authenticate
    # is the function that stays.
    ("authentication (session cookie / bearer token)",
     r"stadttor_gateway::(proxy::stages::authenticate|authn::Auth::authenticate)"),
    ("authorization (casbin policy)", r"stadttor_gateway::proxy::stages::authorize"),
    ("audit event, request side", r"stadttor_gateway::proxy::stages::audit_record"),
    ("audit writer thread (WAL, fdatasync, tiles)", r"stadttor_audit::appender::run"),
    ("upstream request head", r"stadttor_gateway::proxy::stages::upstream_head"),
    ("upstream exchange (hyper client)", r"hyper_util::client::legacy::client::Client<C,B>::send_request"),
    ("response finish and signing", r"stadttor_gateway::proxy::stages::sign_and_finish"),
    ("the whole request handler (proxy::serve)", r"stadttor_gateway::proxy::serve"),
    ("kernel: writev (client and upstream)", r"\bdo_writev\b"),
    ("kernel: recvfrom", r"__x64_sys_recvfrom\b"),
    ("kernel: epoll_wait", r"__x64_sys_epoll_wait\b"),
    ("kernel: fdatasync", r"__x64_sys_fdatasync\b"),
]


def main():
    cpu = float(sys.argv[1]) if len(sys.argv) > 1 else float("nan")
    best = {name: 0.0 for name, _ in STAGES}
    pats = [(name, re.compile(p)) for name, p in STAGES]
    for line in sys.stdin:
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(.*)$", line)
        if not m:
            continue
        children, sym = float(m.group(1)), m.group(4)
        for name, pat in pats:
            if pat.search(sym) and children > best[name]:
                best[name] = children
    print("| stage | share of stadttor's CPU (inclusive) | µs per request |")
    print("|---|---|---|")
    for name, _ in STAGES:
        share = best[name]
        print(f"| {name} | {share:.1f} % | {share * cpu / 100:.1f} |")


if __name__ == "__main__":
    main()
