/**
 * The DHCP I/O shell: reads datagrams from a transport, runs the pure core, writes leases
 * in group-committed batches and sends each DHCPACK only after the COMMIT that made its
 * lease durable (DESIGN.md, "One DHCPREQUEST, end to end").
 */
import type { Logger } from "../log.ts";
import type { LeaseStore } from "../store/store.ts";
import { StoreError, WireError } from "../errors.ts";
import { decodeDhcp, dhcpTypeName, encodeDhcp, getMessageType } from "../wire/dhcp.ts";
import { formatIpv4 } from "../wire/ip.ts";
import type { DhcpCore, DhcpEffect, ReplyEffect } from "./dhcp.ts";
import type { Received, Transport } from "./transport.ts";

/** Options for DhcpShell. */
export interface ShellOptions {
  core: DhcpCore;
  store: LeaseStore;
  transports: Transport[];
  logger: Logger;
  /** Longest a lease waits for its COMMIT, in milliseconds. */
  commitDelayMs: number;
  /** Most leases in one transaction. */
  commitBatch: number;
  /** Wall clock in epoch seconds; injectable for tests. */
  now?: () => number;
  /** Seconds between expiry ticks. */
  tickSeconds?: number;
  /** Monotonic milliseconds (performance.now()); injectable for tests of the sync spacing. */
  clockMs?: () => number;
  /**
   * Called after each successful COMMIT with the addresses the DHCP core wrote in it (the
   * failover endpoint sends them to the partner, draft-12 §7.1.1).
   */
  onCommitted?: (addresses: number[]) => void;
}

/** Shell-level counters (the core counts per message type). */
export interface ShellCounters {
  malformed: number;
  sendFailed: number;
  commits: number;
  commitFailures: number;
  leasesCommitted: number;
  /** Commit latency histogram: count of commits at or below each bound in ms. */
  commitLatencyMs: Map<number, number>;
  /** Sum of every commit latency counted in commitLatencyMs, in ms (the histogram's _sum). */
  commitLatencySumMs: number;
}

const LATENCY_BOUNDS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, Infinity];

/**
 * Under sustained load a sync starts at most this often (ms): each fdatasync costs the CPU a
 * hand-off to Deno's I/O thread and the kernel's flush (about 0.3 ms on the bench VM), so a
 * busy server waits for a few more commits to share it. A sync after a quiet spell starts at
 * once.
 */
export const SYNC_INTERVAL_MS = 4;

/** A DHCP reply waiting for durability, or a caller of commitNow() (a failover BNDACK). */
type Pending =
  | { kind: "reply"; effect: ReplyEffect; transport: Transport }
  | { kind: "durable"; resolve: () => void; reject: (e: StoreError) => void };

/** Runs a DHCP server until stop() is called. */
export class DhcpShell {
  readonly counters: ShellCounters = {
    malformed: 0,
    sendFailed: 0,
    commits: 0,
    commitFailures: 0,
    leasesCommitted: 0,
    commitLatencyMs: new Map(LATENCY_BOUNDS.map((b) => [b, 0])),
    commitLatencySumMs: 0,
  };
  #o: ShellOptions;
  #now: () => number;
  /** ACKs whose leases are not committed yet. */
  #waiting: Pending[] = [];
  /** ACKs whose leases are committed but not yet synced to disk. */
  #unsynced: Pending[] = [];
  #syncing: Promise<void> | null = null;
  /** performance.now() before which no sync starts (SYNC_INTERVAL_MS after the last one). */
  #nextSyncAt = 0;
  #dirty: number[] = [];
  /** One encode buffer for every reply: transports copy what they send. */
  #scratch = new Uint8Array(1500);
  #commitTimer: ReturnType<typeof setTimeout> | undefined;
  #tickTimer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void>[] = [];
  #stopped = false;
  /** Set while the database refuses writes; ACKs are withheld until a commit succeeds. */
  storeFailing = false;

