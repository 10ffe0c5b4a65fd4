/**
 * Fuzz target: decodeDhcp (lib/wire/dhcp.ts) and what the server does with a decoded message
 * before any policy: the typed getters, re-encoding and decoding again. Seeds are the golden
 * captures (tests/fixtures/dhcp); the mutator knows the message layout (RFC 2131 §2), the
 * option format (RFC 2132 §2), long options (RFC 3396) and option overload (RFC 2132 §9.3).
 */
import { WireError } from "../../lib/errors.ts";
import {
  decodeDhcp,
  type DhcpMessage,
  encodeDhcp,
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
} from "../../lib/wire/dhcp.ts";
import { decodeCapture } from "../../lib/wire/pcap.ts";
import {
  concatBytes,
  type Corpus,
  FuzzFinding,
  type FuzzTarget,
  havoc,
  INTERESTING_8,
  lengthClass,
  type Rng,
  template,
} from "./engine.ts";
import { readHexFixture } from "./fixtures.ts";

/** The largest UDP payload over IPv4 (65535 - 20 - 8). */
const MAX_DATAGRAM = 65507;
const OPTIONS_AT = 240;
const SNAME_AT = 44;
const FILE_AT = 108;

/** Codes the server reads, plus edges; random codes come from the whole range. */
const CODES = [
  1,
  3,
  6,
  12,
  15,
  28,
  42,
  43,
  50,
  51,
  52,
  53,
  54,
  55,
  56,
  57,
  58,
  59,
  60,
  61,
  82,
  118,
  121,
];

const GETTERS: [string, (m: DhcpMessage) => unknown][] = [
  ["type", getMessageType],
  ["requested", getRequestedIp],
  ["server-id", getServerId],
  ["lease-time", getLeaseTime],
  ["t1", getRenewalTime],
  ["t2", getRebindingTime],
  ["max-size", getMaxMessageSize],
  ["prl", getParameterRequestList],
  ["client-id", getClientId],
  ["hostname", getHostname],
  ["domain", getDomainName],
  ["message", getMessage],
  ["mask", getSubnetMask],
  ["broadcast", getBroadcastAddress],
  ["routers", getRouters],
  ["dns", getDomainNameServers],
  ["ntp", getNtpServers],
  ["vendor-class", getVendorClassId],
  ["relay-info", getRelayAgentInfo],
  ["subnet-selection", getSubnetSelection],
  ["link-selection", getLinkSelection],
  ["routes", getClasslessStaticRoutes],
  ["hw", hwAddress],
];

/** One option as the mutator sees it; `len` may lie about data.length (written as is). */
interface RawOption {
  code: number;
  data: Uint8Array;
  len?: number;
}

/** A message split into parts the mutator can edit and join again. */
interface Parts {
  header: Uint8Array;
  options: RawOption[];
  /** Whether the options field ends with END. */
  end: boolean;
  /** Bytes after END (or after the last option that could be read). */
  tail: Uint8Array;
}

/** Reads the options field as far as it is well formed; the rest becomes the tail. */
function split(b: Uint8Array): Parts {
  const header = new Uint8Array(OPTIONS_AT);
  header.set(b.subarray(0, OPTIONS_AT));
  if (b.length < OPTIONS_AT) header.set([0x63, 0x82, 0x53, 0x63], 236);
  const options: RawOption[] = [];
  let i = OPTIONS_AT;
  let end = false;
  while (i < b.length) {
    const code = b[i] as number;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255) {
      end = true;
      i++;
      break;
    }
    if (i + 1 >= b.length) break;
    const len = b[i + 1] as number;
    if (i + 2 + len > b.length) break;
    options.push({ code, data: b.slice(i + 2, i + 2 + len) });
    i += 2 + len;
  }
  return { header, options, end, tail: b.slice(i) };
}

function join(p: Parts): Uint8Array {
  const pieces: Uint8Array[] = [p.header];
  for (const o of p.options) {
    pieces.push(Uint8Array.of(o.code, (o.len ?? o.data.length) & 0xff), o.data);
  }
  if (p.end) pieces.push(Uint8Array.of(255));
  pieces.push(p.tail);
  return concatBytes(pieces);
}

