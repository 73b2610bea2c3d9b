#!/usr/bin/env python3
"""JetStream checks driven by the official `nats-py` client (2.16).

Usage: python3 nats_py_jetstream.py nats://127.0.0.1:4222

The server must keep streams (herald serve --data-dir DIR). Prints `ok <check>` per passing
check; exits non-zero on the first failure. Every wait is bounded by nats-py's own timeouts.
"""

import asyncio
import sys

import nats
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError


def expect(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok {what}", flush=True)


async def main(url):
    nc = await nats.connect(url, connect_timeout=5)
    js = nc.jetstream(timeout=5)

    info = await js.add_stream(name="ORDERS", subjects=["orders.>"])
    expect(info.config.name == "ORDERS", "add_stream echoes the config")
    again = await js.add_stream(name="ORDERS", subjects=["orders.>"])
    expect(again.config.subjects == ["orders.>"], "add_stream is idempotent")

    for i in range(1, 6):
        ack = await js.publish(f"orders.{i}", f"order {i}".encode())
        expect(ack.stream == "ORDERS" and ack.seq == i, f"publish ack {i}")
    dup1 = await js.publish("orders.x", b"d", headers={"Nats-Msg-Id": "same"})
    dup2 = await js.publish("orders.x", b"d", headers={"Nats-Msg-Id": "same"})
    expect(dup2.duplicate and dup2.seq == dup1.seq, "Nats-Msg-Id de-duplicates")

    sinfo = await js.stream_info("ORDERS")
    expect(sinfo.state.messages == 6, "stream_info counts the messages")

    psub = await js.pull_subscribe("orders.>", durable="proc", stream="ORDERS")
    msgs = await psub.fetch(3, timeout=2)
    expect([m.data for m in msgs] == [b"order 1", b"order 2", b"order 3"], "fetch 3")
    expect(msgs[0].subject == "orders.1", "deliveries show the stored subject")
    expect(msgs[2].metadata.sequence.stream == 3, "metadata from the ack subject")
    for m in msgs[:2]:
        await m.ack_sync(timeout=2)
    await msgs[2].nak()
    again = await psub.fetch(1, timeout=2)
    expect(again[0].data == b"order 3" and again[0].metadata.num_delivered == 2,
           "a nak is delivered again")
    await again[0].ack()

    cinfo = await js.consumer_info("ORDERS", "proc")
    expect(cinfo.name == "proc" and cinfo.num_ack_pending == 0, "consumer_info")

    try:
        await js.stream_info("NOPE")
        expect(False, "stream_info of a missing stream fails")
    except NotFoundError:
        expect(True, "stream_info of a missing stream raises NotFoundError")

    expect(await js.delete_consumer("ORDERS", "proc"), "delete_consumer")
    expect(await js.delete_stream("ORDERS"), "delete_stream")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
