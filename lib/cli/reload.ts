/**
 * `duet reload`: asks a running `duet serve` to re-read its configuration file (as SIGHUP
 * does), over the control socket's POST /reload, and prints what it applied or why not.
 */
import { ExitCode } from "./io.ts";
import { askServer, type StatusIo } from "./status.ts";

/** The server reads large configurations and rebuilds its state: allow it some time. */
const RELOAD_TIMEOUT_MS = 30_000;

const USAGE = "Usage: duet reload (-c FILE | --socket PATH)";

const HELP = `${USAGE}

Asks a running "duet serve" to re-read the configuration file it was started with (the
same as sending it SIGHUP). Options, lease times, offer-hold, authoritative, log-level,
reservations, hooks and new or larger pools and subnets apply at once. Changes that need
a restart (database, listen, control, the failover section) or that would take a pool
from under ACTIVE leases are refused, and the server keeps the configuration in force.

Options:
  -c, --config FILE   find the control socket from this configuration
      --socket PATH   connect to this control socket
  -h, --help          print this help

Exit codes: 0 applied (or nothing changed), 1 no server answered, 2 usage error,
3 the configuration is invalid or a change was refused (each problem is printed as
file:line:col: message).
`;

interface ReloadReply {
  ok?: unknown;
  outcome?: unknown;
  file?: unknown;
  changes?: unknown;
  problems?: unknown;
  error?: unknown;
}

/** Runs `duet reload`; returns the exit code. */
export async function reloadCommand(args: string[], io: StatusIo): Promise<number> {
  const asked = await askServer("reload", args, io, {
    usage: USAGE,
    help: HELP,
    path: "/reload",
    method: "POST",
    timeoutMs: RELOAD_TIMEOUT_MS,
  });
  if (typeof asked === "number") return asked;
  const { reply } = asked;
  let doc: ReloadReply = {};
  try {
    doc = JSON.parse(reply.body);
  } catch {
    // Reported below.
  }
  const file = typeof doc.file === "string" ? doc.file : "?";
  if (reply.status === 200 && doc.ok === true) {
    const changes = Array.isArray(doc.changes) ? doc.changes.map(String) : [];
    io.stdout(
      changes.length > 0
        ? `reloaded ${file}: ${changes.join(", ")}\n`
        : `reloaded ${file}: nothing changed\n`,
    );
    return ExitCode.OK;
  }
  if ((reply.status === 409 || reply.status === 422) && Array.isArray(doc.problems)) {
    io.stderr(
      `duet reload: ${
        doc.outcome === "invalid" ? "the configuration is invalid" : "the server refused it"
      }; it keeps the configuration in force\n`,
    );
    for (const p of doc.problems as { line?: unknown; col?: unknown; message?: unknown }[]) {
      io.stderr(`${file}:${Number(p.line ?? 0)}:${Number(p.col ?? 0)}: ${String(p.message)}\n`);
    }
    return ExitCode.INVALID_CONFIG;
  }
  const error = doc.error !== undefined
    ? String(doc.error)
    : `unexpected answer (HTTP ${reply.status})`;
  io.stderr(`duet reload: ${error}\n`);
  return ExitCode.FAILURE;
}
