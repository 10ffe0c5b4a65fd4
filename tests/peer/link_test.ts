/**
 * FailoverLink as a pure engine (draft-12 §7.8-§7.12, §8): two links wired back to back with a
 * fake clock, one link's write effects fed to the other as frames. No sockets, no timers.
 */
import assert from "node:assert/strict";
import { hbaFromSplit } from "../../lib/balance/hba.ts";
import {
  FailoverLink,
  type LinkEffect,
  type LinkSettings,
  type LinkTls,
  type LocalState,
} from "../../lib/peer/link.ts";
import {
  assignedIpAddressOption,
  BindingStatus,
  bindingStatusOption,
  bindingUpdateOptions,
  buildBndack,
  buildConnect,
  buildConnectAck,
  buildContact,
  type ConnectParams,
  decodeFailover,
  encodeFailover,
  type FailoverMessage,
  type FailoverOption,
  getBindingAcks,
  getMessage,
  getRejectReason,
  getTlsReply,
  getTlsRequest,
  MsgType,
  RejectReason,
  ReplayGuard,
  ServerState,
  signFailover,
} from "../../lib/wire/failover.ts";

const T0 = 1_800_000_000;

const PRIMARY_STATE: LocalState = {
  serverState: ServerState.NORMAL,
  serverFlags: 0,
  startTimeOfState: T0 - 100,
};
const SECONDARY_STATE: LocalState = {
  serverState: ServerState.RECOVER,
  serverFlags: 0,
  startTimeOfState: T0 - 50,
};

function settings(role: "primary" | "secondary", extra: Partial<LinkSettings> = {}): LinkSettings {
  return {
    role,
    relationship: "pair",
    mclt: role === "primary" ? 300 : null,
    hba: role === "primary" ? hbaFromSplit(128) : null,
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClass: "duet-test",
    secret: null,
    maxClockSkew: 0,
    handshakeTimeout: 10,
    ...extra,
  };
}

function link(role: "primary" | "secondary", extra: Partial<LinkSettings> = {}): FailoverLink {
  return new FailoverLink(settings(role, extra), {
    initiated: role === "primary",
    replay: new ReplayGuard(),
  });
}

/** A short, comparable description of effects: "write:CONNECT", "up", "close", "log:info". */
function kinds(effects: LinkEffect[]): string[] {
  return effects.map((e) => {
    if (e.kind === "write") return `write:${typeName(e.type)}`;
    if (e.kind === "log") return `log:${e.level}`;
    return e.kind;
  });
}

function typeName(type: number): string {
  const found = Object.entries(MsgType).find(([, v]) => v === type);
  return found ? found[0] : `type${type}`;
}

function writes(effects: LinkEffect[]): FailoverMessage[] {
  return effects.flatMap((e) => e.kind === "write" ? [decodeFailover(e.bytes)] : []);
}

function closeOf(effects: LinkEffect[]): Extract<LinkEffect, { kind: "close" }> | undefined {
  return effects.find((e): e is Extract<LinkEffect, { kind: "close" }> => e.kind === "close");
}

/** Feeds every write in `from` to `to` as a frame at `now`; returns `to`'s effects. */
function deliver(to: FailoverLink, from: LinkEffect[], now: number): LinkEffect[] {
  const out: LinkEffect[] = [];
  for (const e of from) {
    if (e.kind === "write") out.push(...to.input({ kind: "frame", now, bytes: e.bytes }));
  }
  return out;
}

/** Runs the full handshake at T0; returns both links, up. */
function upPair(
  pExtra: Partial<LinkSettings> = {},
  sExtra: Partial<LinkSettings> = {},
): { p: FailoverLink; s: FailoverLink } {
  const p = link("primary", pExtra);
  const s = link("secondary", sExtra);
  s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
  const connect = p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
  const ackState = deliver(s, connect, T0);
  const pState = deliver(p, ackState, T0);
  deliver(s, pState, T0);
  assert.equal(p.phase, "up");
  assert.equal(s.phase, "up");
  return { p, s };
}

function connectParams(extra: Partial<ConnectParams> = {}): ConnectParams {
  return {
    relationshipName: "pair",
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClassIdentifier: "test-primary",
    tlsRequest: 0,
    mclt: 300,
    hashBucketAssignment: hbaFromSplit(128),
    ...extra,
  };
}

/** A secondary, opened at T0, fed one CONNECT frame; returns its effects. */
function secondaryGets(
  bytes: Uint8Array,
  sExtra: Partial<LinkSettings> = {},
  now = T0,
): { s: FailoverLink; effects: LinkEffect[] } {
  const s = link("secondary", sExtra);
  assert.deepEqual(s.input({ kind: "open", now: T0, local: SECONDARY_STATE }), []);
  return { s, effects: s.input({ kind: "frame", now, bytes }) };
}

