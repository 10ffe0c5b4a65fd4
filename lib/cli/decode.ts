/**
 * `duet decode`: prints the DHCP (UDP 67/68) and failover (TCP 647) messages of a pcap file, or
 * of hex lines, with the RFC 2132 / draft-12 names. TCP is reassembled per direction by sequence
 * number. A message that cannot be decoded is printed with its typed error and decoding goes on.
 */
import { parseArgs } from "node:util";
import { PeerProtocolError, WireError } from "../errors.ts";
import { type CliIo, ExitCode } from "./io.ts";
import { decodeCapture, type PcapFile, TcpFlag } from "../wire/pcap.ts";
import { formatIpv4, formatMac, fromHex, toHex } from "../wire/ip.ts";
import {
  BOOTP_FIXED_LENGTH,
  decodeDhcp,
  DHCP_MAGIC_COOKIE,
  type DhcpMessage,
  dhcpOptionName,
  dhcpTypeName,
  getMessageType,
} from "../wire/dhcp.ts";
import {
  bindingStatusName,
  checkFailover,
  decodeFailover,
  FAILOVER_OPTION_LENGTHS,
  FAILOVER_PORT,
  type FailoverMessage,
  failoverOptionName,
  FoOpt,
  isIgnoredMsgType,
  msgTypeName,
  rejectReasonText,
  serverStateName,
  splitFrames,
} from "../wire/failover.ts";

const USAGE = "Usage: duet decode [--json] FILE.pcap | duet decode --hex [--json] [FILE]";
const HELP = `${USAGE}

Prints every DHCP (UDP 67/68) and DHCP failover (TCP 647) message in a pcap or pcapng
file, one block per message, with the names of RFC 2131/2132 and draft-ietf-dhc-failover-12.
Failover TCP streams are reassembled per direction. With --hex, reads hex lines (from FILE
or stdin): one message per line, '#' starts a comment; a line is DHCP when it carries the
magic cookie at offset 236, failover otherwise.

Options:
      --hex    read hex lines instead of a pcap file
      --json   print one JSON array of messages
  -h, --help   show this help

Exit codes: 0 the input was read (even if some messages are undecodable), 1 the file cannot
be read, 2 usage error.`;

/** DHCP server and client ports (RFC 2131 §4.1). */
const DHCP_PORTS = new Set([67, 68]);

/** A decode failure, as printed. */
export interface DecodeErrorView {
  name: string;
  protocol: string | null;
  offset: number | null;
  messageType: number | null;
  message: string;
}

/** One option of a decoded message, as printed. */
export interface OptionView {
  code: number;
  name: string;
  length: number;
  /** Human-readable value (names from the draft / RFC tables). */
  value: string;
  hex: string;
}

/** One decoded (or undecodable) message; keys are stable for --json. */
export interface DecodedItem {
  /** Frame number (1-based) in which the message's last octet arrived; line number for --hex. */
  frame: number;
  /** Capture time, epoch seconds, or null for --hex. */
  time: number | null;
  src: string | null;
  dst: string | null;
  protocol: "dhcp" | "failover";
  length: number;
  /** Message type name: "BNDUPD", "DHCPACK", ...; null when undecodable. */
  type: string | null;
  /** Header fields: failover {type, payloadOffset, time, xid}, DHCP {op, xid, ciaddr, ...}. */
  header: Record<string, string | number> | null;
  options: OptionView[];
  /** §7 table problems (failover only), e.g. "warning: ...". */
  problems: string[];
  error: DecodeErrorView | null;
  hex: string;
}

/** A reassembled failover message (or an undecodable stream tail) from a capture. */
export interface FailoverCapture {
  frame: number;
  time: number;
  src: string;
  dst: string;
  bytes: Uint8Array;
  /** A framing error or a gap in the stream; `bytes` then holds what could not be framed. */
  error?: unknown;
}

