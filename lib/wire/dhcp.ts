/**
 * DHCPv4 wire codec: decodeDhcp / encodeDhcp, the option code table and typed getters
 * (RFC 2131 §2, §4.1; RFC 2132; RFC 3396 long options; RFC 3046 relay agent information).
 *
 * Decisions where the RFCs leave room (each is tested in tests/wire/dhcp_test.ts):
 * - A missing END is accepted when the options simply run to the end of their field or of the
 *   datagram. RFC 2131 §4.1 requires END, but ISC dhcpd's option parser stops at the end of the
 *   buffer without it, and rejecting would only lose packets that are otherwise complete.
 * - Bytes after END are not inspected. RFC 2131 allows only PAD there; some clients and relays
 *   leave junk, and ignoring it changes nothing about the options that were read.
 * - Option 52 (overload) found inside `file` or `sname` is ignored: RFC 2131 §4.1 says it MUST be
 *   in the options field.
 * - Option 53 with a length other than 1 makes the whole message undecodable (WireError). Other
 *   fixed-size options with a wrong size are kept as raw bytes; their getter returns undefined.
 * - A single-instance option value is a view into the input; the value of a repeated option
 *   (RFC 3396) is the instances joined into a new array.
 */
import { ByteWriter, joinParts } from "./bytes.ts";
import { DhcpOptions } from "./dhcp_options.ts";
import { WireError } from "../errors.ts";

/** DHCP message types, option 53 values (RFC 2132 §9.6). */
export const DhcpType = {
  DHCPDISCOVER: 1,
  DHCPOFFER: 2,
  DHCPREQUEST: 3,
  DHCPDECLINE: 4,
  DHCPACK: 5,
  DHCPNAK: 6,
  DHCPRELEASE: 7,
  DHCPINFORM: 8,
} as const;

/** Message type number to spec name, e.g. 5 -> "DHCPACK" (RFC 2132 §9.6). */
export const DHCP_TYPE_NAMES: Record<number, string> = invert(DhcpType);

/**
 * Name of a message type for logs: "DHCPACK", "unknown(42)", or "none" when absent (BOOTP).
 * @example dhcpTypeName(getMessageType(msg)) // "DHCPDISCOVER"
 */
export function dhcpTypeName(t: number | undefined): string {
  if (t === undefined) return "none";
  return DHCP_TYPE_NAMES[t] ?? `unknown(${t})`;
}

/** Option codes used by duet (RFC 2132, RFC 3046, RFC 3011, RFC 3442). */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTERS: 3,
  DOMAIN_NAME_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  BROADCAST_ADDRESS: 28,
  NTP_SERVERS: 42,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS_ID: 60,
  CLIENT_ID: 61,
  RELAY_AGENT_INFO: 82,
  SUBNET_SELECTION: 118,
  CLASSLESS_STATIC_ROUTES: 121,
  END: 255,
} as const;

/** Option code to the name used in `Opt`, e.g. 51 -> "LEASE_TIME". */
export const DHCP_OPTION_NAMES: Record<number, string> = invert(Opt);

/** Name of an option code for logs: "LEASE_TIME" or "unknown(N)". */
export function dhcpOptionName(code: number): string {
  return DHCP_OPTION_NAMES[code] ?? `unknown(${code})`;
}

/** `op` of a client message (RFC 2131 §2). */
export const BOOTREQUEST = 1;
/** `op` of a server message (RFC 2131 §2). */
export const BOOTREPLY = 2;
/** First four octets of the options field (RFC 2131 §3). */
export const DHCP_MAGIC_COOKIE = 0x63825363;
/** RFC 2131 §2: the minimum message size a client must accept. */
export const DHCP_MIN_MESSAGE = 576;
/** Bytes before the options field: op .. file (RFC 2131 §2, Figure 1). */
export const BOOTP_FIXED_LENGTH = 236;
/** BOOTP minimum message length (RFC 1542 §2.1); the default padding target of encodeDhcp. */
export const BOOTP_MIN_LENGTH = 300;
/** The `flags` bit asking for a broadcast reply (RFC 2131 §2, Figure 2). */
export const BROADCAST_FLAG = 0x8000;
/** RFC 3527 §3: link-selection sub-option of the relay agent information option. */
export const RELAY_LINK_SELECTION = 5;

/** Offsets of the fixed fields (RFC 2131 §2, Figure 1). */
const SNAME_OFFSET = 44;
const SNAME_LENGTH = 64;
const FILE_OFFSET = 108;
const FILE_LENGTH = 128;
const CHADDR_OFFSET = 28;
const CHADDR_LENGTH = 16;
const OPTIONS_OFFSET = BOOTP_FIXED_LENGTH + 4;
/** RFC 3396 §5: one option instance carries at most 255 octets. */
const MAX_INSTANCE = 255;

