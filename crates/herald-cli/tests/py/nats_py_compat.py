#!/usr/bin/env python3
"""Compatibility checks for a NATS-protocol server, driven by the official `nats-py` client.

Usage:
    python3 nats_py_compat.py nats://127.0.0.1:4222 [--no-herald-extensions]

Requires `pip install nats-py` (written against 2.16). The server must run without
authentication. Every check runs; each prints `ok   <check>: <detail>` on stdout when it
passes or `FAIL <check>: <reason>` on stderr when it does not. The exit status is 0 only if
every check ran and passed, 1 if any failed, 2 for bad usage or a missing nats-py.

Checks:
  1  pub/sub: payload bytes arrive intact (binary, CRLF and NUL inside, empty, 64 KiB)
  2  wildcards `*` and `>`; two overlapping subscriptions on one connection each get
     exactly one copy
  3  queue groups: 200 messages, a plain subscriber gets 200, two queue members share
     exactly 200 and each gets at least one
  4  request/reply with a responder on another connection
  5  headers: several distinct headers (case kept, values with `:`/spaces/UTF-8) arrive;
     nats-py 2.x takes headers as a dict of str, so multi-valued headers cannot be sent
     with it and are not checked here
  6  no responders: a request nobody listens to fails fast with NoRespondersError
  7  auto-unsubscribe: `unsubscribe(limit=3)` (UNSUB <sid> 3), publish 10, the server
     sends exactly 3; `subscribe(max_msgs=2)` (enforced by nats-py alone) delivers 2
  8  flush; drain of a subscription and of a connection delivers what was pending,
     then closes
  9  scopes (herald extension, skipped with --no-herald-extensions): with no
     authentication configured, herald takes the CONNECT user as the scope; messages
     never cross scopes but reach other clients of the same scope. nats-py sends the
     user of `nats://user:pass@host` as CONNECT `user`, so 9 connects that way;
  9b the same with the password-less form `nats://scopea@host` that herald documents,
     which nats-py (like nats.go) sends as CONNECT `auth_token`, not `user`
  10 echo: a `no_echo=True` connection does not get its own messages; others do

Waiting: every wait is bounded (WAIT seconds; each check by CHECK_BUDGET, the run by
TOTAL_BUDGET) and synchronisation is done with flush() (PING/PONG round trips, see
`sync`), futures and events, never with sleeps. A check that something does NOT arrive
flushes publisher and subscriber and then watches for QUIET seconds.

nats-py enforces some things itself (it drops messages beyond an unsubscribe limit, for
example), which would hide a server that gets them wrong. Each connection therefore
carries a `WireTap` that counts every MSG/HMSG the server sends, per subscription id,
before nats-py filters anything; the checks assert on those wire-level counts too.
"""

import asyncio
import sys
import time
import urllib.parse
from collections import Counter

try:
    import nats
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.nuid import NUID
except ImportError:  # pragma: no cover
    print("nats-py is not installed: pip install nats-py", file=sys.stderr)
    sys.exit(2)

WAIT = 2.0  # longest any single expected event may take
QUIET = 0.1  # how long to watch for a message that must not arrive
CHECK_BUDGET = 5.0  # hard limit per check, in case something hangs despite the above
TOTAL_BUDGET = 20.0  # hard limit for all checks together (a passing run takes ~1.5 s)
USAGE = "usage: nats_py_compat.py nats://HOST:PORT [--no-herald-extensions]"


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


async def sync(nc):
    """flush() used as a barrier: once it returns, the server has processed everything sent
    before it. nats-py 2.16's flush() writes its PING straight to the socket, ahead of
    commands (SUB, UNSUB, PUB) still queued for its flusher task, so a bare flush() can
    return before the server saw a SUB made just before it. Push the queue out first."""
    await asyncio.wait_for(nc._flush_pending(force_flush=True), WAIT)
    await nc.flush(timeout=WAIT)


