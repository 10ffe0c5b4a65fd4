/**
 * The fuzzing engine shared by every target (tests/fuzz/*_target.ts): a seeded random source,
 * generic byte mutations (bit flips, interesting values, insert/delete/duplicate, splice with
 * another corpus entry), and a corpus that keeps an input when it shows a behaviour never seen
 * before.
 *
 * What guides it is not code coverage: V8's precise coverage through the inspector costs more
 * per input than the decoders themselves, which would cut the inputs per run by two orders of
 * magnitude. Instead every target reports "features" of each run: the error message with its
 * numbers blanked (each validation branch has its own sentence), the option codes and length
 * classes it decoded, which typed getters answered, the problems the §7 tables found, and so
 * on. An input with a feature never seen joins the corpus and is mutated further. That is
 * behavioural coverage: cheap, deterministic for a seed, and it rewards inputs that get deeper
 * into the decoder, which plain random mutation does not.
 */
import { joinParts } from "../../lib/wire/bytes.ts";

/** mulberry32: small, fast and deterministic for a seed. */
export class Rng {
  #a: number;

  constructor(seed: number) {
    this.#a = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)] as T;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** Small numbers much more often than large ones: 1..max. */
  small(max: number): number {
    return 1 + Math.min(max - 1, Math.floor(-Math.log(1 - this.next()) * 4));
  }
}

/** Byte values that sit on edges of fields (lengths, types, flags). */
export const INTERESTING_8 = [
  0,
  1,
  2,
  3,
  4,
  7,
  8,
  11,
  12,
  16,
  32,
  52,
  53,
  64,
  82,
  127,
  128,
  254,
  255,
];
/** 16-bit edge values, big-endian on the wire. */
export const INTERESTING_16 = [
  0,
  1,
  11,
  12,
  13,
  255,
  256,
  576,
  1500,
  2047,
  2048,
  2049,
  32767,
  32768,
  65535,
];
/** 32-bit edge values. */
export const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x63825363];

function writeBe(b: Uint8Array, at: number, v: number, width: number): void {
  for (let k = width - 1; k >= 0; k--) {
    if (at + k < b.length) b[at + k] = v & 0xff;
    v = Math.floor(v / 256);
  }
}

/** `b` with `ins` inserted at `at`. */
export function insertAt(b: Uint8Array, at: number, ins: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length + ins.length);
  out.set(b.subarray(0, at));
  out.set(ins, at);
  out.set(b.subarray(at), at + ins.length);
  return out;
}

/** `b` without bytes [from, to). */
export function deleteRange(b: Uint8Array, from: number, to: number): Uint8Array {
  const out = new Uint8Array(b.length - (to - from));
  out.set(b.subarray(0, from));
  out.set(b.subarray(to), from);
  return out;
}

/** Concatenation (the wire codec's own). */
export const concatBytes: (parts: readonly Uint8Array[]) => Uint8Array = joinParts;

/**
 * One to `stack` generic mutations (libFuzzer's "havoc" idea): bit flip, random byte, an
 * interesting 8/16/32-bit value, insert random or repeated bytes, delete or duplicate a range,
 * copy a range from another corpus entry, splice heads and tails, truncate. `focus` biases
 * positions to a region (e.g. the options area) half of the time.
 */
