import assert from "node:assert/strict";
import { WireError } from "../../lib/errors.ts";
import { fromHex, parseIpv4, parseMac, toHex } from "../../lib/wire/ip.ts";
import {
  BOOTREPLY,
  BOOTREQUEST,
  BROADCAST_FLAG,
  decodeDhcp,
  DHCP_MAGIC_COOKIE,
  type DhcpMessage,
  dhcpOptionName,
  DhcpType,
  dhcpTypeName,
  encodeClasslessStaticRoutes,
  encodeDhcp,
  encodeIp,
  encodeIps,
  encodeText,
  encodeU16,
  encodeU32,
  encodeU8,
  getBroadcastAddress,
  getClasslessStaticRoutes,
  getClientId,
  getDomainName,
  getDomainNameServers,
  getHostname,
  getLeaseTime,
  getLinkSelection,
  getMaxMessageSize,
  getMessage,
  getMessageType,
  getNtpServers,
  getParameterRequestList,
  getRebindingTime,
  getRelayAgentInfo,
  getRenewalTime,
  getRequestedIp,
  getRouters,
  getServerId,
  getSubnetMask,
  getSubnetSelection,
  getVendorClassId,
  hwAddress,
  newReply,
  Opt,
  plainDhcp,
} from "../../lib/wire/dhcp.ts";

const FIXTURES = new URL("../fixtures/dhcp/", import.meta.url);

/** Reads a `.hex` fixture: hex digits with `#` comments (STYLE.md §6). */
function readHexFixture(name: string): Uint8Array {
  const text = Deno.readTextFileSync(new URL(`${name}.hex`, FIXTURES));
  const bytes = fromHex(text.replace(/#.*$/gm, ""));
  assert.ok(bytes, `${name}.hex is not valid hex`);
  return bytes;
}

function ip(text: string): number {
  const v = parseIpv4(text);
  assert.ok(v !== undefined, `bad address in test: ${text}`);
  return v;
}

function hex(text: string): Uint8Array {
  const v = fromHex(text);
  assert.ok(v, `bad hex in test: ${text}`);
  return v;
}

/** A plain DHCPDISCOVER-like request built by hand. */
function baseMessage(options: [number, Uint8Array][] = []): DhcpMessage {
  const chaddr = new Uint8Array(16);
  chaddr.set([2, 0, 0, 0, 0, 0x2a]);
  return {
    op: BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x01020304,
    secs: 7,
    flags: 0,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr,
    sname: new Uint8Array(64),
    file: new Uint8Array(128),
    options: new Map(options),
  };
}

/** Header + cookie for hand-made malformed inputs; options appended after offset 240. */
function rawWithOptions(optionBytes: number[], patch?: (b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(240 + optionBytes.length);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.set([0x63, 0x82, 0x53, 0x63], 236);
  b.set(optionBytes, 240);
  patch?.(b);
  return b;
}

function assertWireError(fn: () => unknown, offset: number, includes: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WireError, `expected WireError, got ${String(e)}`);
    assert.equal(e.protocol, "dhcp");
    assert.equal(e.offset, offset, `offset of: ${e.message}`);
    assert.ok(e.message.includes(includes), `message "${e.message}" lacks "${includes}"`);
    return true;
  });
}

function optionList(m: DhcpMessage): [number, string][] {
  return [...m.options].map(([code, v]) => [code, toHex(v)]);
}

// ---- golden fixtures: expected values copied from the tshark -V decodes beside each capture ----

interface FixtureExpectation {
  name: string;
  op: number;
  xid: number;
  ciaddr: string;
  yiaddr: string;
  mac: string;
  type: number;
  options: [number, string][];
}