/** `duet decode` entry point; returns the exit code. */
export async function decodeCommand(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        hex: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    io.stderr(`${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    return ExitCode.USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout(`${HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length > 1 || (positionals.length === 0 && values.hex !== true)) {
    io.stderr(`${USAGE}\n`);
    return ExitCode.USAGE;
  }
  const path = positionals[0];
  let items: DecodedItem[];
  try {
    if (values.hex === true) {
      const text = path === undefined || path === "-"
        ? await new Response(Deno.stdin.readable).text()
        : await Deno.readTextFile(path);
      items = decodeHexText(text);
    } else {
      items = decodeCaptureBytes(await Deno.readFile(path as string));
    }
  } catch (e) {
    const what = path ?? "stdin";
    io.stderr(`Cannot read ${what}: ${e instanceof Error ? e.message : String(e)}\n`);
    return ExitCode.FAILURE;
  }
  if (values.json === true) io.stdout(`${JSON.stringify(items, null, 2)}\n`);
  else io.stdout(items.map(formatItem).join(""));
  return ExitCode.OK;
}

/** Decodes hex lines (one message per line; '#' comments); pure. */
export function decodeHexText(text: string): DecodedItem[] {
  const out: DecodedItem[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const where = { frame: i + 1, time: null, src: null, dst: null };
    const bytes = fromHex(line);
    if (bytes === undefined) {
      out.push(errorItem(where, "failover", new Uint8Array(0), {
        name: "SyntaxError",
        protocol: null,
        offset: null,
        messageType: null,
        message: `Cannot parse line ${i + 1}: not hex`,
      }));
      return;
    }
    if (isDhcp(bytes)) {
      out.push(dhcpItem(where, bytes));
      return;
    }
    for (const c of frameStream(bytes)) {
      out.push(
        c.error === undefined ? failoverItem(where, c.bytes) : errorItem(
          where,
          "failover",
          c.bytes,
          errorView(c.error),
        ),
      );
    }
  });
  return out;
}

function isDhcp(b: Uint8Array): boolean {
  if (b.length < BOOTP_FIXED_LENGTH + 4) return false;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return v.getUint32(BOOTP_FIXED_LENGTH) === DHCP_MAGIC_COOKIE;
}

/** Splits one byte run into messages; a bad length or a tail becomes an error entry. */
function frameStream(bytes: Uint8Array): { bytes: Uint8Array; error?: unknown }[] {
  const out: { bytes: Uint8Array; error?: unknown }[] = [];
  try {
    const { frames, rest } = splitFrames(bytes);
    for (const f of frames) out.push({ bytes: f });
    if (rest.length > 0) {
      out.push({
        bytes: rest,
        error: new WireError(
          "failover",
          bytes.length - rest.length,
          `Cannot frame failover message: ${rest.length} bytes of an incomplete message`,
        ),
      });
    }
  } catch (e) {
    out.push({ bytes, error: e });
  }
  return out;
}

/** Decodes a pcap or pcapng file into items, in frame order; throws WireError("pcap") if unreadable. */
export function decodeCaptureBytes(bytes: Uint8Array): DecodedItem[] {
  const pcap = decodeCapture(bytes);
  const items: { item: DecodedItem; order: number }[] = [];
  for (const f of pcap.frames) {
    const s = f.segment;
    if (s === undefined || s.protocol !== "udp") continue;
    if (!DHCP_PORTS.has(s.srcPort) && !DHCP_PORTS.has(s.dstPort)) continue;
    const where = {
      frame: f.number,
      time: f.time,
      src: `${formatIpv4(s.srcIp)}:${s.srcPort}`,
      dst: `${formatIpv4(s.dstIp)}:${s.dstPort}`,
    };
    items.push({ item: dhcpItem(where, s.payload), order: f.number });
  }
  reassembleFailover(pcap).forEach((c, i) => {
    const where = { frame: c.frame, time: c.time, src: c.src, dst: c.dst };
    const item = c.error === undefined
      ? failoverItem(where, c.bytes)
      : errorItem(where, "failover", c.bytes, errorView(c.error));
    items.push({ item, order: c.frame + i / 1e6 });
  });
  items.sort((a, b) => a.order - b.order);
  return items.map((x) => x.item);
}

interface Stream {
  key: string;
  src: string;
  dst: string;
  next: number | undefined;
  buffer: Uint8Array;
  /** Out-of-order segments by sequence number. */
  pending: Map<number, { payload: Uint8Array; frame: number; time: number }>;
  broken: boolean;
}

/**
 * Reassembles every TCP stream to or from port 647 per direction (by sequence number: SYN sets
 * the start, retransmitted bytes are dropped, out-of-order segments wait for the gap to fill) and
 * frames it into failover messages. Each message is attributed to the frame that completed it.
 */