class WireTap:
    """Counts the MSG/HMSG frames the server sends on one connection, before nats-py
    looks at them (it silently drops messages for subscriptions it has already removed)."""

    def __init__(self, nc):
        self.per_sid = Counter()
        self.changed = asyncio.Event()
        original = nc._process_msg

        async def tapped(sid, subject, reply, data, headers):
            self.per_sid[sid] += 1
            self.changed.set()
            return await original(sid, subject, reply, data, headers)

        nc._process_msg = tapped  # the protocol parser looks the method up on each frame

    def count(self, sub):
        return self.per_sid[sub._id]

    async def assert_count_stays(self, sub, n, conns, what):
        """Round trips on `conns`, then for QUIET seconds `sub` must stay at `n` frames."""
        for nc in conns:
            await sync(nc)
        deadline = time.monotonic() + QUIET
        while True:
            got = self.per_sid[sub._id]
            expect(got == n, f"{what}: server sent {got} messages, expected {n}")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_count(self, sub, n, what):
        """Waits until `n` frames arrived for `sub`, or fails."""
        deadline = time.monotonic() + WAIT
        while self.per_sid[sub._id] < n:
            self.changed.clear()
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self.changed.wait(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise CheckFailed(
                    f"{what}: server sent {self.per_sid[sub._id]} messages, expected {n} "
                    f"within {WAIT}s"
                ) from None


class Inbox:
    """A subscription callback that queues what it gets, with bounded waits."""

    def __init__(self, name):
        self.name = name
        self.queue = asyncio.Queue()
        self.count = 0

    async def cb(self, msg):
        self.count += 1
        self.queue.put_nowait(msg)

    async def next(self, what=None):
        try:
            return await asyncio.wait_for(self.queue.get(), WAIT)
        except asyncio.TimeoutError:
            raise CheckFailed(f"{what or self.name}: no message within {WAIT}s") from None

    async def take(self, n, what=None):
        return [await self.next(f"{what or self.name}: message {i + 1} of {n}") for i in range(n)]

    async def assert_quiet(self, *conns, what=None):
        """Round trips on every connection given, then nothing more may arrive."""
        for nc in conns:
            await sync(nc)
        try:
            extra = await asyncio.wait_for(self.queue.get(), QUIET)
        except asyncio.TimeoutError:
            return
        raise CheckFailed(
            f"{what or self.name}: unexpected extra message on {extra.subject!r}: {extra.data[:60]!r}"
        )


class Harness:
    def __init__(self, url):
        self.url = url
        self.conns = []
        self.async_errors = []

    async def connect(self, url=None, **kwargs):
        async def error_cb(err):
            self.async_errors.append(err)

        nc = await asyncio.wait_for(
            nats.connect(
                url or self.url,
                connect_timeout=WAIT,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=error_cb,
                **kwargs,
            ),
            WAIT + 1,
        )
        nc.tap = WireTap(nc)
        self.conns.append(nc)
        return nc

    def url_with_user(self, user, password=None):
        """argv[1] with `user[:password]@` put in front of the host."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.netloc.rsplit("@", 1)[-1]
        cred = user if password is None else f"{user}:{password}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{cred}@{host}"))

    async def close_all(self):
        for nc in self.conns:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), WAIT)
                except Exception:
                    pass
        self.conns.clear()


def unique(name):
    """A subject prefix no other check (or run) uses."""
    return f"compat.{name}.{NUID().next().decode()}"


# --- 1 ---------------------------------------------------------------------------------

async def check_pubsub(h):
    pub = await h.connect()
    sub_nc = await h.connect()
    subject = unique("pubsub")
    inbox = Inbox("subscriber")
    sub = await sub_nc.subscribe(subject, cb=inbox.cb)
    await sync(sub_nc)

    payloads = [
        b"hello",
        b"line one\r\nline two\r\n",
        b"\x00nul\x00 inside\x00",
        b"PUB fake 3\r\nabc\r\nMSG x 1 3\r\n\r\n",  # protocol-looking text inside a payload
        b"",
        bytes(range(256)),
        bytes((i * 7) % 256 for i in range(64 * 1024)),
        b"\r\n",
    ]
    for p in payloads:
        await pub.publish(subject, p)
    await sync(pub)
    got = await inbox.take(len(payloads), "payload delivery")
    for i, (want, msg) in enumerate(zip(payloads, got)):
        expect(msg.subject == subject, f"message {i}: subject {msg.subject!r} != {subject!r}")
        expect(
            msg.data == want,
            f"payload {i} changed: sent {len(want)} bytes {want[:40]!r}, "
            f"got {len(msg.data)} bytes {msg.data[:40]!r}",
        )
    await inbox.assert_quiet(pub, sub_nc)
    expect(sub_nc.tap.count(sub) == len(payloads), "server sent more frames than messages")
    return f"{len(payloads)} payloads intact (CRLF, NUL, empty, 256 byte values, 64 KiB)"


# --- 2 ---------------------------------------------------------------------------------

async def check_wildcards(h):
    pub = await h.connect()
    nc = await h.connect()
    base = unique("wild")
    star, gt, exact = Inbox("star"), Inbox("gt"), Inbox("exact")
    s_star = await nc.subscribe(f"{base}.*.b", cb=star.cb)
    s_gt = await nc.subscribe(f"{base}.>", cb=gt.cb)
    s_exact = await nc.subscribe(f"{base}.a.b", cb=exact.cb)
    await sync(nc)

    subjects = [f"{base}.a.b", f"{base}.x.b", f"{base}.a", f"{base}.a.b.c", f"{base}.a.c"]
    for i, s in enumerate(subjects):
        await pub.publish(s, str(i).encode())
    await pub.publish(base, b"not matched by base.>")
    await sync(pub)

    def subjects_of(msgs):
        return sorted(m.subject for m in msgs)

    want_star = sorted([f"{base}.a.b", f"{base}.x.b"])
    want_gt = sorted(subjects)
    want_exact = [f"{base}.a.b"]
    got_star = subjects_of(await star.take(len(want_star), "`*` subscription"))
    got_gt = subjects_of(await gt.take(len(want_gt), "`>` subscription"))
    got_exact = subjects_of(await exact.take(1, "literal subscription"))
    await star.assert_quiet(pub, nc, what="`*` subscription")
    await gt.assert_quiet(pub, nc, what="`>` subscription")
    await exact.assert_quiet(pub, nc, what="literal subscription")
    expect(got_star == want_star, f"`*` got {got_star}, expected {want_star}")
    expect(got_gt == want_gt, f"`>` got {got_gt}, expected {want_gt}")
    expect(got_exact == want_exact, f"literal got {got_exact}, expected {want_exact}")
    # Three overlapping subscriptions matched `base.a.b`; each must have had its own single
    # copy on the wire (frame counts per sid), not one shared or duplicated.
    for sub, n, name in ((s_star, 2, "`*`"), (s_gt, 5, "`>`"), (s_exact, 1, "literal")):
        expect(
            nc.tap.count(sub) == n,
            f"{name} subscription: server sent {nc.tap.count(sub)} frames, expected {n}",
        )
    return "`*` and `>` match as specified; overlapping subscriptions get one copy each"


# --- 3 ---------------------------------------------------------------------------------

async def check_queue_groups(h):
    pub = await h.connect()
    m1_nc = await h.connect()
    m2_nc = await h.connect()
    plain_nc = await h.connect()
    subject = unique("queue")
    members = Inbox("queue members")  # both members feed one queue; .count is the sum
    counts = Counter()

    def member_cb(name):
        async def cb(msg):
            counts[name] += 1
            await members.cb(msg)

        return cb

    plain = Inbox("plain subscriber")
    await m1_nc.subscribe(subject, queue="workers", cb=member_cb("m1"))
    await m2_nc.subscribe(subject, queue="workers", cb=member_cb("m2"))
    await plain_nc.subscribe(subject, cb=plain.cb)
    for nc in (m1_nc, m2_nc, plain_nc):
        await sync(nc)

    n = 200
    for i in range(n):
        await pub.publish(subject, str(i).encode())
    await sync(pub)

    got_plain = await plain.take(n, "plain subscriber")
    got_members = await members.take(n, "queue group (both members together)")
    await plain.assert_quiet(pub, plain_nc)
    await members.assert_quiet(pub, m1_nc, m2_nc, what="queue group")
    expect(
        sorted(int(m.data) for m in got_plain) == list(range(n)),
        "plain subscriber did not get each message once",
    )
    expect(
        sorted(int(m.data) for m in got_members) == list(range(n)),
        "queue group did not get each message exactly once",
    )
    expect(
        counts["m1"] >= 1 and counts["m2"] >= 1,
        f"one member got nothing: split {counts['m1']}/{counts['m2']}",
    )
    return f"plain {n}, queue members {counts['m1']} + {counts['m2']} = {n}"


# --- 4 ---------------------------------------------------------------------------------

async def check_request_reply(h):
    requester = await h.connect()
    responder = await h.connect()
    subject = unique("svc")
    seen_reply_subjects = []

    async def respond(msg):
        seen_reply_subjects.append(msg.reply)
        await msg.respond(b"re:" + msg.data)

    await responder.subscribe(subject, cb=respond)
    await sync(responder)

    for payload in (b"ping", b"", b"bin\x00\r\n"):
        try:
            reply = await requester.request(subject, payload, timeout=WAIT)
        except NatsTimeoutError:
            raise CheckFailed(f"no reply to {payload!r} within {WAIT}s") from None
        expect(reply.data == b"re:" + payload, f"reply {reply.data!r} to {payload!r}")
    expect(all(seen_reply_subjects), "responder saw a request without a reply subject")

    # Several requests in flight at once, all answered to the right caller.
    results = await asyncio.gather(
        *(requester.request(subject, str(i).encode(), timeout=WAIT) for i in range(20))
    )
    expect(
        [r.data for r in results] == [f"re:{i}".encode() for i in range(20)],
        "concurrent requests got mixed up replies",
    )
    return "3 sequential and 20 concurrent requests answered across connections"


# --- 5 ---------------------------------------------------------------------------------

async def check_headers(h):
    pub = await h.connect()
    sub_nc = await h.connect()
    subject = unique("hdr")
    inbox = Inbox("header subscriber")
    await sub_nc.subscribe(subject, cb=inbox.cb)
    await sync(sub_nc)

    headers = {
        "X-Trace-Id": "abc-123",
        "Content-Type": "application/json; charset=utf-8",
        "X-Colon": "a: b: c",
        "X-Unicode": "héllo wörld ✓",
        "lowercase-name": "kept",
        "X-Long": "v" * 2000,
    }
    await pub.publish(subject, b"with headers", headers=headers)
    await pub.publish(subject, b"", headers={"X-Only-Headers": "1"})
    await pub.publish(subject, b"no headers")
    await sync(pub)

    m1, m2, m3 = await inbox.take(3, "messages with headers")
    expect(m1.data == b"with headers", f"payload next to headers changed: {m1.data!r}")
    got = dict(m1.headers or {})
    for k, v in headers.items():
        expect(k in got, f"header {k!r} missing; got {sorted(got)}")
        expect(got[k] == v, f"header {k!r} = {got[k][:60]!r}, expected {v[:60]!r}")
    expect(m2.data == b"", f"empty payload with headers came as {m2.data!r}")
    expect((m2.headers or {}).get("X-Only-Headers") == "1", f"headers {m2.headers}")
    expect(m3.data == b"no headers" and not m3.headers, f"plain message got headers {m3.headers}")
    await inbox.assert_quiet(pub, sub_nc)
    return f"{len(headers)} distinct headers intact; header-only and header-less messages ok"


# --- 6 ---------------------------------------------------------------------------------

async def check_no_responders(h):
    nc = await h.connect()
    subject = unique("nobody")
    timeout = WAIT
    started = time.monotonic()
    try:
        msg = await nc.request(subject, b"anyone?", timeout=timeout)
    except NoRespondersError:
        elapsed = time.monotonic() - started
        expect(
            elapsed < timeout / 3,
            f"NoRespondersError came after {elapsed:.2f}s, not well under the {timeout}s timeout",
        )
        return f"NoRespondersError after {elapsed * 1000:.0f} ms (timeout {timeout}s)"
    except NatsTimeoutError:
        raise CheckFailed(
            f"request timed out after {time.monotonic() - started:.2f}s instead of a "
            "503 no-responders status message"
        ) from None
    raise CheckFailed(f"request to a subject nobody subscribes was answered: {msg}")


# --- 7 ---------------------------------------------------------------------------------

async def check_unsubscribe_after(h):
    pub = await h.connect()
    sub_nc = await h.connect()
    subject = unique("autounsub")
    inbox = Inbox("auto-unsubscribed subscriber")
    sub = await sub_nc.subscribe(subject, cb=inbox.cb)
    await sub.unsubscribe(limit=3)
    await sync(sub_nc)
    for i in range(10):
        await pub.publish(subject, str(i).encode())
    await sync(pub)
    got = await inbox.take(3)
    expect([m.data for m in got] == [b"0", b"1", b"2"], f"got {[m.data for m in got]}")
    await inbox.assert_quiet(pub, sub_nc)
    # nats-py drops extra messages itself; the wire count shows what the server did.
    await sub_nc.tap.assert_count_stays(sub, 3, (pub, sub_nc), "after `UNSUB <sid> 3`")

    # subscribe(max_msgs=...) sends no UNSUB in nats-py 2.x: the client alone stops
    # delivering, so only what the application sees is checked.
    inbox2 = Inbox("max_msgs subscriber")
    await sub_nc.subscribe(subject, cb=inbox2.cb, max_msgs=2)
    await sync(sub_nc)
    for i in range(5):
        await pub.publish(subject, str(i).encode())
    await sync(pub)
    got = await inbox2.take(2)
    expect([m.data for m in got] == [b"0", b"1"], f"max_msgs=2 got {[m.data for m in got]}")
    await inbox2.assert_quiet(pub, sub_nc, what="subscribe(max_msgs=2)")
    return "unsubscribe(limit=3): the server sent 3 of 10; subscribe(max_msgs=2): 2 of 5"


# --- 8 ---------------------------------------------------------------------------------

async def check_flush_and_drain(h):
    pub = await h.connect()
    subject = unique("drain")

    # flush: PING/PONG round trips, one at a time and several outstanding at once.
    t0 = time.monotonic()
    await pub.flush(timeout=WAIT)
    rtt = time.monotonic() - t0
    try:
        await asyncio.wait_for(asyncio.gather(*(pub.flush(timeout=WAIT) for _ in range(20))), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed("20 concurrent flush() calls did not all get their PONG") from None

    # Subscription drain: messages already pending in the client are still delivered,
    # then the subscription is gone.
    nc = await h.connect()
    n = 50
    gate, entered = asyncio.Event(), asyncio.Event()
    got = []

    async def slow_cb(msg):
        entered.set()
        await gate.wait()  # keeps the rest pending in nats-py until we release it
        got.append(msg.data)

    sub = await nc.subscribe(subject, cb=slow_cb)
    await sync(nc)
    for i in range(n):
        await pub.publish(subject, str(i).encode())
    await sync(pub)
    await nc.tap.wait_count(sub, n, "before subscription drain")
    try:
        await asyncio.wait_for(entered.wait(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed("subscription callback never ran") from None
    draining = asyncio.ensure_future(sub.drain())
    gate.set()
    try:
        await asyncio.wait_for(draining, WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"subscription drain did not finish within {WAIT}s") from None
    expect(
        got == [str(i).encode() for i in range(n)],
        f"subscription drain delivered {len(got)} of {n} pending messages",
    )
    expect(sub._closed, "subscription not closed after drain()")
    await sync(nc)  # the UNSUB has reached the server before anyone publishes again
    await pub.publish(subject, b"after drain")
    await nc.tap.assert_count_stays(
        sub, n, (pub, nc), "after the subscription drained (UNSUB sent)"
    )

    # Connection drain: both subscriptions deliver what is pending, then it closes.
    closed = asyncio.Event()

    async def on_closed():
        closed.set()

    nc2 = await h.connect(closed_cb=on_closed)
    a, b = Inbox("drain a"), Inbox("drain b")
    gate2, entered2 = asyncio.Event(), asyncio.Event()

    async def gated_a(msg):
        entered2.set()
        await gate2.wait()
        await a.cb(msg)

    sa = await nc2.subscribe(f"{subject}.a", cb=gated_a)
    sb = await nc2.subscribe(f"{subject}.b", cb=b.cb)
    await sync(nc2)
    for i in range(20):
        await pub.publish(f"{subject}.a", str(i).encode())
        await pub.publish(f"{subject}.b", str(i).encode())
    await sync(pub)
    await nc2.tap.wait_count(sa, 20, "before connection drain (a)")
    await nc2.tap.wait_count(sb, 20, "before connection drain (b)")
    try:
        await asyncio.wait_for(entered2.wait(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed("callback of connection-drain subscription never ran") from None
    draining = asyncio.ensure_future(nc2.drain())
    gate2.set()
    try:
        await asyncio.wait_for(draining, WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"connection drain did not finish within {WAIT}s") from None
    expect(a.count == 20 and b.count == 20, f"connection drain delivered {a.count}+{b.count} of 40")
    expect(nc2.is_closed, "connection is not closed after drain()")
    try:
        await asyncio.wait_for(closed.wait(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed("closed_cb not called after connection drain") from None
    return f"flush round trip {rtt * 1000:.1f} ms; subscription and connection drain deliver all pending"


# --- 9 ---------------------------------------------------------------------------------

async def check_scopes(h):
    # nats-py sends a URL user *without* a password as `auth_token`, and only a
    # user with a password as CONNECT `user` (herald ignores the password).
    a1 = await h.connect(h.url_with_user("scopea", "unused"))
    a2 = await h.connect(h.url_with_user("scopea", "unused"))
    b = await h.connect(h.url_with_user("scopeb", "unused"))
    dflt = await h.connect()
    subject = unique("scoped")
    in_a, in_b, in_default = Inbox("scopea subscriber"), Inbox("scopeb subscriber"), Inbox("default")
    await a2.subscribe(subject, cb=in_a.cb)
    await b.subscribe(subject, cb=in_b.cb)
    await dflt.subscribe(subject, cb=in_default.cb)
    for nc in (a2, b, dflt):
        await sync(nc)

    await a1.publish(subject, b"for a")
    await sync(a1)
    msg = await in_a.next("scopea client did not get a message published in scopea")
    expect(msg.data == b"for a", f"scopea subscriber got {msg.data!r}")
    await in_b.assert_quiet(a1, b, what="scopeb saw a scopea message")
    await in_default.assert_quiet(a1, dflt, what="default scope saw a scopea message")

    await b.publish(subject, b"for b")
    await sync(b)
    msg = await in_b.next("scopeb client did not get its own scope's message")
    expect(msg.data == b"for b", f"scopeb subscriber got {msg.data!r}")
    await in_a.assert_quiet(b, a2, what="scopea saw a scopeb message")
    return "scopea/scopeb/default isolated; a second scopea client sees scopea"


async def check_scope_url_user_only(h):
    # The documented form `nats://scope@host:port`: nats-py sends the lone URL user as
    # CONNECT `auth_token`, not `user`.
    a1 = await h.connect(h.url_with_user("scopea"))
    a2 = await h.connect(h.url_with_user("scopea"))
    b = await h.connect(h.url_with_user("scopeb"))
    subject = unique("scoped_token")
    in_a, in_b = Inbox("scopea subscriber"), Inbox("scopeb subscriber")
    await a2.subscribe(subject, cb=in_a.cb)
    await b.subscribe(subject, cb=in_b.cb)
    for nc in (a2, b):
        await sync(nc)
    await a1.publish(subject, b"for a")
    await sync(a1)
    await in_a.next("scopea client did not get a message published in scopea")
    await in_b.assert_quiet(
        a1,
        b,
        what="nats://scopeb@ saw a message from nats://scopea@: nats-py sends the "
        "password-less URL user as CONNECT auth_token, and the server put both in its default "
        "scope instead of taking the token as the scope (nats://scopea:@host, with an empty "
        "password, is sent as CONNECT user and works)",
    )
    return "nats://scopea@ and nats://scopeb@ (sent as auth_token) are isolated"


# --- 10 --------------------------------------------------------------------------------

async def check_no_echo(h):
    quiet = await h.connect(no_echo=True)
    other = await h.connect()
    subject = unique("echo")
    own, others = Inbox("no_echo connection's own subscription"), Inbox("other connection")
    await quiet.subscribe(subject, cb=own.cb)
    await other.subscribe(subject, cb=others.cb)
    await sync(quiet)
    await sync(other)

    await quiet.publish(subject, b"hi")
    await sync(quiet)
    msg = await others.next("other connection did not get the no_echo connection's message")
    expect(msg.data == b"hi", f"other got {msg.data!r}")
    await own.assert_quiet(quiet, other, what="no_echo connection received its own message")

    # It still receives messages from others.
    await other.publish(subject, b"from other")
    await sync(other)
    msg = await own.next("no_echo connection did not get another connection's message")
    expect(msg.data == b"from other", f"no_echo connection got {msg.data!r}")

    # And a normal connection does get its own messages back.
    await sync(other)
    await others.take(1, "other connection's own message (echo on)")
    return "no_echo connection skips its own messages, still gets others'; echo on by default"


CHECKS = [
    ("1 pub/sub payloads", check_pubsub, False),
    ("2 wildcards", check_wildcards, False),
    ("3 queue groups", check_queue_groups, False),
    ("4 request/reply", check_request_reply, False),
    ("5 headers", check_headers, False),
    ("6 no responders", check_no_responders, False),
    ("7 unsubscribe after N", check_unsubscribe_after, False),
    ("8 flush and drain", check_flush_and_drain, False),
    ("9 scopes (user:pass@)", check_scopes, True),
    ("9b scopes (user@ only)", check_scope_url_user_only, True),
    ("10 no echo", check_no_echo, False),
]


async def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = {a for a in argv[1:] if a.startswith("--")}
    unknown = flags - {"--no-herald-extensions"}
    if len(args) != 1 or unknown:
        print(USAGE, file=sys.stderr)
        return 2
    herald = "--no-herald-extensions" not in flags
    h = Harness(args[0])
    started = time.monotonic()

    # Fail fast, once, if there is no server to talk to.
    try:
        await h.connect()
    except Exception as err:
        print(f"FAIL connect to {args[0]}: {err!r}", file=sys.stderr)
        return 1
    finally:
        await h.close_all()

    failed = []
    for name, check, herald_only in CHECKS:
        if herald_only and not herald:
            print(f"skip {name} (herald extension)")
            continue
        budget = min(CHECK_BUDGET, TOTAL_BUDGET - (time.monotonic() - started))
        if budget <= 0:
            failed.append(name)
            print(f"FAIL {name}: not run, the run exceeded {TOTAL_BUDGET}s", file=sys.stderr)
            continue
        try:
            detail = await asyncio.wait_for(check(h), budget)
        except CheckFailed as err:
            failed.append(name)
            print(f"FAIL {name}: {err}", file=sys.stderr)
        except asyncio.TimeoutError:
            failed.append(name)
            print(f"FAIL {name}: did not finish within {budget:.1f}s", file=sys.stderr)
        except Exception as err:  # a nats-py error: connection refused, closed, ...
            failed.append(name)
            print(f"FAIL {name}: {type(err).__name__}: {err}", file=sys.stderr)
        else:
            print(f"ok   {name}: {detail}")
        finally:
            await h.close_all()
            sys.stdout.flush()
    if h.async_errors:
        kinds = sorted({f"{type(e).__name__}: {e}" for e in h.async_errors})
        print(f"note: asynchronous client errors seen: {kinds}", file=sys.stderr)
    took = time.monotonic() - started
    if failed:
        print(f"{len(failed)} check(s) failed: {', '.join(failed)} ({took:.1f}s)", file=sys.stderr)
        return 1
    print(f"all checks passed ({took:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