const FIXTURE_EXPECTATIONS: FixtureExpectation[] = [
  {
    // dhcp-dora.txt frame 1: Discover; options 53, 55 (1 Subnet Mask, 3 Router)
    name: "dora-discover",
    op: 1,
    xid: 0x37754713,
    ciaddr: "0.0.0.0",
    yiaddr: "0.0.0.0",
    mac: "02:00:00:00:00:07",
    type: DhcpType.DHCPDISCOVER,
    options: [[53, "01"], [55, "0103"]],
  },
  {
    // dhcp-dora.txt frame 2: Offer; 54 = 198.18.0.1, 51 = 300 s, 1 = 255.254.0.0
    name: "dora-offer",
    op: 2,
    xid: 0x37754713,
    ciaddr: "0.0.0.0",
    yiaddr: "198.18.16.103",
    mac: "02:00:00:00:00:07",
    type: DhcpType.DHCPOFFER,
    options: [[53, "02"], [54, "c6120001"], [51, "0000012c"], [1, "fffe0000"]],
  },
  {
    // dhcp-dora.txt frame 3: Request; 54 = 198.18.0.1, 50 = 198.18.16.103, 55 = 1, 3
    name: "dora-request",
    op: 1,
    xid: 0x37754713,
    ciaddr: "0.0.0.0",
    yiaddr: "0.0.0.0",
    mac: "02:00:00:00:00:07",
    type: DhcpType.DHCPREQUEST,
    options: [[53, "03"], [54, "c6120001"], [50, "c6121067"], [55, "0103"]],
  },
  {
    // dhcp-dora.txt frame 4: ACK; 54 = 198.18.0.1, 51 = 300 s, 1 = 255.254.0.0
    name: "dora-ack",
    op: 2,
    xid: 0x37754713,
    ciaddr: "0.0.0.0",
    yiaddr: "198.18.16.103",
    mac: "02:00:00:00:00:07",
    type: DhcpType.DHCPACK,
    options: [[53, "05"], [54, "c6120001"], [51, "0000012c"], [1, "fffe0000"]],
  },
  {
    // dhcp-dora.txt frame 5: Release; ciaddr 198.18.16.103, 54 = 198.18.0.1
    name: "dora-release",
    op: 1,
    xid: 0xe817b55f,
    ciaddr: "198.18.16.103",
    yiaddr: "0.0.0.0",
    mac: "02:00:00:00:00:07",
    type: DhcpType.DHCPRELEASE,
    options: [[53, "07"], [54, "c6120001"]],
  },
  {
    // b-leases-dhcp.txt frame 2: Offer from the secondary; 54 = 198.18.0.2
    name: "b-leases-offer-secondary",
    op: 2,
    xid: 0xffebd654,
    ciaddr: "0.0.0.0",
    yiaddr: "198.18.16.100",
    mac: "02:00:00:00:00:01",
    type: DhcpType.DHCPOFFER,
    options: [[53, "02"], [54, "c6120002"], [51, "0000012c"], [1, "fffe0000"]],
  },
  {
    // b-leases-dhcp.txt frame 25: Release to the secondary; ciaddr 198.18.16.100
    name: "b-leases-release-secondary",
    op: 1,
    xid: 0xfea56f03,
    ciaddr: "198.18.16.100",
    yiaddr: "0.0.0.0",
    mac: "02:00:00:00:00:01",
    type: DhcpType.DHCPRELEASE,
    options: [[53, "07"], [54, "c6120002"]],
  },
  {
    // e-hba-split62-dhcp.txt frame 16: ACK from the secondary
    name: "e-hba-split62-ack-secondary",
    op: 2,
    xid: 0xfd57b176,
    ciaddr: "0.0.0.0",
    yiaddr: "198.18.16.100",
    mac: "02:00:00:00:00:08",
    type: DhcpType.DHCPACK,
    options: [[53, "05"], [54, "c6120002"], [51, "0000012c"], [1, "fffe0000"]],
  },
];

Deno.test("decodeDhcp() decodes each golden fixture as tshark did", async (t) => {
  for (const x of FIXTURE_EXPECTATIONS) {
    await t.step(x.name, () => {
      const b = readHexFixture(x.name);
      assert.equal(b.length, 300); // tshark: "UDP payload (300 bytes)"
      const m = decodeDhcp(b);
      assert.equal(m.op, x.op);
      assert.equal(m.htype, 1);
      assert.equal(m.hlen, 6);
      assert.equal(m.hops, 0);
      assert.equal(m.xid, x.xid);
      assert.equal(m.secs, 0);
      assert.equal(m.flags, 0);
      assert.equal(m.ciaddr, ip(x.ciaddr));
      assert.equal(m.yiaddr, ip(x.yiaddr));
      assert.equal(m.siaddr, 0);
      assert.equal(m.giaddr, 0);
      assert.deepEqual(hwAddress(m), parseMac(x.mac));
      assert.deepEqual(m.chaddr.subarray(6), new Uint8Array(10));
      assert.deepEqual(m.sname, new Uint8Array(64));
      assert.deepEqual(m.file, new Uint8Array(128));
      assert.equal(getMessageType(m), x.type);
      assert.deepEqual(optionList(m), x.options);
    });
  }
});

Deno.test("encodeDhcp() re-encodes each golden fixture byte for byte", async (t) => {
  for (const x of FIXTURE_EXPECTATIONS) {
    await t.step(x.name, () => {
      const b = readHexFixture(x.name);
      const m = decodeDhcp(b);
      // ISC pads to 300 bytes, which is also the encoder's default: no normalisation needed.
      assert.deepEqual(encodeDhcp(m), b);
      assert.deepEqual(encodeDhcp(m, { padTo: b.length }), b);
      assert.deepEqual(decodeDhcp(encodeDhcp(m)), m);
    });
  }
});

Deno.test("typed getters read the golden fixtures", () => {
  const offer = decodeDhcp(readHexFixture("dora-offer"));
  assert.equal(getServerId(offer), ip("198.18.0.1"));
  assert.equal(getLeaseTime(offer), 300);
  assert.equal(getSubnetMask(offer), ip("255.254.0.0"));
  const request = decodeDhcp(readHexFixture("dora-request"));
  assert.equal(getRequestedIp(request), ip("198.18.16.103"));
  assert.deepEqual(getParameterRequestList(request), [1, 3]);
  assert.equal(getClientId(request), undefined); // dhclient sent no option 61
  assert.equal(dhcpTypeName(getMessageType(request)), "DHCPREQUEST");
});

// ---- names, newReply, hwAddress ----

Deno.test("dhcpTypeName() names every type and prints unknown codes", () => {
  const expected: [number, string][] = [
    [1, "DHCPDISCOVER"],
    [2, "DHCPOFFER"],
    [3, "DHCPREQUEST"],
    [4, "DHCPDECLINE"],
    [5, "DHCPACK"],
    [6, "DHCPNAK"],
    [7, "DHCPRELEASE"],
    [8, "DHCPINFORM"],
    [0, "unknown(0)"],
    [9, "unknown(9)"],
    [255, "unknown(255)"],
  ];
  for (const [n, name] of expected) assert.equal(dhcpTypeName(n), name);
  assert.equal(dhcpTypeName(undefined), "none");
  assert.equal(dhcpOptionName(51), "LEASE_TIME");
  assert.equal(dhcpOptionName(250), "unknown(250)");
});