/** One DHCPv4 message (RFC 2131 §2). Addresses are uint32 numbers. */
export interface DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** Always 16 bytes. */
  chaddr: Uint8Array;
  /** Always 64 bytes, as received (with overload, the option bytes stay here too). */
  sname: Uint8Array;
  /** Always 128 bytes, as received (with overload, the option bytes stay here too). */
  file: Uint8Array;
  /**
   * Option values by code, in order of first appearance; repeats concatenated (RFC 3396),
   * including options found in file/sname through option 52. PAD, END and 52 are not stored.
   */
  options: Map<number, Uint8Array>;
}

/** Options for encodeDhcp. */
export interface EncodeDhcpOptions {
  /** Largest message to produce, in bytes of DHCP payload (default 576, RFC 2131 §2). */
  maxSize?: number;
  /** Pad with zeros up to this many bytes (default 300, RFC 1542 §2.1); never beyond maxSize. */
  padTo?: number;
  /**
   * Encode into this buffer and return a view of it instead of a new array (the hot path
   * reuses one buffer per send); the view is valid until the buffer is written again.
   */
  into?: Uint8Array;
}

/**
 * `chaddr`, `sname`, `file` and single-instance option values are views into `bytes`, not
 * copies: the caller MUST NOT reuse `bytes` while the message is in use. The options are a
 * DhcpOptions (a Map that makes each view when asked), and `sname` and `file` are made when
 * first read: a decoded message is a class instance, so spread it only after reading them.
 * @example const msg = decodeDhcp(payload); getMessageType(msg) === DhcpType.DHCPREQUEST
 */
export function decodeDhcp(bytes: Uint8Array): DhcpMessage {
  if (bytes.length < OPTIONS_OFFSET) {
    throw new WireError(
      "dhcp",
      bytes.length,
      `Cannot decode DHCP message: ${bytes.length} bytes is shorter than the ${OPTIONS_OFFSET}-byte header and magic cookie`,
    );
  }
  const hlen = bytes[2] as number;
  if (hlen > CHADDR_LENGTH) {
    throw new WireError("dhcp", 2, `Cannot decode DHCP message: hlen is ${hlen}, at most 16`);
  }
  const cookie = readU32(bytes, BOOTP_FIXED_LENGTH);
  if (cookie !== DHCP_MAGIC_COOKIE) {
    throw new WireError(
      "dhcp",
      BOOTP_FIXED_LENGTH,
      `Cannot decode DHCP message: magic cookie is 0x${
        cookie.toString(16).padStart(8, "0")
      }, expected 0x63825363`,
    );
  }

  const state: ParseState = {
    generation: nextGeneration(),
    spans: [],
    repeats: null,
    overloadAt: -1,
    overload: null,
    typeAt: -1,
  };
  // RFC 2131 §4.1: options field first, then file, then sname.
  parseOptionArea(bytes, OPTIONS_OFFSET, bytes.length, "options field", true, state);
  if (state.overload !== null) {
    const v = joinParts(state.overload);
    if (v.length !== 1 || (v[0] as number) < 1 || (v[0] as number) > 3) {
      throw new WireError(
        "dhcp",
        state.overloadAt,
        `Cannot decode DHCP option 52: ${
          v.length !== 1
            ? `length is ${v.length}, expected 1`
            : `value is ${v[0]}, expected 1, 2 or 3`
        }`,
      );
    }
    const which = v[0] as number;
    if (which & 1) {
      parseOptionArea(bytes, FILE_OFFSET, FILE_OFFSET + FILE_LENGTH, "file field", false, state);
    }
    if (which & 2) {
      parseOptionArea(
        bytes,
        SNAME_OFFSET,
        SNAME_OFFSET + SNAME_LENGTH,
        "sname field",
        false,
        state,
      );
    }
  }
  const options = optionsOf(bytes, state);
  const typeLength = options.lengthOf(Opt.MESSAGE_TYPE);
  if (typeLength >= 0 && typeLength !== 1) {
    throw new WireError(
      "dhcp",
      state.typeAt,
      `Cannot decode DHCP option 53: length is ${typeLength}, expected 1`,
    );
  }
  return new DecodedDhcp(bytes, options);
}

/**
 * A decoded message: the header read at once, `sname` and `file` viewed when first read (a
 * server reads neither for most requests), settable like the fields of any DhcpMessage.
 */
