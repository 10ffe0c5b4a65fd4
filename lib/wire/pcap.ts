/**
 * Capture file reader: classic libpcap (`decodePcap`) and pcapng (`decodeCapture` detects
 * which). Ethernet (with 802.1Q tags) or raw IPv4 frames, IPv4, then UDP or TCP, giving each
 * frame's timestamp, addresses, ports and transport payload.
 * Pure: the caller reads the file and passes the bytes.
 *
 * Malformed files throw WireError (protocol "pcap"). A frame that is simply not IPv4 UDP/TCP
 * (ARP, IPv6, a non-first IP fragment) has no `segment`. A frame cut short by the snap length
 * keeps what was captured and is marked `truncated`.
 */
import { WireError } from "../errors.ts";

/** Link-layer header types (tcpdump.org linktypes). */
export const LinkType = { ETHERNET: 1, RAW: 101, IPV4: 228 } as const;

/** EtherTypes read by the reader. */
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
/** IP protocol numbers (IANA). */
export const IP_PROTOCOL_TCP = 6;
export const IP_PROTOCOL_UDP = 17;
/** TCP header flag bits (RFC 9293 §3.1). */
export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

const GLOBAL_HEADER_LENGTH = 24;
const RECORD_HEADER_LENGTH = 16;
/** No sane capture record is larger than this; guards against garbage lengths. */
const MAX_RECORD_LENGTH = 256 * 1024 * 1024;

/** A whole capture file. */
export interface PcapFile {
  linkType: number;
  snapLength: number;
  /** True when timestamps carry nanoseconds (magic 0xa1b23c4d). */
  nanosecond: boolean;
  frames: PcapFrame[];
}

/** One captured frame. */
export interface PcapFrame {
  /** 1-based frame number, as tshark prints it. */
  number: number;
  /** Whole seconds since the epoch. */
  seconds: number;
  /** Nanoseconds within the second. */
  nanos: number;
  /** Seconds since the epoch as a float (for display and deltas). */
  time: number;
  /** Length on the wire. */
  originalLength: number;
  /** The captured bytes (a copy). */
  data: Uint8Array;
  /** IPv4 + UDP/TCP details when the frame carries one. */
  segment?: TransportSegment;
}

/** The transport layer of an IPv4 frame. */
export interface TransportSegment {
  protocol: "udp" | "tcp";
  /** uint32 addresses. */
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** The UDP or TCP payload (Ethernet padding removed), a view into `data`. */
  payload: Uint8Array;
  /** True when the capture holds less of the payload than the headers announce. */
  truncated: boolean;
  /** TCP sequence number, acknowledgment number and flag bits (TcpFlag); TCP only. */
  tcpSeq?: number;
  tcpAck?: number;
  tcpFlags?: number;
}

