/**
 * `duet leases`: prints the lease database as a table, one JSON array or CSV (RFC 4180).
 * It opens the database read-only, so it works while the server runs (WAL), and streams
 * rows instead of loading them all.
 */
import { parseArgs } from "node:util";
import { ConfigError, StoreError } from "../errors.ts";
import { formatIpv4, formatMac, parseIpv4, parseMac } from "../wire/ip.ts";
import { type Lease, LEASE_STATES, type LeaseFilter, type LeaseState } from "../store/store.ts";
import { SqliteLeaseStore } from "../store/sqlite.ts";

/** What leasesCommand writes to and how it reads a configuration file. */
export interface LeasesIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Reads the configuration (lib/config/config.ts loadConfig); needed for --config. */
  loadConfig?: (path: string) => Promise<{ database: string }>;
}

/** Exit codes (STYLE.md §9). */
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_CONFIG = 3;

/** Rows per io.stdout call. */
const FLUSH_ROWS = 500;

const USAGE = "Usage: duet leases (-c FILE | --db FILE) [--json | --csv] " +
  "[--state STATE] [--mac MAC] [--ip ADDRESS]";

const HELP = `${USAGE}

Lists the leases in the lease database in address order. The database is opened
read-only, so this is safe while the server runs.

Options:
  -c, --config FILE   read the database path from this configuration file
      --db FILE       open this lease database
      --json          print one JSON array
      --csv           print CSV (RFC 4180) with a header row
      --state STATE   only leases in STATE: ${LEASE_STATES.join(", ")}
      --mac MAC       only leases with this hardware address, e.g. 02:00:00:00:00:01
      --ip ADDRESS    only the lease on this address
  -h, --help          print this help

Exit codes: 0 ok (also when nothing matches), 1 database error, 2 usage error,
3 invalid configuration.
`;

const OPTIONS = {
  config: { type: "string", short: "c" },
  db: { type: "string" },
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
  { key: "cltt", width: 20 },
] as const;

/** The table leaves out cltt to stay readable; --json and --csv carry it. */
const TABLE_COLUMNS = COLUMNS.slice(0, 7);

type Record8 = Record<(typeof COLUMNS)[number]["key"], string | null>;

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
    "cltt": formatTime(l.cltt),
  };
}

/** C0/C1 controls and bidirectional overrides: unsafe to print raw on a terminal. */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** Makes client-supplied text (option 12 hostnames) safe for a terminal, as \u{NN} escapes. */
function printable(s: string): string {
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
  if ((values.config === undefined) === (values.db === undefined)) {
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
  };
  if (values.db !== undefined) parsed.database = values.db;
  if (values.config !== undefined) parsed.config = values.config;
  return parsed;
}

/** Writes every matching lease, FLUSH_ROWS rows per io.stdout call. */
function writeLeases(store: SqliteLeaseStore, p: Parsed, io: LeasesIo): void {
  let chunk = "";
  let rows = 0;
  const flush = () => {
    if (chunk !== "") io.stdout(chunk);
    chunk = "";
  };
  if (p.format === "table") chunk += tableLine(TABLE_COLUMNS.map((c) => c.key));
  if (p.format === "csv") chunk += csvLine(COLUMNS.map((c) => c.key));
  if (p.format === "json") chunk += "[";
  for (const lease of store.iterate(p.filter)) {
    const r = toRecord(lease);
    if (p.format === "table") chunk += tableLine(TABLE_COLUMNS.map((c) => r[c.key]));
    else if (p.format === "csv") chunk += csvLine(COLUMNS.map((c) => r[c.key]));
    else chunk += (rows === 0 ? "\n" : ",\n") + JSON.stringify(r);
    if (++rows % FLUSH_ROWS === 0) flush();
  }
  if (p.format === "json") chunk += rows === 0 ? "]\n" : "\n]\n";
  flush();
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
  if (parsed.config !== undefined) {
    if (!io.loadConfig) {
      io.stderr(`duet leases: --config is not available here; use --db\n${USAGE}\n`);
      return EXIT_USAGE;
    }
    try {
      database = (await io.loadConfig(parsed.config)).database;
    } catch (e) {
      io.stderr(`duet leases: ${e instanceof Error ? e.message : String(e)}\n`);
      return e instanceof ConfigError ? EXIT_CONFIG : EXIT_FAILURE;
    }
  }

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
