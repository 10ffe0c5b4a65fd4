import assert from "node:assert/strict";
import { openFfiTransport } from "../../lib/server/udp_ffi.ts";
import { interfaceIndex } from "../../lib/server/libc.ts";
import type { Received } from "../../lib/server/transport.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";
import { Lab, netnsPrerequisites, parseJsonLines, requireOrSkip, waitForLine } from "../netns.ts";

const LOOPBACK = 0x7f000001;
const PEER = new URL("./udp_ffi_peer.ts", import.meta.url);

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

function loopbackSocket(): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
}

function portOf(conn: Deno.DatagramConn): number {
  return (conn.addr as Deno.NetAddr).port;
}

Deno.test("openFfiTransport() reports source, lo, local and destination address, and answers", async () => {
  const transport = openFfiTransport({ port: 0, interfaces: ["lo"] });
  const client = loopbackSocket();
  try {
    const got: Received[] = [];
    let bursts = 0;
    const running = transport.run((packet) => {
      got.push(packet);
      const ok = transport.send(bytes(`re:${text(packet.data)}`), {
        address: packet.srcAddress,
        port: packet.srcPort,
        ifindex: packet.ifindex,
        srcAddress: packet.localAddress,
      });
      assert.equal(ok, true);
    }, () => bursts++);
    await client.send(bytes("hello"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: transport.port,
    });
    const [reply, from] = await within(client.receive(), 2000, "reply");
    assert.equal(text(reply), "re:hello");
    assert.equal((from as Deno.NetAddr).hostname, "127.0.0.1");
    assert.equal((from as Deno.NetAddr).port, transport.port);

    assert.equal(got.length, 1);
    const packet = got[0]!;
    assert.equal(text(packet.data), "hello");
    assert.equal(packet.srcAddress, LOOPBACK);
    assert.equal(packet.srcPort, portOf(client));
    assert.equal(packet.ifindex, interfaceIndex("lo"));
    assert.equal(packet.ifname, "lo");
    assert.equal(packet.localAddress, LOOPBACK);
    assert.equal(packet.dstAddress, LOOPBACK);
    assert.equal(bursts, 1);
    assert.match(transport.name, /^ffi lo:\d+$/);

    const started = performance.now();
    transport.close();
    await within(running, 1000, "run() after close()");
    // The eventfd wakes the pending poll: no need to wait for the poll timeout.
    assert.ok(performance.now() - started < 150, `close took ${performance.now() - started} ms`);
    assert.equal(transport.stats.received, 1);
    assert.equal(transport.stats.sent, 1);
  } finally {
    transport.close();
    client.close();
  }
});

Deno.test("openFfiTransport() drains queued datagrams in bursts of at most maxBurst", async () => {
  const transport = openFfiTransport({ address: "127.0.0.1", port: 0, maxBurst: 8 });
  const client = loopbackSocket();
  try {
    for (let i = 0; i < 20; i++) {
      await client.send(bytes(`n${i}`), {
        transport: "udp",
        hostname: "127.0.0.1",
        port: transport.port,
      });
    }
    const seen: string[] = [];
    const bursts: number[] = [];
    const all = Promise.withResolvers<void>();
    const running = transport.run((p) => {
      seen.push(text(p.data));
      if (seen.length === 20) all.resolve();
    }, () => bursts.push(seen.length));
    await within(all.promise, 2000, "20 datagrams");
    transport.close();
    await within(running, 1000, "run() after close()");
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => `n${i}`));
    // All 20 were queued before run(): bursts of 8, 8 and 4.
    assert.deepEqual(bursts, [8, 16, 20]);
  } finally {
    transport.close();
    client.close();
  }
});

Deno.test("openFfiTransport() throws errno text when the port is taken", () => {
  const holder = loopbackSocket(); // no SO_REUSEADDR: a second bind must fail
  try {
    const port = portOf(holder);
    assert.throws(
      () => openFfiTransport({ address: "127.0.0.1", port }),
      (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.equal(
          e.message,
          `Cannot bind UDP 127.0.0.1:${port}: Address already in use (errno 98)`,
        );
        return true;
      },
    );
  } finally {
    holder.close();
  }
});

Deno.test("openFfiTransport() rejects unknown interfaces and malformed addresses", () => {
  assert.throws(
    () => openFfiTransport({ port: 0, interfaces: ["nosuchif0"] }),
    /Cannot open UDP 0\.0\.0\.0:0: no interface "nosuchif0"/,
  );
  assert.throws(() => openFfiTransport({ address: "localhost", port: 0 }), TypeError);
  assert.throws(() => openFfiTransport({ port: 70000 }), RangeError);
});

