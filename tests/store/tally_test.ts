import assert from "node:assert/strict";
import { StateTally } from "../../lib/store/tally.ts";

const ACTIVE = 2;
const FREE = 1;
const BACKUP = 7;

function blocks(t: StateTally, first: number, last: number): number[] {
  const into = new Int32Array(8);
  t.addBlocks(first, last, into);
  return [...into];
}

Deno.test("StateTally: changes count per block and in total; commit keeps them", () => {
  const t = new StateTally();
  t.seed(0, FREE, 200);
  t.seed(1, FREE, 256);
  t.change(5, FREE, ACTIVE);
  t.change(300, 0, BACKUP); // a new row in block 1
  t.change(301, FREE, 0); // a deleted row
  t.commit();
  assert.deepEqual([...t.total()], [0, 454, 1, 0, 0, 0, 0, 1]);
  assert.deepEqual(blocks(t, 0, 0), [0, 199, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(blocks(t, 1, 1), [0, 255, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(blocks(t, 2, 9), [0, 0, 0, 0, 0, 0, 0, 0]);
  // A write that keeps the state changes nothing.
  t.change(5, ACTIVE, ACTIVE);
  t.rollback();
  assert.deepEqual([...t.total()], [0, 454, 1, 0, 0, 0, 0, 1]);
});

Deno.test("StateTally: rollback undoes the open batch, in reverse, and only it", () => {
  const t = new StateTally();
  t.seed(0, FREE, 10);
  t.change(1, FREE, ACTIVE);
  t.commit();
  t.change(2, FREE, ACTIVE);
  t.change(2, ACTIVE, BACKUP);
  t.change(700, 0, ACTIVE);
  t.rollback();
  assert.deepEqual([...t.total()], [0, 9, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(blocks(t, 2, 2), [0, 0, 0, 0, 0, 0, 0, 0]);
});

Deno.test("StateTally.addBlocks() gives the same sums walking block numbers or blocks in use", () => {
  const t = new StateTally();
  for (let b = 0; b < 50; b += 3) t.seed(b, ACTIVE, b + 1);
  // A narrow span walks the numbers, a wide one the map; both must agree with a plain sum.
  const spans: [number, number][] = [[0, 2], [4, 10], [0, 49], [0, 100_000], [10, 9]];
  for (const [first, last] of spans) {
    let want = 0;
    for (let b = 0; b < 50; b += 3) if (b >= first && b <= last) want += b + 1;
    assert.equal(blocks(t, first, last)[ACTIVE], want, `blocks ${first}..${last}`);
  }
});