export function reassembleFailover(pcap: PcapFile): FailoverCapture[] {
  const out: FailoverCapture[] = [];
  const streams = new Map<string, Stream>();
  for (const f of pcap.frames) {
    const s = f.segment;
    if (s === undefined || s.protocol !== "tcp") continue;
    if (s.srcPort !== FAILOVER_PORT && s.dstPort !== FAILOVER_PORT) continue;
    const src = `${formatIpv4(s.srcIp)}:${s.srcPort}`;
    const dst = `${formatIpv4(s.dstIp)}:${s.dstPort}`;
    const key = `${src}>${dst}`;
    const seq = s.tcpSeq ?? 0;
    const flags = s.tcpFlags ?? 0;
    let st = streams.get(key);
    if ((flags & TcpFlag.SYN) !== 0 || st === undefined) {
      if (st !== undefined) flush(st, f.number, f.time, out); // a new connection, same ports
      st = {
        key,
        src,
        dst,
        next: (flags & TcpFlag.SYN) !== 0 ? (seq + 1) >>> 0 : undefined,
        buffer: new Uint8Array(0),
        pending: new Map(),
        broken: false,
      };
      streams.set(key, st);
    }
    if (s.payload.length === 0 || st.broken) continue;
    if (st.next === undefined) st.next = seq; // capture began mid-stream
    st.pending.set(seq, { payload: s.payload.slice(), frame: f.number, time: f.time });
    drain(st, out);
  }
  for (const st of streams.values()) flush(st, 0, 0, out);
  return out;
}

/** Appends every pending segment that continues the stream, framing as it goes. */
function drain(st: Stream, out: FailoverCapture[]): void {
  for (let progress = true; progress && !st.broken;) {
    progress = false;
    for (const [seq, seg] of st.pending) {
      const next = st.next as number;
      const ahead = (seq - next) | 0; // signed distance modulo 2^32
      const end = ahead + seg.payload.length;
      if (ahead > 0) continue; // a gap before this segment
      st.pending.delete(seq);
      progress = true;
      if (end <= 0) continue; // a retransmission of bytes already taken
      const fresh = seg.payload.subarray(-ahead);
      st.next = (next + fresh.length) >>> 0;
      const joined = new Uint8Array(st.buffer.length + fresh.length);
      joined.set(st.buffer);
      joined.set(fresh, st.buffer.length);
      let split;
      try {
        split = splitFrames(joined);
      } catch (e) {
        out.push({
          frame: seg.frame,
          time: seg.time,
          src: st.src,
          dst: st.dst,
          bytes: joined,
          error: e,
        });
        st.broken = true;
        st.buffer = new Uint8Array(0);
        return;
      }
      for (const bytes of split.frames) {
        out.push({
          frame: seg.frame,
          time: seg.time,
          src: st.src,
          dst: st.dst,
          bytes: bytes.slice(),
        });
      }
      st.buffer = split.rest.slice();
    }
  }
}

/** Reports bytes left in a stream that ends or restarts. */
function flush(st: Stream, frame: number, time: number, out: FailoverCapture[]): void {
  const waiting = st.pending.size;
  if (st.buffer.length === 0 && waiting === 0) return;
  const why = waiting > 0
    ? `${waiting} segments after a gap in the TCP stream`
    : `${st.buffer.length} bytes of an incomplete message at the end of the TCP stream`;
  out.push({
    frame,
    time,
    src: st.src,
    dst: st.dst,
    bytes: st.buffer,
    error: new WireError("failover", 0, `Cannot frame failover message: ${why}`),
  });
  st.buffer = new Uint8Array(0);
  st.pending.clear();
}

type Where = Pick<DecodedItem, "frame" | "time" | "src" | "dst">;

function errorView(e: unknown): DecodeErrorView {
  if (e instanceof WireError) {
    return {
      name: e.name,
      protocol: e.protocol,
      offset: e.offset,
      messageType: null,
      message: e.message,
    };
  }
  if (e instanceof PeerProtocolError) {
    return {
      name: e.name,
      protocol: "failover",
      offset: null,
      messageType: e.messageType,
      message: e.message,
    };
  }
  throw e; // anything else is a bug, not bad input
}

function errorItem(
  where: Where,
  protocol: "dhcp" | "failover",
  bytes: Uint8Array,
  error: DecodeErrorView,
): DecodedItem {
  return {
    ...where,
    protocol,
    length: bytes.length,
    type: null,
    header: null,
    options: [],
    problems: [],
    error,
    hex: toHex(bytes),
  };
}

