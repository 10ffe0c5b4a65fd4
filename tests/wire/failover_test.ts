/** Tests of the failover codec (draft-ietf-dhc-failover-12 §6, §7, §11.1, §12) against ISC captures. */
import assert from "node:assert/strict";
import { PeerProtocolError, WireError } from "../../lib/errors.ts";
import {
  BindingStatus,
  bindingUpdateOptions,
  buildBndack,
  buildBndupd,
  buildBndupdFromOptions,
  buildConnect,
  buildConnectAck,
  buildContact,
  buildDisconnect,
  buildPoolresp,
  buildState,
  checkFailover,
  decodeFailover,
  encodeFailover,
  FAILOVER_MAX_LENGTH,
  type FailoverMessage,
  FoOpt,
  FrameReader,
  getAssignedIpAddress,
  getBindingAcks,
  getBindingStatus,
  getBindingUpdates,
  getClientHardwareAddress,
  getHashBucketAssignment,
  getMclt,
  getMessage,
  getRejectReason,
  getRelationshipName,
  getServerFlags,
  getServerState,
  getStartTimeOfState,
  isIgnoredMsgType,
  MsgType,
  rejectReasonText,
  ReplayGuard,
  serverStateName,
  signFailover,
  splitFrames,
  validateFailover,
  verifyFailover,
} from "../../lib/wire/failover.ts";
import { decodePcap } from "../../lib/wire/pcap.ts";
import { reassembleFailover } from "../../lib/cli/decode.ts";
import { formatIpv4, formatMac, fromHex, toHex } from "../../lib/wire/ip.ts";

const DIR = new URL("../fixtures/failover/", import.meta.url);

function hexFixture(name: string): Uint8Array {
  const text = Deno.readTextFileSync(new URL(name, DIR)).split("\n").map((l) =>
    l.replace(/#.*$/, "")
  )
    .join("");
  const b = fromHex(text);
  assert.ok(b !== undefined, name);
  return b;
}

function roundTrip(bytes: Uint8Array): FailoverMessage {
  const msg = decodeFailover(bytes);
  assert.equal(toHex(encodeFailover(msg)), toHex(bytes), "encode(decode(b)) equals b");
  assert.deepEqual(decodeFailover(encodeFailover(msg)), msg, "decode(encode(decode(b)))");
  return msg;
}

const optionCodes = (m: FailoverMessage) => m.options.map((o) => o.code);

Deno.test("decodeFailover() reads ISC's CONNECT (connect.hex, tshark frame 8)", () => {
  const m = roundTrip(hexFixture("connect.hex"));
  assert.equal(m.type, MsgType.CONNECT);
  assert.equal(m.time, 1795926416); // Nov 29, 2026 04:26:56 UTC
  assert.equal(m.xid, 0);
  assert.deepEqual(optionCodes(m), [22, 14, 19, 28, 20, 27, 15, 11]);
  assert.equal(getRelationshipName(m), "pair");
  assert.equal(getMclt(m), 300);
  assert.equal(
    toHex(getHashBucketAssignment(m) as Uint8Array),
    "ffffffffffffffffffffffffffffffff00000000000000000000000000000000",
  );
  assert.equal(validateFailover(m), undefined);
});

Deno.test("decodeFailover() reads CONNECTACK, STATE, BNDUPD, BNDACK and UPDREQALL fixtures", async (t) => {
  await t.step("connectack.hex: accept, TLS-reply 0", () => {
    const m = roundTrip(hexFixture("connectack.hex"));
    assert.equal(m.type, MsgType.CONNECTACK);
    assert.deepEqual(optionCodes(m), [22, 14, 19, 28, 20, 26]);
    assert.deepEqual(checkFailover(m), []);
  });
  await t.step("state.hex: RECOVER with STARTUP flag", () => {
    const m = roundTrip(hexFixture("state.hex"));
    assert.equal(m.type, MsgType.STATE);
    assert.equal(getServerState(m), 6);
    assert.equal(serverStateName(6), "RECOVER");
    assert.equal(getServerFlags(m), 1);
    assert.equal(getStartTimeOfState(m), 1795926416);
  });
  await t.step("bndupd-active.hex: b-leases frame 1", () => {
    const m = roundTrip(hexFixture("bndupd-active.hex"));
    assert.equal(m.xid, 0xd1);
    const [b] = getBindingUpdates(m);
    assert.deepEqual(b, {
      assignedIpAddress: 0xc6121064, // 198.18.16.100
      bindingStatus: BindingStatus.ACTIVE,
      clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0, 1]) },
      leaseExpirationTime: 1795926800,
      potentialExpirationTime: 1795927250,
      startTimeOfState: 1795926500,
      clientLastTransactionTime: 1795926500,
    });
    assert.deepEqual(checkFailover(m), []);
  });
  await t.step("bndack-reject.hex: reason 16 with text", () => {
    const m = roundTrip(hexFixture("bndack-reject.hex"));
    assert.deepEqual(getBindingAcks(m), [{
      assignedIpAddress: 0xc6121001,
      rejectReason: 16,
      message: "incoming update is less critical than outgoing update",
    }]);
    assert.equal(rejectReasonText(16), "Less critical binding information");
  });
  await t.step("updreqall.hex: no options", () => {
    const m = roundTrip(hexFixture("updreqall.hex"));
    assert.equal(m.type, MsgType.UPDREQALL);
    assert.deepEqual(m.options, []);
  });
});

