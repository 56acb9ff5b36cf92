#!/usr/bin/env python3
"""Generate a corpus shaped like a CPython installation: many small source
files, some large binaries. Usage: gen_corpus.py DIR TOTAL_MB FILES
Deterministic (seeded), written file by file (never whole in memory)."""
import os
import random
import sys

out, total_mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
words = [w.strip() for w in open(__file__).read().split() if w.isidentifier()] or ["def", "return"]
budget = total_mb * 1_000_000
big = max(1, files // 500)
small_total = budget // 3
for i in range(files):
    d = os.path.join(out, f"lib{i % 7}", f"pkg{i % 97}", f"sub{i % 13}")
    os.makedirs(d, exist_ok=True)
    if i < big:
        size = (budget - small_total) // big
        with open(os.path.join(d, f"_ext{i}.so"), "wb") as f:
            left = size
            while left > 0:
                n = min(left, 1 << 20)
                # half random, half structured: compresses like real binaries
                f.write(rng.randbytes(n // 2) + bytes(range(256)) * (n // 512) + b"\0" * (n - n // 2 - 256 * (n // 512)))
                left -= n
    else:
        size = max(64, int(rng.expovariate(1 / (small_total / (files - big)))))
        with open(os.path.join(d, f"mod{i}.py"), "w") as f:
            written = 0
            while written < size:
                line = "    " * rng.randint(0, 3) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + "\n"
                f.write(line)
                written += len(line)
