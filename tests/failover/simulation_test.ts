/**
 * The deterministic failover simulation (testing ladder step 2, tests/failover/sim/): the real
 * DhcpCore and FailoverEndpoint on two simulated servers, the real link engine over a
 * simulated network, RFC 2131 clients behind a relay, seeded faults, and the invariants of
 * issues #4 and #5 after every event. SIM_SEED=<n> replays one schedule (with its trace on
 * failure); SIM_SCHEDULES=<n> sets how many run; SIM_WORKERS=<n> how many threads run them.
 */
import assert from "node:assert/strict";
import { STATE_META_KEY } from "../../lib/failover/endpoint.ts";
import { ServerState } from "../../lib/wire/failover.ts";
import { runSchedules } from "./sim/run.ts";
import { PRIMARY_ADDRESS, SECONDARY_ADDRESS, Sim, type SimParams } from "./sim/sim.ts";
import type { SimServer } from "./sim/server.ts";

const S = ServerState;

function envInt(name: string): number | undefined {
  const v = Deno.env.get(name);
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`${name} must be an integer, got ${v}`);
  return n;
}

/** A calm schedule: no fault steps, no loss, no operator mistakes. */
const CALM: Partial<SimParams> = {
  steps: 0,
  loss: 0,
  misoperation: false,
  autoPartnerDown: 0,
  netSpikeRate: 0,
  commitDelayMs: 2,
};

function stateOf(s: SimServer): number {
  return s.proc?.endpoint.state ?? 0;
}

Deno.test("simulation: a fresh pair recovers to NORMAL, balances its pools and agrees", async () => {
  const sim = new Sim(11, {
    trace: true,
    traceLines: 100_000,
    params: { ...CALM, poolSize: 10, clients: 4, mclt: 30, split: 128, netDelayMs: 5 },
  });
  await sim.start();
  await sim.advance(sim.sched.now + 10);
  assert.equal(stateOf(sim.primary), S.NORMAL);
  assert.equal(stateOf(sim.secondary), S.NORMAL);
  for (const role of ["primary", "secondary"]) {
    // No stored state: STARTUP with previous RECOVER (§9.3.2 step 1), UPDREQALL, UPDDONE,
    // RECOVER-DONE (the MCLT since the failure "0" has passed, §9.6.2), then NORMAL (§9.7.2).
    const path = sim.trace.filter((t) => t.includes(`] ${role} is `)).map((t) =>
      t.replace(/.* is /, "")
    );
    assert.deepEqual(path.slice(-4), ["STARTUP", "RECOVER", "RECOVER-DONE", "NORMAL"], role);
  }
  assert.ok(sim.trace.some((t) => /primary sends UPDREQALL/.test(t)));
  assert.ok(sim.trace.some((t) => /secondary sends UPDREQALL/.test(t)));
  // §5.4, §9.8.1: the secondary asks (POOLREQ), the primary hands it about half the pool.
  const backup = (s: SimServer) => [...s.store.iterate({ state: "backup" })].length;
  assert.ok(sim.trace.some((t) => /secondary sends POOLREQ/.test(t)));
  assert.ok(backup(sim.primary) >= 4, `primary has ${backup(sim.primary)} BACKUP rows`);
  assert.equal(backup(sim.secondary), backup(sim.primary));
  await sim.quiesce();
});

Deno.test("simulation: in NORMAL each client is answered by exactly one server (#5)", async () => {
  const sim = new Sim(12, {
    params: { ...CALM, poolSize: 14, clients: 12, mclt: 60, leaseDefault: 120, split: 128 },
  });
  await sim.start();
  await sim.advance(sim.sched.now + 600);
  await sim.quiesce();
  // Every broadcast DISCOVER and INIT-REBOOT seen by both in NORMAL was taken by one (the
  // invariant fails the run otherwise), and both had clients of their own.
  assert.ok(sim.stats.loadBalanceChecks >= 12, `${sim.stats.loadBalanceChecks} checks`);
  const by = (id: number) => sim.clients.filter((c) => c.lease?.serverId === id).length;
  assert.ok(by(PRIMARY_ADDRESS) > 0 && by(SECONDARY_ADDRESS) > 0, "both serve clients");
  assert.equal(by(PRIMARY_ADDRESS) + by(SECONDARY_ADDRESS), 12);
});

/** A pair in NORMAL whose clients all hold leases, with a slow UPDREQALL answer (window 1). */
async function settledPair(seed: number): Promise<Sim> {
  const sim = new Sim(seed, {
    params: {
      ...CALM,
      poolSize: 14,
      clients: 10,
      maxUnacked: [1, 1],
      netDelayMs: 100,
      mclt: 60,
      leaseDefault: 600,
      leaseMax: 1200,
    },
  });
  await sim.start();
  await sim.advance(sim.sched.now + 60);
  assert.equal(stateOf(sim.primary), S.NORMAL);
  assert.equal(stateOf(sim.secondary), S.NORMAL);
  assert.equal(sim.clients.filter((c) => c.lease !== null).length, 10);
  return sim;
}

