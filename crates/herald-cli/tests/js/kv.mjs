// Key-value buckets as nats.js 3 uses them: create, put, get, update with a revision,
// create that must not overwrite, delete, purge, history, keys, watch.
// Usage: node kv.mjs nats://HOST:PORT   (prints one JSON object of what it saw)
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

const nc = await connect({ servers: process.argv[2] });
const kvm = new Kvm(nc);
const out = {};
const step = async (name, f) => {
  try {
    out[name] = await f();
  } catch (err) {
    out[name] = "error: " + err.message;
  }
};

const kv = await kvm.create("config", { history: 5 });
await step("put", async () => [await kv.put("a", "1"), await kv.put("a", "2"), await kv.put("b", "x")]);
await step("get", async () => {
  const e = await kv.get("a");
  return { value: e.string(), revision: e.revision, operation: e.operation };
});
await step("update_ok", async () => await kv.update("a", "3", 2));
await step("update_stale", async () => await kv.update("a", "4", 2));
await step("create_new", async () => await kv.create("c", "first"));
await step("create_existing", async () => await kv.create("c", "second"));
await step("history", async () => {
  const seen = [];
  for await (const e of await kv.history({ key: "a" })) seen.push(e.string());
  return seen;
});
await step("keys", async () => {
  const keys = [];
  for await (const k of await kv.keys()) keys.push(k);
  return keys.sort();
});
await step("delete", async () => {
  await kv.delete("b");
  const e = await kv.get("b");
  return e === null ? null : e.operation;
});
await step("purge", async () => {
  await kv.purge("a");
  const e = await kv.get("a");
  const seen = [];
  for await (const h of await kv.history({ key: "a" })) seen.push(h.operation);
  return { operation: e === null ? null : e.operation, history: seen };
});
await step("watch", async () => {
  const w = await kv.watch({ key: "w.*" });
  const seen = [];
  await kv.put("w.1", "one");
  await kv.put("w.2", "two");
  for await (const e of w) {
    seen.push(e.key + "=" + e.string());
    if (seen.length === 2) break;
  }
  return seen;
});
await step("bad_key", async () => await kv.put("bad key", "x"));

console.log(JSON.stringify(out));
await nc.close();
