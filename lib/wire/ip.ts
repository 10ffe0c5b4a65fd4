/** IPv4 addresses as uint32 numbers in the core, dotted strings at the edges (STYLE.md §4). */

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted-quad IPv4 address; returns undefined when it is not one. */
export function parseIpv4(text: string): number | undefined {
  const m = DOTTED.exec(text.trim());
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part.startsWith("0")) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v;
}

/** Formats a uint32 as a dotted quad. */
export function formatIpv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Reads a uint32 address from 4 bytes at an offset. */
export function ipFromBytes(b: Uint8Array, offset = 0): number {
  return (((b[offset] ?? 0) << 24) | ((b[offset + 1] ?? 0) << 16) | ((b[offset + 2] ?? 0) << 8) |
    (b[offset + 3] ?? 0)) >>> 0;
}

/** Four big-endian bytes of an address. */
export function ipToBytes(v: number): Uint8Array {
  return new Uint8Array([(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);
}

/** The netmask (uint32) of a prefix length 0..32. */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** An IPv4 network such as 198.18.0.0/15. */
export interface Cidr {
  network: number;
  prefix: number;
  mask: number;
}

/** Parses `a.b.c.d/n`; returns undefined when malformed. Host bits must be zero. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) return undefined;
  const addr = parseIpv4(m[1] as string);
  const prefix = Number(m[2]);
  if (addr === undefined || prefix > 32) return undefined;
  const mask = prefixMask(prefix);
  if (((addr & mask) >>> 0) !== addr) return undefined;
  return { network: addr, prefix, mask };
}

/** True when the address lies in the network. */
export function cidrContains(net: Cidr, addr: number): boolean {
  return ((addr & net.mask) >>> 0) === net.network;
}

/** The directed broadcast address of a network. */
export function cidrBroadcast(net: Cidr): number {
  return (net.network | (~net.mask >>> 0)) >>> 0;
}

/** Parses `02:00:00:00:00:01` (or with dashes) into bytes; undefined when malformed. */
export function parseMac(text: string): Uint8Array | undefined {
  const parts = text.trim().split(/[:-]/);
  if (parts.length < 1 || parts.length > 16) return undefined;
  const out = new Uint8Array(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (!/^[0-9a-fA-F]{1,2}$/.test(p)) return undefined;
    out[i] = parseInt(p, 16);
  }
  return out;
}

/** "00".."ff": each request is keyed and logged by the hex of its chaddr or client id. */
const HEX_OCTETS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Formats bytes as lower-case colon-separated hex. */
export function formatMac(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) {
    if (i > 0) s += ":";
    s += HEX_OCTETS[b[i] as number];
  }
  return s;
}

/** Lower-case hex without separators. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX_OCTETS[b[i] as number];
  return s;
}

/** Parses hex, ignoring whitespace and colons; undefined when malformed. */
export function fromHex(text: string): Uint8Array | undefined {
  const clean = text.replace(/[\s:]/g, "");
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) return undefined;
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
