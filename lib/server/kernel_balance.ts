/**
 * Keeps the kernel's load-balancing filter (lib/server/bpf.ts) in step with the failover
 * endpoint: on while NORMAL with the buckets this server answers, off in every other state,
 * and its drops counted with the DHCP core's own (received, and dropped as "load-balanced"),
 * so the counters read the same whichever side of the socket a request was refused on.
 */

import type { Logger } from "../log.ts";
import type { DhcpCounters } from "./dhcp.ts";
import { KernelBalanceFilter, type KernelFilterCounters } from "./bpf.ts";
import { localIpv4Addresses } from "./libc.ts";
import type { Transport } from "./transport.ts";

/** How often the filter is checked against the endpoint and its counters folded in. */
const TICK_MS = 1000;
/** Ticks between two readings of this host's addresses (the server identifiers). */
const ADDRESS_TICKS = 10;

/** The filter as `duet status` and the metrics show it. */
export interface KernelFilterStatus {
  /** "dropping": NORMAL, the partner's requests are dropped in the kernel; "passing": on
   *  standby outside NORMAL; "off": disabled by `failover.kernel-filter: false`;
   *  "unavailable": the kernel refused it (`reason` says why). */
  state: "dropping" | "passing" | "off" | "unavailable";
  reason: string | null;
  /** Requests the kernel dropped, per DHCP message type name. */
  dropped: { DHCPDISCOVER: number; DHCPREQUEST: number };
}

/** What KernelBalancer reads. */
export interface KernelBalancerOptions {
  transports: readonly Transport[];
  /** The endpoint's decision data (FailoverEndpoint.kernelBalance). */
  source: { kernelBalance(): { mine: Uint8Array; loadBalanceMaxSeconds: number } | null };
  /** The configured `server-id`, when there is one (it names this server too). */
  serverId: () => number | null;
  /** The current DHCP core's counters (a reload replaces the core). */
  counters: () => DhcpCounters;
  logger: Logger;
  /** false: do not load the filter (`failover.kernel-filter: false`). */
  enabled: boolean;
}

/** The filter's life beside a running server. */
export class KernelBalancer {
  readonly #o: KernelBalancerOptions;
  #filter: KernelBalanceFilter | null = null;
  #reason: string | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #ticks = 0;
  #addresses: number[] = [];
  #folded: KernelFilterCounters = { discover: 0, request: 0 };

  constructor(options: KernelBalancerOptions) {
    this.#o = options;
    if (!options.enabled) return;
    const raw = options.transports.filter((t) => t.attachSocketFilter !== undefined);
    if (raw.length === 0) {
      this.#reason = "no DHCP socket is a raw (FFI) socket";
      return;
    }
    let filter: KernelBalanceFilter | null = null;
    try {
      filter = KernelBalanceFilter.open();
      this.#addresses = localIpv4Addresses();
      for (const t of raw) filter.attach((fd) => t.attachSocketFilter?.(fd));
    } catch (e) {
      for (const t of raw) t.detachSocketFilter?.();
      filter?.close();
      this.#reason = (e as Error).message;
      options.logger.warn("Load balancing in user space only: no kernel filter", {
        reason: this.#reason,
      });
      return;
    }
    this.#filter = filter;
    this.sync();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /** Puts the endpoint's current decision in force (after a state change, and every second). */
  sync(): void {
    const f = this.#filter;
    if (f === null) return;
    const b = this.#o.source.kernelBalance();
    const own = this.#o.serverId();
    try {
      f.update(
        b === null ? null : {
          enabled: true,
          mine: b.mine,
          loadBalanceMaxSeconds: b.loadBalanceMaxSeconds,
          serverIds: own === null ? this.#addresses : [own, ...this.#addresses],
        },
      );
    } catch (e) {
      this.#fail(e);
    }
  }

  #tick(): void {
    if (++this.#ticks % ADDRESS_TICKS === 0) {
      try {
        this.#addresses = localIpv4Addresses();
      } catch {
        // Keep the last list; the next reading may succeed.
      }
    }
    this.sync();
    this.fold();
  }

  /** Adds the drops the kernel counted since the last call to the core's counters. */
  fold(): void {
    const f = this.#filter;
    if (f === null) return;
    let now: KernelFilterCounters;
    try {
      now = f.counters();
    } catch (e) {
      this.#fail(e);
      return;
    }
    const c = this.#o.counters();
    const add = (table: Record<string, number>, key: string, n: number) => {
      if (n > 0) table[key] = (table[key] ?? 0) + n;
    };
    const discover = now.discover - this.#folded.discover;
    const request = now.request - this.#folded.request;
    add(c.received, "DHCPDISCOVER", discover);
    add(c.received, "DHCPREQUEST", request);
    add(c.dropped, "load-balanced", discover + request);
    this.#folded = now;
  }

  /** The filter now, its drops folded into the core's counters first. */
  status(): KernelFilterStatus {
    this.fold();
    const d = this.#folded;
    const dropped = { DHCPDISCOVER: d.discover, DHCPREQUEST: d.request };
    if (this.#filter === null) {
      return this.#o.enabled
        ? { state: "unavailable", reason: this.#reason, dropped }
        : { state: "off", reason: null, dropped };
    }
    return { state: this.#filter.enabled ? "dropping" : "passing", reason: null, dropped };
  }

  /** Stops the timer, counts the last drops and releases the filter. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.fold();
    this.#filter?.close();
    this.#filter = null;
  }

  /** A map that can no longer be written or read: take the filter off every socket. */
  #fail(e: unknown): void {
    for (const t of this.#o.transports) t.detachSocketFilter?.();
    this.#reason = (e as Error).message;
    this.#o.logger.error("Kernel load-balancing filter failed; balancing in user space", {
      reason: this.#reason,
    });
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#filter?.close();
    this.#filter = null;
  }
}
