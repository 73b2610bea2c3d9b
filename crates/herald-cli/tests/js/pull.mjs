// Pull consumers as nats.js 3 drives them: fetch and next ending early, num_pending under
// a filter, nak with backoff, and a direct get of a stream that does not exist.
// Usage: node pull.mjs nats://HOST:PORT   (prints one JSON object of what it saw)
import { connect } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

const nc = await connect({ servers: process.argv[2] });
const jsm = await jetstreamManager(nc);
const js = jetstream(nc);
const out = {};

await jsm.streams.add({ name: "PULL", subjects: ["pull.>"] });
await js.publish("pull.a", "1");
await js.publish("pull.b", "2");

// A fetch of 5 with 2 stored returns the 2 when the request expires.
await jsm.consumers.add("PULL", { durable_name: "all", ack_policy: AckPolicy.Explicit });
const all = await js.consumers.get("PULL", "all");
let started = Date.now();
const fetched = [];
for await (const m of await all.fetch({ max_messages: 5, expires: 1000 })) {
  fetched.push(m.subject);
  m.ack();
}
out.fetched = fetched;
out.fetch_ms = Date.now() - started;

// next() on a consumer with nothing left returns null at expiry.
started = Date.now();
const none = await all.next({ expires: 1000 });
out.next_empty = none === null;
out.next_ms = Date.now() - started;

// num_pending counts only what the filter selects.
await js.publish("pull.a", "3");
await js.publish("pull.a", "4");
await jsm.consumers.add("PULL", {
  durable_name: "only-a",
  ack_policy: AckPolicy.Explicit,
  filter_subject: "pull.a",
});
out.num_pending_filtered = (await jsm.consumers.info("PULL", "only-a")).num_pending;

// Unacknowledged messages come back after the backoff of their delivery: 300 ms, then 600.
await jsm.consumers.add("PULL", {
  durable_name: "backoff",
  ack_policy: AckPolicy.Explicit,
  filter_subject: "pull.b",
  max_deliver: 4,
  backoff: [300_000_000, 600_000_000, 900_000_000],
});
const backoff = await js.consumers.get("PULL", "backoff");
out.backoff_gaps_ms = [];
let last = null;
for (let i = 0; i < 3; i++) {
  const m = await backoff.next({ expires: 3000 });
  if (m === null) break;
  if (last !== null) out.backoff_gaps_ms.push(Date.now() - last);
  last = Date.now();
  if (i === 2) m.ack();
}

// A direct get of a stream that does not exist: nobody answers it.
try {
  await jsm.direct.getMessage("NO_SUCH_STREAM", { last_by_subj: "x" });
  out.direct_missing = "answered";
} catch (err) {
  out.direct_missing = err.constructor.name + ": " + err.message;
}

console.log(JSON.stringify(out));
await nc.close();
