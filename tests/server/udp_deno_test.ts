import assert from "node:assert/strict";
import { openDenoTransport } from "../../lib/server/udp_deno.ts";
import type { Received } from "../../lib/server/transport.ts";

const LOOPBACK = 0x7f000001;

/** Resolves `p`, or rejects after `ms` naming `what`; the timer never outlives the call. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

Deno.test("openDenoTransport() exchanges datagrams between two transports", async () => {
  const a = openDenoTransport({ address: "127.0.0.1", port: 0 });
  const b = openDenoTransport({ address: "127.0.0.1", port: 0 });
  try {
    const atA: Received[] = [];
    const atB: Received[] = [];
    let burstsAtB = 0;
    const gotReply = Promise.withResolvers<void>();
    const runA = a.run((p) => {
      atA.push(p);
      gotReply.resolve();
    });
    const runB = b.run((p) => {
      atB.push(p);
      const ok = b.send(bytes(`re:${text(p.data)}`), {
        address: p.srcAddress,
        port: p.srcPort,
        ifindex: 0,
      });
      assert.equal(ok, true);
    }, () => burstsAtB++);
    assert.equal(a.send(bytes("ping"), { address: LOOPBACK, port: b.port, ifindex: 0 }), true);
    await within(gotReply.promise, 2000, "reply at a");

    assert.equal(atB.length, 1);
    assert.deepEqual({ ...atB[0]!, data: text(atB[0]!.data) }, {
      data: "ping",
      srcAddress: LOOPBACK,
      srcPort: a.port,
      ifindex: 0,
      ifname: null,
      localAddress: LOOPBACK,
      dstAddress: null,
    });
    assert.equal(burstsAtB, 1);
    assert.equal(text(atA[0]!.data), "re:ping");
    assert.equal(atA[0]!.srcPort, b.port);
    assert.match(a.name, /^deno 127\.0\.0\.1:\d+$/);

    a.close();
    b.close();
    await within(Promise.all([runA, runB]), 1000, "run() after close()");
    assert.equal(a.stats.sent, 1);
    assert.equal(b.stats.sent, 1);
    assert.equal(b.stats.received, 1);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("openDenoTransport() reports no local address when bound to 0.0.0.0", async () => {
  const server = openDenoTransport({ address: "0.0.0.0", port: 0 });
  const client = openDenoTransport({ address: "127.0.0.1", port: 0 });
  try {
    const got = Promise.withResolvers<Received>();
    const running = server.run((p) => got.resolve(p));
    client.send(bytes("x"), { address: LOOPBACK, port: server.port, ifindex: 0 });
    const packet = await within(got.promise, 2000, "datagram");
    assert.equal(packet.localAddress, null);
    assert.equal(packet.srcAddress, LOOPBACK);
    server.close();
    client.close();
    await within(Promise.all([running, client.idle()]), 1000, "run() after close()");
  } finally {
    server.close();
    client.close();
  }
});

Deno.test("close() makes run() resolve promptly and is idempotent", async () => {
  const transport = openDenoTransport({ address: "127.0.0.1", port: 0 });
  const running = transport.run(() => {});
  const started = performance.now();
  transport.close();
  transport.close();
  await within(running, 1000, "run() after close()");
  assert.ok(performance.now() - started < 200);
  // run() again after close() resolves at once; send() refuses.
  await within(transport.run(() => {}), 500, "run() on a closed transport");
  assert.equal(transport.send(bytes("x"), { address: LOOPBACK, port: 9, ifindex: 0 }), false);
});

Deno.test("send() to a closed port neither throws nor leaves a rejection behind", async () => {
  const gone = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (gone.addr as Deno.NetAddr).port;
  gone.close();
  const transport = openDenoTransport({ address: "127.0.0.1", port: 0, maxInFlight: 2 });
  try {
    const running = transport.run(() => {});
    const to = { address: LOOPBACK, port, ifindex: 0 };
    assert.equal(transport.send(bytes("1"), to), true);
    assert.equal(transport.send(bytes("2"), to), true);
    // Bounded: a third send while two are in flight is refused, not queued.
    assert.equal(transport.send(bytes("3"), to), false);
    assert.equal(transport.stats.sendRefused, 1);
    await within(transport.idle(), 1000, "sends in flight");
    assert.equal(transport.stats.sent + transport.stats.sendFailures, 2);
    // hwAddress cannot be honoured: the datagram simply goes to the address.
    const hw = new Uint8Array([2, 0, 0, 0, 0, 1]);
    assert.equal(transport.send(bytes("4"), { ...to, hwAddress: hw }), true);
    transport.close();
    await within(running, 1000, "run() after close()");
    assert.equal(transport.stats.inFlight, 0);
  } finally {
    transport.close();
  }
});

Deno.test("openDenoTransport() rejects a malformed address", () => {
  assert.throws(() => openDenoTransport({ address: "localhost", port: 0 }), TypeError);
});
