import assert from "node:assert/strict";
import { Allocator } from "../../lib/alloc/allocator.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";

function ip(s: string): number {
  const v = parseIpv4(s);
  if (v === undefined) throw new TypeError(s);
  return v;
}

Deno.test("Allocator.take() hands out fresh addresses in ascending order across ranges", () => {
  const a = new Allocator([
    { start: ip("192.0.2.20"), end: ip("192.0.2.21") },
    { start: ip("192.0.2.10"), end: ip("192.0.2.11") },
  ]);
  assert.equal(a.size, 4);
  assert.deepEqual([a.take(), a.take(), a.take(), a.take(), a.take()], [
    ip("192.0.2.10"),
    ip("192.0.2.11"),
    ip("192.0.2.20"),
    ip("192.0.2.21"),
    undefined,
  ]);
  assert.equal(a.freeCount, 0);
});

Deno.test("Allocator reuses released addresses only after every fresh one, oldest first", () => {
  const a = new Allocator([{ start: ip("192.0.2.1"), end: ip("192.0.2.4") }]);
  const first = a.take() as number;
  const second = a.take() as number;
  a.release(second);
  a.release(first);
  assert.equal(a.take(), ip("192.0.2.3"));
  assert.equal(a.take(), ip("192.0.2.4"));
  assert.equal(a.take(), second);
  assert.equal(a.take(), first);
  assert.equal(a.take(), undefined);
});

Deno.test("Allocator.exclude() and markUsed() keep addresses out; counts stay right", () => {
  const a = new Allocator([{ start: ip("192.0.2.1"), end: ip("192.0.2.3") }]);
  a.exclude(ip("192.0.2.1"));
  a.markUsed(ip("192.0.2.2"));
  a.markUsed(ip("192.0.2.2"));
  assert.equal(a.freeCount, 1);
  a.release(ip("192.0.2.1")); // excluded addresses never come back
  assert.equal(a.isFree(ip("192.0.2.1")), false);
  assert.equal(a.take(), ip("192.0.2.3"));
  assert.equal(a.take(), undefined);
  a.release(ip("192.0.2.2"));
  a.release(ip("192.0.2.2")); // a double release is one free address
  assert.equal(a.freeCount, 1);
  assert.equal(a.take(), ip("192.0.2.2"));
  assert.equal(a.take(), undefined);
});

Deno.test("Allocator.takeAddress() takes a specific free address once", () => {
  const a = new Allocator([{ start: ip("192.0.2.1"), end: ip("192.0.2.3") }]);
  assert.equal(a.takeAddress(ip("192.0.2.2")), true);
  assert.equal(a.takeAddress(ip("192.0.2.2")), false);
  assert.equal(a.takeAddress(ip("198.51.100.1")), false);
  assert.equal(a.contains(ip("198.51.100.1")), false);
  assert.deepEqual([a.take(), a.take(), a.take()], [ip("192.0.2.1"), ip("192.0.2.3"), undefined]);
});

Deno.test("Allocator serves a /16 pool without rescanning: 65,534 takes then exhaustion", () => {
  const a = new Allocator([{ start: ip("198.51.0.1"), end: ip("198.51.255.254") }]);
  const seen = new Set<number>();
  for (let i = 0; i < 65534; i++) {
    const v = a.take();
    assert.notEqual(v, undefined);
    seen.add(v as number);
  }
  assert.equal(seen.size, 65534);
  assert.equal(a.take(), undefined);
  // Churn: release and retake many times; each take is answered from the queue.
  for (let i = 0; i < 10000; i++) {
    const addr = ip("198.51.0.1") + (i * 7919) % 65534;
    a.release(addr);
    assert.equal(a.take(), addr);
  }
});

Deno.test("Allocator rejects a range whose end is before its start", () => {
  assert.throws(() => new Allocator([{ start: 10, end: 9 }]), RangeError);
});