/** Asserts a rejecting CONNECTACK (copying xid 0), a warning, then a close marked rejected. */
function assertRejected(effects: LinkEffect[], reason: number): void {
  assert.deepEqual(kinds(effects), ["write:CONNECTACK", "log:warn", "close"]);
  const [ack] = writes(effects);
  assert.equal(getRejectReason(ack!), reason);
  assert.equal(ack!.xid, 0, "CONNECTACK copies the CONNECT xid (§7.9.1)");
  assert.equal(closeOf(effects)?.rejected, true);
  const log = effects[1] as Extract<LinkEffect, { kind: "log" }>;
  assert.equal(log.msg, "Rejected failover CONNECT");
  assert.match(String(log.fields?.reason), new RegExp(`^${reason} `));
}

Deno.test("FailoverLink handshake: primary sends CONNECT, secondary CONNECTACK then STATE, up after STATE", () => {
  const p = link("primary");
  const s = link("secondary");
  // §7.8.2: the secondary sends nothing before CONNECT.
  assert.deepEqual(s.input({ kind: "open", now: T0, local: SECONDARY_STATE }), []);
  assert.equal(s.phase, "await-connect");
  // §7.8.1: CONNECT is the primary's first message.
  const connect = p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
  assert.deepEqual(kinds(connect), ["write:CONNECT"]);
  assert.equal(p.phase, "await-connectack");
  const connectXid = writes(connect)[0]!.xid;

  // §7.9.1: CONNECTACK copies the xid, and STATE follows at once.
  const ackState = deliver(s, connect, T0 + 0.1);
  assert.deepEqual(kinds(ackState), ["write:CONNECTACK", "write:STATE"]);
  assert.equal(writes(ackState)[0]!.xid, connectXid);
  assert.equal(s.phase, "await-state");

  // The primary answers CONNECTACK with STATE; not up before the partner's STATE (§8.3).
  const ack = ackState.filter((e) => e.kind === "write" && e.type === MsgType.CONNECTACK);
  const afterAck = deliver(p, ack, T0 + 0.2);
  assert.deepEqual(kinds(afterAck), ["write:STATE"]);
  assert.equal(p.phase, "await-state");
  const state = ackState.filter((e) => e.kind === "write" && e.type === MsgType.STATE);
  const pUp = deliver(p, state, T0 + 0.2);
  assert.deepEqual(kinds(pUp), ["log:info", "up"]);
  assert.equal(p.partner?.serverState, ServerState.RECOVER);
  assert.equal(p.partner?.vendorClass, "duet-test");

  const sUp = deliver(s, afterAck, T0 + 0.3);
  assert.deepEqual(kinds(sUp), ["log:info", "up"]);
  const up = sUp[1] as Extract<LinkEffect, { kind: "up" }>;
  assert.equal(up.partner.serverState, ServerState.NORMAL);
  assert.equal(up.partner.mclt, 300, "the secondary learns the MCLT from CONNECT (§7.8.2 step 7)");
  assert.deepEqual(up.partner.hba, hbaFromSplit(128));
  assert.equal(up.partner.relationship, "pair");
});

Deno.test("FailoverLink handshake with a shared secret on both sides signs every message and comes up", () => {
  const secret = new TextEncoder().encode("s3cret");
  const { p, s } = upPair({ secret }, { secret });
  assert.equal(p.partner?.serverState, ServerState.RECOVER);
  assert.equal(s.partner?.serverState, ServerState.NORMAL);
});

Deno.test("FailoverLink ignores a CONNECTACK whose xid is not the CONNECT's (§7.9.2)", () => {
  const p = link("primary");
  const connect = writes(p.input({ kind: "open", now: T0, local: PRIMARY_STATE }))[0]!;
  const ack = (xid: number) =>
    encodeFailover(buildConnectAck({ time: T0, xid }, {
      relationshipName: "pair",
      maxUnackedBndupd: 10,
      receiveTimer: 30,
      vendorClassIdentifier: "other",
      tlsReply: 0,
    }));
  assert.deepEqual(p.input({ kind: "frame", now: T0, bytes: ack(connect.xid + 7) }), []);
  assert.equal(p.phase, "await-connectack");
  assert.deepEqual(kinds(p.input({ kind: "frame", now: T0, bytes: ack(connect.xid) })), [
    "write:STATE",
  ]);
  assert.equal(p.phase, "await-state");
});

