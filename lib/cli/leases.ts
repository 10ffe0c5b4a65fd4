/**
 * `duet leases`: prints the lease database as a table, one JSON array or CSV (RFC 4180).
 * It opens the database read-only, so it works while the server runs (WAL), and streams
 * rows instead of loading them all. With --live it reads the same rows from a running
 * `duet serve` through its control socket (GET /leases) instead.
 */
import { parseArgs } from "node:util";
import type { Config } from "../config/types.ts";
import { ConfigError, StoreError } from "../errors.ts";
import { formatIpv4, formatMac, parseIpv4, parseMac } from "../wire/ip.ts";
import { type Lease, LEASE_STATES, type LeaseFilter, type LeaseState } from "../store/store.ts";
import { SqliteLeaseStore } from "../store/sqlite.ts";
import { controlSocketPath } from "../control/http.ts";

/** What leasesCommand writes to and how it reads a configuration file. */
export interface LeasesIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Reads the configuration (lib/config/config.ts loadConfig); needed for --config. */
  loadConfig?: (path: string) => Promise<{ database: string; control?: Config["control"] }>;
}

/** Exit codes (STYLE.md §9). */
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_CONFIG = 3;

/** Rows per io.stdout call. */
const FLUSH_ROWS = 500;

/** How long --live waits for the server's response headers, in milliseconds. */
const LIVE_TIMEOUT_MS = 5000;

const USAGE = "Usage: duet leases (-c FILE | --db FILE | --live (-c FILE | --socket PATH)) " +
  "[--json | --csv] [--state STATE] [--mac MAC] [--ip ADDRESS]";

const HELP = `${USAGE}

Lists the leases in the lease database in address order. The database is opened
read-only, so this is safe while the server runs. With --live the rows come from the
running server over its control socket instead, and the database is not opened.

Options:
  -c, --config FILE   read the database path (with --live: the control socket) from
                      this configuration file
      --db FILE       open this lease database
      --live          ask the running "duet serve" (GET /leases on its control socket)
      --socket PATH   with --live: connect to this control socket
      --json          print one JSON array
      --csv           print CSV (RFC 4180) with a header row
      --state STATE   only leases in STATE: ${LEASE_STATES.join(", ")}
      --mac MAC       only leases with this hardware address, e.g. 02:00:00:00:00:01
      --ip ADDRESS    only the lease on this address
  -h, --help          print this help

Exit codes: 0 ok (also when nothing matches), 1 database error or (--live) no server
answered, 2 usage error, 3 invalid configuration.
`;

