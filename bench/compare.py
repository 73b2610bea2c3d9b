#!/usr/bin/env python3
"""Runs `herald bench` against herald and nats-server, alternating, and prints medians.

Usage: compare.py HERALD_BINARY NATS_SERVER_BINARY   (bench/compare.sh sets this up)

Environment:
  ROUNDS=N        measurements per row and server (default 3); the median is reported
  ONLY=single     only the single-server table
  ONLY=cluster    only the 3-node cluster table
  ONLY=js         only the JetStream table (streams on disk); ROWS=TEXT: only its rows
                  whose name has TEXT (and no restart row)
  ONLY=perms      only the permissions table (not in the default run)
  ONLY=tls        only the TLS table (not in the default run)

Single server: both servers run at the same time on free loopback ports; each row is measured
ROUNDS times per server, herald and nats-server in turn, and the median is reported with the
server's CPU (cores) over the run.

Cluster (after the single-server rows): three herald nodes (b and c seeded with a's cluster
address, one secret) and three nats-server nodes (a full mesh of routes, one cluster name),
all running at once. Before measuring, every herald node must answer
$HERALD.API.CLUSTER.FLUSH {"peers":2} and every nats-server must list 2 routes in /routez.
Each row publishes on node A with one subscriber on B and one on C (`herald bench --server A
--sub-server B,C`, whose warm-up waits until A forwards to both); it reports delivered msgs/s,
p99 latency, and each node's CPU (cores, A/B/C) over the run.

JetStream (after the cluster rows): herald serve --data-dir with --fsync 2m and with --fsync
always, and nats-server -js -sd with its defaults, all running at once on fresh data
directories. nats-server 2.9.10 writes each stored message to its block file before the ack
and fsyncs a stream's files in the background every 2 minutes (SyncInterval set in
server/stream.go; the sync_interval setting and its "always" came with 2.10, and 2.9.10
rejects both the config field and a flag), so herald --fsync 2m is the matching durability;
--fsync always (acked means on disk) has no nats-server 2.9 counterpart and is reported
separately. Rows: `herald bench --mode js-pub` with 1 and with 256 publishes awaiting their
ack, `--mode js-consume` (durable pull consumer, batches of 256, an ack per message), the
windowed publish and the consume again with `--raw` (the timed part on the raw client, so that
the server and not async-nats is the bottleneck), and the
restart time with 1 M messages stored: prefill 1 M messages of 16 B (256 in flight), stop the
server with SIGTERM, start it again on the same data directory and time from the start of
the process until $JS.API.STREAM.INFO reports 1 M messages (polled every 5 ms over a fresh
connection, 120 s at most).

Ratios are herald / nats-server (for latency and memory, nats-server / herald, so > 1 means
herald is better everywhere). Every server process is stopped at the end, also on errors.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROUNDS = int(os.environ.get("ROUNDS", "3"))
ONLY = os.environ.get("ONLY", "")
CLUSTER_SECRET = "compare-secret"

# Every server process started, so that all of them are stopped at the end.
PROCESSES = []


def spawn(cmd, **kwargs):
    """Starts a process and records it for stop_all()."""
    proc = subprocess.Popen(cmd, text=True, **kwargs)
    PROCESSES.append(proc)
    return proc


def stop(proc):
    """Stops one process: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in PROCESSES:
        PROCESSES.remove(proc)


def stop_all():
    for proc in list(PROCESSES):
        stop(proc)


def read_addresses(stream, patterns, name):
    """Reads lines until each regex of `patterns` has matched, in order; returns group 1 of
    each."""
    found = []
    deadline = time.monotonic() + 30
    while len(found) < len(patterns) and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        m = re.search(patterns[len(found)], line)
        if m:
            found.append(m.group(1))
    if len(found) < len(patterns):
        raise SystemExit(f"{name} did not report its port(s)")
    return found


