/**
 * Interop scenario 1 (issue #6): duet and ISC dhcpd 4.4.3 start from empty databases and reach
 * NORMAL, through RECOVER with UPDREQALL/UPDDONE both ways (draft-12 §9.5.2, §7.4, §7.5), and
 * the primary balances the pool (§5.4): afterwards both lease tables agree on which addresses
 * the secondary holds (BACKUP), and each side holds addresses it may hand out.
 */
import assert from "node:assert/strict";
import { DUET_ADDR, InteropLab, ISC_ADDR, type Role, withInterop } from "./harness.ts";

async function startup(x: InteropLab, duetRole: Role): Promise<void> {
  await x.waitBothNormal();
  // The logs of both sides tell the same story.
  assert.match(x.iscLog, /peer moves from recover-done to normal/);
  assert.match(x.iscLog, /I move from recover-done to normal/);
  assert.match(x.duetLog, /Failover state RECOVER -> RECOVER-DONE/);
  assert.match(x.duetLog, /Failover state RECOVER-DONE -> NORMAL/);
  assert.match(x.duetLog, /Failover communications up .*partnerVendor=isc-4\.4\.3/);

  // Pool balancing: the primary moves half of the 200 FREE addresses to BACKUP.
  await x.waitFor("100 BACKUP addresses on both sides", async () => {
    const duet = InteropLab.countStates((await x.duetLeases()).values());
    const isc = InteropLab.countStates(x.iscLeases().leases.values());
    return duet.backup === 100 && isc.backup === 100;
  }, 20_000);
  const duet = await x.duetLeases();
  const isc = x.iscLeases();
  const backupOf = (m: Iterable<[string, { state?: string; bindingState?: string }]>) =>
    [...m].filter(([, l]) => (l.state ?? l.bindingState) === "backup").map(([a]) => a).sort();
  assert.deepEqual(backupOf(duet), backupOf(isc.leases), "the same addresses are BACKUP");
  // Each side holds addresses it may hand out: FREE for the primary, BACKUP for the secondary;
  // the rest of the pool is FREE (duet lists an address without a row as having none).
  assert.equal(InteropLab.countStates(isc.leases.values()).free, 100);
  const duetFree = [...duet.values()].filter((l) => l.state === "free").length;
  assert.equal(
    duetFree + 100,
    200 - [...duet.values()].filter((l) =>
      l.state !== "free" &&
      l.state !== "backup"
    ).length,
  );

  // On the wire (the capture may lag the logs a little): each side asked the other for
  // everything and got UPDDONE; the primary's BNDUPDs moved the pool and the secondary acked
  // each (one binding per message, which ISC needs).
  const primary = duetRole === "primary" ? DUET_ADDR : ISC_ADDR;
  const secondary = duetRole === "primary" ? ISC_ADDR : DUET_ADDR;
  let counts = "";
  await x.waitFor("UPDREQALL, UPDDONE and the BACKUP BNDUPDs on the wire", async () => {
    const seen = await x.failoverSeen();
    const from = (addr: string, type: string) =>
      seen.filter((m) => m.src.startsWith(`${addr}:`) && m.type === type).length;
    const backupUpdates = seen.filter((m) =>
      m.src.startsWith(`${primary}:`) && m.type === "BNDUPD" &&
      m.options.some((o) =>
        o.name === "binding-status" && o.value.startsWith("BACKUP")
      )
    ).length;
    counts = `UPDREQALL ${from(DUET_ADDR, "UPDREQALL")}/${from(ISC_ADDR, "UPDREQALL")}, ` +
      `UPDDONE ${from(DUET_ADDR, "UPDDONE")}/${from(ISC_ADDR, "UPDDONE")}, ` +
      `BACKUP BNDUPDs ${backupUpdates}, BNDACKs from the secondary ${from(secondary, "BNDACK")}`;
    return [DUET_ADDR, ISC_ADDR].every((a) =>
      from(a, "UPDREQALL") >= 1 && from(a, "UPDDONE") >= 1
    ) &&
      backupUpdates >= 100 && from(secondary, "BNDACK") >= 100;
  }, 10_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${counts}`);
  });
  assert.doesNotMatch(x.iscLog, /protocol error|duplicate option|disconnected/);

  // duet status agrees with ISC's log.
  const status = await x.duetStatus();
  assert.equal(status.state, "normal");
  assert.equal(status["partner-state"], "normal");
  assert.equal(x.iscState(), "normal");
  assert.equal(x.iscPartnerState(), "normal");
}

Deno.test({
  name: "interop 1: duet primary + ISC secondary start empty and reach NORMAL, pool balanced",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: (t) => withInterop(t, { duetRole: "primary" }, (x) => startup(x, "primary")),
});

Deno.test({
  name: "interop 1: duet secondary + ISC primary start empty and reach NORMAL, pool balanced",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: (t) => withInterop(t, { duetRole: "secondary" }, (x) => startup(x, "secondary")),
});
