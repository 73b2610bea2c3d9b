#!/usr/bin/env python3
"""Push consumers, key-value buckets and object stores driven by the official `nats-py`
client: `js.subscribe` (ephemeral, durable, with a queue, ordered), `js.create_key_value`,
`js.create_object_store`.

Usage: python3 nats_py_push.py nats://127.0.0.1:4222

The server must keep streams (herald serve --data-dir DIR). Prints `ok <check>` per passing
check; exits non-zero on the first failure. Every wait is bounded.
"""

import asyncio
import sys

import nats
from nats.js.api import ConsumerConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError


def expect(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok {what}", flush=True)


async def take(sub, n):
    """The next n messages of a subscription, acked."""
    out = []
    for _ in range(n):
        msg = await sub.next_msg(timeout=5)
        await msg.ack()
        out.append(msg.data.decode())
    return out


async def main(url):
    nc = await nats.connect(url, connect_timeout=5)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="PUSH", subjects=["push.>"])
    for i in range(10):
        await js.publish(f"push.{i % 2}", f"m{i}".encode())

    # js.subscribe makes a push consumer by default.
    sub = await js.subscribe("push.>")
    got = await take(sub, 10)
    expect(got == [f"m{i}" for i in range(10)], "ephemeral push subscription reads all")
    info = await sub.consumer_info()
    expect(info.config.deliver_subject, "the consumer is a push consumer")
    await sub.unsubscribe()

    # A durable one resumes where it stopped (what it had pushed to the first subscription
    # and was not acked comes again after the ack wait, as from nats-server).
    sub = await js.subscribe("push.0", durable="evens", config=ConsumerConfig(ack_wait=1))
    got = await take(sub, 3)
    expect(got == ["m0", "m2", "m4"], "durable push subscription with a filter")
    await sub.unsubscribe()
    sub = await js.subscribe("push.0", durable="evens")
    got = await take(sub, 2)
    expect(got == ["m6", "m8"], "durable push subscription resumes")
    await sub.unsubscribe()

    # A queue shares the messages between its members.
    q1 = await js.subscribe("push.>", queue="workers")
    q2 = await js.subscribe("push.>", queue="workers")
    seen = []
    while len(seen) < 10:
        for q in (q1, q2):
            try:
                msg = await q.next_msg(timeout=0.2)
            except nats.errors.TimeoutError:
                continue
            await msg.ack()
            seen.append(msg.data.decode())
    expect(sorted(seen) == sorted(f"m{i}" for i in range(10)), "queue push subscription: each once")

    # Ordered consumer (flow control, heartbeats, no acks).
    sub = await js.subscribe("push.>", ordered_consumer=True)
    got = []
    for _ in range(10):
        msg = await sub.next_msg(timeout=5)
        got.append(msg.data.decode())
    expect(got == [f"m{i}" for i in range(10)], "ordered push subscription")
    await sub.unsubscribe()

    # Key-value.
    kv = await js.create_key_value(bucket="prefs", history=3)
    rev = await kv.put("theme", b"dark")
    entry = await kv.get("theme")
    expect(entry.value == b"dark" and entry.revision == rev, "kv put and get")
    rev2 = await kv.update("theme", b"light", last=rev)
    try:
        await kv.update("theme", b"blue", last=rev)
        expect(False, "kv update with a stale revision is refused")
    except KeyWrongLastSequenceError:
        expect(True, "kv update with a stale revision is refused")
    history = [e.value for e in await kv.history("theme")]
    expect(history == [b"dark", b"light"], "kv history")
    expect(sorted(await kv.keys()) == ["theme"], "kv keys")
    await kv.delete("theme")
    try:
        await kv.get("theme")
        expect(False, "kv delete")
    except KeyNotFoundError:
        expect(True, "kv delete")
    expect(rev2 > rev, "kv revisions grow")

    # Object store.
    obs = await js.create_object_store(bucket="docs")
    data = bytes((i * 7) % 256 for i in range(400_000))
    info = await obs.put("report.bin", data)
    expect(info.size == len(data) and info.chunks > 1, "object put in chunks")
    res = await obs.get("report.bin")
    expect(res.data == data, "object get returns the same bytes (digest checked)")
    await obs.delete("report.bin")
    info = await obs.get_info("report.bin", show_deleted=True)
    expect(info.deleted, "object delete")

    await nc.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=60))
