/**
 * Fuzz target: the partner link's receive path without sockets. An input is a TCP byte stream
 * from the partner. It goes through the framing (splitFrames, and FrameReader fed in odd-sized
 * chunks), decodeFailover and every reader of a decoded message (checkFailover, the getters,
 * the BNDUPD/BNDACK transaction splitters, the §11.1 digest), re-encoding, and then through
 * what `duet serve` runs on a real connection: a FailoverLink (lib/peer/link.ts) and, once the
 * link is up, a BindingSync (lib/failover/sync.ts) over a memory store whose answers go back
 * through the link. Seeds are the ISC dhcpd 4.4.3 captures (tests/fixtures/failover).
 */
import { PeerProtocolError, WireError } from "../../lib/errors.ts";
import { BindingSync, type SyncEffect } from "../../lib/failover/sync.ts";
import { FailoverLink, type LinkEffect, type LinkSettings } from "../../lib/peer/link.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import {
  checkFailover,
  decodeFailover,
  encodeFailover,
  FAILOVER_MAX_LENGTH,
  type FailoverMessage,
  FoOpt,
  FrameReader,
  getAddressesTransferred,
  getBindingAcks,
  getBindingUpdates,
  getClientHardwareAddress,
  getClientReplyOptions,
  getClientRequestOptions,
  getDdns,
  getHashBucketAssignment,
  getMessage,
  getMessageDigest,
  getRelationshipName,
  getServerState,
  getVendorClassIdentifier,
  getVendorSpecificOptions,
  isIgnoredMsgType,
  MsgType,
  ReplayGuard,
  signFailover,
  splitFrames,
  splitTransactions,
  verifyFailover,
} from "../../lib/wire/failover.ts";
import { decodeCapture } from "../../lib/wire/pcap.ts";
import {
  concatBytes,
  type Corpus,
  FuzzFinding,
  type FuzzTarget,
  havoc,
  INTERESTING_16,
  lengthClass,
  type Rng,
  template,
} from "./engine.ts";
import { readHexFixture } from "./fixtures.ts";

/** The key the signed seeds use; a link runs with it when the first frame carries a digest. */
const SECRET = "fuzz-secret";
/** Around the capture times, so that binding times are plausible. */
const NOW = 1_795_926_500;
/** A partner stream this long is 8 maximal messages. */
const MAX_STREAM = 8 * FAILOVER_MAX_LENGTH;
/** Messages kept in a stream: enough for a handshake and a few updates after it. */
const MAX_FRAMES = 6;

const CODES = Object.values(FoOpt);
const TYPES = Object.values(MsgType);

// ---- mutation ------------------------------------------------------------------------------

interface RawOption {
  code: number;
  data: Uint8Array;
  /** Written instead of data.length when set. */
  len?: number;
}

interface RawFrame {
  type: number;
  time: number;
  xid: number;
  extra: Uint8Array;
  options: RawOption[];
  /** Written instead of the computed message length when set. */
  length?: number;
  /** Written instead of the computed payload offset when set. */
  offset?: number;
}

function u16(b: Uint8Array, at: number): number {
  return ((b[at] as number) << 8) | (b[at + 1] as number);
}

function u32(b: Uint8Array, at: number): number {
  return (((b[at] as number) << 24) | ((b[at + 1] as number) << 16) | ((b[at + 2] as number) << 8) |
    (b[at + 3] as number)) >>> 0;
}

function be(v: number, width: number): Uint8Array {
  const out = new Uint8Array(width);
  for (let k = width - 1; k >= 0; k--) {
    out[k] = v & 0xff;
    v = Math.floor(v / 256);
  }
  return out;
}

/** Reads one frame leniently (whatever the mutator left), or undefined. */
function parseFrame(f: Uint8Array): RawFrame | undefined {
  if (f.length < 12) return undefined;
  const offset = Math.max(12, Math.min(f[3] as number, f.length));
  const options: RawOption[] = [];
  let i = offset;
  while (i + 4 <= f.length) {
    const len = u16(f, i + 2);
    if (i + 4 + len > f.length) break;
    options.push({ code: u16(f, i), data: f.slice(i + 4, i + 4 + len) });
    i += 4 + len;
  }
  return {
    type: f[2] as number,
    time: u32(f, 4),
    xid: u32(f, 8),
    extra: f.slice(12, offset),
    options,
  };
}