class DecodedDhcp implements DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  chaddr: Uint8Array;
  options: DhcpOptions;
  #bytes: Uint8Array;
  #sname: Uint8Array | undefined = undefined;
  #file: Uint8Array | undefined = undefined;

  constructor(bytes: Uint8Array, options: DhcpOptions) {
    this.#bytes = bytes;
    this.op = bytes[0] as number;
    this.htype = bytes[1] as number;
    this.hlen = bytes[2] as number;
    this.hops = bytes[3] as number;
    this.xid = readU32(bytes, 4);
    this.secs = ((bytes[8] as number) << 8) | (bytes[9] as number);
    this.flags = ((bytes[10] as number) << 8) | (bytes[11] as number);
    this.ciaddr = readU32(bytes, 12);
    this.yiaddr = readU32(bytes, 16);
    this.siaddr = readU32(bytes, 20);
    this.giaddr = readU32(bytes, 24);
    this.chaddr = bytes.subarray(CHADDR_OFFSET, CHADDR_OFFSET + CHADDR_LENGTH);
    this.options = options;
  }

  get sname(): Uint8Array {
    return this.#sname ??= this.#bytes.subarray(SNAME_OFFSET, SNAME_OFFSET + SNAME_LENGTH);
  }

  set sname(value: Uint8Array) {
    this.#sname = value;
  }

  get file(): Uint8Array {
    return this.#file ??= this.#bytes.subarray(FILE_OFFSET, FILE_OFFSET + FILE_LENGTH);
  }

  set file(value: Uint8Array) {
    this.#file = value;
  }
}

/**
 * A message as a plain object with its options in a Map: what decodeDhcp()'s result compares
 * equal to (node:assert's deepStrictEqual compares prototypes), and safe to spread.
 */
export function plainDhcp(msg: DhcpMessage): DhcpMessage {
  // A decoded message's own fields, and the two it makes on first read.
  return { ...msg, sname: msg.sname, file: msg.file, options: new Map(msg.options) };
}

/**
 * For each option code, the decode that last saw it (`generation`) and where its span is:
 * a repeat is found in constant time, with no per-decode table to allocate or clear.
 * Decoding is synchronous, so one pair of tables serves every decode.
 */
const SEEN_IN = new Int32Array(256);
const SPAN_AT = new Int32Array(256);
let generation = 0;

function nextGeneration(): number {
  generation = generation >= 0x7fffffff ? 1 : generation + 1;
  if (generation === 1) SEEN_IN.fill(0);
  return generation;
}

interface ParseState {
  generation: number;
  /** code, offset, length of each option's first instance, in order of first appearance. */
  spans: number[];
  /** Every instance of each option that appeared more than once, in order (RFC 3396). */
  repeats: Map<number, Uint8Array[]> | null;
  /** The instances of option 52 seen in the options field. */
  overload: Uint8Array[] | null;
  overloadAt: number;
  /** Offset of the first option 53 instance. */
  typeAt: number;
}

/** The decoded options: the spans as they are, or with repeats joined once (RFC 3396 §7). */
function optionsOf(bytes: Uint8Array, state: ParseState): DhcpOptions {
  const { spans, repeats } = state;
  if (repeats === null) return DhcpOptions.ofSpans(bytes, spans);
  const entries: [number, Uint8Array][] = [];
  for (let i = 0; i < spans.length; i += 3) {
    const code = spans[i] as number;
    const parts = repeats.get(code);
    const at = spans[i + 1] as number;
    entries.push([
      code,
      parts === undefined ? bytes.subarray(at, at + (spans[i + 2] as number)) : joinParts(parts),
    ]);
  }
  return DhcpOptions.of(entries);
}

/** Reads code/length/value triples from bytes[start, end) until END or the end (RFC 2132 §2). */
function parseOptionArea(
  bytes: Uint8Array,
  start: number,
  end: number,
  area: string,
  isOptionsField: boolean,
  state: ParseState,
): void {
  let p = start;
  while (p < end) {
    const at = p;
    const code = bytes[p++] as number;
    if (code === Opt.PAD) continue;
    if (code === Opt.END) return; // whatever follows END is ignored (see the module comment)
    if (p >= end) {
      throw new WireError(
        "dhcp",
        at,
        `Cannot decode DHCP option ${code}: the length octet is missing at the end of the ${area}`,
      );
    }
    const len = bytes[p++] as number;
    if (len > end - p) {
      throw new WireError(
        "dhcp",
        at,
        `Cannot decode DHCP option ${code}: length is ${len}, only ${
          end - p
        } bytes left in the ${area}`,
      );
    }
    const valueAt = p;
    p += len;
    if (code === Opt.OVERLOAD) {
      // RFC 2131 §4.1: option 52 is only meaningful in the options field.
      if (isOptionsField) {
        if (state.overload === null) {
          state.overloadAt = at;
          state.overload = [];
        }
        state.overload.push(bytes.subarray(valueAt, p));
      }
      continue;
    }
    if (code === Opt.MESSAGE_TYPE && state.typeAt < 0) state.typeAt = at;
    if (SEEN_IN[code] !== state.generation) {
      SEEN_IN[code] = state.generation;
      SPAN_AT[code] = state.spans.length;
      state.spans.push(code, valueAt, len);
      continue;
    }
    const repeats = state.repeats ??= new Map();
    const parts = repeats.get(code);
    if (parts !== undefined) {
      parts.push(bytes.subarray(valueAt, p));
      continue;
    }
    const first = SPAN_AT[code] as number;
    const firstAt = state.spans[first + 1] as number;
    repeats.set(code, [
      bytes.subarray(firstAt, firstAt + (state.spans[first + 2] as number)),
      bytes.subarray(valueAt, p),
    ]);
  }
}