export function havoc(
  rng: Rng,
  input: Uint8Array,
  corpus: Corpus,
  options: { stack?: number; maxLength: number; focus?: [number, number] },
): Uint8Array {
  let b: Uint8Array = input.slice();
  const rounds = rng.small(options.stack ?? 6);
  const pos = (extra = 0): number => {
    const f = options.focus;
    if (f && b.length > f[0] && rng.chance(0.5)) {
      const end = Math.min(b.length, f[1]);
      return f[0] + rng.int(Math.max(1, end - f[0] + extra));
    }
    return rng.int(b.length + extra);
  };
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(12)) {
      case 0: // bit flip
        if (b.length > 0) {
          const at = pos();
          b[at] = (b[at] as number) ^ (1 << rng.int(8));
        }
        break;
      case 1: // random byte
        if (b.length > 0) b[pos()] = rng.int(256);
        break;
      case 2: // interesting byte
        if (b.length > 0) b[pos()] = rng.pick(INTERESTING_8);
        break;
      case 3: // interesting u16, also off by one
        if (b.length > 1) {
          writeBe(b, pos(), (rng.pick(INTERESTING_16) + rng.int(3) - 1) & 0xffff, 2);
        }
        break;
      case 4: // interesting u32
        if (b.length > 3) writeBe(b, pos(), rng.pick(INTERESTING_32), 4);
        break;
      case 5: // insert random bytes
        b = insertAt(b, pos(1), rng.bytes(rng.small(32)));
        break;
      case 6: { // insert a run of one byte
        const run = new Uint8Array(rng.small(64)).fill(rng.pick(INTERESTING_8));
        b = insertAt(b, pos(1), run);
        break;
      }
      case 7: { // delete a range
        if (b.length === 0) break;
        const from = pos();
        b = deleteRange(b, from, Math.min(b.length, from + rng.small(32)));
        break;
      }
      case 8: { // duplicate a range in place
        if (b.length === 0) break;
        const from = pos();
        const piece = b.slice(from, Math.min(b.length, from + rng.small(64)));
        b = insertAt(b, from, piece);
        break;
      }
      case 9: { // copy a range of another entry over ours (crossover)
        const other = corpus.pick(rng);
        if (other.length === 0 || b.length === 0) break;
        const from = rng.int(other.length);
        const piece = other.subarray(from, Math.min(other.length, from + rng.small(64)));
        const at = pos();
        b.set(piece.subarray(0, Math.min(piece.length, b.length - at)), at);
        break;
      }
      case 10: { // splice: our head, another entry's tail
        const other = corpus.pick(rng);
        const cut = rng.int(Math.min(b.length, other.length) + 1);
        b = concatBytes([b.subarray(0, cut), other.subarray(cut)]);
        break;
      }
      default: // truncate
        b = b.slice(0, rng.int(b.length + 1));
    }
    if (b.length > options.maxLength) b = b.slice(0, options.maxLength);
  }
  return b;
}

/** Inputs worth mutating: the seeds, plus every input that showed a new feature. */
export class Corpus {
  readonly entries: Uint8Array[] = [];
  readonly #max: number;
  readonly #seeds: number;

  constructor(seeds: readonly Uint8Array[], max = 4096) {
    if (seeds.length === 0) throw new RangeError("A corpus needs at least one seed");
    this.entries.push(...seeds);
    this.#seeds = seeds.length;
    this.#max = max;
  }

  get size(): number {
    return this.entries.length;
  }

