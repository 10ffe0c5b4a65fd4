/** `duet serve` at start with a clock behind its database (lib/cli/serve.ts alignStoredTimes). */
import assert from "node:assert/strict";
import { alignStoredTimes } from "../../lib/cli/serve.ts";
import { STATE_META_KEY } from "../../lib/failover/endpoint.ts";
import type { Persisted } from "../../lib/failover/state.ts";
import { silentLogger } from "../../lib/log.ts";
import { ProtocolClock } from "../../lib/server/clock.ts";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { emptyLease } from "../../lib/store/store.ts";
import { ServerState } from "../../lib/wire/failover.ts";

const LAST = 1_800_000_000;
const YEAR = 365 * 86_400;

Deno.test("alignStoredTimes() moves the failover state's times back with the leases", async (t) => {
  const record: Persisted = {
    state: ServerState.PARTNER_DOWN,
    startTimeOfState: LAST - 100,
    previousState: null,
    partnerState: ServerState.NORMAL,
    partnerStartTimeOfState: LAST - 5000,
    commLostAt: LAST - 400,
    lastOperational: LAST - 5,
    mclt: 300,
  };
  const open = (meta: string | null) => {
    const store = SqliteLeaseStore.open(":memory:");
    store.put({ ...emptyLease(0xc6120010, "active"), starts: LAST - 60, ends: LAST + 3540 });
    store.setMeta("clock.wall", String(LAST));
    if (meta !== null) store.setMeta(STATE_META_KEY, meta);
    store.commit();
    return store;
  };
  // The router restarts with its clock a year behind what the database last recorded.
  const clock = new ProtocolClock({ wallMs: () => (LAST - YEAR) * 1000, monoMs: () => 0 });

  await t.step("a readable record moves by the step; the partner's time stays", () => {
    const store = open(JSON.stringify(record));
    try {
      alignStoredTimes(store, clock, silentLogger());
      assert.equal(store.get(0xc6120010)?.ends, LAST + 3540 - YEAR, "the lease moved");
      const moved = JSON.parse(store.getMeta(STATE_META_KEY) as string) as Persisted;
      assert.deepEqual(moved, {
        ...record,
        startTimeOfState: record.startTimeOfState - YEAR,
        commLostAt: (record.commLostAt as number) - YEAR,
        lastOperational: record.lastOperational - YEAR,
      });
    } finally {
      store.close();
    }
  });
  await t.step("an unreadable record is left as it is, and the leases still move", () => {
    const store = open("{not json");
    try {
      alignStoredTimes(store, clock, silentLogger());
      assert.equal(store.getMeta(STATE_META_KEY), "{not json");
      assert.equal(store.get(0xc6120010)?.ends, LAST + 3540 - YEAR);
    } finally {
      store.close();
    }
  });
  await t.step("a standalone database has no record to move", () => {
    const store = open(null);
    try {
      alignStoredTimes(store, clock, silentLogger());
      assert.equal(store.getMeta(STATE_META_KEY), undefined);
    } finally {
      store.close();
    }
  });
});
