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
  type LocalState,
} from "../../lib/peer/link.ts";
import {
  buildConnect,
  buildConnectAck,
  buildContact,
  type ConnectParams,
  decodeFailover,
  encodeFailover,
  type FailoverMessage,
  getRejectReason,
  getTlsReply,
  MsgType,
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
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "close"]);
  assert.equal(getRejectReason(writes(effects)[0]!), 4);
});

Deno.test("FailoverLink answers a second CONNECT on an up link with DISCONNECT 7", () => {
  const { s } = upPair();
  const again = encodeFailover(buildConnect({ time: T0 + 5, xid: 0 }, connectParams()));
  const effects = s.input({ kind: "frame", now: T0 + 5, bytes: again });
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "close"]);
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
  assert.deepEqual(kinds(effects), ["write:DISCONNECT", "close"]);
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
    assert.deepEqual(kinds(effects), ["close"]);
    assert.equal(closeOf(effects)?.reason, "No CONNECT in time");
  });
  await t.step("primary without a CONNECTACK closes", () => {
    const p = link("primary", { handshakeTimeout: 10 });
    p.input({ kind: "open", now: T0, local: PRIMARY_STATE });
    assert.deepEqual(p.input({ kind: "tick", now: T0 + 9.9 }), []);
    const effects = p.input({ kind: "tick", now: T0 + 10 });
    assert.deepEqual(kinds(effects), ["close"]);
    assert.equal(closeOf(effects)?.reason, "No CONNECTACK in time");
  });
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
      assert.deepEqual(kinds(effects), ["write:DISCONNECT", "close"]);
      assert.equal(s.phase, "closed");
    });
  }
  await t.step("type 50 before CONNECT -> DISCONNECT and close", () => {
    const { effects } = secondaryGets(bare(50, T0, 0));
    assert.deepEqual(kinds(effects), ["write:DISCONNECT", "close"]);
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
  assert.deepEqual(kinds(replay), ["write:DISCONNECT", "close"]);
});