  /** Adds an entry; when full, a random non-seed entry makes room. */
  add(entry: Uint8Array, rng: Rng): void {
    if (this.entries.length < this.#max) this.entries.push(entry);
    else {
      const span = this.#max - this.#seeds;
      if (span > 0) this.entries[this.#seeds + rng.int(span)] = entry;
    }
  }

  /**
   * Recent finds more often than old ones (they are where new behaviour is), the seeds now and
   * then (valid inputs, one mutation away from a new path), and short entries over long ones
   * (faster to run, as AFL favours).
   */
  pick(rng: Rng): Uint8Array {
    const n = this.entries.length;
    if (n > this.#seeds) {
      if (rng.chance(0.1)) return this.entries[rng.int(this.#seeds)] as Uint8Array;
      if (rng.chance(0.3)) {
        const recent = Math.min(64, n - this.#seeds);
        return this.entries[n - 1 - rng.int(recent)] as Uint8Array;
      }
    }
    const a = this.entries[rng.int(n)] as Uint8Array;
    const b = this.entries[rng.int(n)] as Uint8Array;
    return b.length < a.length && rng.chance(0.7) ? b : a;
  }
}

const TEMPLATES = new Map<string, string>();

/** A message with its numbers, quoted strings and hex blanked, as a feature (memoised). */
export function template(message: string): string {
  let t = TEMPLATES.get(message);
  if (t === undefined) {
    t = blank(message);
    if (TEMPLATES.size > 50_000) TEMPLATES.clear();
    TEMPLATES.set(message, t);
  }
  return t;
}

function blank(message: string): string {
  return message
    .replace(/"(?:[^"\\]|\\.)*"/g, "S")
    .replace(/0x[0-9a-f]+/gi, "N")
    .replace(/\d+(\.\d+)*/g, "N")
    .slice(0, 160);
}

/** A length as a class, so that features stay few: 0, 1, 2, 3, 4, 5-16, 17-255, 256+. */
export function lengthClass(n: number): string {
  if (n <= 4) return String(n);
  if (n <= 16) return "s";
  if (n <= 255) return "m";
  return "l";
}

/** Misbehaviour of the code under test; anything else thrown by a target is a harness bug. */
export class FuzzFinding extends Error {
  readonly kind: "exception" | "invariant" | "slow" | "hang" | "memory";
  constructor(kind: FuzzFinding["kind"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FuzzFinding";
    this.kind = kind;
  }
}

/** One fuzz target: how to seed, mutate and run it. */
export interface FuzzTarget {
  /** Also the fixture directory: tests/fixtures/fuzz/<name>/. */
  name: string;
  /** Regression fixtures are `.hex` (hex text with # comments) or `.yaml` (the text itself). */
  fixtureExt: "hex" | "yaml";
  /** Longest input the mutators produce. */
  maxLength: number;
  /**
   * Whether an input with a new feature may join the corpus (default: at most 16 KiB). Inputs
   * that are slow to run are better run than bred.
   */
  keep?(input: Uint8Array): boolean;
  /** One run taking longer than this (the fastest of three) is a finding. */
  budgetMs: number;
  /** The starting corpus (read from tests/fixtures and examples/). */
  seeds(): Uint8Array[];
  /** A new input from one in the corpus. */
  mutate(rng: Rng, input: Uint8Array, corpus: Corpus): Uint8Array;
  /**
   * Runs the code under test on one input and pushes its features. Throws FuzzFinding when the
   * code misbehaves (an exception other than the typed error, a broken invariant). Returns
   * true when the input was accepted (decoded, parsed) and false when it was rejected.
   */
  run(input: Uint8Array, features: string[]): boolean;
}

/** What a finished loop reports. */
export interface FuzzStats {
  inputs: number;
  accepted: number;
  rejected: number;
  corpus: number;
  features: number;
  ms: number;
}

/** A finding with the input that caused it. */
export interface FuzzFailure {
  kind: FuzzFinding["kind"];
  message: string;
  index: number;
  input: Uint8Array;
}

/** clock_gettime(CLOCK_THREAD_CPUTIME_ID) through libc, opened on first use; null if unavailable. */
let threadClock: { read(): number; close(): void } | null | undefined;

/** Closes the library threadCpuMs() opened (tests that check for leaked resources). */
export function releaseThreadClock(): void {
  threadClock?.close();
  threadClock = undefined;
}

/**
 * CPU time the calling thread has used, in ms (Linux: clock_gettime with
 * CLOCK_THREAD_CPUTIME_ID through FFI; the test files share one process, so process CPU time
 * would count theirs too). null where it cannot be read.
 */
export function threadCpuMs(): number | null {
  if (threadClock === undefined) {
    threadClock = null;
    try {
      const libc = Deno.dlopen("libc.so.6", {
        clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
      });
      const ts = new BigInt64Array(2);
      const bytes = new Uint8Array(ts.buffer);
      const CLOCK_THREAD_CPUTIME_ID = 3;
      threadClock = {
        read() {
          libc.symbols.clock_gettime(CLOCK_THREAD_CPUTIME_ID, bytes);
          return Number(ts[0]) * 1000 + Number(ts[1]) / 1e6;
        },
        close: () => libc.close(),
      };
    } catch {
      // No FFI permission or no glibc: wall time it is.
    }
  }
  return threadClock ? threadClock.read() : null;
}

/**
 * The cost of one input: the least CPU time of three runs on this thread (wall time where the
 * CPU time cannot be read). A GC pause slows one run; a busy machine slows wall time only.
 */
export function runCost(target: FuzzTarget, input: Uint8Array): number {
  let best = Infinity;
  for (let k = 0; k < 3; k++) {
    const cpu0 = threadCpuMs();
    const wall0 = performance.now();
    try {
      target.run(input, []);
    } catch {
      // A finding is reported by the caller's own run; here only the time counts.
    }
    const cpu1 = threadCpuMs();
    const cost = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : performance.now() - wall0;
    best = Math.min(best, cost);
  }
  return best;
}

/** Shared with the watchdog: [0] inputs done, [1] length of the input running, then its bytes. */
export const PROGRESS_HEADER = 8;

/**
 * Runs `inputs` mutated inputs (or until `timeLimitMs`), each written to `progress` first so
 * that a watchdog can save it if the run never returns. Deterministic for a seed and target.
 */
export function fuzzLoop(
  target: FuzzTarget,
  options: { seed: number; inputs: number; timeLimitMs?: number; progress?: SharedArrayBuffer },
): { stats: FuzzStats; failure: FuzzFailure | null } {
  const rng = new Rng(options.seed);
  const corpus = new Corpus(target.seeds());
  const seen = new Set<string>();
  const counters = options.progress ? new Int32Array(options.progress, 0, 2) : null;
  const bytes = options.progress ? new Uint8Array(options.progress, PROGRESS_HEADER) : null;
  const started = performance.now();
  const stats: FuzzStats = { inputs: 0, accepted: 0, rejected: 0, corpus: 0, features: 0, ms: 0 };
  const heapLimit = 768 * 1024 * 1024;
  const finish = (failure: FuzzFailure | null) => {
    stats.corpus = corpus.size;
    stats.features = seen.size;
    stats.ms = Math.round(performance.now() - started);
    return { stats, failure };
  };
  // Capturing a stack for every typed error thrown costs a third of a config parse; findings
  // are run once more with stacks for the report.
  const stackLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return loop();
  } finally {
    Error.stackTraceLimit = stackLimit;
  }

  function withStack(input: Uint8Array, finding: FuzzFinding): string {
    Error.stackTraceLimit = stackLimit;
    try {
      target.run(input, []);
    } catch (e) {
      if (e instanceof FuzzFinding && e.cause instanceof Error) return `\n${e.cause.stack}`;
    } finally {
      Error.stackTraceLimit = 0;
    }
    return finding.cause instanceof Error ? `\n${finding.cause.stack}` : "";
  }

  function loop(): { stats: FuzzStats; failure: FuzzFailure | null } {
    // The seeds run first, unmutated: a seed that fails is the simplest reproducer.
    const queue = [...corpus.entries];
    for (let i = 0; i < options.inputs; i++) {
      const isSeed = queue.length > 0;
      const input = isSeed
        ? queue.shift() as Uint8Array
        : target.mutate(rng, corpus.pick(rng), corpus);
      if (counters && bytes) {
        const n = Math.min(input.length, bytes.length);
        bytes.set(input.subarray(0, n));
        Atomics.store(counters, 1, n);
      }
      const features: string[] = [];
      let accepted: boolean;
      const t0 = performance.now();
      try {
        accepted = target.run(input, features);
        const took = performance.now() - t0;
        if (took > target.budgetMs) {
          // Wall time is only the trigger: on a busy machine this thread may simply not have
          // run. What decides is the CPU time this thread spent, the least of three runs.
          const best = runCost(target, input);
          if (best > target.budgetMs) {
            throw new FuzzFinding(
              "slow",
              `One input took ${
                best.toFixed(1)
              } ms of CPU (the budget is ${target.budgetMs} ms): ` +
                `${input.length} bytes`,
            );
          }
        }
      } catch (e) {
        const finding = e instanceof FuzzFinding
          ? e
          : new FuzzFinding("exception", `The fuzz target itself threw: ${String(e)}`, {
            cause: e,
          });
        const stack = finding.kind === "slow" ? "" : withStack(input, finding);
        return finish({ kind: finding.kind, message: finding.message + stack, index: i, input });
      }
      stats.inputs++;
      if (accepted) stats.accepted++;
      else stats.rejected++;
      let novel = false;
      for (const f of features) {
        if (!seen.has(f)) {
          seen.add(f);
          novel = true;
        }
      }
      // Huge inputs run but are not kept: the corpus stays small in memory and fast to mutate.
      if (novel && !isSeed && (target.keep ? target.keep(input) : input.length <= 16384)) {
        corpus.add(input, rng);
      }
      if (counters) Atomics.store(counters, 0, i + 1);
      if ((i & 4095) === 4095) {
        if (Deno.memoryUsage().heapUsed > heapLimit) {
          return finish({
            kind: "memory",
            message: `The heap grew past ${heapLimit / 2 ** 20} MiB by input ${i}`,
            index: i,
            input,
          });
        }
        if (
          options.timeLimitMs !== undefined && performance.now() - started > options.timeLimitMs
        ) {
          break;
        }
      }
    }
    return finish(null);
  }
}
