/**
 * YAML -> validated Config. Every problem is collected with its line:column and thrown at once
 * as one ConfigError, so `duet check` can list them all.
 */
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { ConfigError, type ConfigProblem } from "../errors.ts";
import {
  type Cidr,
  cidrBroadcast,
  cidrContains,
  formatIpv4,
  formatMac,
  fromHex,
  parseIpv4,
  parseMac,
  prefixMask,
} from "../wire/ip.ts";
import {
  encodeOptionValue,
  OPTION_DEFS,
  optionByCode,
  optionByName,
  SERVER_MANAGED_CODES,
} from "./options.ts";
import type {
  Config,
  ConfigPos,
  ControlConfig,
  FailoverConfig,
  FailoverRole,
  FailoverTlsConfig,
  GuardConfig,
  HooksConfig,
  LeaseTimes,
  ListenSpec,
  OptionMap,
  PoolConfig,
  RateLimit,
  ReservationConfig,
  SubnetConfig,
} from "./types.ts";

/** `hooks:` defaults: a run's time limit, the events that may wait, and runs at once. */
export const HOOKS_DEFAULTS = { timeoutMs: 10_000, queue: 1000, concurrency: 1 } as const;
/** Lease times used when the file does not set them, in seconds. */
export const DEFAULT_LEASE_TIME: Readonly<LeaseTimes> = { default: 3600, max: 86400, min: 60 };
/** Seconds an offered address stays held for the client it was offered to. */
export const DEFAULT_OFFER_HOLD = 10;
/** Group commit defaults: the longest a lease waits for its COMMIT, and the most per COMMIT. */
export const DEFAULT_COMMIT_DELAY_MS = 2;
export const DEFAULT_COMMIT_BATCH = 256;
/** The DHCP server port (RFC 2131 §4.1). */
export const DHCP_SERVER_PORT = 67;
/**
 * Defaults of `rate-limit`, `offer-limit` and `relay-allow` (lib/server/guard.ts); README
 * "Top-level keys" gives the reasons.
 */
export const DEFAULT_GUARD: Readonly<GuardConfig> = {
  // A real client sends a handful of requests a minute (RFC 2131 §4.1 backs off from 4 s);
  // 4/s with a burst of 32 never touches one and cuts a looping or flooding MAC to 4/s.
  perClient: { rate: 4, burst: 32 },
  // Off: any fixed number either throttles a legitimate mass start (after a power cut, or a
  // new server with an empty database) on a large network or is too high to matter on a small one.
  global: null,
  trackedClients: 4096,
  offerLimit: 50,
  // Open, as before the key existed: the allow list needs the relays' addresses.
  relayAllow: null,
};

/** The failover TCP port (draft-12 §8.1). */
export const FAILOVER_PORT = 647;
/** Defaults of the `failover:` section; `mclt`, `split` and `relationship` apply to flags too. */
export const FAILOVER_DEFAULTS = {
  relationship: "duet",
  loadBalanceMaxSeconds: 3,
  hbaPolarity: "isc",
  // ISC dhcpd 4.4's defaults for its pool balancing statements.
  maxLeaseMisbalance: 15,
  minBalance: 60,
  maxBalance: 3600,
  maxUnackedBndupd: 10,
  maxResponseDelay: 30,
  autoPartnerDown: 0,
  // draft-12 §5.10: partners MAY differ in time by any amount (the delta is tracked per
  // message); §11.1 only asks that a limit be configurable, so none is set by default.
  maxClockSkew: 0,
  kernelFilter: true,
  /** Used by applyPeerFlags() when no `failover:` section gives one (ISC's usual value). */
  mclt: 3600,
  /** Used by applyPeerFlags() on a primary without `split`/`hba`: half the buckets each. */
  split: 128,
} as const;
/**
 * Longest relationship-name in octets. draft-12 §12.22 bounds it only by the 2048-octet
 * message (§6.1); 255 keeps CONNECT well inside that with every other option present.
 */
export const RELATIONSHIP_NAME_MAX = 255;
/** RFC 3074 §3: 256 hash buckets, so a 32-octet hash-bucket-assignment (draft-12 §12.11). */
export const HASH_BUCKETS = 256;

const TOP_KEYS = [
  "database",
  "authoritative",
  "listen",
  "lease-time",
  "options",
  "subnets",
  "offer-hold",
  "server-id",
  "commit",
  "log-level",
  "failover",
  "control",
  "hooks",
  "rate-limit",
  "offer-limit",
  "relay-allow",
] as const;
const RATE_LIMIT_KEYS = ["per-client", "global", "tracked-clients"] as const;
const BUCKET_KEYS = ["rate", "burst"] as const;
const CONTROL_KEYS = ["socket", "metrics"] as const;
const HOOKS_KEYS = ["command", "timeout-ms", "queue", "concurrency"] as const;
const FAILOVER_KEYS = [
  "role",
  "address",
  "port",
  "peer",
  "peer-port",
  "relationship",
  "mclt",
  "split",
  "hba",
  "hba-polarity",
  "load-balance-max-seconds",
  "max-lease-misbalance",
  "min-balance",
  "max-balance",
  "max-unacked-bndupd",
  "max-response-delay",
  "shared-secret-file",
  "auto-partner-down",
  "max-clock-skew",
  "kernel-filter",
  "tls",
] as const;
const TLS_KEYS = ["cert-file", "key-file", "ca-file", "require", "server-name"] as const;
const LISTEN_KEYS = ["interface", "address", "port"] as const;
const LEASE_TIME_KEYS = ["default", "max", "min"] as const;
const COMMIT_KEYS = ["delay-ms", "batch"] as const;
const SUBNET_KEYS = [
  "subnet",
  "pools",
  "options",
  "reservations",
  "interface",
  "relays",
  "lease-time",
  "authoritative",
] as const;
const POOL_KEYS = ["range", "options"] as const;
const RESERVATION_KEYS = ["hw-address", "client-id", "address", "hostname", "options"] as const;
const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** A YAML node as the walker sees it (after resolving aliases). */
type YamlNode = unknown;

/** One key of a map, with its nodes. */
interface Entry {
  name: string;
  path: string;
  key: YamlNode;
  value: YamlNode;
}

interface Ctx {
  lc: LineCounter;
  doc: Document;
  problems: ConfigProblem[];
}

function rangeOf(node: YamlNode): [number, number, number] | undefined {
  if (typeof node !== "object" || node === null) return undefined;
  const r = (node as { range?: [number, number, number] | null }).range;
  return r ?? undefined;
}

function posOf(ctx: Ctx, node: YamlNode): { line: number; col: number } {
  const r = rangeOf(node);
  return r ? ctx.lc.linePos(r[0]) : { line: 0, col: 0 };
}

function lineOf(ctx: Ctx, node: YamlNode): number {
  return posOf(ctx, node).line;
}

function report(ctx: Ctx, node: YamlNode, path: string, message: string): void {
  const { line, col } = posOf(ctx, node);
  ctx.problems.push({ path, line, col, message });
}

/** The node to point at for a problem with an entry's value: the value, or its key if absent. */
function valueSite(e: Entry): YamlNode {
  if (isScalar(e.value) && e.value.value === null) {
    const r = rangeOf(e.value);
    if (!r || r[0] === r[1]) return e.key;
  }
  return e.value ?? e.key;
}

function deref(ctx: Ctx, node: YamlNode): YamlNode {
  return isAlias(node) ? node.resolve(ctx.doc) : node;
}

function join(path: string, key: string | number): string {
  return path === "" ? String(key) : `${path}.${key}`;
}

function isNull(node: YamlNode): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/** Like describe(), with a hint to quote hex that YAML read as a number. */
function describeHex(node: YamlNode): string {
  const quote = isScalar(node) && typeof node.value === "number" ? " (quote it)" : "";
  return describe(node) + quote;
}

function describe(node: YamlNode): string {
  if (isMap(node)) return "a map";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null || v === undefined) return "nothing";
    if (typeof v === "string") return JSON.stringify(v);
    return String(v);
  }
  return node === null || node === undefined ? "nothing" : "an unsupported value";
}

function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] as number;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      prev[j] = Math.min(up + 1, (prev[j - 1] as number) + 1, diag + cost);
      diag = up;
    }
  }
  return prev[b.length] as number;
}

/** The closest candidate, when close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const norm = word.toLowerCase().replace(/_/g, "-");
  const limit = Math.max(2, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    // The distance is at least the difference in length: skip what cannot be close enough
    // (a 300-character key against every option name cost milliseconds).
    const gap = Math.min(Math.abs(norm.length - c.length), Math.abs(word.length - c.length));
    if (gap > limit) continue;
    const d = Math.min(distance(norm, c), distance(word, c));
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

function didYouMean(word: string, candidates: readonly string[]): string {
  const s = suggest(word, candidates);
  return s === undefined ? "" : `: did you mean ${JSON.stringify(s)}?`;
}

/** Reads a map's entries, reporting a non-map and every unknown key. */
function readMap(
  ctx: Ctx,
  node: YamlNode,
  path: string,
  what: string,
  allowed: readonly string[],
): Map<string, Entry> | undefined {
  node = deref(ctx, node);
  if (!isMap(node)) {
    report(ctx, node, path, `Expected a map for ${what}, got ${describe(node)}`);
    return undefined;
  }
  const out = new Map<string, Entry>();
  for (const pair of node.items) {
    const key = deref(ctx, pair.key);
    const name = isScalar(key) ? String(key.value) : undefined;
    if (name === undefined) {
      report(ctx, key ?? node, path, `Expected a plain key in ${what}, got ${describe(key)}`);
      continue;
    }
    const entry = { name, path: join(path, name), key, value: deref(ctx, pair.value) };
    if (!allowed.includes(name)) {
      report(
        ctx,
        key,
        entry.path,
        `Unknown key ${JSON.stringify(name)}${didYouMean(name, allowed)}`,
      );
      continue;
    }
    out.set(name, entry);
  }
  return out;
}

