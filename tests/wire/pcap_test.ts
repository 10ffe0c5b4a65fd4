import assert from "node:assert/strict";
import { WireError } from "../../lib/errors.ts";
import { formatIpv4, fromHex, parseIpv4, toHex } from "../../lib/wire/ip.ts";
import {
  decodeCapture,
  decodePcap,
  LinkType,
  type PcapFile,
  type PcapFrame,
  TcpFlag,
} from "../../lib/wire/pcap.ts";
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

// ---- pcapng (draft-ietf-opsawg-pcapng): a tiny writer, then decodeCapture() ----

/** Concatenates byte arrays. */
function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A block (§3.1): type, total length, body padded to 32 bits, total length. */
function ngBlock(type: number, body: Uint8Array, little: boolean): Uint8Array {
  const padded = Math.ceil(body.length / 4) * 4;
  const out = new Uint8Array(12 + padded);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, little);
  v.setUint32(4, out.length, little);
  out.set(body, 8);
  v.setUint32(out.length - 4, out.length, little);
  return out;
}

/** An option list (§3.5) ending with opt_endofopt; empty when there are no options. */
function ngOptions(options: { code: number; value: Uint8Array }[], little: boolean): Uint8Array {
  if (options.length === 0) return new Uint8Array(0);
  const parts = options.map(({ code, value }) => {
    const b = new Uint8Array(4 + Math.ceil(value.length / 4) * 4);
    const v = new DataView(b.buffer);
    v.setUint16(0, code, little);
    v.setUint16(2, value.length, little);
    b.set(value, 4);
    return b;
  });
  return concat([...parts, new Uint8Array(4)]);
}

/** Section Header Block (§4.1): byte-order magic, version 1.0, section length -1. */
function ngShb(little: boolean, major = 1): Uint8Array {
  const body = new Uint8Array(16);
  const v = new DataView(body.buffer);
  v.setUint32(0, 0x1a2b3c4d, little);
  v.setUint16(4, major, little);
  v.setBigInt64(8, -1n, little);
  return ngBlock(0x0a0d0d0a, body, little);
}

/** Interface Description Block (§4.2) with optional if_tsresol (9) and if_tsoffset (14). */
function ngIdb(
  little: boolean,
  opts: { linkType?: number; snap?: number; tsresol?: number; tsoffset?: bigint } = {},
): Uint8Array {
  const fixed = new Uint8Array(8);
  const v = new DataView(fixed.buffer);
  v.setUint16(0, opts.linkType ?? LinkType.ETHERNET, little);
  v.setUint32(4, opts.snap ?? 65535, little);
  const options: { code: number; value: Uint8Array }[] = [];
  if (opts.tsresol !== undefined) options.push({ code: 9, value: Uint8Array.of(opts.tsresol) });
  if (opts.tsoffset !== undefined) {
    const off = new Uint8Array(8);
    new DataView(off.buffer).setBigInt64(0, opts.tsoffset, little);
    options.push({ code: 14, value: off });
  }
  return ngBlock(1, concat([fixed, ngOptions(options, little)]), little);
}

/** Enhanced Packet Block (§4.3), or the Obsolete Packet Block (§10.1) when `obsolete`. */
function ngEpb(
  little: boolean,
  p: { iface?: number; ts?: bigint; data: Uint8Array; orig?: number; obsolete?: boolean },
): Uint8Array {
  const fixed = new Uint8Array(20);
  const v = new DataView(fixed.buffer);
  if (p.obsolete) v.setUint16(0, p.iface ?? 0, little);
  else v.setUint32(0, p.iface ?? 0, little);
  const ts = p.ts ?? 0n;
  v.setUint32(4, Number(ts >> 32n), little);
  v.setUint32(8, Number(ts & 0xffffffffn), little);
  v.setUint32(12, p.data.length, little);
  v.setUint32(16, p.orig ?? p.data.length, little);
  const data = new Uint8Array(Math.ceil(p.data.length / 4) * 4);
  data.set(p.data);
  // an epb_flags option (code 2), which the reader skips
  const options = ngOptions([{ code: 2, value: Uint8Array.of(0, 0, 0, 1) }], little);
  return ngBlock(p.obsolete ? 2 : 6, concat([fixed, data, options]), little);
}

