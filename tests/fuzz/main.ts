/**
 * `deno task fuzz [TARGET...]`: a long fuzz run on demand. DUET_FUZZ_INPUTS inputs per target
 * (default 10,000,000), DUET_FUZZ_SEED (default: the clock), DUET_FUZZ_SECONDS to stop each
 * target early. Every failure is saved under tests/fixtures/fuzz/<target>/; exit 1 if any.
 */
import { describeFailure, runFuzz } from "./run.ts";
import { TARGETS } from "./targets.ts";

function print(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`${line}\n`));
}

function envInt(name: string): number | undefined {
  const v = Deno.env.get(name);
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v)) throw new TypeError(`${name} must be a non-negative integer, got "${v}"`);
  return Number(v);
}

if (import.meta.main) {
  const names = Deno.args.length > 0 ? Deno.args : Object.keys(TARGETS);
  for (const n of names) {
    if (!TARGETS[n]) {
      print(`Unknown fuzz target "${n}": one of ${Object.keys(TARGETS).join(", ")}`);
      Deno.exit(2);
    }
  }
  const inputs = envInt("DUET_FUZZ_INPUTS") ?? 10_000_000;
  const seconds = envInt("DUET_FUZZ_SECONDS");
  const seed = envInt("DUET_FUZZ_SEED") ?? (Date.now() >>> 0);
  let failed = 0;
  for (const name of names) {
    print(`fuzz ${name}: seed ${seed}, up to ${inputs} inputs${seconds ? `, ${seconds} s` : ""}`);
    const run = await runFuzz(name, {
      seed,
      inputs,
      ...(seconds !== undefined ? { timeLimitMs: seconds * 1000 } : {}),
    });
    if (run.failure) {
      failed++;
      print(describeFailure(run));
      continue;
    }
    const s = run.stats;
    if (s) {
      print(
        `fuzz ${name}: ${s.inputs} inputs in ${(s.ms / 1000).toFixed(1)} s ` +
          `(${Math.round(s.inputs / (s.ms / 1000 || 1))}/s): ${s.accepted} accepted, ` +
          `${s.rejected} rejected, ${s.features} features, corpus ${s.corpus}`,
      );
    }
  }
  Deno.exit(failed > 0 ? 1 : 0);
}