/** Option names as tshark's draft-12 summary prints them, written out (not imported). */
const SUMMARY_CODES: Record<string, number> = {
  "assigned-IP-address": 2,
  "binding-status": 3,
  "client-hardware-address": 5,
  "client-last-transaction-time": 6,
  "hash-bucket-assignment": 11,
  "lease-expiration-time": 13,
  "max-unacked-bndupd": 14,
  "MCLT": 15,
  "message": 16,
  "potential-expiration-time": 18,
  "receive-timer": 19,
  "protocol-version": 20,
  "reject-reason": 21,
  "relationship-name": 22,
  "server-flags": 23,
  "server-state": 24,
  "start-time-of-state": 25,
  "TLS-reply": 26,
  "TLS-request": 27,
  "vendor-class-identifier": 28,
};

/** Formats a value the way the summary prints it (only the part before a parenthesis). */
function summaryValue(code: number, d: Uint8Array): string {
  const u32 = () => new DataView(d.buffer, d.byteOffset).getUint32(0);
  switch (code) {
    case 2:
      return formatIpv4(u32());
    case 5:
      return `htype=${d[0]} ${formatMac(d.subarray(1))}`;
    case 11:
      return `0x${toHex(d)}`;
    case 16:
    case 22:
    case 28:
      return `'${new TextDecoder().decode(d)}'`;
    case 23:
      return `0x${(d[0] as number).toString(16).padStart(2, "0")}`;
    case 3:
    case 20:
    case 21:
    case 24:
    case 26:
    case 27:
      return String(d[0]);
    default:
      return String(u32());
  }
}

interface Expected {
  frame: number;
  src: string;
  dst: string;
  typeName: string;
  type: number;
  length: number;
  xid: number;
  clock: string;
  options: [string, string][];
}

