import assert from "node:assert/strict";
import {
  AddressIndex,
  AddressTable,
  clientIdKey,
  clientIdKeyOfHex,
  ClientIndex,
  hwKey,
  hwKeyOfHex,
  NO_KEY,
} from "../../lib/store/client_index.ts";

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("client keys: the hash of bytes and of SQLite's hex() of them agree", () => {
  for (let n = 0; n < 2000; n++) {
    const bytes = crypto.getRandomValues(new Uint8Array(1 + (n % 20)));
    const htype = n % 256;
    const key = hwKey(htype, bytes);
    assert.ok(key >= 0 && key <= 0x3fffffff && Number.isInteger(key), `key ${key}`);
    assert.equal(hwKeyOfHex(htype, hex(bytes).toUpperCase()), key);
    assert.equal(hwKeyOfHex(htype, hex(bytes)), key, "lower-case hex too");
    assert.equal(clientIdKeyOfHex(hex(bytes).toUpperCase()), clientIdKey(bytes));
  }
});

Deno.test("client keys: none for an empty hardware address or a missing client id", () => {
  assert.equal(hwKey(1, new Uint8Array(0)), NO_KEY);
  assert.equal(hwKeyOfHex(1, ""), NO_KEY);
  assert.equal(clientIdKey(null), NO_KEY);
  assert.equal(clientIdKeyOfHex(null), NO_KEY);
  // An empty client id is one (option 61 of length 0 is malformed, but a row may hold it).
  assert.notEqual(clientIdKey(new Uint8Array(0)), NO_KEY);
  assert.equal(clientIdKeyOfHex(""), clientIdKey(new Uint8Array(0)));
});

Deno.test("client keys: htype is part of the hardware key, and the two kinds differ", () => {
  const mac = new Uint8Array([2, 0, 0, 0, 0, 1]);
  assert.notEqual(hwKey(1, mac), hwKey(6, mac));
  assert.notEqual(hwKey(1, mac), clientIdKey(mac));
  assert.equal(hwKey(1, mac), hwKey(1, new Uint8Array(mac)));
});

Deno.test("AddressIndex: an address moves between keys and leaves no trace behind", () => {
  const index = new AddressIndex();
  index.set(10, 7);
  index.set(11, 7);
  index.set(12, 8);
  assert.deepEqual([...index.lookup(7)].sort(), [10, 11]);
  assert.deepEqual(index.lookup(8), [12]);
  index.set(10, 8);
  assert.deepEqual(index.lookup(7), [11]);
  assert.deepEqual([...index.lookup(8)].sort(), [10, 12]);
  index.set(10, 8);
  assert.deepEqual([...index.lookup(8)].sort(), [10, 12], "setting the same key twice keeps one");
  index.set(11, NO_KEY);
  assert.deepEqual(index.lookup(7), []);
  index.set(12, NO_KEY);
  index.set(10, NO_KEY);
  assert.deepEqual(index.lookup(8), []);
  assert.equal(index.size, 0);
  assert.deepEqual(index.lookup(NO_KEY), []);
});

Deno.test("AddressIndex agrees with a model over random moves", () => {
  const index = new AddressIndex();
  const model = new Map<number, number>();
  let seed = 3;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((seed / 2 ** 31) * n);
  };
  for (let step = 0; step < 20_000; step++) {
    const address = rand(300);
    const key = rand(5) === 0 ? NO_KEY : rand(40);
    index.set(address, key);
    if (key === NO_KEY) model.delete(address);
    else model.set(address, key);
    if (step % 500 !== 0) continue;
    for (let k = 0; k < 40; k++) {
      const want = [...model].filter(([, v]) => v === k).map(([a]) => a).sort((x, y) => x - y);
      assert.deepEqual([...index.lookup(k)].sort((x, y) => x - y), want, `step ${step} key ${k}`);
    }
    assert.equal(index.size, model.size);
  }
});

Deno.test("ClientIndex keeps each row's status code and forgets removed rows", () => {
  const index = new ClientIndex();
  const mac = new Uint8Array([2, 0, 0, 0, 0, 1]);
  index.set(5, 2, hwKey(1, mac), clientIdKey(null));
  assert.equal(index.code(5), 2);
  assert.deepEqual(index.hw.lookup(hwKey(1, mac)), [5]);
  index.set(5, 1, NO_KEY, NO_KEY);
  assert.equal(index.code(5), 1);
  assert.deepEqual(index.hw.lookup(hwKey(1, mac)), []);
  index.remove(5);
  assert.equal(index.code(5), 0);
  assert.equal(index.size, 0);
});

Deno.test("AddressTable: a value per address across the whole IPv4 range, sizes counted", () => {
  const t = new AddressTable(-1);
  const edges = [
    0,
    1,
    4095,
    4096,
    0x3fffffff,
    0x40000000,
    0x7fffffff,
    0x80000000,
    0xc6121000,
    0xffffffff,
  ];
  for (const a of edges) assert.equal(t.get(a), -1, `unset ${a}`);
  edges.forEach((a, i) => t.set(a, i));
  assert.equal(t.size, edges.length);
  edges.forEach((a, i) => assert.equal(t.get(a), i, `set ${a}`));
  // Neighbours on the same page stay unset.
  assert.equal(t.get(2), -1);
  assert.equal(t.get(0xfffffffe), -1);
  t.set(0x80000000, 7);
  assert.equal(t.size, edges.length, "overwriting does not count twice");
  t.set(0x80000000, -1);
  t.set(0x80000000, -1);
  assert.equal(t.size, edges.length - 1, "setting the empty value removes, once");
  assert.equal(t.get(0x80000000), -1);
  // Setting the empty value where no page exists allocates nothing and counts nothing.
  t.set(0x12345678, -1);
  assert.equal(t.size, edges.length - 1);
  const zero = new AddressTable(0);
  zero.set(0xc0000201, 3);
  assert.equal(zero.get(0xc0000201), 3);
  assert.equal(zero.get(0xc0000202), 0);
  assert.equal(zero.size, 1);
});

Deno.test("AddressIndex gives back addresses above 2^31 unsigned, alone and in collisions", () => {
  const index = new AddressIndex();
  const high = [0x80000001, 0xc6121000, 0xffffffff];
  for (const a of high) index.set(a, 42);
  index.set(0x0a000001, 43);
  assert.deepEqual([...index.lookup(42)].sort((a, b) => a - b), high);
  assert.deepEqual(index.lookup(43), [0x0a000001]);
  index.set(0xc6121000, NO_KEY);
  assert.deepEqual([...index.lookup(42)].sort((a, b) => a - b), [0x80000001, 0xffffffff]);
  index.set(0x80000001, 44);
  assert.deepEqual(index.lookup(42), [0xffffffff], "a single address again, unsigned");
  assert.deepEqual(index.lookup(44), [0x80000001]);
  assert.equal(index.size, 3);
});
