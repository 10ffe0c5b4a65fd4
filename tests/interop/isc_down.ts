/**
 * Interop scenario 4 (issue #6), shared by s4_isc_down_*_test.ts (one file per role, so that
 * `deno test --parallel` runs them side by side): the ISC partner is killed. duet goes to
 * COMMUNICATIONS-INTERRUPTED (draft-12 §9.8.4), keeps renewing its own clients and rebinds
 * ISC's (§9.9.2: all requests answered), and gives new clients only addresses of its own
 * pool (§9.9.2). `duet partner-down` (§9.9.3) moves it to PARTNER-DOWN, where it still uses
 * only its own pool until the MCLT has passed, then the partner's too (§9.4.2). ISC restarts:
 * it recovers (RECOVER, UPDREQALL, §9.5.2), both return to NORMAL, and the two lease tables
 * agree on every binding.
 */
import assert from "node:assert/strict";
import {
  clientIface,
  clientMac,
  DUET_ADDR,
  InteropLab,
  ISC_ADDR,
  ownerOf,
  type Role,
  sleep,
  withInterop,
} from "./harness.ts";

const MCLT = 10;

async function iscDown(x: InteropLab, duetRole: Role): Promise<void> {
  await x.waitBothNormal();
  await x.waitFor("pool balanced", async () => {
    const isc = InteropLab.countStates(x.iscLeases().leases.values());
    const duet = InteropLab.countStates((await x.duetLeases()).values());
    return isc.backup === 100 && duet.backup === 100;
  }, 20_000);
  const ownState = duetRole === "primary" ? "free" : "backup";
  const partnerState = duetRole === "primary" ? "backup" : "free";
  const before = await x.duetLeases();
  const ownPool = new Set([...before].filter(([, l]) => l.state === ownState).map(([a]) => a));
  const partnerPool = [...before].filter(([, l]) => l.state === partnerState).map(([a]) => a);
  assert.equal(ownPool.size, 100);
  assert.equal(partnerPool.length, 100);

  // Two dhclient clients, one of each server.
  const ids = await x.addClients(12);
  const server = (n: number) => (ownerOf(clientMac(n), 128) === duetRole ? DUET_ADDR : ISC_ADDR);
  // Two of duet's buckets: ISC may answer a SELECTING REQUEST that names duet (README, ISC
  // departures) and win the race to the client, which is then ISC's; one of the two is duet's.
  const candidates = ids.filter((n) => server(n) === DUET_ADDR).slice(0, 2);
  const theirs = ids.find((n) => server(n) === ISC_ADDR)!;
  x.dhclient([...candidates, theirs], { name: "dh-old" });
  await x.waitFor("the old clients bound and renewed once (leases past the MCLT cap)", () => {
    const ev = x.events();
    return [...candidates, theirs].every((n) =>
      ev.some((e) =>
        e.iface === clientIface(n) &&
        (e.reason === "RENEW" || (e.reason === "BOUND" && e.leaseTime >= 600))
      )
    );
  }, 60_000);
  const mine = candidates.find((n) => x.bound().get(clientIface(n))?.serverId === DUET_ADDR);
  assert.ok(mine !== undefined, "a client of duet's buckets bound to duet");
  const spare = ids.filter((n) => !candidates.includes(n) && n !== theirs);
  assert.equal(x.bound().get(clientIface(theirs))?.serverId, ISC_ADDR);

  // ---- ISC dies: a plain TCP close, no STATE, no DISCONNECT ----
  await x.stopIsc("SIGKILL");
  const killedAt = Date.now() / 1000;
  await x.waitFor(
    "duet: COMMUNICATIONS-INTERRUPTED",
    async () => (await x.duetStatus()).state === "communications-interrupted",
    15_000,
  );
  assert.match(x.duetLog, /Failover state NORMAL -> COMMUNICATIONS-INTERRUPTED/);

  // duet keeps renewing its own client (unicast RENEW).
  const after = (n: number, reason: RegExp) => () => {
    const count = x.events().filter((e) => e.iface === clientIface(n) && reason.test(e.reason))
      .length;
    return count;
  };
  const renewsBefore = after(mine, /^RENEW$/)();
  await x.waitFor(
    "duet renews its own client while the partner is gone",
    () => after(mine, /^RENEW$/)() > renewsBefore,
    25_000,
  );
  // ISC's client keeps its address, now from duet: dhclient rebinds (broadcast) at T2 (its
  // script calls it RENEW), or, when the lease ran out first, starts over; duet answers either
  // with the binding it has from ISC.
  const theirAddress = x.bound().get(clientIface(theirs))!.address;
  await x.waitFor(
    "duet serves ISC's client its binding (§9.9.2: all requests)",
    () =>
      x.events().some((e) =>
        e.iface === clientIface(theirs) && /^(RENEW|REBIND|BOUND)$/.test(e.reason) &&
        e.serverId === DUET_ADDR && e.address === theirAddress
      ),
    30_000,
  );

  // A new client asks for an address of the partner's pool: it gets one of duet's own.
  const wanted = partnerPool.slice(0, 3);
  const fresh = (n: number, address: string) => x.udhcpc(n, ["-C", "-r", address]);
  const c1 = fresh(spare[0]!, wanted[0]!);
  await x.waitFor(
    "a new client bound in COMMUNICATIONS-INTERRUPTED",
    () => x.bound().has(clientIface(spare[0]!)),
    20_000,
  );
  const got1 = x.bound().get(clientIface(spare[0]!))!;
  assert.equal(got1.serverId, DUET_ADDR);
  assert.ok(ownPool.has(got1.address), `${got1.address} is from duet's own pool (${ownState})`);
  await c1.stop();

  // ---- duet partner-down ----
  const out = await x.duetPartnerDown();
  assert.match(out, /partner-down|PARTNER-DOWN/i, out);
  const downAt = Date.now() / 1000;
  await x.waitFor(
    "duet: PARTNER-DOWN",
    async () => (await x.duetStatus()).state === "partner-down",
    10_000,
  );
  // Before the MCLT has passed: still only its own pool (§9.4.2).
  const c2 = fresh(spare[1]!, wanted[1]!);
  await x.waitFor(
    "a new client bound early in PARTNER-DOWN",
    () => x.bound().has(clientIface(spare[1]!)),
    20_000,
  );
  const got2 = x.bound().get(clientIface(spare[1]!))!;
  if (Date.now() / 1000 < downAt + MCLT - 1) {
    assert.ok(ownPool.has(got2.address), `${got2.address} is from duet's own pool`);
  }
  await c2.stop();
  // After the MCLT: the partner's addresses too.
  await sleep(Math.max(0, (downAt + MCLT + 1 - Date.now() / 1000) * 1000));
  const c3 = fresh(spare[2]!, wanted[2]!);
  await x.waitFor(
    "a new client gets the partner's address it asked for",
    () => x.bound().get(clientIface(spare[2]!))?.address === wanted[2],
    20_000,
  );
  assert.equal(x.bound().get(clientIface(spare[2]!))?.serverId, DUET_ADDR);
  await c3.stop();
  assert.ok(Date.now() / 1000 - killedAt < 120);

  // ---- ISC comes back: RECOVER on ISC, then both NORMAL ----
  const leasesBefore = await x.duetLeases();
  x.startIsc();
  await x.waitFor(
    "ISC: Both servers normal after recovering",
    () => /Both servers normal/.test(x.iscLog),
    60_000,
  );
  assert.match(x.iscLog, /I move from \S+ to recover/, "ISC recovered (§9.3.2 step 5, §9.5)");
  assert.match(x.iscLog, /Sent update request all message|requesting full update/);
  await x.waitFor("duet status: normal/normal", async () => {
    const s = await x.duetStatus();
    return s.state === "normal" && s["partner-state"] === "normal";
  }, 20_000);
  assert.match(x.duetLog, /Failover state PARTNER-DOWN -> NORMAL/);

  // Both tables agree on every binding duet made or renewed while ISC was away.
  let diff: string[] = [];
  await x.waitFor("both lease tables agree on every ACTIVE binding", async () => {
    const duet = await x.duetLeases();
    const isc = x.iscLeases().leases;
    diff = [];
    for (const [address, d] of duet) {
      const i = isc.get(address);
      if (d.state === "active" || i?.bindingState === "active") {
        if (d.state !== i?.bindingState || d["hw-address"] !== i?.hardware) {
          diff.push(
            `${address}: duet ${d.state} ${d["hw-address"]}, ISC ${i?.bindingState} ${i?.hardware}`,
          );
        }
      }
    }
    return diff.length === 0;
  }, 20_000).catch((e) => {
    throw new Error(`${(e as Error).message}:\n${diff.join("\n")}`);
  });
  // Nothing duet held before ISC came back was lost.
  const now = await x.duetLeases();
  for (const [address, l] of leasesBefore) {
    if (l.state === "active" && Date.parse(l.ends ?? "") / 1000 > Date.now() / 1000 + 2) {
      assert.equal(now.get(address)?.state, "active", `${address} still ACTIVE on duet`);
      assert.equal(x.iscLeases().leases.get(address)?.bindingState, "active", `${address} on ISC`);
    }
  }
}

/** Registers the scenario for one role. */
export function registerIscDown(duetRole: Role): void {
  Deno.test({
    name: `interop 4: ISC killed, duet ${duetRole} serves alone, partner-down, ISC recovers`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: (t) =>
      withInterop(
        t,
        { duetRole, mclt: MCLT, leaseTime: { default: 20, max: 20, min: 5 } },
        (x) => iscDown(x, duetRole),
      ),
  });
}
