/**
 * In-process cost of one binding's trip through the failover pipeline (draft-12 §7.1-§7.2),
 * stage by stage: `deno run --allow-all bench/sync_bench.ts [bindings-per-BNDUPD] [rounds]`.
 *
 * Two BindingSync engines, each over its own SqliteLeaseStore on a temp file holding a pool
 * of 126,000 addresses (as the pair benchmark's), wired through encodeFailover/decodeFailover:
 * per round the primary writes and commits K ACTIVE leases (what DHCP does), its engine builds
 * the BNDUPDs, the secondary checks and stores them and answers with BNDACKs, and the primary
 * records the acks. No sockets, no event loop, no fdatasync: what this leaves out (the kernel,
 * the shells, the syncs, the broadcasts each server refuses) is the rest of what the pair
 * benchmark's CPU per exchange holds.
 */
import { BindingSync, type SyncEffect } from "../lib/failover/sync.ts";
import { SqliteLeaseStore } from "../lib/store/sqlite.ts";
import { emptyLease, type Lease } from "../lib/store/store.ts";
import { decodeFailover, encodeFailover, type FailoverMessage } from "../lib/wire/failover.ts";
import { output } from "./command.ts";

/** 198.18.16.0, the first address of the pair benchmark's pool. */
const BASE = 0xc6121000;
const POOL = 126_000;

function positive(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`Cannot use ${name} "${text}": expected a positive whole number`);
  }
  return n;
}

const perBndupd = positive(Deno.args[0], 16, "bindings per BNDUPD");
const rounds = positive(Deno.args[1], 2000, "rounds");
if (perBndupd * rounds > POOL / 2) {
  throw new RangeError(`Cannot run ${perBndupd * rounds} bindings: at most ${POOL / 2}`);
}

/** Milliseconds per stage. */
const spent = new Map<string, number>();
function timed<T>(stage: string, fn: () => T): T {
  const start = performance.now();
  const out = fn();
  spent.set(stage, (spent.get(stage) ?? 0) + performance.now() - start);
  return out;
}

const T0 = Math.floor(Date.now() / 1000);
const dir = Deno.makeTempDirSync({ prefix: "duet-sync-bench-" });
const stores: SqliteLeaseStore[] = [];

/** A balanced pool: even addresses FREE (the primary's), odd ones BACKUP (the secondary's). */
function openPool(path: string): SqliteLeaseStore {
  const store = SqliteLeaseStore.open(path, { synchronous: "DEFERRED" });
  stores.push(store);
  for (let i = 0; i < POOL; i++) {
    store.put({ ...emptyLease(BASE + i, i % 2 === 0 ? "free" : "backup"), starts: T0 - 100 });
  }
  store.commit();
  return store;
}

/** Runs a step's effects as the endpoint does: writes join the batch, sends commit it first. */
function apply(store: SqliteLeaseStore, effects: SyncEffect[], side: string): FailoverMessage[] {
  const out: FailoverMessage[] = [];
  for (const e of effects) {
    if (e.kind === "persist") timed(`${side} put`, () => store.put(e.lease));
    else if (e.kind === "record-ack") {
      timed(`${side} recordAck`, () => store.recordAck(e.lease, e.tsfp));
    } else if (e.kind === "send" || e.kind === "send-after-commit") {
      if (store.pending > 0) timed(`${side} commit`, () => store.commit());
      out.push(e.message);
    }
  }
  if (store.pending > 0) timed(`${side} commit`, () => store.commit());
  return out;
}

/** Through the codec both ways, as over the link. */
function wire(m: FailoverMessage): FailoverMessage {
  const bytes = timed("encode", () => encodeFailover(m));
  return timed("decode", () => decodeFailover(bytes));
}

try {
  const a = openPool(`${dir}/primary.db`);
  const b = openPool(`${dir}/secondary.db`);
  const inPool = (address: number) => address >= BASE && address < BASE + POOL;
  const primary = new BindingSync({ role: "primary", view: a, inPool });
  const secondary = new BindingSync({ role: "secondary", view: b, inPool });
  let xidA = 1;
  let xidB = 1;
  primary.step({ kind: "link-up", now: T0, maxUnackedBndupd: 10, nextXid: () => xidA++ });
  secondary.step({ kind: "link-up", now: T0, maxUnackedBndupd: 10, nextXid: () => xidB++ });

  let client = 0;
  const started = performance.now();
  for (let r = 0; r < rounds; r++) {
    const now = T0 + Math.floor(r / 1000);
    const leases: Lease[] = [];
    for (let k = 0; k < perBndupd; k++) {
      client++;
      const lease: Lease = {
        ...emptyLease(BASE + 2 * (client % (POOL / 2)), "active"),
        hwAddress: new Uint8Array([2, 0, client >> 16 & 255, client >> 8 & 255, client & 255, 1]),
        starts: now,
        cltt: now,
        ends: now + 3600,
        tstp: now + 3900,
      };
      timed("primary DHCP put", () => a.put(lease));
      leases.push(lease);
    }
    timed("primary DHCP commit", () => a.commit());
    const effects = timed(
      "primary step",
      () => primary.step({ kind: "leases-changed", now, leases }),
    );
    for (const update of apply(a, effects, "primary")) {
      const message = wire(update);
      const answer = timed(
        "secondary step",
        () => secondary.step({ kind: "message", now, message }),
      );
      for (const ack of apply(b, answer, "secondary")) {
        const acked = wire(ack);
        const recorded = timed(
          "primary ack step",
          () => primary.step({ kind: "message", now, message: acked }),
        );
        apply(a, recorded, "primary ack");
      }
    }
  }
  const total = performance.now() - started;
  const bindings = perBndupd * rounds;
  const status = primary.status;
  if (status.updatesAccepted !== bindings || status.queued + status.inFlight !== 0) {
    throw new Error(`Not every binding was acked: ${JSON.stringify(status)}`);
  }
  const lines = [
    `${bindings} bindings, ${perBndupd} per BNDUPD: ${(total * 1000 / bindings).toFixed(1)} ` +
    `µs per binding in all`,
  ];
  for (const [stage, ms] of [...spent].sort((x, y) => y[1] - x[1])) {
    lines.push(`  ${stage.padEnd(22)} ${(ms * 1000 / bindings).toFixed(2).padStart(6)} µs`);
  }
  output(lines.join("\n") + "\n");
} finally {
  for (const s of stores) s.close();
  Deno.removeSync(dir, { recursive: true });
}