Deno.test("newReply() copies the RFC 2131 Table 3 fields and clears the rest", () => {
  const req = baseMessage([[53, encodeU8(DhcpType.DHCPREQUEST)]]);
  req.hops = 2;
  req.flags = BROADCAST_FLAG;
  req.ciaddr = ip("192.0.2.9");
  req.yiaddr = ip("192.0.2.10");
  req.siaddr = ip("192.0.2.11");
  req.giaddr = ip("192.0.2.1");
  req.sname[0] = 0x41;
  req.file[0] = 0x42;
  const r = newReply(req);
  assert.deepEqual(r, {
    op: BOOTREPLY,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x01020304,
    secs: 0,
    flags: BROADCAST_FLAG,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: ip("192.0.2.1"),
    chaddr: req.chaddr,
    sname: new Uint8Array(64),
    file: new Uint8Array(128),
    options: new Map(),
  });
  // Shared, not copied: encoding only reads it (an array per reply costs an allocation).
  assert.equal(r.chaddr, req.chaddr);
  // A chaddr of another length (a hand-built message) becomes a 16-octet copy.
  const short = { ...req, chaddr: Uint8Array.of(2, 3, 4) };
  const padded = newReply(short).chaddr;
  assert.deepEqual(padded, Uint8Array.of(2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
});

Deno.test("hwAddress() is a view of the first hlen octets of chaddr, at most 16", () => {
  const m = baseMessage();
  assert.deepEqual(hwAddress(m), hex("02000000002a"));
  m.hlen = 0;
  assert.deepEqual(hwAddress(m), new Uint8Array(0));
  m.hlen = 200; // only possible in a hand-built message; decode rejects hlen > 16
  assert.equal(hwAddress(m).length, 16);
  const view = hwAddress(m);
  assert.equal(view.buffer, m.chaddr.buffer);
  assert.equal(view.byteOffset, m.chaddr.byteOffset);
});

// ---- getters: present, absent, malformed ----

Deno.test("typed getters return values, and undefined when absent or malformed", async (t) => {
  const cases: {
    name: string;
    code: number;
    good: string;
    want: unknown;
    bad: string[];
    get: (m: DhcpMessage) => unknown;
  }[] = [
    // RFC 2132 §9.6
    { name: "getMessageType", code: 53, good: "05", want: 5, bad: [], get: getMessageType },
    // RFC 2132 §9.1
    {
      name: "getRequestedIp",
      code: 50,
      good: "c0000205",
      want: ip("192.0.2.5"),
      bad: ["c00002", "c000020500"],
      get: getRequestedIp,
    },
    // RFC 2132 §9.7
    {
      name: "getServerId",
      code: 54,
      good: "c0000201",
      want: ip("192.0.2.1"),
      bad: ["", "c0"],
      get: getServerId,
    },
    // RFC 2132 §9.2
    {
      name: "getLeaseTime",
      code: 51,
      good: "00000e10",
      want: 3600,
      bad: ["000e10"],
      get: getLeaseTime,
    },
    // RFC 2132 §9.11
    {
      name: "getRenewalTime",
      code: 58,
      good: "00000708",
      want: 1800,
      bad: ["0708"],
      get: getRenewalTime,
    },
    // RFC 2132 §9.12
    {
      name: "getRebindingTime",
      code: 59,
      good: "ffffffff",
      want: 0xffffffff,
      bad: ["ffffffffff"],
      get: getRebindingTime,
    },
    // RFC 2132 §9.10: minimum legal value 576
    {
      name: "getMaxMessageSize",
      code: 57,
      good: "05dc",
      want: 1500,
      bad: ["023f", "05", "05dc00"],
      get: getMaxMessageSize,
    },
    // RFC 2132 §9.8: at least one code
    {
      name: "getParameterRequestList",
      code: 55,
      good: "01030f06",
      want: [1, 3, 15, 6],
      bad: [""],
      get: getParameterRequestList,
    },
    // RFC 2132 §9.14: at least 2 octets
    {
      name: "getClientId",
      code: 61,
      good: "0102000000002a",
      want: hex("0102000000002a"),
      bad: ["", "01"],
      get: getClientId,
    },
    // RFC 2132 §3.14; trailing NULs deleted (RFC 2132 §2)
    {
      name: "getHostname",
      code: 12,
      good: "686f73742d610000",
      want: "host-a",
      bad: ["", "00"],
      get: getHostname,
    },
    // RFC 2132 §3.17
    {
      name: "getDomainName",
      code: 15,
      good: "6578616d706c652e6f7267",
      want: "example.org",
      bad: [""],
      get: getDomainName,
    },
    // RFC 2132 §9.9
    {
      name: "getMessage",
      code: 56,
      good: "77726f6e67206e6574776f726b",
      want: "wrong network",
      bad: ["0000"],
      get: getMessage,
    },
    // RFC 2132 §3.3
    {
      name: "getSubnetMask",
      code: 1,
      good: "ffffff00",
      want: ip("255.255.255.0"),
      bad: ["ffffff"],
      get: getSubnetMask,
    },
    // RFC 2132 §5.3
    {
      name: "getBroadcastAddress",
      code: 28,
      good: "c00002ff",
      want: ip("192.0.2.255"),
      bad: ["c0000200ff"],
      get: getBroadcastAddress,
    },
    // RFC 2132 §3.5: a multiple of 4, at least 4
    {
      name: "getRouters",
      code: 3,
      good: "c0000201c0000202",
      want: [ip("192.0.2.1"), ip("192.0.2.2")],
      bad: ["", "c00002", "c0000201c0"],
      get: getRouters,
    },
    // RFC 2132 §3.8
    {
      name: "getDomainNameServers",
      code: 6,
      good: "c6336401",
      want: [ip("198.51.100.1")],
      bad: ["c63364"],
      get: getDomainNameServers,
    },
    // RFC 2132 §8.3
    {
      name: "getNtpServers",
      code: 42,
      good: "cb007101cb007102",
      want: [ip("203.0.113.1"), ip("203.0.113.2")],
      bad: ["cb0071", "cb007101cb"],
      get: getNtpServers,
    },
    // RFC 2132 §9.13
    {
      name: "getVendorClassId",
      code: 60,
      good: "4d53465420352e30",
      want: hex("4d53465420352e30"),
      bad: [""],
      get: getVendorClassId,
    },
    // RFC 3046 §2.0
    {
      name: "getRelayAgentInfo",
      code: 82,
      good: "0103657468",
      want: hex("0103657468"),
      bad: [""],
      get: getRelayAgentInfo,
    },
    // RFC 3011 §3
    {
      name: "getSubnetSelection",
      code: 118,
      good: "c6336400",
      want: ip("198.51.100.0"),
      bad: ["c63364"],
      get: getSubnetSelection,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.equal(c.get(baseMessage()), undefined, "absent");
      assert.deepEqual(c.get(baseMessage([[c.code, hex(c.good)]])), c.want, "present");
      for (const b of c.bad) {
        assert.equal(c.get(baseMessage([[c.code, hex(b)]])), undefined, `malformed ${b}`);
      }
    });
  }
  await t.step("getMaxMessageSize accepts exactly 576", () => {
    assert.equal(getMaxMessageSize(baseMessage([[57, hex("0240")]])), 576);
  });
  await t.step("getLinkSelection reads sub-option 5 and rejects malformed sub-options", () => {
    // RFC 3527 §3: sub-option 5, length 4, after a circuit-id sub-option (RFC 3046 §3.1)
    const m = baseMessage([[82, hex("0103657468" + "0504c0000200")]]);
    assert.equal(getLinkSelection(m), ip("192.0.2.0"));
    assert.equal(getLinkSelection(baseMessage()), undefined);
    assert.equal(getLinkSelection(baseMessage([[82, hex("0103657468")]])), undefined);
    assert.equal(getLinkSelection(baseMessage([[82, hex("0503c00002")]])), undefined);
    assert.equal(getLinkSelection(baseMessage([[82, hex("0504c0000200" + "01")]])), undefined);
    assert.equal(getLinkSelection(baseMessage([[82, hex("0504c00002")]])), undefined);
  });
  await t.step("byte getters return the message's own bytes, not a copy (no allocation)", () => {
    const m = baseMessage([[61, hex("0102000000002a")]]);
    assert.equal(getClientId(m), m.options.get(61));
  });
  await t.step("text getters replace invalid UTF-8 instead of throwing", () => {
    assert.equal(getHostname(baseMessage([[12, hex("68ff69")]])), "h\ufffdi");
  });
});

// ---- RFC 3442 classless static routes ----

Deno.test("encodeClasslessStaticRoutes() and getClasslessStaticRoutes() follow RFC 3442", async (t) => {
  const cases: {
    name: string;
    routes: { network: number; prefix: number; router: number }[];
    bytes: string;
  }[] = [
    {
      // RFC 3442 §3: a default route is width 0 with no destination octets
      name: "default route",
      routes: [{ network: 0, prefix: 0, router: ip("192.0.2.1") }],
      bytes: "00c0000201",
    },
    {
      // /24: three significant octets
      name: "a /24 and a /25",
      routes: [
        { network: ip("198.51.100.0"), prefix: 24, router: ip("192.0.2.1") },
        { network: ip("203.0.113.128"), prefix: 25, router: ip("192.0.2.2") },
      ],
      bytes: "18c63364c0000201" + "19cb007180c0000202",
    },
    {
      // /32: four octets
      name: "a host route",
      routes: [{ network: ip("203.0.113.7"), prefix: 32, router: ip("192.0.2.1") }],
      bytes: "20cb007107c0000201",
    },
    {
      // /9: two octets
      name: "a /9",
      routes: [{ network: ip("198.0.0.0"), prefix: 9, router: 0 }],
      bytes: "09c60000000000",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.equal(toHex(encodeClasslessStaticRoutes(c.routes)), c.bytes);
      assert.deepEqual(getClasslessStaticRoutes(baseMessage([[121, hex(c.bytes)]])), c.routes);
    });
  }
  await t.step("host bits beyond the prefix are cleared", () => {
    const r = [{ network: ip("198.51.100.77"), prefix: 24, router: ip("192.0.2.1") }];
    assert.equal(toHex(encodeClasslessStaticRoutes(r)), "18c63364c0000201");
    assert.deepEqual(getClasslessStaticRoutes(baseMessage([[121, hex("17c63365c0000201")]])), [
      { network: ip("198.51.100.0"), prefix: 23, router: ip("192.0.2.1") },
    ]);
  });
  await t.step("malformed values give undefined", () => {
    for (const b of ["", "21c0000201c0000201", "18c63364c00002", "18c633", "00c0000201" + "08"]) {
      assert.equal(getClasslessStaticRoutes(baseMessage([[121, hex(b)]])), undefined, b);
    }
  });
  await t.step("bad routes throw RangeError", () => {
    assert.throws(() => encodeClasslessStaticRoutes([]), RangeError);
    assert.throws(
      () => encodeClasslessStaticRoutes([{ network: 0, prefix: 33, router: 0 }]),
      RangeError,
    );
    assert.throws(
      () => encodeClasslessStaticRoutes([{ network: -1, prefix: 8, router: 0 }]),
      RangeError,
    );
  });
});

