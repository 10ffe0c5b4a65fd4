/**
 * Independent check of the failover encoder: one message of every type, with every option it may
 * carry, written as a TCP stream on port 647 and dissected by tshark. No malformed packet and no
 * expert error may appear, and tshark must print the values we encoded.
 */
import assert from "node:assert/strict";
import { requireOrSkip } from "../netns.ts";
import {
  BindingStatus,
  buildBndack,
  buildBndupd,
  buildConnect,
  buildConnectAck,
  buildContact,
  buildDisconnect,
  buildPoolreq,
  buildPoolresp,
  buildState,
  buildUpddone,
  buildUpdreq,
  buildUpdreqall,
  encodeFailover,
  type FailoverMessage,
  ServerState,
  signFailover,
  vendorSpecificOptionsOption,
} from "../../lib/wire/failover.ts";

const TIME = 1795926416; // 2026-11-29 04:26:56 UTC

function messages(): FailoverMessage[] {
  const h = (xid: number) => ({ time: TIME, xid });
  const hba = new Uint8Array(32).fill(0xff, 0, 16);
  const connect = buildConnect(h(1), {
    relationshipName: "pair",
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClassIdentifier: "duet-0.1",
    tlsRequest: 0,
    mclt: 300,
    hashBucketAssignment: hba,
    delayedServiceParameter: 5,
  });
  connect.options.push(vendorSpecificOptionsOption([{ code: 1, data: new Uint8Array([7]) }]));
  return [
    connect,
    buildConnectAck(h(1), {
      relationshipName: "pair",
      maxUnackedBndupd: 10,
      receiveTimer: 30,
      vendorClassIdentifier: "duet-0.1",
      tlsReply: 0,
    }),
    buildConnectAck(h(2), {
      relationshipName: "pair",
      rejectReason: 8,
      message: "unknown partner",
    }),
    buildState(h(3), {
      serverState: ServerState.NORMAL,
      serverFlags: 1,
      startTimeOfState: TIME - 5,
    }),
    buildBndupd(h(4), {
      assignedIpAddress: 0xc0000264, // 192.0.2.100
      bindingStatus: BindingStatus.ACTIVE,
      ipFlags: 0,
      clientIdentifier: new Uint8Array([1, 2, 0, 0, 0, 0, 1]),
      clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0, 1]) },
      leaseExpirationTime: TIME + 300,
      potentialExpirationTime: TIME + 750,
      startTimeOfState: TIME,
      clientLastTransactionTime: TIME,
      ddns: { flags: 0x000f, domainName: new Uint8Array([4, 0x68, 0x6f, 0x73, 0x74, 0]) },
      clientRequestOptions: { magic: 0x63825363, options: new Uint8Array([53, 1, 3, 255]) },
      clientReplyOptions: { magic: 0x63825363, options: new Uint8Array([51, 4, 0, 0, 1, 44, 255]) },
    }),
    buildBndack(h(4), {
      assignedIpAddress: 0xc0000264,
      rejectReason: 15,
      message: "outdated",
    }),
    buildPoolreq(h(5)),
    buildPoolresp(h(5), 42),
    buildUpdreqall(h(6)),
    buildUpdreq(h(7)),
    buildUpddone(h(7)),
    buildContact(h(8)),
    buildDisconnect(h(9), { rejectReason: 17, message: "no traffic" }),
  ];
}

