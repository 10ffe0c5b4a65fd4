/** duet: the command-line entry point. Dispatches to lib/cli; only this file calls Deno.exit. */
import { checkCommand } from "./lib/cli/check.ts";
import { decodeCommand } from "./lib/cli/decode.ts";
import { demoCommand } from "./lib/cli/demo.ts";
import { helpCommand, USAGE } from "./lib/cli/help.ts";
import type { CliIo } from "./lib/cli/io.ts";
import { leasesCommand } from "./lib/cli/leases.ts";
import { partnerDownCommand } from "./lib/cli/partner_down.ts";
import { reloadCommand } from "./lib/cli/reload.ts";
import { serveCommand } from "./lib/cli/serve.ts";
import { statusCommand } from "./lib/cli/status.ts";
import { versionCommand } from "./lib/cli/version.ts";
import { loadConfig } from "./lib/config/config.ts";

type Command = (args: string[], io: CliIo) => number | Promise<number>;

const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  leases: (args, io) => leasesCommand(args, { ...io, loadConfig }),
  status: (args, io) => statusCommand(args, { ...io, loadConfig }),
  "partner-down": (args, io) => partnerDownCommand(args, { ...io, loadConfig }),
  reload: (args, io) => reloadCommand(args, { ...io, loadConfig }),
  check: checkCommand,
  decode: decodeCommand,
  demo: demoCommand,
  version: versionCommand,
  help: helpCommand,
};

const encoder = new TextEncoder();

/** The real streams. */
export const STDIO: CliIo = {
  stdout: (s) => writeAll(Deno.stdout, s),
  stderr: (s) => writeAll(Deno.stderr, s),
};

function writeAll(stream: { writeSync(p: Uint8Array): number }, s: string): void {
  const bytes = encoder.encode(s);
  let off = 0;
  while (off < bytes.length) off += stream.writeSync(bytes.subarray(off));
}

/** Runs one duet command and returns its exit code. */
export async function main(args: string[], io: CliIo = STDIO): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h") {
    io.stdout(USAGE);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") return versionCommand(rest, io);
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`duet: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command(rest, io);
  } catch (e) {
    // The reader of stdout went away (`duet decode x.pcap | head`): not an error.
    if (e instanceof Deno.errors.BrokenPipe) return 0;
    io.stderr(`duet ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
