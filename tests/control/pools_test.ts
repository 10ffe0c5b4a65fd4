/** poolUsage(): per-pool used and free addresses, counted as DhcpCore.utilisation() counts a subnet. */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { poolUsage } from "../../lib/control/pools.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease, type LeaseState, zeroCounts } from "../../lib/store/store.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";

function ip(text: string): number {
  return parseIpv4(text) as number;
}

/** A memory store with the range count SqliteLeaseStore has. */
class View extends MemoryLeaseStore {
  countInRange(first: number, last: number): Record<LeaseState, number> {
    const counts = zeroCounts();
    for (const l of this.iterate()) if (l.address >= first && l.address <= last) counts[l.state]++;
    return counts;
  }
}

function lease(address: string, state: LeaseState): Lease {
  return { ...emptyLease(ip(address), state), hwAddress: new Uint8Array([2, 0, 0, 0, 0, 1]) };
}

Deno.test("poolUsage() counts leased, declined and reserved addresses as used, per pool", () => {
  const config = parseConfig(
    `database: x.db
listen: [{address: 127.0.0.1}]
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.1 - 192.0.2.9
      - range: 192.0.2.100 - 192.0.2.199
    reservations:
      - hw-address: 02:00:00:00:00:07
        address: 192.0.2.150
      - hw-address: 02:00:00:00:00:08
        address: 192.0.2.151
  - subnet: 198.51.100.0/24
    pools:
      - range: 198.51.100.10 - 198.51.100.19
`,
    "pools.yaml",
  );
  const view = new View();
  view.put(lease("192.0.2.100", "active"));
  view.put(lease("192.0.2.101", "abandoned"));
  view.put(lease("192.0.2.102", "released"));
  view.put(lease("192.0.2.103", "expired"));
  view.put(lease("192.0.2.150", "active")); // a reserved address, leased: counted once
  view.put(lease("198.51.100.10", "active"));
  view.commit();
  assert.deepEqual(poolUsage(config.subnets, view), [
    { subnet: "192.0.2.0/24", range: "192.0.2.1 - 192.0.2.9", size: 9, used: 0, free: 9 },
    // ACTIVE .100, ABANDONED .101, reserved .150 (leased) and .151.
    { subnet: "192.0.2.0/24", range: "192.0.2.100 - 192.0.2.199", size: 100, used: 4, free: 96 },
    {
      subnet: "198.51.100.0/24",
      range: "198.51.100.10 - 198.51.100.19",
      size: 10,
      used: 1,
      free: 9,
    },
  ]);
});