// ---- value encoders ----

Deno.test("value encoders write big-endian bytes and reject out-of-range values", () => {
  assert.equal(toHex(encodeU8(0)), "00");
  assert.equal(toHex(encodeU8(255)), "ff");
  assert.equal(toHex(encodeU16(1500)), "05dc");
  assert.equal(toHex(encodeU32(300)), "0000012c");
  assert.equal(toHex(encodeU32(0xffffffff)), "ffffffff");
  assert.equal(toHex(encodeIp(ip("192.0.2.1"))), "c0000201");
  assert.equal(toHex(encodeIps([ip("198.51.100.1"), ip("203.0.113.2")])), "c6336401cb007102");
  assert.equal(toHex(encodeText("host-a")), "686f73742d61");
  assert.equal(toHex(encodeText("é")), "c3a9");
  for (const bad of [-1, 256, 1.5, NaN]) assert.throws(() => encodeU8(bad), RangeError);
  assert.throws(() => encodeU16(65536), RangeError);
  assert.throws(() => encodeU32(2 ** 32), RangeError);
  assert.throws(() => encodeIp(-1), RangeError);
  assert.throws(() => encodeIps([]), RangeError);
  assert.throws(() => encodeIps([2 ** 32]), RangeError);
  assert.throws(() => encodeText(""), RangeError);
});

