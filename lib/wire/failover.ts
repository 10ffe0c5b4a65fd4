/**
 * DHCP failover protocol wire codec (draft-ietf-dhc-failover-12): message header and options
 * (§6), TCP framing, the per-message option tables (§7), every option of §12, the shared-secret
 * message digest (§11.1) and replay protection (§11.1).
 *
 * Decisions where the draft leaves room (each is tested in tests/wire/failover_test.ts):
 * - §6.1 says the payload offset is 8 for version 1, but the fixed header is 12 octets and ISC
 *   dhcpd 4.4.3 sends 12. An offset below 12 or beyond the message length is a WireError; octets
 *   between 12 and the offset are kept in `additionalHeader` so that re-encoding is exact.
 * - A message must be consumed exactly: an option that runs past the message length is a
 *   WireError. The message length field must equal the bytes given to decodeFailover.
 * - Message types 0-127 that the draft does not define throw PeerProtocolError (the link must be
 *   closed, §6.1). Types 128-255 decode normally and `isIgnoredMsgType()` is true: callers drop
 *   them. If such a message's options are malformed, `options` is empty rather than an error.
 * - Options are an ordered list; repeats are kept (§6.2, §6.3). Unknown codes are kept.
 * - Typed getters return undefined when the option is absent or has the wrong length.
 * - Table 7.1-1 says lease-expiration-time and potential-expiration-time MUST NOT appear in a
 *   BNDUPD that is not ACTIVE, but ISC dhcpd 4.4.3 always sends both (0 for FREE). Those two
 *   cells, and every SHOULD/SHOULD NOT, are "warning" problems, not errors (checkFailover).
 * - §11.1 digest: HMAC-MD5 keyed with the shared secret over the whole encoded message whose
 *   message-digest option carries its type octet (1) and 16 zero octets. The option is 17 octets
 *   (§12.17: type then digest).
 * - §7.8.2 step 8 names reason 19 for a hash bucket conflict, but the §12.21 table gives 18
 *   (19 is "IP not reserved"). The table wins: RejectReason.HASH_BUCKET_CONFLICT = 18.
 *
 * @example
 * const { frames, rest } = splitFrames(received);
 * for (const f of frames) {
 *   const msg = decodeFailover(f);
 *   if (isIgnoredMsgType(msg.type)) continue;
 *   const problem = validateFailover(msg);
 * }
 * const bytes = encodeFailover(buildContact({ time: now, xid: 7 }));
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { ByteReader, ByteWriter, smallBytes, smallU32 } from "./bytes.ts";
import { PeerProtocolError, WireError } from "../errors.ts";

/** Encodes text options (one encoder for the module). */
const TEXT = new TextEncoder();

const PROTOCOL = "failover";

/** Largest message, header included (§6.1). */
export const FAILOVER_MAX_LENGTH = 2048;
/** Smallest message: the fixed header (§6.1). */
export const FAILOVER_MIN_LENGTH = 12;
/** The fixed header: length, type, payload offset, time, xid (§6.1). */
export const FAILOVER_HEADER_LENGTH = 12;
/** The failover TCP port (IANA "dhcp-failover2"; draft-12 §8.2). */
export const FAILOVER_PORT = 647;
/** The protocol version this codec speaks (§12.20). */
export const FAILOVER_PROTOCOL_VERSION = 1;
/** Octets of an HMAC-MD5 digest (§11.1). */
export const DIGEST_LENGTH = 16;

/** Message types (§6.1). */
export const MsgType = {
  POOLREQ: 1,
  POOLRESP: 2,
  BNDUPD: 3,
  BNDACK: 4,
  CONNECT: 5,
  CONNECTACK: 6,
  UPDREQALL: 7,
  UPDDONE: 8,
  UPDREQ: 9,
  STATE: 10,
  CONTACT: 11,
  DISCONNECT: 12,
} as const;

/** Message type number to draft name, e.g. 3 -> "BNDUPD" (§6.1). */
export const MSG_TYPE_NAMES: Record<number, string> = invert(MsgType);

/** Name of a message type for logs: "BNDUPD", or "unknown(200)" (§6.1). */
export function msgTypeName(type: number): string {
  return MSG_TYPE_NAMES[type] ?? `unknown(${type})`;
}

/** True for types 128-255 that this codec does not define: the receiver SHOULD ignore them (§6.1). */
export function isIgnoredMsgType(type: number): boolean {
  return type >= 128 && type <= 255 && MSG_TYPE_NAMES[type] === undefined;
}

/** Failover option codes (§12), keyed by the draft's names. */
export const FoOpt = {
  ADDRESSES_TRANSFERRED: 1,
  ASSIGNED_IP_ADDRESS: 2,
  BINDING_STATUS: 3,
  CLIENT_IDENTIFIER: 4,
  CLIENT_HARDWARE_ADDRESS: 5,
  CLIENT_LAST_TRANSACTION_TIME: 6,
  CLIENT_REPLY_OPTIONS: 7,
  CLIENT_REQUEST_OPTIONS: 8,
  DDNS: 9,
  DELAYED_SERVICE_PARAMETER: 10,
  HASH_BUCKET_ASSIGNMENT: 11,
  IP_FLAGS: 12,
  LEASE_EXPIRATION_TIME: 13,
  MAX_UNACKED_BNDUPD: 14,
  MCLT: 15,
  MESSAGE: 16,
  MESSAGE_DIGEST: 17,
  POTENTIAL_EXPIRATION_TIME: 18,
  RECEIVE_TIMER: 19,
  PROTOCOL_VERSION: 20,
  REJECT_REASON: 21,
  RELATIONSHIP_NAME: 22,
  SERVER_FLAGS: 23,
  SERVER_STATE: 24,
  START_TIME_OF_STATE: 25,
  TLS_REPLY: 26,
  TLS_REQUEST: 27,
  VENDOR_CLASS_IDENTIFIER: 28,
  VENDOR_SPECIFIC_OPTIONS: 29,
} as const;

/** Option code to the draft's spelling, e.g. 2 -> "assigned-IP-address" (§12). */
export const FAILOVER_OPTION_NAMES: Record<number, string> = {
  1: "addresses-transferred",
  2: "assigned-IP-address",
  3: "binding-status",
  4: "client-identifier",
  5: "client-hardware-address",
  6: "client-last-transaction-time",
  7: "client-reply-options",
  8: "client-request-options",
  9: "DDNS",
  10: "delayed-service-parameter",
  11: "hash-bucket-assignment",
  12: "IP-flags",
  13: "lease-expiration-time",
  14: "max-unacked-bndupd",
  15: "MCLT",
  16: "message",
  17: "message-digest",
  18: "potential-expiration-time",
  19: "receive-timer",
  20: "protocol-version",
  21: "reject-reason",
  22: "relationship-name",
  23: "server-flags",
  24: "server-state",
  25: "start-time-of-state",
  26: "TLS-reply",
  27: "TLS-request",
  28: "vendor-class-identifier",
  29: "vendor-specific-options",
};

/** Name of an option code: "MCLT", or "unknown(99)" (§12). */
export function failoverOptionName(code: number): string {
  return FAILOVER_OPTION_NAMES[code] ?? `unknown(${code})`;
}

/** Data length of every fixed-size option (§12); options not listed are variable. */
export const FAILOVER_OPTION_LENGTHS: Record<number, number> = {
  1: 4,
  2: 4,
  3: 1,
  6: 4,
  10: 1,
  11: 32,
  12: 2,
  13: 4,
  14: 4,
  15: 4,
  17: 1 + DIGEST_LENGTH,
  18: 4,
  19: 4,
  20: 1,
  21: 1,
  23: 1,
  24: 1,
  25: 4,
  26: 1,
  27: 1,
};

/** binding-status values (§12.3). */
export const BindingStatus = {
  FREE: 1,
  ACTIVE: 2,
  EXPIRED: 3,
  RELEASED: 4,
  ABANDONED: 5,
  RESET: 6,
  BACKUP: 7,
} as const;

/** binding-status number to name (§12.3). */
export const BINDING_STATUS_NAMES: Record<number, string> = invert(BindingStatus);

/** Name of a binding-status: "ACTIVE", or "unknown(9)" (§12.3). */
export function bindingStatusName(v: number): string {
  return BINDING_STATUS_NAMES[v] ?? `unknown(${v})`;
}

/** server-state values (§12.24), plus ISC dhcpd's RECOVER-WAIT (254; draft §9.6 has no number). */
export const ServerState = {
  STARTUP: 1,
  NORMAL: 2,
  COMMUNICATIONS_INTERRUPTED: 3,
  PARTNER_DOWN: 4,
  POTENTIAL_CONFLICT: 5,
  RECOVER: 6,
  PAUSED: 7,
  SHUTDOWN: 8,
  RECOVER_DONE: 9,
  RESOLUTION_INTERRUPTED: 10,
  CONFLICT_DONE: 11,
  RECOVER_WAIT: 254,
} as const;

/** server-state number to the draft's spelling, e.g. 3 -> "COMMUNICATIONS-INTERRUPTED". */
export const SERVER_STATE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(ServerState).map(([k, v]) => [v, k.replaceAll("_", "-")]),
);

/** Name of a server-state: "NORMAL", or "unknown(12)" (§12.24). */
export function serverStateName(v: number): string {
  return SERVER_STATE_NAMES[v] ?? `unknown(${v})`;
}