function missing(ctx: Ctx, node: YamlNode, path: string, key: string, what: string): void {
  report(ctx, node, join(path, key), `Missing required key ${JSON.stringify(key)} in ${what}`);
}

function scalarOf(e: Entry): unknown {
  return isScalar(e.value) ? e.value.value : undefined;
}

function readInt(ctx: Ctx, e: Entry, min: number, max: number): number | undefined {
  const v = scalarOf(e);
  if (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max) return v;
  report(
    ctx,
    valueSite(e),
    e.path,
    `Expected an integer from ${min} to ${max} for ${JSON.stringify(e.name)}, got ${
      describe(e.value)
    }`,
  );
  return undefined;
}

function readBool(ctx: Ctx, e: Entry): boolean | undefined {
  const v = scalarOf(e);
  if (typeof v === "boolean") return v;
  report(
    ctx,
    valueSite(e),
    e.path,
    `Expected true or false for ${JSON.stringify(e.name)}, got ${describe(e.value)}`,
  );
  return undefined;
}

function readString(ctx: Ctx, e: Entry): string | undefined {
  const v = scalarOf(e);
  if (typeof v === "string" && v.trim() !== "") return v;
  report(
    ctx,
    valueSite(e),
    e.path,
    `Expected a non-empty string for ${JSON.stringify(e.name)}, got ${describe(e.value)}`,
  );
  return undefined;
}

function readIpNode(ctx: Ctx, node: YamlNode, path: string, what: string): number | undefined {
  const v = isScalar(node) ? node.value : undefined;
  const ip = typeof v === "string" ? parseIpv4(v) : undefined;
  if (ip !== undefined) return ip;
  report(ctx, node, path, `Expected an IPv4 address for ${what}, got ${describe(node)}`);
  return undefined;
}

function readIp(ctx: Ctx, e: Entry): number | undefined {
  return readIpNode(ctx, valueSite(e), e.path, JSON.stringify(e.name));
}

/** Reads a list; an absent value (`key:` with nothing) reads as an empty list. */
function readSeq(ctx: Ctx, e: Entry): { node: YamlNode; path: string }[] | undefined {
  if (isNull(e.value)) return [];
  if (!isSeq(e.value)) {
    report(
      ctx,
      valueSite(e),
      e.path,
      `Expected a list for ${JSON.stringify(e.name)}, got ${describe(e.value)}`,
    );
    return undefined;
  }
  return e.value.items.map((n, i) => ({ node: deref(ctx, n), path: join(e.path, i) }));
}

function readLeaseTime(ctx: Ctx, e: Entry, base: Readonly<LeaseTimes>): LeaseTimes | undefined {
  const m = readMap(ctx, e.value, e.path, `"lease-time"`, LEASE_TIME_KEYS);
  if (!m) return undefined;
  const out: LeaseTimes = { ...base };
  let ok = true;
  for (const k of LEASE_TIME_KEYS) {
    const f = m.get(k);
    if (!f) continue;
    // RFC 2131 §3.3: lease times are 32-bit seconds; 0xffffffff means infinity.
    const v = readInt(ctx, f, 1, 0xffffffff);
    if (v === undefined) ok = false;
    else out[k] = v;
  }
  if (!ok) return undefined;
  if (out.default > out.max) {
    report(
      ctx,
      e.value,
      e.path,
      `Lease time default ${out.default} is greater than max ${out.max}`,
    );
  }
  if (out.min > out.default) {
    report(
      ctx,
      e.value,
      e.path,
      `Lease time min ${out.min} is greater than default ${out.default}`,
    );
  }
  return out;
}

const MANAGED_HINTS: ReadonlyMap<number, string> = new Map([
  [51, `use "lease-time" instead`],
  [54, `use "server-id" instead`],
  [58, `it follows from "lease-time"`],
  [59, `it follows from "lease-time"`],
  [61, `use "client-id" in a reservation to match on it`],
]);

const OPTION_NAMES = OPTION_DEFS.map((d) => d.name);

/** Reads an `options:` map (names or codes) into wire bytes in file order. */
function readOptions(ctx: Ctx, e: Entry | undefined): OptionMap {
  const out: OptionMap = new Map();
  if (!e || isNull(e.value)) return out;
  if (!isMap(e.value)) {
    report(ctx, valueSite(e), e.path, `Expected a map for "options", got ${describe(e.value)}`);
    return out;
  }
  const seen = new Map<number, YamlNode>();
  for (const pair of e.value.items) {
    const key = deref(ctx, pair.key);
    const value = deref(ctx, pair.value);
    const raw = isScalar(key) ? key.value : undefined;
    const name = String(raw);
    const path = join(e.path, name);
    let def;
    if (typeof raw === "number" || (typeof raw === "string" && /^\d+$/.test(raw))) {
      const code = Number(raw);
      if (!Number.isInteger(code) || code < 1 || code > 254) {
        report(ctx, key, path, `Option code ${name} is out of range: expected 1 to 254`);
        continue;
      }
      def = optionByCode(code);
    } else if (typeof raw === "string") {
      def = optionByName(raw);
      if (!def) {
        report(
          ctx,
          key,
          path,
          `Unknown option ${JSON.stringify(raw)}${didYouMean(raw, OPTION_NAMES)}`,
        );
        continue;
      }
    } else {
      report(ctx, key ?? e.value, path, `Expected an option name or code, got ${describe(key)}`);
      continue;
    }
    const managed = SERVER_MANAGED_CODES.get(def.code);
    if (managed !== undefined) {
      const hint = MANAGED_HINTS.get(def.code);
      report(
        ctx,
        key,
        path,
        `Option ${def.code} (${managed}) is set by the server${hint ? `: ${hint}` : ""}`,
      );
      continue;
    }
    const before = seen.get(def.code);
    if (before !== undefined) {
      report(
        ctx,
        key,
        path,
        `Option ${def.code} is already set at line ${lineOf(ctx, before)}`,
      );
      continue;
    }
    seen.set(def.code, key);
    const js = toJs(ctx, value);
    if ("error" in js) {
      report(
        ctx,
        value ?? key,
        path,
        `Cannot read the value of option ${JSON.stringify(def.name)}: ${js.error}`,
      );
      continue;
    }
    const bytes = encodeOptionValue(def, js.value);
    if (typeof bytes === "string") {
      const site = isNull(value) ? key : value;
      report(ctx, site, path, `Invalid value for option ${JSON.stringify(def.name)}: ${bytes}`);
      continue;
    }
    out.set(def.code, bytes);
  }
  return out;
}

/**
 * A node as a plain value. The YAML library throws (ReferenceError) on an alias whose anchor
 * comes later or is missing and on too many aliases (its billion-laughs guard): that is a
 * problem of the file, reported like any other, never an exception.
 */
function toJs(ctx: Ctx, node: YamlNode): { value: unknown } | { error: string } {
  if (!(isMap(node) || isSeq(node) || isScalar(node))) return { value: null };
  try {
    return { value: node.toJS(ctx.doc, { maxAliasCount: 100 }) };
  } catch (err: unknown) {
    const text = err instanceof Error ? err.message : String(err);
    return { error: text.charAt(0).toLowerCase() + text.slice(1) };
  }
}

function readListen(ctx: Ctx, e: Entry): ListenSpec[] {
  const out: ListenSpec[] = [];
  const items = readSeq(ctx, e);
  if (!items) return out;
  if (items.length === 0) {
    report(ctx, valueSite(e), e.path, `Expected at least one interface or address in "listen"`);
    return out;
  }
  const seen = new Map<string, YamlNode>();
  for (const item of items) {
    const m = readMap(ctx, item.node, item.path, "a listen entry", LISTEN_KEYS);
    if (!m) continue;
    const portEntry = m.get("port");
    const port = portEntry ? readInt(ctx, portEntry, 1, 65535) : DHCP_SERVER_PORT;
    const ifEntry = m.get("interface");
    const addrEntry = m.get("address");
    if (ifEntry && addrEntry) {
      report(ctx, item.node, item.path, `Listen entry has both "interface" and "address": use one`);
      continue;
    }
    let spec: ListenSpec | undefined;
    if (ifEntry) {
      const name = readString(ctx, ifEntry);
      if (name !== undefined && port !== undefined) {
        spec = { kind: "interface", interface: name, port };
      }
    } else if (addrEntry) {
      const address = readIp(ctx, addrEntry);
      if (address !== undefined && port !== undefined) spec = { kind: "address", address, port };
    } else {
      report(ctx, item.node, item.path, `Listen entry needs an "interface" or an "address"`);
    }
    if (!spec) continue;
    const id = spec.kind === "interface"
      ? `interface ${JSON.stringify(spec.interface)} port ${spec.port}`
      : `address ${formatIpv4(spec.address)} port ${spec.port}`;
    const before = seen.get(id);
    if (before !== undefined) {
      report(
        ctx,
        item.node,
        item.path,
        `Listen ${id} is already listed at line ${lineOf(ctx, before)}`,
      );
      continue;
    }
    seen.set(id, item.node);
    out.push(spec);
  }
  return out;
}