for (
  const name of [
    "a1-startup-primary-first",
    "a2-startup-secondary-first",
    "b-leases",
    "dhcp-dora-failover",
    "e-hba-split62",
  ]
) {
  Deno.test(`every failover message of ${name}.pcap matches tshark and re-encodes exactly`, () => {
    const expected = JSON.parse(
      Deno.readTextFileSync(new URL(`${name}.expected.json`, DIR)),
    ) as Expected[];
    const got = reassembleFailover(decodePcap(Deno.readFileSync(new URL(`${name}.pcap`, DIR))));
    assert.equal(got.length, expected.length);
    got.forEach((c, i) => {
      const e = expected[i] as Expected;
      const where = `${name} message ${i} (frame ${e.frame})`;
      assert.equal(c.error, undefined, where);
      assert.deepEqual([c.frame, c.src, c.dst], [e.frame, e.src, e.dst], where);
      const m = roundTrip(c.bytes);
      assert.deepEqual([m.type, c.bytes.length, m.xid], [e.type, e.length, e.xid], where);
      assert.equal(new Date(m.time * 1000).toISOString().slice(11, 19), e.clock, where);
      assert.deepEqual(
        m.options.map((o) => [o.code, summaryValue(o.code, o.data)]),
        e.options.map(([n, v]) => [
          SUMMARY_CODES[n],
          // "FREE(1)" -> "1"; "1795926416(04:26:56, msg+0s)" -> "1795926416"
          /^[A-Z-]+\((\d+)\)$/.exec(v)?.[1] ?? v.replace(/\(.*$/, ""),
        ]),
        where,
      );
      assert.equal(validateFailover(m), undefined, where); // ISC's messages are acceptable
    });
  });
}

Deno.test("decodeFailover() header rules (§6.1)", async (t) => {
  const contact = encodeFailover(buildContact({ time: 1, xid: 2 }));
  await t.step("length field must match the bytes", () => {
    assert.throws(() => decodeFailover(contact.subarray(0, 11)), WireError);
    const long = new Uint8Array(13);
    long.set(contact);
    assert.throws(() => decodeFailover(long), WireError);
  });
  await t.step("length below 12 or above 2048 is a WireError", () => {
    assert.throws(
      () => decodeFailover(new Uint8Array([0, 11, 11, 12, 0, 0, 0, 0, 0, 0, 0, 0])),
      WireError,
    );
  });
  await t.step("payload offset below 12 (the draft's 8) is a WireError", () => {
    const b = contact.slice();
    b[3] = 8;
    assert.throws(() => decodeFailover(b), (e) => e instanceof WireError && e.offset === 3);
  });
  await t.step("additional header bytes are skipped and kept", () => {
    const b = new Uint8Array([
      0,
      22,
      11,
      14,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      2,
      0xaa,
      0xbb,
      0,
      16,
      0,
      2,
      0x68,
      0x69,
    ]);
    b[1] = b.length;
    const m = roundTrip(b);
    assert.equal(toHex(m.additionalHeader), "aabb");
    assert.equal(getMessage(m), "hi");
  });
  await t.step("an option running past the end is a WireError with its offset", () => {
    const b = new Uint8Array([0, 17, 11, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 9, 0x41]);
    assert.throws(() => decodeFailover(b), (e) => e instanceof WireError && e.offset === 12);
  });
  await t.step("undefined type 0-127 throws PeerProtocolError (close the link)", () => {
    const b = contact.slice();
    b[2] = 13;
    assert.throws(
      () => decodeFailover(b),
      (e) => e instanceof PeerProtocolError && e.messageType === 13,
    );
    b[2] = 0;
    assert.throws(() => decodeFailover(b), PeerProtocolError);
  });
  await t.step("type 128-255 decodes and is ignored", () => {
    const b = contact.slice();
    b[2] = 200;
    assert.equal(decodeFailover(b).type, 200);
    assert.ok(isIgnoredMsgType(200));
    assert.ok(!isIgnoredMsgType(MsgType.BNDUPD));
  });
  await t.step("unknown option codes survive re-encoding", () => {
    const m = buildContact({ time: 5, xid: 6 });
    m.options.push({ code: 999, data: new Uint8Array([1, 2, 3]) });
    const back = roundTrip(encodeFailover(m));
    assert.deepEqual(back.options, [{ code: 999, data: new Uint8Array([1, 2, 3]) }]);
    assert.equal(validateFailover(back), undefined);
  });
  await t.step("encode refuses a message above 2048 octets", () => {
    const m = buildDisconnect({ time: 0, xid: 0 }, {
      rejectReason: 6,
      message: "x".repeat(FAILOVER_MAX_LENGTH),
    });
    assert.throws(() => encodeFailover(m), RangeError);
  });
});

Deno.test("buildBndupdFromOptions() encodes the same BNDUPD as buildBndupd() (§7.1, §6.3)", () => {
  const h = { time: 1_800_000_000, xid: 42 };
  const updates = [1, 2, 3].map((n) => ({
    assignedIpAddress: 0xc0000200 + n,
    bindingStatus: BindingStatus.ACTIVE,
    clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0, n]) },
    leaseExpirationTime: 200 + n,
    potentialExpirationTime: 300 + n,
    startTimeOfState: 100,
    clientLastTransactionTime: 100,
  }));
  assert.deepEqual(
    encodeFailover(buildBndupdFromOptions(h, updates.map(bindingUpdateOptions))),
    encodeFailover(buildBndupd(h, updates)),
  );
  assert.throws(() => buildBndupdFromOptions(h, []), RangeError);
});