/** One option ready to place: its code, value and encoded size over all instances. */
interface Item {
  code: number;
  value: Uint8Array;
  size: number;
}

/** Encoded size of an option value split into ≤255-octet instances (RFC 3396 §5). */
function encodedSize(len: number): number {
  return len === 0 ? 2 : Math.ceil(len / MAX_INSTANCE) * 2 + len;
}

/** Never-dropped options: message type and server identifier (RFC 2131 §4.3.1 Table 3). */
function isProtected(code: number): boolean {
  return code === Opt.MESSAGE_TYPE || code === Opt.SERVER_ID;
}

/**
 * Encodes a message (RFC 2131 §2): the 236-byte header, magic cookie, options in map order
 * with 82 last in the options field (RFC 3046 §2.1), END, then zero padding to `padTo`.
 * Options over 255 octets are split into consecutive instances (RFC 3396). When the options
 * do not fit in `maxSize`, they continue into `file` then `sname` through option 52 (RFC 2132
 * §9.3), but only into fields that are all zero; if they still do not fit, whole options are
 * dropped from the end of the order, never 53, 54 or 82. PAD, END and 52 in `msg.options` are
 * ignored: the encoder writes those itself.
 *
 * Caller bugs (out-of-range fields, chaddr/sname/file too long, maxSize too small for the
 * options that may not be dropped) throw RangeError.
 * @example encodeDhcp(reply, { maxSize: getMaxMessageSize(request) ?? DHCP_MIN_MESSAGE })
 */
export function encodeDhcp(msg: DhcpMessage, options?: EncodeDhcpOptions): Uint8Array {
  const maxSize = options?.maxSize ?? DHCP_MIN_MESSAGE;
  const padTo = Math.min(options?.padTo ?? BOOTP_MIN_LENGTH, maxSize);
  if (!Number.isInteger(maxSize) || maxSize < OPTIONS_OFFSET + 1) {
    throw new RangeError(
      `Cannot encode DHCP message: maxSize ${maxSize} is below ${OPTIONS_OFFSET + 1}`,
    );
  }
  if (!Number.isInteger(padTo)) {
    throw new RangeError(`Cannot encode DHCP message: padTo ${padTo} is not an integer`);
  }

  // The common case first: every option fits in the options field. Sizes are summed without
  // an Item per option (an encode made about 1 KiB of garbage, 8 MiB/s at 8,000 replies/s).
  const mainRoom = maxSize - OPTIONS_OFFSET - 1; // 1 for END
  let fits = 0;
  msg.options.forEach((value, code) => {
    if (!Number.isInteger(code) || code < 0 || code > 255) {
      throw new RangeError(`Cannot encode DHCP option ${code}: the code is not 0..255`);
    }
    if (code !== Opt.PAD && code !== Opt.END && code !== Opt.OVERLOAD) {
      fits += encodedSize(value.length);
    }
  });
  if (fits <= mainRoom) {
    const w = new ByteWriter(options?.into ?? Math.max(padTo, BOOTP_MIN_LENGTH));
    writeHeader(w, msg, msg.sname, msg.file);
    let relay: Uint8Array | undefined;
    msg.options.forEach((value, code) => {
      if (code === Opt.PAD || code === Opt.END || code === Opt.OVERLOAD) return;
      if (code === Opt.RELAY_AGENT_INFO) relay = value;
      else writeOption(w, code, value);
    });
    if (relay !== undefined) writeOption(w, Opt.RELAY_AGENT_INFO, relay); // RFC 3046 §2.1: last
    w.u8(Opt.END);
    if (w.length < padTo) w.zeros(padTo - w.length);
    return options?.into ? w.view() : w.finish();
  }

  let relay: Item | undefined;
  let items: Item[] = [];
  let total = 0;
  for (const [code, value] of msg.options) {
    if (!Number.isInteger(code) || code < 0 || code > 255) {
      throw new RangeError(`Cannot encode DHCP option ${code}: the code is not 0..255`);
    }
    if (code === Opt.PAD || code === Opt.END || code === Opt.OVERLOAD) continue;
    const item = { code, value, size: encodedSize(value.length) };
    if (code === Opt.RELAY_AGENT_INFO) relay = item;
    else items.push(item);
    total += item.size;
  }
  const relaySize = relay?.size ?? 0;

  let main: Item[][] = [items];
  let overload = 0;
  let fileArea: Uint8Array | undefined;
  let snameArea: Uint8Array | undefined;
  if (total > mainRoom) {
    const canFile = isAllZero(msg.file);
    const canSname = isAllZero(msg.sname);
    for (;;) {
      // RFC 2131 §4.1: try the options field alone, then with the file and sname fields.
      const alone = place(items, [mainRoom - relaySize]);
      if (alone !== undefined) {
        main = alone;
        break;
      }
      if (canFile || canSname) {
        const caps = [mainRoom - 3 - relaySize]; // 3 for option 52 itself
        if (canFile) caps.push(FILE_LENGTH - 1);
        if (canSname) caps.push(SNAME_LENGTH - 1);
        const spread = place(items, caps);
        if (spread !== undefined) {
          main = [spread[0] as Item[]];
          let i = 1;
          if (canFile) {
            const part = spread[i++] as Item[];
            if (part.length > 0) {
              overload |= 1;
              fileArea = writeArea(part, FILE_LENGTH);
            }
          }
          if (canSname) {
            const part = spread[i] as Item[];
            if (part.length > 0) {
              overload |= 2;
              snameArea = writeArea(part, SNAME_LENGTH);
            }
          }
          break;
        }
      }
      let drop = items.length - 1;
      while (drop >= 0 && isProtected((items[drop] as Item).code)) drop--;
      if (drop < 0) {
        throw new RangeError(
          `Cannot encode DHCP message: options 53, 54 and 82 do not fit in maxSize ${maxSize}`,
        );
      }
      items = items.slice(0, drop).concat(items.slice(drop + 1));
    }
  }

  const w = new ByteWriter(options?.into ?? Math.max(padTo, BOOTP_MIN_LENGTH));
  writeHeader(w, msg, snameArea ?? msg.sname, fileArea ?? msg.file);
  if (overload !== 0) w.u8(Opt.OVERLOAD).u8(1).u8(overload); // RFC 2132 §9.3
  for (const item of main[0] as Item[]) writeItem(w, item);
  if (relay !== undefined) writeItem(w, relay); // RFC 3046 §2.1: last, value unchanged
  w.u8(Opt.END);
  if (w.length < padTo) w.zeros(padTo - w.length);
  return options?.into ? w.view() : w.finish();
}

