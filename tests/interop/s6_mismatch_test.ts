/**
 * Interop scenario 6 (issue #6): mismatched settings between duet and ISC dhcpd 4.4.3 are
 * refused with the reject-reason draft-12 §7.8.2 (and §11.1) prescribes, on the wire and in
 * both logs, and the pair never reaches NORMAL. What ISC does differently is asserted too:
 * - ISC as secondary adopts the primary's MCLT whatever its own `mclt` line says (allowed:
 *   §7.8.2 step 7, "SHOULD be able to operate with any MCLT"), so that mismatch cannot be
 *   refused with duet as primary;
 * - ISC has no message digests: it answers duet's signed CONNECT with an unsigned CONNECTACK
 *   instead of refusing it with 12 (§7.8.2 step 4), and duet then disconnects with 21.
 */
import assert from "node:assert/strict";
import {
  DUET_ADDR,
  InteropLab,
  ISC_ADDR,
  type PairSettings,
  sleep,
  withInterop,
} from "./harness.ts";

/** Waits until a `type` message from `from` with reject-reason `reason` is on the capture. */
async function onWire(x: InteropLab, from: string, type: string, reason: number): Promise<void> {
  await x.waitFor(
    `${type} with reject-reason ${reason} from ${from} on the wire`,
    async () =>
      (await x.failoverSeen()).some((m) =>
        m.src.startsWith(`${from}:`) && m.type === type &&
        m.options.some((o) => o.name === "reject-reason" && o.value.startsWith(`${reason} `))
      ),
    10_000,
  );
}

/** Both sides stay out of NORMAL: no "Both servers normal", duet's link never up. */
async function neverUp(x: InteropLab): Promise<void> {
  assert.doesNotMatch(x.iscLog, /Both servers normal/);
  assert.doesNotMatch(x.duetLog, /Failover communications up/);
  const s = await x.duetStatus();
  assert.notEqual(s.state, "normal");
}

interface Case {
  name: string;
  settings: Partial<PairSettings> & { duetRole: "primary" | "secondary" };
  check(x: InteropLab): Promise<void>;
}

const CASES: Case[] = [
  {
    name: "relationship name, duet primary: ISC refuses with 8",
    settings: { duetRole: "primary", iscRelationship: "other" },
    async check(x) {
      await x.waitFor(
        "duet logs the refusal",
        () =>
          /Failover partner rejected our CONNECT .*reason="8 Connection rejected, invalid failover partner"/
            .test(x.duetLog),
        20_000,
      );
      assert.match(x.iscLog, /Failover CONNECT from pair: unknown failover relationship name/);
      await onWire(x, ISC_ADDR, "CONNECTACK", 8);
      await neverUp(x);
    },
  },
  {
    name: "relationship name, duet secondary: duet refuses with 8",
    settings: { duetRole: "secondary", iscRelationship: "other" },
    async check(x) {
      await x.waitFor(
        "duet logs the refusal",
        () =>
          /Rejected failover CONNECT .*reason="8 Connection rejected, invalid failover partner" message="Relationship \\"other\\" is not \\"pair\\""/
            .test(x.duetLog),
        20_000,
      );
      await x.waitFor(
        "ISC logs the refusal",
        () =>
          /Failover CONNECT to other rejected: Connection rejected, invalid failover partner/
            .test(x.iscLog),
        10_000,
      );
      await onWire(x, DUET_ADDR, "CONNECTACK", 8);
      await neverUp(x);
    },
  },
  {
    name: "MCLT, duet secondary configured with another: duet refuses with 5",
    settings: { duetRole: "secondary", mclt: 10, duetSecondaryMclt: 99 },
    async check(x) {
      await x.waitFor(
        "duet logs the refusal",
        () =>
          /Rejected failover CONNECT .*reason="5 Connection rejected, invalid MCLT" message="MCLT 10 is not the configured 99"/
            .test(x.duetLog),
        20_000,
      );
      await x.waitFor(
        "ISC logs the refusal",
        () => /Failover CONNECT to pair rejected: Connection rejected, invalid MCLT/.test(x.iscLog),
        10_000,
      );
      await onWire(x, DUET_ADDR, "CONNECTACK", 5);
      await neverUp(x);
    },
  },
  {
    name: "MCLT, ISC secondary configured with another: ISC takes duet's (§7.8.2 step 7)",
    settings: { duetRole: "primary", mclt: 10, iscSecondaryMclt: 99 },
    async check(x) {
      await x.waitBothNormal();
      assert.equal(x.iscLeases().failover.at(-1)?.mclt, 10, "ISC recorded duet's MCLT");
      assert.doesNotMatch(x.duetLog, /rejected our CONNECT/);
    },
  },
  {
    name: "shared secret, duet secondary: duet refuses ISC's unsigned CONNECT with 21",
    settings: { duetRole: "secondary", duetSecret: "s3cret" },
    async check(x) {
      await x.waitFor(
        "duet logs the refusal",
        () => /Rejected failover CONNECT .*reason="21 Missing message digest"/.test(x.duetLog),
        20_000,
      );
      await x.waitFor(
        "ISC logs the refusal",
        () => /Failover CONNECT to pair rejected: Missing message digest/.test(x.iscLog),
        10_000,
      );
      await onWire(x, DUET_ADDR, "CONNECTACK", 21);
      await neverUp(x);
    },
  },
  {
    name: "shared secret, duet primary: ISC ignores the digest, duet disconnects with 21",
    settings: { duetRole: "primary", duetSecret: "s3cret" },
    async check(x) {
      await x.waitFor(
        "duet logs the refusal",
        () =>
          /Failover handshake failed: sent DISCONNECT .*reason="21 Missing message digest" message="Message digest missing on CONNECTACK"/
            .test(x.duetLog),
        20_000,
      );
      await x.waitFor(
        "ISC logs the refusal",
        () => /Failover DISCONNECT from pair: Missing message digest/.test(x.iscLog),
        10_000,
      );
      await onWire(x, DUET_ADDR, "DISCONNECT", 21);
      // On the wire: duet's CONNECT is signed (message-digest first, §11.1); ISC's CONNECTACK
      // carries no digest and no reject-reason (it did not refuse with 12).
      const seen = await x.failoverSeen();
      const connect = seen.find((m) => m.type === "CONNECT");
      assert.equal(connect?.options[0]?.name, "message-digest");
      const ack = seen.find((m) => m.type === "CONNECTACK");
      assert.ok(ack !== undefined && ack.options.every((o) => o.name !== "message-digest"));
      assert.ok(ack.options.every((o) => o.name !== "reject-reason"));
      await sleep(500);
      await neverUp(x);
    },
  },
];

for (const c of CASES) {
  Deno.test({
    name: `interop 6: mismatched ${c.name}`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: (t) => withInterop(t, c.settings, (x) => c.check(x)),
  });
}