function readSubnetCidr(ctx: Ctx, e: Entry): Cidr | undefined {
  const v = scalarOf(e);
  const m = typeof v === "string" ? /^\s*([0-9.]+)\/(\d{1,2})\s*$/.exec(v) : null;
  const addr = m ? parseIpv4(m[1] as string) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (addr === undefined || !(prefix >= 0 && prefix <= 32)) {
    report(
      ctx,
      valueSite(e),
      e.path,
      `Expected a subnet such as "198.18.0.0/24" for "subnet", got ${describe(e.value)}`,
    );
    return undefined;
  }
  const mask = prefixMask(prefix);
  const network = (addr & mask) >>> 0;
  if (network !== addr) {
    report(
      ctx,
      valueSite(e),
      e.path,
      `Subnet ${JSON.stringify(v)} has host bits set: did you mean "${
        formatIpv4(network)
      }/${prefix}"?`,
    );
    return undefined;
  }
  return { network, prefix, mask };
}

function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.network)}/${c.prefix}`;
}

function formatRange(start: number, end: number): string {
  return `${formatIpv4(start)} - ${formatIpv4(end)}`;
}

/** Where a pool or reservation came from, for the checks across subnets. */
interface Located<T> {
  value: T;
  node: YamlNode;
  path: string;
  subnet: SubnetConfig;
}

interface Collected {
  subnets: Located<SubnetConfig>[];
  pools: Located<PoolConfig>[];
  reservations: Located<ReservationConfig>[];
  relays: Located<number>[];
}

function readPool(
  ctx: Ctx,
  node: YamlNode,
  path: string,
  subnet: Cidr | undefined,
): { pool: PoolConfig; site: YamlNode } | undefined {
  const m = readMap(ctx, node, path, "a pool", POOL_KEYS);
  if (!m) return undefined;
  const options = readOptions(ctx, m.get("options"));
  const r = m.get("range");
  if (!r) {
    missing(ctx, node, path, "range", "a pool");
    return undefined;
  }
  const v = scalarOf(r);
  const parts = typeof v === "string" ? /^\s*(\S+)\s*-\s*(\S+)\s*$/.exec(v) : null;
  const start = parts ? parseIpv4(parts[1] as string) : undefined;
  const end = parts ? parseIpv4(parts[2] as string) : undefined;
  const site = valueSite(r);
  if (start === undefined || end === undefined) {
    report(
      ctx,
      site,
      r.path,
      `Expected a range such as "198.18.16.1 - 198.18.16.200" for "range", got ${
        describe(r.value)
      }`,
    );
    return undefined;
  }
  if (start > end) {
    report(
      ctx,
      site,
      r.path,
      `Range start ${formatIpv4(start)} is greater than end ${formatIpv4(end)}`,
    );
    return undefined;
  }
  if (subnet) {
    if (!cidrContains(subnet, start) || !cidrContains(subnet, end)) {
      report(
        ctx,
        site,
        r.path,
        `Pool ${formatRange(start, end)} is outside subnet ${formatCidr(subnet)}`,
      );
    } else if (subnet.prefix <= 30) {
      // RFC 1122 §3.2.1.3 / RFC 919: the all-zeros and all-ones host numbers are not hosts.
      const bcast = cidrBroadcast(subnet);
      if (start === subnet.network) {
        report(
          ctx,
          site,
          r.path,
          `Pool ${formatRange(start, end)} includes the network address of subnet ${
            formatCidr(subnet)
          }`,
        );
      }
      if (end === bcast) {
        report(
          ctx,
          site,
          r.path,
          `Pool ${formatRange(start, end)} includes the broadcast address of subnet ${
            formatCidr(subnet)
          }`,
        );
      }
    }
  }
  return { pool: { start, end, options }, site };
}

const HOSTNAME =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function readReservation(
  ctx: Ctx,
  node: YamlNode,
  path: string,
  subnet: Cidr | undefined,
): { reservation: ReservationConfig; site: YamlNode; idSite: YamlNode } | undefined {
  const m = readMap(ctx, node, path, "a reservation", RESERVATION_KEYS);
  if (!m) return undefined;
  const options = readOptions(ctx, m.get("options"));
  let ok = true;
  let hwAddress: Uint8Array | null = null;
  let clientId: Uint8Array | null = null;
  let hostname: string | null = null;
  const hw = m.get("hw-address");
  const cid = m.get("client-id");
  if (hw && cid) {
    report(ctx, cid.key, cid.path, `Reservation has both "hw-address" and "client-id": use one`);
    ok = false;
  } else if (hw) {
    const v = scalarOf(hw);
    const mac = typeof v === "string" ? parseMac(v) : undefined;
    if (mac === undefined) {
      report(
        ctx,
        valueSite(hw),
        hw.path,
        `Expected a hardware address such as "02:00:00:00:00:01" for "hw-address", got ${
          describeHex(hw.value)
        }`,
      );
      ok = false;
    } else hwAddress = mac;
  } else if (cid) {
    const v = scalarOf(cid);
    const id = typeof v === "string" ? fromHex(v) : undefined;
    // RFC 2132 §9.14: a client identifier is at least 2 bytes (type and value).
    if (id === undefined || id.length < 2) {
      report(
        ctx,
        valueSite(cid),
        cid.path,
        `Expected a client id of at least 2 hex bytes such as "01:02:00:00:00:00:01" for "client-id", got ${
          describeHex(cid.value)
        }`,
      );
      ok = false;
    } else clientId = id;
  } else {
    report(ctx, node, path, `Reservation needs a "hw-address" or a "client-id"`);
    ok = false;
  }
  const h = m.get("hostname");
  if (h) {
    const v = scalarOf(h);
    if (typeof v === "string" && HOSTNAME.test(v) && v.length <= 253) hostname = v;
    else {
      report(
        ctx,
        valueSite(h),
        h.path,
        `Expected a host name such as "printer" for "hostname", got ${describe(h.value)}`,
      );
      ok = false;
    }
  }
  const a = m.get("address");
  let address: number | undefined;
  if (!a) {
    missing(ctx, node, path, "address", "a reservation");
  } else {
    address = readIp(ctx, a);
    if (address !== undefined && subnet) {
      const text = formatIpv4(address);
      if (!cidrContains(subnet, address)) {
        report(
          ctx,
          valueSite(a),
          a.path,
          `Reservation address ${text} is outside subnet ${formatCidr(subnet)}`,
        );
        ok = false;
      } else if (
        subnet.prefix <= 30 && (address === subnet.network || address === cidrBroadcast(subnet))
      ) {
        report(
          ctx,
          valueSite(a),
          a.path,
          `Reservation address ${text} is the ${
            address === subnet.network ? "network" : "broadcast"
          } address of subnet ${formatCidr(subnet)}`,
        );
        ok = false;
      }
    }
  }
  if (!ok || address === undefined) return undefined;
  const idSite = hw ? valueSite(hw) : cid ? valueSite(cid) : node;
  return {
    reservation: { hwAddress, clientId, address, hostname, options },
    site: a ? valueSite(a) : node,
    idSite,
  };
}

function readSubnet(
  ctx: Ctx,
  node: YamlNode,
  path: string,
  index: number,
  global: { leaseTime: LeaseTimes; authoritative: boolean },
  acc: Collected,
): void {
  const m = readMap(ctx, node, path, "a subnet", SUBNET_KEYS);
  if (!m) return;
  const s = m.get("subnet");
  let cidr: Cidr | undefined;
  if (!s) missing(ctx, node, path, "subnet", "a subnet");
  else cidr = readSubnetCidr(ctx, s);

  const lt = m.get("lease-time");
  const leaseTime = lt ? readLeaseTime(ctx, lt, global.leaseTime) : { ...global.leaseTime };
  const au = m.get("authoritative");
  const authoritative = au ? readBool(ctx, au) : global.authoritative;
  const ifEntry = m.get("interface");
  const iface = ifEntry ? readString(ctx, ifEntry) : null;
  const options = readOptions(ctx, m.get("options"));

  const cfg: SubnetConfig = {
    index,
    subnet: cidr ?? { network: 0, prefix: 0, mask: 0 },
    pools: [],
    options,
    reservations: [],
    interface: iface ?? null,
    relays: [],
    leaseTime: leaseTime ?? { ...global.leaseTime },
    authoritative: authoritative ?? global.authoritative,
  };

  const pools = m.get("pools");
  for (const item of (pools && readSeq(ctx, pools)) ?? []) {
    const p = readPool(ctx, item.node, item.path, cidr);
    if (!p) continue;
    cfg.pools.push(p.pool);
    acc.pools.push({ value: p.pool, node: p.site, path: join(item.path, "range"), subnet: cfg });
  }

  const reservations = m.get("reservations");
  const ids = new Map<string, YamlNode>();
  for (const item of (reservations && readSeq(ctx, reservations)) ?? []) {
    const r = readReservation(ctx, item.node, item.path, cidr);
    if (!r) continue;
    const res = r.reservation;
    const id = res.hwAddress
      ? `hw-address ${formatMac(res.hwAddress)}`
      : `client-id ${formatMac(res.clientId ?? new Uint8Array())}`;
    const before = ids.get(id);
    if (before !== undefined) {
      report(
        ctx,
        r.idSite,
        item.path,
        `Duplicate reservation for ${id}: already reserved at line ${lineOf(ctx, before)}`,
      );
      continue;
    }
    ids.set(id, r.idSite);
    cfg.reservations.push(res);
    acc.reservations.push({
      value: res,
      node: r.site,
      path: join(item.path, "address"),
      subnet: cfg,
    });
  }

  const relays = m.get("relays");
  for (const item of (relays && readSeq(ctx, relays)) ?? []) {
    const ip = readIpNode(ctx, item.node, item.path, "a relay");
    if (ip === undefined) continue;
    cfg.relays.push(ip);
    acc.relays.push({ value: ip, node: item.node, path: item.path, subnet: cfg });
  }

  if (cidr) {
    acc.subnets.push({
      value: cfg,
      node: valueSite(s as Entry),
      path: join(path, "subnet"),
      subnet: cfg,
    });
  }
}

/** Checks that need every subnet: overlaps, duplicates and relay ambiguity. */
function checkAcross(ctx: Ctx, acc: Collected): void {
  const { subnets, pools, reservations, relays } = acc;
  for (let i = 0; i < subnets.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = subnets[i] as Located<SubnetConfig>;
      const b = subnets[j] as Located<SubnetConfig>;
      if (
        cidrContains(a.value.subnet, b.value.subnet.network) ||
        cidrContains(b.value.subnet, a.value.subnet.network)
      ) {
        report(
          ctx,
          a.node,
          a.path,
          `Subnet ${formatCidr(a.value.subnet)} overlaps subnet ${
            formatCidr(b.value.subnet)
          } at line ${lineOf(ctx, b.node)}`,
        );
      }
    }
  }
  for (let i = 0; i < pools.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = pools[i] as Located<PoolConfig>;
      const b = pools[j] as Located<PoolConfig>;
      if (a.value.start <= b.value.end && b.value.start <= a.value.end) {
        report(
          ctx,
          a.node,
          a.path,
          `Pool ${formatRange(a.value.start, a.value.end)} overlaps pool ${
            formatRange(b.value.start, b.value.end)
          } at line ${lineOf(ctx, b.node)}`,
        );
      }
    }
  }
  const addresses = new Map<number, YamlNode>();
  for (const r of reservations) {
    const before = addresses.get(r.value.address);
    if (before !== undefined) {
      report(
        ctx,
        r.node,
        r.path,
        `Address ${formatIpv4(r.value.address)} is already reserved at line ${lineOf(ctx, before)}`,
      );
      continue;
    }
    addresses.set(r.value.address, r.node);
  }
  const relaySeen = new Map<number, Located<number>>();
  for (const r of relays) {
    const text = formatIpv4(r.value);
    const before = relaySeen.get(r.value);
    if (before !== undefined) {
      report(
        ctx,
        r.node,
        r.path,
        `Relay ${text} already selects subnet ${formatCidr(before.subnet.subnet)} at line ${
          lineOf(ctx, before.node)
        }`,
      );
      continue;
    }
    relaySeen.set(r.value, r);
    const inside = subnets.find((s) =>
      s.value !== r.subnet && cidrContains(s.value.subnet, r.value)
    );
    if (inside) {
      report(
        ctx,
        r.node,
        r.path,
        `Relay ${text} is inside subnet ${formatCidr(inside.value.subnet)} at line ${
          lineOf(ctx, inside.node)
        }, so it cannot also select subnet ${formatCidr(r.subnet.subnet)}`,
      );
    }
  }
}

/** A unicast host address: not 0.0.0.0, 255.255.255.255, multicast (224/4) or class E. */
function isHostAddress(ip: number): boolean {
  return ip !== 0 && ip >>> 28 < 0xe;
}

function isLoopback(ip: number): boolean {
  return ip >>> 24 === 127;
}

/**
 * Why `peer` cannot be the partner given the local `address` and ports, or undefined. The same
 * address is allowed on loopback only (two processes on one host, for tests), on other ports.
 */
function peerConflict(f: {
  address: number;
  port: number;
  peer: number;
  peerPort: number;
}): string | undefined {
  if (f.peer !== f.address) return undefined;
  const text = formatIpv4(f.peer);
  if (f.peerPort === f.port) {
    return `Peer ${text} port ${f.peerPort} is this server's own failover address and port`;
  }
  if (isLoopback(f.peer)) return undefined;
  return `Peer ${text} is this server's own failover address: the partner must be another ` +
    `host (the same address is allowed on loopback only)`;
}