Deno.test("FailoverLink secondary rejects a bad CONNECT with the §7.8.2 reason", async (t) => {
  const connect = (extra: Partial<ConnectParams> = {}, time = T0) =>
    encodeFailover(buildConnect({ time, xid: 0 }, connectParams(extra)));

  await t.step("another relationship name -> 8 invalid failover partner (step 5)", () => {
    assertRejected(secondaryGets(connect({ relationshipName: "other" })).effects, 8);
  });
  await t.step("protocol version 2 -> 14 protocol version mismatch (step 2)", () => {
    assertRejected(secondaryGets(connect({ protocolVersion: 2 })).effects, 14);
  });
  await t.step("MCLT 600 against a configured 300 -> 5 invalid MCLT (step 7)", () => {
    assertRejected(secondaryGets(connect({ mclt: 600 }), { mclt: 300 }).effects, 5);
  });
  await t.step("MCLT 600 with none configured is accepted and learned (step 7)", () => {
    const { s, effects } = secondaryGets(connect({ mclt: 600 }));
    assert.deepEqual(kinds(effects), ["write:CONNECTACK", "write:STATE"]);
    assert.equal(getRejectReason(writes(effects)[0]!), undefined);
    assert.equal(s.phase, "await-state");
  });
  await t.step("another hash-bucket-assignment than configured -> 18 (step 8, §12.21)", () => {
    assertRejected(
      secondaryGets(connect({ hashBucketAssignment: hbaFromSplit(128) }), {
        hba: hbaFromSplit(64),
      }).effects,
      18,
    );
  });
  await t.step("the configured hash-bucket-assignment is accepted and kept (step 8)", () => {
    const { effects } = secondaryGets(connect({ hashBucketAssignment: hbaFromSplit(64) }), {
      hba: hbaFromSplit(64),
    });
    assert.deepEqual(kinds(effects), ["write:CONNECTACK", "write:STATE"]);
    assert.equal(getRejectReason(writes(effects)[0]!), undefined);
  });
  await t.step("clock 100 s ahead with max-clock-skew 10 -> 4 time mismatch (step 6)", () => {
    assertRejected(secondaryGets(connect({}, T0 + 100), { maxClockSkew: 10 }).effects, 4);
  });
  await t.step("clock 100 s ahead with max-clock-skew 0 (no limit) is accepted (§5.10)", () => {
    const { effects } = secondaryGets(connect({}, T0 + 100));
    assert.deepEqual(kinds(effects), ["write:CONNECTACK", "write:STATE"]);
  });
  await t.step("TLS required -> 9 TLS not supported, TLS-reply 0 (step 3 table)", () => {
    const { effects } = secondaryGets(connect({ tlsRequest: 2 }));
    assertRejected(effects, 9);
    assert.equal(getTlsReply(writes(effects)[0]!), 0);
  });
  await t.step("TLS desired -> accepted with TLS-reply 0 (step 3 table)", () => {
    const { effects } = secondaryGets(connect({ tlsRequest: 1 }));
    assert.deepEqual(kinds(effects), ["write:CONNECTACK", "write:STATE"]);
    assert.equal(getTlsReply(writes(effects)[0]!), 0);
  });
  const secret = new TextEncoder().encode("right");
  await t.step("no digest when a secret is configured -> 21 missing digest (§11.1)", () => {
    assertRejected(secondaryGets(connect(), { secret }).effects, 21);
  });
  await t.step("a digest when no secret is configured -> 13 digest not configured", () => {
    const signed = signFailover(buildConnect({ time: T0, xid: 0 }, connectParams()), secret);
    assertRejected(secondaryGets(signed).effects, 13);
  });
  await t.step("a digest with another secret -> 20 digest failed to compare (step 4)", () => {
    const signed = signFailover(buildConnect({ time: T0, xid: 0 }, connectParams()), "wrong");
    assertRejected(secondaryGets(signed, { secret }).effects, 20);
  });
  await t.step("a digest with the same secret is accepted", () => {
    const signed = signFailover(buildConnect({ time: T0, xid: 0 }, connectParams()), secret);
    assert.deepEqual(kinds(secondaryGets(signed, { secret }).effects), [
      "write:CONNECTACK",
      "write:STATE",
    ]);
  });
});

Deno.test("FailoverLink primary reports the secondary's rejection, even signed with another secret", () => {
  const p = link("primary", { secret: new TextEncoder().encode("one") });
  const s = link("secondary", { secret: new TextEncoder().encode("two") });
  s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
  const rejected = deliver(s, p.input({ kind: "open", now: T0, local: PRIMARY_STATE }), T0);
  assert.equal(getRejectReason(writes(rejected)[0]!), 20);
  const seen = deliver(p, rejected, T0);
  assert.deepEqual(kinds(seen), ["log:error", "close"]);
  const log = seen[0] as Extract<LinkEffect, { kind: "log" }>;
  assert.equal(log.msg, "Failover partner rejected our CONNECT");
  assert.match(String(log.fields?.reason), /^20 /);
  assert.equal(log.fields?.unauthenticated, "digest bad");
  assert.equal(closeOf(seen)?.rejected, true);
  assert.equal(p.phase, "closed");
});

Deno.test("FailoverLink primary disconnects on a CONNECTACK whose clock is too far off (4)", () => {
  const p = link("primary", { maxClockSkew: 5 });
  const connect = writes(p.input({ kind: "open", now: T0, local: PRIMARY_STATE }))[0]!;
  const ack = encodeFailover(buildConnectAck({ time: T0 + 60, xid: connect.xid }, {
    relationshipName: "pair",
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClassIdentifier: "other",
    tlsReply: 0,
  }));
  const effects = p.input({ kind: "frame", now: T0, bytes: ack });
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
  assert.equal(getRejectReason(writes(effects)[0]!), 4);
});

