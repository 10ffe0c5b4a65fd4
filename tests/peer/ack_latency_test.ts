import assert from "node:assert/strict";
import { AckLatency } from "../../lib/peer/ack_latency.ts";

Deno.test("AckLatency matches a BNDACK to its BNDUPD by xid and measures the round trip", () => {
  const a = new AckLatency();
  a.sent(7, 1000);
  a.sent(8, 1001);
  // draft-12 §6.1: the BNDACK carries the xid of the BNDUPD it answers, in any order.
  assert.equal(a.acked(8, 1004.5), 3.5);
  assert.equal(a.acked(7, 1010), 10);
  assert.equal(a.acked(7, 1011), null, "an xid is answered once");
  assert.equal(a.acked(99, 1011), null, "a BNDACK for nothing we sent");
  const s = a.summary();
  assert.equal(s.count, 2);
  assert.equal(s.pending, 0);
  assert.equal(s.meanMs, 6.75);
  assert.equal(s.maxMs, 10);
});

Deno.test("AckLatency.summary() takes nearest-rank quantiles", () => {
  const a = new AckLatency();
  for (let i = 1; i <= 100; i++) {
    a.sent(i, 0);
    a.acked(i, i); // round trips 1..100 ms
  }
  const s = a.summary();
  assert.equal(s.samples, 100);
  assert.equal(s.p50Ms, 50);
  assert.equal(s.p99Ms, 99);
  assert.equal(s.maxMs, 100);
  assert.equal(s.meanMs, 50.5);
});

Deno.test("AckLatency keeps only the most recent round trips for the quantiles", () => {
  const a = new AckLatency(4);
  for (let i = 0; i < 10; i++) {
    a.sent(i, 0);
    a.acked(i, i < 6 ? 1000 : 1); // the last four are fast
  }
  const s = a.summary();
  assert.equal(s.count, 10);
  assert.equal(s.samples, 4);
  assert.equal(s.p99Ms, 1);
  assert.equal(s.maxMs, 1000, "the maximum is over every round trip");
});

Deno.test("AckLatency forgets unanswered BNDUPDs when the connection is lost", () => {
  const a = new AckLatency();
  a.sent(1, 0);
  a.sent(2, 0);
  assert.equal(a.summary().pending, 2);
  // draft-12 §8.6: a BNDACK never arrives on a later connection; they are sent again.
  a.connectionLost();
  assert.equal(a.summary().pending, 0);
  assert.equal(a.acked(1, 5), null);
  assert.deepEqual(a.summary(), {
    count: 0,
    pending: 0,
    samples: 0,
    meanMs: null,
    p50Ms: null,
    p99Ms: null,
    maxMs: null,
  });
});

Deno.test("AckLatency refuses a capacity below one", () => {
  assert.throws(() => new AckLatency(0), RangeError);
});
