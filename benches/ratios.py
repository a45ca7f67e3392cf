#!/usr/bin/env python3
"""Prints the figures of one criterion run (median, ns) and the ratios the targets name.

usage: python3 benches/ratios.py GROUP [TARGET_DIR]
Reads TARGET_DIR/criterion/GROUP/*/*/new/estimates.json (default target dir: ./target).
"""
import json, os, sys

group = sys.argv[1] if len(sys.argv) > 1 else "middleware"
base = os.path.join(sys.argv[2] if len(sys.argv) > 2 else "target", "criterion")
med = {}
for dirpath, _, files in os.walk(base):
    if "estimates.json" in files and dirpath.endswith(os.sep + "new"):
        name = os.path.relpath(os.path.dirname(dirpath), base)
        top = name.split(os.sep)[0]
        if top != group and not top.startswith(group + "_"):
            continue
        name = name[len(group) + 1:] if top == group else name
        with open(os.path.join(dirpath, "estimates.json")) as f:
            med[name] = json.load(f)["median"]["point_estimate"]
for k in sorted(med):
    print(f"{k:40s} {med[k]:12.1f} ns")
if group == "middleware":
    for op in ("read", "write", "write_chain"):
        base_op = "write" if op == "write_chain" else op
        base = med.get(f"none_{base_op}", med.get(f"none/{base_op}"))
        ours = med.get(f"sealed_session_{op}", med.get(f"sealed_session/{op}"))
        poem = med.get(f"poem_cookie_session_{op}", med.get(f"poem_cookie_session/{op}"))
        if None in (base, ours, poem):
            continue
        added_ours, added_poem = ours - base, poem - base
        print(f"{op}: sealed-session adds {added_ours:.0f} ns, Poem CookieSession adds "
              f"{added_poem:.0f} ns; ratio {added_ours / added_poem:.2f} (target <= 0.50)")
    # The same read with the CPU caches evicted before each request, as in a server.
    cold = [med.get(f"{v}_read_cold", med.get(f"{v}/read_cold")) for v in ("none", "sealed_session")]
    hot = [med.get(f"{v}_read", med.get(f"{v}/read")) for v in ("none", "sealed_session")]
    if None not in cold + hot:
        print(f"read, caches evicted: sealed-session adds {cold[1] - cold[0]:.0f} ns "
              f"({hot[1] - hot[0]:.0f} ns in a loop that keeps them)")
if group == "jwt":
    algs = sorted({k.split(os.sep)[0] for k in med})
    for a in algs:
        get = lambda f: med.get(os.path.join(a, f))
        mw, bare, enc, dec = (get("middleware_request"), get("no_session_request"),
                              get("raw_encode"), get("raw_decode"))
        if None in (mw, bare, enc, dec):
            continue
        print(f"{a}: middleware adds {mw - bare:.0f} ns, raw decode + encode {enc + dec:.0f} ns; "
              f"ratio {(mw - bare) / (enc + dec):.2f} (target <= 1.30)")