Deno.test("FailoverLink primary with a secret disconnects on an unsigned CONNECTACK (21) and says so", () => {
  // ISC dhcpd 4.4.3 has no message digests: it answers a signed CONNECT with an unsigned
  // CONNECTACK. The primary refuses it (§11.1) with a warning an operator sees, not only a
  // DISCONNECT on the wire.
  const p = link("primary", { secret: new TextEncoder().encode("s3cret") });
  const connect = writes(p.input({ kind: "open", now: T0, local: PRIMARY_STATE }))[0]!;
  const ack = encodeFailover(buildConnectAck({ time: T0, xid: connect.xid }, {
    relationshipName: "pair",
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClassIdentifier: "isc-4.4.3-P1",
    tlsReply: 0,
  }));
  const effects = p.input({ kind: "frame", now: T0, bytes: ack });
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
  assert.equal(getRejectReason(writes(effects)[0]!), 21);
  const log = effects[1] as Extract<LinkEffect, { kind: "log" }>;
  assert.equal(log.msg, "Failover handshake failed: sent DISCONNECT");
  assert.equal(log.fields?.reason, "21 Missing message digest");
  assert.equal(p.phase, "closed");
});

Deno.test("FailoverLink answers a second CONNECT on an up link with DISCONNECT 7", () => {
  const { s } = upPair();
  const again = encodeFailover(buildConnect({ time: T0 + 5, xid: 0 }, connectParams()));
  const effects = s.input({ kind: "frame", now: T0 + 5, bytes: again });
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
  assert.equal(getRejectReason(writes(effects)[0]!), 7);
  assert.equal(s.phase, "closed");
  // A closed link ignores everything.
  assert.deepEqual(s.input({ kind: "tick", now: T0 + 100 }), []);
});

Deno.test("FailoverLink sends CONTACT after a third of the partner's receive timer of silence (§7.9.1, §8.3)", () => {
  // The secondary's receive-timer is 9, so the primary must talk every 3 s; the secondary,
  // told 30 by the primary, every 10 s.
  const { p, s } = upPair({}, { receiveTimer: 9 });
  assert.deepEqual(p.input({ kind: "tick", now: T0 + 2.9 }), []);
  const contact = p.input({ kind: "tick", now: T0 + 3 });
  assert.deepEqual(kinds(contact), ["write:CONTACT"]);
  // The CONTACT is consumed silently and resets the secondary's tReceive.
  assert.deepEqual(deliver(s, contact, T0 + 3), []);
  assert.deepEqual(p.input({ kind: "tick", now: T0 + 5.9 }), [], "no CONTACT before 3 s again");
  assert.deepEqual(kinds(p.input({ kind: "tick", now: T0 + 6 })), ["write:CONTACT"]);
  assert.deepEqual(s.input({ kind: "tick", now: T0 + 9.9 }), []);
  assert.deepEqual(kinds(s.input({ kind: "tick", now: T0 + 10 })), ["write:CONTACT"]);
});

Deno.test("FailoverLink drops the link with DISCONNECT 17 when tReceive expires (§8.3)", () => {
  const { p } = upPair();
  // Sending CONTACTs does not reset tReceive; only receiving does.
  assert.deepEqual(kinds(p.input({ kind: "tick", now: T0 + 10 })), ["write:CONTACT"]);
  assert.deepEqual(kinds(p.input({ kind: "tick", now: T0 + 20 })), ["write:CONTACT"]);
  assert.deepEqual(p.input({ kind: "tick", now: T0 + 29.5 }), []);
  const effects = p.input({ kind: "tick", now: T0 + 30 });
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
  assert.equal(getRejectReason(writes(effects)[0]!), 17);
  assert.equal(closeOf(effects)?.rejected, false);
  assert.equal(p.phase, "closed");
});

Deno.test("FailoverLink gives up a handshake after handshakeTimeout (§7.8.2)", async (t) => {
  await t.step("secondary without a CONNECT closes, sending nothing", () => {
    const s = link("secondary", { handshakeTimeout: 10 });
    s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
    assert.deepEqual(s.input({ kind: "tick", now: T0 + 9.9 }), []);
    const effects = s.input({ kind: "tick", now: T0 + 10 });
    assert.deepEqual(kinds(effects), ["log:warn", "close"]);
    assert.equal(closeOf(effects)?.reason, "No CONNECT within 10 s");
  });
  await t.step("primary without a CONNECTACK closes", () => {
    const p = link("primary", { handshakeTimeout: 10 });
    p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
    assert.deepEqual(p.input({ kind: "tick", now: T0 + 9.9 }), []);
    const effects = p.input({ kind: "tick", now: T0 + 10 });
    assert.deepEqual(kinds(effects), ["log:warn", "close"]);
    assert.equal(closeOf(effects)?.reason, "No CONNECTACK within 10 s");
  });
  await t.step(
    "a partner that sends CONTACT instead of its STATE is dropped at the same deadline",
    () => {
      // A slow handshake: CONNECT accepted, then only keepalives; tReceive never fires.
      const s = link("secondary", { handshakeTimeout: 10 });
      s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
      s.input({
        kind: "frame",
        now: T0,
        bytes: encodeFailover(buildConnect({ time: T0, xid: 0 }, connectParams())),
      });
      assert.equal(s.phase, "await-state");
      for (let k = 1; k < 10; k++) {
        const e = s.input({ kind: "frame", now: T0 + k, bytes: bare(MsgType.CONTACT, T0 + k, k) });
        assert.deepEqual(e, []);
      }
      const effects = s.input({ kind: "tick", now: T0 + 10 });
      assert.deepEqual(kinds(effects), ["log:warn", "close"]);
      assert.equal(closeOf(effects)?.reason, "No STATE within 10 s");
    },
  );
});

