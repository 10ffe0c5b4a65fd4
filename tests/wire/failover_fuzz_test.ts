/** Seeded fuzzing of the failover codec: only WireError/PeerProtocolError, never a hang. */
import assert from "node:assert/strict";
import { PeerProtocolError, WireError } from "../../lib/errors.ts";
import {
  checkFailover,
  decodeFailover,
  encodeFailover,
  type FailoverMessage,
  FrameReader,
  isIgnoredMsgType,
  splitFrames,
  verifyFailover,
} from "../../lib/wire/failover.ts";
import { fromHex } from "../../lib/wire/ip.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x5eed) >>> 0;
const ITERATIONS = 20000;

/** xorshift32: deterministic, seeded. */
function rng(seed: number): () => number {
  let s = seed || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

function fixtures(): Uint8Array[] {
  const dir = new URL("../fixtures/failover/", import.meta.url);
  const out: Uint8Array[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (!e.name.endsWith(".hex")) continue;
    const text = Deno.readTextFileSync(new URL(e.name, dir)).split("\n").map((l) =>
      l.replace(/#.*$/, "")
    ).join("");
    out.push(fromHex(text) as Uint8Array);
  }
  return out;
}

function expectTyped(fn: () => unknown, seed: number, i: number): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof WireError || e instanceof PeerProtocolError) return;
    throw new Error(`Unexpected ${e} (seed ${seed}, iteration ${i})`, { cause: e });
  }
}

Deno.test(`decodeFailover() on mutated and random input throws only typed errors (seed ${SEED})`, () => {
  // deno-lint-ignore no-console
  console.log(`failover fuzz seed ${SEED} (set FUZZ_SEED to replay)`);
  const next = rng(SEED);
  const seeds = fixtures();
  assert.ok(seeds.length >= 5);
  const started = performance.now();
  for (let i = 0; i < ITERATIONS; i++) {
    let b: Uint8Array;
    if (i % 4 === 0) {
      b = new Uint8Array(Math.floor(next() * 80));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(next() * 256);
      if (b.length >= 2 && next() < 0.5) {
        b[0] = b.length >> 8;
        b[1] = b.length & 0xff;
      }
    } else {
      b = (seeds[Math.floor(next() * seeds.length)] as Uint8Array).slice();
      const flips = 1 + Math.floor(next() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(next() * b.length)] = Math.floor(next() * 256);
      if (next() < 0.2) b = b.subarray(0, Math.floor(next() * b.length));
    }
    expectTyped(
      () => {
        const m = decodeFailover(b);
        checkFailover(m);
        // What decodes must re-encode to the same bytes, except an ignored type (128-255) whose
        // malformed options were dropped (documented in lib/wire/failover.ts).
        if (!isIgnoredMsgType(m.type)) {
          assert.deepEqual(encodeFailover(m), b, `seed ${SEED} iteration ${i}`);
        }
      },
      SEED,
      i,
    );
    expectTyped(() => splitFrames(b), SEED, i);
    expectTyped(() => verifyFailover(b, "k"), SEED, i);
    expectTyped(() => new FrameReader().push(b), SEED, i);
    assert.ok(performance.now() - started < 20000, `fuzz loop too slow (seed ${SEED})`);
  }
});

Deno.test(`encodeFailover() round-trips random valid messages (seed ${SEED})`, () => {
  const next = rng(SEED ^ 0xabcdef);
  for (let i = 0; i < 2000; i++) {
    const options = [];
    let room = 2048 - 12;
    const n = Math.floor(next() * 12);
    for (let k = 0; k < n; k++) {
      const len = Math.floor(next() * 40);
      if (len + 4 > room) break;
      room -= len + 4;
      const data = new Uint8Array(len);
      for (let j = 0; j < len; j++) data[j] = Math.floor(next() * 256);
      options.push({ code: Math.floor(next() * 40), data });
    }
    const msg: FailoverMessage = {
      type: 1 + Math.floor(next() * 12),
      time: Math.floor(next() * 0x100000000),
      xid: Math.floor(next() * 0x100000000),
      additionalHeader: new Uint8Array(next() < 0.1 ? 4 : 0),
      options,
    };
    const bytes = encodeFailover(msg);
    assert.deepEqual(decodeFailover(bytes), msg, `seed ${SEED} iteration ${i}`);
    const { frames, rest } = splitFrames(new Uint8Array([...bytes, ...bytes.subarray(0, 3)]));
    assert.equal(frames.length, 1);
    assert.equal(rest.length, 3);
  }
});