/** reject-reason codes (§12.21). */
export const RejectReason = {
  ILLEGAL_IP_ADDRESS: 1,
  FATAL_CONFLICT: 2,
  MISSING_BINDING_INFORMATION: 3,
  TIME_MISMATCH: 4,
  INVALID_MCLT: 5,
  UNKNOWN_CONNECTION_REASON: 6,
  DUPLICATE_CONNECTION: 7,
  INVALID_PARTNER: 8,
  TLS_NOT_SUPPORTED: 9,
  TLS_NOT_CONFIGURED: 10,
  TLS_REQUIRED: 11,
  DIGEST_NOT_SUPPORTED: 12,
  DIGEST_NOT_CONFIGURED: 13,
  PROTOCOL_VERSION_MISMATCH: 14,
  OUTDATED_BINDING: 15,
  LESS_CRITICAL_BINDING: 16,
  NO_TRAFFIC: 17,
  HASH_BUCKET_CONFLICT: 18,
  IP_NOT_RESERVED: 19,
  DIGEST_FAILED: 20,
  MISSING_DIGEST: 21,
  UNKNOWN: 254,
} as const;

/** reject-reason code to the draft's text (§12.21). */
export const REJECT_REASON_TEXT: Record<number, string> = {
  0: "Reserved",
  1: "Illegal IP address (not part of any address pool)",
  2: "Fatal conflict exists: address in use by other client",
  3: "Missing binding information",
  4: "Connection rejected, time mismatch too great",
  5: "Connection rejected, invalid MCLT",
  6: "Connection rejected, unknown reason",
  7: "Connection rejected, duplicate connection",
  8: "Connection rejected, invalid failover partner",
  9: "TLS not supported",
  10: "TLS supported but not configured",
  11: "TLS required but not supported by partner",
  12: "Message digest not supported",
  13: "Message digest not configured",
  14: "Protocol version mismatch",
  15: "Outdated binding information",
  16: "Less critical binding information",
  17: "No traffic within sufficient time",
  18: "Hash bucket assignment conflict",
  19: "IP not reserved on this server",
  20: "Message digest failed to compare",
  21: "Missing message digest",
  254: "Unknown: Error occurred but does not match any reason code",
  255: "Reserved for code expansion",
};

/** Text of a reject-reason: the draft's sentence, or "reserved(N)" (§12.21). */
export function rejectReasonText(code: number): string {
  return REJECT_REASON_TEXT[code] ?? `reserved(${code})`;
}

/** server-flags bits (§12.23). */
export const ServerFlags = { STARTUP: 0x01 } as const;
/** IP-flags bits (§12.12). */
export const IpFlags = { RESERVED: 0x0001, BOOTP: 0x0002 } as const;
/** DDNS flag bits (§12.9): C, A, D, P. */
export const DdnsFlags = {
  NAME_TO_ADDRESS_DONE: 0x0001,
  CONTROLS_A: 0x0002,
  ADDRESS_TO_NAME_DONE: 0x0004,
  CONTROLS_PTR: 0x0008,
} as const;
/** TLS-request values (§12.27). */
export const TlsRequest = { NONE: 0, DESIRED: 1, REQUIRED: 2 } as const;
/** TLS-reply values (§12.26). */
export const TlsReply = { NONE: 0, TLS: 1 } as const;
/** message-digest types (§12.17). */
export const DigestType = { HMAC_MD5: 1 } as const;

/** One option, as on the wire (§6.2). */
export interface FailoverOption {
  code: number;
  data: Uint8Array;
}

/** The header fields a sender chooses (§6.1). */
export interface FailoverHeader {
  /** Sender's clock, epoch seconds (unsigned 32 bits). */
  time: number;
  /** Transaction id (unsigned 32 bits). */
  xid: number;
}

/** One failover message (§6.1). */
export interface FailoverMessage extends FailoverHeader {
  /** Message type (MsgType), 0-255. */
  type: number;
  /** Octets between the 12-octet header and the payload offset; normally empty. */
  additionalHeader: Uint8Array;
  /** Options in wire order; repeats and unknown codes kept (§6.2). */
  options: FailoverOption[];
}

/** Options for decodeFailover. */
export interface DecodeFailoverOptions {
  /** Decode undefined types 0-127 instead of throwing PeerProtocolError (for `duet decode`). */
  allowUnknownTypes?: boolean;
}

/**
 * Decodes exactly one failover message (§6.1, §6.2).
 * Throws WireError on malformed bytes and PeerProtocolError for an undefined type 0-127.
 * The additional header and the option values are views into `bytes`, not copies (one array
 * per option would cost more than the rest of the decoding): the caller MUST NOT reuse
 * `bytes` while the message is in use, and values kept beyond it are copied by the getters
 * that return bytes (client-identifier, client-hardware-address, ...).
 * @example decodeFailover(frame).type === MsgType.CONTACT
 */
export function decodeFailover(
  bytes: Uint8Array,
  options: DecodeFailoverOptions = {},
): FailoverMessage {
  const r = new ByteReader(bytes, PROTOCOL);
  const length = r.u16("message length");
  if (length < FAILOVER_MIN_LENGTH || length > FAILOVER_MAX_LENGTH) {
    throw new WireError(
      PROTOCOL,
      0,
      `Cannot decode failover message: length is ${length}, expected ${FAILOVER_MIN_LENGTH}-${FAILOVER_MAX_LENGTH}`,
    );
  }
  if (length !== bytes.length) {
    throw new WireError(
      PROTOCOL,
      0,
      `Cannot decode failover message: length field is ${length}, message has ${bytes.length} bytes`,
    );
  }
  const type = r.u8("message type");
  const payloadOffset = r.u8("payload offset");
  const time = r.u32("time");
  const xid = r.u32("xid");
  if (payloadOffset < FAILOVER_HEADER_LENGTH || payloadOffset > length) {
    throw new WireError(
      PROTOCOL,
      3,
      `Cannot decode failover message: payload offset is ${payloadOffset}, expected ${FAILOVER_HEADER_LENGTH}-${length}`,
    );
  }
  const additionalHeader = r.bytesView(payloadOffset - FAILOVER_HEADER_LENGTH, "header");
  if (MSG_TYPE_NAMES[type] === undefined && type < 128 && options.allowUnknownTypes !== true) {
    throw new PeerProtocolError(
      type,
      `Cannot accept failover message type ${type}: undefined type in the mandatory range 0-127`,
    );
  }
  let opts: FailoverOption[];
  try {
    opts = decodeOptionList(r);
  } catch (e) {
    if (!isIgnoredMsgType(type) || !(e instanceof WireError)) throw e;
    opts = [];
  }
  return { type, time, xid, additionalHeader, options: opts };
}

/** Reads code(2) length(2) data options up to the reader's end (§6.2). */
function decodeOptionList(r: ByteReader): FailoverOption[] {
  const out: FailoverOption[] = [];
  while (r.remaining > 0) {
    const at = r.offset;
    const code = r.u16("option code");
    const len = r.u16("option length");
    if (len > r.remaining) {
      throw new WireError(
        PROTOCOL,
        at,
        `Cannot decode failover option ${code}: length is ${len}, only ${r.remaining} bytes left`,
      );
    }
    out.push({ code, data: r.bytesView(len, "option data") });
  }
  return out;
}

/**
 * Encodes a message; the length and payload offset are computed (§6.1).
 * Throws RangeError when a field is out of range or the message exceeds FAILOVER_MAX_LENGTH.
 * @example encodeFailover(buildState({ time, xid }, { serverState: ServerState.NORMAL, serverFlags: 0, startTimeOfState: time }))
 */
export function encodeFailover(msg: FailoverMessage): Uint8Array {
  checkUint(msg.type, 0xff, "message type");
  checkUint(msg.time, 0xffffffff, "time");
  checkUint(msg.xid, 0xffffffff, "xid");
  const payloadOffset = FAILOVER_HEADER_LENGTH + msg.additionalHeader.length;
  if (payloadOffset > 0xff) {
    throw new RangeError(`Cannot encode failover message: payload offset ${payloadOffset} > 255`);
  }
  let length = payloadOffset;
  for (const o of msg.options) {
    checkUint(o.code, 0xffff, "option code");
    length += 4 + o.data.length;
  }
  if (length > FAILOVER_MAX_LENGTH) {
    throw new RangeError(
      `Cannot encode failover ${
        msgTypeName(msg.type)
      }: length ${length} exceeds ${FAILOVER_MAX_LENGTH}`,
    );
  }
  const w = new ByteWriter(length);
  w.u16(length).u8(msg.type).u8(payloadOffset).u32(msg.time).u32(msg.xid);
  w.bytes(msg.additionalHeader);
  for (const o of msg.options) w.u16(o.code).u16(o.data.length).bytes(o.data);
  // The buffer is this message's own and exactly its length: no copy needed.
  return w.view();
}

function checkUint(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`Cannot encode failover ${what}: ${v} is not an integer in 0-${max}`);
  }
}

// ---------------------------------------------------------------------------------------------
// TCP framing (§6.1: the first two octets of each message are its length)

/** Complete messages found in a TCP byte stream, and the incomplete tail. */
export interface SplitFrames {
  frames: Uint8Array[];
  rest: Uint8Array;
}

/**
 * Cuts a TCP byte stream into whole messages by their length field (§6.1). Frames are views
 * into `buffer`; `rest` holds a partial message. A length below 12 or above 2048 throws WireError.
 * @example const { frames, rest } = splitFrames(concat(rest, chunk));
 */
export function splitFrames(buffer: Uint8Array): SplitFrames {
  const frames: Uint8Array[] = [];
  let pos = 0;
  while (buffer.length - pos >= 2) {
    const length = ((buffer[pos] as number) << 8) | (buffer[pos + 1] as number);
    if (length < FAILOVER_MIN_LENGTH || length > FAILOVER_MAX_LENGTH) {
      throw new WireError(
        PROTOCOL,
        pos,
        `Cannot frame failover message: length is ${length}, expected ${FAILOVER_MIN_LENGTH}-${FAILOVER_MAX_LENGTH}`,
      );
    }
    if (buffer.length - pos < length) break;
    frames.push(buffer.subarray(pos, pos + length));
    pos += length;
  }
  return { frames, rest: buffer.subarray(pos) };
}