/** The default local failover address: the first `listen` address, else 0.0.0.0. */
function defaultFailoverAddress(listen: readonly ListenSpec[]): number {
  for (const l of listen) if (l.kind === "address") return l.address;
  return 0;
}

/** Why a relationship-name is not acceptable (draft-12 §12.22), or undefined. */
function relationshipProblem(name: string): string | undefined {
  if (name.trim() === "") return "Relationship name is empty";
  const octets = new TextEncoder().encode(name).length;
  if (octets > RELATIONSHIP_NAME_MAX) {
    return `Relationship name is ${octets} octets long: the most is ${RELATIONSHIP_NAME_MAX}`;
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    return "Relationship name contains a control character";
  }
  return undefined;
}

function readFailover(ctx: Ctx, e: Entry, listen: readonly ListenSpec[]): FailoverConfig | null {
  const m = readMap(ctx, e.value, e.path, `"failover"`, FAILOVER_KEYS);
  if (!m) return null;
  const what = `"failover"`;
  const at = (k: string): Entry | undefined => m.get(k);

  let role: FailoverRole = "primary";
  const r = at("role");
  if (!r) missing(ctx, e.value, e.path, "role", what);
  else {
    const v = scalarOf(r);
    if (v === "primary" || v === "secondary") role = v;
    else {
      report(
        ctx,
        valueSite(r),
        r.path,
        `Expected "primary" or "secondary" for "role", got ${describe(r.value)}`,
      );
    }
  }
  const roleKnown = r !== undefined && (scalarOf(r) === "primary" || scalarOf(r) === "secondary");

  const a = at("address");
  let address = defaultFailoverAddress(listen);
  let addressOk = true;
  if (a) {
    const ip = readIp(ctx, a);
    if (ip === undefined) addressOk = false;
    else if (ip !== 0 && !isHostAddress(ip)) {
      report(ctx, valueSite(a), a.path, `Failover address ${formatIpv4(ip)} is not a host address`);
      addressOk = false;
    } else address = ip;
  }
  const po = at("port");
  const port = (po ? readInt(ctx, po, 1, 65535) : undefined) ?? FAILOVER_PORT;

  const pe = at("peer");
  let peer: number | undefined;
  if (!pe) missing(ctx, e.value, e.path, "peer", what);
  else {
    peer = readIp(ctx, pe);
    if (peer !== undefined && !isHostAddress(peer)) {
      report(ctx, valueSite(pe), pe.path, `Peer ${formatIpv4(peer)} is not a host address`);
      peer = undefined;
    }
  }
  const pp = at("peer-port");
  const peerPort = (pp ? readInt(ctx, pp, 1, 65535) : undefined) ?? FAILOVER_PORT;
  if (pe && peer !== undefined && addressOk) {
    const why = peerConflict({ address, port, peer, peerPort });
    if (why) report(ctx, valueSite(pe), pe.path, why);
  }

  let relationship: string = FAILOVER_DEFAULTS.relationship;
  const rel = at("relationship");
  if (rel) {
    const v = scalarOf(rel);
    const why = typeof v === "string" ? relationshipProblem(v) : undefined;
    if (typeof v !== "string") {
      report(
        ctx,
        valueSite(rel),
        rel.path,
        `Expected a string for "relationship", got ${describe(rel.value)}`,
      );
    } else if (why) report(ctx, valueSite(rel), rel.path, why);
    else relationship = v;
  }

  // draft-12 §5.2.1, §12.15: the MCLT is a 32-bit count of seconds, set on the primary and sent
  // to the secondary in CONNECT (§7.8.1).
  const mc = at("mclt");
  let mclt: number | null = null;
  if (mc) mclt = readInt(ctx, mc, 1, 0xffffffff) ?? null;
  else if (roleKnown && role === "primary") missing(ctx, e.value, e.path, "mclt", what);

  // RFC 3074 load balancing: the primary decides and tells the secondary (draft-12 §7.8.1).
  const sp = at("split");
  const hb = at("hba");
  let split: number | null = null;
  let hba: Uint8Array | null = null;
  // A secondary learns the assignment from CONNECT; if it sets one, a different one from the
  // primary is refused (§7.8.2 step 8).
  {
    if (sp && hb) {
      report(ctx, hb.key, hb.path, `Failover has both "split" and "hba": use one`);
    }
    if (sp) split = readInt(ctx, sp, 0, HASH_BUCKETS) ?? null;
    if (hb) {
      const v = scalarOf(hb);
      const bytes = typeof v === "string" && /^\s*[0-9a-fA-F]{64}\s*$/.test(v)
        ? fromHex(v)
        : undefined;
      if (bytes === undefined) {
        report(
          ctx,
          valueSite(hb),
          hb.path,
          `Expected 64 hex digits (32 octets, one bit per hash bucket) for "hba", got ${
            describeHex(hb.value)
          }`,
        );
      } else hba = bytes;
    }
    if (!sp && !hb && roleKnown && role === "primary") {
      report(
        ctx,
        e.value,
        join(e.path, "split"),
        `Missing required key "split" (or "hba") in "failover" for a primary`,
      );
    }
  }

  const int = (k: string, min: number, max: number, dflt: number): number => {
    const x = at(k);
    return (x ? readInt(ctx, x, min, max) : undefined) ?? dflt;
  };
  // RFC 2131 §2: `secs` is 16 bits.
  const loadBalanceMaxSeconds = int(
    "load-balance-max-seconds",
    0,
    65535,
    FAILOVER_DEFAULTS.loadBalanceMaxSeconds,
  );
  // draft-12 §7.8.1: MUST be at least 1.
  const maxUnackedBndupd = int(
    "max-unacked-bndupd",
    1,
    65535,
    FAILOVER_DEFAULTS.maxUnackedBndupd,
  );
  const maxResponseDelay = int(
    "max-response-delay",
    1,
    86400,
    FAILOVER_DEFAULTS.maxResponseDelay,
  );
  const autoPartnerDown = int(
    "auto-partner-down",
    0,
    0xffffffff,
    FAILOVER_DEFAULTS.autoPartnerDown,
  );
  const maxClockSkew = int("max-clock-skew", 0, 86400, FAILOVER_DEFAULTS.maxClockSkew);
  const maxLeaseMisbalance = int(
    "max-lease-misbalance",
    0,
    100,
    FAILOVER_DEFAULTS.maxLeaseMisbalance,
  );
  const minBalance = int("min-balance", 0, 86400, FAILOVER_DEFAULTS.minBalance);
  const maxBalance = int("max-balance", 1, 86400, FAILOVER_DEFAULTS.maxBalance);
  const mb = at("max-balance");
  if (mb && maxBalance < minBalance) {
    report(
      ctx,
      valueSite(mb),
      mb.path,
      `"max-balance" (${maxBalance}) is below "min-balance" (${minBalance})`,
    );
  }
  const kf = at("kernel-filter");
  const kernelFilter = (kf ? readBool(ctx, kf) : undefined) ?? FAILOVER_DEFAULTS.kernelFilter;
  const hp = at("hba-polarity");
  let hbaPolarity: "isc" | "draft" = FAILOVER_DEFAULTS.hbaPolarity;
  if (hp) {
    const v = readString(ctx, hp);
    if (v === "isc" || v === "draft") hbaPolarity = v;
    else if (v !== undefined) {
      report(
        ctx,
        valueSite(hp),
        hp.path,
        `Expected "isc" or "draft" for "hba-polarity", got ${JSON.stringify(v)}`,
      );
    }
  }

  const ss = at("shared-secret-file");
  const sharedSecretFile = ss ? readString(ctx, ss) ?? null : null;
  const sharedSecretFilePos = ss ? posOf(ctx, valueSite(ss)) : { line: 0, col: 0 };
  const t = at("tls");
  const tls = t && !isNull(t.value) ? readTlsSection(ctx, t, roleKnown ? role : null) : null;

  return {
    role,
    address,
    port,
    peer: peer ?? 0,
    peerPort,
    relationship,
    mclt,
    split,
    hba,
    hbaPolarity,
    loadBalanceMaxSeconds,
    maxLeaseMisbalance,
    minBalance,
    maxBalance,
    maxUnackedBndupd,
    maxResponseDelay,
    sharedSecretFile,
    sharedSecretFilePos,
    autoPartnerDown,
    maxClockSkew,
    kernelFilter,
    tls,
  };
}

