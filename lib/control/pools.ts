/**
 * Utilisation of every pool (GET /status `pools`, `duet_pool_range_*` metrics), counted from
 * the lease database the same way DhcpCore.utilisation() counts a subnet: an address is used
 * when it is leased (ACTIVE), declined (ABANDONED) or never handed out dynamically (reserved,
 * or the subnet's network or broadcast address). Pure: the database is read through `view`.
 */
import type { SubnetConfig } from "../config/types.ts";
import type { Lease, LeaseState } from "../store/store.ts";
import { cidrBroadcast, formatIpv4 } from "../wire/ip.ts";

/** One pool's addresses. */
export interface PoolStatus {
  /** The pool's subnet as CIDR, e.g. "198.18.16.0/24". */
  subnet: string;
  /** "FIRST - LAST" as in the configuration file. */
  range: string;
  /** Addresses in the range. */
  size: number;
  /** Of those, leased, declined or not handed out dynamically. */
  used: number;
  /** size - used: addresses a client may get (offers held are not subtracted). */
  free: number;
}

/** What poolUsage() reads from the database (SqliteLeaseStore fits). */
export interface PoolView {
  countInRange(first: number, last: number): Record<LeaseState, number>;
  get(address: number): Lease | undefined;
}

function taken(lease: Lease | undefined): boolean {
  return lease !== undefined && (lease.state === "active" || lease.state === "abandoned");
}

/** Counts every pool of `subnets`: one range scan per pool plus one read per reserved address. */
export function poolUsage(subnets: readonly SubnetConfig[], view: PoolView): PoolStatus[] {
  const out: PoolStatus[] = [];
  for (const s of subnets) {
    const cidr = `${formatIpv4(s.subnet.network)}/${s.subnet.prefix}`;
    const never = new Set([s.subnet.network, cidrBroadcast(s.subnet)]);
    for (const r of s.reservations) never.add(r.address);
    for (const p of s.pools) {
      const size = p.end - p.start + 1;
      const counts = view.countInRange(p.start, p.end);
      let used = counts.active + counts.abandoned;
      for (const a of never) {
        if (a < p.start || a > p.end) continue;
        // A reserved address counts once, leased or not.
        if (!taken(view.get(a))) used++;
      }
      used = Math.min(size, used);
      out.push({
        subnet: cidr,
        range: `${formatIpv4(p.start)} - ${formatIpv4(p.end)}`,
        size,
        used,
        free: size - used,
      });
    }
  }
  return out;
}
