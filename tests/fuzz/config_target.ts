/**
 * Fuzz target: the configuration loader (lib/config/config.ts), YAML text -> Config or a
 * ConfigError whose every problem has a line and column inside the text. Seeds are the files
 * in examples/ and small configurations, one per section. The mutator works on lines, on
 * scalars and keys (edge values, wrong types, misspellings), on YAML itself (anchors and
 * aliases, merge keys, tags, flow style, deep nesting, several documents, tabs, CRLF, a BOM),
 * and on the parsed tree (a value replaced, a key removed, a list entry repeated).
 */
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { applyPeerFlags, parseConfig, summarizeConfig } from "../../lib/config/config.ts";
import type { Config } from "../../lib/config/types.ts";
import { ConfigError } from "../../lib/errors.ts";
import { cidrContains } from "../../lib/wire/ip.ts";
import {
  type Corpus,
  FuzzFinding,
  type FuzzTarget,
  havoc,
  lengthClass,
  type Rng,
  template,
} from "./engine.ts";

const MAX_TEXT = 2048;
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

/** Small valid configurations: one per section, so that most inputs stay short and fast. */
const SMALL = [
  "database: a.db\nlisten: [{address: 127.0.0.1, port: 10067}]\nsubnets: [{subnet: 198.18.0.0/24}]\n",
  "database: a.db\nlisten:\n  - interface: eth1\nsubnets:\n  - subnet: 198.18.0.0/24\n    interface: eth1\n    pools:\n      - range: 198.18.0.10 - 198.18.0.20\n",
  "database: a.db\nlisten:\n  - address: 198.18.0.1\nlease-time: { default: 600, max: 3600, min: 60 }\noffer-hold: 5\nserver-id: 198.18.0.1\ncommit: { delay-ms: 2, batch: 16 }\nlog-level: debug\nauthoritative: false\nsubnets:\n  - subnet: 198.18.0.0/24\n    lease-time: { default: 300 }\n    authoritative: true\n    pools:\n      - range: 198.18.0.100 - 198.18.0.199\n",
  'database: a.db\nlisten:\n  - address: 198.18.0.1\noptions:\n  domain-name-servers: [198.51.100.53]\n  domain-name: example.com\n  routers: 198.18.0.254\n  interface-mtu: 1500\n  ip-forwarding: false\n  static-routes: ["198.51.100.7 via 198.18.0.1"]\n  classless-static-routes: ["0.0.0.0/0 via 198.18.0.1"]\n  domain-search: [example.com]\n  time-offset: -3600\n  "252": "0a:0b:0c"\n  "253": { text: abc }\nsubnets:\n  - subnet: 198.18.0.0/24\n',
  'database: a.db\nlisten:\n  - address: 198.18.0.1\nsubnets:\n  - subnet: 198.18.0.0/24\n    relays: [198.19.0.1]\n    reservations:\n      - hw-address: 02:00:00:00:00:01\n        address: 198.18.0.10\n        hostname: printer\n        options: { host-name: printer }\n      - client-id: "01:02:00:00:00:00:02"\n        address: 198.18.0.11\n',
  "database: a.db\nlisten:\n  - address: 198.18.0.1\nsubnets:\n  - subnet: 198.18.0.0/24\n    pools:\n      - range: 198.18.0.10 - 198.18.0.20\nfailover:\n  role: primary\n  address: 198.18.0.1\n  peer: 198.18.0.2\n  relationship: pair\n  mclt: 300\n  split: 128\n  max-unacked-bndupd: 10\n  max-response-delay: 30\n",
  "database: a.db\nlisten:\n  - address: 198.18.0.2\nsubnets:\n  - subnet: 198.18.0.0/24\nfailover:\n  role: secondary\n  peer: 198.18.0.1\n  peer-port: 647\n  port: 647\n  load-balance-max-seconds: 3\n  auto-partner-down: 0\n  max-clock-skew: 10\n",
  'database: a.db\nlisten:\n  - address: 198.18.0.1\nsubnets:\n  - subnet: 198.18.0.0/24\nfailover:\n  role: primary\n  peer: 198.18.0.2\n  mclt: 300\n  hba: "ffffffffffffffffffffffffffffffff00000000000000000000000000000000"\n',
  "database: a.db\nlisten:\n  - address: 198.18.0.1\nsubnets:\n  - subnet: 198.18.0.0/24\ncontrol:\n  socket: /run/duet/control.sock\n  metrics: 127.0.0.1:9467\n",
];