def start(cmd, from_stderr, pattern, name):
    """Starts a server and reads its listening address from its output."""
    proc = spawn(
        cmd,
        stdout=None if from_stderr else subprocess.PIPE,
        stderr=subprocess.PIPE if from_stderr else None)
    stream = proc.stderr if from_stderr else proc.stdout
    return proc, "nats://" + read_addresses(stream, [pattern], name)[0]


def start_herald(binary):
    return start([binary, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--log", "warn"],
                 False, r"listening nats (\S+)", "herald serve")


def start_nats(binary):
    return start([binary, "-a", "127.0.0.1", "-p", "-1"],
                 True, r"Listening for client connections on (\S+)", "nats-server")


def bench(herald, url, pid, args):
    pid_args = ["--server-pid", str(pid)] if pid else []
    out = subprocess.run(
        [herald, "bench", "--json", "--server", url] + pid_args + args,
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


def single_server(herald_bin, nats_bin, version):
    """The single-server table: every row against one herald and one nats-server."""
    herald, herald_url = start_herald(herald_bin)
    nats, nats_url = start_nats(nats_bin)
    servers = [("herald", herald_url, herald.pid), ("nats-server", nats_url, nats.pid)]
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
                for label, start_server, binary in [("herald", start_herald, herald_bin), ("nats-server", start_nats, nats_bin)]:
                    proc, url = start_server(binary)
                    results[label].append(bench(herald_bin, url, proc.pid, args))
                    stop(proc)
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
        stop(proc)


PERMS_PASSWORD = "bench-password"


def perms(herald_bin, nats_bin, version):
    """Raw fan-out with and without a permission-restricted user, on both servers.

    The user may publish `bench` and `_INBOX.>` but not `bench.secret.>`, and subscribe to
    anything but `admin.>`: every publish and every subscription is checked, and the
    subscriptions overlap no denied subject (no delivery filter). Rows are measured on four
    servers running at once: herald and nats-server, each open and with the user."""
    root = tempfile.mkdtemp(prefix="perms-")
    hashed = subprocess.run([herald_bin, "passwd"], input=PERMS_PASSWORD + "\n",
                            capture_output=True, text=True, check=True).stdout.strip()
    herald_conf = os.path.join(root, "herald.toml")
    with open(herald_conf, "w") as f:
        f.write(f"""[[users]]
user = "bench"
password = "{hashed}"
scope = "default"
[users.permissions]
publish = {{ allow = ["bench", "_INBOX.>", "_test.>"], deny = ["bench.secret.>"] }}
subscribe = {{ allow = [">"], deny = ["admin.>"] }}
""")
    nats_conf = os.path.join(root, "nats.conf")
    with open(nats_conf, "w") as f:
        f.write(f"""authorization {{
  users = [
    {{user: bench, password: "{PERMS_PASSWORD}", permissions: {{
      publish: {{allow: ["bench", "_INBOX.>", "_test.>"], deny: ["bench.secret.>"]}},
      subscribe: {{allow: [">"], deny: ["admin.>"]}}
    }}}}
  ]
}}
""")
    herald_open, herald_open_url = start_herald(herald_bin)
    herald_auth, herald_auth_url = start([herald_bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--log", "warn",
                                          "--config", herald_conf], False, r"listening nats (\S+)", "herald serve")
    nats_open, nats_open_url = start_nats(nats_bin)
    nats_auth, nats_auth_url = start([nats_bin, "-a", "127.0.0.1", "-p", "-1", "-c", nats_conf],
                                     True, r"Listening for client connections on (\S+)", "nats-server")
    creds = ["--user", "bench", "--password", PERMS_PASSWORD]
    servers = [("herald", herald_open_url, herald_open.pid, []),
               ("herald+perms", herald_auth_url, herald_auth.pid, creds),
               ("nats", nats_open_url, nats_open.pid, []),
               ("nats+perms", nats_auth_url, nats_auth.pid, creds)]
    print(f"\npermissions: herald vs {version}, {ROUNDS} round(s), medians, raw client, 16 B\n")
    print("| row | herald | herald+perms | cost | nats | nats+perms | herald+perms / nats+perms |")
    print("|---|---|---|---|---|---|---|")
    for subs, msgs in [(0, 2_000_000), (1, 2_000_000), (10, 500_000)]:
        args = ["--raw", "--size", "16", "--msgs", str(msgs), "--subs", str(subs)]
        key = "deliver_rate" if subs else "publish_rate"
        results = {label: [] for label, _, _, _ in servers}
        for _ in range(ROUNDS):
            for label, url, pid, extra in servers:
                results[label].append(bench(herald_bin, url, pid, args + extra))
        errors = [r["error"] for rs in results.values() for r in rs if "error" in r]
        if errors:
            print(f"| 1 → {subs} | error: {errors[0][:100]} | | | | | |")
            continue
        v = {label: median(rs, key) for label, rs in results.items()}
        print(f"| 1 → {subs} ({'delivered' if subs else 'published'}/s) | {v['herald']:,.0f} | {v['herald+perms']:,.0f} | "
              f"{v['herald+perms'] / v['herald']:.2f} | {v['nats']:,.0f} | {v['nats+perms']:,.0f} | "
              f"**{v['herald+perms'] / v['nats+perms']:.2f}** |")
        sys.stdout.flush()
    for proc in (herald_open, herald_auth, nats_open, nats_auth):
        stop(proc)


def make_certs(root):
    """A CA and a server certificate for 127.0.0.1 (openssl), as PEM files in root."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem", "-out", "server.csr",
        "-subj", "/CN=bench server")
    with open(os.path.join(root, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "1", "-extfile", "ext")
    return tuple(os.path.join(root, n) for n in ("ca.pem", "server.pem", "server-key.pem"))


def tls_table(herald_bin, nats_bin, version):
    """Raw fan-out, async-nats and request/reply rows with TLS on both servers, same certificates."""
    root = tempfile.mkdtemp(prefix="tls-")
    ca, cert, key = make_certs(root)
    herald_conf = os.path.join(root, "herald.toml")
    with open(herald_conf, "w") as f:
        f.write(f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    nats_conf = os.path.join(root, "nats.conf")
    with open(nats_conf, "w") as f:
        f.write(f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n}}\n')
    herald, herald_url = start([herald_bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                                "--log", "warn", "--config", herald_conf],
                               False, r"listening nats (\S+)", "herald serve")
    nats, nats_url = start([nats_bin, "-a", "127.0.0.1", "-p", "-1", "-c", nats_conf],
                           True, r"Listening for client connections on (\S+)", "nats-server")
    servers = [("herald", herald_url.replace("nats://", "tls://"), herald.pid),
               ("nats-server", nats_url.replace("nats://", "tls://"), nats.pid)]
    rows = [(f"raw TLS, 16 B, 1 → {subs}", ["--raw", "--size", "16", "--msgs", str(n), "--subs", str(subs)],
             "deliver_rate" if subs else "publish_rate")
            for subs, n in [(0, 2_000_000), (1, 2_000_000), (10, 500_000)]]
    rows.append(("async-nats TLS, 16 B, 1 → 1", ["--size", "16", "--msgs", "500000", "--subs", "1"], "deliver_rate"))
    rows.append(("request/reply TLS, 16 B", ["--request", "--subs", "1", "--msgs", "20000"], "publish_rate"))
    # The floor under the 1-in-flight request row: a request is two of these trips (requester
    # to responder, responder back), each through the same server.
    rows.append(("round trip TLS, async-nats, 1 in flight (message to its own subscription)",
                 ["--ping", "--msgs", "20000"], "publish_rate"))
    rows.append(("raw request/reply TLS, 16 B, 256 in flight",
                 ["--request", "--raw", "--subs", "1", "--msgs", "500000", "--inflight", "256"], "publish_rate"))
    print(f"\nTLS: herald vs {version}, {ROUNDS} round(s), medians; client CPU: the bench client's own\n")
    print("| row | herald | nats-server | ratio | herald CPU | nats CPU | client CPU (herald / nats) |")
    print("|---|---|---|---|---|---|---|")
    for name, args, key in rows:
        results = {label: [] for label, _, _ in servers}
        for _ in range(ROUNDS):
            for label, url, pid in servers:
                results[label].append(bench(herald_bin, url, pid, args + ["--tls-ca", ca]))
        errors = [f"{label}: {r['error']}" for label, rs in results.items() for r in rs if "error" in r]
        h, n = results["herald"], results["nats-server"]
        hv, nv = median(h, key), median(n, key)
        if hv is None or nv is None:
            print(f"| {name} | error: {errors[0][:100]} | | | | |")
            continue
        if errors:
            print(f"| {name}: {len(errors)} failed round(s), first: {errors[0][:80]} | | | | | |")
        cpu = lambda rs, key="server_cpu_cores": f"{median(rs, key):.2f}" if median(rs, key) is not None else ""
        print(f"| {name} ({key.replace('_', ' ')}/s) | {hv:,.0f} | {nv:,.0f} | **{hv / nv:.2f}** | {cpu(h)} | {cpu(n)} "
              f"| {cpu(h, 'client_cpu_cores')} / {cpu(n, 'client_cpu_cores')} |")
        sys.stdout.flush()
    for proc in (herald, nats):
        stop(proc)


def free_port():
    """A port that was free a moment ago (bound to port 0 and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_herald_cluster(binary):
    """Three herald nodes, b and c seeded with a's cluster address; returns [(proc, url)]."""
    nodes, seeds = [], []
    for name in "abc":
        cmd = [binary, "serve", "--http", "127.0.0.1:0", "--name", name, "--listen", "127.0.0.1:0", "--log", "warn",
               "--cluster-listen", "127.0.0.1:0", "--cluster-secret", CLUSTER_SECRET]
        if seeds:
            cmd += ["--seeds", ",".join(seeds)]
        proc = spawn(cmd, stdout=subprocess.PIPE)
        cluster, nats = read_addresses(
            proc.stdout, [r"listening cluster (\S+)", r"listening nats (\S+)"], f"herald node {name}")
        seeds = seeds or [cluster]
        nodes.append((proc, "nats://" + nats))
    for _, url in nodes:
        wait_herald_routes(binary, url)
    return nodes


def wait_herald_routes(binary, url):
    """Waits until the node routes to both others and they know its subscriptions."""
    deadline = time.monotonic() + 30
    answer = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            [binary, "req", "$HERALD.API.CLUSTER.FLUSH", '{"peers":2}', "--server", url,
             "--timeout", "10s"], capture_output=True, text=True, timeout=30)
        answer = out.stdout.strip() or out.stderr.strip()
        if out.returncode == 0 and answer == "{}":
            return
        time.sleep(0.2)
    raise SystemExit(f"herald node {url} has no routes to 2 peers: {answer}")


def start_nats_cluster(binary, log):
    """Three nats-server nodes with a full mesh of routes; returns [(proc, url)]."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    nodes = []
    for i, (client, cluster, monitor) in enumerate(ports):
        routes = ",".join(f"nats://127.0.0.1:{c}" for j, (_, c, _) in enumerate(ports) if j != i)
        proc = spawn([binary, "-a", "127.0.0.1", "-p", str(client), "-m", str(monitor),
                      "-n", f"nats-{'abc'[i]}", "--cluster_name", "compare",
                      "--cluster", f"nats://127.0.0.1:{cluster}", "--routes", routes],
                     stdout=log, stderr=log)
        nodes.append((proc, f"nats://127.0.0.1:{client}"))
    for _, _, monitor in ports:
        wait_nats_routes(monitor)
    return nodes


def wait_nats_routes(monitor):
    """Waits until the node's /routez lists routes to both others."""
    deadline = time.monotonic() + 30
    routes = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/routez", timeout=5) as r:
                routes = json.load(r).get("num_routes")
            if routes == 2:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nats-server (monitor port {monitor}) has {routes} routes, not 2")


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (fields after the last ')' of stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cluster_bench(herald_bin, nodes, args):
    """One `herald bench` with the publisher on node A and subscribers on B and C, and each
    node's CPU over it (cores)."""
    pids = [proc.pid for proc, _ in nodes]
    before, started = [cpu_ticks(p) for p in pids], time.monotonic()
    result = bench(herald_bin, nodes[0][1], None,
                   args + ["--sub-server", f"{nodes[1][1]},{nodes[2][1]}"])
    wall = time.monotonic() - started
    ticks = os.sysconf("SC_CLK_TCK")
    result["node_cpu"] = [(cpu_ticks(p) - b) / ticks / wall for p, b in zip(pids, before)]
    return result


def cluster(herald_bin, nats_bin, version):
    """The cluster table: publisher on node A, one subscriber on B and one on C."""
    with tempfile.TemporaryFile("w+") as log:
        clusters = {"herald": start_herald_cluster(herald_bin),
                    "nats-server": start_nats_cluster(nats_bin, log)}
        rows = []
        for client in ["raw", "async-nats"]:
            for size, msgs in [(16, 2_000_000), (1024, 500_000)]:
                n = msgs if client == "raw" else msgs // 4
                args = ["--size", str(size), "--msgs", str(n), "--subs", "2"]
                if client == "raw":
                    args.append("--raw")
                rows.append((f"{client}, {size} B, A → B + C", args))

        print(f"\nCluster of 3 nodes: herald vs {version}, {ROUNDS} round(s) each, medians; "
              "ratio > 1: herald better; CPU in cores of nodes A/B/C\n")
        print("| row | herald | nats-server | ratio | herald CPU A/B/C | nats CPU A/B/C |")
        print("|---|---|---|---|---|---|")
        for name, args in rows:
            results = {label: [] for label in clusters}
            for _ in range(ROUNDS):
                for label, nodes in clusters.items():
                    results[label].append(cluster_bench(herald_bin, nodes, args))
            print_cluster_rows(name, results)
            sys.stdout.flush()
        for nodes in clusters.values():
            for proc, _ in nodes:
                stop(proc)


def print_cluster_rows(name, results):
    """Two table rows for one cluster measurement: delivered msgs/s and p99 latency."""
    errors = [r["error"] for rs in results.values() for r in rs if "error" in r]
    if errors:
        print(f"| {name} | error: {errors[0][:80]} | | | | |")
        return
    h, n = results["herald"], results["nats-server"]
    cpu = lambda rs: "/".join(f"{statistics.median(r['node_cpu'][i] for r in rs):.2f}" for i in range(3))
    lost = [f"{r['expected'] - r['received']:,} lost" for rs in (h, n) for r in rs if r["received"] < r["expected"]]
    note = f" ⚠ {', '.join(lost)}" if lost else ""
    hv, nv = median(h, "deliver_rate"), median(n, "deliver_rate")
    print(f"| {name} (delivered/s){note} | {hv:,.0f} | {nv:,.0f} | {hv / nv:.2f} | {cpu(h)} | {cpu(n)} |")
    hv, nv = p99(h), p99(n)
    print(f"| {name} (p99 µs) | {hv:,} | {nv:,} | {nv / hv:.2f} | | |")


JS_STREAM = "HERALD_BENCH"
JS_SUBJECT = "bench.js"
RESTART_MSGS = 1_000_000


def js_servers(herald_bin, nats_bin, root):
    """herald with --fsync 2m, nats-server -js, herald with --fsync always, each on a fresh data
    directory under `root`; returns [(label, proc, url)]."""
    servers = []
    for label, fsync in [("herald", "2m"), ("nats-server", None), ("herald always", "always")]:
        data = os.path.join(root, label.replace(" ", "-"))
        if fsync:
            proc, url = start([herald_bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--log", "warn",
                               "--data-dir", data, "--fsync", fsync],
                              False, r"listening nats (\S+)", "herald serve")
        else:
            proc, url = start([nats_bin, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", data],
                              True, r"Listening for client connections on (\S+)", "nats-server")
        servers.append((label, proc, url))
    return servers


def js(herald_bin, nats_bin, version):
    """The JetStream table: publish with acks, pull-consume, restart with 1 M messages."""
    rows = [
        ("js publish, 16 B, 1 in flight", ["--mode", "js-pub", "--inflight", "1", "--msgs", "10000"]),
        ("js publish, 16 B, 256 in flight", ["--mode", "js-pub", "--inflight", "256", "--msgs", "200000"]),
        ("js consume, 16 B, batches of 256", ["--mode", "js-consume", "--batch", "256", "--msgs", "200000"]),
        ("js publish, 16 B, 256 in flight, raw client",
         ["--mode", "js-pub", "--raw", "--inflight", "256", "--msgs", "300000"]),
        ("js consume, 16 B, batches of 256, raw client",
         ["--mode", "js-consume", "--raw", "--batch", "256", "--msgs", "300000"]),
        ("js push consumer, 16 B, no acks", ["--mode", "js-push", "--msgs", "300000"]),
        ("js push consumer, 16 B, no acks, flow control",
         ["--mode", "js-push", "--flow-control", "--msgs", "300000"]),
        ("js push consumer, 16 B, no acks, flow control, raw client",
         ["--mode", "js-push", "--raw", "--flow-control", "--msgs", "1000000"]),
        ("js push consumer, 16 B, no acks, raw client",
         ["--mode", "js-push", "--raw", "--msgs", "1000000"]),
        ("js ordered consumer, 16 B, 1 M message stream", ["--mode", "js-ordered", "--msgs", "1000000"]),
        ("js ordered consumer, 16 B, 1 M message stream, raw client",
         ["--mode", "js-ordered", "--raw", "--msgs", "1000000"]),
        ("kv put, 16 B, 1 in flight", ["--mode", "kv-put", "--inflight", "1", "--msgs", "10000"]),
        ("kv put, 16 B, 256 in flight", ["--mode", "kv-put", "--inflight", "256", "--msgs", "200000"]),
        ("kv get, 16 B, 1 in flight", ["--mode", "kv-get", "--inflight", "1", "--msgs", "20000"]),
        ("kv get, 16 B, 256 in flight", ["--mode", "kv-get", "--inflight", "256", "--msgs", "200000"]),
        ("kv put, 16 B, 256 in flight, raw client",
         ["--mode", "kv-put", "--raw", "--inflight", "256", "--msgs", "300000"]),
        ("kv get, 16 B, 256 in flight, raw client",
         ["--mode", "kv-get", "--raw", "--inflight", "256", "--msgs", "300000"]),
        ("kv put, 16 B, 1 in flight, raw client",
         ["--mode", "kv-put", "--raw", "--inflight", "1", "--msgs", "20000"]),
        ("kv get, 16 B, 1 in flight, raw client",
         ["--mode", "kv-get", "--raw", "--inflight", "1", "--msgs", "50000"]),
        # The floor under the 1-in-flight rows: the cheapest exchange each server answers.
        ("round-trip floor, 1 in flight: PING/PONG, raw client", ["--ping", "--raw", "--msgs", "30000"]),
        ("round-trip floor, 1 in flight: a message to its own subscription (async-nats)",
         ["--ping", "--msgs", "20000"]),
        # The floor under the async-nats kv get row: what a kv get is to the client (a
        # request and its reply) answered by a raw responder instead of JetStream.
        ("request floor, 256 in flight: async-nats requests, raw responder",
         ["--request", "--subs", "1", "--inflight", "256", "--msgs", "200000"]),
    ]
    only = os.environ.get("ROWS")  # e.g. ROWS=kv: the rows whose name has it
    rows = [r for r in rows if not only or only.lower() in r[0].lower()]
    print(f"\nJetStream, file storage: herald (--fsync 2m) vs {version} (-js: fsync every 2 min), "
          f"{ROUNDS} round(s) each, medians; ratio > 1: herald better; "
          "herald --fsync always reported separately\n")
    print("| row | herald (fsync 2m) | nats-server | ratio | herald (fsync always) | always / nats | herald CPU | nats CPU "
          "| client CPU (herald / nats) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="herald-compare-js-") as root:
        servers = js_servers(herald_bin, nats_bin, root)
        for name, args in rows:
            args = [JS_SUBJECT, "--size", "16", "--stream", JS_STREAM] + args
            results = {label: [] for label, _, _ in servers}
            for _ in range(ROUNDS):
                for label, proc, url in servers:
                    results[label].append(bench(herald_bin, url, proc.pid, args))
            print_js_rows(name, args, results)
            sys.stdout.flush()
        for _, proc, _ in servers:
            stop(proc)
        if not os.environ.get("ROWS"):
            print_restart_row(herald_bin, nats_bin, root)


def print_js_rows(name, args, results):
    """A rate row (and for publishes an ack latency row) of the JetStream table."""
    errors = [f"{label}: {r['error']}" for label, rs in results.items() for r in rs if "error" in r]
    if errors:
        print(f"| {name} | error: {errors[0][:120]} | | | | | | |")
        return
    h, n, a = results["herald"], results["nats-server"], results["herald always"]
    cpu = lambda rs, key="server_cpu_cores": f"{median(rs, key):.2f}" if median(rs, key) is not None else ""
    consume = any(m in args for m in ("js-consume", "js-push", "js-ordered", "kv-get"))
    if "--ping" in args:
        key, unit = "publish_rate", "round trips/s"
    elif "--request" in args:
        key, unit = "publish_rate", "requests/s"
    elif "kv-get" in args:
        key, unit = "deliver_rate", "gets/s"
    elif consume:
        key, unit = "deliver_rate", "consumed/s"
    else:
        key, unit = "publish_rate", "acked/s"
    # Latency rows are for publishes with acks (kv puts report none).
    consume = consume or "kv-put" in args or "--request" in args
    hv, nv, av = median(h, key), median(n, key), median(a, key)
    print(f"| {name} ({unit}) | {hv:,.0f} | {nv:,.0f} | {hv / nv:.2f} | {av:,.0f} | {av / nv:.2f} "
          f"| {cpu(h)} | {cpu(n)} | {cpu(h, 'client_cpu_cores')} / {cpu(n, 'client_cpu_cores')} |")
    if not consume and all(r.get("latency_us") for r in h + n + a):
        for q in ("p50", "p99"):
            lat = lambda rs: statistics.median(r["latency_us"][q] for r in rs)
            hv, nv, av = lat(h), lat(n), lat(a)
            what = "latency" if "--ping" in args else "ack latency"
            print(f"| {name} ({what} {q} µs) | {hv:,} | {nv:,} | {nv / hv:.2f} | {av:,} | {nv / av:.2f} | | | |")


def stream_messages(port, timeout=2.0):
    """Messages in the bench stream as $JS.API.STREAM.INFO reports them on 127.0.0.1:`port`, or
    None while the server does not answer that (not listening, JetStream not ready, no
    stream)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            f = s.makefile("rb")
            if not f.readline().startswith(b"INFO"):
                return None
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
                      b"SUB _INBOX.compare.restart 1\r\n"
                      + f"PUB $JS.API.STREAM.INFO.{JS_STREAM} _INBOX.compare.restart 0\r\n\r\n".encode())
            while True:
                line = f.readline()
                if not line or line.startswith(b"-ERR"):
                    return None
                if line.startswith(b"PING"):
                    s.sendall(b"PONG\r\n")
                elif line.startswith(b"HMSG"):  # a status (503 no responders): not ready
                    return None
                elif line.startswith(b"MSG"):
                    body = f.read(int(line.split()[-1]) + 2)[:-2]
                    return json.loads(body).get("state", {}).get("messages")
    except (OSError, ValueError):
        return None


def restart_time(cmd, port, pid_rss):
    """Starts `cmd` and returns (seconds from its start until the bench stream reports
    RESTART_MSGS messages, its RSS in KiB then, the process)."""
    started = time.monotonic()
    proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.monotonic() - started < 120:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited during restart")
        if stream_messages(port) == RESTART_MSGS:
            return time.monotonic() - started, pid_rss(proc.pid), proc
        time.sleep(0.005)
    stop(proc)
    raise SystemExit(f"{cmd[0]} did not report {RESTART_MSGS:,} messages within 120 s")


def wait_port(port):
    """Waits (30 s at most) until 127.0.0.1:`port` accepts connections."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after 30 s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def print_restart_row(herald_bin, nats_bin, root):
    """Restart with 1 M messages: prefill, SIGTERM, start again, time until STREAM.INFO."""
    commands = {
        "herald": lambda port, data: [herald_bin, "serve", "--http", "127.0.0.1:0", "--listen", f"127.0.0.1:{port}",
                                      "--log", "warn", "--data-dir", data, "--fsync", "2m"],
        "nats-server": lambda port, data: [nats_bin, "-a", "127.0.0.1", "-p", str(port),
                                           "-js", "-sd", data],
    }
    times = {label: [] for label in commands}
    rss = {label: [] for label in commands}
    for i in range(ROUNDS):
        for label, command in commands.items():
            port, data = free_port(), os.path.join(root, f"restart-{label}-{i}")
            cmd = command(port, data)
            first = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(port)
            filled = bench(herald_bin, f"nats://127.0.0.1:{port}", None,
                           [JS_SUBJECT, "--mode", "js-pub", "--inflight", "256", "--size", "16",
                            "--msgs", str(RESTART_MSGS), "--stream", JS_STREAM, "--keep"])
            stop(first)
            if "error" in filled:
                print(f"| restart with 1 M messages | error ({label} prefill): {filled['error'][:100]} | | | | | | |")
                return
            seconds, kib, proc = restart_time(cmd, port, rss_kib)
            stop(proc)
            times[label].append(seconds)
            rss[label].append(kib)
            shutil.rmtree(data, ignore_errors=True)
    h, n = statistics.median(times["herald"]), statistics.median(times["nats-server"])
    print(f"| restart with 1 M messages of 16 B (ms until STREAM.INFO) | {h * 1000:,.0f} | {n * 1000:,.0f} "
          f"| {n / h:.2f} | | | | |")
    h, n = statistics.median(rss["herald"]), statistics.median(rss["nats-server"])
    print(f"| restart with 1 M messages of 16 B (RSS MiB after) | {h / 1024:,.0f} | {n / 1024:,.0f} "
          f"| {n / h:.2f} | | | | |")
    sys.stdout.flush()


def main():
    herald_bin, nats_bin = sys.argv[1], sys.argv[2]
    if ONLY not in ("", "single", "cluster", "js", "perms", "tls"):
        raise SystemExit(f"ONLY={ONLY}: expected single, cluster, js, perms or tls")
    version = subprocess.run([nats_bin, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        if ONLY in ("", "single"):
            single_server(herald_bin, nats_bin, version)
        if ONLY in ("", "cluster"):
            cluster(herald_bin, nats_bin, version)
        if ONLY in ("", "js"):
            js(herald_bin, nats_bin, version)
        if ONLY == "perms":
            perms(herald_bin, nats_bin, version)
        if ONLY == "tls":
            tls_table(herald_bin, nats_bin, version)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
