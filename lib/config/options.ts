/**
 * DHCP option names and value encodings for the configuration file (RFC 2132 and later).
 * Names follow ISC dhcpd / Kea where they exist, so configs read familiar.
 */
import { fromHex, ipToBytes, parseIpv4, prefixMask } from "../wire/ip.ts";

/** How a configured value becomes option bytes. */
export type OptionKind =
  /** One IPv4 address: "192.0.2.1". */
  | "ip"
  /** One or more IPv4 addresses: ["192.0.2.1", "192.0.2.2"] (a single string is accepted). */
  | "ips"
  /** Unsigned and signed integers, big-endian. */
  | "u8"
  | "u16"
  | "u32"
  | "i32"
  /** true or false, one byte 1 or 0. */
  | "bool"
  /** A string, sent as its UTF-8 bytes. */
  | "text"
  /** Raw bytes written as hex: "0a:0b:0c", "0a0b0c", { hex: "0a0b" } or { text: "abc" }. */
  | "bytes"
  /** RFC 3442 classless routes: ["198.51.100.0/24 via 192.0.2.1"]. */
  | "routes"
  /** Lists of integers. */
  | "u8s"
  | "u16s"
  /** Pairs of addresses: ["198.51.100.7 via 192.0.2.1"] or [["198.51.100.7", "192.0.2.1"]]. */
  | "ip-pairs"
  /** RFC 3397 domain search list, written without compression: ["example.com"]. */
  | "domains";

/** One option known by name. */
export interface OptionDef {
  code: number;
  name: string;
  kind: OptionKind;
}