/** A bare 12-octet message of any type (no options). */
function bare(type: number, time: number, xid: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint16(0, 12);
  b[2] = type;
  b[3] = 12;
  v.setUint32(4, time);
  v.setUint32(8, xid);
  return b;
}

Deno.test("FailoverLink message types: undefined 0-127 close the link, 128-255 are ignored (§6.1)", async (t) => {
  for (const type of [0, 13, 127]) {
    await t.step(`type ${type} on an up link -> DISCONNECT and close`, () => {
      const { s } = upPair();
      const effects = s.input({ kind: "frame", now: T0 + 1, bytes: bare(type, T0 + 1, 100) });
      assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
      assert.equal(s.phase, "closed");
    });
  }
  await t.step("type 50 before CONNECT -> DISCONNECT and close", () => {
    const { effects } = secondaryGets(bare(50, T0, 0));
    assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
  });
  for (const type of [128, 200, 255]) {
    await t.step(`type ${type} is ignored, the link stays up`, () => {
      const { s } = upPair();
      assert.deepEqual(s.input({ kind: "frame", now: T0 + 1, bytes: bare(type, T0, 100) }), []);
      assert.equal(s.phase, "up");
    });
  }
  await t.step("type 200 before CONNECT is ignored, CONNECT still accepted", () => {
    const { s, effects } = secondaryGets(bare(200, T0, 0));
    assert.deepEqual(effects, []);
    const connect = encodeFailover(buildConnect({ time: T0, xid: 0 }, connectParams()));
    assert.deepEqual(kinds(s.input({ kind: "frame", now: T0, bytes: connect })), [
      "write:CONNECTACK",
      "write:STATE",
    ]);
  });
});

Deno.test("FailoverLink smooths the partner's clock offset and resets it on a jump (§5.10)", () => {
  const { s } = upPair();
  assert.equal(s.skew, 0, "the handshake at equal clocks gives 0");
  const contact = (xid: number, delta: number, now: number) =>
    s.input({
      kind: "frame",
      now,
      bytes: encodeFailover(buildContact({ time: now + delta, xid })),
    });
  // The primary's xids so far: CONNECT 0, STATE 1.
  assert.deepEqual(contact(10, 10, T0 + 1), []);
  assert.ok(Math.abs((s.skew ?? NaN) - 1) < 1e-9, `0.9 * 0 + 0.1 * 10 = 1, got ${s.skew}`);
  contact(11, 10, T0 + 2);
  assert.ok(Math.abs((s.skew ?? NaN) - 1.9) < 1e-9, `0.9 * 1 + 0.1 * 10 = 1.9, got ${s.skew}`);
  contact(12, 200, T0 + 3);
  assert.equal(s.skew, 200, "a change of more than 60 s replaces the estimate");
  assert.equal(s.phase, "up");
});

Deno.test("FailoverLink passes messages after up to the failover layer and STATE updates the partner", () => {
  const { p, s } = upPair();
  const changed = s.input({
    kind: "state",
    now: T0 + 1,
    local: { serverState: ServerState.NORMAL, serverFlags: 0, startTimeOfState: T0 + 1 },
  });
  assert.deepEqual(kinds(changed), ["write:STATE"]);
  const got = deliver(p, changed, T0 + 1);
  assert.deepEqual(kinds(got), ["message"]);
  assert.equal(p.partner?.serverState, ServerState.NORMAL);
  // Without a shared secret there is no replay check (§11.1 protects signed messages).
  assert.deepEqual(kinds(deliver(p, changed, T0 + 2)), ["message"]);
});

Deno.test("FailoverLink sends STATE once up only when the state differs from the last one sent", () => {
  // The endpoint hands over its state after every connect (endpoint.ts #onUp): the state of
  // the handshake's STATE again is no news; a state entered since is (§7.10).
  const { s } = upPair();
  assert.deepEqual(kinds(s.input({ kind: "state", now: T0 + 1, local: SECONDARY_STATE })), []);
  const paused = { serverState: ServerState.PAUSED, serverFlags: 0, startTimeOfState: T0 + 1 };
  assert.deepEqual(kinds(s.input({ kind: "state", now: T0 + 1, local: paused })), ["write:STATE"]);
  assert.deepEqual(kinds(s.input({ kind: "state", now: T0 + 2, local: paused })), []);
});

