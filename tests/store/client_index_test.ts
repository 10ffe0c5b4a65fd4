import assert from "node:assert/strict";
import {
  AddressIndex,
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