/** Simple Packet Block (§4.4): original length, data. */
function ngSpb(little: boolean, data: Uint8Array, orig = data.length): Uint8Array {
  const body = new Uint8Array(4 + data.length);
  new DataView(body.buffer).setUint32(0, orig, little);
  body.set(data, 4);
  return ngBlock(3, body, little);
}

/** Ethernet + IPv4 + TCP around a payload, 192.0.2.1:40000 > 192.0.2.2:647. */
function tcpFrame(payload: Uint8Array, seq: number, ack: number, flags: number): Uint8Array {
  const b = new Uint8Array(14 + 40 + payload.length);
  const v = new DataView(b.buffer);
  b.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], 0);
  v.setUint16(12, 0x0800);
  b[14] = 0x45;
  v.setUint16(16, 40 + payload.length);
  b[22] = 64;
  b[23] = 6;
  v.setUint32(26, ip("192.0.2.1"));
  v.setUint32(30, ip("192.0.2.2"));
  v.setUint16(34, 40000);
  v.setUint16(36, 647);
  v.setUint32(38, seq);
  v.setUint32(42, ack);
  b[46] = 5 << 4;
  b[47] = flags;
  b.set(payload, 54);
  return b;
}

/** The DHCPDISCOVER of dhcp-dora.pcap in a synthetic UDP frame; a failover CONTACT over TCP. */
const NG_DHCP = udpFrame(readHexFixture("dora-discover"));
const NG_TCP_PAYLOAD = fromHex("000c0b0c0000000100000002") as Uint8Array;
const NG_TCP = tcpFrame(NG_TCP_PAYLOAD, 1000, 2000, TcpFlag.PSH | TcpFlag.ACK);

/**
 * SHB; IDB 0 Ethernet (microseconds); IDB 1 Ethernet with if_tsresol=9; EPB (DHCP, IDB 0); an
 * unknown block; EPB (TCP, IDB 1); SPB (DHCP); OPB (DHCP, IDB 0).
 */
function sampleNg(little: boolean): Uint8Array {
  return concat([
    ngShb(little),
    ngIdb(little, { snap: 262144 }),
    ngIdb(little, { tsresol: 9 }),
    ngEpb(little, { iface: 0, ts: 1795926551_230003n, data: NG_DHCP }),
    ngBlock(0x0bad, Uint8Array.of(1, 2, 3, 4, 5), little),
    ngEpb(little, { iface: 1, ts: 1795926552_123456789n, data: NG_TCP }),
    ngSpb(little, NG_DHCP),
    ngEpb(little, { iface: 0, ts: 7_000001n, data: NG_DHCP, obsolete: true }),
  ]);
}

Deno.test("decodeCapture() reads pcapng blocks in both byte orders", async (t) => {
  for (const little of [true, false]) {
    await t.step(little ? "little-endian" : "big-endian", () => {
      const file = decodeCapture(sampleNg(little));
      // the file-level fields describe the first interface
      assert.equal(file.linkType, LinkType.ETHERNET);
      assert.equal(file.snapLength, 262144);
      assert.equal(file.nanosecond, false);
      assert.deepEqual(file.frames.map((f) => f.number), [1, 2, 3, 4]); // the unknown block is skipped
      const [epb, tcp, spb, opb] = file.frames as [PcapFrame, PcapFrame, PcapFrame, PcapFrame];

      // EPB on the microsecond interface
      assert.equal(epb.seconds, 1795926551);
      assert.equal(epb.nanos, 230003000);
      assert.ok(Math.abs(epb.time - 1795926551.230003) < 1e-6);
      assert.deepEqual(epb.data, NG_DHCP);
      assert.equal(epb.originalLength, NG_DHCP.length);
      const u = udpOf(epb);
      assert.equal(formatIpv4(u.srcIp), "192.0.2.1");
      assert.equal(formatIpv4(u.dstIp), "192.0.2.2");
      assert.equal(u.srcPort, 67);
      assert.equal(u.dstPort, 68);
      assert.deepEqual(u.payload, readHexFixture("dora-discover"));
      assert.equal(decodeDhcp(u.payload).xid, 0x37754713);

      // EPB on the nanosecond interface, TCP
      assert.equal(tcp.seconds, 1795926552);
      assert.equal(tcp.nanos, 123456789);
      const s = tcp.segment;
      assert.ok(s);
      assert.equal(s.protocol, "tcp");
      assert.equal(s.srcPort, 40000);
      assert.equal(s.dstPort, 647);
      assert.equal(s.tcpSeq, 1000);
      assert.equal(s.tcpAck, 2000);
      assert.equal(s.tcpFlags, TcpFlag.PSH | TcpFlag.ACK);
      assert.equal(s.truncated, false);
      assert.deepEqual(s.payload, NG_TCP_PAYLOAD);

      // SPB: interface 0, no timestamp
      assert.equal(spb.seconds, 0);
      assert.equal(spb.nanos, 0);
      assert.equal(spb.time, 0);
      assert.deepEqual(udpOf(spb).payload, readHexFixture("dora-discover"));

      // OPB on interface 0 (microseconds)
      assert.equal(opb.seconds, 7);
      assert.equal(opb.nanos, 1000);
      assert.deepEqual(udpOf(opb).payload, readHexFixture("dora-discover"));
    });
  }
});

