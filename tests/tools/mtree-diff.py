#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""mtree-diff.py A.mtree B.mtree [--ignore KEY,...]: compare two go-mtree
specs path by path (the way go-mtree's Compare does: /set defaults merged,
names unescaped) and print the differences; exit 1 when there are some."""
import re
import sys


def unvis(s):
    out = bytearray()
    i = 0
    b = s.encode("utf-8", "surrogateescape")
    while i < len(b):
        c = b[i]
        if c == 0x5C:  # backslash
            m = re.match(rb"[0-7]{1,3}", b[i + 1:i + 4])
            if m:
                out.append(int(m.group(0), 8))
                i += 1 + len(m.group(0))
                continue
            nxt = b[i + 1:i + 2]
            out += {b"s": b" ", b"t": b"\t", b"n": b"\n", b"\\": b"\\"}.get(nxt, nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def parse(path):
    entries = {}
    cur = None  # list of path components of the current directory
    setkw = {}
    with open(path, "rb") as f:
        for raw in f.read().decode("utf-8", "surrogateescape").split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if fields[0] == "/set":
                setkw = dict(kv.split("=", 1) for kv in fields[1:])
                continue
            if fields[0] == "/unset":
                setkw = {}
                continue
            if fields[0] == "..":
                cur = cur[:-1] if cur else None
                continue
            kw = dict(setkw)
            kw.update(dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in fields[1:]))
            name = unvis(fields[0])
            if b"/" in name:
                p = name
            elif cur is None:
                p = b"."
            else:
                p = b"/".join(cur + [name]) if cur else name
            if "link" in kw:
                kw["link"] = unvis(kw["link"]).decode("utf-8", "surrogateescape")
            entries[p] = kw
            if kw.get("type") == "dir" and b"/" not in name:
                cur = [] if cur is None else cur + [name]
    return entries


def main():
    args = sys.argv[1:]
    ignore = set()
    if "--ignore" in args:
        i = args.index("--ignore")
        ignore = set(args[i + 1].split(","))
        del args[i:i + 2]
    a, b = parse(args[0]), parse(args[1])
    diffs = 0
    for p in sorted(set(a) | set(b)):
        name = p.decode("utf-8", "backslashreplace")
        if p not in a:
            print("only in B: %s" % name)
            diffs += 1
            continue
        if p not in b:
            print("only in A: %s" % name)
            diffs += 1
            continue
        for k in sorted(set(a[p]) | set(b[p])):
            if k in ignore or k.split(".")[0] in ignore:
                continue
            va, vb = a[p].get(k), b[p].get(k)
            if va != vb:
                print("%s: %s: %s != %s" % (name, k, va, vb))
                diffs += 1
    sys.exit(1 if diffs else 0)


main()