/** An options area for `file` or `sname` (RFC 2132 §9.3): options, maybe END, padding. */
function area(rng: Rng, length: number, corpus: Corpus): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  const n = rng.small(6);
  for (let k = 0; k < n && at < length - 2; k++) {
    const code = rng.chance(0.7) ? rng.pick(CODES) : 1 + rng.int(254);
    const len = Math.min(rng.int(24), length - at - 2);
    out[at] = code;
    out[at + 1] = rng.chance(0.1) ? len + 1 + rng.int(40) : len; // sometimes past the field
    out.set(rng.bytes(len), at + 2);
    at += 2 + len;
  }
  if (at < length && rng.chance(0.7)) out[at] = 255;
  if (rng.chance(0.1)) {
    // Another message's bytes in the field.
    const other = corpus.pick(rng);
    out.set(other.subarray(OPTIONS_AT, OPTIONS_AT + length).subarray(0, length));
  }
  return out;
}

function optionValue(rng: Rng, code: number): Uint8Array {
  switch (code) {
    case 53:
      return rng.chance(0.8) ? Uint8Array.of(rng.int(10)) : rng.bytes(rng.int(3));
    case 52:
      return rng.chance(0.8) ? Uint8Array.of(rng.int(5)) : rng.bytes(rng.int(3));
    case 82: { // relay agent information: sub-options (RFC 3046 §2.0), link selection 5 (RFC 3527)
      const subs: Uint8Array[] = [];
      for (let k = rng.small(4); k > 0; k--) {
        const sub = rng.chance(0.5) ? 5 : rng.pick([1, 2, 5, 151, 255]);
        const len = sub === 5 && rng.chance(0.7) ? 4 : rng.int(8);
        subs.push(Uint8Array.of(sub, rng.chance(0.1) ? len + 1 : len), rng.bytes(len));
      }
      return concatBytes(subs);
    }
    case 121: { // classless routes (RFC 3442): width, significant octets, router
      const parts: Uint8Array[] = [];
      for (let k = rng.small(3); k > 0; k--) {
        const width = rng.chance(0.9) ? rng.int(33) : rng.int(256);
        parts.push(Uint8Array.of(width), rng.bytes(Math.ceil(Math.min(width, 32) / 8) + 4));
      }
      const v = concatBytes(parts);
      return rng.chance(0.2) ? v.subarray(0, rng.int(v.length + 1)) : v;
    }
    case 55:
      return Uint8Array.from(
        { length: rng.int(40) },
        () => rng.chance(0.5) ? rng.pick(CODES) : rng.int(256),
      );
    default: {
      const fixed = [1, 28, 50, 51, 54, 58, 59, 118].includes(code) ? 4 : code === 57 ? 2 : -1;
      if (fixed > 0 && rng.chance(0.7)) {
        return rng.bytes(fixed + (rng.chance(0.2) ? rng.int(3) - 1 : 0));
      }
      const big = rng.chance(0.05);
      return rng.bytes(big ? 256 + rng.int(600) : rng.int(40));
    }
  }
}

