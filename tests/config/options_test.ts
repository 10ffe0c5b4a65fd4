import assert from "node:assert/strict";
import {
  encodeOptionValue,
  optionByCode,
  optionByName,
  type OptionDef,
} from "../../lib/config/options.ts";

function hex(b: Uint8Array | string): string {
  if (typeof b === "string") return `error: ${b}`;
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

function def(name: string): OptionDef {
  const d = optionByName(name);
  assert.ok(d, `option ${name} is known`);
  return d;
}

Deno.test("optionByName() knows the ISC/Kea names with their RFC 2132 codes and kinds", async (t) => {
  // Written out here, not read from OPTION_DEFS, so the table is checked against the RFCs.
  const expected: [string, number, string][] = [
    ["subnet-mask", 1, "ip"],
    ["time-offset", 2, "i32"],
    ["routers", 3, "ips"],
    ["time-servers", 4, "ips"],
    ["domain-name-servers", 6, "ips"],
    ["log-servers", 7, "ips"],
    ["host-name", 12, "text"],
    ["domain-name", 15, "text"],
    ["interface-mtu", 26, "u16"],
    ["broadcast-address", 28, "ip"],
    ["static-routes", 33, "ip-pairs"],
    ["ntp-servers", 42, "ips"],
    ["vendor-encapsulated-options", 43, "bytes"],
    ["netbios-name-servers", 44, "ips"],
    ["netbios-node-type", 46, "u8"],
    ["tftp-server-name", 66, "text"],
    ["boot-file-name", 67, "text"],
    ["domain-search", 119, "domains"],
    ["classless-static-routes", 121, "routes"],
  ];
  for (const [name, code, kind] of expected) {
    await t.step(name, () => {
      assert.deepEqual(optionByName(name), { code, name, kind });
    });
  }
  await t.step("unknown name", () => assert.equal(optionByName("no-such-option"), undefined));
});

Deno.test("optionByCode() gives unnamed codes a generic bytes definition", () => {
  assert.deepEqual(optionByCode(252), { code: 252, name: "252", kind: "bytes" });
  assert.deepEqual(optionByCode(3), { code: 3, name: "routers", kind: "ips" });
});

Deno.test("encodeOptionValue() encodes every kind", async (t) => {
  const u8s: OptionDef = { code: 200, name: "test-u8s", kind: "u8s" };
  const cases: [string, OptionDef, unknown, string][] = [
    // RFC 2132 §3.3: one address.
    ["ip", def("subnet-mask"), "255.255.255.0", "ff ff ff 00"],
    // RFC 2132 §3.5: a list of addresses, in order.
    ["ips list", def("routers"), ["192.0.2.1", "192.0.2.2"], "c0 00 02 01 c0 00 02 02"],
    ["ips single string", def("domain-name-servers"), "198.51.100.53", "c6 33 64 35"],
    ["u8", def("netbios-node-type"), 8, "08"],
    ["u16", def("interface-mtu"), 1500, "05 dc"],
    ["u32", def("arp-cache-timeout"), 0x01020304, "01 02 03 04"],
    // RFC 2132 §3.4: signed 32-bit two's complement.
    ["i32 negative", def("time-offset"), -3600, "ff ff f1 f0"],
    ["i32 positive", def("time-offset"), 3600, "00 00 0e 10"],
    ["bool true", def("ip-forwarding"), true, "01"],
    ["bool false", def("ip-forwarding"), false, "00"],
    ["text", def("domain-name"), "example.com", "65 78 61 6d 70 6c 65 2e 63 6f 6d"],
    ["bytes hex with colons", optionByCode(252), "0a:0b:0c", "0a 0b 0c"],
    ["bytes hex plain", optionByCode(252), "0a0b0c", "0a 0b 0c"],
    ["bytes { hex }", optionByCode(252), { hex: "0a0b" }, "0a 0b"],
    ["bytes { text }", optionByCode(252), { text: "ab" }, "61 62"],
    ["bytes empty", optionByCode(252), "", ""],
    // RFC 3442 §2: width, significant destination octets, router.
    [
      "routes",
      def("classless-static-routes"),
      ["198.51.100.0/24 via 192.0.2.1", "0.0.0.0/0 - 192.0.2.1", "203.0.113.128/25 via 192.0.2.1"],
      "18 c6 33 64 c0 00 02 01 00 c0 00 02 01 19 cb 00 71 80 c0 00 02 01",
    ],
    ["u8s", u8s, [1, 2, 255], "01 02 ff"],
    // RFC 2132 §4.7: 16-bit MTU sizes.
    ["u16s", def("path-mtu-plateau-table"), [68, 1500], "00 44 05 dc"],
    // RFC 2132 §5.8: destination/router pairs.
    [
      "ip-pairs",
      def("static-routes"),
      ["198.51.100.7 via 192.0.2.1", ["203.0.113.9", "192.0.2.2"]],
      "c6 33 64 07 c0 00 02 01 cb 00 71 09 c0 00 02 02",
    ],
    // RFC 3397 §2 with RFC 1035 §3.1 labels, no compression.
    [
      "domains",
      def("domain-search"),
      ["example.com", "a.example."],
      "07 65 78 61 6d 70 6c 65 03 63 6f 6d 00 01 61 07 65 78 61 6d 70 6c 65 00",
    ],
    ["domains single string", def("domain-search"), "example", "07 65 78 61 6d 70 6c 65 00"],
    ["raw hex overrides any kind", def("routers"), { hex: "c0:00:02:01" }, "c0 00 02 01"],
  ];
  for (const [name, d, value, expected] of cases) {
    await t.step(name, () => assert.equal(hex(encodeOptionValue(d, value)), expected));
  }
});

Deno.test("encodeOptionValue() explains values of the wrong shape", async (t) => {
  const cases: [string, OptionDef, unknown, string][] = [
    [
      "ip not an address",
      def("subnet-mask"),
      "255.255.255",
      'expected an IPv4 address, got "255.255.255"',
    ],
    ["ips empty list", def("routers"), [], "expected at least one value, got an empty list"],
    ["ips with a bad member", def("routers"), ["192.0.2.1", "x"], 'got "x"'],
    ["u8 too big", def("default-ip-ttl"), 256, "expected an integer from 0 to 255, got 256"],
    ["u16 not integer", def("interface-mtu"), 1500.5, "got 1500.5"],
    ["u32 negative", def("arp-cache-timeout"), -1, "from 0 to 4294967295, got -1"],
    ["i32 too small", def("time-offset"), -2147483649, "from -2147483648 to 2147483647"],
    ["bool as string", def("ip-forwarding"), "yes", 'expected true or false, got "yes"'],
    ["text empty", def("domain-name"), "", 'expected a non-empty string, got ""'],
    ["text number", def("host-name"), 5, "expected a non-empty string, got 5"],
    ["bytes bad hex", optionByCode(252), "zz", 'expected hex bytes such as "0a:0b:0c", got "zz"'],
    ["bytes number", optionByCode(252), 102, "got 102 (quote it)"],
    [
      "routes without router",
      def("classless-static-routes"),
      ["198.51.100.0/24"],
      "expected a route",
    ],
    [
      "routes host bits",
      def("classless-static-routes"),
      ["198.51.100.1/24 via 192.0.2.1"],
      'route destination "198.51.100.1/24" has host bits set',
    ],
    [
      "routes not a list",
      def("classless-static-routes"),
      "198.51.100.0/24 via 192.0.2.1",
      "expected a list",
    ],
    [
      "ip-pairs single address",
      def("static-routes"),
      ["198.51.100.7"],
      "expected a pair of addresses",
    ],
    // RFC 2132 §5.8: no default route in option 33.
    [
      "static-routes default route",
      def("static-routes"),
      ["0.0.0.0 via 192.0.2.1"],
      "destination 0.0.0.0 is not allowed in static routes",
    ],
    ["domains bad label", def("domain-search"), ["-bad.example"], 'invalid label "-bad"'],
    ["domains empty", def("domain-search"), [""], 'expected a domain name, got ""'],
    [
      "too long for one option",
      def("routers"),
      Array.from({ length: 64 }, () => "192.0.2.1"),
      "value is 256 bytes long, at most 255 fit in one option",
    ],
    ["hex override with extra keys", def("routers"), { hex: "00", text: "a" }, "expected { hex"],
  ];
  for (const [name, d, value, fragment] of cases) {
    await t.step(name, () => {
      const out = encodeOptionValue(d, value);
      assert.equal(typeof out, "string", `expected an error, got bytes ${hex(out)}`);
      assert.ok((out as string).includes(fragment), `${JSON.stringify(out)} lacks ${fragment}`);
    });
  }
});
