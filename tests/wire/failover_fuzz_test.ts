/**
 * Seeded random round trips of the failover codec (encodeFailover -> decodeFailover, framing).
 * The decoder, the framing and the link behind them are fuzzed in tests/fuzz/ (failover target).
 */
import assert from "node:assert/strict";
import {
  decodeFailover,
  encodeFailover,
  type FailoverMessage,
  splitFrames,
} from "../../lib/wire/failover.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x5eed) >>> 0;

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
