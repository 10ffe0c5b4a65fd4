/**
 * `duet partner-down`: tells a running `duet serve` that its failover partner is down
 * (draft-12 §9.9.3 operator command), over the control socket's POST /partner-down.
 */
import { ExitCode } from "./io.ts";
import { askServer, type StatusIo } from "./status.ts";

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
  const asked = await askServer("partner-down", args, io, {
    usage: USAGE,
    help: HELP,
    path: "/partner-down",
    method: "POST",
  });
  if (typeof asked === "number") return asked;
  const { reply } = asked;
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
