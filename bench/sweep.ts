/**
 * The rate sweep and the verdict of one run, free of I/O: the caller passes a `measure`
 * function that runs a fresh server at one rate.
 */
import type { PerfdhcpStats } from "./perfdhcp.ts";

/** Outcome of one run. FAIL_CLIENT: perfdhcp, not the server, was the limit. */
export type Verdict = "PASS" | "FAIL" | "FAIL_CLIENT" | "ERROR";

/** A run passes when ACKs received reach this share of DISCOVERs sent. */
export const PASS_RATIO = 0.99;
/** ...and perfdhcp really sent this share of RATE x DUR DISCOVERs. */
export const SEND_RATIO = 0.97;
/** perfdhcp busy for this share of its core means the client was the limit. */
export const CLIENT_SATURATION = 0.85;

/** What the verdict needs to know about one run. */
export interface VerdictInput {
  stats: PerfdhcpStats;
  rate: number;
  durationSeconds: number;
  clientCpuSeconds: number;
  wallSeconds: number;
}

/** PASS, FAIL or FAIL_CLIENT for one finished perfdhcp run. */
export function judgeRun(run: VerdictInput): Verdict {
  const sent = run.stats.discoverOffer.sent;
  const acks = run.stats.requestAck.received;
  const sentEnough = sent >= SEND_RATIO * run.rate * run.durationSeconds;
  const saturated = run.wallSeconds > 0 &&
    run.clientCpuSeconds / run.wallSeconds >= CLIENT_SATURATION;
  if (sentEnough && sent > 0 && acks >= PASS_RATIO * sent) return "PASS";
  return !sentEnough || saturated ? "FAIL_CLIENT" : "FAIL";
}

/** How to walk the rates. */
export interface SweepPlan {
  /** Rising rates, tried until the first one that does not pass. */
  steps: number[];
  /** When the first step fails, halve down to this rate. */
  minRate: number;
  /** Bisections between the last pass and the first failure. */
  bisections: number;
  /** Fresh runs at the best passing rate; a majority must pass. 0 = take the sweep's run. */
  repeats: number;
}

/** The minimum a measured run must carry for the sweep. */
export interface SweepRun {
  rate: number;
  verdict: Verdict;
  exchangesPerSecond: number;
}

/** Where the sweep ended. */
export interface SweepResult<R extends SweepRun> {
  /** Highest confirmed passing rate; 0 when none. */
  bestRate: number;
  /** The run reported for the best rate (median of the passing repeats), or null. */
  reported: R | null;
  /** Passing and total repeats at the best rate. */
  repeatsPassed: number;
  repeatsRun: number;
  /** True when a step failed because perfdhcp could not go faster. */
  clientLimited: boolean;
  /** Every run, in order. */
  runs: R[];
  /** Set when a run could not be made at all (server failed to start). */
  error: string | null;
}

/** Median by exchanges per second (the lower middle for an even count). */
export function medianRun<R extends SweepRun>(runs: R[]): R | null {
  const sorted = [...runs].sort((a, b) => a.exchangesPerSecond - b.exchangesPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? null;
}

function bisectRate(lo: number, hi: number): number | null {
  const grain = lo < 200 ? 5 : lo < 1000 ? 10 : 50;
  const mid = Math.floor((lo + hi) / 2 / grain) * grain;
  return mid > lo && mid < hi ? mid : null;
}

/**
 * Steps up until the first failure (halving down when the first step fails), bisects, then
 * confirms the best rate with fresh repeats. If most repeats fail, that rate counts as failed:
 * the sweep bisects again between it and the next lower passing rate (or, when none is lower,
 * the first of its halves that passes, down to minRate) and confirms the best of that. Without
 * the second bisection a server whose repeats failed at the top step (Kea at 16,000/s on
 * 2026-12-03) was confirmed at half of it, with nothing tried in between.
 */
export async function sweep<R extends SweepRun & { error?: string | undefined }>(
  plan: SweepPlan,
  measure: (rate: number, phase: string) => Promise<R>,
): Promise<SweepResult<R>> {
  const runs: R[] = [];
  const passed = new Map<number, R>();
  let clientLimited = false;
  const result = (bestRate: number, reported: R | null, passes = 0, total = 0, error = null) => ({
    bestRate,
    reported,
    repeatsPassed: passes,
    repeatsRun: total,
    clientLimited,
    runs,
    error,
  });
  async function attempt(rate: number, phase: string): Promise<boolean | null> {
    const run = await measure(rate, phase);
    runs.push(run);
    if (run.verdict === "ERROR") return null;
    if (run.verdict === "FAIL_CLIENT") clientLimited = true;
    if (run.verdict === "PASS" && !passed.has(rate)) passed.set(rate, run);
    return run.verdict === "PASS";
  }
  function failed(): SweepResult<R> {
    const last = runs[runs.length - 1];
    return { ...result(0, null), error: last?.error ?? "run failed" };
  }

  /**
   * Halves from `from` (down to minRate) until a rate passes: that rate (0 if none did) and the
   * lowest rate that failed; null when a run could not be made.
   */
  async function stepDown(from: number): Promise<{ pass: number; fail: number } | null> {
    let fail = from;
    for (let rate = Math.floor(from / 2); rate >= plan.minRate; rate = Math.floor(rate / 2)) {
      const ok = await attempt(rate, "stepdown");
      if (ok === null) return null;
      if (ok) return { pass: rate, fail };
      fail = rate;
    }
    return { pass: 0, fail };
  }

  let lo = 0;
  let hi = 0;
  for (const rate of plan.steps) {
    const ok = await attempt(rate, "step");
    if (ok === null) return failed();
    if (!ok) {
      hi = rate;
      break;
    }
    lo = rate;
  }
  if (lo === 0 && hi > 0) {
    const down = await stepDown(hi);
    if (down === null) return failed();
    lo = down.pass;
    hi = down.fail;
  }
  /** Narrows lo (passed) and hi (failed) with plan.bisections runs; false when a run failed to run. */
  async function bisect(): Promise<boolean> {
    if (lo === 0 || hi === 0) return true;
    for (let i = 0; i < plan.bisections; i++) {
      const mid = bisectRate(lo, hi);
      if (mid === null) break;
      const ok = await attempt(mid, "bisect");
      if (ok === null) return false;
      if (ok) lo = mid;
      else hi = mid;
    }
    return true;
  }
  if (!await bisect()) return failed();
  while (lo > 0) {
    if (plan.repeats === 0) return result(lo, passed.get(lo) ?? null);
    const repeats: R[] = [];
    for (let i = 1; i <= plan.repeats; i++) {
      const ok = await attempt(lo, `repeat${i}`);
      if (ok === null) return failed();
      repeats.push(runs[runs.length - 1]!);
    }
    const good = repeats.filter((r) => r.verdict === "PASS");
    if (good.length * 2 > plan.repeats) {
      return result(lo, medianRun(good), good.length, plan.repeats);
    }
    hi = lo;
    const lower = [...passed.keys()].filter((r) => r < lo);
    if (lower.length > 0) {
      lo = Math.max(...lower);
    } else {
      // No lower rate has passed yet (the sweep started at this one): halve until one passes.
      const down = await stepDown(lo);
      if (down === null) return failed();
      lo = down.pass;
      hi = down.fail;
    }
    if (!await bisect()) return failed();
  }
  return result(0, null);
}