/** Mutations that know the layout; each edits a parsed copy and joins it again. */
function structural(rng: Rng, input: Uint8Array, corpus: Corpus): Uint8Array {
  const p = split(input);
  const o = p.options;
  switch (rng.int(14)) {
    case 0: { // insert an option
      const code = rng.chance(0.7) ? rng.pick(CODES) : rng.int(256);
      o.splice(rng.int(o.length + 1), 0, { code, data: optionValue(rng, code) });
      break;
    }
    case 1: // delete one
      if (o.length > 0) o.splice(rng.int(o.length), 1);
      break;
    case 2: { // duplicate one next to itself or elsewhere (RFC 3396: instances concatenate)
      if (o.length === 0) break;
      const x = o[rng.int(o.length)] as RawOption;
      o.splice(rng.int(o.length + 1), 0, { code: x.code, data: x.data.slice() });
      break;
    }
    case 3: { // split one into consecutive instances (RFC 3396 §5)
      if (o.length === 0) break;
      const at = rng.int(o.length);
      const x = o[at] as RawOption;
      const pieces: RawOption[] = [];
      let off = 0;
      while (off < x.data.length || pieces.length === 0) {
        const n = Math.min(x.data.length - off, rng.int(x.data.length + 1));
        pieces.push({ code: x.code, data: x.data.slice(off, off + n) });
        off += n;
        if (n === 0 && pieces.length > 3) break;
      }
      o.splice(at, 1, ...pieces);
      break;
    }
    case 4: { // a length octet off by one (or any value): the rest of the field desynchronises
      if (o.length === 0) break;
      const x = o[rng.int(o.length)] as RawOption;
      x.len = rng.chance(0.7) ? x.data.length + (rng.chance(0.5) ? 1 : -1) : rng.int(256);
      break;
    }
    case 5: { // overload (RFC 2132 §9.3): option 52 plus options in file and/or sname
      const which = rng.chance(0.85) ? 1 + rng.int(3) : rng.int(256);
      const v = rng.chance(0.9) ? Uint8Array.of(which) : rng.bytes(rng.int(3));
      o.unshift({ code: 52, data: v });
      if (rng.chance(0.1)) o.push({ code: 52, data: Uint8Array.of(rng.int(4)) }); // a repeat
      if (which & 1) p.header.set(area(rng, 128, corpus), FILE_AT);
      if (which & 2) p.header.set(area(rng, 64, corpus), SNAME_AT);
      break;
    }
    case 6: { // one option repeated many times: thousands of tiny instances
      const code = rng.chance(0.5) ? rng.pick(CODES) : 1 + rng.int(254);
      const size = rng.int(3);
      const count = rng.chance(0.1) ? 5000 + rng.int(17000) : rng.small(400);
      const each = new Uint8Array(2 + size);
      each[0] = code;
      each[1] = size;
      const run = new Uint8Array(each.length * count);
      for (let k = 0; k < count; k++) run.set(each, k * each.length);
      const b = join(p);
      const at = OPTIONS_AT + rng.int(Math.max(1, b.length - OPTIONS_AT));
      const out = concatBytes([b.subarray(0, at), run, b.subarray(at)]);
      return out.subarray(0, MAX_DATAGRAM);
    }
    case 7: // message type: missing, wrong length, repeated, odd value
      for (let k = o.length - 1; k >= 0; k--) if ((o[k] as RawOption).code === 53) o.splice(k, 1);
      if (rng.chance(0.8)) o.unshift({ code: 53, data: optionValue(rng, 53) });
      if (rng.chance(0.2)) o.push({ code: 53, data: optionValue(rng, 53) });
      break;
    case 8: // END: removed, or junk after it
      if (rng.chance(0.5)) p.end = !p.end;
      else {
        p.end = true;
        p.tail = rng.bytes(rng.int(64));
      }
      break;
    case 9: // header fields: op, htype, hlen (at most 16), hops, flags, giaddr
      switch (rng.int(5)) {
        case 0:
          p.header[2] = rng.chance(0.5) ? 16 + rng.int(3) : rng.int(256);
          break;
        case 1:
          p.header[0] = rng.pick(INTERESTING_8);
          break;
        case 2:
          p.header.set(rng.bytes(4), 24); // giaddr
          break;
        case 3:
          p.header[10] = rng.int(256); // flags
          break;
        default:
          p.header.set(rng.bytes(4), 236); // the magic cookie
      }
      break;
    case 10: { // PAD octets between options
      const b = join(p);
      const at = OPTIONS_AT + rng.int(Math.max(1, b.length - OPTIONS_AT));
      return concatBytes([b.subarray(0, at), new Uint8Array(rng.small(8)), b.subarray(at)])
        .subarray(0, MAX_DATAGRAM);
    }
    case 11: { // a long option (RFC 3396) as several 255-octet instances
      const code = rng.chance(0.5) ? rng.pick([43, 82, 121, 55, 61]) : 1 + rng.int(254);
      const total = 255 + rng.int(1200);
      const v = rng.bytes(total);
      for (let off = 0; off < total; off += 255) o.push({ code, data: v.slice(off, off + 255) });
      break;
    }
    case 12: { // grow the message to a big datagram
      const n = rng.chance(0.1) ? MAX_DATAGRAM - OPTIONS_AT : rng.int(2000);
      p.tail = concatBytes([p.tail, rng.bytes(n)]).subarray(0, MAX_DATAGRAM - OPTIONS_AT);
      break;
    }
    default: { // take options from another message (crossover at the option level)
      const other = split(corpus.pick(rng)).options;
      if (other.length === 0) break;
      const from = rng.int(other.length);
      o.splice(rng.int(o.length + 1), 0, ...other.slice(from, from + rng.small(6)));
    }
  }
  return join(p).subarray(0, MAX_DATAGRAM);
}