Deno.test("decodeCapture() converts timestamps with if_tsresol and if_tsoffset", async (t) => {
  const cases: {
    name: string;
    idb: { tsresol?: number; tsoffset?: bigint };
    ts: bigint;
    seconds: number;
    nanos: number;
    nanosecond: boolean;
  }[] = [
    // §4.2 if_tsresol absent: 10^-6
    {
      name: "default microseconds",
      idb: {},
      ts: 5_000007n,
      seconds: 5,
      nanos: 7000,
      nanosecond: false,
    },
    // if_tsresol 6 is the default written out
    {
      name: "10^-6",
      idb: { tsresol: 6 },
      ts: 5_999999n,
      seconds: 5,
      nanos: 999999000,
      nanosecond: false,
    },
    // if_tsresol 9: nanoseconds
    {
      name: "10^-9",
      idb: { tsresol: 9 },
      ts: 5_000000001n,
      seconds: 5,
      nanos: 1,
      nanosecond: true,
    },
    // if_tsresol 3: milliseconds
    {
      name: "10^-3",
      idb: { tsresol: 3 },
      ts: 5_250n,
      seconds: 5,
      nanos: 250000000,
      nanosecond: false,
    },
    // if_tsresol 0: whole seconds
    { name: "10^0", idb: { tsresol: 0 }, ts: 42n, seconds: 42, nanos: 0, nanosecond: false },
    // MSB set: 2^-10, 1024 units per second (coarser than 1 µs); 512 units is half a second
    {
      name: "2^-10",
      idb: { tsresol: 0x80 | 10 },
      ts: 5n * 1024n + 512n,
      seconds: 5,
      nanos: 500000000,
      nanosecond: false,
    },
    // 2^-30: one unit is 0.931 ns, floored
    {
      name: "2^-30",
      idb: { tsresol: 0x80 | 30 },
      ts: (3n << 30n) + 1n,
      seconds: 3,
      nanos: 0,
      nanosecond: true,
    },
    // 10^-12: picoseconds are cut to nanoseconds
    {
      name: "10^-12",
      idb: { tsresol: 12 },
      ts: 2_000000123999n,
      seconds: 2,
      nanos: 123,
      nanosecond: true,
    },
    // a timestamp above 2^32 units needs the high word
    {
      name: "high word",
      idb: { tsresol: 9 },
      ts: 1795926552_000000005n,
      seconds: 1795926552,
      nanos: 5,
      nanosecond: true,
    },
    // if_tsoffset adds whole seconds
    {
      name: "if_tsoffset",
      idb: { tsoffset: 1000n },
      ts: 5_000007n,
      seconds: 1005,
      nanos: 7000,
      nanosecond: false,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      for (const little of [true, false]) {
        const file = decodeCapture(concat([
          ngShb(little),
          ngIdb(little, c.idb),
          ngEpb(little, { ts: c.ts, data: NG_DHCP }),
        ]));
        assert.equal(file.nanosecond, c.nanosecond);
        assert.equal(file.frames[0]?.seconds, c.seconds);
        assert.equal(file.frames[0]?.nanos, c.nanos);
      }
    });
  }
});