  constructor(options: ShellOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Starts every transport's receive loop and the expiry timer. */
  start(): void {
    const tickMs = (this.#o.tickSeconds ?? 1) * 1000;
    this.#tickTimer = setInterval(() => this.tick(), tickMs);
    for (const t of this.#o.transports) {
      this.#running.push(
        t.run((p) => this.#onPacket(p, t), () => this.#onBurstEnd()),
      );
    }
  }

  /** Resolves when every transport has stopped. */
  async done(): Promise<void> {
    await Promise.all(this.#running);
  }

  /** Stops receiving, commits what is pending and sends the replies that waited for it. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#tickTimer !== undefined) clearInterval(this.#tickTimer);
    for (const t of this.#o.transports) t.close();
    await Promise.all(this.#running);
    this.flush();
    while (this.#syncing) await this.#syncing;
  }

  #onPacket(p: Received, transport: Transport): void {
    let msg;
    try {
      msg = decodeDhcp(p.data);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      this.counters.malformed++;
      this.#o.logger.debug("Dropped malformed DHCP packet", {
        from: `${formatIpv4(p.srcAddress)}:${p.srcPort}`,
        error: e.message,
      });
      return;
    }
    const outcome = this.#o.core.handle(msg, p, this.#now());
    this.#run(outcome.effects, transport);
    if (this.#o.logger.debugEnabled) {
      this.#o.logger.debug("Handled DHCP request", {
        type: dhcpTypeName(getMessageType(msg)),
        from: `${formatIpv4(p.srcAddress)}:${p.srcPort}`,
        ifname: p.ifname ?? undefined,
        dropped: outcome.dropped,
      });
    }
  }

  #run(effects: readonly DhcpEffect[], transport: Transport | null): void {
    let writeFailed = false;
    for (const e of effects) {
      if (e.kind === "persist") {
        try {
          this.#o.store.put(e.lease);
          this.#dirty.push(e.lease.address);
        } catch (err) {
          if (!(err instanceof StoreError)) throw err;
          // A full or broken database: the core's view of this address is re-read from the
          // store, and no ACK for it goes out (nothing unrecorded is acknowledged).
          this.#storeFailed("Cannot write a lease; withholding its acknowledgement", err);
          this.#o.core.resync([e.lease.address]);
          writeFailed = true;
        }
      } else if (!transport || (writeFailed && e.afterCommit)) {
        continue;
      } else if (e.afterCommit) {
        // An ACK waits until the lease it grants is durable (draft §3.1.3, RFC 2131 §4.3.1).
        this.#waiting.push({ kind: "reply", effect: e, transport });
      } else {
        this.#send(e, transport);
      }
    }
    this.#armCommit(false);
  }

  /**
   * Group commit: commits now when a batch is full, else within commitDelayMs (and at the end
   * of the current burst of packets). `waiting` also arms the timer when nothing is pending,
   * for a commitNow() caller that needs an earlier commit's sync.
   */
  #armCommit(waiting: boolean): void {
    if (this.#o.store.pending >= this.#o.commitBatch) this.flush();
    else if ((this.#o.store.pending > 0 || waiting) && this.#commitTimer === undefined) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = undefined;
        this.#flushWhenIdle();
      }, this.#o.commitDelayMs);
    }
  }

  #onBurstEnd(): void {
    if (this.#o.store.pending > 0 || this.#waiting.length > 0) this.#flushWhenIdle();
  }

  /**
   * Commits now unless a sync is running: what is committed meanwhile would wait for the
   * next sync anyway, so the sync's completion commits everything pending at once (fewer
   * transactions, no extra latency).
   */
  #flushWhenIdle(): void {
    if (this.#syncing === null) this.flush();
  }

  #send(e: ReplyEffect, transport: Transport): void {
    const bytes = encodeDhcp(e.message, { maxSize: e.maxSize, into: this.#scratch });
    if (!transport.send(bytes, e.to)) this.counters.sendFailed++;
  }

  /**
   * Commits the pending leases, then has them synced to disk off the event loop; the ACKs
   * that waited for them are sent once the sync that covers them has finished. Returns false
   * when the commit failed (and was rolled back).
   */
  flush(): boolean {
    if (this.#commitTimer !== undefined) {
      clearTimeout(this.#commitTimer);
      this.#commitTimer = undefined;
    }
    const store = this.#o.store;
    const waiting = this.#waiting;
    this.#waiting = [];
    if (store.pending > 0) {
      const started = performance.now();
      try {
        const n = store.commit();
        this.counters.commits++;
        this.counters.leasesCommitted += n;
        this.#observeLatency(performance.now() - started);
      } catch (e) {
        if (!(e instanceof StoreError)) throw e;
        try {
          store.rollback();
        } catch {
          // The rollback of a failed commit may itself fail; the batch is gone either way.
        }
        this.#storeFailed("Cannot commit leases; withholding their acknowledgements", e);
        this.#o.core.resync(this.#dirty);
        this.#dirty = [];
        // Nothing acknowledged may be lost: the replies that needed this commit are dropped.
        for (const w of waiting) if (w.kind === "durable") w.reject(e);
        return false;
      }
    }
    const committed = this.#dirty;
    this.#dirty = [];
    for (const w of waiting) this.#unsynced.push(w);
    this.#startSync();
    if (committed.length > 0) this.#o.onCommitted?.(committed);
    return true;
  }

  /**
   * Resolves once every write made so far is committed and on stable storage; rejects when
   * that commit or its sync fails (a BNDACK waits for this, draft-12 §7.1.1). It joins the
   * group commit of the DHCPACKs: the writes of every BNDUPD that arrives within commitDelayMs
   * share one COMMIT and one sync with the leases of the DHCP clients.
   */
  commitNow(): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiting.push({ kind: "durable", resolve, reject });
    this.#armCommit(true);
    return promise;
  }

  /**
   * Writes made outside a request (a partner's acknowledgement) join the next group commit
   * instead of committing on their own.
   */
  commitSoon(): void {
    this.#armCommit(false);
  }

  /**
   * One sync at a time, and under load at most one per SYNC_INTERVAL_MS; commits made
   * meanwhile are covered by the next one (group commit).
   */
  #startSync(): void {
    if (this.#syncing || this.#unsynced.length === 0) return;
    const clockMs = this.#o.clockMs ?? (() => performance.now());
    const wait = this.#nextSyncAt - clockMs();
    if (wait > 0) {
      // Commits wait with it (flushWhenIdle), so that the sync covers them too.
      this.#syncing = new Promise<void>((r) => setTimeout(r, wait)).then(() => {
        this.#syncing = null;
        this.flush();
      });
      return;
    }
    this.#nextSyncAt = clockMs() + SYNC_INTERVAL_MS;
    const batch = this.#unsynced;
    this.#unsynced = [];
    this.#syncing = this.#o.store.sync().then(
      () => {
        if (this.storeFailing) {
          this.storeFailing = false;
          this.#o.logger.info("Lease database writable again");
        }
        for (const w of batch) {
          if (w.kind === "reply") this.#send(w.effect, w.transport);
          else w.resolve();
        }
      },
      (e) => {
        if (!(e instanceof StoreError)) throw e;
        this.#storeFailed("Cannot sync leases to disk; withholding their acknowledgements", e);
        for (const w of batch) if (w.kind === "durable") w.reject(e);
      },
    ).finally(() => {
      this.#syncing = null;
      if (this.#o.store.pending > 0 || this.#waiting.length > 0) this.flush();
      else this.#startSync();
    });
  }

  #storeFailed(message: string, e: StoreError): void {
    this.counters.commitFailures++;
    this.storeFailing = true;
    this.#o.logger.error(message, { error: e.message });
  }

  #observeLatency(ms: number): void {
    this.counters.commitLatencySumMs += ms;
    for (const b of LATENCY_BOUNDS) {
      if (ms <= b) {
        this.counters.commitLatencyMs.set(b, (this.counters.commitLatencyMs.get(b) ?? 0) + 1);
        break;
      }
    }
  }

  /**
   * Runs effects the core produced outside a request (pool balancing) and commits them; the
   * committed addresses reach onCommitted like any other lease change.
   */
  apply(effects: DhcpEffect[]): void {
    if (effects.length === 0) return;
    this.#run(effects, null);
    this.flush();
  }

  /** Expires offers and leases; runs every tickSeconds. */
  tick(): void {
    const effects = this.#o.core.tick(this.#now());
    if (effects.length > 0) {
      this.#run(effects, null);
      this.flush();
    }
  }
}
