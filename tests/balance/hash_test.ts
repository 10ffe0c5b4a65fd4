import assert from "node:assert/strict";
import {
  bucketServedBy,
  hashKey,
  isMine,
  loadBalanceHash,
  MIXING_TABLE,
  type Polarity,
  shouldAnswer,
  shouldAnswerRequest,
} from "../../lib/balance/hash.ts";
import { hbaFromSplit } from "../../lib/balance/hba.ts";
import { parseMac } from "../../lib/wire/ip.ts";

/** The six octets of `text`; a typo in a test is a test bug. */
function macBytes(text: string): Uint8Array {
  const bytes = parseMac(text);
  if (bytes === undefined) throw new TypeError(`Bad MAC in test: ${text}`);
  return bytes;
}

/** A 16-octet chaddr holding `mac` (RFC 2131 §2), the way the codec delivers it. */
function chaddrOf(mac: string): Uint8Array {
  const out = new Uint8Array(16);
  out.set(macBytes(mac));
  return out;
}

/** The bucket of an Ethernet client that sends no client identifier. */
function bucketOfMac(mac: string): number {
  return loadBalanceHash(hashKey({ htype: 1, hlen: 6, chaddr: chaddrOf(mac) }));
}

/** mulberry32: a small seeded PRNG, so the distribution tests are repeatable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return function next(): number {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("MIXING_TABLE is a permutation of 0..255 with the RFC 3074 §6 end values", () => {
  assert.equal(MIXING_TABLE.length, 256);
  const seen = new Set(MIXING_TABLE);
  assert.equal(seen.size, 256);
  for (let v = 0; v < 256; v++) assert.ok(seen.has(v), `value ${v} missing`);
  // First, second and last entries of the RFC's table, written out.
  assert.equal(MIXING_TABLE[0], 251);
  assert.equal(MIXING_TABLE[1], 175);
  assert.equal(MIXING_TABLE[255], 151);
});

Deno.test("loadBalanceHash() folds short keys as RFC 3074 §5 describes", async (t) => {
  await t.step("empty key hashes to its length, 0", () => {
    assert.equal(loadBalanceHash(new Uint8Array(0)), 0);
  });
  await t.step("one-octet key [k] hashes to T[1 xor k]", () => {
    assert.equal(loadBalanceHash(Uint8Array.of(0)), 175); // T[1]
    assert.equal(loadBalanceHash(Uint8Array.of(1)), 251); // T[0]
    assert.equal(loadBalanceHash(Uint8Array.of(3)), 119); // T[2]
  });
  await t.step("two-octet key folds the last octet first", () => {
    // [0, 1]: hash = 2; T[2 ^ 1] = T[3] = 215; T[215 ^ 0] = T[215] = 120.
    assert.equal(loadBalanceHash(Uint8Array.of(0, 1)), 120);
    // [1, 0]: hash = 2; T[2 ^ 0] = 119; T[119 ^ 1] = T[118] = 155.
    assert.equal(loadBalanceHash(Uint8Array.of(1, 0)), 155);
  });
});

Deno.test("loadBalanceHash() matches the buckets ISC dhcpd 4.4 computed for 02:00:00:00:00:01-07", () => {
  // shared/interop/isc-dhcpd NOTES §6, measured against ISC dhcpd 4.4.3.
  const expected: [string, number][] = [
    ["02:00:00:00:00:01", 133],
    ["02:00:00:00:00:02", 45],
    ["02:00:00:00:00:03", 182],
    ["02:00:00:00:00:04", 150],
    ["02:00:00:00:00:05", 13],
    ["02:00:00:00:00:06", 166],
    ["02:00:00:00:00:07", 26],
  ];
  for (const [mac, bucket] of expected) assert.equal(bucketOfMac(mac), bucket, mac);
});

Deno.test("hashKey() takes option 61 when present, else chaddr[0 .. hlen)", async (t) => {
  const chaddr = chaddrOf("02:00:00:00:00:01");
  await t.step("no client identifier: the first hlen octets of chaddr (RFC 3074 §4)", () => {
    const key = hashKey({ htype: 1, hlen: 6, chaddr });
    assert.deepEqual(key, macBytes("02:00:00:00:00:01"));
  });
  await t.step("client identifier wins over chaddr (draft-12 §9.8.2)", () => {
    const clientId = Uint8Array.of(1, 2, 0, 0, 0, 0, 1);
    const key = hashKey({ htype: 1, hlen: 6, chaddr, clientId });
    assert.deepEqual(key, clientId);
  });
  await t.step("htype is not part of the key", () => {
    assert.deepEqual(
      hashKey({ htype: 6, hlen: 6, chaddr }),
      hashKey({ htype: 1, hlen: 6, chaddr }),
    );
  });
  await t.step("hlen 0 gives an empty key; hlen past chaddr is a caller bug", () => {
    assert.equal(hashKey({ htype: 1, hlen: 0, chaddr }).length, 0);
    assert.throws(() => hashKey({ htype: 1, hlen: 17, chaddr }), RangeError);
  });
});

Deno.test("bucketServedBy() under ISC polarity matches dhcpd 4.4 with split 62", async (t) => {
  // shared/interop NOTES §6, capture e-hba-split62: observed who answered each client.
  const hba = hbaFromSplit(62);
  const observed: [string, number, "primary" | "secondary"][] = [
    ["02:00:00:00:00:62", 55, "primary"],
    ["02:00:00:00:00:0d", 60, "primary"],
    ["02:00:00:00:00:11", 61, "primary"],
    ["02:00:00:00:00:08", 62, "secondary"],
    ["02:00:00:00:00:46", 63, "secondary"],
    ["02:00:00:00:00:37", 65, "secondary"],
    ["02:00:00:00:00:29", 127, "secondary"],
    ["02:00:00:00:00:01", 133, "secondary"],
  ];
  for (const [mac, bucket, server] of observed) {
    await t.step(`${mac} (bucket ${bucket}) is served by the ${server}`, () => {
      assert.equal(bucketOfMac(mac), bucket);
      assert.equal(bucketServedBy(hba, bucket, "isc"), server);
      assert.equal(isMine(server, hba, bucket, "isc"), true);
      const other = server === "primary" ? "secondary" : "primary";
      assert.equal(isMine(other, hba, bucket, "isc"), false);
    });
  }
});

Deno.test("bucketServedBy() under ISC polarity matches dhcpd 4.4 with split 128", () => {
  // shared/interop NOTES §6: clients 2, 5, 7 from the primary; 1, 3, 4, 6 from the secondary.
  const hba = hbaFromSplit(128);
  const want = [
    "secondary",
    "primary",
    "secondary",
    "secondary",
    "primary",
    "secondary",
    "primary",
  ];
  for (let i = 1; i <= 7; i++) {
    const mac = `02:00:00:00:00:0${i}`;
    assert.equal(bucketServedBy(hba, bucketOfMac(mac), "isc"), want[i - 1], mac);
  }
});

Deno.test("bucketServedBy() under draft polarity is the opposite of ISC for every bucket", () => {
  // draft-12 §12.11: a one bit means the secondary serves the bucket.
  const hba = hbaFromSplit(62);
  assert.equal(bucketServedBy(hba, 55, "draft"), "secondary");
  assert.equal(bucketServedBy(hba, 133, "draft"), "primary");
  for (let b = 0; b < 256; b++) {
    const isc = bucketServedBy(hba, b, "isc");
    const draft = bucketServedBy(hba, b, "draft");
    assert.notEqual(isc, draft, `bucket ${b}`);
    assert.equal(isc, b < 62 ? "primary" : "secondary", `bucket ${b}`);
  }
});

Deno.test("isMine() gives every bucket to exactly one server", () => {
  for (const polarity of ["draft", "isc"] as Polarity[]) {
    for (const split of [0, 1, 62, 128, 255, 256]) {
      const hba = hbaFromSplit(split);
      for (let b = 0; b < 256; b++) {
        const p = isMine("primary", hba, b, polarity);
        const s = isMine("secondary", hba, b, polarity);
        assert.notEqual(p, s, `${polarity} split ${split} bucket ${b}`);
      }
    }
  }
});

Deno.test("bucketServedBy() rejects a bad bucket or a bitmap that is not 32 octets", () => {
  const hba = hbaFromSplit(128);
  assert.throws(() => bucketServedBy(hba, 256, "isc"), RangeError);
  assert.throws(() => bucketServedBy(hba, -1, "isc"), RangeError);
  assert.throws(() => bucketServedBy(hba, 1.5, "isc"), RangeError);
  assert.throws(() => bucketServedBy(new Uint8Array(31), 0, "isc"), RangeError);
});

/** The primary's share of `count` seeded random 02:00:00:xx:xx:xx clients under `split`. */
function primaryShare(split: number, seed: number, count: number): number {
  const next = prng(seed);
  const hba = hbaFromSplit(split);
  const chaddr = new Uint8Array(16);
  chaddr[0] = 0x02;
  let primary = 0;
  for (let i = 0; i < count; i++) {
    chaddr[3] = Math.floor(next() * 256);
    chaddr[4] = Math.floor(next() * 256);
    chaddr[5] = Math.floor(next() * 256);
    const bucket = loadBalanceHash(hashKey({ htype: 1, hlen: 6, chaddr }));
    if (isMine("primary", hba, bucket, "isc")) primary++;
  }
  return primary / count;
}

