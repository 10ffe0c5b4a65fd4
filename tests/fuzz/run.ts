/**
 * Runs a fuzz target in a Worker under a watchdog, and keeps what it finds: the failing input
 * is written to tests/fixtures/fuzz/<target>/ (replayed by tests/fuzz/replay_test.ts) and the
 * report names the seed to run it again.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type FuzzFailure, type FuzzStats, PROGRESS_HEADER } from "./engine.ts";
import { formatHexFixture } from "./fixtures.ts";
import { TARGETS } from "./targets.ts";
import type { WorkerJob } from "./worker.ts";

/** How long a worker may take to load its modules and seeds. */
const START_MS = 120_000;

/** Where the regression fixtures of a target live. */
export function fixtureDir(target: string): URL {
  return new URL(`../fixtures/fuzz/${target}/`, import.meta.url);
}

/** The outcome of one run. */
export interface FuzzRun {
  target: string;
  seed: number;
  stats: FuzzStats | null;
  failure: FuzzFailure | null;
  /** The fixture written for the failure, if any. */
  saved: string | null;
}

/** Options of runFuzz(). */
export interface RunOptions {
  seed: number;
  inputs: number;
  /** Stop early after this long (the inputs run so far count). */
  timeLimitMs?: number;
  /** No progress for this long is a hang (default 10 s). */
  hangMs?: number;
  /** Write a failing input as a fixture (default true). */
  save?: boolean;
  /** Ends the run early (another worker of the same target found something). */
  signal?: AbortSignal;
}

/** Fuzzes one target; resolves when the loop ends, finds something, or hangs. */
export async function runFuzz(target: string, options: RunOptions): Promise<FuzzRun> {
  const t = TARGETS[target];
  if (!t) throw new TypeError(`Unknown fuzz target "${target}"`);
  const progress = new SharedArrayBuffer(PROGRESS_HEADER + t.maxLength);
  const counters = new Int32Array(progress, 0, 3);
  const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
  const hangMs = options.hangMs ?? 10_000;
  const job: WorkerJob = {
    target,
    seed: options.seed,
    inputs: options.inputs,
    progress,
    ...(options.timeLimitMs !== undefined ? { timeLimitMs: options.timeLimitMs } : {}),
  };
  const { promise, resolve, reject } = Promise.withResolvers<
    { stats: FuzzStats; failure: FuzzFailure | null }
  >();
  worker.onmessage = (e) => {
    if ("error" in e.data) reject(new Error(`The fuzz worker failed: ${e.data.error}`));
    else resolve(e.data);
  };
  worker.onerror = (e) => {
    e.preventDefault();
    reject(new Error(`The fuzz worker failed: ${e.message}`));
  };
  worker.postMessage(job);
  const onAbort = () => resolve({ stats: emptyStats(Atomics.load(counters, 0)), failure: null });
  options.signal?.addEventListener("abort", onAbort);
  // The watchdog: the loop stores its count after every input.
  let last = -1;
  let lastChange = performance.now();
  const created = performance.now();
  const watchdog = setInterval(() => {
    if (Atomics.load(counters, 2) === 0) {
      // Loading the modules and the seeds on a busy machine is not a hang of the code under
      // test; a worker that never starts is still reported.
      if (performance.now() - created > START_MS) {
        reject(new Error(`The fuzz worker did not start within ${START_MS / 1000} s`));
      }
      lastChange = performance.now();
      return;
    }
    const done = Atomics.load(counters, 0);
    if (done !== last) {
      last = done;
      lastChange = performance.now();
      return;
    }
    if (performance.now() - lastChange < hangMs) return;
    const n = Atomics.load(counters, 1);
    const hung: FuzzFailure = {
      kind: "hang",
      message: `No progress for ${hangMs} ms on one input (${n} bytes)`,
      index: done,
      input: new Uint8Array(progress, PROGRESS_HEADER, n).slice(),
    };
    resolve({ stats: emptyStats(done), failure: hung });
  }, 200);
  let result: { stats: FuzzStats; failure: FuzzFailure | null };
  try {
    result = await promise;
  } finally {
    clearInterval(watchdog);
    options.signal?.removeEventListener("abort", onAbort);
    worker.terminate();
  }
  const saved = result.failure && (options.save ?? true)
    ? saveFailure(target, options.seed, result.failure)
    : null;
  return { target, seed: options.seed, stats: result.stats, failure: result.failure, saved };
}

function emptyStats(inputs: number): FuzzStats {
  return { inputs, accepted: 0, rejected: 0, corpus: 0, features: 0, ms: 0 };
}

/**
 * Fuzzes one target with `workers` loops at once (seeds seed, seed+1, …), the inputs shared
 * between them: on a machine with idle cores the run takes a fraction of the time. The first
 * failure ends the others; the stats are the sums.
 */