Deno.test("send() returns false instead of throwing when the OS refuses", async () => {
  const transport = openFfiTransport({ address: "127.0.0.1", port: 0 });
  try {
    const data = bytes("x");
    // No interface has index 2^31-1: ENXIO/ENODEV from sendmsg.
    assert.equal(transport.send(data, { address: LOOPBACK, port: 9, ifindex: 0x7fffffff }), false);
    // A source address that is not local: EINVAL.
    const foreign = parseIpv4("203.0.113.7")!;
    assert.equal(
      transport.send(data, { address: LOOPBACK, port: 9, ifindex: 0, srcAddress: foreign }),
      false,
    );
    // Larger than a UDP datagram can be.
    assert.equal(
      transport.send(new Uint8Array(70000), { address: LOOPBACK, port: 9, ifindex: 0 }),
      false,
    );
    assert.equal(transport.stats.sendFailures, 3);
    transport.close();
    assert.equal(transport.send(data, { address: LOOPBACK, port: 9, ifindex: 0 }), false);
    // run() after close() resolves at once; close() is idempotent.
    await within(transport.run(() => {}), 500, "run() on a closed transport");
    transport.close();
  } finally {
    transport.close();
  }
});

/**
 * Runs the server and both clients; returns their JSON events. Both clients listen before
 * either sends, and keep listening 700 ms after their own answers, so each still listens when
 * the other client's answer goes out.
 */
async function exchange(
  lab: Lab,
  ns: { r: string; c1: string; c2: string },
  serverArgs: string[],
  clientTimeoutMs: number,
  serverTimeoutMs = 8000,
) {
  const { r, c1, c2 } = ns;
  const server = lab.spawnDeno(r, PEER, [
    "server",
    ...["--timeout-ms", String(serverTimeoutMs), ...serverArgs],
  ]);
  const ready = await waitForLine(server, (l) => l.includes(`"ready"`), 10_000);
  const one = lab.spawnDeno(c1, PEER, [
    "client",
    ...["--if", "c1", "--name", "c1", "--yiaddr", "198.18.1.50"],
    ...["--timeout-ms", String(clientTimeoutMs), "--linger-ms", "700"],
  ]);
  const two = lab.spawnDeno(c2, PEER, [
    "client",
    ...["--if", "c2", "--name", "c2"],
    ...["--timeout-ms", String(clientTimeoutMs), "--linger-ms", "700"],
  ]);
  const readyOne = await waitForLine(one, (l) => l.includes(`"ready"`), 10_000);
  const readyTwo = await waitForLine(two, (l) => l.includes(`"ready"`), 10_000);
  one.kill("SIGUSR1");
  two.kill("SIGUSR1");
  const [s, a, b] = await Promise.all([
    lab.collect(server, { timeoutMs: 12_000 }),
    lab.collect(one, { timeoutMs: 12_000 }),
    lab.collect(two, { timeoutMs: 12_000 }),
  ]);
  for (const [who, out] of [["server", s], ["c1", a], ["c2", b]] as const) {
    assert.equal(out.code, 0, `${who} exited ${out.code}: ${out.stderr}`);
  }
  return {
    server: parseJsonLines(ready.seen + s.stdout),
    c1: parseJsonLines(readyOne.seen + a.stdout),
    c2: parseJsonLines(readyTwo.seen + b.stdout),
  };
}