Deno.test("FailoverLink with a shared secret refuses a replayed (non-increasing) xid (§11.1)", () => {
  const secret = new TextEncoder().encode("k");
  const { p, s } = upPair({ secret }, { secret });
  const changed = s.input({
    kind: "state",
    now: T0 + 1,
    local: { serverState: ServerState.NORMAL, serverFlags: 0, startTimeOfState: T0 + 1 },
  });
  assert.deepEqual(kinds(deliver(p, changed, T0 + 1)), ["message"]);
  const replay = deliver(p, changed, T0 + 2);
  assert.deepEqual(kinds(replay), ["write:DISCONNECT", "log:warn", "close"]);
});

/** A BNDUPD from the primary with `n` transactions built by `tx`, encoded (signed with a key). */
function bndupd(
  xid: number,
  tx: (i: number) => FailoverOption[],
  n: number,
  secret?: Uint8Array,
): Uint8Array {
  const m: FailoverMessage = {
    type: MsgType.BNDUPD,
    time: T0,
    xid,
    additionalHeader: new Uint8Array(0),
    options: Array.from({ length: n }, (_, i) => tx(i)).flat(),
  };
  return secret ? signFailover(m, secret) : encodeFailover(m);
}

const ACTIVE_TX = (i: number): FailoverOption[] =>
  bindingUpdateOptions({
    assignedIpAddress: 0xc0000200 + i,
    bindingStatus: BindingStatus.ACTIVE,
    clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0, i]) },
    leaseExpirationTime: T0 + 300,
    potentialExpirationTime: T0 + 600,
    startTimeOfState: T0,
    clientLastTransactionTime: T0,
  });

Deno.test("FailoverLink drops a partner whose BNDUPD breaks the link's rules, with DISCONNECT and a reason", async (t) => {
  // Each reached the failover layer before and made it store a bad lease or fail to encode
  // its BNDACK (found by the fuzzer: tests/fixtures/fuzz/failover/).
  const cases: [string, Uint8Array, RegExp][] = [
    // §6.3: one BNDACK (2048 octets, §6.1) must answer every transaction: 254 cannot fit.
    [
      "254 bare assigned-IP-addresses",
      bndupd(7, (i) => [assignedIpAddressOption(0xc0000200 + i)], 254),
      /BNDUPD carries 254 binding updates: one BNDACK can answer at most 156/,
    ],
    // §12.5 / RFC 2131 §2: chaddr is 16 octets, so htype plus address is at most 17.
    [
      "a 20-octet client-hardware-address",
      bndupd(7, (i) =>
        bindingUpdateOptions({
          assignedIpAddress: 0xc0000200 + i,
          bindingStatus: BindingStatus.ACTIVE,
          clientHardwareAddress: { htype: 1, chaddr: new Uint8Array(19) },
        }), 1),
      /client-hardware-address is 20 octets, at most 17/,
    ],
    ["no assigned-IP-address", bndupd(7, () => [bindingStatusOption(2)], 1), /without assigned-IP/],
    [
      "an assigned-IP-address of 3 octets",
      bndupd(7, () => [{ code: 2, data: new Uint8Array(3) }, bindingStatusOption(2)], 1),
      /not 4 octets/,
    ],
  ];
  for (const [name, frame, reason] of cases) {
    await t.step(name, () => {
      const { s } = upPair();
      const effects = s.input({ kind: "frame", now: T0 + 1, bytes: frame });
      assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"], name);
      assert.match(getMessage(writes(effects)[0]!) ?? "", reason);
      assert.match(closeOf(effects)?.reason ?? "", reason);
    });
  }
  await t.step("156 transactions with a status fit one BNDACK and pass", () => {
    const { s } = upPair();
    const frame = bndupd(
      7,
      (i) => [assignedIpAddressOption(0xc0000200 + i), bindingStatusOption(99)],
      156,
    );
    assert.deepEqual(kinds(s.input({ kind: "frame", now: T0 + 1, bytes: frame })), ["message"]);
  });
});

Deno.test("FailoverLink drops a partner that sends more BNDUPDs than max-unacked-bndupd without waiting (§8.4)", () => {
  const { s } = upPair({}, { maxUnackedBndupd: 3 });
  for (let xid = 10; xid < 13; xid++) {
    const e = s.input({ kind: "frame", now: T0 + 1, bytes: bndupd(xid, ACTIVE_TX, 1) });
    assert.deepEqual(kinds(e), ["message"], `BNDUPD ${xid}`);
  }
  // A BNDACK for one of them makes room for exactly one more.
  const ack = buildBndack({ time: T0 + 1, xid: 11 }, { assignedIpAddress: 0xc0000200 });
  assert.deepEqual(kinds(s.input({ kind: "send", now: T0 + 1, message: ack })), ["write:BNDACK"]);
  assert.deepEqual(
    kinds(s.input({ kind: "frame", now: T0 + 1, bytes: bndupd(13, ACTIVE_TX, 1) })),
    [
      "message",
    ],
  );
  const flood = s.input({ kind: "frame", now: T0 + 1, bytes: bndupd(14, ACTIVE_TX, 1) });
  assert.deepEqual(kinds(flood), ["write:DISCONNECT", "log:warn", "close"]);
  assert.match(getMessage(writes(flood)[0]!) ?? "", /more than 3 BNDUPD messages without waiting/);
});

