import assert from "node:assert/strict";
import { toHex } from "../../lib/wire/ip.ts";
import { decodeDhcp, type DhcpMessage, encodeDhcp, plainDhcp } from "../../lib/wire/dhcp.ts";

/**
 * Seeded random round trips of the DHCP codec: encodeDhcp -> decodeDhcp over random valid
 * messages, and encodeDhcp's maxSize rules. The decoder is fuzzed with mutated captures in
 * tests/fuzz/ (dhcp target). Set DUET_FUZZ_SEED to replay a run.
 */

function seedFromEnv(fallback: number): number {
  const granted = Deno.permissions.querySync({ name: "env", variable: "DUET_FUZZ_SEED" }).state;
  const text = granted === "granted" ? Deno.env.get("DUET_FUZZ_SEED") : undefined;
  return text !== undefined && /^\d+$/.test(text) ? Number(text) >>> 0 : fallback;
}

/** mulberry32: small, fast, good enough to drive mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sameWithout82Order(a: DhcpMessage, b: DhcpMessage): boolean {
  const order = (m: DhcpMessage) => [...m.options.keys()].filter((c) => c !== 82).join(",");
  if (order(a) !== order(b) || a.options.size !== b.options.size) return false;
  for (const [c, v] of a.options) {
    const w = b.options.get(c);
    if (w === undefined || toHex(w) !== toHex(v)) return false;
  }
  return true;
}

function randomMessage(
  rand: () => number,
  opts: { maxValue: number; clearFields: boolean },
): DhcpMessage {
  const int = (n: number) => Math.floor(rand() * n);
  const u32 = () => int(2 ** 32);
  const bytes = (n: number) => new Uint8Array(n).map(() => int(256));
  const hlen = int(17);
  const chaddr = new Uint8Array(16);
  chaddr.set(bytes(hlen));
  const sname = new Uint8Array(64);
  const file = new Uint8Array(128);
  if (!opts.clearFields && rand() < 0.5) sname.set(bytes(1 + int(63)));
  if (!opts.clearFields && rand() < 0.5) file.set(bytes(1 + int(127)));
  const options = new Map<number, Uint8Array>();
  if (rand() < 0.8) options.set(53, Uint8Array.of(1 + int(8)));
  const n = int(12);
  for (let k = 0; k < n; k++) {
    let code = 1 + int(254);
    if (code === 52 || code === 53) code = 12;
    const len = code === 82 ? 2 + int(200) : int(opts.maxValue + 1);
    options.set(code, bytes(len));
  }
  if (rand() < 0.5) options.set(54, bytes(4));
  return {
    op: 1 + int(2),
    htype: int(256),
    hlen,
    hops: int(256),
    xid: u32(),
    secs: int(65536),
    flags: int(65536),
    ciaddr: u32(),
    yiaddr: u32(),
    siaddr: u32(),
    giaddr: u32(),
    chaddr,
    sname,
    file,
    options,
  };
}

Deno.test("encodeDhcp() -> decodeDhcp() round-trips 3,000 random valid messages", () => {
  const seed = seedFromEnv(0x3396);
  const rand = rng(seed);
  for (let i = 0; i < 3000; i++) {
    const m = randomMessage(rand, { maxValue: 600, clearFields: false });
    let bytes: Uint8Array = new Uint8Array(0);
    try {
      bytes = encodeDhcp(m, { maxSize: 65535 });
      const d = decodeDhcp(bytes);
      const { options: _a, ...headerA } = m;
      const { options: _b, ...headerB } = plainDhcp(d);
      assert.deepEqual(headerB, headerA);
      assert.ok(sameWithout82Order(m, d), "options differ");
      if (m.options.has(82)) assert.equal([...d.options.keys()].at(-1), 82);
    } catch (e) {
      throw new Error(
        `round-trip failure: seed ${seed}, message #${i}\nencoded hex: ${toHex(bytes)}\n${
          e instanceof Error ? e.stack : String(e)
        }`,
      );
    }
  }
});

Deno.test("encodeDhcp() at maxSize 576 stays within it and keeps 53, 54, 82 (random messages)", () => {
  const seed = seedFromEnv(0x576);
  const rand = rng(seed);
  let overloaded = 0;
  let dropped = 0;
  for (let i = 0; i < 3000; i++) {
    const m = randomMessage(rand, { maxValue: 120, clearFields: rand() < 0.7 });
    let bytes: Uint8Array = new Uint8Array(0);
    try {
      bytes = encodeDhcp(m, { maxSize: 576 });
      assert.ok(bytes.length <= 576, `length ${bytes.length}`);
      const d = decodeDhcp(bytes);
      if (bytes[240] === 52) overloaded++;
      for (const c of [53, 54, 82]) {
        const v = m.options.get(c);
        if (v !== undefined) assert.deepEqual(d.options.get(c), v, `option ${c}`);
      }
      // kept options are unchanged, and the dropped ones are a suffix of the droppable order
      const droppable = [...m.options.keys()].filter((c) => c !== 53 && c !== 54 && c !== 82);
      const kept = [...d.options.keys()].filter((c) => c !== 53 && c !== 54 && c !== 82);
      assert.deepEqual(kept, droppable.slice(0, kept.length));
      for (const c of kept) assert.deepEqual(d.options.get(c), m.options.get(c));
      if (kept.length < droppable.length) dropped++;
    } catch (e) {
      throw new Error(
        `maxSize failure: seed ${seed}, message #${i}\nencoded hex: ${toHex(bytes)}\n${
          e instanceof Error ? e.stack : String(e)
        }`,
      );
    }
  }
  assert.ok(overloaded > 50, `only ${overloaded} messages used option 52 (seed ${seed})`);
  assert.ok(dropped > 50, `only ${dropped} messages dropped options (seed ${seed})`);
});