Deno.test("splitFrames() and FrameReader frame a TCP stream (§6.1)", () => {
  const a = encodeFailover(buildContact({ time: 1, xid: 1 }));
  const b = encodeFailover(
    buildState({ time: 1, xid: 2 }, { serverState: 2, serverFlags: 0, startTimeOfState: 1 }),
  );
  const stream = new Uint8Array([...a, ...b]);
  const r = splitFrames(stream.subarray(0, a.length + 5));
  assert.equal(r.frames.length, 1);
  assert.equal(r.rest.length, 5);
  const reader = new FrameReader();
  const out: Uint8Array[] = [];
  for (let i = 0; i < stream.length; i += 7) out.push(...reader.push(stream.subarray(i, i + 7)));
  assert.deepEqual(out.map(toHex), [toHex(a), toHex(b)]);
  assert.equal(reader.buffered, 0);
  assert.throws(() => splitFrames(new Uint8Array([0, 5, 1])), WireError);
  assert.throws(() => splitFrames(new Uint8Array([0x08, 0x01])), WireError); // 2049
  assert.throws(
    () => new FrameReader().push(new Uint8Array([...a, 0, 3])),
    (e) => e instanceof WireError && e.offset === 12,
  );
});

Deno.test("FrameReader's messages stay intact when the read buffer is reused", () => {
  const a = encodeFailover(buildContact({ time: 1, xid: 1 }));
  const b = encodeFailover(buildContact({ time: 2, xid: 2 }));
  const buf = new Uint8Array(64);
  const reader = new FrameReader();
  buf.set(a);
  buf.set(b.subarray(0, 3), a.length);
  const first = reader.push(buf.subarray(0, a.length + 3));
  buf.fill(0xee);
  buf.set(b.subarray(3));
  const second = reader.push(buf.subarray(0, b.length - 3));
  buf.fill(0xee);
  assert.deepEqual([...first, ...second].map(toHex), [toHex(a), toHex(b)]);
});

/** CONNECT fields of a duet primary, without the hash bucket assignment. */
const CONNECT_FIELDS = {
  relationshipName: "pair",
  maxUnackedBndupd: 10,
  receiveTimer: 30,
  vendorClassIdentifier: "duet",
  tlsRequest: 0,
  mclt: 300,
};

Deno.test("decodeFailover() values kept in leases are copies, not views of the message", () => {
  const bytes = encodeFailover(
    buildBndupd({ time: 1, xid: 1 }, {
      assignedIpAddress: 0xc6120010,
      bindingStatus: BindingStatus.ACTIVE,
      clientIdentifier: Uint8Array.of(1, 2, 3),
      clientHardwareAddress: { htype: 1, chaddr: Uint8Array.of(2, 3, 4, 5, 6, 7) },
    }),
  );
  const msg = decodeFailover(bytes);
  const [update] = getBindingUpdates(msg);
  const hw = getClientHardwareAddress(msg);
  const connect = encodeFailover(
    buildConnect({ time: 1, xid: 2 }, {
      ...CONNECT_FIELDS,
      hashBucketAssignment: new Uint8Array(32).fill(0x0f),
    }),
  );
  const hba = getHashBucketAssignment(decodeFailover(connect));
  bytes.fill(0);
  connect.fill(0);
  assert.deepEqual(update?.clientIdentifier, Uint8Array.of(1, 2, 3));
  assert.deepEqual(hw?.chaddr, Uint8Array.of(2, 3, 4, 5, 6, 7));
  assert.deepEqual(hba, new Uint8Array(32).fill(0x0f));
});