Deno.test("decodeCapture() handles several sections, raw IPv4 and truncated frames", async (t) => {
  await t.step("each Section Header Block starts a new interface list", () => {
    // section 1 is little-endian Ethernet; section 2 is big-endian raw IPv4, its interface 0
    const file = decodeCapture(concat([
      ngShb(true),
      ngIdb(true),
      ngIdb(true),
      ngEpb(true, { iface: 1, ts: 1_000000n, data: NG_DHCP }),
      ngShb(false),
      ngIdb(false, { linkType: LinkType.RAW, tsresol: 9 }),
      ngEpb(false, { iface: 0, ts: 2_000000000n, data: NG_DHCP.subarray(14) }),
    ]));
    assert.equal(file.linkType, LinkType.ETHERNET);
    assert.equal(file.nanosecond, false);
    assert.deepEqual(file.frames.map((f) => [f.number, f.seconds]), [[1, 1], [2, 2]]);
    assert.deepEqual(udpOf(file.frames[1] as PcapFrame).payload, readHexFixture("dora-discover"));
  });
  await t.step("an interface of the previous section is gone", () => {
    const bytes = concat([
      ngShb(true),
      ngIdb(true),
      ngIdb(true),
      ngShb(true),
      ngIdb(true),
    ]);
    const at = bytes.length;
    assert.throws(
      () => decodeCapture(concat([bytes, ngEpb(true, { iface: 1, data: NG_DHCP })])),
      (e: unknown) =>
        e instanceof WireError && e.offset === at + 8 && /interface 1/.test(e.message),
    );
  });
  await t.step("a frame cut by the snap length is marked truncated", () => {
    const file = decodeCapture(concat([
      ngShb(true),
      ngIdb(true, { snap: 100 }),
      ngEpb(true, { data: NG_DHCP.subarray(0, 100), orig: NG_DHCP.length }),
      ngSpb(true, NG_DHCP.subarray(0, 100), NG_DHCP.length),
    ]));
    for (const f of file.frames) {
      assert.equal(f.data.length, 100);
      assert.equal(f.originalLength, NG_DHCP.length);
      assert.equal(f.segment?.truncated, true);
      assert.equal(f.segment?.payload.length, 100 - 42);
    }
  });
  await t.step("a file with only a section header has no frames", () => {
    assert.deepEqual(decodeCapture(ngShb(false)), {
      linkType: 0,
      snapLength: 0,
      nanosecond: false,
      frames: [],
    });
  });
});

Deno.test("decodeCapture() reads classic pcap exactly as decodePcap()", async (t) => {
  const frames = [{ sec: 3, frac: 5, data: udpFrame(Uint8Array.of(1, 2)) }];
  const files: [string, Uint8Array][] = [
    ["little-endian microseconds", buildPcap(frames)],
    ["big-endian microseconds", buildPcap(frames, { little: false })],
    ["little-endian nanoseconds", buildPcap(frames, { nano: true })],
    ["big-endian nanoseconds", buildPcap(frames, { little: false, nano: true })],
    ["dhcp-dora.pcap", Deno.readFileSync(new URL("dhcp-dora.pcap", FIXTURES))],
  ];
  for (const [name, bytes] of files) {
    await t.step(name, () => {
      const expected: PcapFile = decodePcap(bytes);
      assert.ok(expected.frames.length > 0);
      assert.deepEqual(decodeCapture(bytes), expected);
    });
  }
  await t.step("errors are decodePcap's", () => {
    assert.throws(() => decodeCapture(new Uint8Array(3)), /24-byte header/);
    assert.throws(() => decodeCapture(new Uint8Array(24)), /magic is 0x00000000/);
  });
});

Deno.test("decodeCapture() reads dhcp-dora.pcapng (editcap -F pcapng) as decodePcap() reads dhcp-dora.pcap", () => {
  const ng = decodeCapture(Deno.readFileSync(new URL("dhcp-dora.pcapng", FIXTURES)));
  const classic = readPcap("dhcp-dora.pcap");
  assert.equal(classic.frames.length, 5);
  assert.equal(ng.linkType, classic.linkType);
  assert.equal(ng.snapLength, classic.snapLength);
  assert.equal(ng.nanosecond, classic.nanosecond);
  // same timestamps, bytes and segments; only the payload views point into different files
  assert.deepEqual(ng.frames, classic.frames);
});