function failoverItem(where: Where, bytes: Uint8Array): DecodedItem {
  let msg: FailoverMessage;
  try {
    msg = decodeFailover(bytes, { allowUnknownTypes: true });
  } catch (e) {
    return errorItem(where, "failover", bytes, errorView(e));
  }
  const problems: string[] = [];
  if (isIgnoredMsgType(msg.type)) problems.push("note: optional message type 128-255, ignored");
  else if (msg.type < 128 && msgTypeName(msg.type).startsWith("unknown")) {
    problems.push("error: undefined message type 0-127, the link would be closed");
  } else {
    for (const p of checkFailover(msg)) {
      problems.push(`${p.level}: ${p.message} (reject-reason ${p.rejectReason})`);
    }
  }
  return {
    ...where,
    protocol: "failover",
    length: bytes.length,
    type: msgTypeName(msg.type),
    header: {
      type: msg.type,
      payloadOffset: 12 + msg.additionalHeader.length,
      time: msg.time,
      xid: msg.xid,
    },
    options: msg.options.map((o) => ({
      code: o.code,
      name: failoverOptionName(o.code),
      length: o.data.length,
      value: failoverValue(o.code, o.data),
      hex: toHex(o.data),
    })),
    problems,
    error: null,
    hex: toHex(bytes),
  };
}

function u32(d: Uint8Array): number {
  return new DataView(d.buffer, d.byteOffset, d.byteLength).getUint32(0);
}

function text(d: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(d));
}

function isoTime(t: number): string {
  return new Date(t * 1000).toISOString().replace(".000Z", "Z");
}

/** A failover option value in the draft's words (§12). */
function failoverValue(code: number, d: Uint8Array): string {
  const want = FAILOVER_OPTION_LENGTHS[code];
  if (want !== undefined && d.length !== want) {
    return `malformed: length ${d.length}, expected ${want}`;
  }
  const b0 = d[0] as number;
  switch (code) {
    case FoOpt.ASSIGNED_IP_ADDRESS:
      return formatIpv4(u32(d));
    case FoOpt.BINDING_STATUS:
      return `${bindingStatusName(b0)}(${b0})`;
    case FoOpt.SERVER_STATE:
      return `${serverStateName(b0)}(${b0})`;
    case FoOpt.REJECT_REASON:
      return `${b0} ${rejectReasonText(b0)}`;
    case FoOpt.SERVER_FLAGS:
      return `0x${b0.toString(16).padStart(2, "0")}${(b0 & 1) !== 0 ? " STARTUP" : ""}`;
    case FoOpt.IP_FLAGS: {
      const v = (b0 << 8) | (d[1] as number);
      const names = [(v & 1) !== 0 ? " RESERVED" : "", (v & 2) !== 0 ? " BOOTP" : ""].join("");
      return `0x${v.toString(16).padStart(4, "0")}${names}`;
    }
    case FoOpt.CLIENT_HARDWARE_ADDRESS:
      return d.length === 0 ? "empty" : `htype ${b0} ${formatMac(d.subarray(1))}`;
    case FoOpt.CLIENT_LAST_TRANSACTION_TIME:
    case FoOpt.LEASE_EXPIRATION_TIME:
    case FoOpt.POTENTIAL_EXPIRATION_TIME:
    case FoOpt.START_TIME_OF_STATE: {
      const t = u32(d);
      return t === 0 ? "0" : `${t} (${isoTime(t)})`;
    }
    case FoOpt.ADDRESSES_TRANSFERRED:
    case FoOpt.MAX_UNACKED_BNDUPD:
      return String(u32(d));
    case FoOpt.MCLT:
    case FoOpt.RECEIVE_TIMER:
      return `${u32(d)} seconds`;
    case FoOpt.PROTOCOL_VERSION:
    case FoOpt.TLS_REPLY:
    case FoOpt.TLS_REQUEST:
    case FoOpt.DELAYED_SERVICE_PARAMETER:
      return String(b0);
    case FoOpt.MESSAGE:
    case FoOpt.RELATIONSHIP_NAME:
    case FoOpt.VENDOR_CLASS_IDENTIFIER:
      return text(d);
    case FoOpt.MESSAGE_DIGEST:
      return `type ${b0} ${toHex(d.subarray(1))}`;
    case FoOpt.DDNS:
      return d.length < 2
        ? `malformed: ${toHex(d)}`
        : `flags 0x${toHex(d.subarray(0, 2))} name ${toHex(d.subarray(2))}`;
    default:
      return toHex(d);
  }
}

