/**
 * Classic libpcap file reader (not pcapng): Ethernet (with 802.1Q tags) or raw IPv4 frames,
 * IPv4, then UDP or TCP, giving each frame's timestamp, addresses, ports and transport payload.
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