Deno.test("validateFailover() applies the §7 tables with the draft's reject reasons", async (t) => {
  const h = { time: 100, xid: 1 };
  const hba = new Uint8Array(32);
  const connect = () =>
    buildConnect(h, {
      ...CONNECT_FIELDS,
      hashBucketAssignment: hba,
    });
  const without = (m: FailoverMessage, code: number): FailoverMessage => ({
    ...m,
    options: m.options.filter((o) => o.code !== code),
  });
  const reason = (m: FailoverMessage) => validateFailover(m)?.rejectReason;
  await t.step(
    "CONNECT complete is valid (Table 7.8-1)",
    () => assert.equal(reason(connect()), undefined),
  );
  await t.step(
    "CONNECT without protocol-version: 14",
    () => assert.equal(reason(without(connect(), 20)), 14),
  );
  await t.step("CONNECT without MCLT: 5", () => assert.equal(reason(without(connect(), 15)), 5));
  await t.step(
    "CONNECT without relationship-name: 8",
    () => assert.equal(reason(without(connect(), 22)), 8),
  );
  await t.step(
    "CONNECT without receive-timer: 6",
    () => assert.equal(reason(without(connect(), 19)), 6),
  );
  await t.step("CONNECT with a repeated option: 6 (§6.2)", () => {
    const m = connect();
    m.options.push({ code: 15, data: new Uint8Array([0, 0, 0, 1]) });
    assert.equal(reason(m), 6);
  });
  await t.step("CONNECTACK reject must not carry max-unacked-bndupd (Table 7.9-1)", () => {
    const ok = buildConnectAck(h, { relationshipName: "pair", rejectReason: 8, message: "who?" });
    assert.equal(reason(ok), undefined);
    ok.options.push({ code: FoOpt.MAX_UNACKED_BNDUPD, data: new Uint8Array(4) });
    assert.equal(reason(ok), 6);
  });
  await t.step("CONNECTACK accept must not carry MCLT", () => {
    const m = buildConnectAck(h, {
      relationshipName: "p",
      maxUnackedBndupd: 1,
      receiveTimer: 1,
      vendorClassIdentifier: "v",
      tlsReply: 0,
    });
    assert.equal(reason(m), undefined);
    m.options.push({ code: FoOpt.MCLT, data: new Uint8Array(4) });
    assert.equal(reason(m), 6);
  });
  const active = {
    assignedIpAddress: 0xc0000201,
    bindingStatus: BindingStatus.ACTIVE,
    clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0, 1]) },
    leaseExpirationTime: 200,
    potentialExpirationTime: 300,
    startTimeOfState: 100,
    clientLastTransactionTime: 100,
  };
  await t.step(
    "BNDUPD ACTIVE complete is valid (Table 7.1-1)",
    () => assert.equal(reason(buildBndupd(h, active)), undefined),
  );
  await t.step(
    "BNDUPD without binding-status: 3",
    () => assert.equal(reason(without(buildBndupd(h, active), 3)), 3),
  );
  await t.step(
    "BNDUPD ACTIVE without client-hardware-address: 3",
    () => assert.equal(reason(without(buildBndupd(h, active), 5)), 3),
  );
  await t.step(
    "BNDUPD ACTIVE without lease-expiration-time: 3",
    () => assert.equal(reason(without(buildBndupd(h, active), 13)), 3),
  );
  await t.step("BNDUPD RELEASED without client-last-transaction-time: 3", () => {
    const m = without(buildBndupd(h, { ...active, bindingStatus: BindingStatus.RELEASED }), 6);
    assert.equal(reason(m), 3);
  });
  await t.step("BNDUPD ABANDONED with client-hardware-address: 254", () => {
    assert.equal(
      reason(buildBndupd(h, { ...active, bindingStatus: BindingStatus.ABANDONED })),
      254,
    );
  });
  await t.step(
    "BNDUPD FREE with lease-expiration-time: only a warning (ISC sends it), strict rejects",
    () => {
      const m = buildBndupd(h, {
        assignedIpAddress: 1,
        bindingStatus: BindingStatus.FREE,
        leaseExpirationTime: 0,
        startTimeOfState: 0,
      });
      assert.equal(reason(m), undefined);
      assert.equal(checkFailover(m)[0]?.level, "warning");
      assert.ok(validateFailover(m, { strict: true }) !== undefined);
    },
  );
  await t.step("BNDUPD option before assigned-IP-address: 3 (§6.3)", () => {
    const m = buildBndupd(h, active);
    m.options.reverse();
    assert.equal(reason(m), 3);
  });
  await t.step("BNDUPD batching: two transactions, the second bad", () => {
    const m = buildBndupd(h, [active, { ...active, assignedIpAddress: 0xc0000202 }]);
    assert.equal(getBindingUpdates(m).length, 2);
    m.options.splice(m.options.findIndex((o, i) => i > 0 && o.code === 2) + 1, 1); // drop 2nd status
    const bad = validateFailover(m);
    assert.deepEqual([bad?.rejectReason, bad?.transaction], [3, 1]);
    assert.equal(getBindingUpdates(m)[1], undefined);
  });
  await t.step("BNDACK without assigned-IP-address: 3 (Table 7.2-1)", () => {
    assert.equal(reason({ ...buildBndack(h, { assignedIpAddress: 1 }), options: [] }), 3);
  });
  await t.step("BNDACK batching keeps per-address reasons (§6.3)", () => {
    const m = buildBndack(h, [{ assignedIpAddress: 1 }, {
      assignedIpAddress: 2,
      rejectReason: 15,
      message: "old",
    }]);
    assert.deepEqual(getBindingAcks(m), [{ assignedIpAddress: 1 }, {
      assignedIpAddress: 2,
      rejectReason: 15,
      message: "old",
    }]);
    assert.equal(getRejectReason(m), 15);
    assert.equal(reason(m), undefined);
  });
  await t.step("STATE without server-flags: 254 (Table 7.10-1)", () => {
    const m = buildState(h, { serverState: 2, serverFlags: 0, startTimeOfState: 1 });
    assert.equal(reason(without(m, 23)), 254);
  });
  await t.step("STATE with unknown server-state: 254; RECOVER-WAIT (254) is known", () => {
    assert.equal(
      reason(buildState(h, { serverState: 77, serverFlags: 0, startTimeOfState: 1 })),
      254,
    );
    assert.equal(
      reason(buildState(h, { serverState: 254, serverFlags: 0, startTimeOfState: 1 })),
      undefined,
    );
    assert.equal(serverStateName(254), "RECOVER-WAIT");
  });
  await t.step("DISCONNECT without reject-reason: 254 (Table 7.12-1)", () => {
    assert.equal(reason(without(buildDisconnect(h, { rejectReason: 17 }), 21)), 254);
  });
  await t.step("POOLRESP without addresses-transferred: 254 (§7.7.1)", () => {
    assert.equal(reason(buildPoolresp(h, 5)), undefined);
    assert.equal(reason(without(buildPoolresp(h, 5), 1)), 254);
  });
  await t.step("a wrongly sized option is an error (§12)", () => {
    const m = buildState(h, { serverState: 2, serverFlags: 0, startTimeOfState: 1 });
    (m.options[2] as { data: Uint8Array }).data = new Uint8Array(3);
    assert.equal(reason(m), 254);
    assert.equal(getStartTimeOfState(m), undefined);
  });
});