/** Every key the loader knows, for replacing keys and inventing entries. */
const KEYS = [
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
  "socket",
  "metrics",
  "role",
  "address",
  "port",
  "peer",
  "peer-port",
  "relationship",
  "mclt",
  "split",
  "hba",
  "load-balance-max-seconds",
  "max-unacked-bndupd",
  "max-response-delay",
  "shared-secret-file",
  "auto-partner-down",
  "max-clock-skew",
  "interface",
  "default",
  "max",
  "min",
  "delay-ms",
  "batch",
  "subnet",
  "pools",
  "reservations",
  "relays",
  "range",
  "hw-address",
  "client-id",
  "hostname",
  "routers",
  "domain-name-servers",
  "domain-name",
  "classless-static-routes",
  "static-routes",
  "domain-search",
  "interface-mtu",
  "time-offset",
  "hex",
  "text",
  "tls",
  "lease-tme",
  "max-unacked-updates",
  "<<",
  "1",
  "52",
  "53",
  "82",
  "255",
  "0",
  "-1",
];

/** Scalars at the edges of what the keys accept. */
const SCALARS = [
  "",
  "~",
  "null",
  "0",
  "-0",
  "-1",
  "1",
  "255",
  "256",
  "65535",
  "65536",
  "86400",
  "86401",
  "4294967295",
  "4294967296",
  "9007199254740993",
  "1e309",
  "-1e309",
  ".nan",
  ".inf",
  "0x10",
  "0o17",
  "1_000",
  "true",
  "false",
  "yes",
  "on",
  "'quoted'",
  '"\\u0000"',
  '"\\t"',
  "!!binary aGVsbG8=",
  "!!timestamp 2001-12-14",
  "!!str 12",
  "!custom x",
  "[]",
  "{}",
  "[1, 2]",
  "{a: 1}",
  "[[[[[1]]]]]",
  "0.0.0.0",
  "255.255.255.255",
  "127.0.0.1",
  "198.18.0.1",
  "198.18.0.0/24",
  "198.18.0.1/24",
  "198.18.0.0/33",
  "198.18.0.0/0",
  "198.18.0.10 - 198.18.0.5",
  "198.18.0.10 - 198.19.255.255",
  "01:02",
  "02:00:00:00:00:01",
  "0a:0b:0c",
  "zz",
  "primary",
  "secondary",
  "debug",
  "é",
  "x".repeat(300),
  "a\u202eb",
  "- a",
  "? a",
  "| \n  block",
];

function lines(text: string): string[] {
  return text.split("\n");
}

/** Replaces one scalar after `: ` or `- ` with an edge value. */
function replaceScalar(rng: Rng, text: string): string {
  const ls = lines(text);
  const candidates = ls.map((l, i) => [l, i] as const).filter(([l]) => /(:\s+|-\s+)\S/.test(l));
  if (candidates.length === 0) return text;
  const [l, i] = rng.pick(candidates);
  const m = /^(.*?(?::\s+|-\s+))(.*)$/.exec(l);
  if (!m) return text;
  ls[i] = `${m[1]}${rng.pick(SCALARS)}`;
  return ls.join("\n");
}