/**
 * Reads `failover.tls` (draft-12 §11.2): the primary is the TLS client and needs `ca-file`;
 * the secondary is the TLS server and needs `cert-file` and `key-file`. The keys of the other
 * role are refused, so that a file never silently carries settings that do nothing.
 */
function readTlsSection(ctx: Ctx, e: Entry, role: FailoverRole | null): FailoverTlsConfig | null {
  const m = readMap(ctx, e.value, e.path, `"failover.tls"`, TLS_KEYS);
  if (!m) return null;
  const none = { line: 0, col: 0 };
  const file = (k: string): [string | null, { line: number; col: number }] => {
    const x = m.get(k);
    return x ? [readString(ctx, x) ?? null, posOf(ctx, valueSite(x))] : [null, none];
  };
  const [certFile, certPos] = file("cert-file");
  const [keyFile, keyPos] = file("key-file");
  const [caFile, caPos] = file("ca-file");
  const r = m.get("require");
  const require = r ? readBool(ctx, r) ?? true : true;
  const sn = m.get("server-name");
  const serverName = sn ? readString(ctx, sn) ?? null : null;
  const what = `"failover.tls"`;
  if (role === "secondary") {
    for (const k of ["cert-file", "key-file"]) {
      if (!m.has(k)) missing(ctx, e.value, e.path, k, what);
    }
    for (const k of ["ca-file", "server-name"]) {
      const x = m.get(k);
      if (x) {
        report(
          ctx,
          x.key,
          x.path,
          `A secondary may not set ${
            JSON.stringify(k)
          }: it is the TLS server; the primary checks its certificate`,
        );
      }
    }
  } else if (role === "primary") {
    if (!m.has("ca-file")) missing(ctx, e.value, e.path, "ca-file", what);
    for (const k of ["cert-file", "key-file"]) {
      const x = m.get(k);
      if (x) {
        report(
          ctx,
          x.key,
          x.path,
          `A primary may not set ${
            JSON.stringify(k)
          }: it is the TLS client; the secondary presents the certificate`,
        );
      }
    }
  }
  return {
    certFile,
    keyFile,
    caFile,
    require,
    serverName,
    pos: { certFile: certPos, keyFile: keyPos, caFile: caPos },
  };
}

/**
 * Reads the `control:` section: `socket` is a path for the Unix-domain control socket and
 * `metrics` an "ADDR:PORT" that serves GET /metrics over TCP.
 */
function readControl(ctx: Ctx, e: Entry): ControlConfig {
  const out: ControlConfig = { socket: null, metrics: null };
  const m = readMap(ctx, e.value, e.path, `"control"`, CONTROL_KEYS);
  if (!m) return out;
  const socket = m.get("socket");
  if (socket) out.socket = readString(ctx, socket) ?? null;
  const metrics = m.get("metrics");
  if (metrics) {
    const v = scalarOf(metrics);
    const match = typeof v === "string" ? /^\s*([0-9.]+):(\d{1,5})\s*$/.exec(v) : null;
    const address = match ? parseIpv4(match[1] as string) : undefined;
    const port = match ? Number(match[2]) : 0;
    if (address === undefined || port < 1 || port > 65535) {
      report(
        ctx,
        valueSite(metrics),
        metrics.path,
        `Expected ADDR:PORT such as "127.0.0.1:9467" for "metrics", got ${describe(metrics.value)}`,
      );
    } else {
      out.metrics = { address, port };
    }
  }
  return out;
}

/**
 * Reads the `hooks:` section: `command` is a list (program, then its arguments) or one string
 * (a program without arguments); the program must be an absolute path, since a hook run from
 * a service has no useful PATH.
 */
function readHooks(ctx: Ctx, e: Entry): HooksConfig | undefined {
  const m = readMap(ctx, e.value, e.path, `"hooks"`, HOOKS_KEYS);
  if (!m) return undefined;
  const out: HooksConfig = {
    command: [],
    commandPos: { line: 0, col: 0 },
    timeoutMs: HOOKS_DEFAULTS.timeoutMs,
    queue: HOOKS_DEFAULTS.queue,
    concurrency: HOOKS_DEFAULTS.concurrency,
  };
  const c = m.get("command");
  if (!c) {
    missing(ctx, e.value, e.path, "command", `"hooks"`);
    return undefined;
  }
  out.commandPos = posOf(ctx, valueSite(c));
  let ok = true;
  if (isSeq(c.value)) {
    for (const item of readSeq(ctx, c) ?? []) {
      const v = isScalar(item.node) ? item.node.value : undefined;
      if (typeof v === "string" && v !== "" && !v.includes("\0")) out.command.push(v);
      else if (typeof v === "number" || typeof v === "boolean") out.command.push(String(v));
      else {
        report(ctx, item.node, item.path, `Expected a string, got ${describe(item.node)}`);
        ok = false;
      }
    }
    if (ok && out.command.length === 0) {
      report(ctx, valueSite(c), c.path, `Expected at least the program in "command"`);
      ok = false;
    }
  } else {
    const v = readString(ctx, c);
    if (v === undefined) ok = false;
    else out.command.push(v);
  }
  const program = out.command[0];
  if (ok && program !== undefined && !program.startsWith("/")) {
    report(
      ctx,
      valueSite(c),
      c.path,
      `Hook program ${JSON.stringify(program)} must be an absolute path, such as ` +
        `"/usr/local/bin/lease-hook"`,
    );
    ok = false;
  }
  const t = m.get("timeout-ms");
  if (t) out.timeoutMs = readInt(ctx, t, 1, 3_600_000) ?? out.timeoutMs;
  const q = m.get("queue");
  if (q) out.queue = readInt(ctx, q, 1, 100_000) ?? out.queue;
  const n = m.get("concurrency");
  if (n) out.concurrency = readInt(ctx, n, 1, 16) ?? out.concurrency;
  return ok ? out : undefined;
}