/**
 * Places items in order into areas of the given capacities. An option of at most 255 octets
 * is never split across areas; a longer one may be, at instance boundaries (RFC 3396 §6).
 * Returns undefined when the items do not all fit.
 */
function place(items: Item[], caps: number[]): Item[][] | undefined {
  const out: Item[][] = caps.map(() => []);
  let area = 0;
  let room = caps[0] as number;
  if (room < 0) return undefined; // option 82 alone overflows the options field
  for (const item of items) {
    if (item.size <= room) {
      (out[area] as Item[]).push(item);
      room -= item.size;
      continue;
    }
    if (item.value.length <= MAX_INSTANCE) {
      do {
        if (++area >= caps.length) return undefined;
        room = caps[area] as number;
      } while (item.size > room);
      (out[area] as Item[]).push(item);
      room -= item.size;
      continue;
    }
    let off = 0;
    while (off < item.value.length) {
      if (room < 3) {
        if (++area >= caps.length) return undefined;
        room = caps[area] as number;
        continue;
      }
      const n = Math.min(MAX_INSTANCE, item.value.length - off, room - 2);
      const part = item.value.subarray(off, off + n);
      (out[area] as Item[]).push({ code: item.code, value: part, size: n + 2 });
      room -= n + 2;
      off += n;
    }
  }
  return out;
}

/** The bytes of a `file` or `sname` field carrying options: options, END, zero padding. */
function writeArea(items: Item[], length: number): Uint8Array {
  const w = new ByteWriter(length);
  for (const item of items) writeItem(w, item);
  w.u8(Opt.END);
  if (w.length < length) w.zeros(length - w.length);
  return w.finish();
}

/** The fixed fields (RFC 2131 §2) and the magic cookie. */
function writeHeader(w: ByteWriter, msg: DhcpMessage, sname: Uint8Array, file: Uint8Array): void {
  w.u8(checkUint(msg.op, 8, "op"));
  w.u8(checkUint(msg.htype, 8, "htype"));
  w.u8(checkUint(msg.hlen, 8, "hlen"));
  w.u8(checkUint(msg.hops, 8, "hops"));
  w.u32(checkUint(msg.xid, 32, "xid"));
  w.u16(checkUint(msg.secs, 16, "secs"));
  w.u16(checkUint(msg.flags, 16, "flags"));
  w.u32(checkUint(msg.ciaddr, 32, "ciaddr"));
  w.u32(checkUint(msg.yiaddr, 32, "yiaddr"));
  w.u32(checkUint(msg.siaddr, 32, "siaddr"));
  w.u32(checkUint(msg.giaddr, 32, "giaddr"));
  writeFixed(w, msg.chaddr, CHADDR_LENGTH, "chaddr");
  writeFixed(w, sname, SNAME_LENGTH, "sname");
  writeFixed(w, file, FILE_LENGTH, "file");
  w.u32(DHCP_MAGIC_COOKIE);
}

