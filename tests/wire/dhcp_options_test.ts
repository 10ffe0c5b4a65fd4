import assert from "node:assert/strict";
import { DhcpOptions } from "../../lib/wire/dhcp_options.ts";
import { decodeDhcp, encodeDhcp, getServerId, Opt, plainDhcp } from "../../lib/wire/dhcp.ts";
import { fromHex } from "../../lib/wire/ip.ts";

function hex(s: string): Uint8Array {
  const b = fromHex(s);
  if (b === undefined) throw new Error(`bad hex ${s}`);
  return b;
}

/** bytes: 3 junk octets, then option 53 (1 octet) at 3, 54 (4 octets) at 6, 12 (2) at 12. */
const BYTES = hex("aaaaaa" + "35" + "01" + "03" + "36" + "04" + "c6120001" + "0c" + "02" + "6869");
const SPANS = [53, 5, 1, 54, 8, 4, 12, 14, 2];

Deno.test("DhcpOptions reads values from their spans, in order, one view per option", () => {
  const o = DhcpOptions.ofSpans(BYTES, [...SPANS]);
  assert.equal(o.size, 3);
  assert.deepEqual([...o.keys()], [53, 54, 12]);
  assert.deepEqual(o.get(54), hex("c6120001"));
  assert.equal(o.get(54), o.get(54), "the same view each time");
  assert.equal(o.get(54)?.buffer, BYTES.buffer, "a view, not a copy");
  assert.equal(o.get(99), undefined);
  assert.equal(o.has(12), true);
  assert.equal(o.has(99), false);
  assert.equal(o.u8(53), 3);
  assert.equal(o.u8(54), undefined, "wrong length");
  assert.equal(o.u32(54), 0xc6120001);
  assert.equal(o.u32(12), undefined, "wrong length");
  assert.equal(o.lengthOf(12), 2);
  assert.equal(o.lengthOf(99), -1);
  const seen: [number, string][] = [];
  o.forEach((v, k, map) => {
    assert.equal(map, o);
    seen.push([k, [...v].join(",")]);
  });
  assert.deepEqual(seen, [[53, "3"], [54, "198,18,0,1"], [12, "104,105"]]);
  assert.deepEqual([...o], [
    ...new Map([[53, hex("03")], [54, hex("c6120001")], [12, hex("6869")]]),
  ]);
  assert.deepEqual([...o.values()].map((v) => v.length), [1, 4, 2]);
  assert.equal(Object.prototype.toString.call(o), "[object DhcpOptions]");
});

Deno.test("DhcpOptions changes like a Map, and then no longer follows the bytes", () => {
  const bytes = BYTES.slice();
  const o = DhcpOptions.ofSpans(bytes, [...SPANS]);
  const server = o.get(54);
  assert.equal(o.set(1, hex("ffffff00")), o);
  assert.deepEqual([...o.keys()], [53, 54, 12, 1], "a new option goes last");
  assert.equal(o.get(54), server, "views made before the change are kept");
  assert.equal(o.u32(1), 0xffffff00);
  assert.equal(o.delete(53), true);
  assert.equal(o.delete(53), false);
  assert.equal(o.u8(53), undefined);
  assert.equal(o.getOrInsert(12, hex("00")), o.get(12), "present: kept");
  assert.deepEqual(o.getOrInsertComputed(13, () => hex("0102")), hex("0102"));
  assert.equal(o.size, 4);
  o.clear();
  assert.equal(o.size, 0);
  assert.deepEqual([...o], []);
});

Deno.test("DhcpOptions.of holds the given entries", () => {
  const o = DhcpOptions.of([[61, hex("01aabbcc")], [50, hex("c6120002")]]);
  assert.deepEqual([...o.keys()], [61, 50]);
  assert.equal(o.u32(50), 0xc6120002);
  assert.equal(o.lengthOf(61), 4);
});

/** A BOOTREQUEST with only option 53, as encodeDhcp() writes it. */
function request(fields: { sname?: Uint8Array; file?: Uint8Array } = {}): Uint8Array {
  return encodeDhcp({
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 7,
    secs: 0,
    flags: 0,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr: new Uint8Array(16),
    sname: fields.sname ?? new Uint8Array(64),
    file: fields.file ?? new Uint8Array(128),
    options: new Map([[Opt.MESSAGE_TYPE, hex("01")]]),
  });
}

Deno.test("decodeDhcp() keeps each option's first place and joins repeats (RFC 3396)", () => {
  // The header and cookie of a request, then options written by hand: 12 twice.
  const bytes = new Uint8Array(300);
  bytes.set(request().subarray(0, 240));
  bytes.set(hex("0c026869" + "350101" + "3604c6120001" + "0c0121" + "ff"), 240);
  const d = decodeDhcp(bytes);
  assert.deepEqual([...d.options.keys()], [12, 53, 54]);
  assert.deepEqual(d.options.get(12), hex("686921"));
  assert.equal(getServerId(d), 0xc6120001);
  assert.deepEqual(plainDhcp(d).options, new Map(d.options));
  // The next decode starts afresh: its one option 12 is not taken for a repeat.
  const next = decodeDhcp(bytes.slice(0, 244));
  assert.deepEqual([...next.options.keys()], [12]);
  assert.deepEqual(next.options.get(12), hex("6869"));
});

Deno.test("a decoded message's sname and file are read when first asked, and settable", () => {
  const d = decodeDhcp(request({
    sname: new Uint8Array(64).fill(0x61, 0, 3),
    file: new Uint8Array(128).fill(0x62, 0, 2),
  }));
  assert.equal(d.sname.length, 64);
  assert.deepEqual(d.sname.subarray(0, 4), hex("61616100"));
  assert.deepEqual(d.file.subarray(0, 3), hex("626200"));
  assert.equal(d.sname, d.sname);
  d.file = new Uint8Array(128);
  assert.deepEqual(encodeDhcp(d).subarray(108, 110), hex("0000"));
});
