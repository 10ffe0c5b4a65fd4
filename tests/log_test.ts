/** createLogger(): levels, a level changed while it runs (`duet reload`), JSON lines. */
import assert from "node:assert/strict";
import { createLogger } from "../lib/log.ts";

Deno.test("createLogger().setLevel() changes what is written from the next line on", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "warn", format: "json", write: (l) => lines.push(l) });
  log.info("hidden");
  assert.equal(log.debugEnabled, false);
  log.setLevel("debug");
  assert.equal(log.level, "debug");
  assert.equal(log.debugEnabled, true);
  log.debug("shown", { n: 1 });
  log.setLevel("error");
  log.warn("hidden too");
  log.error("shown too");
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["shown", "shown too"]);
  assert.equal(JSON.parse(lines[0] as string).n, 1);
});
