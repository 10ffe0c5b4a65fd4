/** createLogger(): levels, a level changed while it runs (`duet reload`), JSON lines, and the rate limit of repeated messages. */
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

Deno.test("createLogger() limits repeats per 10 s of monotonic time, whatever the wall clock does", () => {
  const lines: string[] = [];
  let wall = Date.UTC(2026, 10, 29, 5, 0, 0);
  let mono = 0;
  const log = createLogger({
    write: (l) => lines.push(l),
    now: () => wall,
    monoNow: () => mono,
  });
  for (let i = 0; i < 25; i++) log.error("Cannot commit leases", { n: i });
  assert.equal(lines.length, 20, "20 per window, the rest suppressed");
  // The system clock steps back a day: the window still ends 10 s later in elapsed time.
  wall -= 86_400_000;
  mono += 10_000;
  log.error("Cannot commit leases", { n: 25 });
  assert.match(lines[20] as string, /WARN {2}Suppressed 5 repeats of a log message/);
  assert.match(lines[21] as string, /^2026-11-28T05:00:00\.000Z ERROR Cannot commit leases n=25$/);
});
