import assert from "node:assert/strict";
import { WireError } from "../../lib/errors.ts";
import { formatIpv4, fromHex, parseIpv4, toHex } from "../../lib/wire/ip.ts";
import { decodePcap, LinkType, type PcapFrame, TcpFlag } from "../../lib/wire/pcap.ts";
import { decodeDhcp, getMessageType } from "../../lib/wire/dhcp.ts";

const FIXTURES = new URL("../fixtures/dhcp/", import.meta.url);

function readPcap(name: string) {
  return decodePcap(Deno.readFileSync(new URL(name, FIXTURES)));
}

function readHexFixture(name: string): Uint8Array {
  const bytes = fromHex(
    Deno.readTextFileSync(new URL(`${name}.hex`, FIXTURES)).replace(/#.*$/gm, ""),
  );
  assert.ok(bytes, `${name}.hex is not valid hex`);
  return bytes;
}

function ip(text: string): number {
  const v = parseIpv4(text);
  assert.ok(v !== undefined, text);
  return v;
}

function udpOf(f: PcapFrame) {
  assert.ok(f.segment, `frame ${f.number} has no segment`);
  assert.equal(f.segment.protocol, "udp");
  return f.segment;
}

// ---- the real captures: expected values from `tshark -T fields` on the same files ----

Deno.test("decodePcap() reads dhcp-dora.pcap as tshark does", () => {
  const file = readPcap("dhcp-dora.pcap");
  assert.equal(file.linkType, LinkType.ETHERNET);
  assert.equal(file.nanosecond, false);
  assert.equal(file.snapLength, 262144);
  // tshark: frame.number frame.time_epoch frame.len; ip.src ip.dst udp.srcport udp.dstport
  const expected: [number, string, string, string, number, number, string][] = [
    [1, "1795926551.230003000", "0.0.0.0", "255.255.255.255", 68, 67, "dora-discover"],
    [2, "1795926552.232547000", "198.18.0.1", "198.18.16.103", 67, 68, "dora-offer"],
    [3, "1795926552.233925000", "0.0.0.0", "255.255.255.255", 68, 67, "dora-request"],
    [4, "1795926552.237194000", "198.18.0.1", "198.18.16.103", 67, 68, "dora-ack"],
    [5, "1795926556.447670000", "198.18.16.103", "198.18.0.1", 68, 67, "dora-release"],
  ];
  assert.equal(file.frames.length, expected.length);
  for (const [n, time, src, dst, sport, dport, fixture] of expected) {
    const f = file.frames[n - 1] as PcapFrame;
    assert.equal(f.number, n);
    const [sec, frac] = time.split(".") as [string, string];
    assert.equal(f.seconds, Number(sec));
    assert.equal(f.nanos, Number(frac));
    assert.ok(Math.abs(f.time - Number(time)) < 1e-6);
    assert.equal(f.originalLength, 342);
    assert.equal(f.data.length, 342);
    const s = udpOf(f);
    assert.equal(formatIpv4(s.srcIp), src);
    assert.equal(formatIpv4(s.dstIp), dst);
    assert.equal(s.srcPort, sport);
    assert.equal(s.dstPort, dport);
    assert.equal(s.truncated, false);
    assert.equal(s.tcpSeq, undefined);
    // the .hex fixtures were extracted with tshark (udp.payload), independently of this reader
    assert.deepEqual(s.payload, readHexFixture(fixture));
  }
});

/** tshark: frame.number ip.src ip.dst udp.srcport udp.dstport dhcp.option.dhcp dhcp.id dhcp.ip.your */
const B_LEASES = `
1 0.0.0.0 255.255.255.255 68 67 1 0xffebd654 0.0.0.0
2 198.18.0.2 198.18.16.100 67 68 2 0xffebd654 198.18.16.100
3 0.0.0.0 255.255.255.255 68 67 3 0xffebd654 0.0.0.0
4 198.18.0.2 198.18.16.100 67 68 5 0xffebd654 198.18.16.100
5 0.0.0.0 255.255.255.255 68 67 1 0x936ed950 0.0.0.0
6 198.18.0.1 198.18.16.101 67 68 2 0x936ed950 198.18.16.101
7 0.0.0.0 255.255.255.255 68 67 3 0x936ed950 0.0.0.0
8 198.18.0.1 198.18.16.101 67 68 5 0x936ed950 198.18.16.101
9 0.0.0.0 255.255.255.255 68 67 1 0x57e9a117 0.0.0.0
10 198.18.0.2 198.18.16.99 67 68 2 0x57e9a117 198.18.16.99
11 0.0.0.0 255.255.255.255 68 67 3 0x57e9a117 0.0.0.0
12 198.18.0.2 198.18.16.99 67 68 5 0x57e9a117 198.18.16.99
13 0.0.0.0 255.255.255.255 68 67 1 0x72d5ba61 0.0.0.0
14 198.18.0.2 198.18.16.98 67 68 2 0x72d5ba61 198.18.16.98
15 0.0.0.0 255.255.255.255 68 67 3 0x72d5ba61 0.0.0.0
16 198.18.0.2 198.18.16.98 67 68 5 0x72d5ba61 198.18.16.98
17 0.0.0.0 255.255.255.255 68 67 1 0x855a501c 0.0.0.0
18 198.18.0.1 198.18.16.102 67 68 2 0x855a501c 198.18.16.102
19 0.0.0.0 255.255.255.255 68 67 3 0x855a501c 0.0.0.0
20 198.18.0.1 198.18.16.102 67 68 5 0x855a501c 198.18.16.102
21 0.0.0.0 255.255.255.255 68 67 1 0x5d7bf548 0.0.0.0
22 198.18.0.2 198.18.16.97 67 68 2 0x5d7bf548 198.18.16.97
23 0.0.0.0 255.255.255.255 68 67 3 0x5d7bf548 0.0.0.0
24 198.18.0.2 198.18.16.97 67 68 5 0x5d7bf548 198.18.16.97
25 198.18.16.100 198.18.0.2 68 67 7 0xfea56f03 0.0.0.0
26 198.18.16.101 198.18.0.1 68 67 7 0x61df2847 0.0.0.0
`;

/** Same fields for e-hba-split62-dhcp.pcap. */
const E_HBA = `
1 0.0.0.0 255.255.255.255 68 67 1 0x8528860e 0.0.0.0
2 198.18.0.1 198.18.16.101 67 68 2 0x8528860e 198.18.16.101
3 0.0.0.0 255.255.255.255 68 67 3 0x8528860e 0.0.0.0
4 198.18.0.1 198.18.16.101 67 68 5 0x8528860e 198.18.16.101
5 0.0.0.0 255.255.255.255 68 67 1 0x96819565 0.0.0.0
6 198.18.0.1 198.18.16.102 67 68 2 0x96819565 198.18.16.102
7 0.0.0.0 255.255.255.255 68 67 3 0x96819565 0.0.0.0
8 198.18.0.1 198.18.16.102 67 68 5 0x96819565 198.18.16.102
9 0.0.0.0 255.255.255.255 68 67 1 0xcc9a7b06 0.0.0.0
10 198.18.0.1 198.18.16.103 67 68 2 0xcc9a7b06 198.18.16.103
11 0.0.0.0 255.255.255.255 68 67 3 0xcc9a7b06 0.0.0.0
12 198.18.0.1 198.18.16.103 67 68 5 0xcc9a7b06 198.18.16.103
13 0.0.0.0 255.255.255.255 68 67 1 0xfd57b176 0.0.0.0
14 198.18.0.2 198.18.16.100 67 68 2 0xfd57b176 198.18.16.100
15 0.0.0.0 255.255.255.255 68 67 3 0xfd57b176 0.0.0.0
16 198.18.0.2 198.18.16.100 67 68 5 0xfd57b176 198.18.16.100
17 0.0.0.0 255.255.255.255 68 67 1 0x7ffd131e 0.0.0.0
18 198.18.0.2 198.18.16.99 67 68 2 0x7ffd131e 198.18.16.99
19 0.0.0.0 255.255.255.255 68 67 3 0x7ffd131e 0.0.0.0
20 198.18.0.2 198.18.16.99 67 68 5 0x7ffd131e 198.18.16.99
21 0.0.0.0 255.255.255.255 68 67 1 0x0f569d3d 0.0.0.0
22 198.18.0.2 198.18.16.98 67 68 2 0x0f569d3d 198.18.16.98
23 0.0.0.0 255.255.255.255 68 67 3 0x0f569d3d 0.0.0.0
24 198.18.0.2 198.18.16.98 67 68 5 0x0f569d3d 198.18.16.98
25 0.0.0.0 255.255.255.255 68 67 1 0xc8466260 0.0.0.0
26 198.18.0.2 198.18.16.97 67 68 2 0xc8466260 198.18.16.97
27 0.0.0.0 255.255.255.255 68 67 3 0xc8466260 0.0.0.0
28 198.18.0.2 198.18.16.97 67 68 5 0xc8466260 198.18.16.97
29 0.0.0.0 255.255.255.255 68 67 1 0x61ac9764 0.0.0.0
30 198.18.0.2 198.18.16.96 67 68 2 0x61ac9764 198.18.16.96
31 0.0.0.0 255.255.255.255 68 67 3 0x61ac9764 0.0.0.0
32 198.18.0.2 198.18.16.96 67 68 5 0x61ac9764 198.18.16.96
`;

Deno.test("decodePcap() + decodeDhcp() read every frame of the lease captures as tshark did", async (t) => {
  for (
    const [name, table] of [["b-leases-dhcp.pcap", B_LEASES], ["e-hba-split62-dhcp.pcap", E_HBA]]
  ) {
    await t.step(name as string, () => {
      const rows = (table as string).trim().split("\n").map((l) => l.split(" "));
      const file = readPcap(name as string);
      assert.equal(file.frames.length, rows.length);
      for (const [n, src, dst, sport, dport, type, xid, yiaddr] of rows) {
        const f = file.frames[Number(n) - 1] as PcapFrame;
        const s = udpOf(f);
        assert.equal(formatIpv4(s.srcIp), src);
        assert.equal(formatIpv4(s.dstIp), dst);
        assert.equal(s.srcPort, Number(sport));
        assert.equal(s.dstPort, Number(dport));
        const m = decodeDhcp(s.payload);
        assert.equal(getMessageType(m), Number(type), `frame ${n}`);
        assert.equal(m.xid, Number(xid));
        assert.equal(m.yiaddr, ip(yiaddr as string));
      }
    });
  }
});

Deno.test("decodePcap() extracts TCP segments of dhcp-dora-failover.pcap", () => {
  const file = readPcap("dhcp-dora-failover.pcap");
  // tshark: frame.number tcp.srcport tcp.dstport tcp.flags tcp.seq_raw tcp.ack_raw tcp.len
  const expected: [number, number, number, number, number, number][] = [
    [45061, 647, 0x18, 2201636301, 4172999746, 68],
    [647, 45061, 0x10, 4172999746, 2201636369, 0],
    [647, 45061, 0x18, 4172999746, 2201636369, 20],
    [45061, 647, 0x10, 2201636369, 4172999766, 0],
    [45061, 647, 0x18, 2201636369, 4172999766, 68],
    [647, 45061, 0x10, 4172999766, 2201636437, 0],
    [647, 45061, 0x18, 4172999766, 2201636437, 20],
    [45061, 647, 0x10, 2201636437, 4172999786, 0],
  ];
  assert.equal(file.frames.length, expected.length);
  expected.forEach(([sport, dport, flags, seq, ack, len], i) => {
    const s = file.frames[i]?.segment;
    assert.ok(s);
    assert.equal(s.protocol, "tcp");
    assert.equal(s.srcIp, ip(sport === 647 ? "198.18.0.2" : "198.18.0.1"));
    assert.equal(s.srcPort, sport);
    assert.equal(s.dstPort, dport);
    assert.equal(s.tcpFlags, flags);
    assert.equal(s.tcpSeq, seq);
    assert.equal(s.tcpAck, ack);
    assert.equal(s.payload.length, len);
  });
  assert.equal((file.frames[0]?.segment?.tcpFlags ?? 0) & TcpFlag.PSH, TcpFlag.PSH);
  // tshark tcp.payload of frames 1 and 3: a BNDUPD and its BNDACK (draft-12 §6.1 framing)
  assert.equal(
    toHex(file.frames[0]?.segment?.payload ?? new Uint8Array()),
    "0044030c6b0baa180000013f00020004c612106700030001020005000701020000000007000d00046b0bab4400" +
      "1200046b0bad06001900046b0baa18000600046b0baa18",
  );
  assert.equal(
    toHex(file.frames[2]?.segment?.payload ?? new Uint8Array()),
    "0014040c6b0baa1a0000013f00020004c6121067",
  );
});

// ---- synthetic files ----

interface RecordSpec {
  sec?: number;
  frac?: number;
  data: Uint8Array;
  orig?: number;
}

function buildPcap(
  records: RecordSpec[],
  opts: { little?: boolean; nano?: boolean; linkType?: number; version?: number } = {},
): Uint8Array {
  const little = opts.little ?? true;
  const size = 24 + records.reduce((n, r) => n + 16 + r.data.length, 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, opts.nano ? 0xa1b23c4d : 0xa1b2c3d4, little);
  v.setUint16(4, opts.version ?? 2, little);
  v.setUint16(6, 4, little);
  v.setUint32(16, 65535, little);
  v.setUint32(20, opts.linkType ?? 1, little);
  let at = 24;
  for (const r of records) {
    v.setUint32(at, r.sec ?? 1, little);
    v.setUint32(at + 4, r.frac ?? 0, little);
    v.setUint32(at + 8, r.data.length, little);
    v.setUint32(at + 12, r.orig ?? r.data.length, little);
    out.set(r.data, at + 16);
    at += 16 + r.data.length;
  }
  return out;
}

/** Ethernet + IPv4 + UDP around a payload; `padTo` adds Ethernet padding. */
function udpFrame(
  payload: Uint8Array,
  opts: { vlan?: boolean; padTo?: number; fragment?: number; ihl?: number } = {},
): Uint8Array {
  const eth = opts.vlan ? 18 : 14;
  const len = Math.max(eth + 28 + payload.length, opts.padTo ?? 0);
  const b = new Uint8Array(len);
  const v = new DataView(b.buffer);
  b.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], 0);
  if (opts.vlan) {
    v.setUint16(12, 0x8100);
    v.setUint16(14, 42);
  }
  v.setUint16(eth - 2, 0x0800);
  b[eth] = 0x40 | (opts.ihl ?? 5);
  v.setUint16(eth + 2, 28 + payload.length);
  v.setUint16(eth + 6, opts.fragment ?? 0);
  b[eth + 8] = 64;
  b[eth + 9] = 17;
  v.setUint32(eth + 12, ip("192.0.2.1"));
  v.setUint32(eth + 16, ip("192.0.2.2"));
  v.setUint16(eth + 20, 67);
  v.setUint16(eth + 22, 68);
  v.setUint16(eth + 24, 8 + payload.length);
  b.set(payload, eth + 28);
  return b;
}

