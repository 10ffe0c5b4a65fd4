/**
 * Interop scenario 5 (issue #6), shared by s5_duet_restart_*_test.ts: duet is killed (SIGKILL,
 * no STATE SHUTDOWN) while both are NORMAL, right after granting a lease. ISC goes to
 * COMMUNICATIONS-INTERRUPTED and serves new clients alone. duet restarts with its database:
 * STARTUP with its stored state (draft-12 §9.3.2), back to NORMAL with ISC (§9.9.3), and no
 * lease is lost on either side: the old ones are still ACTIVE in both tables, the ones ISC
 * granted meanwhile reach duet, and duet's unacknowledged update reaches ISC. The same with a
 * SIGTERM (the maintenance restart): STATE SHUTDOWN, ISC in PARTNER-DOWN, and duet back through
 * RECOVER, RECOVER-WAIT and RECOVER-DONE (§9.3.2 step 5, §9.5-§9.7, §9.4.3).
 */
import assert from "node:assert/strict";
import {
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

async function duetRestart(
  x: InteropLab,
  duetRole: Role,
  signal: "SIGKILL" | "SIGTERM",
): Promise<void> {
  await x.waitBothNormal();
  await x.waitFor("pool balanced", async () => {
    const isc = InteropLab.countStates(x.iscLeases().leases.values());
    const duet = InteropLab.countStates((await x.duetLeases()).values());
    return isc.backup === 100 && duet.backup === 100;
  }, 20_000);
  const ids = await x.addClients(12);
  const server = (n: number) => (ownerOf(clientMac(n), 128) === duetRole ? DUET_ADDR : ISC_ADDR);
  const old = ids.slice(0, 6);
  const later = ids.slice(6, 8);
  // Both clients of duet's buckets among the last four: ISC may answer a SELECTING REQUEST
  // that names duet and win the race to the client (README, ISC departures; more likely now
  // that duet's ACK waits for a group sync), so the one that bound to duet is the test's.
  const lastCandidates = ids.slice(8).filter((n) => server(n) === DUET_ADDR);
  assert.ok(lastCandidates.length >= 2, "two clients of duet's buckets among the last four");
  assert.ok(old.some((n) => server(n) === DUET_ADDR) && old.some((n) => server(n) === ISC_ADDR));
  x.dhclient(old, { name: "dh-old" });
  // Each renews once: the renewal gets the full lease (600 s) once the partner acked the first.
  // A client of duet's buckets may instead take ISC's ACK of its SELECTING REQUEST (ISC answers
  // one that names duet, once duet's BNDUPD has arrived), which already is the full lease.
  await x.waitFor("the old clients bound and renewed", () => {
    const ev = x.events();
    return old.every((n) =>
      ev.some((e) =>
        e.iface === clientIface(n) &&
        (e.reason === "RENEW" || (e.reason === "BOUND" && e.leaseTime >= 600))
      )
    );
    // T1 is 5 s into the first (MCLT) lease; the margin is for a loaded CI machine.
  }, 60_000);
  const agree = async (clients: number[]): Promise<string[]> => {
    const duet = await x.duetLeases();
    const isc = x.iscLeases().leases;
    const out: string[] = [];
    for (const n of clients) {
      const e = x.bound().get(clientIface(n));
      if (e === undefined) {
        out.push(`${clientIface(n)} not bound`);
        continue;
      }
      const d = duet.get(e.address);
      const i = isc.get(e.address);
      if (d?.state !== "active" || d["hw-address"] !== clientMac(n)) {
        out.push(`duet ${e.address}: ${d?.state} ${d?.["hw-address"]}`);
      }
      if (i?.bindingState !== "active" || i.hardware !== clientMac(n)) {
        out.push(`ISC ${e.address}: ${i?.bindingState} ${i?.hardware}`);
      }
    }
    return out;
  };
  let diff: string[] = [];
  const waitAgree = (what: string, clients: number[]) =>
    x.waitFor(what, async () => (diff = await agree(clients)).length === 0, 20_000).catch(
      (e) => {
        throw new Error(`${(e as Error).message}:\n${diff.join("\n")}`);
      },
    );
  await waitAgree("the old leases on both sides", old);
  const oldLeases = new Map(old.map((n) => [n, x.bound().get(clientIface(n))!.address]));

  // ---- duet dies, right after a new lease: ISC acks an idle link's BNDUPD ~2 s late ----
  x.dhclient(lastCandidates, { name: "dh-last" });
  await x.waitFor(
    "the last clients bound, one of them by duet",
    () =>
      lastCandidates.every((n) => x.bound().has(clientIface(n))) &&
      lastCandidates.some((n) => x.bound().get(clientIface(n))?.serverId === DUET_ADDR),
    20_000,
  );
  const last = lastCandidates.find((n) =>
    x.bound().get(clientIface(n))?.serverId === DUET_ADDR
  ) as number;
  const lastAddress = x.bound().get(clientIface(last))!.address;
  const killedAt = Date.now() / 1000;
  await x.stopDuet(signal);
  // SIGKILL: ISC sees the connection close (COMMUNICATIONS-INTERRUPTED, §9.8.4). SIGTERM: duet
  // sends STATE SHUTDOWN first (§9.14.1) and ISC takes over in PARTNER-DOWN.
  const alone = signal === "SIGKILL" ? "communications-interrupted" : "partner-down";
  await x.waitFor(`ISC: ${alone}`, () => x.iscState() === alone, 40_000);
  // ISC alone serves new clients (§9.9.2), whatever their hash bucket.
  x.dhclient(later, { name: "dh-later" });
  await x.waitFor(
    "the new clients bound by ISC",
    () => later.every((n) => x.bound().get(clientIface(n))?.serverId === ISC_ADDR),
    30_000,
  );

  // ---- duet comes back with its database ----
  const logBefore = x.iscLog.length;
  await x.startDuet();
  assert.match(x.duetLog, /Failover STARTUP, previous state \S+/);
  await x.waitFor("duet status: normal/normal", async () => {
    const s = await x.duetStatus();
    return s.state === "normal" && s["partner-state"] === "normal";
  }, 40_000);
  await x.waitFor(
    "ISC: back to normal",
    () => new RegExp(`I move from ${alone} to normal`).test(x.iscLog.slice(logBefore)),
    20_000,
  );
  assert.equal(x.iscState(), "normal");
  if (signal === "SIGKILL") {
    assert.match(x.duetLog, /Failover state (STARTUP|COMMUNICATIONS-INTERRUPTED) -> NORMAL/);
  } else {
    // §9.3.2 step 5: the partner entered PARTNER-DOWN after our last operation -> RECOVER,
    // then RECOVER-WAIT for the MCLT (§9.6) and RECOVER-DONE -> NORMAL.
    assert.match(x.duetLog, /Failover state STARTUP -> RECOVER /);
    assert.match(x.duetLog, /Failover state RECOVER-DONE -> NORMAL/);
  }

  // Nothing lost: the old leases on both sides still, the new ones on duet too.
  await waitAgree("every lease, old and new, on both sides", [...old, ...later, ...lastCandidates]);
  // A BNDUPD the partner had not acked when duet died is sent again after the restart
  // (draft-12 §7.1.1: the sent potential-expiration-time is stored; §8.6, §9.8.1).
  const carries = (m: FailoverSeen) =>
    m.options.some((o) => o.name === "assigned-IP-address" && o.value === lastAddress);
  const fo = await x.failoverSeen();
  const sentBefore = fo.filter((m) =>
    m.type === "BNDUPD" && m.src.startsWith(`${DUET_ADDR}:`) && carries(m) && m.time < killedAt
  );
  // Acked on the old connection before duet went down (ISC may also ack it on the next one,
  // which §8.6 forbids and duet ignores).
  const ackedBefore = fo.some((m) =>
    m.type === "BNDACK" && m.src.startsWith(`${ISC_ADDR}:`) && m.time < killedAt &&
    sentBefore.some((u) => u.xid === m.xid)
  );
  if (!ackedBefore) {
    await x.waitFor(
      `duet's unacked update for ${lastAddress} sent again after the restart`,
      async () =>
        (await x.failoverSeen()).some((m) =>
          m.type === "BNDUPD" && m.src.startsWith(`${DUET_ADDR}:`) && carries(m) &&
          m.time > killedAt
        ),
      10_000,
    );
  }
  for (const [n, address] of oldLeases) {
    assert.equal(
      x.bound().get(clientIface(n))?.address,
      address,
      `${clientIface(n)} kept its address`,
    );
  }
}

/** Registers the scenario for one role. */
export function registerDuetRestart(duetRole: Role): void {
  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    Deno.test({
      name: `interop 5: duet ${duetRole} ${
        signal === "SIGKILL" ? "killed" : "stopped (SIGTERM)"
      } and restarted with its database loses no lease`,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: (t) => withInterop(t, { duetRole, mclt: 10 }, (x) => duetRestart(x, duetRole, signal)),
    });
  }
}