function writeItem(w: ByteWriter, item: Item): void {
  writeOption(w, item.code, item.value);
}

function writeOption(w: ByteWriter, code: number, v: Uint8Array): void {
  if (v.length <= MAX_INSTANCE) {
    // One instance: the common case, written without a view of the value.
    w.u8(code).u8(v.length).bytes(v);
    return;
  }
  // RFC 3396 §5: consecutive instances of at most 255 octets.
  for (let off = 0; off < v.length; off += MAX_INSTANCE) {
    const n = Math.min(MAX_INSTANCE, v.length - off);
    w.u8(code).u8(n).bytes(v.subarray(off, off + n));
  }
}

function writeFixed(w: ByteWriter, b: Uint8Array, length: number, name: string): void {
  if (b.length > length) {
    throw new RangeError(
      `Cannot encode DHCP message: ${name} is ${b.length} bytes, at most ${length}`,
    );
  }
  w.bytes(b);
  if (b.length < length) w.zeros(length - b.length);
}

const UINT_MAX: Record<number, number> = { 8: 0xff, 16: 0xffff, 32: 0xffffffff };

function checkUint(v: number, bits: number, name: string): number {
  if (!Number.isInteger(v) || v < 0 || v > (UINT_MAX[bits] as number)) {
    throw new RangeError(
      `Cannot encode DHCP message: ${name} ${v} is not a ${bits}-bit unsigned integer`,
    );
  }
  return v;
}

function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * A reply skeleton for a request (RFC 2131 §4.3.1 Table 3): op BOOTREPLY; htype, hlen, xid,
 * flags, giaddr and chaddr taken over (chaddr shared when it has 16 octets); everything else zero and no options.
 */
export function newReply(request: DhcpMessage): DhcpMessage {
  // The request's chaddr as it is when it has the usual 16 octets (encoding only reads it).
  let chaddr = request.chaddr;
  if (chaddr.length !== CHADDR_LENGTH) {
    chaddr = new Uint8Array(CHADDR_LENGTH);
    chaddr.set(request.chaddr.subarray(0, CHADDR_LENGTH));
  }
  return {
    op: BOOTREPLY,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    flags: request.flags,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: request.giaddr,
    chaddr,
    sname: EMPTY_SNAME,
    file: EMPTY_FILE,
    options: new Map(),
  };
}

/** Shared zero fields of new replies: assign a new array to set sname or file, never write. */
const EMPTY_SNAME = new Uint8Array(SNAME_LENGTH);
const EMPTY_FILE = new Uint8Array(FILE_LENGTH);

/**
 * The client hardware address: chaddr[0, min(hlen, 16)) (RFC 2131 §2), a view of msg.chaddr
 * (a lease that keeps it keeps the ~300-octet datagram alive, no more).
 */
export function hwAddress(msg: DhcpMessage): Uint8Array {
  return msg.chaddr.subarray(0, Math.min(msg.hlen, CHADDR_LENGTH));
}

// ---- typed getters: undefined when absent or malformed, never throw (STYLE.md §4) ----

function u8Of(m: DhcpMessage, code: number): number | undefined {
  if (m.options instanceof DhcpOptions) return m.options.u8(code);
  const v = m.options.get(code);
  return v !== undefined && v.length === 1 ? v[0] : undefined;
}

function u16Of(m: DhcpMessage, code: number): number | undefined {
  const v = m.options.get(code);
  return v !== undefined && v.length === 2 ? ((v[0] as number) << 8) | (v[1] as number) : undefined;
}

function u32Of(m: DhcpMessage, code: number): number | undefined {
  if (m.options instanceof DhcpOptions) return m.options.u32(code);
  const v = m.options.get(code);
  return v !== undefined && v.length === 4 ? readU32(v, 0) : undefined;
}

function readU32(v: Uint8Array, at: number): number {
  return (((v[at] as number) << 24) | ((v[at + 1] as number) << 16) |
    ((v[at + 2] as number) << 8) | (v[at + 3] as number)) >>> 0;
}

function ipsOf(m: DhcpMessage, code: number): number[] | undefined {
  const v = m.options.get(code);
  if (v === undefined || v.length === 0 || v.length % 4 !== 0) return undefined;
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 4) out.push(readU32(v, i));
  return out;
}

function bytesOf(m: DhcpMessage, code: number, minLength: number): Uint8Array | undefined {
  const v = m.options.get(code);
  return v !== undefined && v.length >= minLength ? v : undefined;
}

const TEXT_DECODER = new TextDecoder();
const TEXT_ENCODER = new TextEncoder();

