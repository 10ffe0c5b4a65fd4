/**
 * Running many simulation schedules: one schedule per seed (runSchedule), and a range of seeds
 * split over Web Workers (runSchedules) so that both cores of a small machine work. A failing
 * seed is run again with the trace on, and the error carries the seed and the trace's tail.
 */
import { Sim, SimError, type SimStats } from "./sim.ts";

/** What one range of schedules found. */
export interface BatchResult {
  schedules: number;
  totals: SimStats;
  /** Schedules in which PARTNER-DOWN met a partner that was in fact serving (the exception). */
  relaxed: number;
  /** Examples of the duplicates those schedules caused (first few). */
  duplicateExamples: string[];
  pairs: string[];
  /** The first failure: its message, with the seed and the trace tail. */
  failure: string | null;
}

/** Runs one schedule; throws SimError (or what the code under test threw) on a violation. */
export async function runSchedule(seed: number, trace = false): Promise<Sim> {
  const sim = new Sim(seed, { trace });
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    sim.asyncError = e.reason;
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    await sim.run();
  } finally {
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
  return sim;
}

/** Runs `count` schedules from seed `first` in this thread; stops at the first failure. */
export async function runBatch(first: number, count: number): Promise<BatchResult> {
  const result: BatchResult = {
    schedules: 0,
    totals: emptyStats(),
    relaxed: 0,
    duplicateExamples: [],
    pairs: [],
    failure: null,
  };
  const pairs = new Set<string>();
  for (let i = 0; i < count; i++) {
    const seed = (first + i) >>> 0;
    let sim: Sim;
    try {
      sim = await runSchedule(seed);
    } catch {
      result.failure = await describeFailure(seed);
      return result;
    }
    result.schedules++;
    for (const k of Object.keys(result.totals) as (keyof SimStats)[]) {
      result.totals[k] += sim.stats[k];
    }
    if (sim.relaxed !== null) {
      result.relaxed++;
      if (result.duplicateExamples.length < 3 && sim.duplicates.length > 0) {
        result.duplicateExamples.push(`seed ${seed}: ${sim.relaxed}; ${sim.duplicates[0]}`);
      }
    }
    for (const p of sim.pairsSeen) pairs.add(p);
  }
  result.pairs = [...pairs].sort();
  return result;
}

/** Runs a failed seed again with the trace on and returns the message to print. */
async function describeFailure(seed: number): Promise<string> {
  try {
    await runSchedule(seed, true);
  } catch (e) {
    const text = e instanceof SimError
      ? e.message
      : `seed ${seed}: ${(e as Error)?.stack ?? String(e)}`;
    return `${text}\nreplay with SIM_SEED=${seed}`;
  }
  return `seed ${seed} failed once but not on replay (SIM_SEED=${seed})`;
}

/** Zero totals. */
export function emptyStats(): SimStats {
  return {
    events: 0,
    failoverMessages: 0,
    dhcpIn: 0,
    acks: 0,
    crashes: 0,
    terminations: 0,
    pauses: 0,
    cuts: 0,
    resets: 0,
    operatorPartnerDown: 0,
    autoPartnerDown: 0,
    loadBalanceChecks: 0,
    duplicates: 0,
    abandonedOverActive: 0,
    quiesces: 0,
  };
}

/**
 * Runs `count` schedules from seed `first`, split over `workers` Web Workers (1: in this
 * thread). The batches stop at their first failure; the merged result names the first one.
 */
export async function runSchedules(
  first: number,
  count: number,
  workers: number,
): Promise<BatchResult> {
  if (workers <= 1 || count < 2 * workers) return await runBatch(first, count);
  const share = Math.ceil(count / workers);
  const jobs: Promise<BatchResult>[] = [];
  for (let w = 0; w < workers; w++) {
    const from = first + w * share;
    const n = Math.min(share, count - w * share);
    if (n <= 0) break;
    jobs.push(inWorker(from, n));
  }
  const results = await Promise.all(jobs);
  const merged: BatchResult = {
    schedules: 0,
    totals: emptyStats(),
    relaxed: 0,
    duplicateExamples: [],
    pairs: [],
    failure: null,
  };
  const pairs = new Set<string>();
  for (const r of results) {
    merged.schedules += r.schedules;
    for (const k of Object.keys(merged.totals) as (keyof SimStats)[]) {
      merged.totals[k] += r.totals[k];
    }
    merged.relaxed += r.relaxed;
    merged.duplicateExamples.push(...r.duplicateExamples);
    for (const p of r.pairs) pairs.add(p);
    merged.failure ??= r.failure;
  }
  merged.pairs = [...pairs].sort();
  return merged;
}

function inWorker(first: number, count: number): Promise<BatchResult> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  const { promise, resolve, reject } = Promise.withResolvers<BatchResult>();
  worker.onmessage = (e: MessageEvent<BatchResult>) => resolve(e.data);
  worker.onerror = (e) => {
    e.preventDefault();
    reject(new Error(`simulation worker failed: ${e.message}`));
  };
  worker.postMessage({ first, count });
  return promise.finally(() => worker.terminate());
}
