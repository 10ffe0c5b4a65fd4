/**
 * The DHCP shell's clock (issue #8, "Clock jumps"). A client holds its lease for the lease time
 * counted from the DHCPACK in elapsed time (RFC 2131 §4.4.5: T1, T2 and the expiry are timers
 * the client starts when the ACK arrives), whatever the server's wall clock does afterwards. So:
 *
 * - The core's `now` is the protocol clock: the wall clock read once at start, advanced by a
 *   monotonic clock. A step of the system clock (NTP fixing a router that booted without a
 *   battery-backed clock, an admin's typo, a bad time source) does not move it, so a step
 *   neither expires every lease at once nor lets any live longer; offer holds and the expiry
 *   tick are measured the same way.
 * - Stored times (the database, `duet leases`, the failover partner, a later restart) should
 *   still match the system clock. When the wall clock and the protocol clock drift apart by more
 *   than CLOCK_STEP_THRESHOLD_SECONDS, the shell treats it as a step of that size: it logs it
 *   once and moves every stored lease time by the step (LeaseStore.shiftTimes), and from then
 *   on adds the step to every time the core writes (`offset`). Each lease keeps exactly the
 *   time it had left, and its stored times agree with the system clock again.
 *
 * This module is pure: the wall and monotonic sources are injected (lib/server/shell.ts has the
 * real ones), so tests can step a fake wall clock.
 */
import {
  type Lease,
  type LeaseFilter,
  type LeaseState,
  type LeaseView,
  shiftTime,
} from "../store/store.ts";

/** Where time comes from. */
export interface ClockSources {
  /** The wall clock in epoch milliseconds (Date.now); it may step. */
  wallMs(): number;
  /** Milliseconds from an arbitrary origin that never step (performance.now). */
  monoMs(): number;
}

/**
 * A disagreement between the wall clock and the protocol clock beyond this many seconds is a
 * clock step. NTP slews smaller offsets (ntpd steps above 0.128 s, chrony's makestep is
 * usually 1 s); a lease time is at least 1 s and usually an hour, so 10 s of error is harmless.
 */
export const CLOCK_STEP_THRESHOLD_SECONDS = 10;

/**
 * At start, the newest stored lease time later than the wall clock by more than this means the
 * clock went backwards across the restart. Larger than the running threshold because a failover
 * partner's clock (whose times the database also holds) may be a little ahead of ours.
 */
export const START_STEP_THRESHOLD_SECONDS = 60;

/** The protocol clock: wall time at construction plus monotonic time since, and the offset. */
export class ProtocolClock {
  readonly #sources: ClockSources;
  readonly #anchorWall: number;
  readonly #anchorMono: number;
  #offset = 0;
  #steps = 0;
  #lastStep: number | null = null;

  constructor(sources: ClockSources) {
    this.#sources = sources;
    this.#anchorMono = sources.monoMs();
    this.#anchorWall = sources.wallMs() / 1000;
  }

  /** Epoch seconds on the core's timeline; no wall-clock step moves it. */
  now(): number {
    return this.#anchorWall + (this.#sources.monoMs() - this.#anchorMono) / 1000;
  }

  /**
   * Epoch seconds on the timeline of the stored times (the database, the failover partner):
   * now() plus every step applied so far. Follows the wall clock, without its steps until the
   * shell has applied them.
   */
  storeNow(): number {
    return this.now() + this.#offset;
  }

  /** Stored time minus core time in whole seconds: the sum of the steps applied. */
  get offset(): number {
    return this.#offset;
  }

  /** The wall clock in epoch seconds. */
  wall(): number {
    return this.#sources.wallMs() / 1000;
  }

  /** The monotonic clock in milliseconds (for timers and rate limits). */
  monoMs(): number {
    return this.#sources.monoMs();
  }

  /**
   * How far the wall clock has stepped from storeNow(), in whole seconds (positive: forward),
   * when that is more than CLOCK_STEP_THRESHOLD_SECONDS; otherwise 0.
   */
  pendingStep(): number {
    const d = this.wall() - this.storeNow();
    return Math.abs(d) > CLOCK_STEP_THRESHOLD_SECONDS ? Math.round(d) : 0;
  }

  /** Records that every stored time has been moved by `delta` seconds. */
  applyStep(delta: number): void {
    if (!Number.isSafeInteger(delta)) throw new RangeError(`Cannot apply a step of ${delta} s`);
    this.#offset += delta;
    this.#steps++;
    this.#lastStep = delta;
  }

  /** How many steps were applied, and the last one in seconds (null before any). */
  get steps(): { count: number; last: number | null } {
    return { count: this.#steps, last: this.#lastStep };
  }
}

/** A lease with every set time moved by `delta` seconds (store.ts shiftTime()). */
export function shiftLease(lease: Lease, delta: number): Lease {
  if (delta === 0) return lease;
  return {
    ...lease,
    starts: shiftTime(lease.starts, delta),
    ends: shiftTime(lease.ends, delta),
    cltt: shiftTime(lease.cltt, delta),
    tstp: shiftTime(lease.tstp, delta),
    tsfp: shiftTime(lease.tsfp, delta),
    atsfp: shiftTime(lease.atsfp, delta),
  };
}

/**
 * The core's view of the leases: the store's rows with their times moved from the stored
 * timeline onto the core's (minus the clock's offset). Until a step has been applied it hands
 * the rows through untouched. The shell adds the offset back to every lease the core writes.
 */
export class CoreLeaseView implements LeaseView {
  readonly #view: LeaseView;
  readonly #clock: ProtocolClock;

  constructor(view: LeaseView, clock: ProtocolClock) {
    this.#view = view;
    this.#clock = clock;
  }

  get(address: number): Lease | undefined {
    const l = this.#view.get(address);
    return l && shiftLease(l, -this.#clock.offset);
  }

  findByHw(htype: number, hwAddress: Uint8Array): Lease[] {
    return this.#shiftAll(this.#view.findByHw(htype, hwAddress));
  }

  findByClientId(clientId: Uint8Array): Lease[] {
    return this.#shiftAll(this.#view.findByClientId(clientId));
  }

  *iterate(filter?: LeaseFilter): IterableIterator<Lease> {
    for (const l of this.#view.iterate(filter)) yield shiftLease(l, -this.#clock.offset);
  }

  countByState(): Record<LeaseState, number> {
    return this.#view.countByState();
  }

  #shiftAll(leases: Lease[]): Lease[] {
    const delta = -this.#clock.offset;
    return delta === 0 ? leases : leases.map((l) => shiftLease(l, delta));
  }
}

/**
 * The step to apply to the stored times before the core loads them: when the newest stored
 * lease time (cltt) is later than the wall clock by more than START_STEP_THRESHOLD_SECONDS,
 * time went backwards across the restart (typically a router without a battery-backed clock
 * that has not synchronised yet), and the stored times are moved back by the difference so that
 * each lease keeps the time it had left when the database was last written. Returns 0
 * otherwise (a wall clock ahead of the database is an ordinary downtime).
 */
export function startStep(newestStored: number, wall: number): number {
  const ahead = newestStored - wall;
  return newestStored > 0 && ahead > START_STEP_THRESHOLD_SECONDS ? -Math.round(ahead) : 0;
}
