/**
 * The migration the README's "Replacing one half of an ISC dhcpd pair" describes, in both
 * roles: two ISC dhcpd 4.4.3 servers run as a pair with clients on both; the one at duet's
 * address is stopped and duet takes its place with the same role and address and an empty
 * database. duet recovers everything from the remaining ISC (RECOVER, UPDREQALL, draft-12
 * §9.5.2), both go to NORMAL, duet's table holds every client's lease, and the clients of the
 * replaced server renew with duet (same server identifier) and keep their addresses.
 */
import assert from "node:assert/strict";
import { clientIface, clientMac, DUET_ADDR, InteropLab, ISC_ADDR, withInterop } from "./harness.ts";

async function migrate(x: InteropLab): Promise<void> {
  x.startIsc();
  const replaced = x.startIscInDuetPlace();
  await x.waitFor(
    "the ISC pair in NORMAL",
    () => /Both servers normal/.test(x.iscLog) && /Both servers normal/.test(replaced.log),
    30_000,
  );
  const ids = await x.addClients(8);
  x.dhclient(ids);
  await x.waitFor(
    "the clients bound and renewed (past the MCLT cap)",
    () =>
      ids.every((n) => x.events().some((e) => e.iface === clientIface(n) && e.reason === "RENEW")),
    30_000,
  );
  const before = x.bound();
  const ofReplaced = ids.filter((n) => before.get(clientIface(n))?.serverId === DUET_ADDR);
  assert.ok(ofReplaced.length > 0 && ofReplaced.length < ids.length, "both servers have clients");

  // Step 1: stop the ISC server to be replaced; its partner serves alone.
  await replaced.stop("SIGTERM");
  await x.waitFor(
    "the remaining ISC: communications-interrupted",
    () => x.iscState() === "communications-interrupted",
    20_000,
  );
  // Step 2: duet in its place, same role and address, empty database.
  await x.startDuet();
  await x.waitFor("duet status: normal/normal", async () => {
    const s = await x.duetStatus();
    return s.state === "normal" && s["partner-state"] === "normal";
  }, 30_000);
  assert.match(x.duetLog, /Failover state STARTUP -> RECOVER/);
  assert.match(x.duetLog, /Sent UPDREQALL/);
  await x.waitFor(
    "ISC: Both servers normal again",
    () => (x.iscLog.match(/Both servers normal/g) ?? []).length >= 2,
    20_000,
  );

  // duet learned every lease, with the same client.
  const duet = await x.duetLeases();
  for (const n of ids) {
    const e = before.get(clientIface(n))!;
    assert.equal(duet.get(e.address)?.state, "active", `${e.address} ACTIVE on duet`);
    assert.equal(duet.get(e.address)?.["hw-address"], clientMac(n));
  }
  // The replaced server's clients renew with duet (unicast to the same server identifier).
  const renewsBefore = x.events().length;
  await x.waitFor(
    "the replaced server's clients renew with duet",
    () =>
      ofReplaced.every((n) =>
        x.events().slice(renewsBefore).some((e) =>
          e.iface === clientIface(n) && e.reason === "RENEW" && e.serverId === DUET_ADDR &&
          e.address === before.get(clientIface(n))!.address
        )
      ),
    30_000,
  );
  assert.match(x.duetLog, /Renewed lease/);
  // And the remaining ISC knows of those renewals.
  const isc = x.iscLeases().leases;
  for (const n of ofReplaced) {
    assert.equal(isc.get(before.get(clientIface(n))!.address)?.bindingState, "active");
  }
  assert.ok([...before.values()].every((e) => e.serverId === DUET_ADDR || e.serverId === ISC_ADDR));
}

for (const duetRole of ["secondary", "primary"] as const) {
  Deno.test({
    name: `interop 7: duet replaces the ISC ${duetRole} of a running ISC pair`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: (t) =>
      withInterop(
        t,
        { duetRole, mclt: 10, leaseTime: { default: 20, max: 20, min: 5 } },
        migrate,
        { start: false },
      ),
  });
}
