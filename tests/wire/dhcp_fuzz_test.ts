import assert from "node:assert/strict";
import { WireError } from "../../lib/errors.ts";
import { fromHex, toHex } from "../../lib/wire/ip.ts";
import { decodeDhcp, type DhcpMessage, encodeDhcp } from "../../lib/wire/dhcp.ts";

/**
 * Seeded fuzzing of decodeDhcp (STYLE.md §6): the only exception it may throw is WireError.
 * Set DUET_FUZZ_SEED to replay a run; the seed and the failing input are printed on failure.
 */

const FIXTURE_NAMES = [
  "dora-discover",
  "dora-offer",
  "dora-request",
  "dora-ack",
  "dora-release",
  "b-leases-offer-secondary",
  "b-leases-release-secondary",
  "e-hba-split62-ack-secondary",
];
const FIXTURES = new URL("../fixtures/dhcp/", import.meta.url);

function readHexFixture(name: string): Uint8Array {
  const bytes = fromHex(
    Deno.readTextFileSync(new URL(`${name}.hex`, FIXTURES)).replace(/#.*$/gm, ""),
  );
  assert.ok(bytes, `${name}.hex is not valid hex`);
  return bytes;
}

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

const INTERESTING = [0, 1, 2, 3, 4, 0x34, 0x35, 0x36, 0x52, 0x7f, 0x80, 0xfe, 0xff];

/** Offsets of the length octets of the options in a well-formed message. */
function lengthOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  let i = 240;
  while (i + 1 < b.length && b[i] !== 255) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    out.push(i + 1);
    i += 2 + (b[i + 1] as number);
  }
  return out;
}

function mutate(rand: () => number, seeds: Uint8Array[]): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  const base = seeds[int(seeds.length)] as Uint8Array;
  let b = base.slice();
  const rounds = 1 + int(4);
  for (let r = 0; r < rounds; r++) {
    switch (int(8)) {
      case 0: { // bit flips
        const n = 1 + int(8);
        for (let k = 0; k < n && b.length > 0; k++) {
          const at = int(b.length);
          b[at] = (b[at] as number) ^ (1 << int(8));
        }
        break;
      }
      case 1: // interesting byte, biased to the header tail and options
        if (b.length > 0) {
          const at = rand() < 0.7 && b.length > 236 ? 236 + int(b.length - 236) : int(b.length);
          b[at] = INTERESTING[int(INTERESTING.length)] as number;
        }
        break;
      case 2: // truncation
        b = b.slice(0, int(b.length + 1));
        break;
      case 3: { // change an option length octet
        const offs = lengthOffsets(b);
        if (offs.length > 0) b[offs[int(offs.length)] as number] = int(256);
        break;
      }
      case 4: { // splice with another seed
        const other = seeds[int(seeds.length)] as Uint8Array;
        const cut = int(Math.min(b.length, other.length) + 1);
        const out = new Uint8Array(cut + other.length - cut);
        out.set(b.subarray(0, cut));
        out.set(other.subarray(cut), cut);
        b = out;
        break;
      }
      case 5: { // insert random bytes into the options area
        const at = Math.min(b.length, 240 + int(Math.max(1, b.length - 240)));
        const ins = new Uint8Array(1 + int(20)).map(() => int(256));
        const out = new Uint8Array(b.length + ins.length);
        out.set(b.subarray(0, at));
        out.set(ins, at);
        out.set(b.subarray(at), at + ins.length);
        b = out;
        break;
      }
      case 6: // turn on overload and scribble into file/sname
        if (b.length >= 243) {
          b.set([0x34, 1, 1 + int(3)], 240);
          for (let k = 0; k < 10; k++) b[44 + int(192)] = int(256);
        }
        break;
      default: { // extend with random tail
        const tail = new Uint8Array(int(64)).map(() => int(256));
        const out = new Uint8Array(b.length + tail.length);
        out.set(b);
        out.set(tail, b.length);
        b = out;
      }
    }
  }
  return b;
}

function randomBuffer(rand: () => number, header: Uint8Array): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  const big = rand() < 0.002;
  const b = new Uint8Array(big ? 65536 : int(700)).map(() => int(256));
  if (rand() < 0.6 && b.length >= 240) b.set(header.subarray(0, 240)); // valid header, random options
  return b;
}

function failure(seed: number, i: number, input: Uint8Array, e: unknown): Error {
  return new Error(
    `fuzz failure: seed ${seed} (DUET_FUZZ_SEED=${seed}), input #${i}, ${input.length} bytes\n` +
      `input hex: ${toHex(input)}\nerror: ${e instanceof Error ? e.stack : String(e)}`,
  );
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

Deno.test("decodeDhcp() throws only WireError on 20,000 mutated and random inputs", () => {
  const seed = seedFromEnv(0x5eed2131);
  const rand = rng(seed);
  const seeds = FIXTURE_NAMES.map(readHexFixture);
  const header = seeds[0] as Uint8Array;
  let decoded = 0;
  let rejected = 0;
  const started = performance.now();
  for (let i = 0; i < 20_000; i++) {
    const input = i % 4 === 3 ? randomBuffer(rand, header) : mutate(rand, seeds);
    let msg: DhcpMessage;
    try {
      msg = decodeDhcp(input);
    } catch (e) {
      if (
        e instanceof WireError && e.protocol === "dhcp" && e.offset >= 0 && e.offset <= input.length
      ) {
        rejected++;
        continue;
      }
      throw failure(seed, i, input, e);
    }
    decoded++;
    // What decodes must re-encode (everything fits in 64 KiB) and decode to the same options.
    try {
      const again = decodeDhcp(encodeDhcp(msg, { maxSize: 65535 }));
      if (!sameWithout82Order(msg, again)) throw new Error("options changed on re-encode");
      assert.deepEqual(again.chaddr, msg.chaddr);
      assert.equal(again.xid, msg.xid);
    } catch (e) {
      throw failure(seed, i, input, e);
    }
    if (performance.now() - started > 30_000) throw failure(seed, i, input, "time bound exceeded");
  }
  // Both outcomes must be exercised, or the mutator is broken.
  assert.ok(decoded > 1000, `only ${decoded} inputs decoded (seed ${seed})`);
  assert.ok(rejected > 1000, `only ${rejected} inputs rejected (seed ${seed})`);
});

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
      const { options: _b, ...headerB } = d;
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
