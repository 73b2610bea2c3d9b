// Object stores as nats.js 3 uses them: a multi-chunk object with its digest, info, list,
// links, delete, watch. Usage: node obj.mjs nats://HOST:PORT   (prints one JSON object)
import { connect } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { createHash } from "node:crypto";

const nc = await connect({ servers: process.argv[2] });
const objm = new Objm(nc);
const out = {};
const step = async (name, f) => {
  if (process.env.TRACE) console.error("step", name);
  try {
    out[name] = await f();
  } catch (err) {
    out[name] = "error: " + err.message;
  }
};

const os = await objm.create("files");
// 300 KiB in 128 KiB chunks: three chunks.
const data = new Uint8Array(300 * 1024).map((_, i) => (i * 31 + 7) % 251);
const sha = createHash("sha256").update(data).digest("base64url");
await step("put", async () => {
  const info = await os.putBlob({ name: "big.bin", options: { max_chunk_size: 128 * 1024 } }, data);
  return { size: info.size, chunks: info.chunks, digest_ok: info.digest.replace(/=+$/, "") === "SHA-256=" + sha };
});
await step("get", async () => {
  const got = await os.getBlob("big.bin");
  return { size: got.length, same: Buffer.compare(Buffer.from(got), Buffer.from(data)) === 0 };
});
await step("info", async () => {
  const info = await os.info("big.bin");
  return { name: info.name, size: info.size, deleted: info.deleted };
});
await step("link", async () => {
  await os.link("alias.bin", await os.info("big.bin"));
  const got = await os.getBlob("alias.bin");
  return got.length;
});
await step("list", async () => (await os.list()).map((o) => o.name).sort());
await step("watch", async () => {
  const w = await os.watch({ includeHistory: false });
  await os.putBlob({ name: "small.txt" }, new TextEncoder().encode("hello"));
  for await (const e of w) {
    if (e && e.name === "small.txt") return e.size;
  }
});
await step("delete", async () => {
  await os.delete("big.bin");
  const info = await os.info("big.bin");
  return info === null ? null : info.deleted;
});
await step("status", async () => {
  const s = await os.status();
  return { bucket: s.bucket, sealed: s.sealed };
});

console.log(JSON.stringify(out));
await nc.close();