Deno.test("signFailover() / verifyFailover() implement the §11.1 digest", async (t) => {
  const msg = buildBndack({ time: 10, xid: 3 }, { assignedIpAddress: 0xc0000201 });
  const signed = signFailover(msg, "s3cret");
  await t.step("the digest is the first option, type 1, 16 octets", () => {
    const m = decodeFailover(signed);
    assert.equal(m.options[0]?.code, FoOpt.MESSAGE_DIGEST);
    assert.equal(m.options[0]?.data.length, 17);
    assert.equal(getAssignedIpAddress(m), 0xc0000201);
    assert.equal(validateFailover(m), undefined);
  });
  await t.step("the digest is HMAC-MD5 over the message with a zeroed digest", async () => {
    const zeroed = signed.slice();
    zeroed.fill(0, 17, 33);
    const { createHash } = await import("node:crypto");
    // HMAC (RFC 2104) built from MD5 by hand: independent of createHmac.
    const k = new Uint8Array(64);
    k.set(new TextEncoder().encode("s3cret"));
    const ipad = k.map((x) => x ^ 0x36);
    const opad = k.map((x) => x ^ 0x5c);
    const inner = createHash("md5").update(ipad).update(zeroed).digest();
    const outer = createHash("md5").update(opad).update(inner).digest();
    assert.equal(toHex(signed.subarray(17, 33)), toHex(new Uint8Array(outer)));
  });
  await t.step("ok / missing 21 / unexpected 13 / bad 20", () => {
    assert.deepEqual(verifyFailover(signed, "s3cret"), { status: "ok" });
    assert.deepEqual(verifyFailover(signed, new TextEncoder().encode("s3cret")), { status: "ok" });
    const plain = encodeFailover(msg);
    assert.deepEqual(verifyFailover(plain, undefined), { status: "unsigned" });
    assert.deepEqual(verifyFailover(plain, "s3cret"), { status: "missing", rejectReason: 21 });
    assert.deepEqual(verifyFailover(signed, undefined), { status: "unexpected", rejectReason: 13 });
    assert.deepEqual(verifyFailover(signed, "other"), { status: "bad", rejectReason: 20 });
    // With the message decoded by the caller: the same verdicts, the digest still over the bytes.
    assert.deepEqual(verifyFailover(signed, "s3cret", decodeFailover(signed)), { status: "ok" });
    assert.deepEqual(verifyFailover(plain, undefined, decodeFailover(plain)), {
      status: "unsigned",
    });
    const flipped = signed.slice();
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 1;
    assert.deepEqual(verifyFailover(flipped, "s3cret", decodeFailover(flipped)), {
      status: "bad",
      rejectReason: 20,
    });
    const tampered = signed.slice();
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    assert.deepEqual(verifyFailover(tampered, "s3cret"), { status: "bad", rejectReason: 20 });
  });
  await t.step("re-signing bytes replaces the digest", () => {
    assert.equal(toHex(signFailover(signed, "s3cret")), toHex(signed));
  });
});