/** Reads one token bucket of `rate-limit`: `false` turns it off, else `{ rate, burst }`. */
function readBucket(ctx: Ctx, e: Entry): RateLimit | null | undefined {
  if (scalarOf(e) === false) return null;
  const m = readMap(ctx, e.value, e.path, JSON.stringify(e.name), BUCKET_KEYS);
  if (!m) return undefined;
  const r = m.get("rate");
  if (!r) {
    missing(ctx, e.value, e.path, "rate", JSON.stringify(e.name));
    return undefined;
  }
  const rate = scalarOf(r);
  if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0 || rate > 1_000_000) {
    report(
      ctx,
      valueSite(r),
      r.path,
      `Expected a number above 0 and at most 1000000 for "rate", got ${describe(r.value)}`,
    );
    return undefined;
  }
  const b = m.get("burst");
  const burst = b ? readInt(ctx, b, 1, 1_000_000) : Math.max(1, Math.ceil(rate * 2));
  return burst === undefined ? undefined : { rate, burst };
}

/** Reads `relay-allow`: addresses or CIDRs (host bits zero) of the relays to accept. */
function readRelayAllow(ctx: Ctx, e: Entry): Cidr[] {
  const out: Cidr[] = [];
  for (const item of readSeq(ctx, e) ?? []) {
    const v = isScalar(item.node) ? item.node.value : undefined;
    const text = typeof v === "string" ? (v.includes("/") ? v : `${v}/32`) : "";
    const m = /^\s*([0-9.]+)\/(\d{1,2})\s*$/.exec(text);
    const addr = m ? parseIpv4(m[1] as string) : undefined;
    const prefix = m ? Number(m[2]) : NaN;
    if (addr === undefined || !(prefix >= 0 && prefix <= 32)) {
      report(
        ctx,
        item.node,
        item.path,
        `Expected an address or CIDR such as "198.18.0.0/15" in "relay-allow", got ${
          describe(item.node)
        }`,
      );
      continue;
    }
    const mask = prefixMask(prefix);
    const network = (addr & mask) >>> 0;
    if (network !== addr) {
      report(
        ctx,
        item.node,
        item.path,
        `Relay range ${JSON.stringify(v)} has host bits set: did you mean "${
          formatIpv4(network)
        }/${prefix}"?`,
      );
      continue;
    }
    out.push({ network, prefix, mask });
  }
  return out;
}

/** Reads `rate-limit`, `offer-limit` and `relay-allow` over DEFAULT_GUARD. */
function readGuard(ctx: Ctx, get: (key: string) => Entry | undefined): GuardConfig {
  const out: GuardConfig = { ...DEFAULT_GUARD };
  const rl = get("rate-limit");
  if (rl && !isNull(rl.value)) {
    const m = readMap(ctx, rl.value, rl.path, `"rate-limit"`, RATE_LIMIT_KEYS);
    const per = m?.get("per-client");
    if (per) {
      const v = readBucket(ctx, per);
      if (v !== undefined) out.perClient = v;
    }
    const global = m?.get("global");
    if (global) {
      const v = readBucket(ctx, global);
      if (v !== undefined) out.global = v;
    }
    const tracked = m?.get("tracked-clients");
    if (tracked) out.trackedClients = readInt(ctx, tracked, 16, 1_048_576) ?? out.trackedClients;
  }
  const ol = get("offer-limit");
  if (ol) out.offerLimit = readInt(ctx, ol, 1, 100) ?? out.offerLimit;
  const ra = get("relay-allow");
  if (ra && !isNull(ra.value)) {
    const list = readRelayAllow(ctx, ra);
    if (isSeq(ra.value) && ra.value.items.length === 0) {
      report(
        ctx,
        valueSite(ra),
        ra.path,
        `Expected at least one address or CIDR in "relay-allow": leave the key out to accept any relay`,
      );
    }
    out.relayAllow = list;
  }
  return out;
}

function readConfig(ctx: Ctx, file: string): Config {
  const root = deref(ctx, ctx.doc.contents);
  if (isNull(root)) {
    ctx.problems.push({
      path: "",
      line: 1,
      col: 1,
      message: `Configuration is empty: expected at least "database", "listen" and "subnets"`,
    });
  }
  const m = isNull(root) ? undefined : readMap(ctx, root, "", "the configuration", TOP_KEYS);
  const top = m ?? new Map<string, Entry>();
  const need = (key: string): Entry | undefined => {
    const e = top.get(key);
    if (!e && m) missing(ctx, root, "", key, "the configuration");
    return e;
  };
  const get = (key: string): Entry | undefined => top.get(key);

  const dbEntry = need("database");
  const database = dbEntry ? readString(ctx, dbEntry) : undefined;
  const au = get("authoritative");
  const authoritative = (au ? readBool(ctx, au) : true) ?? true;
  const listenEntry = need("listen");
  const listen = listenEntry ? readListen(ctx, listenEntry) : [];
  const lt = get("lease-time");
  const leaseTime = (lt ? readLeaseTime(ctx, lt, DEFAULT_LEASE_TIME) : undefined) ??
    { ...DEFAULT_LEASE_TIME };
  const options = readOptions(ctx, get("options"));
  const oh = get("offer-hold");
  const offerHold = (oh ? readInt(ctx, oh, 1, 3600) : undefined) ?? DEFAULT_OFFER_HOLD;
  const sid = get("server-id");
  const serverId = sid ? readIp(ctx, sid) ?? null : null;
  if (sid && serverId !== null && (serverId === 0 || serverId === 0xffffffff)) {
    report(
      ctx,
      valueSite(sid),
      sid.path,
      `Server id ${formatIpv4(serverId)} is not a host address`,
    );
  }
  let commitDelayMs = DEFAULT_COMMIT_DELAY_MS;
  let commitBatch = DEFAULT_COMMIT_BATCH;
  const commit = get("commit");
  if (commit) {
    const cm = readMap(ctx, commit.value, commit.path, `"commit"`, COMMIT_KEYS);
    const d = cm?.get("delay-ms");
    const b = cm?.get("batch");
    if (d) commitDelayMs = readInt(ctx, d, 0, 1000) ?? commitDelayMs;
    if (b) commitBatch = readInt(ctx, b, 1, 65536) ?? commitBatch;
  }
  let logLevel: Config["logLevel"] = "info";
  const ll = get("log-level");
  if (ll) {
    const v = scalarOf(ll);
    const level = LOG_LEVELS.find((l) => l === v);
    if (level) logLevel = level;
    else {
      report(
        ctx,
        valueSite(ll),
        ll.path,
        `Expected one of "debug", "info", "warn", "error" for "log-level", got ${
          describe(ll.value)
        }`,
      );
    }
  }

  const acc: Collected = { subnets: [], pools: [], reservations: [], relays: [] };
  const subnetsEntry = need("subnets");
  const subnets: SubnetConfig[] = [];
  const items = subnetsEntry ? readSeq(ctx, subnetsEntry) : undefined;
  if (subnetsEntry && items && items.length === 0) {
    report(
      ctx,
      valueSite(subnetsEntry),
      subnetsEntry.path,
      `Expected at least one subnet in "subnets"`,
    );
  }
  for (const [i, item] of (items ?? []).entries()) {
    readSubnet(ctx, item.node, item.path, i, { leaseTime, authoritative }, acc);
  }
  for (const s of acc.subnets) subnets.push(s.value);
  checkAcross(ctx, acc);

  // A subnet pinned to an interface must be on one duet listens on, when it listens by interface.
  const listened = new Set(listen.flatMap((l) => (l.kind === "interface" ? [l.interface] : [])));
  if (listened.size > 0) {
    for (const s of acc.subnets) {
      const name = s.value.interface;
      if (name !== null && !listened.has(name)) {
        report(
          ctx,
          s.node,
          s.path,
          `Subnet ${formatCidr(s.value.subnet)} is on interface ${
            JSON.stringify(name)
          }, which is not in "listen"`,
        );
      }
    }
  }

  const fo = get("failover");
  const failover = fo && !isNull(fo.value) ? readFailover(ctx, fo, listen) : null;
  const co = get("control");
  const control = co && !isNull(co.value) ? readControl(ctx, co) : undefined;
  const ho = get("hooks");
  const hooks = ho && !isNull(ho.value) ? readHooks(ctx, ho) : undefined;
  const guard = readGuard(ctx, get);

  return {
    file,
    database: database ?? "",
    authoritative,
    listen,
    leaseTime,
    offerHold,
    serverId,
    options,
    subnets,
    commitDelayMs,
    commitBatch,
    logLevel,
    failover,
    ...(control ? { control } : {}),
    ...(hooks ? { hooks } : {}),
    guard,
  };
}