// Two LANs on one router namespace (deno-notes.md §1, §2): the default route points into
// LAN 2, so only IP_PKTINFO's ipi_ifindex can get LAN 1's broadcast reply onto LAN 1.
//
//   c1 ns: c1 (no address) ---- r1 198.18.1.1/24 [r ns] r2 198.18.2.1/24 ---- c2 198.18.2.2/24
//                                      default via 198.18.2.254 (on LAN 2)
Deno.test("openFfiTransport() answers each LAN on its own interface (namespaces)", async (t) => {
  if (!requireOrSkip(t, netnsPrerequisites())) return;
  const lab = await Lab.create("uf");
  try {
    const r = await lab.addNamespace("r");
    const c1 = await lab.addNamespace("c1");
    const c2 = await lab.addNamespace("c2");
    await lab.link(r, "r1", "198.18.1.1/24", c1, "c1", null);
    await lab.link(r, "r2", "198.18.2.1/24", c2, "c2", "198.18.2.2/24");
    await lab.setMac(c1, "c1", "02:00:00:00:01:02");
    await lab.setMac(c2, "c2", "02:00:00:00:02:02");
    await lab.ip(r, ["route", "add", "default", "via", "198.18.2.254"]);
    // The clients use Deno.listenDatagram, which has no SO_BINDTODEVICE: give the limited
    // broadcast a route (c1 has no address, so its requests come from 0.0.0.0).
    await lab.ip(c1, ["route", "add", "default", "dev", "c1"]);
    await lab.ip(c2, ["route", "add", "default", "dev", "c2"]);
    const r1 = await lab.interfaceInfo(r, "r1");
    const r2 = await lab.interfaceInfo(r, "r2");

    const udpPayloads = (events: Record<string, unknown>[]) =>
      events.filter((e) => e.event === "udp").map((e) => `${e.src} ${e.payload}`);
    const broadcastTo = (name: string) => `{"reply":"broadcast","to":"${name}"}`;

    await t.step("IP_PKTINFO: arrival interface, local and destination address", async () => {
      const out = await exchange(lab, { r, c1, c2 }, ["--expect", "c1,c2"], 5000);
      const recv = (name: string) => out.server.find((e) => e.event === "recv" && e.name === name);
      assert.deepEqual(recv("c1"), {
        event: "recv",
        name: "c1",
        src: "0.0.0.0",
        srcPort: 68,
        ifindex: r1.ifindex,
        ifname: "r1",
        localAddress: "198.18.1.1",
        dstAddress: "255.255.255.255",
      });
      assert.deepEqual(recv("c2"), {
        event: "recv",
        name: "c2",
        src: "198.18.2.2",
        srcPort: 68,
        ifindex: r2.ifindex,
        ifname: "r2",
        localAddress: "198.18.2.1",
        dstAddress: "255.255.255.255",
      });
      assert.ok(out.server.every((e) => e.event !== "sent" || e.ok === true));

      // Broadcast replies left through the arrival interface, with its address as source,
      // and never reached the other LAN.
      const c1Udp = udpPayloads(out.c1);
      const c2Udp = udpPayloads(out.c2);
      assert.ok(c1Udp.includes(`198.18.1.1 ${broadcastTo("c1")}`), c1Udp.join("\n"));
      assert.ok(c2Udp.includes(`198.18.2.1 ${broadcastTo("c2")}`), c2Udp.join("\n"));
      assert.ok(!c1Udp.some((p) => p.includes(`"to":"c2"`)), c1Udp.join("\n"));
      assert.ok(!c2Udp.some((p) => p.includes(`"to":"c1"`)), c2Udp.join("\n"));

      // Unicast to an address c1 does not have, addressed to c1's MAC (PACKET_HOST = 0)
      // thanks to the SIOCSARP entry; c1's kernel drops it, the capture sees it.
      const unicast = out.c1.filter((e) =>
        e.event === "packet" && e.dst === "198.18.1.50" && e.pkttype === 0
      );
      assert.ok(unicast.length >= 1, JSON.stringify(out.c1));
      assert.equal(unicast[0]!.src, "198.18.1.1");
      assert.equal(unicast[0]!.payload, `{"reply":"unicast","to":"c1"}`);
      assert.ok(!out.c2.some((e) => e.event === "packet" && e.dst === "198.18.1.50"));
      const neigh = await lab.ip(r, ["neigh", "show", "198.18.1.50"]);
      assert.match(neigh, /198\.18\.1\.50 dev r1 lladdr 02:00:00:00:01:02/);
    });

    await t.step("interfaces filter drops requests from other interfaces", async () => {
      // The server waits for c2 until its timeout, which c2's request never ends.
      const out = await exchange(
        lab,
        { r, c1, c2 },
        ["--expect", "c1,c2", "--interfaces", "r1"],
        1000,
        1000,
      );
      const names = out.server.filter((e) => e.event === "recv").map((e) => e.name);
      assert.ok(names.includes("c1"));
      assert.ok(!names.includes("c2"), names.join(","));
      const stats = out.server.find((e) => e.event === "stats");
      assert.ok(stats && typeof stats.filtered === "number" && stats.filtered >= 1);
      assert.ok(!udpPayloads(out.c2).some((p) => p.includes(`"to":"c2"`)));
    });

    await t.step(
      "control: without ipi_ifindex the routing table sends LAN 1's reply to LAN 2",
      async () => {
        // Shows that the first step can fail: the same server replying with ifindex 0.
        const out = await exchange(lab, { r, c1, c2 }, ["--expect", "c1,c2", "--route"], 1000);
        assert.ok(!udpPayloads(out.c1).some((p) => p.includes(broadcastTo("c1"))));
        assert.ok(
          udpPayloads(out.c2).some((p) => p.includes(broadcastTo("c1"))),
          udpPayloads(out.c2).join("\n"),
        );
      },
    );
  } finally {
    await lab.cleanup();
  }
});

