"""herald-client's cost and reach, measured with `herald bench` (see compare-clusters.sh).

Three `herald serve` processes are three clusters. Each round runs, in turn:
  plain    async-nats, one connection to server 1                (--server)
  one      herald-client with server 1 as its only cluster       (--cluster a=...)
  three    herald-client over the three servers                  (--cluster a=.. b=.. c=..)
each publishing MSGS messages of SIZE bytes from one task to spread.0 .. spread.1023 in turn
(publish-only, then with one subscriber of spread.> on every cluster). `one` against `plain` is the client's own cost per
message; `three` is the aggregate over three clusters. Medians of ROUNDS alternating rounds.
"""

import json
import os
import statistics
import subprocess
import sys

HERALD = sys.argv[1]
ROUNDS = int(os.environ.get("ROUNDS", "5"))
MSGS = int(os.environ.get("MSGS", "1000000"))
SIZE = int(os.environ.get("SIZE", "16"))


def serve():
    p = subprocess.Popen(
        [HERALD, "serve", "--listen", "127.0.0.1:0", "--http", "", "--log", "warn"],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in p.stdout:
        if line.startswith("listening nats "):
            return p, "nats://" + line.split()[2]
    raise SystemExit("herald serve did not start")


def bench(flags, subs):
    out = subprocess.run(
        [HERALD, "bench", "spread", "--msgs", str(MSGS), "--size", str(SIZE), "--subs", str(subs),
         "--subjects", "1024", "--json"]
        + flags,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    r = json.loads(out)
    return r["publish_rate"], r.get("deliver_rate", 0.0)


def main():
    servers = [serve() for _ in range(3)]
    urls = [u for _, u in servers]
    shapes = {
        "plain": ["--server", urls[0]],
        "one": ["--cluster", "a=" + urls[0]],
        "three": sum((["--cluster", f"{n}={u}"] for n, u in zip("abc", urls)), []),
    }
    results = {}
    try:
        for subs in (0, 1):
            for _ in range(ROUNDS):
                for shape, flags in shapes.items():
                    results.setdefault((shape, subs), []).append(bench(flags, subs))
    finally:
        for p, _ in servers:
            p.terminate()
            p.wait()
    print(f"{ROUNDS} rounds, {MSGS} messages of {SIZE} B, one publishing task; medians")
    print(f"{'shape':8} {'subs':>4} {'publish/s':>12} {'deliver/s':>12}")
    med = {}
    for (shape, subs), runs in results.items():
        pub = statistics.median(r[0] for r in runs)
        dlv = statistics.median(r[1] for r in runs)
        med[(shape, subs)] = (pub, dlv)
        print(f"{shape:8} {subs:>4} {pub:>12,.0f} {dlv:>12,.0f}")
    for subs in (0, 1):
        plain, one, three = (med[(s, subs)][0] for s in ("plain", "one", "three"))
        print(
            f"subs={subs}: herald-client one cluster / async-nats = {one / plain:.3f} "
            f"(cost {100 * (1 - one / plain):+.1f} %), three clusters / one = {three / one:.2f}"
        )


main()