function cleanYamlMessage(message: string): string {
  const first = (message.split("\n")[0] ?? "").replace(/\.\s*$/, "").replace(
    / at line \d+, column \d+:?$/,
    "",
  );
  return `Cannot parse YAML: ${first.charAt(0).toLowerCase()}${first.slice(1)}`;
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.map((p, i) => ({ p, i })).sort((a, b) =>
    a.p.line - b.p.line || a.p.col - b.p.col || a.i - b.i
  ).map((x) => x.p);
}

/** Parses without throwing: the config (null after a YAML syntax error) and every problem. */
function parseCollecting(
  text: string,
  file: string,
): { config: Config | null; problems: ConfigProblem[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lc,
    keepSourceTokens: true,
    prettyErrors: false,
    uniqueKeys: true,
  });
  const ctx: Ctx = { lc, doc, problems: [] };
  for (const e of [...doc.errors, ...doc.warnings]) {
    const { line, col } = lc.linePos(e.pos[0]);
    ctx.problems.push({ path: "", line, col, message: cleanYamlMessage(e.message) });
  }
  if (ctx.problems.length > 0) return { config: null, problems: ctx.problems };
  const config = readConfig(ctx, file);
  return { config, problems: ctx.problems };
}

/**
 * Parses and validates a configuration from YAML text; throws ConfigError listing every problem
 * found, each with its line and column in `file`. Pure: files named inside the configuration
 * (such as `failover.shared-secret-file`) are checked by checkFailoverFiles().
 */
export function parseConfig(text: string, file: string): Config {
  const { config, problems } = parseCollecting(text, file);
  if (config === null || problems.length > 0) {
    throw new ConfigError(file, sortProblems(problems));
  }
  return config;
}

/**
 * Reads and parses a configuration file and checks the files it names (checkFailoverFiles());
 * an unreadable configuration file is a ConfigError at line 0.
 */
export async function loadConfig(path: string): Promise<Config> {
  return (await loadConfigText(path)).config;
}

/**
 * loadConfig(), also returning the text that was parsed (`duet reload` points at keys in it
 * with keyPosition()).
 */
export async function loadConfigText(path: string): Promise<{ config: Config; text: string }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err: unknown) {
    throw new ConfigError(path, [{
      path: "",
      line: 0,
      col: 0,
      message: `Cannot read configuration file ${JSON.stringify(path)}: ${whyUnreadable(err)}`,
    }], { cause: err });
  }
  const { config, problems } = parseCollecting(text, path);
  if (config !== null) {
    problems.push(...await checkFailoverFiles(config), ...await checkHookFiles(config));
  }
  if (config === null || problems.length > 0) {
    throw new ConfigError(path, sortProblems(problems));
  }
  return { config, text };
}

/**
 * Where a dotted key path (`failover.role`, `subnets.1.pools.0`) is in a configuration's text:
 * the line and column of the deepest part of the path that exists (1:1 for an empty path or
 * text that does not parse). For a key, its name; for a list item, the item.
 */
export function keyPosition(text: string, path: string): { line: number; col: number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, keepSourceTokens: true });
  const ctx: Ctx = { lc, doc, problems: [] };
  let node: YamlNode = deref(ctx, doc.contents);
  let at: { line: number; col: number } = { line: 1, col: 1 };
  if (path === "" || doc.errors.length > 0) return at;
  for (const part of path.split(".")) {
    if (isMap(node)) {
      const pair = node.items.find((p) => {
        const k = deref(ctx, p.key);
        return isScalar(k) && String(k.value) === part;
      });
      if (!pair) break;
      const pos = posOf(ctx, deref(ctx, pair.key));
      if (pos.line > 0) at = pos;
      node = deref(ctx, pair.value);
    } else if (isSeq(node) && /^\d+$/.test(part) && Number(part) < node.items.length) {
      node = deref(ctx, node.items[Number(part)]);
      const pos = posOf(ctx, node);
      if (pos.line > 0) at = pos;
    } else {
      break;
    }
  }
  return at;
}

function whyUnreadable(err: unknown): string {
  return err instanceof Deno.errors.NotFound
    ? "no such file"
    : err instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : err instanceof Error
    ? err.message
    : String(err);
}

/** The secret in a shared-secret file's text: one trailing newline is not part of it. */
function secretOf(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  return bytes.subarray(0, end);
}

/** A file the configuration names, read with the checks its kind needs, or the problem. */
async function readNamedFile(
  path: string,
  site: { key: string; pos: ConfigPos },
  what: { label: string; capital: string; private: boolean },
): Promise<{ bytes: Uint8Array } | { problem: ConfigProblem }> {
  const problem = (message: string) => ({
    problem: { path: site.key, line: site.pos.line, col: site.pos.col, message },
  });
  const name = JSON.stringify(path);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err: unknown) {
    return problem(`Cannot read ${what.label} ${name}: ${whyUnreadable(err)}`);
  }
  if (!info.isFile) return problem(`${what.capital} ${name} is not a regular file`);
  // draft-12 §11.1, §11.2: a secret or a private key authenticates this server, so no one
  // else may read or change it.
  if (what.private && info.mode !== null && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
    return problem(
      `${what.capital} ${name} has mode ${mode}: it must not be readable or writable by ` +
        `group or others (chmod 600)`,
    );
  }
  try {
    return { bytes: await Deno.readFile(path) };
  } catch (err: unknown) {
    return problem(`Cannot read ${what.label} ${name}: ${whyUnreadable(err)}`);
  }
}

/** Reads and checks the shared-secret file: the secret, or the problem with it. */
async function readSecretFile(
  f: FailoverConfig,
): Promise<{ secret: Uint8Array } | { problem: ConfigProblem }> {
  const path = f.sharedSecretFile ?? "";
  const r = await readNamedFile(
    path,
    { key: "failover.shared-secret-file", pos: f.sharedSecretFilePos },
    { label: "shared secret file", capital: "Shared secret file", private: true },
  );
  if ("problem" in r) return r;
  const secret = secretOf(r.bytes);
  if (secret.length === 0) {
    return {
      problem: {
        path: "failover.shared-secret-file",
        line: f.sharedSecretFilePos.line,
        col: f.sharedSecretFilePos.col,
        message: `Shared secret file ${JSON.stringify(path)} is empty`,
      },
    };
  }
  return { secret };
}

/** The PEM texts of `failover.tls` (draft-12 §11.2), as the partner link uses them. */
export interface FailoverTlsFiles {
  cert: string | null;
  key: string | null;
  ca: string | null;
}

/**
 * Reads and checks the `failover.tls` files: certificates must parse, the key must be private
 * (mode 0600 or stricter), parse and belong to the certificate. Every problem, or the texts.
 */
async function readTlsFiles(
  t: FailoverTlsConfig,
): Promise<{ files: FailoverTlsFiles; problems: ConfigProblem[] }> {
  const problems: ConfigProblem[] = [];
  const files: FailoverTlsFiles = { cert: null, key: null, ca: null };
  const at = (key: "cert-file" | "key-file" | "ca-file") => {
    const pos = key === "cert-file"
      ? t.pos.certFile
      : key === "key-file"
      ? t.pos.keyFile
      : t.pos.caFile;
    return { key: `failover.tls.${key}`, pos };
  };
  const problem = (key: "cert-file" | "key-file" | "ca-file", message: string) => {
    const site = at(key);
    problems.push({ path: site.key, line: site.pos.line, col: site.pos.col, message });
  };
  const text = async (
    path: string | null,
    key: "cert-file" | "key-file" | "ca-file",
    what: { label: string; capital: string; private: boolean },
  ): Promise<string | null> => {
    if (path === null) return null;
    const r = await readNamedFile(path, at(key), what);
    if ("problem" in r) {
      problems.push(r.problem);
      return null;
    }
    return new TextDecoder().decode(r.bytes);
  };
  const certificates = (body: string | null, key: "cert-file" | "ca-file", path: string) => {
    if (body === null) return null;
    const name = JSON.stringify(path);
    const pems = body.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
    if (!pems) {
      problem(key, `TLS certificate file ${name} holds no PEM certificate`);
      return null;
    }
    try {
      return pems.map((pem) => new X509Certificate(pem));
    } catch (err: unknown) {
      problem(key, `Cannot read TLS certificate file ${name}: ${errorText(err)}`);
      return null;
    }
  };
  const cert = await text(t.certFile, "cert-file", {
    label: "TLS certificate file",
    capital: "TLS certificate file",
    private: false,
  });
  const chain = certificates(cert, "cert-file", t.certFile ?? "");
  const key = await text(t.keyFile, "key-file", {
    label: "TLS key file",
    capital: "TLS key file",
    private: true,
  });
  let keyObject: KeyObject | null = null;
  if (key !== null && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
    problem("key-file", `TLS key file ${JSON.stringify(t.keyFile)} holds no PEM private key`);
  } else if (key !== null) {
    try {
      keyObject = createPrivateKey(key);
    } catch (err: unknown) {
      problem(
        "key-file",
        `Cannot read TLS key file ${JSON.stringify(t.keyFile)}: ${errorText(err)}`,
      );
    }
  }
  const first = chain?.[0];
  if (first && keyObject && !first.checkPrivateKey(keyObject)) {
    problem(
      "key-file",
      `TLS key file ${JSON.stringify(t.keyFile)} does not belong to the certificate in ${
        JSON.stringify(t.certFile)
      }`,
    );
  }
  const ca = await text(t.caFile, "ca-file", {
    label: "TLS CA file",
    capital: "TLS CA file",
    private: false,
  });
  certificates(ca, "ca-file", t.caFile ?? "");
  if (chain) files.cert = cert;
  if (keyObject) files.key = key;
  if (ca !== null && problems.every((p) => p.path !== "failover.tls.ca-file")) files.ca = ca;
  return { files, problems };
}