/** DHCP options whose value is a list of IPv4 addresses (RFC 2132). */
const DHCP_IP_OPTIONS = new Set([1, 3, 6, 28, 42, 50, 54, 118]);
/** DHCP options whose value is a 32-bit number of seconds (RFC 2132 §9.2, §9.11, §9.12). */
const DHCP_SECONDS_OPTIONS = new Set([51, 58, 59]);
/** DHCP options whose value is text (RFC 2132). */
const DHCP_TEXT_OPTIONS = new Set([12, 15, 56, 60]);

function dhcpValue(code: number, d: Uint8Array): string {
  if (code === 53 && d.length === 1) return dhcpTypeName(d[0]);
  if (DHCP_IP_OPTIONS.has(code) && d.length > 0 && d.length % 4 === 0) {
    const ips: string[] = [];
    for (let i = 0; i < d.length; i += 4) ips.push(formatIpv4(u32(d.subarray(i, i + 4))));
    return ips.join(", ");
  }
  if (DHCP_SECONDS_OPTIONS.has(code) && d.length === 4) return `${u32(d)} seconds`;
  if (DHCP_TEXT_OPTIONS.has(code)) return text(d);
  if (code === 55) return Array.from(d).join(", ");
  return toHex(d);
}

function dhcpItem(where: Where, bytes: Uint8Array): DecodedItem {
  let msg: DhcpMessage;
  try {
    msg = decodeDhcp(bytes);
  } catch (e) {
    return errorItem(where, "dhcp", bytes, errorView(e));
  }
  const hlen = Math.min(msg.hlen, 16);
  return {
    ...where,
    protocol: "dhcp",
    length: bytes.length,
    type: dhcpTypeName(getMessageType(msg)),
    header: {
      op: msg.op,
      htype: msg.htype,
      hlen: msg.hlen,
      hops: msg.hops,
      xid: msg.xid,
      secs: msg.secs,
      flags: msg.flags,
      ciaddr: formatIpv4(msg.ciaddr),
      yiaddr: formatIpv4(msg.yiaddr),
      siaddr: formatIpv4(msg.siaddr),
      giaddr: formatIpv4(msg.giaddr),
      chaddr: formatMac(msg.chaddr.subarray(0, hlen)),
    },
    options: [...msg.options].map(([code, d]) => ({
      code,
      name: dhcpOptionName(code),
      length: d.length,
      value: dhcpValue(code, d),
      hex: toHex(d),
    })),
    problems: [],
    error: null,
    hex: toHex(bytes),
  };
}

function hexId(v: string | number | undefined): string {
  return typeof v === "number" ? `0x${v.toString(16)}` : String(v);
}

/** One text block per message. */
export function formatItem(it: DecodedItem): string {
  const where = it.time === null
    ? `line ${it.frame}`
    : `frame ${it.frame}  ${it.time.toFixed(6)}  ${it.src} > ${it.dst}`;
  const proto = it.protocol === "dhcp" ? "DHCP" : "failover";
  const lines: string[] = [];
  if (it.error !== null) {
    const at = it.error.offset !== null ? ` at offset ${it.error.offset}` : "";
    lines.push(`${where}  ${proto} len=${it.length}  UNDECODABLE`);
    lines.push(`  ${it.error.name}${at}: ${it.error.message}`);
    if (it.hex !== "") {
      lines.push(`  hex ${it.hex.length > 128 ? `${it.hex.slice(0, 128)}...` : it.hex}`);
    }
  } else {
    const h = it.header ?? {};
    if (it.protocol === "failover") {
      const t = typeof h.time === "number" ? `${h.time} (${isoTime(h.time)})` : "";
      lines.push(
        `${where}  failover ${it.type}(${h.type}) len=${it.length} xid=${hexId(h.xid)} time=${t}`,
      );
    } else {
      lines.push(`${where}  DHCP ${it.type} len=${it.length} xid=${hexId(h.xid)}`);
      lines.push(
        `  op=${h.op} htype=${h.htype} hops=${h.hops} secs=${h.secs} flags=0x${
          Number(h.flags).toString(16)
        } ciaddr=${h.ciaddr} yiaddr=${h.yiaddr} siaddr=${h.siaddr} giaddr=${h.giaddr} chaddr=${h.chaddr}`,
      );
    }
    for (const o of it.options) lines.push(`  ${o.name}(${o.code}) = ${o.value}`);
    for (const p of it.problems) lines.push(`  ${p}`);
  }
  return `${lines.join("\n")}\n\n`;
}
