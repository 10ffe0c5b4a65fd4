/** `duet check`: validates a configuration file and lists every problem in it (STYLE.md §9). */
import { parseArgs } from "node:util";
import { loadConfig, summarizeConfig } from "../config/config.ts";
import { ConfigError } from "../errors.ts";
import { type CliIo, ExitCode } from "./io.ts";

/** One-line usage, printed with usage errors and by --help. */
export const CHECK_USAGE = "Usage: duet check --config FILE [--json]";

function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

/**
 * Runs `duet check` with the arguments after the command name; returns the exit code:
 * 0 valid, 2 usage error, 3 invalid or unreadable configuration.
 */
export async function checkCommand(args: string[], io: CliIo): Promise<number> {
  let values: {
    config?: string | undefined;
    json?: boolean | undefined;
    help?: boolean | undefined;
  };
  try {
    values = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
      strict: true,
    }).values;
  } catch (err: unknown) {
    const why = err instanceof Error ? err.message : String(err);
    io.stderr(`duet check: ${why}\n${CHECK_USAGE}\n`);
    return ExitCode.USAGE;
  }
  if (values.help) {
    io.stdout(
      `${CHECK_USAGE}\n\nValidates a duet configuration file and prints every problem as ` +
        `file:line:col: message.\nExit codes: 0 valid, 2 usage error, 3 invalid configuration.\n`,
    );
    return ExitCode.OK;
  }
  const file = values.config;
  if (file === undefined || file === "") {
    io.stderr(`duet check: Missing required flag "--config"\n${CHECK_USAGE}\n`);
    return ExitCode.USAGE;
  }
  try {
    const config = await loadConfig(file);
    const s = summarizeConfig(config);
    if (values.json) {
      io.stdout(
        JSON.stringify({
          ok: true,
          file,
          subnets: s.subnets,
          pools: s.pools,
          addresses: s.addresses,
          reservations: s.reservations,
          problems: [],
        }) + "\n",
      );
    } else {
      io.stdout(
        `ok: ${plural(s.subnets, "subnet")}, ${plural(s.pools, "pool")}, ${
          plural(s.addresses, "address", "addresses")
        }\n`,
      );
    }
    return ExitCode.OK;
  } catch (err: unknown) {
    if (!(err instanceof ConfigError)) throw err;
    if (values.json) {
      io.stdout(JSON.stringify({ ok: false, file, problems: err.problems }) + "\n");
    }
    io.stderr(err.message + "\n");
    return ExitCode.INVALID_CONFIG;
  }
}