// ---- encoding rules ----

Deno.test("encodeDhcp() writes header, cookie, options in order, END and pads to 300", () => {
  const m = baseMessage([
    [Opt.MESSAGE_TYPE, encodeU8(DhcpType.DHCPDISCOVER)],
    [Opt.HOSTNAME, encodeText("a")],
    [250, hex("")], // unknown, empty: survives as code + zero length
  ]);
  const b = encodeDhcp(m);
  assert.equal(b.length, 300);
  assert.equal(toHex(b.subarray(0, 12)), "010106000102030400070000");
  assert.equal(toHex(b.subarray(28, 34)), "02000000002a");
  assert.equal(toHex(b.subarray(236, 240)), DHCP_MAGIC_COOKIE.toString(16));
  assert.equal(toHex(b.subarray(240, 250)), "350101" + "0c0161" + "fa00" + "ff" + "00");
  assert.deepEqual(b.subarray(249), new Uint8Array(51));
  assert.deepEqual(plainDhcp(decodeDhcp(b)), m);
  assert.equal(encodeDhcp(m, { padTo: 0 }).length, 249);
  assert.equal(encodeDhcp(m, { padTo: 400 }).length, 400);
  assert.equal(encodeDhcp(m, { padTo: 9000 }).length, 576); // never beyond maxSize
});

Deno.test("encodeDhcp() writes option 82 last, unchanged", () => {
  const relay = hex("0106" + "657468302f31" + "0206" + "020000000001");
  const m = baseMessage([
    [Opt.RELAY_AGENT_INFO, relay],
    [Opt.MESSAGE_TYPE, encodeU8(DhcpType.DHCPOFFER)],
    [Opt.SERVER_ID, encodeIp(ip("192.0.2.1"))],
  ]);
  const b = encodeDhcp(m);
  const tail = "52" + "10" + toHex(relay) + "ff";
  assert.equal(
    toHex(b.subarray(240, 240 + 3 + 6 + tail.length / 2)),
    "350102" + "3604c0000201" + tail,
  );
  const d = decodeDhcp(b);
  assert.deepEqual([...d.options.keys()], [53, 54, 82]);
  assert.deepEqual(d.options.get(82), relay);
});

Deno.test("encodeDhcp() splits a 600-byte option into 255+255+90 (RFC 3396) and decode joins them", () => {
  const big = new Uint8Array(600).map((_, i) => i & 255);
  const m = baseMessage([[53, encodeU8(1)], [43, big], [12, encodeText("x")]]);
  const b = encodeDhcp(m, { maxSize: 1500 });
  assert.equal(b[243], 43);
  assert.equal(b[244], 255);
  assert.equal(b[243 + 257], 43);
  assert.equal(b[243 + 258], 255);
  assert.equal(b[243 + 514], 43);
  assert.equal(b[243 + 515], 90);
  assert.equal(b[243 + 516 + 90], 12);
  assert.equal(b.length, 240 + 3 + 606 + 3 + 1);
  const d = decodeDhcp(b);
  assert.deepEqual(d.options.get(43), big);
  assert.deepEqual([...d.options.keys()], [53, 43, 12]);
});

