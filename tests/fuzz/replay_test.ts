/**
 * Every input a fuzz run ever failed on (tests/fixtures/fuzz/<target>/, see its README) runs
 * again here: it must now be handled (a typed error or a result), within the time budget.
 */
import assert from "node:assert/strict";
import { FuzzFinding, releaseThreadClock, runCost } from "./engine.ts";
import { parseHexText } from "./fixtures.ts";
import { fixtureDir } from "./run.ts";
import { TARGETS } from "./targets.ts";

for (const [name, target] of Object.entries(TARGETS)) {
  const dir = fixtureDir(name);
  let files: string[] = [];
  try {
    files = [...Deno.readDirSync(dir)].filter((e) =>
      e.isFile && e.name.endsWith(`.${target.fixtureExt}`)
    )
      .map((e) => e.name).sort();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (files.length === 0) continue;
  Deno.test(`fuzz ${name}: the ${files.length} inputs found by earlier runs are handled`, async (t) => {
    for (const file of files) {
      await t.step(file, () => {
        const url = new URL(file, dir);
        const input = target.fixtureExt === "hex"
          ? parseHexText(Deno.readTextFileSync(url))
          : Deno.readFileSync(url);
        const started = performance.now();
        try {
          target.run(input, []);
        } catch (e) {
          if (e instanceof FuzzFinding) {
            const cause = e.cause instanceof Error ? `\n${e.cause.stack}` : "";
            assert.fail(`${file}: ${e.kind}: ${e.message}${cause}`);
          }
          throw e;
        }
        // As in the fuzz loop: wall time triggers, the least CPU time of three runs decides.
        const took = performance.now() - started;
        const best = took > target.budgetMs ? runCost(target, input) : took;
        releaseThreadClock();
        assert.ok(
          best <= target.budgetMs,
          `${file} took ${best.toFixed(1)} ms, over ${target.budgetMs}`,
        );
      });
    }
  });
}