/** Options the configuration may set, by name (RFC 2132 unless noted). */
export const OPTION_DEFS: readonly OptionDef[] = [
  { code: 1, name: "subnet-mask", kind: "ip" }, // §3.3
  { code: 2, name: "time-offset", kind: "i32" }, // §3.4
  { code: 3, name: "routers", kind: "ips" }, // §3.5
  { code: 4, name: "time-servers", kind: "ips" }, // §3.6
  { code: 5, name: "ien116-name-servers", kind: "ips" }, // §3.7
  { code: 6, name: "domain-name-servers", kind: "ips" }, // §3.8
  { code: 7, name: "log-servers", kind: "ips" }, // §3.9
  { code: 8, name: "cookie-servers", kind: "ips" }, // §3.10
  { code: 9, name: "lpr-servers", kind: "ips" }, // §3.11
  { code: 10, name: "impress-servers", kind: "ips" }, // §3.12
  { code: 11, name: "resource-location-servers", kind: "ips" }, // §3.13
  { code: 12, name: "host-name", kind: "text" }, // §3.14
  { code: 13, name: "boot-size", kind: "u16" }, // §3.15
  { code: 14, name: "merit-dump", kind: "text" }, // §3.16
  { code: 15, name: "domain-name", kind: "text" }, // §3.17
  { code: 16, name: "swap-server", kind: "ip" }, // §3.18
  { code: 17, name: "root-path", kind: "text" }, // §3.19
  { code: 18, name: "extensions-path", kind: "text" }, // §3.20
  { code: 19, name: "ip-forwarding", kind: "bool" }, // §4.1
  { code: 20, name: "non-local-source-routing", kind: "bool" }, // §4.2
  { code: 21, name: "policy-filter", kind: "ip-pairs" }, // §4.3
  { code: 22, name: "max-dgram-reassembly", kind: "u16" }, // §4.4
  { code: 23, name: "default-ip-ttl", kind: "u8" }, // §4.5
  { code: 24, name: "path-mtu-aging-timeout", kind: "u32" }, // §4.6
  { code: 25, name: "path-mtu-plateau-table", kind: "u16s" }, // §4.7
  { code: 26, name: "interface-mtu", kind: "u16" }, // §5.1
  { code: 27, name: "all-subnets-local", kind: "bool" }, // §5.2
  { code: 28, name: "broadcast-address", kind: "ip" }, // §5.3
  { code: 29, name: "perform-mask-discovery", kind: "bool" }, // §5.4
  { code: 30, name: "mask-supplier", kind: "bool" }, // §5.5
  { code: 31, name: "router-discovery", kind: "bool" }, // §5.6
  { code: 32, name: "router-solicitation-address", kind: "ip" }, // §5.7
  { code: 33, name: "static-routes", kind: "ip-pairs" }, // §5.8
  { code: 34, name: "trailer-encapsulation", kind: "bool" }, // §6.1
  { code: 35, name: "arp-cache-timeout", kind: "u32" }, // §6.2
  { code: 36, name: "ieee802-3-encapsulation", kind: "bool" }, // §6.3
  { code: 37, name: "default-tcp-ttl", kind: "u8" }, // §7.1
  { code: 38, name: "tcp-keepalive-interval", kind: "u32" }, // §7.2
  { code: 39, name: "tcp-keepalive-garbage", kind: "bool" }, // §7.3
  { code: 40, name: "nis-domain", kind: "text" }, // §8.1
  { code: 41, name: "nis-servers", kind: "ips" }, // §8.2
  { code: 42, name: "ntp-servers", kind: "ips" }, // §8.3
  { code: 43, name: "vendor-encapsulated-options", kind: "bytes" }, // §8.4
  { code: 44, name: "netbios-name-servers", kind: "ips" }, // §8.5
  { code: 45, name: "netbios-dd-server", kind: "ips" }, // §8.6
  { code: 46, name: "netbios-node-type", kind: "u8" }, // §8.7
  { code: 47, name: "netbios-scope", kind: "text" }, // §8.8
  { code: 48, name: "font-servers", kind: "ips" }, // §8.9
  { code: 49, name: "x-display-manager", kind: "ips" }, // §8.10
  { code: 64, name: "nisplus-domain", kind: "text" }, // §8.11
  { code: 65, name: "nisplus-servers", kind: "ips" }, // §8.12
  { code: 66, name: "tftp-server-name", kind: "text" }, // §9.4
  { code: 67, name: "boot-file-name", kind: "text" }, // §9.5
  { code: 68, name: "mobile-ip-home-agent", kind: "ips" }, // §8.13
  { code: 69, name: "smtp-server", kind: "ips" }, // §8.14
  { code: 70, name: "pop-server", kind: "ips" }, // §8.15
  { code: 71, name: "nntp-server", kind: "ips" }, // §8.16
  { code: 72, name: "www-server", kind: "ips" }, // §8.17
  { code: 73, name: "finger-server", kind: "ips" }, // §8.18
  { code: 74, name: "irc-server", kind: "ips" }, // §8.19
  { code: 75, name: "streettalk-server", kind: "ips" }, // §8.20
  { code: 76, name: "streettalk-directory-assistance-server", kind: "ips" }, // §8.21
  { code: 100, name: "pcode", kind: "text" }, // RFC 4833
  { code: 101, name: "tcode", kind: "text" }, // RFC 4833
  { code: 108, name: "v6-only-preferred", kind: "u32" }, // RFC 8925
  { code: 114, name: "v4-captive-portal", kind: "text" }, // RFC 8910
  { code: 119, name: "domain-search", kind: "domains" }, // RFC 3397
  { code: 121, name: "classless-static-routes", kind: "routes" }, // RFC 3442
];

/**
 * Codes the server sets itself from the exchange or its own settings (RFC 2132 §9, RFC 3046,
 * RFC 4039); configuring them would contradict what the server computes.
 */
export const SERVER_MANAGED_CODES: ReadonlyMap<number, string> = new Map([
  [0, "pad"],
  [50, "requested address"],
  [51, "lease time"],
  [52, "option overload"],
  [53, "message type"],
  [54, "server identifier"],
  [55, "parameter request list"],
  [57, "maximum message size"],
  [58, "renewal time"],
  [59, "rebinding time"],
  [61, "client identifier"],
  [80, "rapid commit"],
  [82, "relay agent information"],
  [255, "end"],
]);

const BY_NAME: ReadonlyMap<string, OptionDef> = new Map(OPTION_DEFS.map((d) => [d.name, d]));
const BY_CODE: ReadonlyMap<number, OptionDef> = new Map(OPTION_DEFS.map((d) => [d.code, d]));

