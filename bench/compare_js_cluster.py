"""Three herald nodes against three nats-server nodes with JetStream, same client, same run
(see compare-js-cluster.sh): R1 and R3 streams, publish with acks (1 and 256 in flight)
and pull consume, then the time from kill -9 of an R3 stream's leader to the next
acknowledged publish.

herald twice: `--fsync always` (its default: a replicated stream's Raft log is synced before
an append counts toward the ack) and `--fsync 2m` (synced in the background every 2 minutes,
as nats-server does by default). nats-server: `-js`, its default sync.
Each row creates its stream fresh through the first node and runs `herald bench --mode ..`
against the second (so publishes cross a route to the leader as often as not).
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import compare  # noqa: E402  (the helpers of the single-server comparison)

HERALD, NATS = sys.argv[1], sys.argv[2]
ROUNDS = int(os.environ.get("ROUNDS", "3"))
KILLS = int(os.environ.get("KILLS", "3"))
SECRET = "compare-js-secret"


def herald_cluster(root, fsync="always"):
    """Three herald nodes a, b, c with data directories; returns [(name, proc, url)]."""
    nodes, seeds = [], []
    for name in "abc":
        data = os.path.join(root, f"herald-{fsync}-{name}")
        cmd = [HERALD, "serve", "--http", "", "--name", name, "--listen", "127.0.0.1:0",
               "--log", "warn", "--cluster-listen", "127.0.0.1:0", "--cluster-secret", SECRET,
               "--data-dir", data, "--fsync", fsync, "--bootstrap-expect", "3"]
        if seeds:
            cmd += ["--seeds", ",".join(seeds)]
        proc = compare.spawn(cmd, stdout=subprocess.PIPE)
        cluster, nats = compare.read_addresses(
            proc.stdout, [r"listening cluster (\S+)", r"listening nats (\S+)"], f"herald {name}")
        seeds = seeds or [cluster]
        nodes.append((name, proc, "nats://" + nats))
    for _, _, url in nodes:
        flushed = subprocess.run(
            [HERALD, "req", "$HERALD.API.CLUSTER.FLUSH", '{"peers":2,"meta":3,"timeout_ms":20000}',
             "--server", url, "--timeout", "30s"], capture_output=True, text=True, timeout=60)
        if flushed.stdout.strip() != "{}":
            raise SystemExit(f"herald {url}: no formed cluster: {flushed.stdout}{flushed.stderr}")
    return nodes


def nats_cluster(root):
    """Three nats-server nodes with JetStream and a full mesh of routes."""
    ports = [(compare.free_port(), compare.free_port(), compare.free_port()) for _ in range(3)]
    nodes = []
    log = open(os.path.join(root, "nats.log"), "w")
    for i, (client, cluster, monitor) in enumerate(ports):
        name = f"nats-{'abc'[i]}"
        routes = ",".join(f"nats://127.0.0.1:{c}" for j, (_, c, _) in enumerate(ports) if j != i)
        proc = compare.spawn([NATS, "-a", "127.0.0.1", "-p", str(client), "-m", str(monitor),
                              "-n", name, "--cluster_name", "compare", "-js",
                              "-sd", os.path.join(root, name),
                              "--cluster", f"nats://127.0.0.1:{cluster}", "--routes", routes],
                             stdout=log, stderr=log)
        nodes.append((name, proc, f"nats://127.0.0.1:{client}", monitor))
    for *_, monitor in nodes:
        compare.wait_nats_routes(monitor)
    # JetStream's meta group needs a leader before streams can be made.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{nodes[0][3]}/jsz", timeout=5) as r:
                if json.load(r).get("meta_cluster", {}).get("leader"):
                    return [(n, p, u) for n, p, u, _ in nodes]
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("nats-server's JetStream meta group has no leader")


ROWS = [
    ("R1 publish, 16 B, 1 in flight", "1", ["--mode", "js-pub", "--inflight", "1", "--msgs", "5000"]),
    ("R1 publish, 16 B, 256 in flight", "1", ["--mode", "js-pub", "--inflight", "256", "--msgs", "200000"]),
    ("R1 consume, 16 B, batches of 256", "1", ["--mode", "js-consume", "--batch", "256", "--msgs", "200000"]),
    ("R3 publish, 16 B, 1 in flight", "3", ["--mode", "js-pub", "--inflight", "1", "--msgs", "5000"]),
    ("R3 publish, 16 B, 256 in flight", "3", ["--mode", "js-pub", "--inflight", "256", "--msgs", "100000"]),
    ("R3 consume, 16 B, batches of 256", "3", ["--mode", "js-consume", "--batch", "256", "--msgs", "100000"]),
]


async def failover(nodes, label):
    """Kill -9 of an R3 stream's leader while one publisher writes through another node: the
    seconds until the next acknowledged publish. Restarts nothing (the caller's cluster is
    spent)."""
    import nats  # nats-py

    urls = [u for _, _, u in nodes]
    nc = await nats.connect(servers=urls, connect_timeout=1, reconnect_time_wait=0.05,
                            ping_interval=1, max_outstanding_pings=2)
    js = nc.jetstream(timeout=2)
    try:
        await js.delete_stream("FAILOVER")
    except Exception:
        pass
    await js.add_stream(name="FAILOVER", subjects=["failover.>"], num_replicas=3)
    for _ in range(200):
        await js.publish("failover.x", b"warm")
    info = await js.stream_info("FAILOVER")
    leader = info.cluster.leader
    proc = next(p for n, p, _ in nodes if n == leader)
    killed = time.monotonic()
    proc.kill()
    proc.wait()
    while True:
        try:
            await js.publish("failover.x", b"after", timeout=0.5)
            break
        except Exception:
            await asyncio.sleep(0.01)
            if time.monotonic() - killed > 60:
                raise SystemExit(f"{label}: no ack within 60 s of the kill")
    took = time.monotonic() - killed
    await nc.close()
    return took


def main():
    version = subprocess.run([NATS, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Three nodes each on this machine: herald (--fsync always, and --fsync 2m as "
          f"nats-server syncs) vs {version} (-js); {ROUNDS} round(s), medians; "
          f"ratio > 1: herald better\n")
    print("| row | herald always | herald 2m | nats-server | ratio always | ratio 2m "
          "| p99 µs always / 2m / nats |")
    print("|---|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory(prefix="herald-compare-jsc-") as root:
            clusters = {"herald": herald_cluster(root), "herald 2m": herald_cluster(root, "2m"),
                        "nats-server": nats_cluster(root)}
            only = os.environ.get("ROWS")  # e.g. ROWS=R3: the rows whose name has it
            for name, replicas, args in [r for r in ROWS if not only or only in r[0]]:
                results = {label: [] for label in clusters}
                for _ in range(ROUNDS):
                    for label, nodes in clusters.items():
                        flags = [compare.JS_SUBJECT, "--size", "16", "--stream", "BENCH",
                                 "--replicas", replicas] + args
                        # Created through the first node, measured through the second.
                        results[label].append(compare.bench(HERALD, nodes[1][2], None, flags))
                errors = [f"{label}: {r['error']}" for label, rs in results.items() for r in rs
                          if "error" in r]
                if errors:
                    print(f"| {name} | error: {errors[0][:160]} | | | | | |")
                    continue
                key = "deliver_rate" if "js-consume" in args else "publish_rate"
                unit = "consumed/s" if "js-consume" in args else "acked/s"
                h, n = compare.median(results["herald"], key), compare.median(results["nats-server"], key)
                h2 = compare.median(results["herald 2m"], key)
                p99s = [compare.p99(results[label]) for label in ("herald", "herald 2m", "nats-server")]
                lat = " / ".join(f"{p:,}" for p in p99s) if all(p99s) else "-"
                print(f"| {name} ({unit}) | {h:,.0f} | {h2:,.0f} | {n:,.0f} | {h / n:.2f} "
                      f"| {h2 / n:.2f} | {lat} |")
                sys.stdout.flush()
            compare.stop_all()
        times = {"herald": [], "nats-server": []}  # failover: herald with fsync always
        if not KILLS:
            return
        for _ in range(KILLS):
            for label in times:
                with tempfile.TemporaryDirectory(prefix="herald-compare-jsc-") as root:
                    nodes = herald_cluster(root) if label == "herald" else nats_cluster(root)
                    times[label].append(asyncio.run(failover(nodes, label)))
                    compare.stop_all()
        h = sorted(times["herald"])[len(times["herald"]) // 2]
        n = sorted(times["nats-server"])[len(times["nats-server"]) // 2]
        print(f"| kill -9 of the R3 leader to the next ack (s, {KILLS} kills, median) | {h:.2f} "
              f"| - | {n:.2f} | {n / h:.2f} | - | - |")
        print(f"\nfailover times: herald {[round(t, 2) for t in times['herald']]}, "
              f"nats-server {[round(t, 2) for t in times['nats-server']]}")
    finally:
        compare.stop_all()


if __name__ == "__main__":
    main()