/** NVT ASCII text; RFC 2132 §2: the receiver MUST delete trailing NULs. Invalid UTF-8 -> U+FFFD. */
function textOf(m: DhcpMessage, code: number): string | undefined {
  const v = m.options.get(code);
  if (v === undefined) return undefined;
  let end = v.length;
  while (end > 0 && v[end - 1] === 0) end--;
  return end === 0 ? undefined : TEXT_DECODER.decode(v.subarray(0, end));
}

/** Option 53, DHCP message type (RFC 2132 §9.6). */
export function getMessageType(m: DhcpMessage): number | undefined {
  return u8Of(m, Opt.MESSAGE_TYPE);
}
/** Option 50, requested IP address (RFC 2132 §9.1). */
export function getRequestedIp(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.REQUESTED_IP);
}
/** Option 54, server identifier (RFC 2132 §9.7). */
export function getServerId(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.SERVER_ID);
}
/** Option 51, IP address lease time in seconds (RFC 2132 §9.2). */
export function getLeaseTime(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.LEASE_TIME);
}
/** Option 58, renewal (T1) time in seconds (RFC 2132 §9.11). */
export function getRenewalTime(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.RENEWAL_TIME);
}
/** Option 59, rebinding (T2) time in seconds (RFC 2132 §9.12). */
export function getRebindingTime(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.REBINDING_TIME);
}
/** Option 57, maximum DHCP message size; values below 576 are illegal (RFC 2132 §9.10). */
export function getMaxMessageSize(m: DhcpMessage): number | undefined {
  const v = u16Of(m, Opt.MAX_MESSAGE_SIZE);
  return v !== undefined && v >= DHCP_MIN_MESSAGE ? v : undefined;
}
/** Option 55, parameter request list, at least one code (RFC 2132 §9.8). */
export function getParameterRequestList(m: DhcpMessage): number[] | undefined {
  const v = m.options.get(Opt.PARAMETER_REQUEST_LIST);
  return v !== undefined && v.length > 0 ? Array.from(v) : undefined;
}
/** Option 61, client identifier, at least 2 octets (RFC 2132 §9.14); a copy. */
export function getClientId(m: DhcpMessage): Uint8Array | undefined {
  return bytesOf(m, Opt.CLIENT_ID, 2);
}
/** Option 12, host name (RFC 2132 §3.14). */
export function getHostname(m: DhcpMessage): string | undefined {
  return textOf(m, Opt.HOSTNAME);
}
/** Option 15, domain name (RFC 2132 §3.17). */
export function getDomainName(m: DhcpMessage): string | undefined {
  return textOf(m, Opt.DOMAIN_NAME);
}
/** Option 56, message text, e.g. the reason for a DHCPNAK (RFC 2132 §9.9). */
export function getMessage(m: DhcpMessage): string | undefined {
  return textOf(m, Opt.MESSAGE);
}
/** Option 1, subnet mask (RFC 2132 §3.3). */
export function getSubnetMask(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.SUBNET_MASK);
}
/** Option 28, broadcast address (RFC 2132 §5.3). */
export function getBroadcastAddress(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.BROADCAST_ADDRESS);
}
/** Option 3, routers (RFC 2132 §3.5). */
export function getRouters(m: DhcpMessage): number[] | undefined {
  return ipsOf(m, Opt.ROUTERS);
}
/** Option 6, domain name servers (RFC 2132 §3.8). */
export function getDomainNameServers(m: DhcpMessage): number[] | undefined {
  return ipsOf(m, Opt.DOMAIN_NAME_SERVERS);
}
/** Option 42, NTP servers (RFC 2132 §8.3). */
export function getNtpServers(m: DhcpMessage): number[] | undefined {
  return ipsOf(m, Opt.NTP_SERVERS);
}
/** Option 60, vendor class identifier, at least 1 octet (RFC 2132 §9.13); a copy. */
export function getVendorClassId(m: DhcpMessage): Uint8Array | undefined {
  return bytesOf(m, Opt.VENDOR_CLASS_ID, 1);
}
/** Option 82, relay agent information, raw sub-options (RFC 3046 §2.0); a copy. */
export function getRelayAgentInfo(m: DhcpMessage): Uint8Array | undefined {
  return bytesOf(m, Opt.RELAY_AGENT_INFO, 2);
}
/** Option 118, subnet selection (RFC 3011 §3). */
export function getSubnetSelection(m: DhcpMessage): number | undefined {
  return u32Of(m, Opt.SUBNET_SELECTION);
}