/** Waits (polling every 5 ms, at most `ms`) until `done()` holds; throws naming `what`. */
async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("openFfiTransport() reads a queued burst with recvmmsg, in order, with IP_PKTINFO", async () => {
  const transport = openFfiTransport({ port: 0, interfaces: ["lo"] });
  const client = loopbackSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: transport.port };
    for (let i = 0; i < 200; i++) await client.send(bytes(`m${i}`), to);
    // Longer than a 2 KiB receive slot: MSG_TRUNC, counted and dropped.
    await client.send(new Uint8Array(3000), to);
    const got: Received[] = [];
    const running = transport.run((p) => got.push(p));
    await until(() => transport.stats.received === 201, 3000, "201 datagrams read");
    transport.close();
    await within(running, 1000, "run() after close()");

    assert.deepEqual(got.map((p) => text(p.data)), Array.from({ length: 200 }, (_, i) => `m${i}`));
    const lo = interfaceIndex("lo");
    for (const p of got) {
      assert.equal(p.srcAddress, LOOPBACK);
      assert.equal(p.srcPort, portOf(client));
      assert.equal(p.ifindex, lo);
      assert.equal(p.ifname, "lo");
      assert.equal(p.localAddress, LOOPBACK);
      assert.equal(p.dstAddress, LOOPBACK);
    }
    assert.equal(transport.stats.truncated, 1);
    assert.equal(transport.stats.filtered, 0);
    // Up to 32 per recvmmsg: 7 calls at least, far fewer than one per datagram.
    assert.ok(transport.stats.receiveCalls < 20, `${transport.stats.receiveCalls} calls`);
  } finally {
    transport.close();
    client.close();
  }
});

Deno.test("send() inside a burst queues replies and sends them with sendmmsg after onBurstEnd", async () => {
  const transport = openFfiTransport({ address: "127.0.0.1", port: 0 });
  const a = loopbackSocket();
  const b = loopbackSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: transport.port };
    for (let i = 0; i < 100; i++) {
      await a.send(bytes(`a${i}`), to);
      await b.send(bytes(`b${i}`), to);
    }
    // One buffer for every reply, overwritten after each send() as the shell does.
    const scratch = new Uint8Array(4000);
    const sentAtBurstEnd: number[] = [];
    let refused = 0;
    const running = transport.run((p) => {
      const request = text(p.data);
      // a7's reply is longer than a send slot: sent at once, after the replies queued before.
      const reply = request === "a7" ? `re:${request}:${"x".repeat(2995)}` : `re:${request}`;
      const n = new TextEncoder().encodeInto(reply, scratch).written;
      assert.equal(
        transport.send(scratch.subarray(0, n), {
          address: p.srcAddress,
          port: p.srcPort,
          ifindex: p.ifindex,
          srcAddress: p.localAddress,
        }),
        true,
      );
      scratch.fill(0);
      if (request === "b50") {
        // Refused by the kernel (no such interface) at the flush; queued, so true here.
        const bad = { address: LOOPBACK, port: 9, ifindex: 0x7fffffff };
        if (transport.send(bytes("bad"), bad)) refused++;
      }
    }, () => sentAtBurstEnd.push(transport.stats.sent));

    const collect = async (conn: Deno.DatagramConn, what: string) => {
      const replies: string[] = [];
      while (replies.length < 100) {
        const [data, from] = await within(conn.receive(), 3000, `${what} reply ${replies.length}`);
        assert.equal((from as Deno.NetAddr).port, transport.port);
        replies.push(text(data));
      }
      return replies;
    };
    const [fromA, fromB] = await Promise.all([collect(a, "a"), collect(b, "b")]);
    transport.close();
    await within(running, 1000, "run() after close()");

    const expected = (c: string) =>
      Array.from(
        { length: 100 },
        (_, i) => `re:${c}${i}${c === "a" && i === 7 ? ":" + "x".repeat(2995) : ""}`,
      );
    assert.deepEqual(fromA, expected("a"));
    assert.deepEqual(fromB, expected("b"));
    assert.equal(refused, 1);
    assert.equal(transport.stats.sent, 200);
    assert.equal(transport.stats.sendFailures, 1);
    // The first burst reads 64 requests. Its replies are queued: the 14 before a7 go out ahead
    // of a7's long reply, the next 32 when the queue is full, and the last 17 only after
    // onBurstEnd, which so sees 14 + 1 + 32 = 47 sent.
    assert.equal(sentAtBurstEnd[0], 47);
    // About one sendmmsg per 32 replies, plus the long reply and the refused one.
    assert.ok(transport.stats.sendCalls < 30, `${transport.stats.sendCalls} calls`);
  } finally {
    transport.close();
    a.close();
    b.close();
  }
});