Deno.test("decodeCapture() rejects malformed pcapng files with the offset", async (t) => {
  const L = true;
  const shb = ngShb(L); // 28 bytes
  const idb = ngIdb(L); // 20 bytes, at 28
  const epb = ngEpb(L, { data: NG_DHCP }); // at 48
  const good = concat([shb, idb, epb]);
  assert.equal(decodeCapture(good).frames.length, 1);
  /** `good` with a little-endian u32 written at `at`. */
  function withU32(at: number, value: number, base = good): Uint8Array {
    const b = base.slice();
    new DataView(b.buffer).setUint32(at, value, true);
    return b;
  }
  const cases: { name: string; bytes: Uint8Array; offset: number; includes: string }[] = [
    // §3.1: a block header is type and length, 8 bytes, plus the trailing length
    {
      name: "block header cut short",
      bytes: good.subarray(0, 56),
      offset: 48,
      includes: "block header is cut short (8 of 12",
    },
    // §4.1 byte-order magic must be 0x1A2B3C4D in either order
    {
      name: "bad byte-order magic",
      bytes: withU32(8, 0x12345678),
      offset: 8,
      includes: "byte-order magic is 0x78563412",
    },
    // §4.1 major version 1
    {
      name: "section version 2",
      bytes: concat([ngShb(L, 2), idb, epb]),
      offset: 12,
      includes: "version 2",
    },
    // §3.1 block total length is a multiple of 4 ...
    {
      name: "block length not a multiple of 4",
      bytes: withU32(32, 21),
      offset: 32,
      includes: "block length 21",
    },
    // ... and at least 12
    {
      name: "block length below 12",
      bytes: withU32(32, 8),
      offset: 32,
      includes: "block length 8",
    },
    // §3.1 the block must fit the file
    {
      name: "block length beyond the end",
      bytes: withU32(52, 4096),
      offset: 52,
      includes: "block length 4096, only",
    },
    {
      name: "file ends inside a block",
      bytes: good.subarray(0, good.length - 4),
      offset: 52,
      includes: "only",
    },
    // §3.1 the trailing length repeats the leading one
    {
      name: "trailer length mismatch",
      bytes: withU32(44, 24),
      offset: 44,
      includes: "trailing block length 24 differs from the leading 20",
    },
    // §4.1 an SHB has magic, version and section length
    {
      name: "section header too short",
      bytes: concat([ngBlock(0x0a0d0d0a, Uint8Array.of(0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0), L)]),
      offset: 4,
      includes: "Section Header Block length 20",
    },
    // §4.2 an IDB has link type, reserved and snap length
    {
      name: "interface block too short",
      bytes: concat([shb, ngBlock(1, new Uint8Array(4), L)]),
      offset: 32,
      includes: "Interface Description Block length 16",
    },
    // §3.5 an option value must fit the block
    {
      name: "IDB option runs past the block",
      bytes: concat([shb, ngBlock(1, concat([new Uint8Array(8), Uint8Array.of(9, 0, 8, 0)]), L)]),
      offset: 28 + 8 + 8 + 2,
      includes: "option 9 length 8, only 0 bytes left",
    },
    // §4.2 if_tsresol is one octet
    {
      name: "if_tsresol of two octets",
      bytes: concat([
        shb,
        ngBlock(1, concat([new Uint8Array(8), Uint8Array.of(9, 0, 2, 0, 9, 9, 0, 0)]), L),
      ]),
      offset: 28 + 8 + 8 + 2,
      includes: "if_tsresol length is 2",
    },
    // §4.2 if_tsoffset is eight octets
    {
      name: "if_tsoffset of four octets",
      bytes: concat([
        shb,
        ngBlock(1, concat([new Uint8Array(8), Uint8Array.of(14, 0, 4, 0, 0, 0, 0, 0)]), L),
      ]),
      offset: 28 + 8 + 8 + 2,
      includes: "if_tsoffset length is 4",
    },
    // §4.3 the interface id must name an IDB of this section
    {
      name: "unknown interface id",
      bytes: withU32(56, 1),
      offset: 56,
      includes: "names interface 1, but the section has 1",
    },
    {
      name: "packet before any interface",
      bytes: concat([shb, epb]),
      offset: 36,
      includes: "names interface 0, but the section has 0",
    },
    // §4.3 an EPB has 20 bytes of fixed fields
    {
      name: "packet block too short",
      bytes: concat([shb, idb, ngBlock(6, new Uint8Array(16), L)]),
      offset: 52,
      includes: "Enhanced Packet Block length 28 is below 32",
    },
    // §4.3 the captured length must fit the block
    {
      name: "captured length past the block",
      bytes: withU32(68, 400),
      offset: 68,
      includes: "captured length 400, only",
    },
    // §4.4 an SPB needs interface 0
    {
      name: "simple packet before any interface",
      bytes: concat([shb, ngSpb(L, NG_DHCP)]),
      offset: 28,
      includes: "Simple Packet Block before any",
    },
    {
      name: "simple packet block too short",
      bytes: concat([shb, idb, ngBlock(3, new Uint8Array(0), L)]),
      offset: 52,
      includes: "Simple Packet Block length 12",
    },
    // §10.1 the OPB interface id is 16 bits
    {
      name: "obsolete packet, unknown interface",
      bytes: concat([shb, idb, ngEpb(L, { iface: 3, data: NG_DHCP, obsolete: true })]),
      offset: 56,
      includes: "Obsolete Packet Block names interface 3",
    },
    // the frame inside is checked as in classic pcap, with file offsets (IPv4 at 48 + 28 + 14)
    {
      name: "IPv4 header length below 20 inside an EPB",
      bytes: concat([shb, idb, ngEpb(L, { data: udpFrame(Uint8Array.of(9), { ihl: 4 }) })]),
      offset: 48 + 28 + 14,
      includes: "header length is 16",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => decodeCapture(c.bytes), (e: unknown) => {
        assert.ok(e instanceof WireError, String(e));
        assert.equal(e.protocol, "pcap");
        assert.equal(e.offset, c.offset, e.message);
        assert.ok(e.message.includes(c.includes), `"${e.message}" lacks "${c.includes}"`);
        return true;
      });
    });
  }
});