function writeFrame(r: RawFrame): Uint8Array {
  let size = 12 + r.extra.length;
  for (const o of r.options) size += 4 + o.data.length;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint16(0, (r.length ?? size) & 0xffff);
  out[2] = r.type & 0xff;
  out[3] = (r.offset ?? 12 + r.extra.length) & 0xff;
  v.setUint32(4, r.time >>> 0);
  v.setUint32(8, r.xid >>> 0);
  out.set(r.extra, 12);
  let at = 12 + r.extra.length;
  for (const o of r.options) {
    v.setUint16(at, o.code & 0xffff);
    v.setUint16(at + 2, (o.len ?? o.data.length) & 0xffff);
    out.set(o.data, at + 4);
    at += 4 + o.data.length;
  }
  return out;
}

/** Whole frames of a stream as far as the framing allows, and what is left. */
function framesOf(stream: Uint8Array): { frames: Uint8Array[]; rest: Uint8Array } {
  const frames: Uint8Array[] = [];
  let pos = 0;
  while (stream.length - pos >= 12) {
    const len = u16(stream, pos);
    if (len < 12 || pos + len > stream.length) break;
    frames.push(stream.slice(pos, pos + len));
    pos += len;
  }
  return { frames, rest: stream.slice(pos) };
}

function optionData(rng: Rng, code: number): Uint8Array {
  switch (code) {
    case FoOpt.BINDING_STATUS: // §12.3: 1-7; anything else is bogus
      return Uint8Array.of(rng.chance(0.7) ? 1 + rng.int(7) : rng.int(256));
    case FoOpt.CLIENT_HARDWARE_ADDRESS: { // §12.5: htype then the address, normally 6 octets
      const n = rng.chance(0.7) ? 6 : rng.int(40);
      return concatBytes([Uint8Array.of(rng.chance(0.8) ? 1 : rng.int(256)), rng.bytes(n)]);
    }
    case FoOpt.SERVER_STATE:
      return Uint8Array.of(rng.chance(0.7) ? 1 + rng.int(11) : rng.int(256));
    case FoOpt.RELATIONSHIP_NAME:
      return rng.chance(0.8) ? new TextEncoder().encode("pair") : rng.bytes(rng.int(300));
    case FoOpt.PROTOCOL_VERSION:
      return Uint8Array.of(rng.chance(0.8) ? 1 : rng.int(256));
    case FoOpt.TLS_REQUEST:
    case FoOpt.TLS_REPLY:
      return Uint8Array.of(rng.int(4));
    case FoOpt.VENDOR_SPECIFIC_OPTIONS: { // §12.29: nested code(2) len(2) data, maybe broken
      const parts: Uint8Array[] = [];
      for (let k = rng.small(4); k > 0; k--) {
        const d = rng.bytes(rng.int(12));
        parts.push(be(rng.int(65536), 2), be(rng.chance(0.8) ? d.length : rng.int(65536), 2), d);
      }
      return concatBytes(parts);
    }
    case FoOpt.CLIENT_REQUEST_OPTIONS:
    case FoOpt.CLIENT_REPLY_OPTIONS:
      return concatBytes([
        be(rng.chance(0.8) ? 0x63825363 : rng.int(2 ** 32), 4),
        rng.bytes(rng.int(30)),
      ]);
    case FoOpt.MESSAGE_DIGEST:
      return concatBytes([Uint8Array.of(rng.chance(0.8) ? 1 : rng.int(256)), rng.bytes(16)]);
    default: {
      const fixed: Record<number, number> = {
        1: 4,
        2: 4,
        6: 4,
        10: 1,
        11: 32,
        12: 2,
        13: 4,
        14: 4,
        15: 4,
        18: 4,
        19: 4,
        21: 1,
        23: 1,
        25: 4,
      };
      const n = fixed[code];
      if (n !== undefined && rng.chance(0.8)) {
        if (n === 4 && rng.chance(0.5)) return be(NOW + rng.int(2000) - 1000, 4);
        return rng.bytes(n);
      }
      return rng.bytes(rng.int(24));
    }
  }
}