function errorText(err: unknown): string {
  const t = err instanceof Error ? err.message : String(err);
  return t.charAt(0).toLowerCase() + t.slice(1);
}

/**
 * Checks the files the configuration names: the failover shared-secret file (draft-12 §11.1)
 * must be a readable regular file with mode 0600 or stricter and hold a non-empty secret; the
 * `failover.tls` files (§11.2) must parse, with a private key of mode 0600 or stricter that
 * belongs to the certificate. Problems point at the key naming the file.
 */
export async function checkFailoverFiles(config: Config): Promise<ConfigProblem[]> {
  const f = config.failover;
  if (f === null) return [];
  const out: ConfigProblem[] = [];
  if (f.sharedSecretFile !== null) {
    const r = await readSecretFile(f);
    if ("problem" in r) out.push(r.problem);
  }
  if (f.tls) out.push(...(await readTlsFiles(f.tls)).problems);
  return out;
}

/**
 * Reads the `failover.tls` files (draft-12 §11.2), or null when TLS is not configured; throws
 * ConfigError on the problems checkFailoverFiles() reports.
 */
export async function readFailoverTls(config: Config): Promise<FailoverTlsFiles | null> {
  const t = config.failover?.tls;
  if (!t) return null;
  const { files, problems } = await readTlsFiles(t);
  if (problems.length > 0) throw new ConfigError(config.file, sortProblems(problems));
  return files;
}

/**
 * Checks the hook program (`hooks.command`'s first word): it must exist, be a regular file and
 * be executable by someone. Problems point at `hooks.command`.
 */
export async function checkHookFiles(config: Config): Promise<ConfigProblem[]> {
  const h = config.hooks;
  const program = h?.command[0];
  if (h === undefined || program === undefined) return [];
  const problem = (message: string): ConfigProblem[] => [{
    path: "hooks.command",
    line: h.commandPos.line,
    col: h.commandPos.col,
    message,
  }];
  const name = JSON.stringify(program);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(program);
  } catch (err: unknown) {
    return problem(`Cannot use hook program ${name}: ${whyUnreadable(err)}`);
  }
  if (!info.isFile) return problem(`Hook program ${name} is not a regular file`);
  if (info.mode !== null && (info.mode & 0o111) === 0) {
    return problem(`Hook program ${name} is not executable (chmod +x)`);
  }
  return [];
}

/**
 * Reads the failover shared secret (draft-12 §11.1): its bytes without one trailing newline, or
 * null when none is configured; throws ConfigError on the problems checkFailoverFiles() reports.
 */
export async function readSharedSecret(config: Config): Promise<Uint8Array | null> {
  const f = config.failover;
  if (f === null || f.sharedSecretFile === null) return null;
  const r = await readSecretFile(f);
  if ("problem" in r) throw new ConfigError(config.file, [r.problem]);
  return r.secret;
}

/** The flags of `duet serve` that make a standalone configuration a failover peer. */
export interface PeerFlags {
  /** `--peer ADDR[:PORT]`: the partner's address and failover port. */
  peer?: string | undefined;
  /** `--role primary|secondary`. */
  role?: string | undefined;
}

function flagError(config: Config, path: "--peer" | "--role", message: string): ConfigError {
  return new ConfigError(config.file, [{ path, line: 0, col: 0, message }]);
}

/**
 * Overlays `--peer` and `--role` on a configuration (pure). Without a `failover:` section both
 * flags are needed, and the rest comes from FAILOVER_DEFAULTS with the first `listen` address
 * (else 0.0.0.0) as the local address. A secondary drops `split`/`hba` (it learns them from
 * CONNECT, draft-12 §7.8.1); a primary without them gets `split` 128 and `mclt` 3600. Throws
 * ConfigError with path "--peer" or "--role" at line 0.
 */
export function applyPeerFlags(config: Config, flags: PeerFlags): Config {
  const { peer: peerText, role: roleText } = flags;
  if (peerText === undefined && roleText === undefined) return config;

  let role: FailoverRole | undefined;
  if (roleText !== undefined) {
    if (roleText !== "primary" && roleText !== "secondary") {
      throw flagError(
        config,
        "--role",
        `Expected "primary" or "secondary" for "--role", got ${JSON.stringify(roleText)}`,
      );
    }
    role = roleText;
  }

  let peer: { address: number; port: number | undefined } | undefined;
  if (peerText !== undefined) {
    const m = /^([0-9.]+)(?::(\d{1,5}))?$/.exec(peerText.trim());
    const address = m ? parseIpv4(m[1] as string) : undefined;
    const port = m?.[2] === undefined ? undefined : Number(m[2]);
    if (address === undefined || (port !== undefined && (port < 1 || port > 65535))) {
      throw flagError(
        config,
        "--peer",
        `Expected ADDR[:PORT] such as "198.18.0.2:647" for "--peer", got ${
          JSON.stringify(peerText)
        }`,
      );
    }
    if (!isHostAddress(address)) {
      throw flagError(config, "--peer", `Peer ${formatIpv4(address)} is not a host address`);
    }
    peer = { address, port };
  }

  const base = config.failover;
  if (base === null && role === undefined) {
    throw flagError(
      config,
      "--role",
      `Missing "--role": "--peer" needs "--role primary" or "--role secondary" when ` +
        `the configuration has no "failover" section`,
    );
  }
  if (base === null && peer === undefined) {
    throw flagError(
      config,
      "--peer",
      `Missing "--peer": "--role" needs "--peer ADDR[:PORT]" when the configuration has no ` +
        `"failover" section`,
    );
  }

  const f: FailoverConfig = base === null
    ? {
      role: "primary",
      address: defaultFailoverAddress(config.listen),
      port: FAILOVER_PORT,
      peer: 0,
      peerPort: FAILOVER_PORT,
      relationship: FAILOVER_DEFAULTS.relationship,
      mclt: null,
      split: null,
      hba: null,
      hbaPolarity: FAILOVER_DEFAULTS.hbaPolarity,
      loadBalanceMaxSeconds: FAILOVER_DEFAULTS.loadBalanceMaxSeconds,
      maxLeaseMisbalance: FAILOVER_DEFAULTS.maxLeaseMisbalance,
      minBalance: FAILOVER_DEFAULTS.minBalance,
      maxBalance: FAILOVER_DEFAULTS.maxBalance,
      maxUnackedBndupd: FAILOVER_DEFAULTS.maxUnackedBndupd,
      maxResponseDelay: FAILOVER_DEFAULTS.maxResponseDelay,
      sharedSecretFile: null,
      sharedSecretFilePos: { line: 0, col: 0 },
      autoPartnerDown: FAILOVER_DEFAULTS.autoPartnerDown,
      maxClockSkew: FAILOVER_DEFAULTS.maxClockSkew,
      kernelFilter: FAILOVER_DEFAULTS.kernelFilter,
      tls: null,
    }
    : { ...base };
  if (role !== undefined) f.role = role;
  if (peer !== undefined) {
    f.peer = peer.address;
    f.peerPort = peer.port ?? (base === null ? FAILOVER_PORT : base.peerPort);
  }
  if (f.role === "secondary") {
    f.split = null;
    f.hba = null;
  } else {
    if (f.split === null && f.hba === null) f.split = FAILOVER_DEFAULTS.split;
    if (f.mclt === null) f.mclt = FAILOVER_DEFAULTS.mclt;
  }
  const why = peerConflict(f);
  if (why) throw flagError(config, "--peer", why);
  // failover.tls is written for one role (draft-12 §11.2: primary client, secondary server).
  if (f.tls && role !== undefined && base !== null && role !== base.role) {
    throw flagError(
      config,
      "--role",
      `Cannot make this server a ${role} with "--role": its "failover.tls" section is for a ${base.role}`,
    );
  }
  return { ...config, failover: f };
}

/** Counts for `duet check`: subnets, pools and addresses in pools. */
export function summarizeConfig(
  config: Config,
): { subnets: number; pools: number; addresses: number; reservations: number } {
  let pools = 0;
  let addresses = 0;
  let reservations = 0;
  for (const s of config.subnets) {
    pools += s.pools.length;
    reservations += s.reservations.length;
    for (const p of s.pools) addresses += p.end - p.start + 1;
  }
  return { subnets: config.subnets.length, pools, addresses, reservations };
}