Deno.test("decodeDhcp() concatenates non-adjacent repeats of an option (RFC 3396 §7)", () => {
  const d = decodeDhcp(rawWithOptions([0x0c, 2, 0x61, 0x62, 0x35, 1, 3, 0, 0x0c, 1, 0x63, 0xff]));
  assert.deepEqual(optionList(d), [[12, "616263"], [53, "03"]]);
  assert.equal(getHostname(d), "abc");
});

Deno.test("decodeDhcp() joins 21,000 one-octet instances of an option in order, across file too (RFC 3396 §7)", () => {
  // Found by the fuzzer (tests/fixtures/fuzz/dhcp/slow-8e66ac1954ae.hex): each instance used
  // to copy the value so far, quadratic in the count; a 64 KiB datagram took ~90 ms. The time
  // is checked by tests/fuzz/replay_test.ts; this checks that the new join is still right.
  const n = 21_000;
  const opts: number[] = [0x35, 1, 1, 0x34, 1, 1]; // DHCPDISCOVER, overload: file
  for (let i = 0; i < n; i++) opts.push(0x0c, 1, 0x61 + (i % 26));
  opts.push(0xff);
  const b = rawWithOptions(opts, (m) => m.set([0x0c, 2, 0x30, 0x31, 0xff], 108)); // file: "01"
  const d = decodeDhcp(b);
  const v = d.options.get(12);
  assert.ok(v !== undefined);
  assert.equal(v.length, n + 2);
  for (let i = 0; i < n; i++) assert.equal(v[i], 0x61 + (i % 26), `octet ${i}`);
  assert.deepEqual([...v.subarray(n)], [0x30, 0x31], "the file field's instance comes last");
  assert.deepEqual([...d.options.keys()], [53, 12]);
  // Repeated option 52 instances are joined the same way, then refused as one value.
  assertWireError(
    () => decodeDhcp(rawWithOptions([0x34, 1, 1, 0x34, 1, 1, 0x34, 1, 2, 0xff])),
    240,
    "Cannot decode DHCP option 52: length is 3, expected 1",
  );
});

Deno.test("encodeDhcp() spills options into file (overload 1) then sname (overload 3)", async (t) => {
  // At maxSize 576 the options field holds 335 bytes before END, 332 beside option 52:
  // 53 (3) + 54 (6) + ten 32-byte options fill 329; the 11th and 12th go to file.
  const opts: [number, Uint8Array][] = [[53, encodeU8(5)], [54, encodeIp(ip("192.0.2.1"))]];
  for (let i = 0; i < 12; i++) opts.push([200 + i, new Uint8Array(30).fill(i + 1)]);
  await t.step("file only", () => {
    const m = baseMessage(opts);
    const b = encodeDhcp(m);
    assert.equal(b.length, 240 + 3 + 329 + 1); // option 52, the options that fit, END
    assert.equal(toHex(b.subarray(240, 243)), "340101"); // option 52 first, value 1
    assert.equal(b[108], 200 + 10); // file starts with the first option that did not fit
    const d = decodeDhcp(b);
    assert.deepEqual([...d.options.keys()], opts.map(([c]) => c));
    for (const [c, v] of opts) assert.deepEqual(d.options.get(c), v);
    assert.deepEqual(d.sname, new Uint8Array(64));
    assert.notDeepEqual(d.file, new Uint8Array(128));
  });
  await t.step("file and sname", () => {
    const more = opts.concat([[230, new Uint8Array(50).fill(7)], [
      231,
      new Uint8Array(40).fill(8),
    ]]);
    const m = baseMessage(more);
    const b = encodeDhcp(m);
    assert.ok(b.length <= 576);
    assert.equal(toHex(b.subarray(240, 243)), "340103");
    assert.equal(b[44], 231); // sname carries the last option
    const d = decodeDhcp(b);
    assert.deepEqual([...d.options.keys()], more.map(([c]) => c));
    for (const [c, v] of more) assert.deepEqual(d.options.get(c), v);
  });
  await t.step("a long option is split across the field boundary", () => {
    const m = baseMessage([[53, encodeU8(5)], [43, new Uint8Array(500).fill(9)]]);
    const b = encodeDhcp(m);
    assert.ok(b.length <= 576);
    assert.equal(b[242], 3);
    assert.deepEqual(decodeDhcp(b).options.get(43), new Uint8Array(500).fill(9));
  });
  await t.step("no overload when file or sname carry data: drop from the end instead", () => {
    const m = baseMessage(opts.concat([[82, hex("0102abcd")]]));
    m.file[0] = 0x2f;
    m.sname[0] = 0x73;
    const b = encodeDhcp(m);
    assert.equal(b.length, 576);
    const d = decodeDhcp(b);
    assert.equal(d.options.has(52), false);
    const kept = [...d.options.keys()];
    // 335 - 6 (option 82) = 329 = 53 (3) + 54 (6) + ten 32-byte options; then 82
    assert.deepEqual(kept, [53, 54, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 82]);
    assert.deepEqual(d.file, m.file);
  });
});