/** The most bytes one option instance carries (RFC 2132 §2: the length is one octet). */
export const OPTION_MAX_LENGTH = 255;

/** Looks up an option by its configuration name. */
export function optionByName(name: string): OptionDef | undefined {
  return BY_NAME.get(name);
}

/** Looks up an option by code; codes without a name get a generic "bytes" definition. */
export function optionByCode(code: number): OptionDef {
  return BY_CODE.get(code) ?? { code, name: String(code), kind: "bytes" };
}

const encoder = new TextEncoder();

function show(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  return String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function ip(value: unknown): number | string {
  if (typeof value === "string") {
    const v = parseIpv4(value);
    if (v !== undefined) return v;
  }
  return `expected an IPv4 address, got ${show(value)}`;
}

function list(value: unknown, single: boolean): unknown[] | string {
  if (Array.isArray(value)) {
    return value.length > 0 ? value : "expected at least one value, got an empty list";
  }
  if (single && value !== null && value !== undefined && !isPlainObject(value)) return [value];
  return `expected a list, got ${show(value)}`;
}

function integer(value: unknown, min: number, max: number): number | string {
  if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= max) {
    return value;
  }
  return `expected an integer from ${min} to ${max}, got ${show(value)}`;
}

const INT_RANGES = {
  u8: [0, 0xff, 1],
  u16: [0, 0xffff, 2],
  u32: [0, 0xffffffff, 4],
  i32: [-0x80000000, 0x7fffffff, 4],
} as const;

function writeInt(out: number[], v: number, size: number): void {
  const u = v < 0 ? v + 2 ** (8 * size) : v;
  for (let i = size - 1; i >= 0; i--) out.push(Math.floor(u / 2 ** (8 * i)) & 0xff);
}

/** A pair of two things separated by whitespace, optionally with "via" or "-" between them. */
function splitPair(value: unknown): [string, string] | undefined {
  if (Array.isArray(value) && value.length === 2) {
    const [a, b] = value;
    if (typeof a === "string" && typeof b === "string") return [a, b];
    return undefined;
  }
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\S+)\s+(?:(?:via|-)\s+)?(\S+)\s*$/.exec(value);
  return m ? [m[1] as string, m[2] as string] : undefined;
}

/** RFC 1035 §3.1 name encoding, uncompressed (RFC 3397 §2 allows this). */
function encodeDomain(name: string, out: number[]): string | undefined {
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  if (trimmed === "") return `expected a domain name, got ${show(name)}`;
  const start = out.length;
  for (const label of trimmed.split(".")) {
    if (!/^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$/.test(label) || label.length > 63) {
      return `domain name ${show(name)} has an invalid label ${show(label)}`;
    }
    out.push(label.length);
    for (let i = 0; i < label.length; i++) out.push(label.charCodeAt(i));
  }
  out.push(0);
  // RFC 1035 §3.1: names are at most 255 octets on the wire.
  if (out.length - start > 255) return `domain name ${show(name)} is longer than 255 bytes`;
  return undefined;
}

function encodeBytes(value: unknown): Uint8Array | string {
  if (typeof value === "string") {
    const b = fromHex(value);
    return b ?? `expected hex bytes such as "0a:0b:0c", got ${show(value)}`;
  }
  if (isPlainObject(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && typeof value.hex === "string") return encodeBytes(value.hex);
    if (keys.length === 1 && typeof value.text === "string") return encoder.encode(value.text);
  }
  const quote = typeof value === "number" ? " (quote it)" : "";
  return `expected hex bytes such as "0a:0b:0c", { hex: "0a0b0c" } or { text: "abc" }, got ${
    show(value)
  }${quote}`;
}