/** Incremental framing for a TCP connection: push received chunks, get whole messages (§6.1). */
export class FrameReader {
  #rest: Uint8Array = new Uint8Array(0);
  #consumed = 0;

  /** Bytes held back as a partial message. */
  get buffered(): number {
    return this.#rest.length;
  }

  /** The bytes held back, removed from the reader (the stream switches to TLS, §11.2). */
  takeBuffered(): Uint8Array {
    const rest = this.#rest;
    this.#rest = new Uint8Array(0);
    return rest;
  }

  /**
   * Appends a chunk and returns the complete messages. Throws WireError on a bad length; the
   * error offset counts from the start of the stream. After an error the reader is unusable.
   * The messages are views into one new copy of the held-back bytes and the chunk (one array
   * per read rather than one per message), so `chunk` may be reused at once.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.#rest.length + chunk.length);
    joined.set(this.#rest);
    joined.set(chunk, this.#rest.length);
    let split: SplitFrames;
    try {
      split = splitFrames(joined);
    } catch (e) {
      if (e instanceof WireError) {
        throw new WireError(PROTOCOL, this.#consumed + e.offset, stripOffset(e.message), {
          cause: e,
        });
      }
      throw e;
    }
    for (const f of split.frames) this.#consumed += f.length;
    this.#rest = split.rest;
    return split.frames;
  }
}

function stripOffset(message: string): string {
  return message.replace(/ \(at offset \d+\)$/, "");
}

// ---------------------------------------------------------------------------------------------
// Option access

/** A message, or a slice of its options (one binding update transaction, §6.3). */
export type OptionSource = FailoverMessage | readonly FailoverOption[];

function listOf(src: OptionSource): readonly FailoverOption[] {
  return Array.isArray(src) ? src : (src as FailoverMessage).options;
}

/** The data of the first option with this code, or undefined (§6.2). */
export function getOption(src: OptionSource, code: number): Uint8Array | undefined {
  for (const o of listOf(src)) if (o.code === code) return o.data;
  return undefined;
}

/** The data of every option with this code, in order (§6.3 repeats). */
export function getOptions(src: OptionSource, code: number): Uint8Array[] {
  return listOf(src).filter((o) => o.code === code).map((o) => o.data);
}

function fixed(src: OptionSource, code: number): Uint8Array | undefined {
  const d = getOption(src, code);
  return d !== undefined && d.length === FAILOVER_OPTION_LENGTHS[code] ? d : undefined;
}

function u32Of(src: OptionSource, code: number): number | undefined {
  const d = fixed(src, code);
  if (d === undefined) return undefined;
  return (((d[0] as number) << 24) | ((d[1] as number) << 16) | ((d[2] as number) << 8) |
    (d[3] as number)) >>> 0;
}

function u16Of(src: OptionSource, code: number): number | undefined {
  const d = fixed(src, code);
  return d === undefined ? undefined : ((d[0] as number) << 8) | (d[1] as number);
}

function u8Of(src: OptionSource, code: number): number | undefined {
  const d = fixed(src, code);
  return d === undefined ? undefined : d[0] as number;
}

function textOf(src: OptionSource, code: number): string | undefined {
  const d = getOption(src, code);
  return d === undefined ? undefined : new TextDecoder().decode(d);
}

/** A client's hardware address: ARP htype and address octets (§12.5). */
export interface HardwareAddress {
  htype: number;
  chaddr: Uint8Array;
}

/** DHCP options embedded in client-request/reply-options: magic number then options (§12.7). */
export interface EmbeddedOptions {
  /** 0x63825363 for DHCPv4 options. */
  magic: number;
  /** The option bytes after the magic number, in the format that magic defines. */
  options: Uint8Array;
}

/** The DDNS option (§12.9): DdnsFlags and the FQDN in DNS wire encoding (RFC 1035). */
export interface Ddns {
  flags: number;
  domainName: Uint8Array;
}

/** The message-digest option (§12.17). */
export interface MessageDigest {
  type: number;
  digest: Uint8Array;
}

/** addresses-transferred (§12.1). */
export function getAddressesTransferred(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.ADDRESSES_TRANSFERRED);
}
/** assigned-IP-address as uint32; the first one in a batched message (§12.2). */
export function getAssignedIpAddress(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.ASSIGNED_IP_ADDRESS);
}
/** binding-status (§12.3); undefined also when outside 1-7. */
export function getBindingStatus(src: OptionSource): number | undefined {
  const v = u8Of(src, FoOpt.BINDING_STATUS);
  return v !== undefined && BINDING_STATUS_NAMES[v] !== undefined ? v : undefined;
}
/** client-identifier (§12.4). */
export function getClientIdentifier(src: OptionSource): Uint8Array | undefined {
  // A copy: it becomes part of a stored lease, which must not keep the message alive.
  return getOption(src, FoOpt.CLIENT_IDENTIFIER)?.slice();
}
/** client-hardware-address (§12.5); undefined when empty or htype is 0. */
export function getClientHardwareAddress(src: OptionSource): HardwareAddress | undefined {
  const d = getOption(src, FoOpt.CLIENT_HARDWARE_ADDRESS);
  if (d === undefined || d.length < 1 || d[0] === 0) return undefined;
  return { htype: d[0] as number, chaddr: d.slice(1) };
}
/** client-last-transaction-time, epoch seconds (§12.6). */
export function getClientLastTransactionTime(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.CLIENT_LAST_TRANSACTION_TIME);
}
function embedded(src: OptionSource, code: number): EmbeddedOptions | undefined {
  const d = getOption(src, code);
  if (d === undefined || d.length < 4) return undefined;
  const magic = (((d[0] as number) << 24) | ((d[1] as number) << 16) | ((d[2] as number) << 8) |
    (d[3] as number)) >>> 0;
  return { magic, options: d.subarray(4) };
}
/** client-reply-options (§12.7). */
export function getClientReplyOptions(src: OptionSource): EmbeddedOptions | undefined {
  return embedded(src, FoOpt.CLIENT_REPLY_OPTIONS);
}
/** client-request-options (§12.8). */
export function getClientRequestOptions(src: OptionSource): EmbeddedOptions | undefined {
  return embedded(src, FoOpt.CLIENT_REQUEST_OPTIONS);
}
/** DDNS (§12.9). */
export function getDdns(src: OptionSource): Ddns | undefined {
  const d = getOption(src, FoOpt.DDNS);
  if (d === undefined || d.length < 2) return undefined;
  return { flags: ((d[0] as number) << 8) | (d[1] as number), domainName: d.slice(2) };
}
/** delayed-service-parameter, seconds 1-255 (§12.10). */
export function getDelayedServiceParameter(src: OptionSource): number | undefined {
  return u8Of(src, FoOpt.DELAYED_SERVICE_PARAMETER);
}
/** hash-bucket-assignment, 32 octets (§12.11, RFC 3074). */
export function getHashBucketAssignment(src: OptionSource): Uint8Array | undefined {
  return fixed(src, FoOpt.HASH_BUCKET_ASSIGNMENT)?.slice();
}
/** IP-flags (§12.12), IpFlags bits. */
export function getIpFlags(src: OptionSource): number | undefined {
  return u16Of(src, FoOpt.IP_FLAGS);
}
/** lease-expiration-time, epoch seconds (§12.13). */
export function getLeaseExpirationTime(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.LEASE_EXPIRATION_TIME);
}
/** max-unacked-bndupd (§12.14). */
export function getMaxUnackedBndupd(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.MAX_UNACKED_BNDUPD);
}
/** MCLT, seconds (§12.15). */
export function getMclt(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.MCLT);
}
/** message text (§12.16), decoded as UTF-8. */
export function getMessage(src: OptionSource): string | undefined {
  return textOf(src, FoOpt.MESSAGE);
}
/** message-digest (§12.17). */
export function getMessageDigest(src: OptionSource): MessageDigest | undefined {
  const d = fixed(src, FoOpt.MESSAGE_DIGEST);
  return d === undefined ? undefined : { type: d[0] as number, digest: d.slice(1) };
}
/** potential-expiration-time, epoch seconds (§12.18). */
export function getPotentialExpirationTime(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.POTENTIAL_EXPIRATION_TIME);
}
/** receive-timer, seconds (§12.19). */
export function getReceiveTimer(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.RECEIVE_TIMER);
}
/** protocol-version (§12.20). */
export function getProtocolVersion(src: OptionSource): number | undefined {
  return u8Of(src, FoOpt.PROTOCOL_VERSION);
}
/** reject-reason (§12.21). */
export function getRejectReason(src: OptionSource): number | undefined {
  return u8Of(src, FoOpt.REJECT_REASON);
}
/** relationship-name (§12.22). */
export function getRelationshipName(src: OptionSource): string | undefined {
  return textOf(src, FoOpt.RELATIONSHIP_NAME);
}
/** server-flags (§12.23), ServerFlags bits. */
export function getServerFlags(src: OptionSource): number | undefined {
  return u8Of(src, FoOpt.SERVER_FLAGS);
}
/** server-state (§12.24); undefined also when not a known state. */
export function getServerState(src: OptionSource): number | undefined {
  const v = u8Of(src, FoOpt.SERVER_STATE);
  return v !== undefined && SERVER_STATE_NAMES[v] !== undefined ? v : undefined;
}
/** start-time-of-state, epoch seconds (§12.25). */
export function getStartTimeOfState(src: OptionSource): number | undefined {
  return u32Of(src, FoOpt.START_TIME_OF_STATE);
}
/** TLS-reply (§12.26). */
export function getTlsReply(src: OptionSource): number | undefined {
  return u8Of(src, FoOpt.TLS_REPLY);
}
/** TLS-request (§12.27). */
export function getTlsRequest(src: OptionSource): number | undefined {
  return u8Of(src, FoOpt.TLS_REQUEST);
}
/** vendor-class-identifier (§12.28). */
export function getVendorClassIdentifier(src: OptionSource): string | undefined {
  return textOf(src, FoOpt.VENDOR_CLASS_IDENTIFIER);
}
/** vendor-specific-options: embedded code(2) length(2) options (§12.29); undefined if malformed. */
export function getVendorSpecificOptions(src: OptionSource): FailoverOption[] | undefined {
  const d = getOption(src, FoOpt.VENDOR_SPECIFIC_OPTIONS);
  if (d === undefined) return undefined;
  try {
    return decodeOptionList(new ByteReader(d, PROTOCOL));
  } catch (e) {
    if (e instanceof WireError) return undefined;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Option constructors (§12): each returns one { code, data }

function u32Data(v: number, what: string): Uint8Array {
  checkUint(v, 0xffffffff, what);
  return smallU32(v);
}
function u8Data(v: number, what: string): Uint8Array {
  checkUint(v, 0xff, what);
  const out = smallBytes(1);
  out[0] = v;
  return out;
}
function u32Option(code: number, v: number): FailoverOption {
  return { code, data: u32Data(v, failoverOptionName(code)) };
}
function u8Option(code: number, v: number): FailoverOption {
  return { code, data: u8Data(v, failoverOptionName(code)) };
}
function textOption(code: number, s: string): FailoverOption {
  return { code, data: TEXT.encode(s) };
}

/** addresses-transferred (§12.1). */
export function addressesTransferredOption(n: number): FailoverOption {
  return u32Option(FoOpt.ADDRESSES_TRANSFERRED, n);
}
/** assigned-IP-address from a uint32 (§12.2). */
export function assignedIpAddressOption(ip: number): FailoverOption {
  return u32Option(FoOpt.ASSIGNED_IP_ADDRESS, ip);
}
/** binding-status (§12.3). */
export function bindingStatusOption(status: number): FailoverOption {
  return u8Option(FoOpt.BINDING_STATUS, status);
}
/** client-identifier (§12.4). */
export function clientIdentifierOption(id: Uint8Array): FailoverOption {
  const data = smallBytes(id.length);
  data.set(id);
  return { code: FoOpt.CLIENT_IDENTIFIER, data };
}
/** client-hardware-address: htype then address (§12.5); htype MUST NOT be 0. */
export function clientHardwareAddressOption(hw: HardwareAddress): FailoverOption {
  checkUint(hw.htype, 0xff, "htype");
  if (hw.htype === 0) throw new RangeError("Cannot encode client-hardware-address: htype is 0");
  const data = smallBytes(1 + hw.chaddr.length);
  data[0] = hw.htype;
  data.set(hw.chaddr, 1);
  return { code: FoOpt.CLIENT_HARDWARE_ADDRESS, data };
}
/** client-last-transaction-time (§12.6). */
export function clientLastTransactionTimeOption(t: number): FailoverOption {
  return u32Option(FoOpt.CLIENT_LAST_TRANSACTION_TIME, t);
}
function embeddedOption(code: number, e: EmbeddedOptions): FailoverOption {
  const data = smallBytes(4 + e.options.length);
  data.set(u32Data(e.magic, "magic number"));
  data.set(e.options, 4);
  return { code, data };
}
/** client-reply-options (§12.7). */
export function clientReplyOptionsOption(e: EmbeddedOptions): FailoverOption {
  return embeddedOption(FoOpt.CLIENT_REPLY_OPTIONS, e);
}
/** client-request-options (§12.8). */
export function clientRequestOptionsOption(e: EmbeddedOptions): FailoverOption {
  return embeddedOption(FoOpt.CLIENT_REQUEST_OPTIONS, e);
}
/** DDNS (§12.9). */
export function ddnsOption(d: Ddns): FailoverOption {
  checkUint(d.flags, 0xffff, "DDNS flags");
  const data = new Uint8Array(2 + d.domainName.length);
  data[0] = d.flags >> 8;
  data[1] = d.flags & 0xff;
  data.set(d.domainName, 2);
  return { code: FoOpt.DDNS, data };
}
/** delayed-service-parameter, 1-255 seconds (§12.10). */
export function delayedServiceParameterOption(seconds: number): FailoverOption {
  return u8Option(FoOpt.DELAYED_SERVICE_PARAMETER, seconds);
}
/** hash-bucket-assignment, exactly 32 octets (§12.11). */
export function hashBucketAssignmentOption(buckets: Uint8Array): FailoverOption {
  if (buckets.length !== 32) {
    throw new RangeError(`Cannot encode hash-bucket-assignment: ${buckets.length} octets, not 32`);
  }
  return { code: FoOpt.HASH_BUCKET_ASSIGNMENT, data: buckets.slice() };
}
/** IP-flags (§12.12). */
export function ipFlagsOption(flags: number): FailoverOption {
  checkUint(flags, 0xffff, "IP-flags");
  const data = smallBytes(2);
  data[0] = flags >> 8;
  data[1] = flags;
  return { code: FoOpt.IP_FLAGS, data };
}
/** lease-expiration-time (§12.13). */
export function leaseExpirationTimeOption(t: number): FailoverOption {
  return u32Option(FoOpt.LEASE_EXPIRATION_TIME, t);
}
/** max-unacked-bndupd (§12.14). */
export function maxUnackedBndupdOption(n: number): FailoverOption {
  return u32Option(FoOpt.MAX_UNACKED_BNDUPD, n);
}
/** MCLT (§12.15). */
export function mcltOption(seconds: number): FailoverOption {
  return u32Option(FoOpt.MCLT, seconds);
}
/** message (§12.16), UTF-8. */
export function messageOption(text: string): FailoverOption {
  return textOption(FoOpt.MESSAGE, text);
}
/** message-digest (§12.17): type then 16 digest octets (zeros as a placeholder). */
export function messageDigestOption(
  digest: Uint8Array = new Uint8Array(DIGEST_LENGTH),
  type: number = DigestType.HMAC_MD5,
): FailoverOption {
  if (digest.length !== DIGEST_LENGTH) {
    throw new RangeError(`Cannot encode message-digest: ${digest.length} octets, not 16`);
  }
  const data = new Uint8Array(1 + DIGEST_LENGTH);
  data[0] = type;
  data.set(digest, 1);
  return { code: FoOpt.MESSAGE_DIGEST, data };
}
/** potential-expiration-time (§12.18). */
export function potentialExpirationTimeOption(t: number): FailoverOption {
  return u32Option(FoOpt.POTENTIAL_EXPIRATION_TIME, t);
}
/** receive-timer (§12.19). */
export function receiveTimerOption(seconds: number): FailoverOption {
  return u32Option(FoOpt.RECEIVE_TIMER, seconds);
}
/** protocol-version, one octet (§12.20). */
export function protocolVersionOption(v: number = FAILOVER_PROTOCOL_VERSION): FailoverOption {
  return u8Option(FoOpt.PROTOCOL_VERSION, v);
}
/** reject-reason (§12.21). */
export function rejectReasonOption(reason: number): FailoverOption {
  return u8Option(FoOpt.REJECT_REASON, reason);
}
/** relationship-name (§12.22). */
export function relationshipNameOption(name: string): FailoverOption {
  return textOption(FoOpt.RELATIONSHIP_NAME, name);
}
/** server-flags (§12.23). */
export function serverFlagsOption(flags: number): FailoverOption {
  return u8Option(FoOpt.SERVER_FLAGS, flags);
}
/** server-state (§12.24). */
export function serverStateOption(state: number): FailoverOption {
  return u8Option(FoOpt.SERVER_STATE, state);
}
/** start-time-of-state (§12.25). */
export function startTimeOfStateOption(t: number): FailoverOption {
  return u32Option(FoOpt.START_TIME_OF_STATE, t);
}
/** TLS-reply (§12.26). */
export function tlsReplyOption(v: number): FailoverOption {
  return u8Option(FoOpt.TLS_REPLY, v);
}
/** TLS-request (§12.27). */
export function tlsRequestOption(v: number): FailoverOption {
  return u8Option(FoOpt.TLS_REQUEST, v);
}
/** vendor-class-identifier (§12.28). */
export function vendorClassIdentifierOption(text: string): FailoverOption {
  return textOption(FoOpt.VENDOR_CLASS_IDENTIFIER, text);
}
/** vendor-specific-options from embedded options (§12.29). */
export function vendorSpecificOptionsOption(list: readonly FailoverOption[]): FailoverOption {
  const w = new ByteWriter(64);
  for (const o of list) {
    checkUint(o.code, 0xffff, "vendor option code");
    checkUint(o.data.length, 0xffff, "vendor option length");
    w.u16(o.code).u16(o.data.length).bytes(o.data);
  }
  return { code: FoOpt.VENDOR_SPECIFIC_OPTIONS, data: w.finish() };
}

// ---------------------------------------------------------------------------------------------
// Binding update transactions (§6.3, §7.1, §7.2)

/** One binding update transaction of a BNDUPD (Table 7.1-1). Times are epoch seconds. */
export interface BindingUpdate {
  assignedIpAddress: number;
  bindingStatus: number;
  ipFlags?: number;
  clientIdentifier?: Uint8Array;
  clientHardwareAddress?: HardwareAddress;
  leaseExpirationTime?: number;
  potentialExpirationTime?: number;
  startTimeOfState?: number;
  clientLastTransactionTime?: number;
  ddns?: Ddns;
  clientRequestOptions?: EmbeddedOptions;
  clientReplyOptions?: EmbeddedOptions;
}

/** One binding acknowledgement of a BNDACK: rejected when rejectReason is set (Table 7.2-1). */
export interface BindingAck {
  assignedIpAddress: number;
  rejectReason?: number;
  message?: string;
}

/**
 * Splits options into the leading message-wide options and one group per transaction, each
 * starting with its assigned-IP-address (§6.3).
 */
export function splitTransactions(
  src: OptionSource,
): { common: FailoverOption[]; transactions: FailoverOption[][] } {
  const common: FailoverOption[] = [];
  const transactions: FailoverOption[][] = [];
  for (const o of listOf(src)) {
    if (o.code === FoOpt.ASSIGNED_IP_ADDRESS) transactions.push([o]);
    else if (transactions.length === 0) common.push(o);
    else (transactions[transactions.length - 1] as FailoverOption[]).push(o);
  }
  return { common, transactions };
}

/** The options of one transaction, in ISC dhcpd 4.4.3's order (NOTES §5), assigned-IP first. */
export function bindingUpdateOptions(b: BindingUpdate): FailoverOption[] {
  const out = [assignedIpAddressOption(b.assignedIpAddress), bindingStatusOption(b.bindingStatus)];
  if (b.ipFlags !== undefined) out.push(ipFlagsOption(b.ipFlags));
  if (b.clientIdentifier !== undefined) out.push(clientIdentifierOption(b.clientIdentifier));
  if (b.clientHardwareAddress !== undefined) {
    out.push(clientHardwareAddressOption(b.clientHardwareAddress));
  }
  if (b.leaseExpirationTime !== undefined) {
    out.push(leaseExpirationTimeOption(b.leaseExpirationTime));
  }
  if (b.potentialExpirationTime !== undefined) {
    out.push(potentialExpirationTimeOption(b.potentialExpirationTime));
  }
  if (b.startTimeOfState !== undefined) out.push(startTimeOfStateOption(b.startTimeOfState));
  if (b.clientLastTransactionTime !== undefined) {
    out.push(clientLastTransactionTimeOption(b.clientLastTransactionTime));
  }
  if (b.ddns !== undefined) out.push(ddnsOption(b.ddns));
  if (b.clientRequestOptions !== undefined) {
    out.push(clientRequestOptionsOption(b.clientRequestOptions));
  }
  if (b.clientReplyOptions !== undefined) out.push(clientReplyOptionsOption(b.clientReplyOptions));
  return out;
}

/**
 * Every transaction of a BNDUPD as a BindingUpdate (§6.3). A transaction whose
 * assigned-IP-address or binding-status is missing or malformed is `undefined` in the result
 * (reject it with MISSING_BINDING_INFORMATION, §7.1.3; splitTransactions gives its options).
 */
export function getBindingUpdates(msg: FailoverMessage): (BindingUpdate | undefined)[] {
  return splitTransactions(msg).transactions.map(bindingUpdateFromOptions);
}

/** One transaction's options as a BindingUpdate; undefined without a valid address and status. */
export function bindingUpdateFromOptions(
  group: readonly FailoverOption[],
): BindingUpdate | undefined {
  const assignedIpAddress = getAssignedIpAddress(group);
  const bindingStatus = getBindingStatus(group);
  if (assignedIpAddress === undefined || bindingStatus === undefined) return undefined;
  const b: BindingUpdate = { assignedIpAddress, bindingStatus };
  const ipFlags = getIpFlags(group);
  if (ipFlags !== undefined) b.ipFlags = ipFlags;
  const clientIdentifier = getClientIdentifier(group);
  if (clientIdentifier !== undefined) b.clientIdentifier = clientIdentifier;
  const hw = getClientHardwareAddress(group);
  if (hw !== undefined) b.clientHardwareAddress = hw;
  const lease = getLeaseExpirationTime(group);
  if (lease !== undefined) b.leaseExpirationTime = lease;
  const potential = getPotentialExpirationTime(group);
  if (potential !== undefined) b.potentialExpirationTime = potential;
  const start = getStartTimeOfState(group);
  if (start !== undefined) b.startTimeOfState = start;
  const cltt = getClientLastTransactionTime(group);
  if (cltt !== undefined) b.clientLastTransactionTime = cltt;
  const ddns = getDdns(group);
  if (ddns !== undefined) b.ddns = ddns;
  const req = getClientRequestOptions(group);
  if (req !== undefined) b.clientRequestOptions = req;
  const rep = getClientReplyOptions(group);
  if (rep !== undefined) b.clientReplyOptions = rep;
  return b;
}

/** Every transaction of a BNDACK (§6.3); groups without a valid address are skipped. */
export function getBindingAcks(msg: FailoverMessage): BindingAck[] {
  const out: BindingAck[] = [];
  for (const group of splitTransactions(msg).transactions) {
    const assignedIpAddress = getAssignedIpAddress(group);
    if (assignedIpAddress === undefined) continue;
    const ack: BindingAck = { assignedIpAddress };
    const reason = getRejectReason(group);
    if (reason !== undefined) ack.rejectReason = reason;
    const text = getMessage(group);
    if (text !== undefined) ack.message = text;
    out.push(ack);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Message builders (§7). Each returns a message without a digest: use signFailover to add one.

function make(type: number, h: FailoverHeader, options: FailoverOption[]): FailoverMessage {
  return { type, time: h.time, xid: h.xid, additionalHeader: new Uint8Array(0), options };
}

/** CONNECT parameters (Table 7.8-1). */
export interface ConnectParams {
  relationshipName: string;
  maxUnackedBndupd: number;
  receiveTimer: number;
  vendorClassIdentifier: string;
  /** Defaults to 1. */
  protocolVersion?: number;
  /** TLS-request; omitted only when the connection already runs over TLS (undefined). */
  tlsRequest: number | undefined;
  mclt: number;
  /** 32 octets (RFC 3074). */
  hashBucketAssignment: Uint8Array;
  delayedServiceParameter?: number;
}

/** CONNECT (§7.8), options in ISC dhcpd's order. */
export function buildConnect(h: FailoverHeader, p: ConnectParams): FailoverMessage {
  const o = [
    relationshipNameOption(p.relationshipName),
    maxUnackedBndupdOption(p.maxUnackedBndupd),
    receiveTimerOption(p.receiveTimer),
    vendorClassIdentifierOption(p.vendorClassIdentifier),
    protocolVersionOption(p.protocolVersion ?? FAILOVER_PROTOCOL_VERSION),
  ];
  if (p.tlsRequest !== undefined) o.push(tlsRequestOption(p.tlsRequest));
  o.push(mcltOption(p.mclt), hashBucketAssignmentOption(p.hashBucketAssignment));
  if (p.delayedServiceParameter !== undefined) {
    o.push(delayedServiceParameterOption(p.delayedServiceParameter));
  }
  return make(MsgType.CONNECT, h, o);
}

/** CONNECTACK parameters (Table 7.9-1): with rejectReason it is a rejection. */
export interface ConnectAckParams {
  relationshipName: string;
  /** Required when accepting; not sent when rejecting. */
  maxUnackedBndupd?: number;
  receiveTimer?: number;
  vendorClassIdentifier?: string;
  protocolVersion?: number;
  /** Sent when the CONNECT carried TLS-request. */
  tlsReply?: number;
  rejectReason?: number;
  message?: string;
}

/** CONNECTACK (§7.9): the reply copies the CONNECT's xid. Throws TypeError if an accept lacks a field. */
export function buildConnectAck(h: FailoverHeader, p: ConnectAckParams): FailoverMessage {
  const o = [relationshipNameOption(p.relationshipName)];
  if (p.rejectReason === undefined) {
    if (
      p.maxUnackedBndupd === undefined || p.receiveTimer === undefined ||
      p.vendorClassIdentifier === undefined
    ) {
      throw new TypeError(
        "Cannot build CONNECTACK: an accept needs maxUnackedBndupd, receiveTimer and vendorClassIdentifier",
      );
    }
    o.push(
      maxUnackedBndupdOption(p.maxUnackedBndupd),
      receiveTimerOption(p.receiveTimer),
      vendorClassIdentifierOption(p.vendorClassIdentifier),
    );
  }
  o.push(protocolVersionOption(p.protocolVersion ?? FAILOVER_PROTOCOL_VERSION));
  if (p.tlsReply !== undefined) o.push(tlsReplyOption(p.tlsReply));
  if (p.rejectReason !== undefined) {
    o.push(rejectReasonOption(p.rejectReason));
    if (p.message !== undefined) o.push(messageOption(p.message));
  }
  return make(MsgType.CONNECTACK, h, o);
}

/** STATE parameters (Table 7.10-1). */
export interface StateParams {
  serverState: number;
  serverFlags: number;
  startTimeOfState: number;
}

/** STATE (§7.10). */
export function buildState(h: FailoverHeader, p: StateParams): FailoverMessage {
  return make(MsgType.STATE, h, [
    serverStateOption(p.serverState),
    serverFlagsOption(p.serverFlags),
    startTimeOfStateOption(p.startTimeOfState),
  ]);
}

/** BNDUPD with one or more transactions (§7.1, §6.3). */
export function buildBndupd(
  h: FailoverHeader,
  bindings: BindingUpdate | readonly BindingUpdate[],
): FailoverMessage {
  const list = Array.isArray(bindings) ? bindings : [bindings as BindingUpdate];
  if (list.length === 0) throw new RangeError("Cannot build BNDUPD: no binding");
  return make(MsgType.BNDUPD, h, list.flatMap(bindingUpdateOptions));
}

/**
 * BNDUPD from the options of its transactions, as bindingUpdateOptions() made them (§7.1,
 * §6.3): for a sender that has already built them to measure the message.
 */
export function buildBndupdFromOptions(
  h: FailoverHeader,
  transactions: readonly (readonly FailoverOption[])[],
): FailoverMessage {
  if (transactions.length === 0) throw new RangeError("Cannot build BNDUPD: no binding");
  return make(MsgType.BNDUPD, h, transactions.flat());
}

/** BNDACK for one or more transactions (§7.2, §6.3): the reply copies the BNDUPD's xid. */
export function buildBndack(
  h: FailoverHeader,
  acks: BindingAck | readonly BindingAck[],
): FailoverMessage {
  const list = Array.isArray(acks) ? acks : [acks as BindingAck];
  if (list.length === 0) throw new RangeError("Cannot build BNDACK: no address");
  const o: FailoverOption[] = [];
  for (const a of list) {
    o.push(assignedIpAddressOption(a.assignedIpAddress));
    if (a.rejectReason !== undefined) {
      o.push(rejectReasonOption(a.rejectReason));
      if (a.message !== undefined) o.push(messageOption(a.message));
    }
  }
  return make(MsgType.BNDACK, h, o);
}

/** DISCONNECT (§7.12): reject-reason, then message when given. */
export function buildDisconnect(
  h: FailoverHeader,
  p: { rejectReason: number; message?: string },
): FailoverMessage {
  const o = [rejectReasonOption(p.rejectReason)];
  if (p.message !== undefined) o.push(messageOption(p.message));
  return make(MsgType.DISCONNECT, h, o);
}

/** POOLRESP (§7.7): copies the POOLREQ's xid. */
export function buildPoolresp(h: FailoverHeader, addressesTransferred: number): FailoverMessage {
  return make(MsgType.POOLRESP, h, [addressesTransferredOption(addressesTransferred)]);
}
/** POOLREQ (§7.6): no options. */
export function buildPoolreq(h: FailoverHeader): FailoverMessage {
  return make(MsgType.POOLREQ, h, []);
}
/** UPDREQ (§7.3): no options. */
export function buildUpdreq(h: FailoverHeader): FailoverMessage {
  return make(MsgType.UPDREQ, h, []);
}
/** UPDREQALL (§7.4): no options. */
export function buildUpdreqall(h: FailoverHeader): FailoverMessage {
  return make(MsgType.UPDREQALL, h, []);
}
/** UPDDONE (§7.5): copies the UPDREQ/UPDREQALL xid. */
export function buildUpddone(h: FailoverHeader): FailoverMessage {
  return make(MsgType.UPDDONE, h, []);
}
/** CONTACT (§7.11): no options. */
export function buildContact(h: FailoverHeader): FailoverMessage {
  return make(MsgType.CONTACT, h, []);
}

// ---------------------------------------------------------------------------------------------
// Validation of the §7 option tables

/** One problem found by checkFailover. */
export interface FailoverProblem {
  /** "error": MUST / MUST NOT broken (reject); "warning": SHOULD / tolerated ISC behaviour. */
  level: "error" | "warning";
  /** The reject-reason to send (RejectReason). */
  rejectReason: number;
  /** The option concerned, when there is one. */
  optionCode?: number;
  /** Index of the transaction (§6.3) in a BNDUPD/BNDACK, when relevant. */
  transaction?: number;
  message: string;
}

/** The first error, with the reject-reason to send: see validateFailover. */
export type FailoverValidationError = FailoverProblem;

/** Options for validateFailover. */
export interface ValidateFailoverOptions {
  /** Treat warnings as errors (draft-exact, rejects ISC dhcpd 4.4.3's BNDUPDs). */
  strict?: boolean;
}

/**
 * Checks a decoded message against its §7 option table; undefined when acceptable.
 * @example const bad = validateFailover(msg); if (bad) send(buildBndack(h, { assignedIpAddress, rejectReason: bad.rejectReason }))
 */
export function validateFailover(
  msg: FailoverMessage,
  options: ValidateFailoverOptions = {},
): FailoverValidationError | undefined {
  const problems = checkFailover(msg);
  return problems.find((p) => p.level === "error") ??
    (options.strict === true ? problems[0] : undefined);
}

/** Options every message may carry whatever its table says (§6.1 unknown, §11.1, §12.29). */
const ANY_MESSAGE = new Set<number>([
  FoOpt.MESSAGE_DIGEST,
  FoOpt.VENDOR_CLASS_IDENTIFIER,
  FoOpt.VENDOR_SPECIFIC_OPTIONS,
]);

/** Message-wide MUST options and the reject-reason for each one missing (§7.8, §7.10, §7.7, §7.12). */
const REQUIRED: Record<number, ReadonlyArray<readonly [number, number]>> = {
  [MsgType.CONNECT]: [
    // Table 7.8-1; the reasons are the closest §12.21 codes, §7.8.2 names none for "missing".
    [FoOpt.RELATIONSHIP_NAME, RejectReason.INVALID_PARTNER],
    [FoOpt.MAX_UNACKED_BNDUPD, RejectReason.UNKNOWN_CONNECTION_REASON],
    [FoOpt.RECEIVE_TIMER, RejectReason.UNKNOWN_CONNECTION_REASON],
    [FoOpt.VENDOR_CLASS_IDENTIFIER, RejectReason.UNKNOWN_CONNECTION_REASON],
    [FoOpt.PROTOCOL_VERSION, RejectReason.PROTOCOL_VERSION_MISMATCH],
    [FoOpt.MCLT, RejectReason.INVALID_MCLT],
    [FoOpt.HASH_BUCKET_ASSIGNMENT, RejectReason.HASH_BUCKET_CONFLICT],
  ],
  [MsgType.STATE]: [
    [FoOpt.SERVER_STATE, RejectReason.UNKNOWN],
    [FoOpt.SERVER_FLAGS, RejectReason.UNKNOWN],
    [FoOpt.START_TIME_OF_STATE, RejectReason.UNKNOWN],
  ],
  [MsgType.POOLRESP]: [[FoOpt.ADDRESSES_TRANSFERRED, RejectReason.UNKNOWN]],
  [MsgType.DISCONNECT]: [[FoOpt.REJECT_REASON, RejectReason.UNKNOWN]],
};

/** Options a message may carry besides ANY_MESSAGE; others give a warning (§7). */
const ALLOWED: Record<number, ReadonlySet<number>> = {
  [MsgType.CONNECT]: new Set([
    FoOpt.RELATIONSHIP_NAME,
    FoOpt.MAX_UNACKED_BNDUPD,
    FoOpt.RECEIVE_TIMER,
    FoOpt.PROTOCOL_VERSION,
    FoOpt.TLS_REQUEST,
    FoOpt.MCLT,
    FoOpt.HASH_BUCKET_ASSIGNMENT,
    FoOpt.DELAYED_SERVICE_PARAMETER,
  ]),
  [MsgType.CONNECTACK]: new Set([
    FoOpt.RELATIONSHIP_NAME,
    FoOpt.MAX_UNACKED_BNDUPD,
    FoOpt.RECEIVE_TIMER,
    FoOpt.PROTOCOL_VERSION,
    FoOpt.TLS_REPLY,
    FoOpt.REJECT_REASON,
    FoOpt.MESSAGE,
  ]),
  [MsgType.STATE]: new Set([FoOpt.SERVER_STATE, FoOpt.SERVER_FLAGS, FoOpt.START_TIME_OF_STATE]),
  [MsgType.POOLRESP]: new Set([FoOpt.ADDRESSES_TRANSFERRED]),
  [MsgType.DISCONNECT]: new Set([FoOpt.REJECT_REASON, FoOpt.MESSAGE]),
  [MsgType.POOLREQ]: new Set(),
  [MsgType.UPDREQ]: new Set(),
  [MsgType.UPDREQALL]: new Set(),
  [MsgType.UPDDONE]: new Set(),
  [MsgType.CONTACT]: new Set(),
};

/** The reason for a malformed or misplaced option in each message type. */
function genericReason(type: number): number {
  if (type === MsgType.BNDUPD || type === MsgType.BNDACK) {
    return RejectReason.MISSING_BINDING_INFORMATION; // §7.1.3 "insufficient information"
  }
  if (type === MsgType.CONNECT || type === MsgType.CONNECTACK) {
    return RejectReason.UNKNOWN_CONNECTION_REASON;
  }
  return RejectReason.UNKNOWN;
}

/**
 * Every problem of a message against §6.2, §7 and §12: errors (MUST / MUST NOT) first in wire
 * order, then warnings. Unknown option codes are never a problem (§6.1).
 */
export function checkFailover(msg: FailoverMessage): FailoverProblem[] {
  const out: FailoverProblem[] = [];
  const type = msg.type;
  const generic = genericReason(type);
  const err = (rejectReason: number, message: string, extra: Partial<FailoverProblem> = {}) =>
    out.push({ level: "error", rejectReason, message, ...extra });
  const warn = (message: string, extra: Partial<FailoverProblem> = {}) =>
    out.push({ level: "warning", rejectReason: generic, message, ...extra });

  // §12: fixed-length options with the wrong length.
  msg.options.forEach((o) => {
    const want = FAILOVER_OPTION_LENGTHS[o.code];
    if (want !== undefined && o.data.length !== want) {
      err(
        generic,
        `Option ${failoverOptionName(o.code)} has length ${o.data.length}, expected ${want}`,
        { optionCode: o.code },
      );
    }
  });
  // §12.17 / §11.1: the digest MUST be the first option.
  const digestAt = msg.options.findIndex((o) => o.code === FoOpt.MESSAGE_DIGEST);
  if (digestAt > 0) {
    err(RejectReason.DIGEST_FAILED, "Option message-digest is not the first option", {
      optionCode: FoOpt.MESSAGE_DIGEST,
    });
  }
  const digest = getMessageDigest(msg);
  if (digest !== undefined && digest.type !== DigestType.HMAC_MD5) {
    err(RejectReason.DIGEST_FAILED, `Option message-digest has type ${digest.type}, expected 1`, {
      optionCode: FoOpt.MESSAGE_DIGEST,
    });
  }
  // §12.29: vendor-specific-options without a vendor-class-identifier MUST be ignored.
  if (
    getOption(msg, FoOpt.VENDOR_SPECIFIC_OPTIONS) !== undefined &&
    getOption(msg, FoOpt.VENDOR_CLASS_IDENTIFIER) === undefined
  ) {
    warn("Option vendor-specific-options without vendor-class-identifier is ignored", {
      optionCode: FoOpt.VENDOR_SPECIFIC_OPTIONS,
    });
  }

  if (type === MsgType.BNDUPD) checkBndupd(msg, err, warn);
  else if (type === MsgType.BNDACK) checkBndack(msg, err, warn);
  else {
    // §6.2: outside BNDUPD/BNDACK an option appears once; a repeat is an error.
    const seen = new Set<number>();
    for (const o of msg.options) {
      if (seen.has(o.code) && FAILOVER_OPTION_NAMES[o.code] !== undefined) {
        err(generic, `Option ${failoverOptionName(o.code)} appears twice`, { optionCode: o.code });
      }
      seen.add(o.code);
    }
    for (const [code, reason] of REQUIRED[type] ?? []) {
      if (getOption(msg, code) === undefined) {
        err(reason, `${msgTypeName(type)} lacks required option ${failoverOptionName(code)}`, {
          optionCode: code,
        });
      }
    }
    const allowed = ALLOWED[type];
    if (allowed !== undefined) {
      for (const o of msg.options) {
        if (
          !allowed.has(o.code) && !ANY_MESSAGE.has(o.code) &&
          FAILOVER_OPTION_NAMES[o.code] !== undefined
        ) {
          warn(`${msgTypeName(type)} carries unexpected option ${failoverOptionName(o.code)}`, {
            optionCode: o.code,
          });
        }
      }
    }
    if (type === MsgType.CONNECT) checkConnect(msg, err, warn);
    else if (type === MsgType.CONNECTACK) checkConnectAck(msg, err, warn);
    else if (type === MsgType.STATE) {
      const s = getOption(msg, FoOpt.SERVER_STATE);
      if (s?.length === 1 && SERVER_STATE_NAMES[s[0] as number] === undefined) {
        err(RejectReason.UNKNOWN, `Option server-state has unknown value ${s[0]}`, {
          optionCode: FoOpt.SERVER_STATE,
        });
      }
    } else if (type === MsgType.DISCONNECT && getOption(msg, FoOpt.MESSAGE) === undefined) {
      warn("DISCONNECT lacks option message (SHOULD)", { optionCode: FoOpt.MESSAGE });
    }
  }
  return [...out.filter((p) => p.level === "error"), ...out.filter((p) => p.level === "warning")];
}

type Report = (rejectReason: number, message: string, extra?: Partial<FailoverProblem>) => void;
type Warn = (message: string, extra?: Partial<FailoverProblem>) => void;

function checkConnect(msg: FailoverMessage, err: Report, warn: Warn): void {
  // §7.8.1: max-unacked-bndupd MUST be at least 1.
  if (getMaxUnackedBndupd(msg) === 0) {
    err(RejectReason.UNKNOWN_CONNECTION_REASON, "Option max-unacked-bndupd is 0, must be >= 1", {
      optionCode: FoOpt.MAX_UNACKED_BNDUPD,
    });
  }
  // Table 7.8-1 note 1: TLS-request MUST unless the connection already runs over TLS.
  if (getOption(msg, FoOpt.TLS_REQUEST) === undefined) {
    warn("CONNECT lacks TLS-request (allowed only over TLS)", { optionCode: FoOpt.TLS_REQUEST });
  }
  // §12.10: delayed-service-parameter MUST come with hash-bucket-assignment (checked above).
}

function checkConnectAck(msg: FailoverMessage, err: Report, _warn: Warn): void {
  const reason = RejectReason.UNKNOWN_CONNECTION_REASON;
  const need = (code: number) => {
    if (getOption(msg, code) === undefined) {
      err(reason, `CONNECTACK lacks required option ${failoverOptionName(code)}`, {
        optionCode: code,
      });
    }
  };
  const forbid = (code: number, why: string) => {
    if (getOption(msg, code) !== undefined) {
      err(reason, `CONNECTACK ${why} carries option ${failoverOptionName(code)}`, {
        optionCode: code,
      });
    }
  };
  // Table 7.9-1.
  need(FoOpt.RELATIONSHIP_NAME);
  need(FoOpt.PROTOCOL_VERSION);
  forbid(FoOpt.MCLT, "(accept or reject)");
  forbid(FoOpt.HASH_BUCKET_ASSIGNMENT, "(accept or reject)");
  if (getOption(msg, FoOpt.REJECT_REASON) === undefined) {
    need(FoOpt.MAX_UNACKED_BNDUPD);
    need(FoOpt.RECEIVE_TIMER);
    need(FoOpt.VENDOR_CLASS_IDENTIFIER);
    forbid(FoOpt.MESSAGE, "accepting");
  } else {
    forbid(FoOpt.MAX_UNACKED_BNDUPD, "rejecting");
    forbid(FoOpt.RECEIVE_TIMER, "rejecting");
    forbid(FoOpt.VENDOR_CLASS_IDENTIFIER, "rejecting");
  }
}

/** Options a BNDUPD transaction may carry (Table 7.1-1). */
const BNDUPD_TRANSACTION = new Set<number>([
  FoOpt.ASSIGNED_IP_ADDRESS,
  FoOpt.IP_FLAGS,
  FoOpt.BINDING_STATUS,
  FoOpt.CLIENT_IDENTIFIER,
  FoOpt.CLIENT_HARDWARE_ADDRESS,
  FoOpt.LEASE_EXPIRATION_TIME,
  FoOpt.POTENTIAL_EXPIRATION_TIME,
  FoOpt.START_TIME_OF_STATE,
  FoOpt.CLIENT_LAST_TRANSACTION_TIME,
  FoOpt.DDNS,
  FoOpt.CLIENT_REQUEST_OPTIONS,
  FoOpt.CLIENT_REPLY_OPTIONS,
]);

function checkBndupd(msg: FailoverMessage, err: Report, warn: Warn): void {
  const missing = RejectReason.MISSING_BINDING_INFORMATION;
  const { common, transactions } = splitTransactions(msg);
  for (const o of common) {
    if (BNDUPD_TRANSACTION.has(o.code)) {
      // §6.3 note 3: assigned-IP-address MUST be the first option of a transaction.
      err(missing, `BNDUPD option ${failoverOptionName(o.code)} comes before assigned-IP-address`, {
        optionCode: o.code,
      });
    }
  }
  if (transactions.length === 0) {
    err(missing, "BNDUPD lacks required option assigned-IP-address", {
      optionCode: FoOpt.ASSIGNED_IP_ADDRESS,
    });
  }
  transactions.forEach((group, transaction) => {
    const at = { transaction };
    const seen = new Set<number>();
    for (const o of group) {
      if (seen.has(o.code) && FAILOVER_OPTION_NAMES[o.code] !== undefined) {
        err(missing, `BNDUPD option ${failoverOptionName(o.code)} appears twice in a transaction`, {
          optionCode: o.code,
          ...at,
        });
      }
      seen.add(o.code);
      if (
        !BNDUPD_TRANSACTION.has(o.code) && !ANY_MESSAGE.has(o.code) &&
        FAILOVER_OPTION_NAMES[o.code] !== undefined
      ) {
        warn(`BNDUPD carries unexpected option ${failoverOptionName(o.code)}`, {
          optionCode: o.code,
          ...at,
        });
      }
    }
    const has = (code: number) => getOption(group, code) !== undefined;
    const statusData = getOption(group, FoOpt.BINDING_STATUS);
    if (statusData === undefined) {
      err(missing, "BNDUPD lacks required option binding-status", {
        optionCode: FoOpt.BINDING_STATUS,
        ...at,
      });
      return;
    }
    const status = getBindingStatus(group);
    if (status === undefined) {
      if (statusData.length === 1) {
        err(missing, `Option binding-status has unknown value ${statusData[0]}`, {
          optionCode: FoOpt.BINDING_STATUS,
          ...at,
        });
      }
      return;
    }
    const name = bindingStatusName(status);
    const clientBound = status === BindingStatus.ACTIVE || status === BindingStatus.EXPIRED ||
      status === BindingStatus.RELEASED;
    // Table 7.1-1, one rule per row.
    if (clientBound && !has(FoOpt.CLIENT_HARDWARE_ADDRESS)) {
      err(missing, `BNDUPD ${name} lacks required option client-hardware-address`, {
        optionCode: FoOpt.CLIENT_HARDWARE_ADDRESS,
        ...at,
      });
    }
    if (status === BindingStatus.ABANDONED) {
      for (const code of [FoOpt.CLIENT_IDENTIFIER, FoOpt.CLIENT_HARDWARE_ADDRESS]) {
        if (has(code)) {
          err(RejectReason.UNKNOWN, `BNDUPD ABANDONED carries option ${failoverOptionName(code)}`, {
            optionCode: code,
            ...at,
          });
        }
      }
    }
    for (const code of [FoOpt.LEASE_EXPIRATION_TIME, FoOpt.POTENTIAL_EXPIRATION_TIME]) {
      if (status === BindingStatus.ACTIVE && !has(code)) {
        err(missing, `BNDUPD ACTIVE lacks required option ${failoverOptionName(code)}`, {
          optionCode: code,
          ...at,
        });
      } else if (status !== BindingStatus.ACTIVE && has(code)) {
        // MUST NOT in the table, but ISC dhcpd 4.4.3 always sends it: tolerated.
        warn(`BNDUPD ${name} carries option ${failoverOptionName(code)} (MUST NOT)`, {
          optionCode: code,
          ...at,
        });
      }
    }
    if (
      (status === BindingStatus.ACTIVE || status === BindingStatus.RELEASED) &&
      !has(FoOpt.CLIENT_LAST_TRANSACTION_TIME)
    ) {
      err(missing, `BNDUPD ${name} lacks required option client-last-transaction-time`, {
        optionCode: FoOpt.CLIENT_LAST_TRANSACTION_TIME,
        ...at,
      });
    }
    if (!has(FoOpt.START_TIME_OF_STATE)) {
      warn(`BNDUPD ${name} lacks option start-time-of-state (SHOULD)`, {
        optionCode: FoOpt.START_TIME_OF_STATE,
        ...at,
      });
    }
    // Table 7.1-1 note 4: IP-flags MUST appear if any flag is set; nothing to check without it.
  });
}

function checkBndack(msg: FailoverMessage, err: Report, warn: Warn): void {
  const missing = RejectReason.MISSING_BINDING_INFORMATION;
  const { common, transactions } = splitTransactions(msg);
  for (const o of common) {
    if (o.code === FoOpt.REJECT_REASON || o.code === FoOpt.MESSAGE) {
      err(missing, `BNDACK option ${failoverOptionName(o.code)} comes before assigned-IP-address`, {
        optionCode: o.code,
      });
    }
  }
  if (transactions.length === 0) {
    err(missing, "BNDACK lacks required option assigned-IP-address", {
      optionCode: FoOpt.ASSIGNED_IP_ADDRESS,
    });
  }
  transactions.forEach((group, transaction) => {
    const seen = new Set<number>();
    for (const o of group) {
      if (seen.has(o.code) && FAILOVER_OPTION_NAMES[o.code] !== undefined) {
        err(missing, `BNDACK option ${failoverOptionName(o.code)} appears twice in a transaction`, {
          optionCode: o.code,
          transaction,
        });
      }
      seen.add(o.code);
      if (
        o.code !== FoOpt.ASSIGNED_IP_ADDRESS && o.code !== FoOpt.REJECT_REASON &&
        o.code !== FoOpt.MESSAGE && !ANY_MESSAGE.has(o.code) &&
        FAILOVER_OPTION_NAMES[o.code] !== undefined
      ) {
        // Table 7.2-1: every other binding option SHOULD NOT appear.
        warn(`BNDACK carries option ${failoverOptionName(o.code)} (SHOULD NOT)`, {
          optionCode: o.code,
          transaction,
        });
      }
    }
    const rejected = seen.has(FoOpt.REJECT_REASON);
    if (seen.has(FoOpt.MESSAGE) && !rejected) {
      warn("BNDACK accept carries option message (SHOULD NOT)", {
        optionCode: FoOpt.MESSAGE,
        transaction,
      });
    }
    if (rejected && !seen.has(FoOpt.MESSAGE)) {
      warn("BNDACK reject lacks option message (SHOULD)", {
        optionCode: FoOpt.MESSAGE,
        transaction,
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Message digest (§11.1)

/** A shared secret as bytes or UTF-8 text. */
export type FailoverSecret = Uint8Array | string;

/** Result of verifyFailover (§11.1). */
export type DigestVerdict =
  /** Digest present and correct. */
  | { status: "ok" }
  /** No secret configured and no digest: nothing to check. */
  | { status: "unsigned" }
  /** Secret configured, no digest: reject with 21 "Missing message digest". */
  | { status: "missing"; rejectReason: 21 }
  /** Digest present, no secret configured: reject with 13 "Message digest not configured". */
  | { status: "unexpected"; rejectReason: 13 }
  /** Digest wrong, misplaced or of an unknown type: reject with 20 "Message digest failed to compare". */
  | { status: "bad"; rejectReason: 20 };

function hmac(secret: FailoverSecret, bytes: Uint8Array): Uint8Array {
  const h = createHmac(
    "md5",
    typeof secret === "string" ? new TextEncoder().encode(secret) : secret,
  );
  h.update(bytes);
  return new Uint8Array(h.digest());
}

/**
 * Returns the encoded message with a correct HMAC-MD5 message-digest as its first option
 * (§11.1, §12.17); any digest already present is replaced.
 * @example tcp.write(signFailover(buildContact({ time, xid }), secret))
 */
export function signFailover(
  msg: FailoverMessage | Uint8Array,
  secret: FailoverSecret,
): Uint8Array {
  const m = msg instanceof Uint8Array ? decodeFailover(msg, { allowUnknownTypes: true }) : msg;
  const unsigned: FailoverMessage = {
    ...m,
    options: [
      messageDigestOption(),
      ...m.options.filter((o) => o.code !== FoOpt.MESSAGE_DIGEST),
    ],
  };
  const bytes = encodeFailover(unsigned);
  const at = FAILOVER_HEADER_LENGTH + m.additionalHeader.length + 4 + 1; // header, code+len, type
  bytes.set(hmac(secret, bytes), at);
  return bytes;
}

/**
 * Checks the message-digest of a received, framed message (§11.1). Pass `undefined` as the
 * secret when none is configured, and `decoded` when the caller has decoded `bytes` already
 * (saves decoding them again). Throws WireError if the bytes are not a well-formed message.
 * @example const v = verifyFailover(frame, secret); if (v.status !== "ok") disconnect(v.rejectReason)
 */
export function verifyFailover(
  bytes: Uint8Array,
  secret: FailoverSecret | undefined,
  decoded?: FailoverMessage,
): DigestVerdict {
  const msg = decoded ?? decodeFailover(bytes, { allowUnknownTypes: true });
  const present = msg.options.some((o) => o.code === FoOpt.MESSAGE_DIGEST);
  if (!present) {
    return secret === undefined ? { status: "unsigned" } : {
      status: "missing",
      rejectReason: RejectReason.MISSING_DIGEST,
    };
  }
  if (secret === undefined) {
    return { status: "unexpected", rejectReason: RejectReason.DIGEST_NOT_CONFIGURED };
  }
  const bad = { status: "bad", rejectReason: RejectReason.DIGEST_FAILED } as const;
  const first = msg.options[0];
  if (
    first === undefined || first.code !== FoOpt.MESSAGE_DIGEST ||
    first.data.length !== 1 + DIGEST_LENGTH || first.data[0] !== DigestType.HMAC_MD5
  ) {
    return bad;
  }
  const at = FAILOVER_HEADER_LENGTH + msg.additionalHeader.length + 4 + 1;
  const copy = bytes.slice();
  copy.fill(0, at, at + DIGEST_LENGTH);
  const want = hmac(secret, copy);
  const got = bytes.subarray(at, at + DIGEST_LENGTH);
  return timingSafeEqual(want, got) ? { status: "ok" } : bad;
}

// ---------------------------------------------------------------------------------------------
// Replay protection (§11.1)

/** True for replies, whose xid copies the request's (§6.1) and so does not increase. */
export function isReplyMsgType(type: number): boolean {
  return type === MsgType.POOLRESP || type === MsgType.BNDACK || type === MsgType.CONNECTACK ||
    type === MsgType.UPDDONE;
}

/** Verdict of ReplayGuard.check. */
export type ReplayVerdict = "ok" | "stale-connect" | "xid-not-increasing";

/** How far below the highest xid seen an unseen xid is still taken (see ReplayGuard). */
export const REPLAY_XID_WINDOW = 64;

/**
 * Replay checks of §11.1 for one partner: a CONNECT's time must be later than every earlier
 * CONNECT's, and the xid of each message the partner originates must be greater than the last
 * one on the connection. Replies (BNDACK, CONNECTACK, UPDDONE, POOLRESP) copy our xids and are
 * exempt, as ISC dhcpd numbers its own messages 0, 1, 2, ... per connection (NOTES §5).
 *
 * One tolerance: an xid at most REPLAY_XID_WINDOW below the highest seen that has not been
 * seen on this connection is taken too. A duet partner numbers a BNDUPD when it builds it and
 * sends it after the commit that makes it durable, so a CONTACT numbered later can overtake it
 * (lib/failover/endpoint.ts); the strict rule would drop the link for that. A message seen
 * before, or older than the window, is still refused, which is what replay protection needs.
 */
export class ReplayGuard {
  #lastConnectTime: number | undefined;
  #lastXid: number | undefined;
  /** The xids seen within the window below #lastXid. */
  #recent = new Set<number>();

  /** Starts from a CONNECT time remembered from an earlier run, if any. */
  constructor(lastConnectTime?: number) {
    this.#lastConnectTime = lastConnectTime;
  }

  /** Time of the newest CONNECT accepted, for persisting. */
  get lastConnectTime(): number | undefined {
    return this.#lastConnectTime;
  }

  /** Forgets the xid sequence: call when a new TCP connection is established. */
  newConnection(): void {
    this.#lastXid = undefined;
    this.#recent.clear();
  }

  /** Checks a received message and, when it passes, remembers its time or xid. */
  check(msg: { type: number; time: number; xid: number }): ReplayVerdict {
    if (msg.type === MsgType.CONNECT) {
      // Strictly older: a partner that reconnects within the same second (a restart, a
      // dropped connection) must not be locked out; times have one-second resolution.
      if (this.#lastConnectTime !== undefined && msg.time < this.#lastConnectTime) {
        return "stale-connect";
      }
      this.#lastConnectTime = msg.time;
      // CONNECT starts the connection's sequence (§7.8.1).
      this.#lastXid = msg.xid;
      this.#recent = new Set([msg.xid]);
      return "ok";
    }
    if (isReplyMsgType(msg.type)) return "ok";
    const last = this.#lastXid;
    if (last !== undefined && msg.xid <= last) {
      if (last - msg.xid >= REPLAY_XID_WINDOW || this.#recent.has(msg.xid)) {
        return "xid-not-increasing";
      }
      this.#recent.add(msg.xid); // overtaken, not replayed
      return "ok";
    }
    this.#lastXid = msg.xid;
    this.#recent.add(msg.xid);
    for (const x of this.#recent) if (msg.xid - x >= REPLAY_XID_WINDOW) this.#recent.delete(x);
    return "ok";
  }
}

function invert(table: Record<string, number>): Record<number, string> {
  const out: Record<number, string> = {};
  for (const [name, code] of Object.entries(table)) out[code] = name;
  return out;
}
