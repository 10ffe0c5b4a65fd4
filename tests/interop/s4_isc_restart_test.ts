/**
 * Interop scenario 4, short outage (issue #6): ISC dhcpd is killed and restarted while duet
 * is in COMMUNICATIONS-INTERRUPTED, with no `partner-down`. Both return to NORMAL (draft-12
 * §9.9.3: partner in NORMAL or COMMUNICATIONS-INTERRUPTED -> NORMAL) and the lease duet granted
 * alone reaches ISC (its queued BNDUPD, §9.8.1), so both tables agree.
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
  withInterop,
} from "./harness.ts";

async function shortOutage(x: InteropLab, duetRole: Role): Promise<void> {
  await x.waitBothNormal();
  const ids = await x.addClients(8);
  const server = (n: number) => (ownerOf(clientMac(n), 128) === duetRole ? DUET_ADDR : ISC_ADDR);
  const before = [
    ids.find((n) => server(n) === DUET_ADDR)!,
    ids.find((n) => server(n) === ISC_ADDR)!,
  ];
  const during = ids.find((n) => !before.includes(n) && server(n) === ISC_ADDR)!;
  x.dhclient(before, { name: "dh-before" });
  await x.waitFor(
    "two clients bound",
    () => before.every((n) => x.bound().has(clientIface(n))),
    20_000,
  );

  await x.stopIsc("SIGKILL");
  await x.waitFor(
    "duet: communications-interrupted",
    async () => (await x.duetStatus()).state === "communications-interrupted",
    15_000,
  );
  // A client of ISC's buckets: duet answers it alone (§9.9.2).
  x.dhclient([during], { name: "dh-during" });
  await x.waitFor(
    "a client bound by duet alone",
    () => x.bound().get(clientIface(during))?.serverId === DUET_ADDR,
    20_000,
  );

  x.startIsc();
  await x.waitFor("duet status: normal/normal", async () => {
    const s = await x.duetStatus();
    return s.state === "normal" && s["partner-state"] === "normal";
  }, 40_000);
  assert.match(x.duetLog, /Failover state COMMUNICATIONS-INTERRUPTED -> NORMAL/);
  assert.doesNotMatch(x.duetLog, /PARTNER-DOWN|POTENTIAL-CONFLICT/);
  await x.waitFor("ISC: Both servers normal", () => /Both servers normal/.test(x.iscLog), 20_000);
  let diff: string[] = [];
  await x.waitFor("every lease on both sides", async () => {
    const d = await x.duetLeases();
    const i = x.iscLeases().leases;
    diff = [...before, during].flatMap((n) => {
      const a = x.bound().get(clientIface(n))?.address ?? "?";
      const ok = d.get(a)?.state === "active" && i.get(a)?.bindingState === "active" &&
        d.get(a)?.["hw-address"] === clientMac(n) && i.get(a)?.hardware === clientMac(n);
      return ok ? [] : [`${a}: duet ${d.get(a)?.state}, ISC ${i.get(a)?.bindingState}`];
    });
    return diff.length === 0;
  }, 20_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${diff.join(", ")}`);
  });
}

for (const duetRole of ["primary", "secondary"] as const) {
  Deno.test({
    name:
      `interop 4: ISC killed and restarted, duet ${duetRole} back to NORMAL without partner-down`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: (t) => withInterop(t, { duetRole, mclt: 10 }, (x) => shortOutage(x, duetRole)),
  });
}