function encodeKind(def: OptionDef, value: unknown): Uint8Array | string {
  const out: number[] = [];
  switch (def.kind) {
    case "ip": {
      const v = ip(value);
      return typeof v === "string" ? v : ipToBytes(v);
    }
    case "ips": {
      const items = list(value, true);
      if (typeof items === "string") return items;
      for (const item of items) {
        const v = ip(item);
        if (typeof v === "string") return v;
        out.push(...ipToBytes(v));
      }
      break;
    }
    case "u8":
    case "u16":
    case "u32":
    case "i32": {
      const [min, max, size] = INT_RANGES[def.kind];
      const v = integer(value, min, max);
      if (typeof v === "string") return v;
      writeInt(out, v, size);
      break;
    }
    case "u8s":
    case "u16s": {
      const items = list(value, true);
      if (typeof items === "string") return items;
      const [min, max, size] = INT_RANGES[def.kind === "u8s" ? "u8" : "u16"];
      for (const item of items) {
        const v = integer(item, min, max);
        if (typeof v === "string") return v;
        writeInt(out, v, size);
      }
      break;
    }
    case "bool":
      if (typeof value !== "boolean") return `expected true or false, got ${show(value)}`;
      out.push(value ? 1 : 0);
      break;
    case "text":
      if (typeof value !== "string" || value === "") {
        return `expected a non-empty string, got ${show(value)}`;
      }
      return encoder.encode(value);
    case "bytes":
      return encodeBytes(value);
    case "ip-pairs": {
      const items = list(value, false);
      if (typeof items === "string") return items;
      for (const item of items) {
        const pair = splitPair(item);
        const a = pair && parseIpv4(pair[0]);
        const b = pair && parseIpv4(pair[1]);
        if (a === undefined || b === undefined) {
          return `expected a pair of addresses such as "198.51.100.7 via 192.0.2.1", got ${
            show(item)
          }`;
        }
        // RFC 2132 §5.8: the default route (0.0.0.0) is illegal as a static route destination.
        if (def.code === 33 && a === 0) {
          return `destination 0.0.0.0 is not allowed in static routes: use classless-static-routes`;
        }
        out.push(...ipToBytes(a), ...ipToBytes(b));
      }
      break;
    }
    case "routes": {
      const items = list(value, false);
      if (typeof items === "string") return items;
      for (const item of items) {
        const bad = `expected a route such as "198.51.100.0/24 via 192.0.2.1", got ${show(item)}`;
        const pair = splitPair(item);
        if (!pair) return bad;
        const m = /^(\S+)\/(\d{1,2})$/.exec(pair[0]);
        const dest = m ? parseIpv4(m[1] as string) : undefined;
        const prefix = m ? Number(m[2]) : 33;
        const router = parseIpv4(pair[1]);
        if (dest === undefined || router === undefined || prefix > 32) return bad;
        // RFC 3442 §2: the destination is sent as its significant octets only.
        if (((dest & prefixMask(prefix)) >>> 0) !== dest) {
          return `route destination ${show(pair[0])} has host bits set`;
        }
        out.push(prefix, ...ipToBytes(dest).subarray(0, Math.ceil(prefix / 8)));
        out.push(...ipToBytes(router));
      }
      break;
    }
    case "domains": {
      const items = list(value, true);
      if (typeof items === "string") return items;
      for (const item of items) {
        if (typeof item !== "string") return `expected a domain name, got ${show(item)}`;
        const err = encodeDomain(item, out);
        if (err) return err;
      }
      break;
    }
  }
  return new Uint8Array(out);
}

/**
 * Encodes a configured value (as parsed from YAML) into option bytes, or returns what is wrong
 * with it. Every kind also accepts `{ hex: "..." }` to give the raw bytes.
 */
export function encodeOptionValue(def: OptionDef, value: unknown): Uint8Array | string {
  let bytes: Uint8Array | string;
  if (def.kind !== "bytes" && isPlainObject(value) && "hex" in value) {
    bytes = Object.keys(value).length === 1 && typeof value.hex === "string"
      ? encodeBytes(value.hex)
      : `expected { hex: "0a0b0c" }, got ${show(value)}`;
  } else {
    bytes = encodeKind(def, value);
  }
  if (typeof bytes !== "string" && bytes.length > OPTION_MAX_LENGTH) {
    return `value is ${bytes.length} bytes long, at most ${OPTION_MAX_LENGTH} fit in one option`;
  }
  return bytes;
}
