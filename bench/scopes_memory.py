"""Memory of many scopes: N raw NATS connections, each in a scope of its own (SCOPE=name puts
them all in one), each subscribing, publishing and reading its message back; three rounds of N
fresh scopes, with the server's resident memory while they are open and after they closed.

    python3 bench/scopes_memory.py target/release/herald 19000   # needs ulimit -n > N
"""

import asyncio, subprocess, sys, re, time
HERALD = sys.argv[1]
N = int(sys.argv[2])
import os
SCOPE = os.environ.get("SCOPE")
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
async def tenant(port, i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()
    w.write(f'CONNECT {{"verbose":false,"pedantic":false,"scope":"{SCOPE or f"tenant-{i}"}"}}\r\nSUB news 1\r\nPUB news 5\r\nhello\r\nPING\r\n'.encode())
    await w.drain()
    while True:
        line = await r.readline()
        if line.startswith(b"PONG"): break
        if not line: raise SystemExit(f"closed {i}")
    return w
async def main():
    p = subprocess.Popen([HERALD, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log", "warn", "--max-scopes", "100000", "--max-connections", "100000"], stdout=subprocess.PIPE, text=True)
    port = None
    for line in p.stdout:
        m = re.match(r"listening nats 127.0.0.1:(\d+)", line)
        if m: port = int(m.group(1)); break
    time.sleep(0.3)
    print("idle", rss(p.pid), "KiB")
    for rnd in range(3):
        writers = []
        for start in range(0, N, 500):
            writers += await asyncio.gather(*(tenant(port, rnd * N + i) for i in range(start, min(N, start + 500))))
            print("wave", start, flush=True)
        print(f"round {rnd}: {N} connections open, each its own scope:", rss(p.pid), "KiB")
        for w in writers:
            w.close()
        writers.clear()
        time.sleep(2.5)
        print(f"round {rnd}: after they closed:", rss(p.pid), "KiB")
    p.terminate(); p.wait()
asyncio.run(main())
