/**
 * The eBPF load-balancing filter (lib/balance/kernel_filter.ts, lib/server/bpf.ts), run by the
 * kernel on a real socket: thousands of crafted requests sent over loopback, and what arrives
 * compared with the user-space decision (lib/balance/hash.ts shouldAnswer and the rules of
 * lib/server/dhcp.ts #refuse). The filter may only drop what the core would refuse.
 */
import assert from "node:assert/strict";
import { KernelBalanceFilter } from "../../lib/server/bpf.ts";
import { bytes, deliver, type Spec } from "./bpf_packets.ts";
import {
  type FailoverRole,
  type Polarity,
  shouldAnswer,
  shouldAnswerRequest,
} from "../../lib/balance/hash.ts";
import { MAX_KEY, mineBitmap, OPTION_STEPS } from "../../lib/balance/kernel_filter.ts";
import { isMine } from "../../lib/balance/hash.ts";
import { requireOrSkip } from "../netns.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { service } from "../../lib/failover/state.ts";
import { silentLogger } from "../../lib/log.ts";
import { DhcpCore, type FailoverView } from "../../lib/server/dhcp.ts";
import type { Arrival } from "../../lib/server/reply.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { decodeDhcp } from "../../lib/wire/dhcp.ts";
import { ServerState } from "../../lib/wire/failover.ts";

const LOOPBACK = 0x7f000001;

interface Setting {
  role: FailoverRole;
  polarity: Polarity;
  hba: Uint8Array;
  maxSeconds: number;
  ids: number[];
}

/**
 * What the core would refuse without looking further than the filter does (draft-12 §9.8.2,
 * lib/server/dhcp.ts #refuse): the requests the filter must drop. Everything else passes.
 */
function refusedByCore(s: Spec, set: Setting): boolean {
  if (s.op !== 1 || !s.cookie || s.hlen < 1 || s.hlen > 16 || s.secs > set.maxSeconds) {
    return false;
  }
  // The filter reads OPTION_STEPS options at most, the end option included.
  if (s.noEnd || s.options.length + 1 > OPTION_STEPS) return false;
  const seen = new Map<number, Uint8Array>();
  for (const [code, value] of s.options) {
    if (code === 0) continue;
    if (code === 52) return false; // overload: options the filter does not read
    if ([53, 54, 61].includes(code) && seen.has(code)) return false; // concatenated (RFC 3396)
    seen.set(code, value);
  }
  const type = seen.get(53);
  const sid = seen.get(54);
  const cid = seen.get(61);
  if (type === undefined || type.length !== 1 || (sid !== undefined && sid.length !== 4)) {
    return false;
  }
  if (cid !== undefined && (cid.length === 0 || cid.length > MAX_KEY)) return false;
  if (type[0] === 3) {
    if (sid === undefined) {
      if (s.ciaddr !== 0) return false; // RENEWING or REBINDING: always answered
    } else {
      const named = new DataView(sid.buffer, sid.byteOffset).getUint32(0);
      if (set.ids.length === 0 || set.ids.includes(named)) return false;
    }
  } else if (type[0] !== 1) {
    return false;
  }
  const key = cid ?? s.chaddr.subarray(0, s.hlen);
  return !shouldAnswer({
    role: set.role,
    hba: set.hba,
    polarity: set.polarity,
    key,
    secs: s.secs,
    loadBalanceMaxSeconds: set.maxSeconds,
  });
}

const NOW = 1_800_000_000;
/** Arrival on loopback, as the filtered socket of the test receives them. */
const ARRIVAL: Arrival = {
  srcAddress: LOOPBACK,
  srcPort: 68,
  ifindex: 1,
  ifname: "lo",
  localAddress: LOOPBACK,
  dstAddress: LOOPBACK,
};

/**
 * A DHCP core in NORMAL behind a view that decides load balancing as FailoverEndpoint.isMine
 * does (the real service() table and shouldAnswer over hashKey).
 */
function normalCore(set: Setting): DhcpCore {
  const config = parseConfig(
    `database: ":memory:"
listen:
  - interface: lo
subnets:
  - subnet: 198.18.0.0/15
    pools:
      - range: 198.18.1.0 - 198.18.1.255
`,
    "test.yaml",
  );
  const view: FailoverView = {
    role: set.role,
    mclt: () => 300,
    service: (now) =>
      service(ServerState.NORMAL, set.role, { now, startTimeOfState: 0, mclt: 300 }),
    partnerDownSince: () => null,
    isMine: (msg) =>
      shouldAnswerRequest(msg, {
        role: set.role,
        hba: set.hba,
        polarity: set.polarity,
        loadBalanceMaxSeconds: set.maxSeconds,
      }),
    unsent: () => false,
  };
  return new DhcpCore(config, new MemoryLeaseStore(), { logger: silentLogger(), failover: view });
}

/** A small deterministic generator (the same requests every run). */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