function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const dir = new URL("../fixtures/dhcp/", import.meta.url);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  for (const name of names) {
    if (name.endsWith(".hex")) out.push(readHexFixture(new URL(name, dir)));
    else if (name.endsWith(".pcap") || name.endsWith(".pcapng")) {
      for (const f of decodeCapture(Deno.readFileSync(new URL(name, dir))).frames) {
        const s = f.segment;
        if (s?.protocol === "udp" && (s.srcPort === 67 || s.srcPort === 68)) {
          out.push(s.payload.slice());
        }
      }
    }
  }
  return out;
}

/** Option codes the message decoded, as features. */
function messageFeatures(m: DhcpMessage, features: string[]): void {
  for (const [code, v] of m.options) features.push(`o:${code}:${lengthClass(v.length)}`);
  features.push(`n:${lengthClass(m.options.size)}`, `hlen:${m.hlen}`, `op:${m.op}`);
}

/** decodeDhcp and the checks of one input (see the module comment). */
function run(input: Uint8Array, features: string[]): boolean {
  let m: DhcpMessage;
  try {
    m = decodeDhcp(input);
  } catch (e) {
    if (
      e instanceof WireError && e.protocol === "dhcp" && e.offset >= 0 && e.offset <= input.length
    ) {
      features.push(`err:${template(e.message)}`);
      return false;
    }
    throw new FuzzFinding("exception", `decodeDhcp threw ${describe(e)}`, { cause: e });
  }
  messageFeatures(m, features);
  // Bounded output: every option byte comes from the input, once.
  let total = 0;
  for (const v of m.options.values()) total += v.length;
  if (
    total > input.length || m.chaddr.length !== 16 || m.sname.length !== 64 || m.file.length !== 128
  ) {
    throw new FuzzFinding(
      "invariant",
      `decodeDhcp returned ${total} option bytes from a ${input.length}-byte input, or a field of the wrong size`,
    );
  }
  for (const [name, get] of GETTERS) {
    let v: unknown;
    try {
      v = get(m);
    } catch (e) {
      throw new FuzzFinding("exception", `Getter ${name} threw ${describe(e)}`, { cause: e });
    }
    features.push(`g:${name}:${v === undefined ? "-" : "+"}`);
  }
  // What decodes re-encodes (given room) and decodes to the same options.
  let again: DhcpMessage;
  let bytes: Uint8Array;
  try {
    bytes = encodeDhcp(m, { maxSize: input.length + 1024 });
    again = decodeDhcp(bytes);
  } catch (e) {
    throw new FuzzFinding("exception", `Re-encoding a decoded message threw ${describe(e)}`, {
      cause: e,
    });
  }
  if (bytes.length > Math.max(300, input.length + 512)) {
    throw new FuzzFinding(
      "invariant",
      `Re-encoding a ${input.length}-byte message gave ${bytes.length} bytes`,
    );
  }
  if (!sameOptions(m, again) || again.xid !== m.xid || !sameBytes(again.chaddr, m.chaddr)) {
    throw new FuzzFinding("invariant", "Decoding the re-encoded message gave other options");
  }
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Same codes and values; option 82 moves to the end on encoding (RFC 3046 §2.1). */
function sameOptions(a: DhcpMessage, b: DhcpMessage): boolean {
  const order = (m: DhcpMessage) => [...m.options.keys()].filter((c) => c !== 82).join(",");
  if (a.options.size !== b.options.size || order(a) !== order(b)) return false;
  for (const [c, v] of a.options) {
    const w = b.options.get(c);
    if (w === undefined || !sameBytes(v, w)) return false;
  }
  return true;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** The DHCP decoder target. */
export const dhcpTarget: FuzzTarget = {
  name: "dhcp",
  fixtureExt: "hex",
  maxLength: MAX_DATAGRAM,
  budgetMs: 20,
  seeds,
  mutate(rng, input, corpus) {
    let b = rng.chance(0.6) ? structural(rng, input, corpus) : input;
    if (b === input || rng.chance(0.3)) {
      b = havoc(rng, b, corpus, { maxLength: MAX_DATAGRAM, focus: [236, b.length] });
    }
    if (rng.chance(0.01)) b = rng.bytes(rng.int(700)); // plain random, now and then
    return b;
  },
  run,
};
