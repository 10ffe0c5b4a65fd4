/**
 * Interop scenario 3 (issue #6): DHCPRELEASE and DHCPDECLINE reach both sides. dhclient
 * clients of both servers release (RFC 2131 §4.3.4); the server that gets the RELEASE sends
 * BNDUPD RELEASED and both tables end with the address no longer ACTIVE and in agreement
 * (draft-12 §5.11, §7.1.3). udhcpc clients with an ARP check (-a) find their offered address
 * taken by a squatter and decline it (RFC 2131 §4.3.3): the address is ABANDONED on both sides,
 * without client identity (§5.11), and the client gets another address.
 */
import assert from "node:assert/strict";
import {
  type ClientEvent,
  clientIface,
  clientMac,
  DUET_ADDR,
  type FailoverSeen,
  InteropLab,
  ISC_ADDR,
  ownerOf,
  type Role,
  withInterop,
} from "./harness.ts";

/** udhcpc sends client-identifier 01:MAC (RFC 2132 §9.14): that is what is hashed. */
function udhcpcClientId(mac: string): Uint8Array {
  return new Uint8Array([1, ...mac.split(":").map((b) => parseInt(b, 16))]);
}

async function releaseAndDecline(x: InteropLab, duetRole: Role): Promise<void> {
  await x.waitBothNormal();
  await x.waitFor("pool balanced", async () => {
    const isc = InteropLab.countStates(x.iscLeases().leases.values());
    const duet = InteropLab.countStates((await x.duetLeases()).values());
    return isc.backup === 100 && duet.backup === 100;
  }, 20_000);
  const ids = await x.addClients(24);
  const server = (role: Role) => (role === duetRole ? DUET_ADDR : ISC_ADDR);
  const pick = (key: (n: number) => Role, want: string, count: number, not: number[]) =>
    ids.filter((n) => !not.includes(n) && server(key(n)) === want).slice(0, count);
  const byMac = (n: number) => ownerOf(clientMac(n), 128);
  const byId = (n: number) => ownerOf(clientMac(n), 128, udhcpcClientId(clientMac(n)));
  const releasing = [...pick(byMac, DUET_ADDR, 2, []), ...pick(byMac, ISC_ADDR, 2, [])];
  const declining = [
    ...pick(byId, DUET_ADDR, 1, releasing),
    ...pick(byId, ISC_ADDR, 1, releasing),
  ];
  assert.equal(releasing.length, 4);
  assert.equal(declining.length, 2);

  // ---- RELEASE ----
  const dh = x.dhclient(releasing, { name: "dh-release" });
  await x.waitFor(
    "4 dhclient clients bound",
    () => releasing.every((n) => x.bound().has(clientIface(n))),
    30_000,
  );
  const leased = new Map(releasing.map((n) => [n, x.bound().get(clientIface(n))!]));
  for (const [n, e] of leased) {
    const mac = clientMac(n);
    const owner = server(byMac(n));
    // RFC 3074: only the bucket's server answers the DISCOVER.
    const iscOffered = new RegExp(`DHCPOFFER on \\S+ to ${mac} `).test(x.iscLog);
    const duetOffered = x.duetLog.includes(`DHCPOFFER chaddr=${mac} `);
    assert.ok(
      owner === ISC_ADDR ? !duetOffered : !iscOffered,
      `${clientIface(n)} offered by ${owner} only`,
    );
    if (e.serverId === owner) continue;
    // The ACK may come from ISC in duet's place: ISC dhcpd 4.4.3 ACKs a REQUEST that names duet's
    // server identifier when duet's BNDUPD for the address has not reached it yet (seen on a loaded
    // machine: "DHCPREQUEST for A (duet) from M", then "DHCPACK on A to M"). The address is the
    // one duet offered, and both tables agree below.
    assert.equal(owner, DUET_ADDR, `${clientIface(n)} served by its bucket's server`);
    assert.ok(
      x.iscLog.includes(`DHCPREQUEST for ${e.address} (${DUET_ADDR}) from ${mac}`) &&
        x.iscLog.includes(`DHCPACK on ${e.address} to ${mac}`),
      `${clientIface(n)} served by its bucket's server, or by ISC acking duet's offer`,
    );
  }
  const agreeActive = async () => {
    const duet = await x.duetLeases();
    const isc = x.iscLeases().leases;
    return [...leased].every(([n, e]) =>
      duet.get(e.address)?.state === "active" && isc.get(e.address)?.bindingState === "active" &&
      duet.get(e.address)?.["hw-address"] === clientMac(n) &&
      isc.get(e.address)?.hardware === clientMac(n)
    );
  };
  await x.waitFor("the 4 leases ACTIVE on both sides", agreeActive, 15_000);
  await dh.release();
  assert.ok(x.events().filter((e) => e.reason === "RELEASE").length >= 4, "dhclient released");
  let states = "";
  await x.waitFor("the released addresses agree on both sides and are not ACTIVE", async () => {
    const duet = await x.duetLeases();
    const isc = x.iscLeases().leases;
    const rows = [...leased.values()].map((e) => [
      e.address,
      duet.get(e.address)?.state ?? "none",
      isc.get(e.address)?.bindingState ?? "none",
    ]);
    states = rows.map((r) => r.join(" ")).join(", ");
    // §5.11: RELEASED, then FREE once the partner acks (or BACKUP when the primary gives
    // a released secondary address straight back, as ISC does).
    return rows.every(([, d, i]) => d === i && (d === "free" || d === "backup"));
    // Well before the 60 s leases end: the releases themselves did it, not the expiry.
  }, 10_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${states}`);
  });
  // Neither side refused the other's RELEASED update (draft-12 §7.1.3).
  assert.doesNotMatch(x.duetLog, /Rejected binding update/);
  assert.doesNotMatch(x.iscLog, /bind update on \S+ from \S+ rejected/);
  // Each RELEASE went to the server that held the lease, which told its partner (the capture
  // may lag the logs a little).
  const releasedOnWire = (fo: FailoverSeen[], e: ClientEvent) =>
    fo.some((m) =>
      m.type === "BNDUPD" && m.src.startsWith(`${e.serverId}:`) &&
      m.options.some((o) => o.name === "assigned-IP-address" && o.value === e.address) &&
      m.options.some((o) => o.name === "binding-status" && o.value.startsWith("RELEASED"))
    );
  await x.waitFor("a BNDUPD RELEASED from the releasing server for each address", async () => {
    const fo = await x.failoverSeen();
    return [...leased.values()].every((e) => releasedOnWire(fo, e));
  }, 10_000);

  // ---- DECLINE ----
  const duet = await x.duetLeases();
  const isc = x.iscLeases().leases;
  // An address the client's server may hand out: the primary's FREE or the secondary's BACKUP.
  const available = (role: Role, not: string[]) => {
    const want = role === "primary" ? "free" : "backup";
    return [...isc.values()].find((l) =>
      l.bindingState === want && duet.get(l.address)?.state === want && !not.includes(l.address)
    )!.address;
  };
  const squatted: string[] = [];
  for (const n of declining) squatted.push(available(byId(n), squatted));
  // A squatter in the bridge namespace answers ARP for both addresses.
  for (const a of squatted) await x.lab.ip(x.ns.bridge, ["addr", "add", `${a}/32`, "dev", "b0"]);
  const clients = declining.map((n, k) => x.udhcpc(n, ["-a", "-r", squatted[k]!]));
  let view = "";
  await x.waitFor("both squatted addresses ABANDONED on both sides", async () => {
    const d = await x.duetLeases();
    const i = x.iscLeases().leases;
    view = squatted.map((a) => `${a} duet=${d.get(a)?.state} isc=${i.get(a)?.bindingState}`).join(
      ", ",
    );
    return squatted.every((a) =>
      d.get(a)?.state === "abandoned" && i.get(a)?.bindingState === "abandoned"
    );
  }, 30_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${view}\n${clients.map((c) => c.log).join("\n")}`);
  });
  for (const c of clients) assert.match(c.log, /declin/i, c.log);
  // §5.11: an ABANDONED binding carries no client identity.
  const after = await x.duetLeases();
  for (const a of squatted) assert.equal(after.get(a)?.["hw-address"], null);
  // The declining clients then get other addresses from their server.
  await x.waitFor("the declining clients bound elsewhere", () =>
    declining.every((n) => {
      const e = x.bound().get(clientIface(n));
      return e !== undefined && !squatted.includes(e.address);
    }), 30_000);
  for (const n of declining) {
    const e = x.bound().get(clientIface(n))!;
    assert.equal(e.serverId, server(byId(n)));
  }
  // Both tables know the new leases, with the client identifier udhcpc sent (option 61).
  await x.waitFor("the new leases ACTIVE on both sides with the client id", async () => {
    const d = await x.duetLeases();
    const i = x.iscLeases().leases;
    return declining.every((n) => {
      const a = x.bound().get(clientIface(n))!.address;
      const id = `01:${clientMac(n)}`;
      return d.get(a)?.state === "active" && d.get(a)?.["client-id"] === id &&
        i.get(a)?.bindingState === "active" && i.get(a)?.uid === id;
    });
  }, 15_000);
}

