#!/usr/bin/env python3
"""HTTP side by side: herald's HTTP door and nginx with Debian's nchan module, same client
(`herald bench --http-pub/--sse`), same machine, alternating, medians.

Usage: compare_http.py HERALD_BINARY NGINX_BINARY NCHAN_MODULE   (bench/compare-http.sh)

Environment: ROUNDS=N (default 3); ROWS=TEXT runs only the rows whose name contains TEXT.

Both servers run at once on free loopback ports. nginx runs 2 worker processes (herald's
runtime uses both cores too), nchan with its memory store, `nchan_message_buffer_length 1000`
(its default of 10 is not the point here) and EventSource subscribers. Rows:
  - HTTP publish: 8 keep-alive connections POST 16-byte messages one request at a time
    (herald: POST /v1/publish/bench; nchan: POST /pub?id=bench), nobody subscribed; once
    with reqwest (what Rust programs use), once with the bench's lean hand-written client
    (`--http-raw`), which leaves the servers more of the machine. nginx may keep a
    connection for any number of requests (`keepalive_requests`), as herald does.
  - The publish rows' floor: the lean client's row again, nginx now answering each POST with
    a bare `return 204` (no nchan, no body kept): what nginx itself costs per request.
  - SSE fan-out: 1,000 event-stream clients (herald: GET /v1/subscribe/fan; nchan:
    GET /sub?id=fan), one or four publishing connections POSTing 32-byte messages, kept
    within 512 messages of the average client; delivered events/s and publish-to-receipt
    latency.
  - Idle SSE: 1,000 open event streams, server memory (RSS of every server process) per stream.
Ratios are herald / nchan (for latency and memory, nchan / herald): > 1 means herald is better.
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "3"))
PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_herald(binary):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log", "warn"],
        stdout=subprocess.PIPE, text=True)
    PROCS.append(proc)
    for line in proc.stdout:
        m = re.match(r"listening http (\S+)", line)
        if m:
            return proc, [proc.pid], "http://" + m.group(1)
    raise SystemExit("herald serve did not report its HTTP address")


NGINX_CONF = """
load_module {module};
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  nchan_message_buffer_length 1000;
  server {{
    listen 127.0.0.1:{port};
    location = /pub {{ nchan_publisher; nchan_channel_id $arg_id; }}
    location = /sub {{ nchan_subscriber eventsource; nchan_channel_id $arg_id; }}
    location = /floor {{ return 204; }}
  }}
}}
"""


def start_nginx(binary, module):
    d = tempfile.mkdtemp(prefix="nchan-")
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(module=module, dir=d, port=port))
    proc = subprocess.Popen([binary, "-c", conf, "-g", "daemon off;"])
    PROCS.append(proc)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise SystemExit("nginx did not start")
    # The master and its workers: memory and CPU are summed over all of them.
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [proc.pid] + [int(p) for p in out.stdout.split()]
    return proc, pids, f"http://127.0.0.1:{port}"


def bench(herald, pids, args):
    out = subprocess.run(
        [herald, "bench", "--json", "--server-pid", ",".join(map(str, pids))] + args,
        capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": (out.stderr.strip() or out.stdout.strip())[-300:]}
    return json.loads(out.stdout)


def median(results, key, sub=None):
    vals = []
    for r in results:
        v = r.get(key)
        if sub and isinstance(v, dict):
            v = v.get(sub)
        if isinstance(v, (int, float)):
            vals.append(v)
    return statistics.median(vals) if vals else None


def fan_out(url, name, pubs):
    """Flags of a fan-out row: `pubs` publishing connections, 1,000 event-stream clients."""
    h = name == "h"
    return ["--http-pub", url + ("/v1/publish/fan" if h else "/pub?id=fan"),
            "--sse", url + ("/v1/subscribe/fan" if h else "/sub?id=fan"),
            "--subs", "1000", "--msgs", str(2000 * pubs), "--size", "32", "--pubs", str(pubs)]


def main():
    herald_bin, nginx_bin, module = sys.argv[1:4]
    try:
        _, hpids, hurl = start_herald(herald_bin)
        _, npids, nurl = start_nginx(nginx_bin, module)
        rows = [
            ("HTTP publish, 8 connections, 16 B", "publish_rate", None,
             lambda u, n: ["--http-pub", u + ("/v1/publish/bench" if n == "h" else "/pub?id=bench"),
                           "--pubs", "8", "--msgs", "100000", "--size", "16"]),
            ("HTTP publish, 8 connections, 16 B, lean client (--http-raw)", "publish_rate", None,
             lambda u, n: ["--http-pub", u + ("/v1/publish/bench" if n == "h" else "/pub?id=bench"),
                           "--http-raw", "--pubs", "8", "--msgs", "200000", "--size", "16"]),
            # The floor of the publish rows: nginx answering a POST with no module at all.
            ("HTTP publish (herald) against nginx's bare `return 204` (no nchan), 8 connections, lean client",
             "publish_rate", None,
             lambda u, n: ["--http-pub", u + ("/v1/publish/bench" if n == "h" else "/floor"),
                           "--http-raw", "--pubs", "8", "--msgs", "200000", "--size", "16"]),
            ("SSE fan-out, 1 pub -> 1,000 clients, 32 B", "deliver_rate", "p99",
             lambda u, n: fan_out(u, n, 1)),
            ("SSE fan-out, 4 pubs -> 1,000 clients, 32 B", "deliver_rate", "p99",
             lambda u, n: fan_out(u, n, 4)),
            ("Idle SSE streams: KiB of server memory each (1,000), fresh servers", "rss_per_idle_conn_kib", None,
             lambda u, n: ["--sse", u + ("/v1/subscribe/idle" if n == "h" else "/sub?id=idle"),
                           "--idle", "1000"]),
        ]
        print(f"rounds: {ROUNDS}; herald {hurl}, nginx+nchan {nurl} ({module})\n")
        print("| row | herald | nginx+nchan | herald / nchan | herald p50/p99 µs | nchan p50/p99 µs "
              "| server CPU (cores) herald / nchan | of it in the kernel | client CPU (cores) herald / nchan |")
        print("|---|---|---|---|---|---|---|---|---|")
        only = os.environ.get("ROWS")  # e.g. ROWS=publish: the rows whose name has it
        for name, key, _, make in rows:
            if only and only.lower() not in name.lower():
                continue
            hres, nres = [], []
            for _ in range(ROUNDS):
                if key == "rss_per_idle_conn_kib":
                    # Memory is measured on fresh servers: a server that served streams
                    # before reuses what they freed, which would flatter either side.
                    _, hpids, hurl = start_herald(herald_bin)
                    _, npids, nurl = start_nginx(nginx_bin, module)
                hres.append(bench(herald_bin, hpids, make(hurl, "h")))
                nres.append(bench(herald_bin, npids, make(nurl, "n")))
            h, n = median(hres, key), median(nres, key)
            errors = ([f"herald: {r['error']}" for r in hres if "error" in r]
                      + [f"nchan: {r['error']}" for r in nres if "error" in r])
            if h is None or n is None:
                print(f"| {name} | {h} | {n} | - | errors: {errors[:2]} | |")
                continue
            ratio = (n / h) if key == "rss_per_idle_conn_kib" else (h / n)
            lat = lambda res: (f"{median(res, 'latency_us', 'p50'):.0f} / {median(res, 'latency_us', 'p99'):.0f}"
                               if median(res, 'latency_us', 'p50') is not None else "")
            cpu = lambda res, key="server_cpu_cores": (f"{median(res, key):.2f}"
                                                       if median(res, key) is not None else "-")
            print(f"| {name} | {h:,.1f} | {n:,.1f} | **{ratio:.2f}** | {lat(hres)} | {lat(nres)} "
                  f"| {cpu(hres)} / {cpu(nres)} | {cpu(hres, 'server_kernel_cores')} / {cpu(nres, 'server_kernel_cores')} "
                  f"| {cpu(hres, 'client_cpu_cores')} / {cpu(nres, 'client_cpu_cores')} |")
            if key == "rss_per_idle_conn_kib":
                ht, nt = median(hres, "server_rss_kib"), median(nres, "server_rss_kib")
                print(f"| server RSS with the 1,000 streams open, KiB | {ht:,.0f} | {nt:,.0f} | **{nt / ht:.2f}** | | | |")
            if errors:
                print(f"|  (errors in some rounds: {errors[:2]}) | | | | | |")
    finally:
        for p in PROCS:
            p.terminate()
        for p in PROCS:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