/** One binding update transaction (§6.3, Table 7.1-1), sometimes broken. */
function transaction(rng: Rng): RawOption[] {
  const ip = 0xc6121000 + rng.int(256); // 198.18.16.x
  const out: RawOption[] = [{ code: FoOpt.ASSIGNED_IP_ADDRESS, data: be(ip, 4) }];
  if (rng.chance(0.9)) {
    out.push({ code: FoOpt.BINDING_STATUS, data: optionData(rng, FoOpt.BINDING_STATUS) });
  }
  for (const code of [5, 13, 18, 25, 6, 4, 12, 9]) {
    if (rng.chance(code < 12 || code === 13 || code === 18 || code === 25 ? 0.7 : 0.1)) {
      out.push({ code, data: optionData(rng, code) });
    }
  }
  return out;
}

function mutateFrame(rng: Rng, r: RawFrame, corpus: Corpus): void {
  const o = r.options;
  switch (rng.int(13)) {
    case 0: // another type: defined, undefined mandatory (0-127), ignorable (128-255)
      r.type = rng.chance(0.6)
        ? rng.pick(TYPES)
        : rng.chance(0.5)
        ? rng.int(128)
        : 128 + rng.int(128);
      break;
    case 1: // the payload offset, and extra header octets (§6.1)
      if (rng.chance(0.5)) r.extra = rng.bytes(rng.int(8));
      else r.offset = rng.pick([0, 8, 11, 12, 13, 12 + r.extra.length + 1, 255, rng.int(256)]);
      break;
    case 2: // the message length: off by one, below 12, above 2048
      r.length = rng.chance(0.5)
        ? 12 + r.extra.length + o.reduce((n, x) => n + 4 + x.data.length, 0) +
          (rng.chance(0.5) ? 1 : -1)
        : rng.pick(INTERESTING_16);
      break;
    case 3: { // insert an option
      const code = rng.chance(0.85) ? rng.pick(CODES) : rng.int(65536);
      o.splice(rng.int(o.length + 1), 0, { code, data: optionData(rng, code) });
      break;
    }
    case 4: // delete one
      if (o.length > 0) o.splice(rng.int(o.length), 1);
      break;
    case 5: { // duplicate one
      if (o.length === 0) break;
      const x = o[rng.int(o.length)] as RawOption;
      o.splice(rng.int(o.length + 1), 0, { code: x.code, data: x.data.slice() });
      break;
    }
    case 6: { // an option length that lies
      if (o.length === 0) break;
      const x = o[rng.int(o.length)] as RawOption;
      x.len = rng.chance(0.7)
        ? x.data.length + (rng.chance(0.5) ? 1 : -1)
        : rng.pick(INTERESTING_16);
      break;
    }
    case 7: { // more binding transactions in one message (§6.3), up to a full message
      if (rng.chance(0.5)) r.type = MsgType.BNDUPD;
      if (rng.chance(0.3)) {
        // Filled to (nearly) 2048 octets with the smallest transactions: the most a BNDACK
        // must answer (an address alone, or with a status, maybe a bogus one).
        let size = 12 + r.extra.length + o.reduce((n, x) => n + 4 + x.data.length, 0);
        const limit = FAILOVER_MAX_LENGTH - rng.int(rng.chance(0.5) ? 24 : 200);
        const bare = rng.chance(0.5);
        for (let k = 0; size + (bare ? 8 : 13) <= limit; k++) {
          o.push({ code: FoOpt.ASSIGNED_IP_ADDRESS, data: be(0xc6121000 + (k & 0xff), 4) });
          size += 8;
          if (!bare) {
            o.push({ code: FoOpt.BINDING_STATUS, data: optionData(rng, FoOpt.BINDING_STATUS) });
            size += 5;
          }
        }
        break;
      }
      const n = rng.chance(0.2) ? 100 + rng.int(160) : rng.small(12);
      for (let k = 0; k < n; k++) {
        const t = rng.chance(0.1)
          ? [{ code: FoOpt.ASSIGNED_IP_ADDRESS, data: be(0xc6121000 + k, 4) }]
          : transaction(rng);
        o.push(...t);
      }
      break;
    }
    case 8: { // a transaction option before the first assigned-IP-address
      const code = rng.pick([
        FoOpt.BINDING_STATUS,
        FoOpt.CLIENT_HARDWARE_ADDRESS,
        FoOpt.REJECT_REASON,
        FoOpt.MESSAGE,
      ]);
      o.unshift({ code, data: optionData(rng, code) });
      break;
    }
    case 9: // a reordering
      if (o.length > 1) {
        const a = rng.int(o.length);
        const b = rng.int(o.length);
        [o[a], o[b]] = [o[b] as RawOption, o[a] as RawOption];
      }
      break;
    case 10: // xid and time: replayed, going backwards, at the edges
      if (rng.chance(0.5)) {
        r.xid = rng.chance(0.5) ? 0 : rng.pick([r.xid - 1, r.xid, 0xffffffff]) >>> 0;
      } else r.time = rng.pick([0, NOW, NOW - 3600, NOW + 86400, 0xffffffff]);
      break;
    case 11: { // a message-digest option: garbage, or moved away from the front
      const d = { code: FoOpt.MESSAGE_DIGEST, data: optionData(rng, FoOpt.MESSAGE_DIGEST) };
      if (rng.chance(0.5)) o.unshift(d);
      else o.splice(rng.int(o.length + 1), 0, d);
      break;
    }
    default: { // options from another stream's frame
      const other = framesOf(corpus.pick(rng)).frames;
      if (other.length === 0) break;
      const f = parseFrame(rng.pick(other));
      if (!f || f.options.length === 0) break;
      const from = rng.int(f.options.length);
      o.splice(rng.int(o.length + 1), 0, ...f.options.slice(from, from + rng.small(8)));
    }
  }
}

