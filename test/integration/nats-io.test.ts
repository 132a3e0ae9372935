/**
 * runtime/nats-io.ts against a real nats-server: what one event-loop turn publishes, from any microtask depth,
 * leaves in one socket write; without it nats.js writes once per microtask turn (the method's sanity check). The
 * replacement still applies to the pinned nats.js, and requests, flush and large bursts still work.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../../runtime/index.ts";
import { spawnSync } from "node:child_process";
import {
  EXTERNAL_MEMORY_FLAG,
  RECEIVE_CLASS_BYTES,
  largeMessagesGathered,
  readsPresizedFor,
  receivePoolBytes,
  releaseReceived,
  writesCoalesced,
} from "../../runtime/nats-io.ts";
import { startNats } from "../helpers/graph.ts";

/** Counts the socket writes of `nc` (the transport's send). */
function countWrites(nc: NatsConnection): () => number {
  const t = (nc as unknown as { protocol: { transport: { send(d: Uint8Array): void } } }).protocol.transport;
  let n = 0;
  const send = t.send.bind(t);
  t.send = (d) => {
    n++;
    send(d);
  };
  return () => n;
}

/** Publishes `count` messages in one turn, each from a different microtask depth (as replies of handlers that awaited). */
async function publishAtDepths(nc: NatsConnection, subject: string, count: number): Promise<void> {
  const deep = async (depth: number): Promise<void> => {
    for (let i = 0; i < depth; i++) await Promise.resolve();
    nc.publish(subject, String(depth));
  };
  await Promise.all(Array.from({ length: count }, (_, i) => deep(i)));
}

async function received(
  nc: NatsConnection,
  subject: string,
  count: number,
): Promise<{ ready: Promise<void>; done: Promise<number> }> {
  const sub = nc.subscribe(subject, { max: count });
  const done = (async () => {
    let n = 0;
    for await (const _ of sub) n++;
    return n;
  })();
  return { ready: nc.flush(), done };
}

test(
  "nats-io - one event-loop turn of publishes from any microtask depth is one socket write",
  { timeout: 30_000 },
  async () => {
    await using nats = await startNats();
    const rx = await connect({ servers: nats.url });
    const nc = await connectNats({ name: "writes", servers: nats.url });
    const plain = await connect({ servers: nats.url });
    try {
      assert.ok(writesCoalesced(nc), "the pinned nats.js has the protocol handler runtime/nats-io.ts replaces");
      assert.ok(!writesCoalesced(plain));

      const a = await received(rx, "w.a", 40);
      await a.ready;
      const writes = countWrites(nc);
      await publishAtDepths(nc, "w.a", 40);
      assert.equal(await a.done, 40, "every message delivered");
      assert.equal(writes(), 1, "40 publishes of one turn in one write");

      // Sanity check of the method: nats.js's own flushing writes once per microtask turn.
      const b = await received(rx, "w.b", 40);
      await b.ready;
      const plainWrites = countWrites(plain);
      await publishAtDepths(plain, "w.b", 40);
      assert.equal(await b.done, 40);
      assert.ok(plainWrites() > 10, `nats.js alone: ${plainWrites()} writes`);

      // A burst larger than nats.js's pending limit (32 KiB) still goes out while it is built, and arrives whole.
      const big = new Uint8Array(4096);
      const c = await received(rx, "w.c", 100);
      await c.ready;
      const bigWrites = countWrites(nc);
      for (let i = 0; i < 100; i++) nc.publish("w.c", big);
      assert.ok(bigWrites() >= 10, "flushed inline past the pending limit, not held to the end of the turn");
      assert.equal(await c.done, 100);

      // Request-reply and flush as usual.
      const svc = rx.subscribe("w.echo", {
        callback: (_e, m) => {
          m.respond(m.data);
        },
      });
      await rx.flush();
      assert.equal((await nc.request("w.echo", "ping", { timeout: 5000 })).string(), "ping");
      await nc.flush();
      svc.unsubscribe();
    } finally {
      await nc.close();
      await plain.close();
      await rx.close();
    }
  },
);