function randomSpec(xid: number, rnd: () => number, ids: number[]): Spec {
  const int = (n: number) => Math.floor(rnd() * n);
  const chaddr = new Uint8Array(16).map(() => int(256));
  const type = [1, 1, 1, 3, 3, 3, 3, 7, 8][int(9)] as number;
  const options: [number, Uint8Array][] = [];
  const pads = int(8) === 0 ? int(30) : int(3);
  for (let i = 0; i < pads; i++) options.push([0, new Uint8Array()]);
  options.push([53, Uint8Array.of(type)]);
  if (int(10) === 0) options.push([53, Uint8Array.of(type)]);
  if (type === 3 && int(2) === 0) {
    const named = int(3) === 0 ? (ids[int(ids.length)] as number) : (0xc6120000 | int(65536));
    options.push([54, Uint8Array.of(named >>> 24, (named >> 16) & 255, (named >> 8) & 255, named)]);
  }
  if (int(3) === 0) {
    const length = [0, 1, 7, 7, 19, 32, 33][int(7)] as number;
    options.push([61, new Uint8Array(length).map(() => int(256))]);
    if (int(12) === 0) options.push([61, Uint8Array.of(1, 2)]);
  }
  if (int(15) === 0) options.push([52, Uint8Array.of(3)]);
  options.push([55, Uint8Array.of(1, 3, 6, 15)]);
  if (int(20) === 0) options.push([54, Uint8Array.of(1, 2, 3)]);
  return {
    xid,
    op: int(20) === 0 ? 2 : 1,
    hlen: [6, 6, 6, 6, 0, 1, 16, 17][int(8)] as number,
    chaddr,
    secs: int(7),
    ciaddr: int(2) === 0 ? 0 : 0xc6120000 | int(65536),
    cookie: int(25) !== 0,
    options,
    ...(int(15) === 0 ? { noEnd: true } : {}),
  };
}

/** Opens the filter, or prints why it cannot run here and returns null. */
function openFilter(t: Deno.TestContext): KernelBalanceFilter | null {
  try {
    return KernelBalanceFilter.open();
  } catch (e) {
    requireOrSkip(t, `the kernel refused the eBPF filter: ${(e as Error).message}`);
    return null;
  }
}

function randomHba(rnd: () => number): Uint8Array {
  return new Uint8Array(32).map(() => Math.floor(rnd() * 256));
}

Deno.test("the kernel filter drops exactly the requests the core refuses as the partner's", async (t) => {
  const filter = openFilter(t);
  if (filter === null) return;
  try {
    const rnd = lcg(0x5eed);
    const ids = [LOOPBACK, 0xc6120001, 0xc6130a01];
    for (
      const [role, polarity] of [
        ["primary", "isc"],
        ["secondary", "isc"],
        ["primary", "draft"],
        ["secondary", "draft"],
      ] as [FailoverRole, Polarity][]
    ) {
      const set: Setting = { role, polarity, hba: randomHba(rnd), maxSeconds: 3, ids };
      filter.update({
        enabled: true,
        mine: mineBitmap((b) => isMine(role, set.hba, b, polarity)),
        loadBalanceMaxSeconds: set.maxSeconds,
        serverIds: ids,
      });
      const specs = Array.from({ length: 1500 }, (_, i) => randomSpec(i + 1, rnd, ids));
      const before = filter.counters();
      const arrived = await deliver(specs, (t) => filter.attach((fd) => t.attachSocketFilter(fd)));
      const wrong: string[] = [];
      let dropped = 0;
      for (const s of specs) {
        const drop = refusedByCore(s, set);
        if (drop) dropped++;
        if (drop === arrived.has(s.xid)) {
          wrong.push(`xid ${s.xid}: ${drop ? "arrived" : "dropped"}: ${JSON.stringify(s)}`);
        }
      }
      assert.deepEqual(wrong.slice(0, 3), [], `${role}/${polarity}: ${wrong.length} wrong`);
      // And the real core, in NORMAL with the same assignment, refuses every one of them.
      const core = normalCore(set);
      const answered: string[] = [];
      for (const s of specs) {
        if (arrived.has(s.xid)) continue;
        const out = core.handle(decodeDhcp(bytes(s)), ARRIVAL, NOW);
        if (out.dropped !== "load-balanced" && out.dropped !== "other-server") {
          answered.push(`xid ${s.xid}: ${out.dropped ?? "answered"}: ${JSON.stringify(s)}`);
        }
      }
      assert.deepEqual(answered.slice(0, 3), [], `${role}/${polarity}: ${answered.length}`);
      // The population exercises both outcomes, and the kernel counted what it dropped.
      assert.ok(dropped > 60 && dropped < 1200, `${role}/${polarity}: ${dropped} dropped`);
      const after = filter.counters();
      assert.equal(after.discover + after.request - before.discover - before.request, dropped);
    }
  } finally {
    filter.close();
  }
});

Deno.test("the kernel filter passes everything when off, and with split 128 halves the DISCOVERs", async (t) => {
  const filter = openFilter(t);
  if (filter === null) return;
  try {
    const rnd = lcg(7);
    const discovers = Array.from({ length: 2000 }, (_, i): Spec => ({
      xid: i + 1,
      op: 1,
      hlen: 6,
      chaddr: new Uint8Array(16).map((_, j) => (j < 6 ? Math.floor(rnd() * 256) : 0)),
      secs: 0,
      ciaddr: 0,
      cookie: true,
      options: [[53, Uint8Array.of(1)]],
    }));
    assert.equal(
      (await deliver(discovers, (t) => filter.attach((fd) => t.attachSocketFilter(fd)))).size,
      2000,
      "a new filter is off",
    );
    const hba = new Uint8Array(32).fill(0xff, 0, 16); // ISC split 128: buckets 0..127
    filter.update({
      enabled: true,
      mine: mineBitmap((b) => isMine("primary", hba, b, "isc")),
      loadBalanceMaxSeconds: 3,
      serverIds: [LOOPBACK],
    });
    assert.equal(filter.enabled, true);
    const half = (await deliver(discovers, (t) =>
      filter.attach((fd) => t.attachSocketFilter(fd)))).size;
    assert.ok(Math.abs(half - 1000) < 100, `${half} of 2000 passed`);
    filter.update(null);
    assert.equal(filter.enabled, false);
    assert.equal(
      (await deliver(discovers, (t) => filter.attach((fd) => t.attachSocketFilter(fd)))).size,
      2000,
      "off again",
    );
  } finally {
    filter.close();
  }
});
