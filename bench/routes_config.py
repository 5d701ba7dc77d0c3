#!/usr/bin/env python3
"""Writes a stadttor configuration with many routes (and, optionally, a
policy with many lines) for bench/routes.sh.

  routes_config.py DIR BACKEND_ADDR --hosts H --prefixes P [--policy N]

Routes are H hosts x P path prefixes, as a Land-level provider would
have: host `hI.land.example`, prefix `/dienstJ`, route name `rI-J`,
followed by one fallback route for `/` on any host. With `--hosts 0` the
routes are P prefixes `/kJ/` on any host plus the fallback (the layout of
the issue's measurement). Files written into DIR: stadttor.toml (it
expects cert.pem and key.pem there), and with `--policy N` a policy
directory `policy-src/` (model.conf from the default model, N lines of
policy.csv, a small tests.csv) for `stadttor policy init --from`.
"""

import argparse
import os

DEFAULT_MODEL = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "policies", "default", "model.conf"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("backend")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--prefixes", type=int, default=100)
    ap.add_argument("--policy", type=int, default=0)
    a = ap.parse_args()
    out = []
    out.append(
        f"""# {a.hosts} hosts x {a.prefixes} prefixes + 1 fallback (bench/routes.sh)
[server]
access_log = false
max_connections_per_ip = 16384
max_connections = 16384

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "bench"
listen = "127.0.0.1:0"

[[listeners.tls.certificates]]
chain = "cert.pem"
key = "file:key.pem"

[[upstreams]]
name = "backend"
addresses = ["{a.backend}"]
"""
    )
    if a.policy:
        out.append('[policies]\nstore = "file:policies"\n')

    def route(name, host, prefix):
        h = f'host = "{host}"\n' if host else ""
        out.append(
            f'[[routes]]\nname = "{name}"\nupstream = "backend"\n{h}path_prefix = "{prefix}"\n'
        )

    if a.hosts == 0:
        for j in range(a.prefixes):
            route(f"k{j}", None, f"/k{j}/")
    else:
        for i in range(a.hosts):
            for j in range(a.prefixes):
                route(f"r{i}-{j}", f"h{i}.land.example", f"/dienst{j}")
    route("fallback", None, "/")
    with open(os.path.join(a.dir, "stadttor.toml"), "w") as f:
        f.write("\n".join(out))
    if a.policy:
        src = os.path.join(a.dir, "policy-src")
        os.makedirs(src, exist_ok=True)
        with open(DEFAULT_MODEL) as f:
            model = f.read()
        with open(os.path.join(src, "model.conf"), "w") as f:
            f.write(model)
        with open(os.path.join(src, "policy.csv"), "w") as f:
            for n in range(a.policy):
                dom, svc = divmod(n, 100)
                f.write(f"p, rolle{svc % 10}, kommune{dom}, /dienst{svc}/*, GET|POST, substantial, *, *, allow\n")
        with open(os.path.join(src, "tests.csv"), "w") as f:
            f.write("subject, domain, path, method, level, provider, cert, expect\n")
            f.write("x, kommune0, /dienst0/a, GET, high, , , deny\n")


if __name__ == "__main__":
    main()
