/**
 * Interop scenario 2 under load (issue #6): perfdhcp runs 1,000 4-way exchanges at 200/s with
 * 1,000 MACs (02:00:00:02:xx:xx, client identifier 01:MAC, as a relay) through a duet + ISC dhcpd 4.4.3 pair in
 * NORMAL. Every exchange completes, only the server owning a client's hash bucket offers
 * (RFC 3074, draft-12 §9.8.2), and both lease tables end with the same 1,000 ACTIVE bindings:
 * the binding updates keep up, one per BNDUPD as ISC needs them (§6.3, §7.1).
 */
import assert from "node:assert/strict";
import { kernelFilterRefusal, netnsPrerequisites, requireOrSkip } from "../netns.ts";
import {
  DUET_ADDR,
  INTEROP_TOOLS,
  InteropLab,
  ISC_ADDR,
  ownerOf,
  type Role,
  withInterop,
} from "./harness.ts";

const EXCHANGES = 1000;

async function load(x: InteropLab, duetRole: Role): Promise<void> {
  await x.waitBothNormal();
  await x.waitFor("pool balanced", async () => {
    const isc = InteropLab.countStates(x.iscLeases().leases.values());
    const duet = InteropLab.countStates((await x.duetLeases()).values());
    return (isc.backup ?? 0) > 1000 && isc.backup === duet.backup;
  }, 30_000);
  // perfdhcp relays from the address of c0 (giaddr, outside the pool).
  await x.lab.ip(x.ns.clients, ["addr", "add", "198.18.1.1/15", "dev", "c0"]);
  const r = await x.lab.exec(x.ns.clients, [
    "perfdhcp",
    "-4",
    "-l",
    "c0",
    "-B", // perfdhcp wants it to send to 255.255.255.255
    "-r",
    "200",
    "-n",
    String(EXCHANGES),
    "-R",
    String(EXCHANGES),
    "-b",
    "mac=02:00:00:02:00:00",
    "-d",
    "3",
    "-W",
    "2000000",
    "255.255.255.255",
  ], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const counts = [...r.stdout.matchAll(/sent packets: (\d+)\s+received packets: (\d+)/g)];
  assert.equal(counts.length, 2, r.stdout);
  for (const [, sent, received] of counts) {
    assert.equal(sent, String(EXCHANGES), r.stdout);
    assert.equal(received, String(EXCHANGES), `every DISCOVER and REQUEST answered:\n${r.stdout}`);
  }

  // Both tables hold the same ACTIVE bindings.
  let diff = "";
  await x.waitFor("the same ACTIVE bindings on both sides", async () => {
    const duet = [...(await x.duetLeases()).values()].filter((l) => l.state === "active")
      .map((l) => `${l.address} ${l["hw-address"]}`).sort();
    const isc = [...x.iscLeases().leases.values()].filter((l) => l.bindingState === "active")
      .map((l) => `${l.address} ${l.hardware}`).sort();
    diff = `duet ${duet.length}, ISC ${isc.length}`;
    return duet.length >= EXCHANGES * 0.95 && JSON.stringify(duet) === JSON.stringify(isc);
  }, 30_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${diff}`);
  });
  assert.doesNotMatch(x.iscLog, /protocol error|disconnected/);
  assert.doesNotMatch(x.duetLog, /Rejected binding update|Failover communications down/);

  // Only the bucket's server offered; both servers did answer.
  let seen = await x.dhcpSeen();
  // The capture may lag a little: wait until it holds an OFFER for (nearly) every client.
  await x.waitFor("the clients' OFFERs on the capture", async () => {
    seen = await x.dhcpSeen();
    return new Set(seen.filter((m) => m.type === "DHCPOFFER").map((m) => m.chaddr)).size >=
      EXCHANGES * 0.95;
  }, 10_000);
  // perfdhcp sends client-identifier 01:MAC (RFC 2132 §9.14): the key RFC 3074 hashes.
  const idOf = new Map(
    seen.filter((m) => m.type === "DHCPDISCOVER" && m.clientId !== null).map((m) => [
      m.chaddr,
      new Uint8Array(m.clientId!.match(/../g)!.map((b) => parseInt(b, 16))),
    ]),
  );
  const serverOf = (mac: string) =>
    ownerOf(mac, 128, idOf.get(mac)) === duetRole ? DUET_ADDR : ISC_ADDR;
  const offers = seen.filter((m) => m.type === "DHCPOFFER");
  assert.ok(idOf.size >= EXCHANGES * 0.95, `${idOf.size} clients with option 61`);
  const wrong = offers.filter((m) => m.serverId !== serverOf(m.chaddr));
  assert.deepEqual(wrong.map((m) => `${m.chaddr} by ${m.serverId}`).slice(0, 10), []);
  for (const server of [DUET_ADDR, ISC_ADDR]) {
    const n = offers.filter((m) => m.serverId === server).length;
    assert.ok(n > EXCHANGES * 0.3, `${server} made ${n} of ${offers.length} offers`);
  }
  // duet dropped ISC's clients' DISCOVERs in the kernel (ISC polarity, both roles), and only
  // those: every one of its own was offered above.
  const noKernel = kernelFilterRefusal();
  if (noKernel !== null) {
    // deno-lint-ignore no-console
    console.log(`NOTE: kernel filter not checked: ${noKernel}`);
    return;
  }
  const k = (await x.duetStatus()).failover?.kernelFilter;
  assert.equal(k?.state, "dropping", JSON.stringify(k));
  const iscOffers = offers.filter((m) => m.serverId === ISC_ADDR).length;
  const dropped = k.dropped.DHCPDISCOVER ?? 0;
  assert.ok(
    dropped >= iscOffers && dropped <= EXCHANGES - (offers.length - iscOffers),
    `${dropped}`,
  );
}

for (const duetRole of ["primary", "secondary"] as const) {
  Deno.test({
    name: `interop 2: perfdhcp ${EXCHANGES} exchanges at 200/s through duet ${duetRole} + ISC`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn(t) {
      if (!requireOrSkip(t, netnsPrerequisites([...INTEROP_TOOLS, "perfdhcp"]))) return;
      await withInterop(
        t,
        { duetRole, mclt: 60, poolFirst: "198.18.16.1", poolLast: "198.18.23.254" },
        (x) => load(x, duetRole),
      );
    },
  });
}