export async function runFuzzParallel(
  target: string,
  options: RunOptions & { workers: number },
): Promise<FuzzRun> {
  const abort = new AbortController();
  const per = Math.ceil(options.inputs / options.workers);
  const runs = await Promise.all(
    Array.from({ length: options.workers }, async (_, k) => {
      const run = await runFuzz(target, {
        ...options,
        seed: (options.seed + k) >>> 0,
        inputs: Math.min(per, options.inputs - per * k),
        signal: abort.signal,
      });
      if (run.failure) abort.abort();
      return run;
    }),
  );
  const failed = runs.find((r) => r.failure !== null);
  if (failed) return failed;
  const stats = emptyStats(0);
  for (const r of runs) {
    const s = r.stats as FuzzStats;
    stats.inputs += s.inputs;
    stats.accepted += s.accepted;
    stats.rejected += s.rejected;
    stats.corpus += s.corpus;
    stats.features = Math.max(stats.features, s.features);
    stats.ms = Math.max(stats.ms, s.ms);
  }
  return { target, seed: options.seed, stats, failure: null, saved: null };
}

/** Writes the failing input as a fixture named by its hash; returns the path. */
export function saveFailure(target: string, seed: number, f: FuzzFailure): string {
  const t = TARGETS[target];
  if (!t) throw new TypeError(`Unknown fuzz target "${target}"`);
  const hash = createHash("sha256").update(f.input).digest("hex").slice(0, 12);
  const dir = fixtureDir(target);
  Deno.mkdirSync(dir, { recursive: true });
  const url = new URL(`${f.kind}-${hash}.${t.fixtureExt}`, dir);
  if (t.fixtureExt === "hex") {
    const first = f.message.split("\n")[0] ?? "";
    Deno.writeTextFileSync(
      url,
      formatHexFixture(f.input, [
        `Found by the ${target} fuzz target: seed ${seed}, input #${f.index}, ${f.input.length} bytes.`,
        `${f.kind}: ${first}`,
      ]),
    );
  } else {
    Deno.writeFileSync(url, f.input);
  }
  return url.pathname;
}

/** A failure as a readable report: what, where to find the input, how to run it again. */
export function describeFailure(run: FuzzRun): string {
  const f = run.failure;
  if (!f) return `fuzz ${run.target}: no failure`;
  const preview = Array.from(f.input.subarray(0, 96), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  return [
    `fuzz ${run.target}: ${f.kind} at input #${f.index} (seed ${run.seed})`,
    f.message,
    `input (${f.input.length} bytes${f.input.length > 96 ? ", first 96" : ""}): ${preview}`,
    run.saved ? `saved as ${run.saved}` : "not saved",
    `run again: DUET_FUZZ_SEED=${run.seed} DUET_FUZZ_INPUTS=${
      f.index + 1
    } deno task fuzz ${run.target}`,
  ].join("\n");
}

function envInt(name: string): number | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  const v = Deno.env.get(name);
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * Registers the normal-run test of one target: `inputs` mutated inputs from a fixed seed (CI
 * repeats itself; DUET_FUZZ_SEED and DUET_FUZZ_INPUTS change the run). Fails with the seed and
 * the saved input on any finding, and when the run shows the mutators are broken (no accepted
 * or no rejected inputs, few distinct behaviours).
 */
export function fuzzTest(
  target: string,
  defaults: { seed: number; inputs: number; minFeatures?: number; workers?: number },
): void {
  const inputs = envInt("DUET_FUZZ_INPUTS") ?? defaults.inputs;
  Deno.test(`fuzz ${target}: ${inputs} mutated inputs throw only the typed error, stay bounded and fast`, async () => {
    const seed = envInt("DUET_FUZZ_SEED") ?? defaults.seed;
    const run = await runFuzzParallel(target, { seed, inputs, workers: defaults.workers ?? 1 });
    if (run.failure) assert.fail(describeFailure(run));
    const s = run.stats;
    assert.ok(s !== null);
    assert.equal(s.inputs, inputs, `only ${s.inputs} of ${inputs} inputs ran (seed ${seed})`);
    assert.ok(s.accepted >= inputs / 200, `only ${s.accepted} inputs accepted (seed ${seed})`);
    assert.ok(s.rejected >= inputs / 50, `only ${s.rejected} inputs rejected (seed ${seed})`);
    const minFeatures = defaults.minFeatures ?? 300;
    assert.ok(
      s.features >= minFeatures,
      `only ${s.features} distinct behaviours seen, expected ${minFeatures} (seed ${seed})`,
    );
    // deno-lint-ignore no-console
    console.log(
      `fuzz ${target}: seed ${seed}, ${s.inputs} inputs in ${(s.ms / 1000).toFixed(1)} s, ` +
        `${s.accepted} accepted, ${s.rejected} rejected, ${s.features} features, corpus ${s.corpus}`,
    );
  });
}