/** A classic pcap of Ethernet/IPv4/TCP frames from 198.51.100.1:40000 to 198.51.100.2:647. */
function writePcap(payloads: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const global = new DataView(new ArrayBuffer(24));
  global.setUint32(0, 0xa1b2c3d4, true);
  global.setUint16(4, 2, true);
  global.setUint16(6, 4, true);
  global.setUint32(16, 65535, true);
  global.setUint32(20, 1, true); // Ethernet
  parts.push(new Uint8Array(global.buffer));
  let seq = 1000;
  payloads.forEach((p, i) => {
    const frame = new Uint8Array(14 + 20 + 20 + p.length);
    const v = new DataView(frame.buffer);
    frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
    v.setUint16(12, 0x0800);
    const ip = 14;
    v.setUint8(ip, 0x45);
    v.setUint16(ip + 2, 40 + p.length);
    v.setUint16(ip + 4, i + 1);
    v.setUint8(ip + 8, 64);
    v.setUint8(ip + 9, 6);
    frame.set([198, 51, 100, 1, 198, 51, 100, 2], ip + 12);
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += v.getUint16(ip + k);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    v.setUint16(ip + 10, ~sum & 0xffff);
    const tcp = ip + 20;
    v.setUint16(tcp, 40000);
    v.setUint16(tcp + 2, 647);
    v.setUint32(tcp + 4, seq);
    v.setUint32(tcp + 8, 1);
    v.setUint8(tcp + 12, 5 << 4);
    v.setUint8(tcp + 13, 0x18); // PSH, ACK
    v.setUint16(tcp + 14, 65535);
    frame.set(p, tcp + 20);
    seq += p.length;
    const rec = new DataView(new ArrayBuffer(16));
    rec.setUint32(0, TIME + i, true);
    rec.setUint32(8, frame.length, true);
    rec.setUint32(12, frame.length, true);
    parts.push(new Uint8Array(rec.buffer), frame);
  });
  const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

async function tsharkAvailable(): Promise<boolean> {
  try {
    const r = await new Deno.Command("tshark", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

Deno.test("tshark dissects every encoded failover message without errors", async (t) => {
  const missing = (await tsharkAvailable())
    ? null
    : "tshark is not installed (apt-get install tshark)";
  if (!requireOrSkip(t, missing)) return;
  const msgs = messages();
  const payloads = msgs.map(encodeFailover);
  payloads.push(signFailover(buildContact({ time: TIME, xid: 10 }), "secret"));
  const dir = await Deno.makeTempDir({ prefix: "duet-failover-tshark-" });
  try {
    const file = `${dir}/all.pcap`;
    await Deno.writeFile(file, writePcap(payloads));
    const run = await new Deno.Command("tshark", {
      args: ["-r", file, "-V", "-Y", "dhcpfo", "-z", "expert,note"],
      stdout: "piped",
      stderr: "piped",
      env: { HOME: dir },
    }).output();
    const out = new TextDecoder().decode(run.stdout);
    assert.ok(run.success, new TextDecoder().decode(run.stderr));
    await t.step("every frame is dissected as DHCP failover", () => {
      assert.equal(out.match(/^DHCP Failover$/gm)?.length, payloads.length);
    });
    await t.step("no malformed packet and no expert error", () => {
      assert.doesNotMatch(out, /Malformed/);
      assert.doesNotMatch(out, /Expert Info \(Error/);
      // tshark 4.0 shows client-identifier and the DDNS name as text, so binary octets (the
      // DNS root label 0) give "Trailing stray characters" warnings: the only ones allowed.
      const warnings = [...out.matchAll(/Expert Info \(Warning\/\w+\): (.*)\]/g)].map((m) => m[1]);
      assert.deepEqual([...new Set(warnings)], ["Trailing stray characters"]);
    });
    await t.step("tshark shows the header of each message as encoded", () => {
      const lengths = [...out.matchAll(/^\s+Message length: (\d+)$/gm)].map((m) => Number(m[1]));
      assert.deepEqual(lengths, payloads.map((p) => p.length));
      const types = [...out.matchAll(/^\s+Message Type: .*\((\d+)\)$/gm)].map((m) => Number(m[1]));
      assert.deepEqual(types, [...msgs.map((m) => m.type), 11]);
    });
    await t.step("tshark shows a sample of option values as encoded", () => {
      for (
        const needle of [
          "Relationship name: pair",
          "Max unacked BNDUPD: 10",
          "Receive timer: 30 seconds",
          "Vendor class: duet-0.1",
          "MCLT: 300",
          "Hash bucket assignment: ffffffffffffffffffffffffffffffff00000000000000000000000000000000",
          "assigned ip address: 192.0.2.100",
          "addresses transferred: 42",
          "Message: outdated",
          "Message: no traffic",
        ]
      ) assert.ok(out.includes(needle), `tshark output lacks "${needle}"`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