Deno.test("decodePcap() handles byte order, nanoseconds, VLAN tags and Ethernet padding", async (t) => {
  const payload = Uint8Array.of(1, 2, 3);
  await t.step("big-endian nanosecond file", () => {
    const f = decodePcap(buildPcap([{ sec: 7, frac: 123456789, data: udpFrame(payload) }], {
      little: false,
      nano: true,
    }));
    assert.equal(f.nanosecond, true);
    assert.equal(f.frames[0]?.seconds, 7);
    assert.equal(f.frames[0]?.nanos, 123456789);
    assert.deepEqual(f.frames[0]?.segment?.payload, payload);
  });
  await t.step("microseconds become nanoseconds", () => {
    const f = decodePcap(buildPcap([{ sec: 7, frac: 999999, data: udpFrame(payload) }]));
    assert.equal(f.frames[0]?.nanos, 999999000);
  });
  await t.step("802.1Q tag is skipped", () => {
    const f = decodePcap(buildPcap([{ data: udpFrame(payload, { vlan: true }) }]));
    assert.deepEqual(f.frames[0]?.segment?.payload, payload);
  });
  await t.step("Ethernet padding is not payload", () => {
    const f = decodePcap(buildPcap([{ data: udpFrame(payload, { padTo: 60 }) }]));
    assert.equal(f.frames[0]?.data.length, 60);
    assert.deepEqual(f.frames[0]?.segment?.payload, payload);
  });
  await t.step("raw IPv4 link type", () => {
    const f = decodePcap(buildPcap([{ data: udpFrame(payload).subarray(14) }], { linkType: 101 }));
    assert.deepEqual(f.frames[0]?.segment?.payload, payload);
  });
  await t.step("non-IPv4 frames and fragments have no segment", () => {
    const arp = udpFrame(payload);
    arp.set([0x08, 0x06], 12);
    const frag = udpFrame(payload, { fragment: 0x2000 }); // more fragments
    const later = udpFrame(payload, { fragment: 0x0010 }); // offset 128
    const f = decodePcap(buildPcap([{ data: arp }, { data: frag }, { data: later }]));
    assert.equal(f.frames.length, 3);
    for (const fr of f.frames) assert.equal(fr.segment, undefined);
    const other = decodePcap(buildPcap([{ data: udpFrame(payload) }], { linkType: 113 }));
    assert.equal(other.frames[0]?.segment, undefined);
  });
  await t.step("a frame cut by the snap length is marked truncated", () => {
    const full = udpFrame(new Uint8Array(100).fill(5));
    const f = decodePcap(buildPcap([{ data: full.subarray(0, 60), orig: full.length }]));
    const s = f.frames[0]?.segment;
    assert.equal(s?.truncated, true);
    assert.equal(s?.payload.length, 60 - 42);
    assert.equal(f.frames[0]?.originalLength, full.length);
  });
  await t.step("an empty file has no frames", () => {
    assert.equal(decodePcap(buildPcap([])).frames.length, 0);
  });
});

