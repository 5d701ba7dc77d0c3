#!/usr/bin/env python3
"""Groups `perf report --sort dso,sym --stdio` lines (stdin) by component:
the kernel, each shared library, and, for Rust binaries, each crate (the
first path segment of the demangled symbol, generics stripped)."""
import re
import sys
from collections import defaultdict

groups = defaultdict(float)
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
    if kind == "k":
        key = "kernel"
    elif dso in ("stadttor", "nginx"):
        s = sym.lstrip("<").lstrip("&").replace("dyn ", "")
        crate = re.split(r"::|<| as ", s, maxsplit=1)[0] or "?"
        if dso == "nginx":
            crate = "nginx"
        key = f"{dso}: {crate}"
    else:
        key = dso
    groups[key] += pct
for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
    if v >= 0.3:
        print(f"{v:6.2f}%  {k}")
