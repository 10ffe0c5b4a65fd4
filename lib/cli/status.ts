/** `duet status`: asks a running `duet serve` for its status over the control socket. */
import { parseArgs } from "node:util";
import type { Config } from "../config/types.ts";
import { ConfigError } from "../errors.ts";
import { controlSocketPath } from "../control/http.ts";
import { renderStatus, type StatusSnapshot } from "../control/status.ts";
import { type CliIo, ExitCode } from "./io.ts";

/** How long to wait for the server's answer, in milliseconds. */
const REQUEST_TIMEOUT_MS = 5000;

const USAGE = "Usage: duet status (-c FILE | --socket PATH) [--json]";

const HELP = `${USAGE}

Asks a running "duet serve" for its status over its control socket: version, uptime,
subnet utilisation, lease counts, DHCP and database counters, and the failover link.

Options:
  -c, --config FILE   find the socket from this configuration (control.socket, else
                      the lease database path followed by ".sock")
      --socket PATH   connect to this control socket
      --json          print the status as one JSON document
  -h, --help          print this help

Exit codes: 0 ok, 1 the server is not running or did not answer, 2 usage error,
3 invalid configuration.
`;

/** What statusCommand writes to and how it reads a configuration file. */
export interface StatusIo extends CliIo {
  /** Reads the configuration (lib/config/config.ts loadConfig); needed for --config. */
  loadConfig?: (path: string) => Promise<Pick<Config, "database" | "control">>;
}

/** GETs `path` from the control socket; resolves to the status code and body text. */
export async function requestControl(
  socket: string,
  path: string,
  options: { method?: string; timeoutMs?: number } = {},
): Promise<{ status: number; body: string }> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const res = await fetch(`http://localhost${path}`, {
      client,
      method: options.method ?? "GET",
      signal: AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS),
    });
    return { status: res.status, body: await res.text() };
  } finally {
    client.close();
  }
}

function isSnapshot(v: unknown): v is StatusSnapshot {
  if (typeof v !== "object" || v === null) return false;
  const s = v as Partial<StatusSnapshot>;
  return typeof s.version === "string" && typeof s.uptimeSeconds === "number" &&
    Array.isArray(s.subnets) && Array.isArray(s.listen) && typeof s.leases === "object" &&
    typeof s.dhcp === "object" && typeof s.db === "object" && s.failover !== undefined;
}

/**
 * The control socket a command talks to: `--socket`, or the one `--config` names or implies.
 * Returns an exit code (usage 2, invalid config 3, failure 1) after printing why, instead.
 */
export async function controlSocketFrom(
  command: string,
  values: { config?: string | undefined; socket?: string | undefined },
  io: StatusIo,
  usage: string,
): Promise<string | number> {
  if ((values.config === undefined) === (values.socket === undefined)) {
    io.stderr(`duet ${command}: Give exactly one of --config and --socket\n${usage}\n`);
    return ExitCode.USAGE;
  }
  if (values.config === undefined) return values.socket as string;
  if (!io.loadConfig) {
    io.stderr(`duet ${command}: --config is not available here; use --socket\n${usage}\n`);
    return ExitCode.USAGE;
  }
  try {
    return controlSocketPath(await io.loadConfig(values.config));
  } catch (e) {
    io.stderr(`duet ${command}: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof ConfigError ? ExitCode.INVALID_CONFIG : ExitCode.FAILURE;
  }
}

/** What askServer() asks: the command's name and texts, and the request to send. */
export interface AskOptions {
  usage: string;
  help: string;
  /** The command takes --json. */
  json?: boolean;
  path: string;
  method?: "GET" | "POST";
  timeoutMs?: number;
}

/**
 * The part every command that asks the running server shares (status, partner-down,
 * reload): reads `(-c FILE | --socket PATH) [--json] [-h]`, finds the control socket and
 * sends the request. Returns the answer, or an exit code after printing why there is none.
 */
export async function askServer(
  command: string,
  args: string[],
  io: StatusIo,
  o: AskOptions,
): Promise<{ reply: { status: number; body: string }; socket: string; json: boolean } | number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        socket: { type: "string" },
        ...(o.json ? { json: { type: "boolean" as const } } : {}),
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    io.stderr(`duet ${command}: ${text.split(". ")[0] ?? text}\n${o.usage}\n`);
    return ExitCode.USAGE;
  }
  if (values.help) {
    io.stdout(o.help);
    return ExitCode.OK;
  }
  const socket = await controlSocketFrom(command, values, io, o.usage);
  if (typeof socket === "number") return socket;
  try {
    const reply = await requestControl(socket, o.path, {
      method: o.method ?? "GET",
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    });
    return { reply, socket, json: (values as { json?: boolean }).json === true };
  } catch (e) {
    const why = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
    const missing = await Deno.lstat(socket).then(() => false, () => true);
    io.stderr(
      missing
        ? `duet ${command}: duet serve is not running: no control socket at "${socket}"\n`
        : `duet ${command}: Cannot reach duet serve on "${socket}": ${why}\n`,
    );
    return ExitCode.FAILURE;
  }
}

/** Runs `duet status`; returns the exit code (0 ok, 1 not running, 2 usage, 3 config). */
export async function statusCommand(args: string[], io: StatusIo): Promise<number> {
  const asked = await askServer("status", args, io, {
    usage: USAGE,
    help: HELP,
    json: true,
    path: "/status",
  });
  if (typeof asked === "number") return asked;
  const { reply, socket } = asked;
  let doc: unknown;
  try {
    doc = JSON.parse(reply.body);
  } catch {
    doc = undefined;
  }
  if (reply.status !== 200 || !isSnapshot(doc)) {
    const error = typeof doc === "object" && doc !== null && "error" in doc
      ? String((doc as { error: unknown }).error)
      : `unexpected answer (HTTP ${reply.status})`;
    io.stderr(`duet status: Cannot read the status from "${socket}": ${error}\n`);
    return ExitCode.FAILURE;
  }
  io.stdout(
    asked.json ? (reply.body.endsWith("\n") ? reply.body : reply.body + "\n") : renderStatus(doc),
  );
  return ExitCode.OK;
}
