/**
 * `duet partner-down`: tells a running `duet serve` that its failover partner is down
 * (draft-12 §9.9.3 operator command), over the control socket's POST /partner-down.
 */
import { parseArgs } from "node:util";
import { ExitCode } from "./io.ts";
import { controlSocketFrom, requestControl, type StatusIo } from "./status.ts";

const USAGE = "Usage: duet partner-down (-c FILE | --socket PATH)";

const HELP = `${USAGE}

Tells a running "duet serve" that its failover partner is down, so that it moves to
PARTNER-DOWN (draft-12 §9.9.3) and, after MCLT, may allocate the partner's addresses.
Only do this when the partner really is down: two servers in PARTNER-DOWN can hand out
the same address. The server refuses it in states where the draft gives the command no
meaning (for example RECOVER or POTENTIAL-CONFLICT).

Options:
  -c, --config FILE   find the control socket from this configuration
      --socket PATH   connect to this control socket
  -h, --help          print this help

Exit codes: 0 the server is in PARTNER-DOWN, 1 refused or the server did not answer,
2 usage error, 3 invalid configuration.
`;

/** Runs `duet partner-down`; returns the exit code. */
export async function partnerDownCommand(args: string[], io: StatusIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        socket: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    io.stderr(`duet partner-down: ${text.split(". ")[0] ?? text}\n${USAGE}\n`);
    return ExitCode.USAGE;
  }
  if (values.help) {
    io.stdout(HELP);
    return ExitCode.OK;
  }
  const socket = await controlSocketFrom("partner-down", values, io, USAGE);
  if (typeof socket === "number") return socket;
  let reply: { status: number; body: string };
  try {
    reply = await requestControl(socket, "/partner-down", { method: "POST" });
  } catch (e) {
    const why = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
    io.stderr(`duet partner-down: Cannot reach duet serve on "${socket}": ${why}\n`);
    return ExitCode.FAILURE;
  }
  let doc: { state?: unknown; previous?: unknown; error?: unknown } = {};
  try {
    doc = JSON.parse(reply.body);
  } catch {
    // Reported below.
  }
  if (reply.status !== 200) {
    const error = doc.error !== undefined
      ? String(doc.error)
      : `unexpected answer (HTTP ${reply.status})`;
    io.stderr(`duet partner-down: ${error}\n`);
    return ExitCode.FAILURE;
  }
  io.stdout(`${String(doc.previous ?? "?")} -> ${String(doc.state ?? "?")}\n`);
  return ExitCode.OK;
}
