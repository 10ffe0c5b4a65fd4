import assert from "node:assert/strict";
import { SMALL_BYTES_MAX, smallBytes } from "../../lib/wire/bytes.ts";

Deno.test("smallBytes() gives zeroed, separate arrays of the asked length", () => {
  const got: Uint8Array[] = [];
  // More than one 8 KiB chunk's worth, so a new chunk is started on the way.
  for (let i = 0; i < 3000; i++) {
    const a = smallBytes(1 + (i % 7));
    assert.equal(a.length, 1 + (i % 7));
    assert.ok(a.every((v) => v === 0), `array ${i} is not zeroed`);
    a.fill(0xff);
    got.push(a);
  }
  // Writing each one left every other one as it was: no two overlap.
  for (const a of got) assert.ok(a.every((v) => v === 0xff));
  assert.equal(smallBytes(0).length, 0);
  const big = smallBytes(SMALL_BYTES_MAX + 1);
  assert.equal(big.length, SMALL_BYTES_MAX + 1);
  assert.equal(big.byteOffset, 0, "a longer array has a buffer of its own");
});
