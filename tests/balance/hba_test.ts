import assert from "node:assert/strict";
import { hbaFromSplit, hbaHas } from "../../lib/balance/hba.ts";
import { fromHex } from "../../lib/wire/ip.ts";

Deno.test("hbaFromSplit() matches what ISC dhcpd 4.4 sends for split 128 and split 62", () => {
  // shared/interop NOTES §6: split 128 -> ff x16 00 x16; split 62 -> ff x7 3f 00 x24.
  assert.deepEqual(hbaFromSplit(128), fromHex("ff".repeat(16) + "00".repeat(16)));
  assert.deepEqual(hbaFromSplit(62), fromHex("ff".repeat(7) + "3f" + "00".repeat(24)));
  assert.deepEqual(hbaFromSplit(0), new Uint8Array(32));
  assert.deepEqual(hbaFromSplit(256), new Uint8Array(32).fill(255));
  assert.throws(() => hbaFromSplit(257), RangeError);
});

Deno.test("hbaHas() reads bucket i at octet i/8, bit i mod 8 from the least significant", () => {
  const hba = hbaFromSplit(62);
  assert.equal(hbaHas(hba, 61), true);
  assert.equal(hbaHas(hba, 62), false);
  assert.equal(hbaHas(hba, 0), true);
  assert.equal(hbaHas(hba, 255), false);
});