Deno.test("loadBalanceHash() splits 100,000 random clients within 3% of the assignment", async (t) => {
  const seed = 0x3074;
  for (const split of [128, 62]) {
    await t.step(`split ${split}`, () => {
      const want = split / 256;
      const share = primaryShare(split, seed, 100_000);
      const secondaryWant = 1 - want;
      assert.ok(
        Math.abs(share - want) <= 0.03 * want,
        `seed ${seed}: primary share ${share}, want ${want} ± 3%`,
      );
      assert.ok(
        Math.abs(1 - share - secondaryWant) <= 0.03 * secondaryWant,
        `seed ${seed}: secondary share ${1 - share}, want ${secondaryWant} ± 3%`,
      );
    });
  }
});

Deno.test("shouldAnswer() answers own buckets, and others' once secs passes the limit", async (t) => {
  const hba = hbaFromSplit(62);
  // 02:00:00:00:00:62 hashes to 55, a primary bucket under ISC polarity.
  const key = macBytes("02:00:00:00:00:62");
  const base = { hba, polarity: "isc" as Polarity, key, loadBalanceMaxSeconds: 3 };
  await t.step("own bucket: answered with secs 0", () => {
    assert.equal(shouldAnswer({ ...base, role: "primary", secs: 0 }), true);
  });
  await t.step("partner's bucket: not answered at secs 0 or at the limit", () => {
    assert.equal(shouldAnswer({ ...base, role: "secondary", secs: 0 }), false);
    assert.equal(shouldAnswer({ ...base, role: "secondary", secs: 3 }), false);
  });
  await t.step("partner's bucket: answered once secs exceeds the limit", () => {
    assert.equal(shouldAnswer({ ...base, role: "secondary", secs: 4 }), true);
    assert.equal(shouldAnswer({ ...base, role: "secondary", secs: 65535 }), true);
  });
  await t.step("draft polarity flips who answers the same client", () => {
    assert.equal(shouldAnswer({ ...base, polarity: "draft", role: "secondary", secs: 0 }), true);
    assert.equal(shouldAnswer({ ...base, polarity: "draft", role: "primary", secs: 0 }), false);
  });
});

