/**
 * FailoverEndpoint over a stand-in PartnerLink (no TCP, no timers): the order in which it
 * commits and sends (draft-12 §7.1.1). The link records what the endpoint sends and whether
 * the store still held uncommitted writes at that moment.
 */
import assert from "node:assert/strict";
import { linkSettings } from "../../lib/cli/serve.ts";
import { parseConfig } from "../../lib/config/config.ts";
import {
  type EndpointClock,
  FailoverEndpoint,
  type PartnerLink,
  type PartnerLinkHandlers,
  STATE_META_KEY,
  STATE_RETRY_MS,
} from "../../lib/failover/endpoint.ts";
import { createLogger, type Logger, silentLogger } from "../../lib/log.ts";
import type { LocalState, PartnerInfo } from "../../lib/peer/link.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import {
  type FailoverMessage,
  getBindingUpdates,
  MsgType,
  ServerState,
} from "../../lib/wire/failover.ts";

const NOW = 1_800_000_000;
const ADDRESS = 0xc000020a; // 192.0.2.10

const CONFIG = `
database: ":memory:"
listen:
  - address: 198.51.100.1
lease-time: { default: 600, max: 1200, min: 60 }
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.10 - 192.0.2.20
failover:
  role: primary
  address: 198.51.100.1
  peer: 198.51.100.2
  mclt: 60
  split: 128
`;