Deno.test("ReplayGuard enforces §11.1 CONNECT time and xid order", () => {
  const g = new ReplayGuard();
  assert.equal(g.check({ type: MsgType.CONNECT, time: 100, xid: 0 }), "ok");
  assert.equal(g.check({ type: MsgType.STATE, time: 100, xid: 1 }), "ok");
  assert.equal(g.check({ type: MsgType.BNDACK, time: 100, xid: 0 }), "ok"); // reply copies our xid
  assert.equal(g.check({ type: MsgType.BNDUPD, time: 100, xid: 1 }), "xid-not-increasing");
  assert.equal(g.check({ type: MsgType.BNDUPD, time: 100, xid: 5 }), "ok");
  g.newConnection();
  // Times have one-second resolution: a reconnect within the same second is allowed.
  assert.equal(g.check({ type: MsgType.CONNECT, time: 100, xid: 0 }), "ok");
  assert.equal(g.check({ type: MsgType.CONNECT, time: 99, xid: 0 }), "stale-connect");
  assert.equal(g.check({ type: MsgType.CONNECT, time: 101, xid: 0 }), "ok");
  assert.equal(g.lastConnectTime, 101);
  assert.equal(
    new ReplayGuard(500).check({ type: MsgType.CONNECT, time: 499, xid: 0 }),
    "stale-connect",
  );
});

Deno.test("ReplayGuard takes an unseen xid overtaken by a later one, and still refuses a replay", () => {
  // A duet partner numbers a BNDUPD, waits for its commit, and meanwhile sends CONTACT with the
  // next xid (lib/failover/endpoint.ts): 7 arrives after 8 and must not drop the link.
  const g = new ReplayGuard();
  assert.equal(g.check({ type: MsgType.CONNECT, time: 100, xid: 0 }), "ok");
  assert.equal(g.check({ type: MsgType.STATE, time: 100, xid: 1 }), "ok");
  assert.equal(g.check({ type: MsgType.CONTACT, time: 100, xid: 8 }), "ok");
  assert.equal(g.check({ type: MsgType.BNDUPD, time: 100, xid: 7 }), "ok", "overtaken");
  assert.equal(g.check({ type: MsgType.BNDUPD, time: 100, xid: 7 }), "xid-not-increasing");
  assert.equal(g.check({ type: MsgType.CONTACT, time: 100, xid: 8 }), "xid-not-increasing");
  assert.equal(g.check({ type: MsgType.STATE, time: 100, xid: 1 }), "xid-not-increasing");
  // Far behind the newest: refused even if never seen.
  assert.equal(g.check({ type: MsgType.CONTACT, time: 100, xid: 8 + 64 }), "ok");
  assert.equal(g.check({ type: MsgType.BNDUPD, time: 100, xid: 8 }), "xid-not-increasing");
  assert.equal(g.check({ type: MsgType.BNDUPD, time: 100, xid: 9 }), "ok");
});

Deno.test("getters return undefined when absent or malformed (§12)", () => {
  const m = buildContact({ time: 0, xid: 0 });
  assert.equal(getBindingStatus(m), undefined);
  m.options.push({ code: FoOpt.BINDING_STATUS, data: new Uint8Array([9]) });
  m.options.push({ code: FoOpt.CLIENT_HARDWARE_ADDRESS, data: new Uint8Array([0, 1]) });
  assert.equal(getBindingStatus(m), undefined); // 9 is not a binding-status
  assert.equal(getClientHardwareAddress(m), undefined); // htype 0 MUST NOT
});