/** The secondary loses its disk and restarts: RECOVER, UPDREQALL; returns once it is answered. */
async function secondaryAsksForEverything(sim: Sim): Promise<void> {
  sim.secondary.crash();
  sim.secondary.replaceStore();
  await sim.advance(sim.sched.now + 5);
  sim.secondary.start();
  for (let i = 0; i < 400; i++) {
    if (sim.primary.proc?.endpoint.status().sync.pass === "updreqall") break;
    await sim.advance(sim.sched.now + 0.05);
  }
  assert.equal(sim.primary.proc?.endpoint.status().sync.pass, "updreqall");
  assert.equal(stateOf(sim.secondary), S.RECOVER);
}

/** Every client's binding is on the (new) secondary. */
function secondaryKnowsEveryLease(sim: Sim): void {
  for (const c of sim.clients) {
    const l = c.lease;
    if (l === null || l.end <= sim.sched.now) continue;
    const row = sim.secondary.store.get(l.address);
    assert.equal(row?.state, "active", `c${c.index}'s ${l.address} on the secondary`);
  }
}

Deno.test("simulation: the requester crashes in the middle of an UPDREQALL answer (§7.4, §9.5.2)", async () => {
  const sim = await settledPair(7);
  await secondaryAsksForEverything(sim);
  // It crashes while the primary answers, and comes back: asks again, gets everything.
  sim.secondary.crash();
  await sim.advance(sim.sched.now + 20);
  sim.secondary.start();
  await sim.advance(sim.sched.now + 3 * sim.p.mclt);
  assert.equal(stateOf(sim.primary), S.NORMAL);
  assert.equal(stateOf(sim.secondary), S.NORMAL);
  secondaryKnowsEveryLease(sim);
  await sim.quiesce();
});

Deno.test("simulation: the answerer crashes in the middle of an UPDREQALL answer (§7.4, §9.5.2)", async () => {
  const sim = await settledPair(8);
  await secondaryAsksForEverything(sim);
  const pending = () =>
    JSON.parse(sim.secondary.store.getMeta(STATE_META_KEY) ?? "{}").updreqallPending;
  assert.equal(pending(), true);
  // The primary's memory that it owes an UPDREQALL dies with it; the secondary must ask for
  // everything again until an UPDDONE answers its UPDREQALL.
  sim.primary.crash();
  await sim.advance(sim.sched.now + 20);
  sim.primary.start();
  await sim.advance(sim.sched.now + 3 * sim.p.mclt);
  assert.equal(stateOf(sim.primary), S.NORMAL);
  assert.equal(stateOf(sim.secondary), S.NORMAL);
  assert.equal(pending(), false);
  secondaryKnowsEveryLease(sim);
  await sim.quiesce();
});

Deno.test("simulation: random schedules keep the invariants", async () => {
  const one = envInt("SIM_SEED");
  const count = one !== undefined ? 1 : envInt("SIM_SCHEDULES") ?? 2000;
  const first = one ?? 0x5eed0000;
  const workers = one !== undefined ? 1 : envInt("SIM_WORKERS") ??
    Math.min(2, navigator.hardwareConcurrency);
  const started = performance.now();
  const r = await runSchedules(first, count, workers);
  const ms = Math.round(performance.now() - started);
  if (r.failure !== null) assert.fail(r.failure);
  const t = r.totals;
  // deno-lint-ignore no-console
  console.log(
    `${r.schedules} schedules (seeds ${first}..${first + count - 1}) in ${ms} ms on ${workers} ` +
      `worker(s): ${JSON.stringify(t)}\n` +
      `PARTNER-DOWN while the partner served (the draft's exception): ${r.relaxed} schedules, ` +
      `${t.duplicates} duplicate leases${
        r.duplicateExamples.length > 0 ? `, e.g. ${r.duplicateExamples[0]}` : ""
      }\nstate pairs seen while communicating: ${r.pairs.join(" ")}`,
  );
  assert.equal(r.schedules, count);
  if (count >= 500) {
    // The schedules must reach what they are meant to test.
    assert.ok(t.crashes > 0 && t.terminations > 0 && t.pauses > 0 && t.cuts > 0 && t.resets > 0);
    assert.ok(t.operatorPartnerDown > 0 && t.autoPartnerDown > 0, "both kinds of PARTNER-DOWN");
    assert.ok(t.loadBalanceChecks > 0, "load balancing checked in NORMAL");
    assert.ok(r.relaxed > 0, "some schedules exercise the draft's exception");
    // Primary/secondary state pairs over a quiet link: recovery from PARTNER-DOWN and PAUSED.
    for (const p of ["NORMAL/NORMAL", "PARTNER-DOWN/RECOVER-WAIT", "RECOVER-WAIT/PARTNER-DOWN"]) {
      assert.ok(r.pairs.includes(p), `never saw ${p}`);
    }
    assert.ok(r.pairs.some((p) => p.includes("PAUSED")), "never saw PAUSED");
  }
});