Deno.test("encodeDhcp() honours maxSize and never drops 53, 54 or 82", async (t) => {
  const opts: [number, Uint8Array][] = [];
  for (let i = 0; i < 20; i++) opts.push([100 + i, new Uint8Array(60).fill(i)]);
  opts.push([54, encodeIp(ip("192.0.2.1"))]);
  opts.push([82, new Uint8Array(40).fill(0xaa)]);
  opts.push([53, encodeU8(2)]);
  for (const maxSize of [576, 700, 1000, 1500]) {
    await t.step(`maxSize ${maxSize}`, () => {
      const b = encodeDhcp(baseMessage(opts), { maxSize });
      assert.ok(b.length <= maxSize, `${b.length} > ${maxSize}`);
      const d = decodeDhcp(b);
      assert.ok(d.options.has(53) && d.options.has(54) && d.options.has(82));
      assert.deepEqual(d.options.get(82), new Uint8Array(40).fill(0xaa));
      // what was dropped is a suffix of the droppable options
      const keptDroppable = [...d.options.keys()].filter((c) => c >= 100 && c < 120);
      assert.deepEqual(keptDroppable, opts.slice(0, keptDroppable.length).map(([c]) => c));
    });
  }
  await t.step("everything fits at 1500 without overload", () => {
    const d = decodeDhcp(encodeDhcp(baseMessage(opts), { maxSize: 1500 }));
    assert.equal(d.options.size, opts.length);
  });
  await t.step("too small for the protected options: RangeError", () => {
    const m = baseMessage([[53, encodeU8(2)], [82, new Uint8Array(250)]]);
    m.file[0] = 1;
    m.sname[0] = 1;
    assert.throws(() => encodeDhcp(m, { maxSize: 300 }), RangeError);
    assert.throws(() => encodeDhcp(baseMessage(), { maxSize: 100 }), RangeError);
  });
});

Deno.test("encodeDhcp() rejects caller bugs with RangeError", () => {
  const cases: [string, (m: DhcpMessage) => void][] = [
    ["xid negative", (m) => (m.xid = -1)],
    ["xid too large", (m) => (m.xid = 2 ** 32)],
    ["op too large", (m) => (m.op = 256)],
    ["secs fractional", (m) => (m.secs = 1.5)],
    ["chaddr 17 bytes", (m) => (m.chaddr = new Uint8Array(17))],
    ["sname 65 bytes", (m) => (m.sname = new Uint8Array(65))],
    ["option code 256", (m) => m.options.set(256, new Uint8Array(1))],
  ];
  for (const [name, mutate] of cases) {
    const m = baseMessage();
    mutate(m);
    assert.throws(() => encodeDhcp(m), RangeError, name);
  }
  // PAD, END and 52 in the map are ignored: the encoder writes those itself
  const m = baseMessage([[0, hex("00")], [52, hex("03")], [255, hex("")], [53, encodeU8(1)]]);
  assert.deepEqual(optionList(decodeDhcp(encodeDhcp(m))), [[53, "01"]]);
});

// ---- decoding rules ----

Deno.test("decodeDhcp() reads options from file and sname when option 52 says so", async (t) => {
  await t.step("overload 3: options field, then file, then sname (RFC 2131 §4.1)", () => {
    const b = rawWithOptions([0x34, 1, 3, 0x35, 1, 5, 0xff], (b) => {
      b.set([0x0c, 1, 0x66, 0x36, 4, 192, 0, 2, 1, 0xff], 108); // file
      b.set([0x0c, 1, 0x73, 0x0f, 2, 0x65, 0x78], 44); // sname, no END: runs to its end
    });
    const d = decodeDhcp(b);
    assert.deepEqual(optionList(d), [[53, "05"], [12, "6673"], [54, "c0000201"], [15, "6578"]]);
    assert.equal(d.sname[0], 0x0c); // sname and file stay as received
    assert.equal(d.file[0], 0x0c);
  });
  await t.step("overload 1 leaves sname alone", () => {
    const b = rawWithOptions([0x34, 1, 1, 0xff], (b) => {
      b.set([0x0c, 1, 0x66, 0xff], 108);
      b.set([0x0c, 200], 44); // would be malformed if read
    });
    assert.deepEqual(optionList(decodeDhcp(b)), [[12, "66"]]);
  });
  await t.step("overload 2 leaves file alone", () => {
    const b = rawWithOptions([0x34, 1, 2, 0xff], (b) => {
      b.set([0x0c, 200], 108);
      b.set([0x0c, 1, 0x73, 0xff], 44);
    });
    assert.deepEqual(optionList(decodeDhcp(b)), [[12, "73"]]);
  });
  await t.step("option 52 inside file is ignored", () => {
    const b = rawWithOptions([0x34, 1, 1, 0xff], (b) => {
      b.set([0x34, 1, 2, 0xff], 108);
      b.set([0x0c, 200], 44);
    });
    assert.deepEqual(optionList(decodeDhcp(b)), []);
  });
});

