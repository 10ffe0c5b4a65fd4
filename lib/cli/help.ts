/** `duet help`: the commands and their flags. */
import type { CliIo } from "./io.ts";

/** The usage text printed by `duet help` and on usage errors. */
export const USAGE = `duet: a DHCPv4 server for small routers, one half of a redundant pair

Usage: duet <command> [flags]

Commands:
  serve     --config FILE [--db FILE] [--log-level L] [--log-format text|json]
            [--transport auto|ffi|deno]
            Run the DHCP server until SIGTERM or SIGINT; SIGHUP re-reads the configuration.
  leases    [--config FILE | --db FILE] [--json | --csv] [--state S] [--mac M] [--ip A]
            Print the lease database (works while the server runs).
  status    [--config FILE | --socket PATH] [--json]
            Ask the running server for its status over its control socket.
  partner-down  [--config FILE | --socket PATH]
            Tell the running server its failover partner is down (PARTNER-DOWN).
  reload    [--config FILE | --socket PATH]
            Make the running server re-read its configuration (as SIGHUP does); unsafe
            changes are refused and the configuration in force stays.
  check     --config FILE
            Validate a configuration; every problem is printed as file:line:col: message.
  decode    FILE.pcap | --hex  [--json]
            Print every DHCP and failover message in a capture (or hex lines on stdin)
            with the RFC and draft names; undecodable messages show the error and offset.
  demo      [--clients N] [--port P] [--keep DIR]
            Run a server on loopback with an embedded configuration, put simulated clients
            through DISCOVER/REQUEST/renew/release, and print the lease table.
  version   Print duet's version.
  help      Print this text.

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid configuration.
`;

/** Prints the usage text to stdout. */
export function helpCommand(_args: string[], io: CliIo): number {
  io.stdout(USAGE);
  return 0;
}