test(
  "nats-io - a message larger than a socket read arrives whole, gathered in one buffer of its size",
  { timeout: 30_000 },
  async () => {
    await using nats = await startNats();
    const rx = await connectNats({ name: "reads", servers: nats.url });
    const rx2 = await connect({ servers: nats.url });
    const tx = await connect({ servers: nats.url });
    try {
      assert.ok(readsPresizedFor(rx), "the pinned nats.js parser is the one runtime/nats-io.ts presizes");
      const size = 600_000;
      const body = new Uint8Array(size);
      for (let i = 0; i < size; i++) body[i] = (i * 31 + 7) & 0xff;
      const got = async (nc: NatsConnection, subject: string, max = 3) => {
        const sub = nc.subscribe(subject, { max });
        await nc.flush();
        return {
          sub,
          all: (async () => {
            const out = [];
            for await (const m of sub) out.push(m.data);
            return out;
          })(),
        };
      };
      const before = largeMessagesGathered();
      const a = await got(rx, "r.big");
      for (let i = 0; i < 3; i++) tx.publish("r.big", body);
      await tx.flush();
      for (const d of await a.all) {
        assert.equal(d.length, size);
        assert.deepEqual(d, body, "every byte as sent");
        assert.ok(
          d.buffer.byteLength <= size + RECEIVE_CLASS_BYTES,
          `gathered in one buffer of the message's size class (${d.buffer.byteLength} bytes for ${size})`,
        );
        assert.equal(d.byteOffset % 8, 0, "the payload starts 8-byte aligned");
      }
      const after = largeMessagesGathered();
      assert.equal(after.atStart - before.atStart, 3, "each gathered in its own buffer from its first chunk on");
      assert.equal(after.moved, before.moved, "none first copied into a buffer of the first chunk's size");
      // With headers of every length mod 8 before it, the payload still starts aligned and arrives intact.
      const h = await got(rx, "r.hdr", 8);
      for (const pad of ["", "x", "xx", "xxx", "xxxx", "xxxxx", "xxxxxx", "xxxxxxx"]) {
        const hd = headers();
        hd.set("Pad", pad);
        tx.publish("r.hdr", body, { headers: hd });
      }
      await tx.flush();
      const withHeaders = await h.all;
      assert.equal(withHeaders.length, 8);
      for (const d of withHeaders) {
        assert.deepEqual(d, body);
        assert.equal(d.byteOffset % 8, 0, "aligned after headers");
      }
      // Messages of every size in a row on one connection (large, large, small) still split where they should.
      const b = await got(rx2, "r.big2");
      tx.publish("r.big2", body);
      tx.publish("r.big2", body);
      tx.publish("r.big2", new Uint8Array(10));
      await tx.flush();
      const [x, y, z] = await b.all;
      assert.deepEqual(x, body);
      assert.deepEqual(y, body);
      assert.equal(z!.length, 10);
      // A small message split across socket reads (20 KB, given to the connection's parser in two chunks, as two
      // reads would) gets a buffer of its own size, not one of the reused size classes, and is never taken back.
      const small = body.subarray(0, 20_000);
      const sub = rx2.subscribe("r.split", { max: 1 });
      await rx2.flush();
      const sid = (sub as unknown as { getID(): number }).getID();
      const parser = (rx2 as unknown as { protocol: { parser: { parse(b: Uint8Array): void } } }).protocol.parser;
      const head = new TextEncoder().encode(`MSG r.split ${sid} ${small.length}\r\n`);
      const frame = new Uint8Array(head.length + small.length + 2);
      frame.set(head);
      frame.set(small, head.length);
      frame.set([13, 10], head.length + small.length);
      const before2 = largeMessagesGathered();
      parser.parse(frame.slice(0, head.length + 5_000));
      parser.parse(frame.slice(head.length + 5_000));
      let split: Uint8Array | undefined;
      for await (const m of sub) split = m.data;
      assert.ok(split && Buffer.from(split).equals(Buffer.from(small)), "the split message arrives whole");
      assert.equal(largeMessagesGathered().atStart, before2.atStart + 1, "gathered from its first chunk on");
      assert.ok(split.buffer.byteLength < small.length + 64, `${split.buffer.byteLength} bytes for ${small.length}`);
      assert.equal(releaseReceived(split), false);
    } finally {
      await rx.close();
      await rx2.close();
      await tx.close();
    }
  },
);

