/**
 * The protocol clock (lib/server/clock.ts): monotonic time anchored to the wall clock, step
 * detection, the core's shifted view of the leases, and the start-up check against the
 * database. Pure: the clock sources are fakes.
 */
import assert from "node:assert/strict";
import {
  CLOCK_STEP_THRESHOLD_SECONDS,
  CoreLeaseView,
  ProtocolClock,
  shiftLease,
  START_STEP_THRESHOLD_SECONDS,
  startStep,
} from "../../lib/server/clock.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";

function fake(wallMs = 1_800_000_000_000, monoMs = 123_456) {
  const t = { wallMs, monoMs };
  const clock = new ProtocolClock({ wallMs: () => t.wallMs, monoMs: () => t.monoMs });
  return { t, clock };
}

function lease(fields: Partial<Lease> = {}): Lease {
  return {
    ...emptyLease(0xc0000210, "active"),
    hwAddress: new Uint8Array([2, 0, 0, 0, 0, 1]),
    starts: 1_800_000_000,
    ends: 1_800_003_600,
    cltt: 1_800_000_000,
    ...fields,
  };
}

Deno.test("ProtocolClock.now() runs on the monotonic clock from the wall time at start", () => {
  const { t, clock } = fake();
  assert.equal(clock.now(), 1_800_000_000);
  t.monoMs += 1500;
  t.wallMs += 1500;
  assert.equal(clock.now(), 1_800_000_001.5);
  t.wallMs += 86_400_000; // the system clock steps a day forward
  assert.equal(clock.now(), 1_800_000_001.5, "a wall-clock step does not move it");
  assert.equal(clock.storeNow(), 1_800_000_001.5, "nor the stored timeline until applied");
});

Deno.test("ProtocolClock.pendingStep() reports steps beyond the threshold, in whole seconds", async (t) => {
  await t.step("within the threshold: no step (NTP's slews and small steps)", () => {
    const { t, clock } = fake();
    t.wallMs += CLOCK_STEP_THRESHOLD_SECONDS * 1000;
    assert.equal(clock.pendingStep(), 0);
    t.wallMs -= 2 * CLOCK_STEP_THRESHOLD_SECONDS * 1000;
    assert.equal(clock.pendingStep(), 0);
  });
  await t.step("forward: a router that booted without RTC gets its time from NTP", () => {
    const { t, clock } = fake(86_400_000); // 1970-01-02
    t.wallMs = 1_800_000_000_000;
    assert.equal(clock.pendingStep(), 1_800_000_000 - 86_400);
  });
  await t.step("backward, rounded to whole seconds", () => {
    const { t, clock } = fake();
    t.wallMs -= 86_400_400;
    assert.equal(clock.pendingStep(), -86_400);
  });
  await t.step("applyStep() moves storeNow() with the stored times, not now()", () => {
    const { t, clock } = fake();
    t.wallMs += 3_600_000;
    clock.applyStep(clock.pendingStep());
    assert.equal(clock.offset, 3600);
    assert.equal(clock.storeNow(), 1_800_003_600);
    assert.equal(clock.now(), 1_800_000_000);
    assert.equal(clock.pendingStep(), 0, "applied");
    assert.deepEqual(clock.steps, { count: 1, last: 3600 });
    assert.throws(() => clock.applyStep(0.5), RangeError);
  });
});

Deno.test("shiftLease() moves set times and keeps unset ones at 0", () => {
  const l = lease({ tstp: 0, atsfp: 1_800_000_100 });
  assert.equal(shiftLease(l, 0), l, "no step: the same object");
  const moved = shiftLease(l, -86_400);
  assert.deepEqual(
    [moved.starts, moved.ends, moved.cltt, moved.tstp, moved.tsfp, moved.atsfp],
    [1_799_913_600, 1_799_917_200, 1_799_913_600, 0, 0, 1_799_913_700],
  );
  assert.equal(shiftLease(l, -1_900_000_000).ends, 1, "never below 1 (0 means unset)");
});

Deno.test("CoreLeaseView shows the core its own timeline: stored times minus the applied steps", () => {
  const store = new MemoryLeaseStore();
  const { t, clock } = fake();
  const view = new CoreLeaseView(store, clock);
  store.put(lease());
  store.commit();
  assert.deepEqual(view.get(0xc0000210), lease(), "no step: rows as stored");
  t.wallMs += 86_400_000;
  const step = clock.pendingStep();
  store.shiftTimes(step);
  store.commit();
  clock.applyStep(step);
  assert.equal(store.get(0xc0000210)?.ends, 1_800_090_000, "stored on the new clock");
  assert.equal(view.get(0xc0000210)?.ends, 1_800_003_600, "the core sees what it wrote");
  assert.deepEqual(view.findByHw(1, new Uint8Array([2, 0, 0, 0, 0, 1])).map((l) => l.ends), [
    1_800_003_600,
  ]);
  assert.deepEqual([...view.iterate()].map((l) => l.starts), [1_800_000_000]);
  assert.equal(view.countByState().active, 1);
  store.close();
});

Deno.test("startStep() moves stored times back only when the clock is behind the database", async (t) => {
  await t.step("booted without RTC: the clock is years behind the newest lease", () => {
    assert.equal(startStep(1_800_000_000, 86_400), -(1_800_000_000 - 86_400));
  });
  await t.step("a partner's clock a little ahead is not a step", () => {
    assert.equal(startStep(1_800_000_000 + START_STEP_THRESHOLD_SECONDS, 1_800_000_000), 0);
  });
  await t.step("a clock ahead of the database is ordinary downtime", () => {
    assert.equal(startStep(1_800_000_000, 1_900_000_000), 0);
  });
  await t.step("an empty database", () => {
    assert.equal(startStep(0, 1_800_000_000), 0);
  });
});