/** Parses a classic pcap file; throws WireError("pcap") on a malformed file. */
export function decodePcap(bytes: Uint8Array): PcapFile {
  if (bytes.length < GLOBAL_HEADER_LENGTH) {
    throw new WireError(
      "pcap",
      bytes.length,
      `Cannot read pcap file: ${bytes.length} bytes is shorter than the 24-byte header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicBe = view.getUint32(0, false);
  let little: boolean;
  let nanosecond: boolean;
  if (magicBe === 0xa1b2c3d4 || magicBe === 0xa1b23c4d) {
    little = false;
    nanosecond = magicBe === 0xa1b23c4d;
  } else if (magicBe === 0xd4c3b2a1 || magicBe === 0x4d3cb2a1) {
    little = true;
    nanosecond = magicBe === 0x4d3cb2a1;
  } else {
    const hint = magicBe === 0x0a0d0d0a ? " (pcapng is not supported)" : "";
    throw new WireError(
      "pcap",
      0,
      `Cannot read pcap file: magic is 0x${magicBe.toString(16).padStart(8, "0")}${hint}`,
    );
  }
  const major = view.getUint16(4, little);
  if (major !== 2) {
    throw new WireError("pcap", 4, `Cannot read pcap file: version ${major}, expected 2`);
  }
  const snapLength = view.getUint32(16, little);
  // The upper bits of the link-type field carry FCS information (pcap-savefile(5)).
  const linkType = view.getUint32(20, little) & 0x0fffffff;

  const frames: PcapFrame[] = [];
  let pos = GLOBAL_HEADER_LENGTH;
  while (pos < bytes.length) {
    if (pos + RECORD_HEADER_LENGTH > bytes.length) {
      throw new WireError(
        "pcap",
        pos,
        `Cannot read pcap record ${frames.length + 1}: header is cut short (${
          bytes.length - pos
        } of 16 bytes)`,
      );
    }
    const seconds = view.getUint32(pos, little);
    const frac = view.getUint32(pos + 4, little);
    const inclLength = view.getUint32(pos + 8, little);
    const originalLength = view.getUint32(pos + 12, little);
    const nanos = nanosecond ? frac : frac * 1000;
    if (nanos >= 1e9) {
      throw new WireError(
        "pcap",
        pos + 4,
        `Cannot read pcap record ${frames.length + 1}: sub-second part ${frac} is too large`,
      );
    }
    if (inclLength > MAX_RECORD_LENGTH) {
      throw new WireError(
        "pcap",
        pos + 8,
        `Cannot read pcap record ${
          frames.length + 1
        }: captured length ${inclLength} is implausible`,
      );
    }
    const start = pos + RECORD_HEADER_LENGTH;
    if (start + inclLength > bytes.length) {
      throw new WireError(
        "pcap",
        pos + 8,
        `Cannot read pcap record ${frames.length + 1}: captured length ${inclLength}, only ${
          bytes.length - start
        } bytes left`,
      );
    }
    const data = bytes.slice(start, start + inclLength);
    const frame: PcapFrame = {
      number: frames.length + 1,
      seconds,
      nanos,
      time: seconds + nanos / 1e9,
      originalLength,
      data,
    };
    const segment = decodeLink(data, linkType, inclLength < originalLength, start);
    if (segment !== undefined) frame.segment = segment;
    frames.push(frame);
    pos = start + inclLength;
  }
  return { linkType, snapLength, nanosecond, frames };
}

/** pcapng block types (draft-ietf-opsawg-pcapng §4, §10.1). */
const PcapngBlock = {
  SECTION_HEADER: 0x0a0d0d0a,
  INTERFACE_DESCRIPTION: 0x00000001,
  OBSOLETE_PACKET: 0x00000002,
  SIMPLE_PACKET: 0x00000003,
  ENHANCED_PACKET: 0x00000006,
} as const;
/** Section Header Block byte-order magic, as written by the capturing host (§4.1). */
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
/** Block type, block total length ... block total length (§3.1). */
const PCAPNG_BLOCK_OVERHEAD = 12;
/** Smallest Section Header Block: overhead + magic, version, section length (§4.1). */
const PCAPNG_SHB_MIN_LENGTH = 28;
/** Interface Description Block options (§4.2). */
const IDB_OPTION_END = 0;
const IDB_OPTION_TSRESOL = 9;
const IDB_OPTION_TSOFFSET = 14;
/** if_tsresol default: microseconds (§4.2). */
const DEFAULT_UNITS_PER_SECOND = 1_000_000n;

/** One interface of the current pcapng section. */
interface PcapngInterface {
  linkType: number;
  snapLength: number;
  /** Timestamp units per second, from if_tsresol. */
  unitsPerSecond: bigint;
  /** if_tsoffset: seconds added to every timestamp. */
  offsetSeconds: bigint;
}

/**
 * Parses a classic pcap file (either byte order, micro- or nanosecond magic) or a pcapng file,
 * chosen by the first four bytes; throws WireError("pcap") on a malformed file.
 *
 * For pcapng (draft-ietf-opsawg-pcapng), `linkType`, `snapLength` and `nanosecond` describe the
 * first interface of the file (0, 0 and false when there is none); each frame is decoded with the
 * link type of its own interface. Frames come from Enhanced, Simple and Obsolete Packet Blocks,
 * numbered from 1 across all sections; a Simple Packet Block has no timestamp (time 0). Other block
 * types are skipped.
 *
 * @example
 * ```ts
 * const file = decodeCapture(Deno.readFileSync("dhcp.pcapng"));
 * for (const f of file.frames) console.log(f.number, f.time, f.segment?.srcPort);
 * ```
 */
export function decodeCapture(bytes: Uint8Array): PcapFile {
  if (bytes.length >= 4) {
    const type = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
    if (type === PcapngBlock.SECTION_HEADER) return decodePcapng(bytes);
  }
  return decodePcap(bytes);
}

/** Parses a pcapng file (draft-ietf-opsawg-pcapng §3, §4); see decodeCapture. */
function decodePcapng(bytes: Uint8Array): PcapFile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (offset: number, message: string): never => {
    throw new WireError("pcap", offset, `Cannot read pcapng file: ${message}`);
  };
  const frames: PcapFrame[] = [];
  let first: PcapngInterface | undefined;
  let interfaces: PcapngInterface[] = [];
  let little = false;
  let pos = 0;
  while (pos < bytes.length) {
    if (pos + PCAPNG_BLOCK_OVERHEAD > bytes.length) {
      fail(pos, `block header is cut short (${bytes.length - pos} of 12 bytes)`);
    }
    // The SHB type is a palindrome, so it reads the same before the byte order is known (§4.1).
    const type = view.getUint32(pos, little);
    if (type === PcapngBlock.SECTION_HEADER) {
      const magic = view.getUint32(pos + 8, false);
      if (magic === PCAPNG_BYTE_ORDER_MAGIC) little = false;
      else if (magic === 0x4d3c2b1a) little = true;
      else fail(pos + 8, `byte-order magic is 0x${magic.toString(16).padStart(8, "0")}`);
    } else if (pos === 0) {
      fail(0, `first block type is 0x${type.toString(16)}, expected a Section Header Block`);
    }
    const length = view.getUint32(pos + 4, little);
    if (length < PCAPNG_BLOCK_OVERHEAD || length % 4 !== 0) {
      fail(pos + 4, `block length ${length} is not a multiple of 4 of at least 12`);
    }
    if (length > bytes.length - pos) {
      fail(pos + 4, `block length ${length}, only ${bytes.length - pos} bytes left`);
    }
    const end = pos + length - 4; // the body ends where the trailing length starts
    const trailer = view.getUint32(end, little);
    if (trailer !== length) {
      fail(end, `trailing block length ${trailer} differs from the leading ${length}`);
    }
    const body = pos + 8;
    const bodyLength = end - body;
    switch (type) {
      case PcapngBlock.SECTION_HEADER: {
        if (length < PCAPNG_SHB_MIN_LENGTH) {
          fail(pos + 4, `Section Header Block length ${length} is below 28`);
        }
        const major = view.getUint16(body + 4, little);
        if (major !== 1) fail(body + 4, `version ${major}, expected 1`);
        interfaces = []; // interface ids are per section (§4.1)
        break;
      }
      case PcapngBlock.INTERFACE_DESCRIPTION: {
        if (bodyLength < 8) {
          fail(pos + 4, `Interface Description Block length ${length} is below 20`);
        }
        const iface = decodeInterface(view, body, end, little, fail);
        interfaces.push(iface);
        first ??= iface;
        break;
      }
      case PcapngBlock.ENHANCED_PACKET:
      case PcapngBlock.OBSOLETE_PACKET: {
        // EPB (§4.3): interface id u32. OPB (§10.1): interface id u16, drops count u16.
        // Both continue: timestamp high, timestamp low, captured length, original length, data.
        const name = type === PcapngBlock.ENHANCED_PACKET ? "Enhanced" : "Obsolete";
        if (bodyLength < 20) fail(pos + 4, `${name} Packet Block length ${length} is below 32`);
        const id = type === PcapngBlock.ENHANCED_PACKET
          ? view.getUint32(body, little)
          : view.getUint16(body, little);
        const iface = interfaces[id] ?? fail(
          body,
          `${name} Packet Block names interface ${id}, ` +
            `but the section has ${interfaces.length}`,
        );
        const ts = (BigInt(view.getUint32(body + 4, little)) << 32n) |
          BigInt(view.getUint32(body + 8, little));
        const captured = view.getUint32(body + 12, little);
        const originalLength = view.getUint32(body + 16, little);
        if (captured > bodyLength - 20) {
          fail(
            body + 12,
            `captured length ${captured}, only ${bodyLength - 20} bytes in the block`,
          );
        }
        const seconds = ts / iface.unitsPerSecond + iface.offsetSeconds;
        const nanos = Number((ts % iface.unitsPerSecond) * 1_000_000_000n / iface.unitsPerSecond);
        const start = body + 20;
        frames.push(packetFrame(bytes, frames.length + 1, Number(seconds), nanos, {
          start,
          captured,
          originalLength,
          linkType: iface.linkType,
        }));
        break;
      }
      case PcapngBlock.SIMPLE_PACKET: {
        // SPB (§4.4): original length, data; always interface 0, no timestamp.
        if (bodyLength < 4) fail(pos + 4, `Simple Packet Block length ${length} is below 16`);
        const iface = interfaces[0] ??
          fail(pos, "Simple Packet Block before any Interface Description Block");
        const originalLength = view.getUint32(body, little);
        let captured = Math.min(originalLength, bodyLength - 4);
        if (iface.snapLength > 0) captured = Math.min(captured, iface.snapLength);
        frames.push(packetFrame(bytes, frames.length + 1, 0, 0, {
          start: body + 4,
          captured,
          originalLength,
          linkType: iface.linkType,
        }));
        break;
      }
      default:
        break; // other block types carry nothing duet reads (§3.1: skip unknown blocks)
    }
    pos += length;
  }
  return {
    linkType: first?.linkType ?? 0,
    snapLength: first?.snapLength ?? 0,
    nanosecond: first !== undefined && first.unitsPerSecond > DEFAULT_UNITS_PER_SECOND,
    frames,
  };
}

/** Interface Description Block body (§4.2): link type, reserved, snap length, options. */
function decodeInterface(
  view: DataView,
  body: number,
  end: number,
  little: boolean,
  fail: (offset: number, message: string) => never,
): PcapngInterface {
  const iface: PcapngInterface = {
    linkType: view.getUint16(body, little),
    snapLength: view.getUint32(body + 4, little),
    unitsPerSecond: DEFAULT_UNITS_PER_SECOND,
    offsetSeconds: 0n,
  };
  // Options (§3.5): code u16, length u16, value padded to 32 bits; opt_endofopt ends the list.
  let at = body + 8;
  while (at < end) {
    if (at + 4 > end) fail(at, `option header is cut short (${end - at} of 4 bytes)`);
    const code = view.getUint16(at, little);
    const length = view.getUint16(at + 2, little);
    if (code === IDB_OPTION_END) break;
    const value = at + 4;
    if (length > end - value) {
      fail(at + 2, `option ${code} length ${length}, only ${end - value} bytes left`);
    }
    if (code === IDB_OPTION_TSRESOL) {
      if (length !== 1) fail(at + 2, `if_tsresol length is ${length}, expected 1`);
      const v = view.getUint8(value);
      // Most significant bit clear: 10^-n seconds; set: 2^-n seconds.
      iface.unitsPerSecond = (v & 0x80) === 0 ? 10n ** BigInt(v) : 2n ** BigInt(v & 0x7f);
    } else if (code === IDB_OPTION_TSOFFSET) {
      if (length !== 8) fail(at + 2, `if_tsoffset length is ${length}, expected 8`);
      iface.offsetSeconds = view.getBigInt64(value, little);
    }
    at = value + Math.ceil(length / 4) * 4;
  }
  return iface;
}

/** Builds a frame from captured bytes at `start` in the file. */
function packetFrame(
  bytes: Uint8Array,
  number: number,
  seconds: number,
  nanos: number,
  p: { start: number; captured: number; originalLength: number; linkType: number },
): PcapFrame {
  const data = bytes.slice(p.start, p.start + p.captured);
  const frame: PcapFrame = {
    number,
    seconds,
    nanos,
    time: seconds + nanos / 1e9,
    originalLength: p.originalLength,
    data,
  };
  const segment = decodeLink(data, p.linkType, p.captured < p.originalLength, p.start);
  if (segment !== undefined) frame.segment = segment;
  return frame;
}

/** Finds the IPv4 packet inside a frame of the given link type. */
function decodeLink(
  data: Uint8Array,
  linkType: number,
  cut: boolean,
  base: number,
): TransportSegment | undefined {
  if (linkType === LinkType.RAW || linkType === LinkType.IPV4) {
    if (data.length < 1 || (data[0] as number) >> 4 !== 4) return undefined;
    return decodeIpv4(data, 0, cut, base);
  }
  if (linkType !== LinkType.ETHERNET) return undefined;
  let at = 12; // destination and source MAC
  for (;;) {
    if (at + 2 > data.length) return undefined;
    const type = ((data[at] as number) << 8) | (data[at + 1] as number);
    if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) {
      at += 4; // IEEE 802.1Q tag
      continue;
    }
    if (type !== ETHERTYPE_IPV4) return undefined;
    return decodeIpv4(data, at + 2, cut, base);
  }
}

/** IPv4 (RFC 791 §3.1) then UDP (RFC 768) or TCP (RFC 9293 §3.1). */
function decodeIpv4(
  data: Uint8Array,
  at: number,
  cut: boolean,
  base: number,
): TransportSegment | undefined {
  const fail = (offset: number, message: string): never => {
    throw new WireError("pcap", base + offset, `Cannot decode IPv4 packet: ${message}`);
  };
  if (at + 20 > data.length) {
    if (cut) return undefined;
    fail(at, `${data.length - at} bytes is shorter than the 20-byte header`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const vihl = data[at] as number;
  if (vihl >> 4 !== 4) fail(at, `version is ${vihl >> 4}, expected 4`);
  const ihl = (vihl & 15) * 4;
  if (ihl < 20) fail(at, `header length is ${ihl}, at least 20`);
  const totalLength = view.getUint16(at + 2);
  if (totalLength < ihl) fail(at + 2, `total length ${totalLength} is less than the header`);
  const fragment = view.getUint16(at + 6);
  const protocol = data[at + 9] as number;
  const srcIp = view.getUint32(at + 12);
  const dstIp = view.getUint32(at + 16);
  const end = at + totalLength; // anything after it is Ethernet padding
  let truncated = false;
  let limit = end;
  if (end > data.length) {
    if (!cut) {
      fail(at + 2, `total length ${totalLength}, only ${data.length - at} bytes in the frame`);
    }
    truncated = true;
    limit = data.length;
  }
  if ((fragment & 0x1fff) !== 0 || (fragment & 0x2000) !== 0) return undefined; // a fragment
  const t = at + ihl;
  if (t > limit) {
    if (truncated) return undefined;
    fail(at, `header length ${ihl} runs past the packet`);
  }
  if (protocol === IP_PROTOCOL_UDP) {
    if (t + 8 > limit) {
      if (truncated) return undefined;
      fail(t, "UDP header is cut short");
    }
    const udpLength = view.getUint16(t + 4);
    if (udpLength < 8 || t + udpLength > end) {
      fail(t + 4, `UDP length ${udpLength} does not fit the IPv4 packet`);
    }
    const payloadEnd = Math.min(t + udpLength, limit);
    return {
      protocol: "udp",
      srcIp,
      dstIp,
      srcPort: view.getUint16(t),
      dstPort: view.getUint16(t + 2),
      payload: data.subarray(t + 8, payloadEnd),
      truncated: payloadEnd < t + udpLength,
    };
  }
  if (protocol === IP_PROTOCOL_TCP) {
    if (t + 20 > limit) {
      if (truncated) return undefined;
      fail(t, "TCP header is cut short");
    }
    const dataOffset = ((data[t + 12] as number) >> 4) * 4;
    if (dataOffset < 20 || t + dataOffset > end) {
      fail(t + 12, `TCP data offset ${dataOffset} does not fit the IPv4 packet`);
    }
    const payloadStart = Math.min(t + dataOffset, limit);
    return {
      protocol: "tcp",
      srcIp,
      dstIp,
      srcPort: view.getUint16(t),
      dstPort: view.getUint16(t + 2),
      payload: data.subarray(payloadStart, limit),
      truncated,
      tcpSeq: view.getUint32(t + 4),
      tcpAck: view.getUint32(t + 8),
      tcpFlags: data[t + 13] as number,
    };
  }
  return undefined;
}