test(
  "nats-io - a large message's buffer handed back is reused for the next one, once, and the next message is intact",
  { timeout: 30_000 },
  async () => {
    await using nats = await startNats();
    const rx = await connectNats({ name: "reuse", servers: nats.url });
    const tx = await connect({ servers: nats.url });
    try {
      const size = 150_528; // one uint8 image tensor
      const bodyOf = (seed: number) => {
        const b = new Uint8Array(size);
        for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
        return b;
      };
      const next = async (subject: string, body: Uint8Array) => {
        const sub = rx.subscribe(subject, { max: 1 });
        await rx.flush();
        tx.publish(subject, body);
        await tx.flush();
        for await (const m of sub) return m.data;
        throw new Error("no message");
      };
      const first = await next("r.reuse", bodyOf(1));
      assert.deepEqual(first, bodyOf(1));
      const buffer = first.buffer;
      const pooled = receivePoolBytes();
      assert.equal(releaseReceived(first), true, "a large message's buffer is taken back");
      assert.equal(receivePoolBytes(), pooled + buffer.byteLength);
      assert.equal(releaseReceived(first), false, "and only once");
      const second = await next("r.reuse", bodyOf(2));
      assert.equal(second.buffer, buffer, "the next large message of that size is gathered in the same buffer");
      assert.deepEqual(second, bodyOf(2), "every byte its own");
      assert.equal(receivePoolBytes(), pooled, "the buffer left the free list");
      // A message that fits one socket read is a view of that read, which nobody may take back; so is a message
      // of a connection this file did not presize, and anything else.
      const small = await next("r.small", new Uint8Array(100).fill(3));
      assert.equal(releaseReceived(small), false);
      assert.equal(releaseReceived(new Uint8Array(size)), false);
      assert.equal(releaseReceived(second), true);
      // A buffer transferred to another thread since (its memory is not ours any more) is not taken back.
      const third = await next("r.reuse", bodyOf(3));
      structuredClone(third.buffer, { transfer: [third.buffer as ArrayBuffer] });
      assert.equal(releaseReceived(third), false);
    } finally {
      await rx.close();
      await tx.close();
    }
  },
);

test("nats-io - the V8 flag that counts received buffers in the heap's limit exists in this Node's V8", () => {
  // V8 does not throw on a flag it does not know: it prints "Error: unrecognized flag" to stderr and goes on. So
  // a V8 that renamed or dropped the flag would silently bring back a full GC per 64 MB of received bytes.
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "-e",
      `import { accountExternalMemoryInHeapLimit } from ${JSON.stringify(new URL("../../runtime/nats-io.ts", import.meta.url).href)}; accountExternalMemoryInHeapLimit();`,
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /unrecognized flag/, `V8 ${process.versions.v8} does not know ${EXTERNAL_MEMORY_FLAG}`);
  if (Number(process.versions.v8.split(".")[0]) >= 13) {
    const check = spawnSync(process.execPath, [EXTERNAL_MEMORY_FLAG, "-e", "0"], { encoding: "utf8" });
    assert.equal(check.status, 0, `V8 ${process.versions.v8} refuses ${EXTERNAL_MEMORY_FLAG}: ${check.stderr}`);
  }
});
