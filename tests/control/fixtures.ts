/** Fake parts for the pure status and metrics tests. */
import type { StatusParts } from "../../lib/control/status.ts";
import type { ShellCounters } from "../../lib/server/shell.ts";

/** Shell counters with the given per-bucket latency counts (bounds as in lib/server/shell.ts). */
export function shellCounters(buckets: [number, number][], sum: number): ShellCounters {
  return {
    malformed: 2,
    sendFailed: 1,
    commits: buckets.reduce((n, [, c]) => n + c, 0),
    commitFailures: 1,
    leasesCommitted: 9,
    commitLatencyMs: new Map(buckets),
    commitLatencySumMs: sum,
    withheld: {},
  };
}

/** A standalone server's parts: two subnets, a few counters. */
export function standaloneParts(): StatusParts {
  return {
    version: "0.1.0",
    pid: 4242,
    now: 1_700_003_723.9,
    startedAt: 1_700_000_000,
    database: "/var/lib/duet/leases.db",
    listen: ["deno 192.0.2.1:67"],
    utilisation: [
      { subnet: "192.0.2.0/24", size: 200, free: 150 },
      { subnet: "198.51.100.0/25", size: 0, free: 0 },
    ],
    pools: [
      { subnet: "192.0.2.0/24", range: "192.0.2.10 - 192.0.2.209", size: 200, used: 50, free: 150 },
    ],
    leases: {
      free: 0,
      active: 50,
      expired: 3,
      released: 1,
      abandoned: 0,
      reset: 0,
      backup: 0,
    },
    dhcp: {
      // Deliberately unsorted: the snapshot sorts keys.
      received: { DHCPREQUEST: 40, DHCPDISCOVER: 45, DHCPRELEASE: 1 },
      sent: { DHCPOFFER: 45, DHCPACK: 39, DHCPNAK: 1 },
      dropped: { "pool-exhausted": 4, "not-ours": 2 },
      offersRecycled: 0,
    },
    shell: shellCounters([[0.5, 3], [1, 2], [2, 0], [5, 1], [Infinity, 1]], 1234.5),
    storeFailing: false,
    failover: null,
    reload: {
      count: { applied: 2, unchanged: 0, invalid: 0, refused: 1 },
      last: {
        outcome: "refused",
        file: "/etc/duet/duet.yaml",
        time: 1_700_003_000,
        changes: [],
        problems: [{
          path: "listen",
          line: 3,
          col: 1,
          message: 'Cannot change "listen" on reload (the sockets stay bound): restart duet',
        }],
      },
    },
  };
}