Deno.test("FailoverLink signs a BNDACK that the digest pushes past 2048 octets by dropping message texts from the end (§7.2.1)", () => {
  const secret = new TextEncoder().encode("k");
  const { s } = upPair({ secret }, { secret });
  // 140 rejects with a 1-octet message each: 12 + 140 * 18 = 2532 octets, over the limit
  // unsigned; the first texts must stay, the last ones go.
  const acks = Array.from({ length: 140 }, (_, i) => ({
    assignedIpAddress: 0xc0000200 + i,
    rejectReason: RejectReason.MISSING_BINDING_INFORMATION,
    message: "x",
  }));
  const msg = buildBndack({ time: T0 + 1, xid: 3 }, acks.slice(0, 112)); // 2028 octets unsigned
  assert.equal(encodeFailover(msg).length, 2028);
  const effects = s.input({ kind: "send", now: T0 + 1, message: msg });
  assert.deepEqual(kinds(effects), ["write:BNDACK"]);
  const bytes = (effects[0] as Extract<LinkEffect, { kind: "write" }>).bytes;
  assert.ok(bytes.length <= 2048, `${bytes.length} octets`);
  const sent = decodeFailover(bytes);
  assert.equal(getBindingAcks(sent).length, 112, "every binding is still answered");
  assert.equal(getBindingAcks(sent)[0]?.message, "x", "the first texts are kept");
  assert.equal(getBindingAcks(sent)[111]?.message, undefined, "the last text went");
});

Deno.test("FailoverLink closes, not throws, when a message of its own cannot be encoded", () => {
  const { s } = upPair();
  const huge: FailoverMessage = {
    type: MsgType.UPDREQ,
    time: T0,
    xid: 9,
    additionalHeader: new Uint8Array(0),
    options: [{ code: 16, data: new Uint8Array(3000) }],
  };
  const effects = s.input({ kind: "send", now: T0 + 1, message: huge });
  assert.deepEqual(kinds(effects), ["log:error", "close"]);
});

/** A CONNECT with this TLS-request (undefined: none), from the primary, encoded. */
function connectWithTls(tlsRequest: number | undefined): Uint8Array {
  return encodeFailover(buildConnect({ time: T0, xid: 0 }, connectParams({ tlsRequest })));
}

const TLS_SERVER = { require: true, cert: "c", key: "k", ca: null, serverName: null };
const TLS_CLIENT = { require: true, cert: null, key: null, ca: "ca", serverName: null };

Deno.test("FailoverLink secondary answers TLS-request by the §7.8.2 step 3 table", async (t) => {
  // [name, this server's TLS, CONNECT's TLS-request, expected effects, reject reason, TLS-reply]
  const cells: [
    string,
    LinkTls | null,
    number | undefined,
    string[],
    number | null,
    number,
  ][] = [
    ["0 / no TLS: no TLS used", null, 0, ["write:CONNECTACK", "write:STATE"], null, 0],
    [
      "1 / no TLS: primary desires, secondary doesn't",
      null,
      1,
      ["write:CONNECTACK", "write:STATE"],
      null,
      0,
    ],
    ["2 / no TLS: reject 9", null, 2, ["write:CONNECTACK", "log:warn", "close"], 9, 0],
    [
      "0 / TLS required: reject 11",
      TLS_SERVER,
      0,
      ["write:CONNECTACK", "log:warn", "close"],
      11,
      1,
    ],
    [
      "absent (ISC) / TLS required: reject 11",
      TLS_SERVER,
      undefined,
      ["write:CONNECTACK", "log:warn", "close"],
      11,
      -1,
    ],
    [
      "0 / TLS desired: no TLS used",
      { ...TLS_SERVER, require: false },
      0,
      ["write:CONNECTACK", "write:STATE"],
      null,
      0,
    ],
    ["1 / TLS: TLS", TLS_SERVER, 1, ["write:CONNECTACK", "start-tls"], null, 1],
    ["2 / TLS: TLS", TLS_SERVER, 2, ["write:CONNECTACK", "start-tls"], null, 1],
  ];
  for (const [name, tls, request, expected, reason, reply] of cells) {
    await t.step(name, () => {
      const { s, effects } = secondaryGets(connectWithTls(request), { tls });
      assert.deepEqual(kinds(effects), expected);
      const ack = writes(effects)[0]!;
      assert.equal(ack.type, MsgType.CONNECTACK);
      assert.equal(getRejectReason(ack) ?? null, reason);
      assert.equal(getTlsReply(ack) ?? -1, reply);
      if (expected.includes("start-tls")) {
        assert.equal(s.phase, "tls");
        const start = effects.find((e) => e.kind === "start-tls");
        assert.deepEqual(start, { kind: "start-tls", role: "server" });
      }
    });
  }
});

