import assert from "node:assert/strict";
import { formatMac, fromHex, parseMac, toHex } from "../../lib/wire/ip.ts";

const EVERY_OCTET = Uint8Array.from({ length: 256 }, (_, i) => i);

Deno.test("toHex() and fromHex() cover every octet, lower case, two digits each", () => {
  const hex = toHex(EVERY_OCTET);
  assert.equal(hex.length, 512);
  assert.equal(hex.slice(0, 8), "00010203");
  assert.equal(hex.slice(-8), "fcfdfeff");
  for (let i = 0; i < 256; i++) {
    assert.equal(hex.slice(2 * i, 2 * i + 2), i.toString(16).padStart(2, "0"));
  }
  assert.deepEqual(fromHex(hex), EVERY_OCTET);
  assert.deepEqual(fromHex(hex.toUpperCase()), EVERY_OCTET);
  assert.equal(toHex(new Uint8Array(0)), "");
  assert.equal(toHex(EVERY_OCTET.subarray(10, 12)), "0a0b", "a view: its own octets only");
});

Deno.test("formatMac() writes colon-separated pairs that parseMac() reads back", () => {
  assert.equal(formatMac(Uint8Array.of(0x02, 0, 0x5e, 0x10, 0xab, 0xff)), "02:00:5e:10:ab:ff");
  assert.equal(formatMac(new Uint8Array(0)), "");
  assert.equal(formatMac(Uint8Array.of(7)), "07");
  for (let i = 0; i < 256; i += 6) {
    const mac = EVERY_OCTET.subarray(i, Math.min(i + 6, 256));
    if (mac.length === 6) assert.deepEqual(parseMac(formatMac(mac)), mac);
  }
});
