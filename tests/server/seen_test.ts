import assert from "node:assert/strict";
import { CLIENT_ID_TAG, SeenFilter } from "../../lib/server/seen.ts";

Deno.test("SeenFilter has no false negatives and few false positives at 100,000 clients", () => {
  const f = new SeenFilter();
  const mac = (i: number, b: number) =>
    new Uint8Array([2, b, (i >> 16) & 255, (i >> 8) & 255, i & 255, 1]);
  for (let i = 0; i < 100_000; i++) f.add(1, mac(i, 0));
  for (let i = 0; i < 100_000; i++) assert.ok(f.mayHave(1, mac(i, 0)), `lost ${i}`);
  let fp = 0;
  for (let i = 0; i < 100_000; i++) if (f.mayHave(1, mac(i, 1))) fp++;
  assert.ok(fp < 3000, `${fp} false positives in 100,000`);
  // The tag separates hardware types and client identifiers.
  assert.equal(f.mayHave(CLIENT_ID_TAG, new Uint8Array([1, 2, 0, 0, 0, 0, 1])), false);
  assert.equal(new SeenFilter().mayHave(1, mac(0, 0)), false);
});