for (const duetRole of ["primary", "secondary"] as const) {
  Deno.test({
    name: `interop 3: RELEASE and DECLINE reach both sides (duet ${duetRole})`,
    sanitizeResources: false,
    sanitizeOps: false,
    // MCLT 60: the first leases last 60 s, longer than the test.
    fn: (t) => withInterop(t, { duetRole, mclt: 60 }, (x) => releaseAndDecline(x, duetRole)),
  });
}

/**
 * A client that vanishes: its lease ends on the server that granted it, which sends BNDUPD
 * EXPIRED (ISC does so within the second the lease ends), and both tables free the address
 * with no rejected update either way (draft-12 §5.11, §7.1.3 time(2)).
 */
async function expiry(x: InteropLab, duetRole: Role): Promise<void> {
  await x.waitBothNormal();
  const ids = await x.addClients(12);
  const server = (n: number) => (ownerOf(clientMac(n), 128) === duetRole ? DUET_ADDR : ISC_ADDR);
  const gone = [
    ids.find((n) => server(n) === DUET_ADDR)!,
    ids.find((n) => server(n) === ISC_ADDR)!,
  ];
  const dh = x.dhclient(gone, { name: "dh-gone" });
  await x.waitFor(
    "both clients bound",
    () => gone.every((n) => x.bound().has(clientIface(n))),
    20_000,
  );
  // Gone before T1: the MCLT-capped first lease (10 s) runs out on both servers.
  await dh.kill();
  const addresses = gone.map((n) => x.bound().get(clientIface(n))!.address);
  let view = "";
  await x.waitFor("both expired leases freed on both sides", async () => {
    const d = await x.duetLeases();
    const i = x.iscLeases().leases;
    view = addresses.map((a) => `${a} duet=${d.get(a)?.state} isc=${i.get(a)?.bindingState}`)
      .join(", ");
    return addresses.every((a) =>
      ["free", "backup"].includes(d.get(a)?.state ?? "") &&
      ["free", "backup"].includes(i.get(a)?.bindingState ?? "")
    );
  }, 30_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${view}`);
  });
  assert.doesNotMatch(x.duetLog, /Rejected binding update/);
  assert.doesNotMatch(x.iscLog, /bind update on \S+ from \S+ rejected/);
}

for (const duetRole of ["primary", "secondary"] as const) {
  Deno.test({
    name: `interop 3: an expired lease reaches both sides (duet ${duetRole})`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: (t) => withInterop(t, { duetRole, mclt: 10 }, (x) => expiry(x, duetRole)),
  });
}
