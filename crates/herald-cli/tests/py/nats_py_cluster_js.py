"""nats-py against three clustered `herald serve` processes with data directories: one
JetStream. A stream created through the first server is published to through the second,
described, consumed and acked through the third, listed everywhere, and deleted; then the
same with a stream of three replicas.

Usage: python3 nats_py_cluster_js.py URL_A URL_B URL_C
"""

import asyncio
import sys

import nats


async def main(a: str, b: str, c: str) -> None:
    na, nb, nc = [await nats.connect(url) for url in (a, b, c)]
    ja, jb, jc = na.jetstream(), nb.jetstream(), nc.jetstream()
    await ja.add_stream(name="EVENTS", subjects=["events.>"])
    # The stream's capture is known to every server before anyone publishes.
    for conn in (na, nb, nc):
        reply = await conn.request("$HERALD.API.CLUSTER.FLUSH", b"", timeout=10)
        assert b"error" not in reply.data, reply.data
    for i in range(5):
        ack = await jb.publish(f"events.{i}", f"e{i}".encode())
        assert (ack.stream, ack.seq) == ("EVENTS", i + 1), ack
    info = await jc.stream_info("EVENTS")
    assert info.state.messages == 5, info
    assert info.cluster is not None and info.cluster.leader, info.cluster
    sub = await jc.pull_subscribe("events.>", durable="py")
    msgs = await sub.fetch(5, timeout=10)
    assert [m.data for m in msgs] == [f"e{i}".encode() for i in range(5)], msgs
    for m in msgs:
        await m.ack_sync()
    consumer = await ja.consumer_info("EVENTS", "py")
    assert consumer.num_ack_pending == 0, consumer
    assert consumer.ack_floor.stream_seq == 5, consumer
    listed = await jb.streams_info()
    assert [s.config.name for s in listed] == ["EVENTS"], listed
    await jc.delete_stream("EVENTS")
    assert await ja.streams_info() == []

    # The same with three replicas: every server holds a copy, the leader reports the others.
    await ja.add_stream(name="ORDERS", subjects=["orders.>"], num_replicas=3)
    for i in range(5):
        ack = await jb.publish(f"orders.{i}", f"o{i}".encode())
        assert (ack.stream, ack.seq) == ("ORDERS", i + 1), ack
    sub = await jc.pull_subscribe("orders.>", durable="py3")
    msgs = await sub.fetch(5, timeout=10)
    assert [m.data for m in msgs] == [f"o{i}".encode() for i in range(5)], msgs
    for m in msgs:
        await m.ack_sync()
    # The followers catch up with the leader's last entries (the consumer's acks) shortly.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        info = await jc.stream_info("ORDERS")
        assert info.config.num_replicas == 3, info.config
        assert info.cluster is not None and info.cluster.leader, info.cluster
        assert len(info.cluster.replicas) == 2, info.cluster
        if all(r.current and not r.offline for r in info.cluster.replicas):
            break
        assert asyncio.get_running_loop().time() < deadline, info.cluster
        await asyncio.sleep(0.05)
    consumer = await ja.consumer_info("ORDERS", "py3")
    assert consumer.ack_floor.stream_seq == 5, consumer
    await ja.delete_stream("ORDERS")
    for conn in (na, nb, nc):
        await conn.close()
    print("nats-py: one JetStream across three servers: ok")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:4]), 50))