/** Replaces one key with another known key, a misspelling or a number. */
function replaceKey(rng: Rng, text: string): string {
  const ls = lines(text);
  const candidates = ls.map((l, i) => [l, i] as const).filter(([l]) =>
    /^\s*(-\s+)?[\w"-]+:/.test(l)
  );
  if (candidates.length === 0) return text;
  const [l, i] = rng.pick(candidates);
  let key = rng.pick(KEYS);
  if (rng.chance(0.2)) key = key.slice(0, -1) + String.fromCharCode(97 + rng.int(26)); // a typo
  ls[i] = l.replace(/^(\s*(?:-\s+)?)[\w"-]+:/, `$1${key}:`);
  return ls.join("\n");
}

function lineEdit(rng: Rng, text: string, corpus: Corpus): string {
  const ls = lines(text);
  const i = rng.int(ls.length);
  switch (rng.int(6)) {
    case 0:
      ls.splice(i, 1);
      break;
    case 1:
      ls.splice(rng.int(ls.length + 1), 0, ls[i] as string);
      break;
    case 2: { // swap with the next
      const j = Math.min(ls.length - 1, i + 1);
      [ls[i], ls[j]] = [ls[j] as string, ls[i] as string];
      break;
    }
    case 3: // indent or dedent by two
      ls[i] = rng.chance(0.5) ? `  ${ls[i]}` : (ls[i] as string).replace(/^ {1,2}/, "");
      break;
    case 4: { // lines from another entry
      const other = lines(DECODER.decode(corpus.pick(rng)));
      const from = rng.int(other.length);
      ls.splice(rng.int(ls.length + 1), 0, ...other.slice(from, from + rng.small(6)));
      break;
    }
    default: // a new entry with a known key
      ls.splice(
        rng.int(ls.length + 1),
        0,
        `${" ".repeat(2 * rng.int(4))}${rng.pick(KEYS)}: ${rng.pick(SCALARS)}`,
      );
  }
  return ls.join("\n");
}

/** YAML features the examples do not use. */
function yamlFeature(rng: Rng, text: string): string {
  const ls = lines(text);
  const i = rng.int(ls.length);
  switch (rng.int(12)) {
    case 0: { // an anchor on one value and an alias to it elsewhere
      const withValue = ls.map((l, k) => [l, k] as const).filter(([l]) => /:\s+\S/.test(l));
      if (withValue.length === 0) return text;
      const [l, k] = rng.pick(withValue);
      ls[k] = l.replace(/:\s+/, ": &a ");
      const j = rng.int(ls.length);
      ls[j] = (ls[j] as string).replace(/:\s+\S.*$/, ": *a");
      return ls.join("\n");
    }
    case 1: // an alias to nothing
      ls[i] = (ls[i] as string).replace(/:\s+\S.*$/, ": *missing");
      return ls.join("\n");
    case 2: // a merge key
      ls.splice(
        i,
        0,
        `${(ls[i] ?? "").match(/^\s*/)?.[0] ?? ""}<<: ${rng.pick(["*a", "{port: 1}", "[1]"])}`,
      );
      return ls.join("\n");
    case 3: // more documents
      return rng.chance(0.5) ? `${text}\n---\n${text}` : `---\n${text}\n...\n`;
    case 4: // a directive
      return `${rng.pick(["%YAML 1.1", "%YAML 2.0", "%TAG ! tag:x,2000:"])}\n---\n${text}`;
    case 5: // deep nesting, flow or block
      ls.splice(
        i,
        0,
        rng.chance(0.5)
          ? `x: ${"[".repeat(rng.chance(0.02) ? 1500 : 10 + rng.int(60))}`
          : Array.from({ length: 60 }, (_, d) => `${" ".repeat(d)}k${d}:`).join("\n"),
      );
      return ls.join("\n");
    case 6: // tabs
      ls[i] = (ls[i] as string).replace(/^ +/, "\t");
      return ls.join("\n");
    case 7:
      return text.replaceAll("\n", "\r\n");
    case 8:
      return `\ufeff${text}`;
    case 9: // the same key twice
      ls.splice(i, 0, ls[i] as string);
      return ls.join("\n");
    case 10: { // a billion laughs, bounded by the YAML library's alias limit
      const laugh = ["a: &a [x, x, x, x, x, x, x, x, x]"];
      for (let k = 1; k < 6; k++) {
        const prev = String.fromCharCode(96 + k);
        const name = String.fromCharCode(97 + k);
        laugh.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(", ")}]`);
      }
      return `${laugh.join("\n")}\n${text.replace(/subnets:.*$/m, "subnets: *f")}`;
    }
    default: // control characters and NUL
      ls[i] = `${ls[i]}${rng.pick(["\u0000", "\u0007", "\u2028", "\ud800", "#", " # c", ":"])}`;
      return ls.join("\n");
  }
}

/** A random value of a random type, for the tree mutations. */
function randomValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 4 : 6)) {
    case 0:
      return rng.pick([0, 1, -1, 255, 65536, 4294967296, 1.5, Number.MAX_SAFE_INTEGER]);
    case 1:
      return rng.pick(SCALARS);
    case 2:
      return rng.chance(0.5);
    case 3:
      return null;
    case 4:
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let k = rng.int(4); k > 0; k--) o[rng.pick(KEYS)] = randomValue(rng, depth + 1);
      return o;
    }
  }
}

/** A plain map or list of the parsed tree (not a Uint8Array from !!binary, nor a Date). */
function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return Array.isArray(v) ||
    (typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype);
}

/** Parses, changes one node of the tree and writes YAML again. */
function treeEdit(rng: Rng, text: string): string {
  let tree: unknown;
  try {
    tree = parseYaml(text, { maxAliasCount: 50, logLevel: "silent" });
  } catch {
    return text;
  }
  if (!isContainer(tree)) return text;
  // Walk to a random container.
  let node = tree as Record<string, unknown> | unknown[];
  for (let d = rng.int(4); d > 0; d--) {
    const keys = Object.keys(node);
    if (keys.length === 0) break;
    const next = (node as Record<string, unknown>)[rng.pick(keys)];
    if (!isContainer(next)) break;
    node = next as Record<string, unknown> | unknown[];
  }
  const keys = Object.keys(node);
  const key = keys.length > 0 ? rng.pick(keys) : "0";
  const obj = node as Record<string, unknown>;
  switch (rng.int(4)) {
    case 0:
      obj[key] = randomValue(rng);
      break;
    case 1:
      if (Array.isArray(node)) node.splice(Number(key), 1);
      else delete obj[key];
      break;
    case 2:
      if (Array.isArray(node)) {
        const copy = node[Number(key)];
        for (let k = rng.small(40); k > 0; k--) node.push(copy);
      } else obj[rng.pick(KEYS)] = obj[key];
      break;
    default:
      obj[rng.pick(KEYS)] = randomValue(rng);
  }
  try {
    return stringifyYaml(tree, { aliasDuplicateObjects: rng.chance(0.5), logLevel: "silent" });
  } catch {
    return text;
  }
}

function seeds(): Uint8Array[] {
  const out = SMALL.map((s) => ENCODER.encode(s));
  const dir = new URL("../../examples/", import.meta.url);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".yaml"))
    .sort();
  // Without their comment lines (one file keeps them): comments cost parse time, not paths.
  names.forEach((name, i) => {
    const text = Deno.readTextFileSync(new URL(name, dir));
    out.push(
      ENCODER.encode(i === 0 ? text : text.replace(/^\s*#.*\n/gm, "").replace(/ +#.*$/gm, "")),
    );
  });
  return out;
}

/** What a valid Config promises (README "Configuration"): checked, not trusted. */
function checkConfig(c: Config): void {
  const fail = (what: string) => {
    throw new FuzzFinding("invariant", `parseConfig accepted a configuration where ${what}`);
  };
  if (c.subnets.length === 0 || c.listen.length === 0) fail("subnets or listen is empty");
  const lt = c.leaseTime;
  if (!(lt.min <= lt.default && lt.default <= lt.max)) {
    fail("lease-time is not min <= default <= max");
  }
  for (const s of c.subnets) {
    if (!(s.leaseTime.min <= s.leaseTime.default && s.leaseTime.default <= s.leaseTime.max)) {
      fail(`subnet ${s.index} lease-time is not min <= default <= max`);
    }
    for (const p of s.pools) {
      if (p.start > p.end || !cidrContains(s.subnet, p.start) || !cidrContains(s.subnet, p.end)) {
        fail(`a pool of subnet ${s.index} is reversed or outside it`);
      }
    }
    for (const r of s.reservations) {
      if ((r.hwAddress === null) === (r.clientId === null)) {
        fail("a reservation has not exactly one identifier");
      }
      if (!cidrContains(s.subnet, r.address)) fail("a reservation is outside its subnet");
    }
    for (const [code, v] of [...s.options, ...c.options]) {
      if (code < 1 || code > 254 || v.length > 255) fail(`option ${code} has ${v.length} bytes`);
    }
  }
  const f = c.failover;
  if (f) {
    if (f.role === "primary" && (f.mclt === null || (f.split === null) === (f.hba === null))) {
      fail("a primary lacks mclt, or has neither or both of split and hba");
    }
    if (f.role === "secondary" && (f.split !== null || f.hba !== null)) {
      fail("a secondary has split/hba");
    }
    if (f.maxUnackedBndupd < 1 || f.hba !== null && f.hba.length !== 32) {
      fail("failover values are out of range");
    }
  }
}

const KNOWN = new Set(KEYS);

/** A problem's dotted path with indexes and unknown names blanked, as a feature. */
function pathFeature(path: string): string {
  return path.split(".").map((k) => /^\d+$/.test(k) ? "N" : KNOWN.has(k) ? k : "?").join(".");
}

const MEMO = new Map<string, string>();

/** A problem's message as a feature: its sentence without the text it quotes from the file. */
function messageFeature(message: string): string {
  let f = MEMO.get(message);
  if (f === undefined) {
    f = computeMessageFeature(message);
    if (MEMO.size > 20_000) MEMO.clear();
    MEMO.set(message, f);
  }
  return f;
}

function computeMessageFeature(message: string): string {
  // The YAML library's messages end with the offending text: keep their first words.
  if (message.startsWith("Cannot parse YAML: ")) {
    return message.split(" ").slice(0, 5).join(" ").replace(/[^a-z ]/gi, "");
  }
  const t = template(message);
  const got = /, got (.*)$/.exec(t);
  if (
    got &&
    !/^(a map|a list|nothing|true|false|N|-N|S|-?Infinity|NaN)( \(quote it\))?$/.test(
      got[1] as string,
    )
  ) {
    return `${t.slice(0, got.index)}, got ?`;
  }
  return t;
}

function run(input: Uint8Array, features: string[]): boolean {
  const text = DECODER.decode(input);
  const lineCount = text.split(/\r\n|\r|\n/).length;
  let config: Config;
  try {
    config = parseConfig(text, "fuzz.yaml");
  } catch (e) {
    if (!(e instanceof ConfigError)) {
      throw new FuzzFinding(
        "exception",
        `parseConfig threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
        { cause: e },
      );
    }
    if (e.problems.length === 0) {
      throw new FuzzFinding("invariant", "ConfigError without a problem");
    }
    for (const p of e.problems) {
      if (
        !Number.isInteger(p.line) || !Number.isInteger(p.col) || p.line < 0 || p.col < 0 ||
        p.line > lineCount + 1 || p.message.length === 0 || typeof p.path !== "string"
      ) {
        throw new FuzzFinding(
          "invariant",
          `A problem has no place in the text: ${JSON.stringify(p)} (${lineCount} lines)`,
        );
      }
      features.push(`p:${messageFeature(p.message)}`, `pp:${pathFeature(p.path)}`);
    }
    features.push(`n:${lengthClass(e.problems.length)}`);
    return false;
  }
  checkConfig(config);
  const s = summarizeConfig(config);
  features.push(
    `ok:${lengthClass(s.subnets)}:${lengthClass(s.pools)}:${lengthClass(s.reservations)}:${
      config.failover?.role ?? "-"
    }`,
  );
  // The --peer/--role overlay on what was accepted: a Config or a ConfigError, nothing else.
  for (
    const flags of [{ peer: "198.18.0.9:700", role: "secondary" }, { role: "primary" }, {
      peer: "198.18.0.9",
    }]
  ) {
    try {
      const again = applyPeerFlags(config, flags);
      checkConfig(again);
      features.push(`flags:${again.failover?.role}`);
    } catch (e) {
      if (e instanceof FuzzFinding) throw e;
      if (!(e instanceof ConfigError)) {
        throw new FuzzFinding(
          "exception",
          `applyPeerFlags threw ${e instanceof Error ? e.name : String(e)}`,
          { cause: e },
        );
      }
      features.push(`flags-err:${template(e.message)}`);
    }
  }
  return true;
}

/** The configuration loader target. */
export const configTarget: FuzzTarget = {
  name: "config",
  fixtureExt: "yaml",
  maxLength: MAX_TEXT,
  // Unclosed flow collections cost the YAML parser ~10 µs per level: run them, do not breed them.
  keep: (input) =>
    input.length <= 400 && input.filter((b) => b === 0x5b || b === 0x7b).length <= 24,
  budgetMs: 250,
  seeds,
  mutate(rng, input, corpus) {
    let text = DECODER.decode(input);
    const rounds = rng.small(3);
    for (let r = 0; r < rounds; r++) {
      switch (rng.int(11)) {
        case 0:
        case 1:
          text = replaceScalar(rng, text);
          break;
        case 2:
          text = replaceKey(rng, text);
          break;
        case 3:
        case 4:
          text = lineEdit(rng, text, corpus);
          break;
        case 5:
          text = yamlFeature(rng, text);
          break;
        case 6:
          // Parsing and writing the whole tree costs ten times a line edit: now and then only.
          text = rng.chance(0.3) && text.length < 1500
            ? treeEdit(rng, text)
            : lineEdit(rng, text, corpus);
          break;
        case 7: { // shrink: drop a block of lines, which keeps inputs small and fast
          const ls = lines(text);
          const from = rng.int(ls.length);
          ls.splice(from, rng.small(8));
          text = ls.join("\n");
          break;
        }
        default:
          return havoc(rng, ENCODER.encode(text), corpus, { maxLength: MAX_TEXT, stack: 3 });
      }
    }
    return ENCODER.encode(text).subarray(0, MAX_TEXT);
  },
  run,
};