Deno.test("FailoverLink over TLS: CONNECT again without TLS-request, CONNECTACK without TLS-reply, then up (§8.2, §11.2)", () => {
  const p = link("primary", { tls: TLS_CLIENT });
  const s = link("secondary", { tls: TLS_SERVER });
  s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
  const first = p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
  assert.equal(getTlsRequest(writes(first)[0]!), 2, "TLS required: TLS-request 2");
  const ack = deliver(s, first, T0);
  assert.deepEqual(kinds(ack), ["write:CONNECTACK", "start-tls"]);
  const pTls = deliver(p, ack, T0);
  assert.deepEqual(pTls, [{ kind: "start-tls", role: "client" }]);
  assert.equal(p.phase, "tls");
  // Frames in the clear while TLS starts are not believed.
  assert.deepEqual(s.input({ kind: "frame", now: T0, bytes: connectWithTls(0) }), []);
  assert.deepEqual(kinds(s.input({ kind: "tls-up", now: T0 })), ["log:debug"]);
  const again = p.input({ kind: "tls-up", now: T0 });
  assert.deepEqual(kinds(again), ["log:debug", "write:CONNECT"]);
  assert.equal(getTlsRequest(writes(again)[0]!), undefined, "no TLS-request over TLS");
  const ack2 = deliver(s, again, T0);
  assert.deepEqual(kinds(ack2), ["write:CONNECTACK", "write:STATE"]);
  assert.equal(getTlsReply(writes(ack2)[0]!), undefined, "no TLS-reply over TLS");
  const state = deliver(p, ack2, T0);
  assert.deepEqual(kinds(state).slice(-2), ["log:info", "up"]);
  deliver(s, state.filter((e) => e.kind === "write"), T0);
  assert.equal(s.phase, "up");
  assert.equal(p.partner?.tls, true);
  assert.equal(s.partner?.tls, true);
});

Deno.test("FailoverLink primary refuses a partner without TLS when TLS is required, and logs why", async (t) => {
  await t.step("TLS-reply 0 without a rejection (a partner that ignores TLS-request)", () => {
    const p = link("primary", { tls: TLS_CLIENT });
    p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
    const ack = encodeFailover(buildConnectAck({ time: T0, xid: 0 }, {
      relationshipName: "pair",
      maxUnackedBndupd: 10,
      receiveTimer: 30,
      vendorClassIdentifier: "isc-4.4.3-P1",
      tlsReply: 0,
    }));
    const effects = p.input({ kind: "frame", now: T0, bytes: ack });
    assert.deepEqual(kinds(effects), ["log:error", "write:DISCONNECT", "log:warn", "close"]);
    assert.equal(getRejectReason(writes(effects)[0]!), RejectReason.TLS_REQUIRED);
  });
  await t.step("TLS-reply 1 when this primary has no TLS", () => {
    const p = link("primary");
    p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
    const ack = encodeFailover(buildConnectAck({ time: T0, xid: 0 }, {
      relationshipName: "pair",
      maxUnackedBndupd: 10,
      receiveTimer: 30,
      vendorClassIdentifier: "duet",
      tlsReply: 1,
    }));
    const effects = p.input({ kind: "frame", now: T0, bytes: ack });
    assert.deepEqual(kinds(effects), ["write:DISCONNECT", "log:warn", "close"]);
    assert.equal(getRejectReason(writes(effects)[0]!), RejectReason.TLS_REQUIRED);
  });
  await t.step("a failed TLS handshake closes with the reason", () => {
    const p = link("primary", { tls: TLS_CLIENT });
    const s = link("secondary", { tls: TLS_SERVER });
    s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
    deliver(p, deliver(s, p.input({ kind: "open", now: T0, local: PRIMARY_STATE }), T0), T0);
    const effects = p.input({
      kind: "tls-failed",
      now: T0,
      text: "invalid peer certificate: UnknownIssuer",
    });
    assert.deepEqual(kinds(effects), ["log:error", "close"]);
    assert.match(closeOf(effects)?.reason ?? "", /TLS handshake failed: invalid peer certificate/);
  });
  await t.step("no TLS handshake within the handshake deadline", () => {
    const p = link("primary", { tls: TLS_CLIENT, handshakeTimeout: 10 });
    const s = link("secondary", { tls: TLS_SERVER });
    s.input({ kind: "open", now: T0, local: SECONDARY_STATE });
    deliver(p, deliver(s, p.input({ kind: "open", now: T0, local: PRIMARY_STATE }), T0), T0);
    assert.equal(p.phase, "tls");
    assert.equal(
      closeOf(p.input({ kind: "tick", now: T0 + 10 }))?.reason,
      "No TLS handshake within 10 s",
    );
  });
});