/** mulberry32: small, fast, good enough to drive mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("decodeCapture() throws only WireError on mutated pcapng and pcap files", () => {
  const seed = 0x5eed_0c0d;
  const rand = rng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const seeds = [
    sampleNg(true),
    sampleNg(false),
    Deno.readFileSync(new URL("dhcp-dora.pcapng", FIXTURES)),
    buildPcap([{ data: udpFrame(Uint8Array.of(1, 2, 3)) }, { data: NG_TCP }]),
  ];
  // bytes that make lengths, ids and option codes interesting
  const interesting = [
    0,
    1,
    2,
    3,
    4,
    6,
    8,
    9,
    12,
    14,
    0x0a,
    0x0d,
    0x1a,
    0x2b,
    0x3c,
    0x4d,
    0x7f,
    0x80,
    0x89,
    0xff,
  ];
  let decoded = 0;
  const runs = 4000;
  for (let i = 0; i < runs; i++) {
    const b = (seeds[int(seeds.length)] as Uint8Array).slice();
    let bytes: Uint8Array = b;
    for (let r = 1 + int(4); r > 0; r--) {
      switch (int(5)) {
        case 0: // one interesting byte
          b[int(b.length)] = interesting[int(interesting.length)] as number;
          break;
        case 1: { // a bit flip
          const at = int(b.length);
          b[at] = (b[at] as number) ^ (1 << int(8));
          break;
        }
        case 2: { // a random u32 at a 4-aligned offset (lengths, ids, timestamps)
          const at = int(b.length >> 2) * 4;
          if (at + 4 <= b.length) new DataView(b.buffer).setUint32(at, int(2 ** 32));
          break;
        }
        case 3: // a small u32 at a 4-aligned offset, little-endian
          {
            const at = int(b.length >> 2) * 4;
            if (at + 4 <= b.length) new DataView(b.buffer).setUint32(at, int(64), true);
          }
          break;
        default: // truncation
          bytes = b.subarray(0, int(b.length + 1));
      }
    }
    try {
      decodeCapture(bytes);
      decoded++;
    } catch (e) {
      if (!(e instanceof WireError) || e.protocol !== "pcap") {
        assert.fail(`seed ${seed} run ${i}: ${String(e)}\ninput ${toHex(bytes)}`);
      }
      assert.ok(
        e.offset >= 0 && e.offset <= bytes.length,
        `seed ${seed} run ${i}: offset ${e.offset}`,
      );
    }
  }
  // the mutations must not all be fatal, or the loop tests nothing but the first check
  assert.ok(decoded > runs / 20 && decoded < runs, `seed ${seed}: ${decoded} of ${runs} decoded`);
  // random buffers behind a Section Header Block type
  for (let i = 0; i < 1000; i++) {
    const b = new Uint8Array(int(200));
    for (let k = 0; k < b.length; k++) b[k] = int(256);
    b.set([0x0a, 0x0d, 0x0d, 0x0a].slice(0, b.length));
    try {
      decodeCapture(b);
    } catch (e) {
      if (!(e instanceof WireError)) assert.fail(`seed ${seed} random ${i}: ${String(e)}`);
    }
  }
});