const OPTIONS = {
  config: { type: "string", short: "c" },
  db: { type: "string" },
  live: { type: "boolean" },
  socket: { type: "string" },
  json: { type: "boolean" },
  csv: { type: "boolean" },
  state: { type: "string" },
  mac: { type: "string" },
  ip: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The output columns, in order, with the fixed width used by the table. */
const COLUMNS = [
  { key: "address", width: 15 },
  { key: "hw-address", width: 17 },
  { key: "client-id", width: 20 },
  { key: "hostname", width: 20 },
  { key: "state", width: 9 },
  { key: "starts", width: 20 },
  { key: "ends", width: 20 },
  { key: "acked", width: 5 },
  { key: "cltt", width: 20 },
  { key: "tstp", width: 20 },
  { key: "tsfp", width: 20 },
  { key: "atsfp", width: 20 },
] as const;

/** The table leaves out the times after `acked` to stay readable; --json and --csv carry them. */
const TABLE_COLUMNS = COLUMNS.slice(0, 8);

type Key = (typeof COLUMNS)[number]["key"];
type Record8 = Record<Exclude<Key, "acked">, string | null> & { acked: boolean | null };

/** Epoch seconds as ISO 8601 UTC without milliseconds, or null for 0 (unset). */
function formatTime(t: number): string | null {
  if (t === 0) return null;
  return new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** One lease as a row of `duet leases --json` (also GET /leases of the control socket). */
export function toRecord(l: Lease): Record8 {
  return {
    "address": formatIpv4(l.address),
    "hw-address": l.hwAddress.length > 0 ? formatMac(l.hwAddress) : null,
    "client-id": l.clientId === null ? null : formatMac(l.clientId),
    "hostname": l.hostname,
    "state": l.state,
    "starts": formatTime(l.starts),
    "ends": formatTime(l.ends),
    "acked": ackedOf(l),
    "cltt": formatTime(l.cltt),
    "tstp": formatTime(l.tstp),
    "tsfp": formatTime(l.tsfp),
    "atsfp": formatTime(l.atsfp),
  };
}

/**
 * Whether the failover partner has acknowledged this server's latest update of the binding
 * (draft-12 §7.2.2: tsfp reached the potential-expiration-time sent, which is at least the
 * lease's end); null when this server never sent one (standalone, or the partner's binding).
 */
function ackedOf(l: Lease): boolean | null {
  if (l.tstp === 0 && l.tsfp === 0) return null;
  return l.tsfp >= Math.max(l.tstp, l.ends);
}

/** A cell's text: booleans as yes/no in the table and true/false in CSV, null as absent. */
function cellOf(v: string | boolean | null, format: "table" | "csv"): string | null {
  if (typeof v !== "boolean") return v;
  return format === "table" ? (v ? "yes" : "no") : String(v);
}

/** C0/C1 controls and bidirectional overrides: unsafe to print raw on a terminal. */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** Makes client-supplied text (option 12 hostnames) safe for a terminal, as \u{NN} escapes. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u{${(c.codePointAt(0) as number).toString(16)}}`);
}

function tableLine(values: (string | null)[]): string {
  let line = "";
  values.forEach((v, i) => {
    const cell = v === null ? "-" : printable(v);
    line += i === values.length - 1 ? cell : cell.padEnd(TABLE_COLUMNS[i]?.width ?? 0) + "  ";
  });
  return line.trimEnd() + "\n";
}

/** RFC 4180 §2: fields with comma, quote, CR or LF are quoted, quotes doubled. */
function csvField(v: string | null): string {
  if (v === null) return "";
  return /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

function csvLine(values: (string | null)[]): string {
  return values.map(csvField).join(",") + "\r\n";
}

type Format = "table" | "json" | "csv";

interface Parsed {
  database?: string;
  config?: string;
  /** --live: read from the control socket; `socket` is set unless --config gives it. */
  live: boolean;
  socket?: string;
  format: Format;
  filter: LeaseFilter;
}

class Usage extends Error {}

function parse(args: string[]): Parsed | "help" {
  let values;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (e) {
    // node:util's messages carry a long hint after the first sentence.
    const text = e instanceof Error ? e.message : String(e);
    throw new Usage(text.split(". ")[0] ?? text);
  }
  if (values.help) return "help";
  if (values.live) {
    if (values.db !== undefined) throw new Usage("Give --socket or --config with --live, not --db");
    if ((values.config === undefined) === (values.socket === undefined)) {
      throw new Usage("Give exactly one of --config and --socket with --live");
    }
  } else if (values.socket !== undefined) {
    throw new Usage("Give --socket only with --live");
  } else if ((values.config === undefined) === (values.db === undefined)) {
    throw new Usage("Give exactly one of --config and --db");
  }
  if (values.json && values.csv) throw new Usage("Give at most one of --json and --csv");
  const filter: LeaseFilter = {};
  if (values.state !== undefined) {
    const state = values.state.toLowerCase() as LeaseState;
    if (!LEASE_STATES.includes(state)) {
      throw new Usage(
        `Unknown state "${values.state}": expected one of ${LEASE_STATES.join(", ")}`,
      );
    }
    filter.state = state;
  }
  if (values.mac !== undefined) {
    const hw = parseMac(values.mac);
    if (!hw) throw new Usage(`Invalid --mac "${values.mac}": expected e.g. 02:00:00:00:00:01`);
    filter.hwAddress = hw;
  }
  if (values.ip !== undefined) {
    const address = parseIpv4(values.ip);
    if (address === undefined) throw new Usage(`Invalid --ip "${values.ip}": expected a.b.c.d`);
    filter.address = address;
  }
  const parsed: Parsed = {
    format: values.json ? "json" : values.csv ? "csv" : "table",
    filter,
    live: values.live ?? false,
  };
  if (values.db !== undefined) parsed.database = values.db;
  if (values.socket !== undefined) parsed.socket = values.socket;
  if (values.config !== undefined) parsed.config = values.config;
  return parsed;
}

/** Formats records in one output format, FLUSH_ROWS rows per io.stdout call. */
class RecordWriter {
  #format: Format;
  #io: LeasesIo;
  #chunk = "";
  #rows = 0;

  constructor(format: Format, io: LeasesIo) {
    this.#format = format;
    this.#io = io;
    if (format === "table") this.#chunk += tableLine(TABLE_COLUMNS.map((c) => c.key));
    if (format === "csv") this.#chunk += csvLine(COLUMNS.map((c) => c.key));
    if (format === "json") this.#chunk += "[";
  }

  row(r: Record8): void {
    if (this.#format === "table") {
      this.#chunk += tableLine(TABLE_COLUMNS.map((c) => cellOf(r[c.key], "table")));
    } else if (this.#format === "csv") {
      this.#chunk += csvLine(COLUMNS.map((c) => cellOf(r[c.key], "csv")));
    } else this.#chunk += (this.#rows === 0 ? "\n" : ",\n") + JSON.stringify(r);
    if (++this.#rows % FLUSH_ROWS === 0) this.#flush();
  }

  end(): void {
    if (this.#format === "json") this.#chunk += this.#rows === 0 ? "]\n" : "\n]\n";
    this.#flush();
  }

  #flush(): void {
    if (this.#chunk !== "") this.#io.stdout(this.#chunk);
    this.#chunk = "";
  }
}

/** Writes every matching lease, FLUSH_ROWS rows per io.stdout call. */
function writeLeases(store: SqliteLeaseStore, p: Parsed, io: LeasesIo): void {
  const out = new RecordWriter(p.format, io);
  for (const lease of store.iterate(p.filter)) out.row(toRecord(lease));
  out.end();
}

// --- --live: GET /leases on the control socket -------------------------------------------

/** The GET /leases query for a filter (lib/control/http.ts parses it). */
export function leasesQuery(filter: LeaseFilter): string {
  const q = new URLSearchParams();
  if (filter.state !== undefined) q.set("state", filter.state);
  if (filter.hwAddress !== undefined) q.set("mac", formatMac(filter.hwAddress));
  if (filter.address !== undefined) q.set("ip", formatIpv4(filter.address));
  const text = q.toString();
  return text === "" ? "/leases" : `/leases?${text}`;
}

/** True when a record of GET /leases passes the filter (a server that ignores the query). */
function matches(r: Record8, filter: LeaseFilter): boolean {
  return (filter.state === undefined || r.state === filter.state) &&
    (filter.hwAddress === undefined || r["hw-address"] === formatMac(filter.hwAddress)) &&
    (filter.address === undefined || r.address === formatIpv4(filter.address));
}

function isRecord(v: unknown): v is Record8 {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return COLUMNS.every((c) =>
    o[c.key] === null || typeof o[c.key] === (c.key === "acked" ? "boolean" : "string")
  ) && typeof o.address === "string" && typeof o.state === "string";
}

/**
 * The records of a GET /leases body, one at a time. The server writes the JSON array one
 * record per line ("[", "{...},", ..., "{...}", "]"), so lines are parsed as they arrive.
 */
async function* liveRecords(body: ReadableStream<Uint8Array>): AsyncGenerator<Record8> {
  let rest = "";
  let closed = false;
  const parseLine = (line: string): Record8 | undefined => {
    const text = line.trim().replace(/,$/, "");
    if (text === "" || text === "[" || text === "]" || text === "[]") {
      if (text === "]" || text === "[]") closed = true;
      return undefined;
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      v = undefined;
    }
    if (!isRecord(v)) throw new Error(`unexpected line in GET /leases: ${text.slice(0, 80)}`);
    return v;
  };
  for await (const piece of body.pipeThrough(new TextDecoderStream())) {
    rest += piece;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const r = parseLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
      if (r) yield r;
    }
  }
  const last = parseLine(rest);
  if (last) yield last;
  if (!closed) throw new Error("the answer ended before the lease list did");
}

/** Runs --live: streams GET /leases from `socket` into the output format. */
async function writeLive(socket: string, p: Parsed, io: LeasesIo): Promise<number> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  const abort = new AbortController();
  // Bounds the wait for the headers only: a long lease list may take longer to stream.
  const timer = setTimeout(() => abort.abort(new Error("no answer in time")), LIVE_TIMEOUT_MS);
  try {
    let res: Response;
    try {
      res = await fetch(`http://localhost${leasesQuery(p.filter)}`, {
        client,
        signal: abort.signal,
      });
    } catch (e) {
      const why = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
      const missing = await Deno.lstat(socket).then(() => false, () => true);
      io.stderr(
        missing
          ? `duet leases: duet serve is not running: no control socket at "${socket}"\n`
          : `duet leases: Cannot reach duet serve on "${socket}": ${why}\n`,
      );
      return EXIT_FAILURE;
    } finally {
      clearTimeout(timer);
    }
    if (res.status !== 200 || res.body === null) {
      const text = await res.text();
      let error = `unexpected answer (HTTP ${res.status})`;
      try {
        const doc = JSON.parse(text) as unknown;
        if (typeof doc === "object" && doc !== null && "error" in doc) {
          error = String((doc as { error: unknown }).error);
        }
      } catch {
        // keep the generic reason
      }
      io.stderr(`duet leases: Cannot read the leases from "${socket}": ${error}\n`);
      return EXIT_FAILURE;
    }
    const out = new RecordWriter(p.format, io);
    try {
      for await (const r of liveRecords(res.body)) if (matches(r, p.filter)) out.row(r);
    } catch (e) {
      io.stderr(
        `duet leases: Cannot read the leases from "${socket}": ${
          e instanceof Error ? e.message : String(e)
        }\n`,
      );
      return EXIT_FAILURE;
    }
    out.end();
    return EXIT_OK;
  } finally {
    client.close();
  }
}