Deno.test("shouldAnswerRequest() hashes option 61 when present, else chaddr, and reads secs", () => {
  const hba = hbaFromSplit(62);
  const chaddr = new Uint8Array(16);
  chaddr.set(macBytes("02:00:00:00:00:62")); // bucket 55: the primary's under ISC polarity
  const opts = {
    role: "primary" as const,
    hba,
    polarity: "isc" as Polarity,
    loadBalanceMaxSeconds: 3,
  };
  const noOptions = { get: () => undefined };
  const request = { htype: 1, hlen: 6, chaddr, secs: 0, options: noOptions };
  assert.equal(shouldAnswerRequest(request, opts), true);
  assert.equal(shouldAnswerRequest(request, { ...opts, role: "secondary" }), false);
  assert.equal(shouldAnswerRequest({ ...request, secs: 4 }, { ...opts, role: "secondary" }), true);
  // A client identifier decides instead of chaddr: one whose bucket is the secondary's.
  const cids = Array.from({ length: 256 }, (_, i) => Uint8Array.of(1, i));
  const cid = cids.find((c) => loadBalanceHash(c) >= 62);
  assert.ok(cid !== undefined);
  const withCid = { ...request, options: { get: (c: number) => (c === 61 ? cid : undefined) } };
  assert.equal(shouldAnswerRequest(withCid, opts), false);
  assert.equal(shouldAnswerRequest(withCid, { ...opts, role: "secondary" }), true);
});