/** A link that is up when the test says so and records every message with the store's state. */
class RecordingLink implements PartnerLink {
  handlers: PartnerLinkHandlers | null = null;
  up = false;
  xid = 100;
  sent: { message: FailoverMessage; pending: number }[] = [];
  states: LocalState[] = [];
  readonly #store: MemoryLeaseStore;
  constructor(store: MemoryLeaseStore) {
    this.#store = store;
  }
  start(): void {}
  stop(): Promise<void> {
    return Promise.resolve();
  }
  status() {
    return { link: "up" as const, partner: null, skew: null, sinceContact: null, connections: 1 };
  }
  sendState(local: LocalState): void {
    if (this.up) this.states.push(local);
  }
  sendMessage(message: FailoverMessage): boolean {
    if (!this.up) return false;
    this.sent.push({ message, pending: this.#store.pending });
    return true;
  }
  nextXid(): number | null {
    return this.up ? this.xid++ : null;
  }
  drops: string[] = [];
  drop(reason: string): void {
    if (this.up) this.drops.push(reason);
  }
}

/** The partner's handshake values and STATE. */
function partnerIn(serverState: number): PartnerInfo {
  return {
    relationship: "duet",
    vendorClass: null,
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    mclt: null,
    hba: null,
    serverState,
    serverFlags: 0,
    startTimeOfState: NOW - 1000,
  };
}

/** A clock whose timers never fire: the test drives everything. */
const STILL: EndpointClock = { now: () => NOW, schedule: () => 0, cancel: () => {} };

/** A clock whose timers are kept, for the test to fire; a cancelled one becomes a no-op. */
function recordingClock(now: () => number): {
  clock: EndpointClock;
  timers: { fn: () => void; ms: number }[];
} {
  const timers: { fn: () => void; ms: number }[] = [];
  const clock: EndpointClock = {
    now,
    schedule: (fn, ms) => timers.push({ fn, ms }) - 1,
    cancel: (h) => {
      const t = timers[h as number];
      if (t) t.fn = () => {};
    },
  };
  return { clock, timers };
}

function active(ends: number, tstp: number): Lease {
  return {
    ...emptyLease(ADDRESS, "active"),
    hwAddress: new Uint8Array([2, 0, 0, 0, 0, 1]),
    starts: NOW - 100,
    cltt: NOW - 100,
    ends,
    tstp,
  };
}

/** An endpoint over `store` and a RecordingLink, the way lib/cli/serve.ts makes one. */
function endpointOver(
  store: MemoryLeaseStore,
  options: {
    flush?: () => boolean;
    commitNow?: () => Promise<void>;
    clock?: EndpointClock;
    logger?: Logger;
    coreOffset?: () => number;
  } = {},
): { endpoint: FailoverEndpoint; link: RecordingLink } {
  const config = parseConfig(CONFIG, "test.yaml");
  const settings = linkSettings(config, null)!;
  const link = new RecordingLink(store);
  const endpoint = new FailoverEndpoint({
    config,
    settings,
    store,
    core: { resync: () => {}, utilisation: () => [], giveToBackup: () => [] },
    shell: {
      flush: options.flush ?? (() => {
        store.commit();
        return true;
      }),
      commitNow: options.commitNow ?? (() => {
        store.commit();
        return Promise.resolve();
      }),
      apply: () => {},
    },
    logger: options.logger ?? silentLogger(),
    clock: options.clock ?? STILL,
    ...(options.coreOffset ? { coreOffset: options.coreOffset } : {}),
    link: (h) => {
      link.handlers = h;
      return link;
    },
  });
  return { endpoint, link };
}

Deno.test("FailoverEndpoint tells the partner a state entered during the handshake (§7.10)", async () => {
  // Found by the simulation (seed 344): the secondary was paused while its connection was
  // being set up; the handshake's STATE said RECOVER, and since PAUSED was entered while not
  // communicating, no STATE followed: the primary believed RECOVER for good.
  const store = new MemoryLeaseStore();
  const { endpoint, link } = endpointOver(store);
  endpoint.start();
  endpoint.command("pause");
  link.up = true;
  link.handlers!.onUp(partnerIn(ServerState.RECOVER));
  for (let i = 0; i < 5; i++) await null;
  assert.equal(endpoint.status().state, "PAUSED");
  assert.equal(link.states.at(-1)?.serverState, ServerState.PAUSED);
  await endpoint.stop();
});

Deno.test("FailoverEndpoint has each new state committed and synced, even with no DHCP write waiting (§9.2)", async () => {
  const store = new MemoryLeaseStore();
  const events: string[] = [];
  const { endpoint } = endpointOver(store, {
    flush: () => {
      events.push(`commit ${store.pending > 0 ? "with writes" : "empty"}`);
      store.commit();
      return true;
    },
    commitNow: () => {
      events.push("sync asked");
      return Promise.resolve();
    },
  });
  endpoint.start();
  events.length = 0;
  endpoint.command("pause");
  await null;
  assert.equal(endpoint.status().state, "PAUSED");
  assert.equal(JSON.parse(store.getMeta(STATE_META_KEY) ?? "{}").state, ServerState.PAUSED);
  // A commit alone (synchronous=NORMAL) is not on disk until a sync, which the DHCP shell only
  // starts for replies that wait for one.
  assert.deepEqual(events, ["commit with writes", "sync asked"]);
  await endpoint.stop();
});

Deno.test("FailoverEndpoint retries a state it could not record until it is on stable storage", async () => {
  const store = new MemoryLeaseStore();
  const { clock, timers } = recordingClock(() => NOW);
  const lines: string[] = [];
  let failures = 2;
  const { endpoint } = endpointOver(store, {
    clock,
    logger: createLogger({ level: "debug", write: (l) => lines.push(l), now: () => NOW * 1000 }),
    commitNow: () => {
      if (failures-- > 0) return Promise.reject(new Error("EIO: sync failed"));
      store.commit();
      return Promise.resolve();
    },
  });
  endpoint.start();
  failures = 2;
  endpoint.command("pause");
  for (let i = 0; i < 5; i++) await null;
  const retries = () => timers.filter((t) => t.ms === STATE_RETRY_MS);
  assert.equal(retries().length, 1, "a retry is scheduled after the failed sync");
  assert.equal(
    lines.filter((l) => l.includes("Cannot record the failover state; retrying")).length,
    1,
  );
  retries()[0]?.fn();
  for (let i = 0; i < 5; i++) await null;
  assert.equal(retries().length, 2, "failed again: another retry, logged at debug only");
  assert.equal(lines.filter((l) => l.includes("Cannot record the failover state yet")).length, 1);
  retries()[1]?.fn();
  for (let i = 0; i < 5; i++) await null;
  assert.equal(retries().length, 2, "recorded: no more retries");
  assert.equal(lines.filter((l) => l.includes("Recorded the failover state")).length, 1);
  assert.equal(JSON.parse(store.getMeta(STATE_META_KEY) ?? "{}").state, ServerState.PAUSED);
  await endpoint.stop();
});

Deno.test("FailoverEndpoint sends a BNDUPD only for committed bindings (§7.1.1)", async () => {
  // Found by the simulation (seed 34): the link came back while a renewal waited for its group
  // commit; the queued change of that address went out on link-up, read from the uncommitted
  // row, with a potential expiration time that was not durable yet.
  const store = new MemoryLeaseStore();
  // NORMAL before the restart (§9.3.2): STARTUP, then NORMAL again with the partner.
  store.setMeta(
    STATE_META_KEY,
    JSON.stringify({
      state: ServerState.NORMAL,
      startTimeOfState: NOW - 1000,
      previousState: null,
      partnerState: ServerState.NORMAL,
      partnerStartTimeOfState: NOW - 1000,
      commLostAt: null,
      lastOperational: NOW - 5,
      mclt: null,
    }),
  );
  store.put(active(NOW + 60, NOW + 630));
  store.commit();
  const { endpoint, link } = endpointOver(store);
  endpoint.start();
  // The lease was committed while the link was down: its BNDUPD waits in the queue.
  endpoint.leasesCommitted([ADDRESS]);
  for (let i = 0; i < 5; i++) await null;
  // Then a renewal is written and waits for the DHCP shell's group commit.
  store.put(active(NOW + 120, NOW + 690));
  assert.equal(store.pending, 1);
  link.up = true;
  link.handlers!.onUp(partnerIn(ServerState.NORMAL));
  for (let i = 0; i < 20; i++) await null;
  assert.equal(endpoint.status().state, "NORMAL");
  const bndupds = link.sent.filter((s) => s.message.type === MsgType.BNDUPD);
  assert.equal(bndupds.length, 1);
  const u = getBindingUpdates(bndupds[0]!.message)[0]!;
  assert.equal(u.potentialExpirationTime, NOW + 690);
  assert.equal(bndupds[0]!.pending, 0, "the renewal was committed before its BNDUPD went out");
  await endpoint.stop();
});

Deno.test("FailoverEndpoint keeps PARTNER-DOWN's MCLT wait whole across a clock step (§9.4.2)", async (t) => {
  // lib/server/clock.ts: the DHCP core's clock never steps; the stored timeline (the endpoint's
  // clock) jumps with the system clock once the shell has moved the lease times. Either way
  // round, the partner's pool opens MCLT (60 s here) after PARTNER-DOWN began, not sooner (an
  // address the partner may still be serving) and not a year later.
  const YEAR = 365 * 86_400;
  for (const step of [YEAR, -YEAR]) {
    for (const order of ["entered before the step", "entered after the step"] as const) {
      await t.step(`${step > 0 ? "forward" : "backward"}, ${order}`, async () => {
        const store = new MemoryLeaseStore();
        // Down for a moment in COMMUNICATIONS-INTERRUPTED, where the operator may say
        // partner-down (§9.9.3) once STARTUP is over.
        store.setMeta(
          STATE_META_KEY,
          JSON.stringify({
            state: ServerState.COMMUNICATIONS_INTERRUPTED,
            startTimeOfState: NOW - 100,
            previousState: null,
            partnerState: ServerState.NORMAL,
            partnerStartTimeOfState: NOW - 1000,
            commLostAt: NOW - 100,
            lastOperational: NOW - 5,
            mclt: null,
          }),
        );
        let stored = NOW;
        let offset = 0;
        const { clock, timers } = recordingClock(() => stored);
        const { endpoint } = endpointOver(store, { clock, coreOffset: () => offset });
        const core = () => stored - offset;
        const applyStep = () => {
          stored += step;
          offset += step;
          endpoint.shiftTimes(step);
        };
        endpoint.start();
        // The STARTUP timer (and the first "still operating" record) fire.
        for (const timer of timers.splice(0)) timer.fn();
        assert.equal(endpoint.state, ServerState.COMMUNICATIONS_INTERRUPTED);
        if (order === "entered after the step") applyStep();
        assert.equal(endpoint.command("partner-down").accepted, true);
        assert.equal(endpoint.state, ServerState.PARTNER_DOWN);
        const entered = core();
        stored += 20;
        if (order === "entered before the step") applyStep();
        assert.equal(endpoint.partnerDownSince(), entered, "on the core's timeline");
        assert.equal(endpoint.service(core()).partnerPool, false, "20 s into the MCLT");
        stored += 39;
        assert.equal(endpoint.service(core()).partnerPool, false, "59 s into the MCLT");
        stored += 1;
        assert.equal(endpoint.service(core()).partnerPool, true, "the MCLT has passed");
        const recorded = JSON.parse(store.getMeta(STATE_META_KEY) ?? "{}");
        assert.equal(
          recorded.startTimeOfState,
          entered + offset,
          "recorded on the stored timeline",
        );
        await endpoint.stop();
      });
    }
  }
});