/** Option 82 sub-option 5, link selection (RFC 3527 §3); undefined if 82 is malformed. */
export function getLinkSelection(m: DhcpMessage): number | undefined {
  const v = m.options.get(Opt.RELAY_AGENT_INFO);
  if (v === undefined) return undefined;
  let found: number | undefined;
  let i = 0;
  // RFC 3046 §2.0: a sequence of sub-option code, length, value.
  while (i < v.length) {
    if (i + 2 > v.length) return undefined;
    const code = v[i] as number;
    const len = v[i + 1] as number;
    if (i + 2 + len > v.length) return undefined;
    if (code === RELAY_LINK_SELECTION && found === undefined) {
      if (len !== 4) return undefined;
      found = readU32(v, i + 2);
    }
    i += 2 + len;
  }
  return found;
}

/** One classless static route (RFC 3442). */
export interface ClasslessRoute {
  network: number;
  prefix: number;
  router: number;
}

/**
 * Option 121, classless static routes (RFC 3442 §3): prefix width, the significant octets of
 * the destination, then the router. Destination bits beyond the prefix are cleared.
 */
export function getClasslessStaticRoutes(m: DhcpMessage): ClasslessRoute[] | undefined {
  const v = m.options.get(Opt.CLASSLESS_STATIC_ROUTES);
  if (v === undefined || v.length === 0) return undefined;
  const out: ClasslessRoute[] = [];
  let i = 0;
  while (i < v.length) {
    const prefix = v[i] as number;
    if (prefix > 32) return undefined;
    const octets = Math.ceil(prefix / 8);
    if (i + 1 + octets + 4 > v.length) return undefined;
    let network = 0;
    for (let k = 0; k < 4; k++) network = network * 256 + (k < octets ? v[i + 1 + k] as number : 0);
    network = (network & maskOf(prefix)) >>> 0;
    const router = readU32(v, i + 1 + octets);
    out.push({ network, prefix, router });
    i += 1 + octets + 4;
  }
  return out;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

// ---- value encoders: caller bugs throw RangeError ----

/** One octet. */
export function encodeU8(v: number): Uint8Array {
  return Uint8Array.of(checkValue(v, 8));
}
/** Two octets, big-endian. */
export function encodeU16(v: number): Uint8Array {
  checkValue(v, 16);
  return Uint8Array.of(v >>> 8, v & 255);
}
/** Four octets, big-endian (times in seconds). */
export function encodeU32(v: number): Uint8Array {
  checkValue(v, 32);
  const out = new Uint8Array(4);
  out[0] = v >>> 24;
  out[1] = (v >>> 16) & 255;
  out[2] = (v >>> 8) & 255;
  out[3] = v & 255;
  return out;
}
/** One IPv4 address (uint32). */
export function encodeIp(v: number): Uint8Array {
  return encodeU32(v);
}
/** A list of IPv4 addresses; at least one (RFC 2132 §3.5 minimum length 4). */
export function encodeIps(list: readonly number[]): Uint8Array {
  if (list.length === 0) throw new RangeError("Cannot encode an address list: it is empty");
  const out = new Uint8Array(list.length * 4);
  for (let i = 0; i < list.length; i++) out.set(encodeU32(list[i] as number), i * 4);
  return out;
}
/** Text as UTF-8 without a trailing NUL (RFC 2132 §2); at least one octet. */
export function encodeText(s: string): Uint8Array {
  if (s.length === 0) throw new RangeError("Cannot encode text option: it is empty");
  return TEXT_ENCODER.encode(s);
}
/** Option 121 value (RFC 3442 §3); destination bits beyond the prefix are cleared. */
export function encodeClasslessStaticRoutes(routes: readonly ClasslessRoute[]): Uint8Array {
  if (routes.length === 0) {
    throw new RangeError("Cannot encode classless static routes: none given");
  }
  let size = 0;
  for (const r of routes) {
    if (!Number.isInteger(r.prefix) || r.prefix < 0 || r.prefix > 32) {
      throw new RangeError(`Cannot encode classless static route: prefix ${r.prefix} is not 0..32`);
    }
    checkValue(r.network, 32);
    checkValue(r.router, 32);
    size += 1 + Math.ceil(r.prefix / 8) + 4;
  }
  const out = new Uint8Array(size);
  let i = 0;
  for (const r of routes) {
    const octets = Math.ceil(r.prefix / 8);
    const net = (r.network & maskOf(r.prefix)) >>> 0;
    out[i++] = r.prefix;
    for (let k = 0; k < octets; k++) out[i++] = (net >>> (24 - 8 * k)) & 255;
    out.set(encodeU32(r.router), i);
    i += 4;
  }
  return out;
}

function checkValue(v: number, bits: number): number {
  if (!Number.isInteger(v) || v < 0 || v > (UINT_MAX[bits] as number)) {
    throw new RangeError(`Cannot encode option value: ${v} is not a ${bits}-bit unsigned integer`);
  }
  return v;
}

function invert(table: Record<string, number>): Record<number, string> {
  const out: Record<number, string> = {};
  for (const [name, code] of Object.entries(table)) out[code] = name;
  return out;
}