function structural(rng: Rng, input: Uint8Array, corpus: Corpus): Uint8Array {
  const { frames, rest } = framesOf(input);
  if (frames.length === 0) return havoc(rng, input, corpus, { maxLength: MAX_STREAM });
  switch (rng.int(6)) {
    case 0: { // drop, duplicate or swap whole messages
      const i = rng.int(frames.length);
      const f = frames[i] as Uint8Array;
      if (rng.chance(0.4)) frames.splice(i, 1);
      else if (rng.chance(0.5)) frames.splice(rng.int(frames.length + 1), 0, f);
      else {frames.splice(
          rng.int(frames.length + 1),
          0,
          ...framesOf(corpus.pick(rng)).frames.slice(0, rng.small(4)),
        );}
      break;
    }
    case 1: { // sign a message with the fuzz secret (then maybe break it)
      const i = rng.int(frames.length);
      try {
        const signed = signFailover(frames[i] as Uint8Array, SECRET);
        if (rng.chance(0.3)) {
          const at = rng.int(signed.length);
          signed[at] = (signed[at] as number) ^ (1 << rng.int(8));
        }
        frames[i] = signed;
      } catch {
        // Not a decodable message, or too long to carry a digest: leave it.
      }
      break;
    }
    case 2: // cut the stream in the middle of a message
      return concatBytes([...frames, rest]).slice(0, rng.int(input.length + 1));
    default: {
      const n = rng.small(3);
      for (let k = 0; k < n; k++) {
        const i = rng.int(frames.length);
        const r = parseFrame(frames[i] as Uint8Array);
        if (!r) continue;
        mutateFrame(rng, r, corpus);
        frames[i] = writeFrame(r);
      }
    }
  }
  return concatBytes([...frames.slice(0, MAX_FRAMES), rest]).subarray(0, MAX_STREAM);
}

// ---- seeds ---------------------------------------------------------------------------------

/** Each direction of each capture as windows of consecutive messages, plus the hex fixtures. */
function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const dir = new URL("../fixtures/failover/", import.meta.url);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  for (const name of names) {
    if (name.endsWith(".hex")) out.push(readHexFixture(new URL(name, dir)));
    if (!name.endsWith(".pcap")) continue;
    const streams = new Map<string, Uint8Array[]>();
    for (const f of decodeCapture(Deno.readFileSync(new URL(name, dir))).frames) {
      const s = f.segment;
      if (s?.protocol !== "tcp" || s.payload.length === 0) continue;
      const key = `${s.srcIp}:${s.srcPort}>${s.dstIp}:${s.dstPort}`;
      streams.set(key, [...(streams.get(key) ?? []), s.payload.slice()]);
    }
    for (const chunks of streams.values()) {
      let frames: Uint8Array[];
      try {
        frames = splitFrames(concatBytes(chunks)).frames.map((f) => f.slice());
      } catch {
        continue;
      }
      // The start (the handshake), then a few windows further on (bulk BNDUPD/BNDACK).
      for (const start of [0, 3, 10, 40, 200]) {
        if (start >= frames.length) break;
        const window = frames.slice(start, start + 6);
        out.push(concatBytes(window));
        if (start === 0) out.push(concatBytes(window.map((f) => signFailover(f, SECRET))));
      }
    }
  }
  return out;
}

