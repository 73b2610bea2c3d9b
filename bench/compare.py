#!/usr/bin/env python3
"""Runs `herald bench` against herald and nats-server, alternating, and prints medians.

Usage: compare.py HERALD_BINARY NATS_SERVER_BINARY   (bench/compare.sh sets this up)

Both servers run at the same time on free loopback ports; each row is measured ROUNDS times
(env, default 3) per server, herald and nats-server in turn, and the median is reported with
the server's CPU (cores) over the run. Ratios are herald / nats-server (for latency,
nats-server / herald, so > 1 means herald is better everywhere).
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

ROUNDS = int(os.environ.get("ROUNDS", "3"))


def start(cmd, from_stderr, pattern, name):
    """Starts a server and reads its listening address from its output."""
    proc = subprocess.Popen(
        cmd, text=True,
        stdout=None if from_stderr else subprocess.PIPE,
        stderr=subprocess.PIPE if from_stderr else None)
    stream = proc.stderr if from_stderr else proc.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(pattern, stream.readline())
        if m:
            return proc, "nats://" + m.group(1)
    raise SystemExit(f"{name} did not report its port")


def start_herald(binary):
    return start([binary, "serve", "--listen", "127.0.0.1:0", "--log", "warn"],
                 False, r"listening nats (\S+)", "herald serve")


def start_nats(binary):
    return start([binary, "-a", "127.0.0.1", "-p", "-1"],
                 True, r"Listening for client connections on (\S+)", "nats-server")


def bench(herald, url, pid, args):
    out = subprocess.run(
        [herald, "bench", "--json", "--server", url, "--server-pid", str(pid)] + args,
        capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip() or out.stdout.strip()}
    return json.loads(out.stdout)


def median(results, key):
    values = [r[key] for r in results if key in r and r[key] is not None]
    return statistics.median(values) if values else None


def p99(results):
    values = [r["latency_us"]["p99"] for r in results if r.get("latency_us")]
    return statistics.median(values) if values else None


def main():
    herald_bin, nats_bin = sys.argv[1], sys.argv[2]
    herald, herald_url = start_herald(herald_bin)
    nats, nats_url = start_nats(nats_bin)
    servers = [("herald", herald_url, herald.pid), ("nats-server", nats_url, nats.pid)]
    version = subprocess.run([nats_bin, "--version"], capture_output=True, text=True).stdout.strip()
    rows = []
    for client in ["raw", "async-nats"]:
        for size, msgs in [(16, 2_000_000), (1024, 500_000)]:
            for subs in [0, 1, 10]:
                n = msgs if client == "raw" else msgs // 4
                if subs == 10:
                    n //= 4
                args = ["--size", str(size), "--msgs", str(n), "--subs", str(subs)]
                if client == "raw":
                    args.append("--raw")
                rows.append((f"{client}, {size} B, 1 → {subs}", args, "rate"))
    rows.append(("request/reply, 16 B, 1 requester", ["--request", "--subs", "1", "--msgs", "20000"], "latency"))
    rows.append(("1,000 idle connections", ["--idle", "1000"], "memory"))

    print(f"herald vs {version}, {ROUNDS} round(s) each, medians; ratio > 1: herald better\n")
    print("| row | herald | nats-server | ratio | herald CPU | nats CPU |")
    print("|---|---|---|---|---|---|")
    for name, args, kind in rows:
        results = {label: [] for label, _, _ in servers}
        for _ in range(ROUNDS):
            if kind == "memory":
                # Fresh servers: a heap that earlier rows grew would hide what connections cost.
                for label, start, binary in [("herald", start_herald, herald_bin), ("nats-server", start_nats, nats_bin)]:
                    proc, url = start(binary)
                    results[label].append(bench(herald_bin, url, proc.pid, args))
                    proc.terminate()
                    proc.wait(timeout=10)
                continue
            for label, url, pid in servers:
                results[label].append(bench(herald_bin, url, pid, args))
        errors = [r["error"] for rs in results.values() for r in rs if "error" in r]
        if errors:
            print(f"| {name} | error: {errors[0][:80]} | | | | |")
            continue
        h, n = results["herald"], results["nats-server"]
        cpu = lambda rs: f"{median(rs, 'server_cpu_cores'):.2f}" if median(rs, "server_cpu_cores") is not None else ""
        if kind == "rate":
            key = "deliver_rate" if "--subs" in args and args[args.index("--subs") + 1] != "0" else "publish_rate"
            hv, nv = median(h, key), median(n, key)
            unit = "delivered/s" if key == "deliver_rate" else "published/s"
            print(f"| {name} ({unit}) | {hv:,.0f} | {nv:,.0f} | {hv / nv:.2f} | {cpu(h)} | {cpu(n)} |")
        elif kind == "latency":
            hv, nv = p99(h), p99(n)
            print(f"| {name} (p99 µs) | {hv} | {nv} | {nv / hv:.2f} | {cpu(h)} | {cpu(n)} |")
            hr, nr = median(h, "publish_rate"), median(n, "publish_rate")
            print(f"| {name} (requests/s) | {hr:,.0f} | {nr:,.0f} | {hr / nr:.2f} | | |")
        else:
            hv, nv = median(h, "rss_per_idle_conn_kib"), median(n, "rss_per_idle_conn_kib")
            ratio = f"{nv / hv:.2f}" if hv else "∞"
            print(f"| {name} (KiB each) | {hv:.1f} | {nv:.1f} | {ratio} | | |")
        sys.stdout.flush()
    for proc in (herald, nats):
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