Deno.test("decodePcap() rejects malformed files with the offset", async (t) => {
  const good = buildPcap([{ data: udpFrame(Uint8Array.of(9)) }]);
  const cases: { name: string; bytes: Uint8Array; offset: number; includes: string }[] = [
    {
      name: "shorter than the header",
      bytes: good.subarray(0, 20),
      offset: 20,
      includes: "24-byte",
    },
    {
      name: "bad magic",
      bytes: Uint8Array.from(good, (x, i) => (i === 0 ? 0 : x)),
      offset: 0,
      includes: "magic is 0x00c3b2a1",
    },
    {
      name: "pcapng",
      bytes: Uint8Array.from(good, (x, i) => (i < 4 ? [0x0a, 0x0d, 0x0d, 0x0a][i] as number : x)),
      offset: 0,
      includes: "pcapng is not supported",
    },
    {
      name: "version 3",
      bytes: buildPcap([], { version: 3 }),
      offset: 4,
      includes: "version 3",
    },
    {
      name: "record header cut short",
      bytes: good.subarray(0, 30),
      offset: 24,
      includes: "header is cut short (6 of 16 bytes)",
    },
    {
      name: "record data cut short",
      bytes: good.subarray(0, good.length - 1),
      offset: 32,
      includes: "only 42 bytes left",
    },
    {
      name: "implausible captured length",
      bytes: (() => {
        const b = good.slice();
        new DataView(b.buffer).setUint32(32, 0x7fffffff, true);
        return b;
      })(),
      offset: 32,
      includes: "implausible",
    },
    {
      name: "microseconds over a second",
      bytes: buildPcap([{ frac: 1_000_000, data: udpFrame(Uint8Array.of(9)) }]),
      offset: 28,
      includes: "sub-second part 1000000",
    },
    {
      name: "IPv4 header length below 20",
      bytes: buildPcap([{ data: udpFrame(Uint8Array.of(9), { ihl: 4 }) }]),
      offset: 40 + 14,
      includes: "header length is 16",
    },
    {
      name: "IPv4 total length past the frame",
      bytes: buildPcap([{ data: udpFrame(Uint8Array.of(9)).subarray(0, 40) }]),
      offset: 40 + 14 + 2,
      includes: "total length 29, only 26 bytes",
    },
    {
      name: "IPv4 header cut short",
      bytes: buildPcap([{ data: udpFrame(Uint8Array.of(9)).subarray(0, 30) }]),
      offset: 40 + 14,
      includes: "16 bytes is shorter than the 20-byte header",
    },
    {
      name: "UDP length past the IPv4 packet",
      bytes: (() => {
        const frame = udpFrame(Uint8Array.of(9));
        new DataView(frame.buffer).setUint16(14 + 24, 200);
        return buildPcap([{ data: frame }]);
      })(),
      offset: 40 + 14 + 24,
      includes: "UDP length 200",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => decodePcap(c.bytes), (e: unknown) => {
        assert.ok(e instanceof WireError, String(e));
        assert.equal(e.protocol, "pcap");
        assert.equal(e.offset, c.offset, e.message);
        assert.ok(e.message.includes(c.includes), `"${e.message}" lacks "${c.includes}"`);
        return true;
      });
    });
  }
});