// ---- running -------------------------------------------------------------------------------

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function isTyped(e: unknown): boolean {
  return (e instanceof WireError && e.protocol === "failover") || e instanceof PeerProtocolError;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Where FrameReader gets the stream cut: two cuts chosen by the input's length (so that a
 * fixture replays the same way), from a single octet to most of the stream.
 */
function cuts(length: number): number[] {
  const a = (length * 7919) % (length + 1);
  const b = Math.min(length, a + 1 + ((length * 104729) % 13));
  return [a, b, length];
}

function checkFraming(input: Uint8Array, features: string[]): Uint8Array[] {
  let split: { frames: Uint8Array[]; rest: Uint8Array } | undefined;
  let framingError: unknown;
  try {
    split = splitFrames(input);
  } catch (e) {
    if (!(e instanceof WireError)) {
      throw new FuzzFinding("exception", `splitFrames threw ${describe(e)}`, { cause: e });
    }
    framingError = e;
    features.push(`frame-err:${template(e.message)}`);
  }
  const reader = new FrameReader();
  const got: Uint8Array[] = [];
  let readerError: unknown;
  let pos = 0;
  for (const end of cuts(input.length)) {
    if (readerError !== undefined) break;
    const n = end - pos;
    try {
      got.push(...reader.push(input.subarray(pos, end)));
    } catch (e) {
      if (!(e instanceof WireError)) {
        throw new FuzzFinding("exception", `FrameReader.push threw ${describe(e)}`, { cause: e });
      }
      readerError = e;
    }
    pos += n;
  }
  if (split) {
    const sum = split.frames.reduce((n, f) => n + f.length, 0) + split.rest.length;
    if (sum !== input.length || split.rest.length >= FAILOVER_MAX_LENGTH) {
      throw new FuzzFinding(
        "invariant",
        `splitFrames lost or invented bytes (${sum} of ${input.length})`,
      );
    }
    if (readerError !== undefined) {
      throw new FuzzFinding(
        "invariant",
        `FrameReader failed where splitFrames did not: ${describe(readerError)}`,
      );
    }
    if (
      got.length !== split.frames.length ||
      got.some((f, i) => !sameBytes(f, split.frames[i] as Uint8Array))
    ) {
      throw new FuzzFinding(
        "invariant",
        "FrameReader in chunks gave other frames than splitFrames",
      );
    }
    if (reader.buffered !== split.rest.length) {
      throw new FuzzFinding(
        "invariant",
        `FrameReader buffers ${reader.buffered} bytes, not ${split.rest.length}`,
      );
    }
    features.push(
      `frames:${lengthClass(split.frames.length)}`,
      `rest:${lengthClass(split.rest.length)}`,
    );
    return split.frames;
  }
  if (readerError === undefined && framingError !== undefined) {
    throw new FuzzFinding("invariant", "splitFrames failed where FrameReader did not");
  }
  return got;
}