Deno.test("decodeDhcp() lenient cases", async (t) => {
  await t.step("missing END at the end of the datagram is accepted", () => {
    assert.deepEqual(optionList(decodeDhcp(rawWithOptions([0x35, 1, 1]))), [[53, "01"]]);
    assert.deepEqual(optionList(decodeDhcp(rawWithOptions([]))), []); // BOOTP, no options
  });
  await t.step("bytes after END are ignored", () => {
    const d = decodeDhcp(rawWithOptions([0x35, 1, 1, 0xff, 0x33, 0xee, 0x01]));
    assert.deepEqual(optionList(d), [[53, "01"]]);
  });
  await t.step(
    "a fixed-size option with the wrong size is kept raw; its getter says undefined",
    () => {
      const d = decodeDhcp(rawWithOptions([0x33, 3, 0, 1, 0x2c, 0x36, 2, 1, 2, 0x39, 1, 5, 0xff]));
      assert.deepEqual(optionList(d), [[51, "00012c"], [54, "0102"], [57, "05"]]);
      assert.equal(getLeaseTime(d), undefined);
      assert.equal(getServerId(d), undefined);
      assert.equal(getMaxMessageSize(d), undefined);
      assert.deepEqual(decodeDhcp(encodeDhcp(d)), d);
    },
  );
  await t.step("no option 53 (BOOTP) decodes", () => {
    assert.equal(getMessageType(decodeDhcp(rawWithOptions([0x0c, 1, 0x61, 0xff]))), undefined);
  });
  await t.step("a 64 KiB datagram decodes", () => {
    const b = new Uint8Array(65536);
    b.set(rawWithOptions([0x35, 1, 8]));
    assert.equal(getMessageType(decodeDhcp(b)), DhcpType.DHCPINFORM);
    const junk = new Uint8Array(240 + 3 * 21845).fill(0x01); // 01 01 01: option 1, length 1
    junk.set(rawWithOptions([]).subarray(0, 240));
    assert.equal(decodeDhcp(junk).options.get(1)?.length, 21845);
  });
  await t.step("hlen 16 is the maximum accepted", () => {
    assert.equal(decodeDhcp(rawWithOptions([], (b) => (b[2] = 16))).hlen, 16);
  });
});

Deno.test("decodeDhcp() rejects malformed messages with the offset", async (t) => {
  const cases: { name: string; bytes: Uint8Array; offset: number; includes: string }[] = [
    // RFC 2131 §2: 236-byte header plus the 4-byte cookie
    { name: "empty", bytes: new Uint8Array(0), offset: 0, includes: "shorter than the 240-byte" },
    {
      name: "header cut at 239",
      bytes: rawWithOptions([]).subarray(0, 239),
      offset: 239,
      includes: "239 bytes",
    },
    {
      // RFC 2131 §3: magic cookie
      name: "bad magic cookie",
      bytes: rawWithOptions([0x35, 1, 1, 0xff], (b) => (b[239] = 0x64)),
      offset: 236,
      includes: "magic cookie is 0x63825364",
    },
    {
      // RFC 2131 §2: chaddr is 16 octets
      name: "hlen 17",
      bytes: rawWithOptions([0xff], (b) => (b[2] = 17)),
      offset: 2,
      includes: "hlen is 17",
    },
    {
      // RFC 2132 §2: length runs past the options field
      name: "option length past the end",
      bytes: rawWithOptions([0x35, 1, 1, 0x33, 4, 0, 0]),
      offset: 243,
      includes: "option 51: length is 4, only 2 bytes left",
    },
    {
      name: "length octet missing",
      bytes: rawWithOptions([0x35, 1, 1, 0, 0x33]),
      offset: 244,
      includes: "option 51: the length octet is missing",
    },
    {
      // RFC 2132 §9.3: overload values 1, 2, 3
      name: "overload value 4",
      bytes: rawWithOptions([0x35, 1, 1, 0x34, 1, 4, 0xff]),
      offset: 243,
      includes: "option 52: value is 4",
    },
    {
      name: "overload value 0",
      bytes: rawWithOptions([0x34, 1, 0, 0xff]),
      offset: 240,
      includes: "option 52: value is 0",
    },
    {
      name: "overload length 2",
      bytes: rawWithOptions([0x34, 2, 1, 1, 0xff]),
      offset: 240,
      includes: "option 52: length is 2",
    },
    {
      name: "overload repeated (concatenated to length 2)",
      bytes: rawWithOptions([0x34, 1, 1, 0x34, 1, 2, 0xff]),
      offset: 240,
      includes: "option 52: length is 2",
    },
    {
      name: "malformed option inside file",
      bytes: rawWithOptions([0x34, 1, 1, 0xff], (b) => b.set([0, 0, 0x0c, 200], 108)),
      offset: 110,
      includes: "length is 200, only 124 bytes left in the file field",
    },
    {
      name: "malformed option inside sname",
      bytes: rawWithOptions([0x34, 1, 3, 0xff], (b) => {
        b[108] = 0xff;
        b.set([0x0c, 1, 0x61, 0x0f, 70], 44);
      }),
      offset: 47,
      includes: "length is 70, only 59 bytes left in the sname field",
    },
    {
      name: "length octet missing at the end of file",
      bytes: rawWithOptions([0x34, 1, 1, 0xff], (b) => (b[235] = 0x0c)), // PADs, then a lone code
      offset: 235,
      includes: "length octet is missing at the end of the file field",
    },
    {
      // RFC 2132 §9.6: option 53 is exactly 1 octet
      name: "option 53 of length 2",
      bytes: rawWithOptions([0x0c, 1, 0x61, 0x35, 2, 1, 1, 0xff]),
      offset: 243,
      includes: "option 53: length is 2, expected 1",
    },
    {
      name: "option 53 of length 0",
      bytes: rawWithOptions([0x35, 0, 0xff]),
      offset: 240,
      includes: "option 53: length is 0",
    },
    {
      name: "option 53 twice (concatenated to length 2)",
      bytes: rawWithOptions([0x35, 1, 1, 0x35, 1, 3, 0xff]),
      offset: 240,
      includes: "option 53: length is 2",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assertWireError(() => decodeDhcp(c.bytes), c.offset, c.includes));
  }
});