Deno.test("openFfiTransport() sets the receive buffer with SO_RCVBUFFORCE", async (t) => {
  assert.throws(() => openFfiTransport({ port: 0, receiveBuffer: -1 }), RangeError);
  if (!requireOrSkip(t, Deno.uid() === 0 ? null : "needs root (SO_RCVBUFFORCE)")) return;
  const rmemMax = Number((await Deno.readTextFile("/proc/sys/net/core/rmem_max")).trim());
  const rmemDefault = Number((await Deno.readTextFile("/proc/sys/net/core/rmem_default")).trim());
  // Above rmem_max, so only SO_RCVBUFFORCE can grant it.
  const requested = Math.max(rmemMax + 4096, 1 << 20);
  const forced = openFfiTransport({ address: "127.0.0.1", port: 0, receiveBuffer: requested });
  const byDefault = openFfiTransport({ address: "127.0.0.1", port: 0 });
  const untouched = openFfiTransport({ address: "127.0.0.1", port: 0, receiveBuffer: 0 });
  try {
    // Linux reports twice the size set (socket(7)).
    assert.equal(forced.receiveBuffer, 2 * requested);
    assert.ok(byDefault.receiveBuffer >= 4 * 1024 * 1024, `${byDefault.receiveBuffer}`);
    assert.equal(untouched.receiveBuffer, rmemDefault);
  } finally {
    forced.close();
    byDefault.close();
    untouched.close();
  }
});

Deno.test("batch() outside a burst sends what it queued with one sendmmsg", async () => {
  const transport = openFfiTransport({ address: "127.0.0.1", port: 0 });
  const client = loopbackSocket();
  try {
    const to = { address: LOOPBACK, port: portOf(client), ifindex: 0 };
    const callsBefore = transport.stats.sendCalls;
    transport.batch(() => {
      for (let i = 0; i < 5; i++) assert.equal(transport.send(bytes(`ack${i}`), to), true);
      assert.equal(transport.stats.sendCalls, callsBefore, "nothing sent inside the batch");
    });
    assert.equal(transport.stats.sendCalls, callsBefore + 1, "one sendmmsg at its end");
    assert.equal(transport.stats.sent, 5);
    const got: string[] = [];
    while (got.length < 5) {
      const [data] = await within(client.receive(), 3000, `datagram ${got.length}`);
      got.push(text(data));
    }
    assert.deepEqual(got, ["ack0", "ack1", "ack2", "ack3", "ack4"]);
    // Without a batch each send goes at once.
    assert.equal(transport.send(bytes("single"), to), true);
    assert.equal(transport.stats.sendCalls, callsBefore + 2);
  } finally {
    client.close();
    transport.close();
  }
});

Deno.test("datagrams kept by the receiver keep their own bytes across later bursts", async () => {
  const transport = openFfiTransport({ address: "127.0.0.1", port: 0 });
  const client = loopbackSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: transport.port };
    const kept: Uint8Array[] = [];
    const done = Promise.withResolvers<void>();
    const running = transport.run((p) => {
      kept.push(p.data);
      if (kept.length === 300) done.resolve();
    });
    // Sizes vary so that copies straddle the shared chunk's end; several bursts overwrite the
    // receive slots meanwhile.
    for (let i = 0; i < 300; i++) {
      await client.send(bytes(`m${i}:${"x".repeat((i * 37) % 1400)}`), to);
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
    }
    await within(done.promise, 5000, "300 datagrams");
    kept.forEach((d, i) => assert.equal(text(d), `m${i}:${"x".repeat((i * 37) % 1400)}`));
    transport.close();
    await within(running, 1000, "run() after close()");
  } finally {
    client.close();
    transport.close();
  }
});