/** decodeFailover and every reader of one message. */
function checkMessage(
  frame: Uint8Array,
  features: string[],
  first: boolean,
  signCheck: boolean,
): FailoverMessage | undefined {
  let m: FailoverMessage;
  try {
    m = decodeFailover(frame);
  } catch (e) {
    if (!isTyped(e)) {
      throw new FuzzFinding("exception", `decodeFailover threw ${describe(e)}`, { cause: e });
    }
    features.push(`err:${template((e as Error).message)}`);
    return undefined;
  }
  features.push(`t:${m.type}`);
  // One feature per distinct (code, length class): a BNDUPD repeats its options per binding.
  const shapes = new Set<string>();
  for (const o of m.options) shapes.add(`o:${m.type}:${o.code}:${lengthClass(o.data.length)}`);
  try {
    for (const p of checkFailover(m)) shapes.add(`p:${m.type}:${p.level}:${template(p.message)}`);
    features.push(...shapes);
    const { transactions } = splitTransactions(m);
    features.push(`tx:${m.type}:${lengthClass(transactions.length)}`);
    const statuses = new Set<string>();
    for (const u of getBindingUpdates(m)) {
      statuses.add(`bu:${u === undefined ? "-" : u.bindingStatus}`);
    }
    features.push(...statuses);
    getBindingAcks(m);
    for (
      const get of [
        getAddressesTransferred,
        getClientHardwareAddress,
        getClientReplyOptions,
        getClientRequestOptions,
        getDdns,
        getHashBucketAssignment,
        getMessage,
        getMessageDigest,
        getRelationshipName,
        getServerState,
        getVendorClassIdentifier,
        getVendorSpecificOptions,
      ]
    ) get(m);
    // An HMAC costs more than decoding: verify with the key only what carries a digest.
    const digest = m.options.some((o) => o.code === FoOpt.MESSAGE_DIGEST);
    // Each verification is an HMAC: the first message of an input only (signed seeds sign all).
    if (first || !digest) {
      features.push(`v:${digest ? verifyFailover(frame, SECRET).status : "unsigned"}`);
    }
  } catch (e) {
    throw new FuzzFinding("exception", `A reader of a decoded message threw ${describe(e)}`, {
      cause: e,
    });
  }
  // §6.1: what decodes re-encodes to the same bytes (types 128-255 may drop broken options).
  if (!isIgnoredMsgType(m.type)) {
    let again: Uint8Array;
    try {
      again = encodeFailover(m);
    } catch (e) {
      throw new FuzzFinding(
        "exception",
        `encodeFailover of a decoded message threw ${describe(e)}`,
        { cause: e },
      );
    }
    if (!sameBytes(again, frame)) {
      throw new FuzzFinding("invariant", "encodeFailover(decodeFailover(b)) is not b");
    }
  }
  // §11.1: a signed copy verifies with the key and fails with another (the first message of
  // each input: three HMACs per message would cost more than everything else together).
  // signFailover replaces every digest option with one of 21 octets at the front.
  const withDigest = frame.length + 21 -
    m.options.reduce((n, o) => n + (o.code === FoOpt.MESSAGE_DIGEST ? 4 + o.data.length : 0), 0);
  if (signCheck && withDigest <= FAILOVER_MAX_LENGTH) {
    const signed = signFailover(m, SECRET);
    if (
      verifyFailover(signed, SECRET).status !== "ok" ||
      verifyFailover(signed, "other").status !== "bad"
    ) {
      throw new FuzzFinding("invariant", "A message signed with signFailover does not verify");
    }
  }
  return m;
}

function linkSettings(role: "primary" | "secondary", secret: boolean): LinkSettings {
  return {
    role,
    relationship: "pair",
    mclt: role === "primary" ? 300 : null,
    hba: role === "primary" ? new Uint8Array(32) : null,
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClass: "duet-fuzz",
    secret: secret ? new TextEncoder().encode(SECRET) : null,
    maxClockSkew: 0,
    handshakeTimeout: 10,
  };
}