/** Runs `duet leases`; returns the exit code (0 ok, 1 database error, 2 usage, 3 config). */
export async function leasesCommand(args: string[], io: LeasesIo): Promise<number> {
  let parsed: Parsed;
  try {
    const p = parse(args);
    if (p === "help") {
      io.stdout(HELP);
      return EXIT_OK;
    }
    parsed = p;
  } catch (e) {
    if (!(e instanceof Usage)) throw e;
    io.stderr(`duet leases: ${e.message}\n${USAGE}\nTry "duet leases --help".\n`);
    return EXIT_USAGE;
  }

  let database = parsed.database;
  let socket = parsed.socket;
  if (parsed.config !== undefined) {
    if (!io.loadConfig) {
      io.stderr(
        `duet leases: --config is not available here; use ${
          parsed.live ? "--socket" : "--db"
        }\n${USAGE}\n`,
      );
      return EXIT_USAGE;
    }
    try {
      const config = await io.loadConfig(parsed.config);
      database = config.database;
      socket = controlSocketPath({
        database,
        ...(config.control ? { control: config.control } : {}),
      });
    } catch (e) {
      io.stderr(`duet leases: ${e instanceof Error ? e.message : String(e)}\n`);
      return e instanceof ConfigError ? EXIT_CONFIG : EXIT_FAILURE;
    }
  }

  if (parsed.live) return await writeLive(socket as string, parsed, io);

  let store: SqliteLeaseStore | undefined;
  try {
    store = SqliteLeaseStore.open(database as string, { readOnly: true });
    writeLeases(store, parsed, io);
    return EXIT_OK;
  } catch (e) {
    if (!(e instanceof StoreError)) throw e;
    io.stderr(`duet leases: ${e.message}\n`);
    return EXIT_FAILURE;
  } finally {
    store?.close();
  }
}