/** Runs the frames through a FailoverLink and, once it is up, a BindingSync (pure). */
function checkLink(frames: Uint8Array[], features: string[]): void {
  const first = frames[0];
  if (first === undefined) return;
  const role = first.length > 2 && first[2] === MsgType.CONNECT ? "secondary" : "primary";
  const signed = first.length >= 16 && u16(first, first[3] ?? 12) === FoOpt.MESSAGE_DIGEST;
  const settings = linkSettings(role, signed);
  const link = new FailoverLink(settings, {
    initiated: role === "primary",
    replay: new ReplayGuard(),
  });
  const store = new MemoryLeaseStore();
  const sync = new BindingSync({ role, view: store, inPool: (a) => a >>> 24 === 198 });
  let now = NOW;
  // The endpoint gives the sync whole seconds (lib/failover/endpoint.ts); the link gets the
  // clock as it is.
  const whole = () => Math.floor(now);
  const where = (what: string) => `${what} (${role} link, ${signed ? "with" : "without"} a secret)`;

  const runSync = (effects: SyncEffect[]): void => {
    for (const e of effects) {
      if (e.kind === "persist") {
        try {
          store.put(e.lease);
        } catch (err) {
          throw new FuzzFinding(
            "invariant",
            where(`BindingSync asked to store an invalid lease: ${describe(err)}`),
            { cause: err },
          );
        }
      } else if (e.kind === "record-ack") {
        store.recordAck(e.lease, e.tsfp);
      } else if (e.kind === "send" || e.kind === "send-after-commit") {
        store.commit();
        runLink(link.input({ kind: "send", now, message: e.message }));
      } else if (e.kind === "log") features.push(`sl:${template(e.msg)}`);
    }
    store.commit();
  };
  const runLink = (effects: LinkEffect[]): void => {
    for (const e of effects) {
      features.push(`le:${e.kind}`);
      if (e.kind === "write") {
        // Everything the link sends is a valid message, signed when there is a secret.
        let ok = e.bytes.length <= FAILOVER_MAX_LENGTH;
        try {
          decodeFailover(e.bytes);
          if (settings.secret) ok &&= verifyFailover(e.bytes, settings.secret).status === "ok";
        } catch {
          ok = false;
        }
        if (!ok) {
          throw new FuzzFinding("invariant", where(`The link wrote an invalid ${e.type} message`));
        }
      } else if (e.kind === "log") features.push(`ll:${template(e.msg)}`);
      else if (e.kind === "close") features.push(`lc:${template(e.reason)}`);
      else if (e.kind === "up") {
        runSync(
          sync.step({
            kind: "link-up",
            now: whole(),
            maxUnackedBndupd: e.partner.maxUnackedBndupd ?? 1,
            nextXid: () => link.nextXid(),
          }),
        );
      } else if (e.kind === "message") {
        runSync(sync.step({ kind: "message", now: whole(), message: e.message }));
      }
    }
  };
  const step = (input: Parameters<FailoverLink["input"]>[0]) => {
    let effects: LinkEffect[];
    try {
      effects = link.input(input);
    } catch (e) {
      if (e instanceof FuzzFinding) throw e;
      throw new FuzzFinding(
        "exception",
        where(`FailoverLink.input(${input.kind}) threw ${describe(e)}`),
        { cause: e },
      );
    }
    try {
      runLink(effects);
    } catch (e) {
      if (e instanceof FuzzFinding) throw e;
      throw new FuzzFinding(
        "exception",
        where(`Handling the link's effects threw ${describe(e)}`),
        { cause: e },
      );
    }
  };
  step({
    kind: "open",
    now,
    local: { serverState: 2, serverFlags: 0, startTimeOfState: NOW - 100 },
  });
  for (const bytes of frames) {
    step({ kind: "frame", now, bytes });
    now += 0.25;
  }
  step({ kind: "tick", now: now + 11 });
  features.push(`phase:${link.phase}`);
}

function mutate(rng: Rng, input: Uint8Array, corpus: Corpus): Uint8Array {
  let b = rng.chance(0.75) ? structural(rng, input, corpus) : input;
  if (b === input || rng.chance(0.2)) b = havoc(rng, b, corpus, { maxLength: MAX_STREAM });
  return b;
}

/** The failover codec: framing, decoding and every reader of a decoded message. */
export const failoverTarget: FuzzTarget = {
  name: "failover",
  fixtureExt: "hex",
  maxLength: MAX_STREAM,
  keep: (input) => input.length <= 2560,
  budgetMs: 40,
  seeds,
  mutate,
  run(input, features) {
    let decoded = 0;
    checkFraming(input, features).forEach((f, i) => {
      // The sign-and-verify check costs three HMACs (~100 µs in Deno): one input in sixteen.
      if (checkMessage(f, features, i === 0, i === 0 && input.length % 16 === 0)) decoded++;
    });
    return decoded > 0;
  },
};

/**
 * The partner link's receive path behind the codec: a FailoverLink and a BindingSync fed the
 * stream as `duet serve` feeds them (about twice the work of the codec per input).
 */
export const linkTarget: FuzzTarget = {
  name: "link",
  fixtureExt: "hex",
  maxLength: MAX_STREAM,
  keep: (input) => input.length <= 2560,
  budgetMs: 40,
  seeds,
  mutate,
  run(input, features) {
    let frames: Uint8Array[];
    try {
      frames = splitFrames(input).frames;
    } catch {
      frames = framesOf(input).frames; // what came before the broken length
    }
    checkLink(frames, features);
    return frames.length > 0;
  },
};
