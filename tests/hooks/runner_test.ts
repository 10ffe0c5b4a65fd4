/**
 * HookRunner with real hook processes (sh scripts in a temporary directory): the environment
 * and stdin a hook gets, runs in order, the timeout kill, the bounded queue, failures.
 */
import assert from "node:assert/strict";
import type { HookEvent } from "../../lib/hooks/event.ts";
import { HookRunner, type HookSettings } from "../../lib/hooks/runner.ts";
import { createLogger } from "../../lib/log.ts";
import { emptyLease } from "../../lib/store/store.ts";

const T = 1_800_000_000;

function event(n: number, name: HookEvent["event"] = "new"): Omit<HookEvent, "sequence"> {
  return {
    event: name,
    time: T,
    lease: {
      ...emptyLease(0xc6121000 + n, "active"),
      hwAddress: new Uint8Array([2, 0, 0, 0, 0, n]),
      starts: T,
      ends: T + 600,
      cltt: T,
    },
    previous: null,
    subnet: "198.18.16.0/24",
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "duet-hook-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function script(dir: string, name: string, body: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
  await Deno.chmod(path, 0o755);
  return path;
}

function settings(command: string[], extra: Partial<HookSettings> = {}): HookSettings {
  return { command, timeoutMs: 10_000, queue: 100, concurrency: 1, ...extra };
}

function runner(s: HookSettings | null, lines: string[] = []): HookRunner {
  return new HookRunner({
    settings: s,
    logger: createLogger({ level: "debug", write: (l) => lines.push(l) }),
  });
}

Deno.test("HookRunner passes the event as DUET_ variables and JSON on stdin, in order", async () => {
  await withDir(async (dir) => {
    const hook = await script(
      dir,
      "record.sh",
      `{ echo "env $DUET_SEQUENCE $DUET_EVENT $DUET_ADDRESS $DUET_HW_ADDRESS args=$*"; ` +
        `echo "home=\${HOME:-unset}"; cat; } >> ${dir}/out`,
    );
    const r = runner(settings([hook, "one", "two"]));
    try {
      r.enqueue(event(1));
      r.enqueue(event(2, "renew"));
      r.enqueue(event(3, "release"));
      await r.idle();
      const lines = (await Deno.readTextFile(`${dir}/out`)).trim().split("\n");
      assert.equal(lines.length, 9, lines.join("\n"));
      assert.equal(lines[0], "env 1 new 198.18.16.1 02:00:00:00:00:01 args=one two");
      assert.equal(lines[1], "home=unset", "a clean environment, not duet's");
      assert.equal(JSON.parse(lines[2] as string).lease.address, "198.18.16.1");
      assert.equal(lines[3], "env 2 renew 198.18.16.2 02:00:00:00:00:02 args=one two");
      assert.equal(lines[6], "env 3 release 198.18.16.3 02:00:00:00:00:03 args=one two");
      assert.equal(JSON.parse(lines[8] as string).event, "release");
      const s = r.status();
      assert.deepEqual(
        [s.started, s.succeeded, s.failed, s.timedOut, s.dropped],
        [3, 3, 0, 0, 0],
      );
      assert.deepEqual(s.events, { new: 1, renew: 1, release: 1, expire: 0, decline: 0 });
    } finally {
      await r.stop();
    }
  });
});

Deno.test("HookRunner kills a hook at its timeout and goes on with the next", async () => {
  await withDir(async (dir) => {
    const hook = await script(
      dir,
      "slow.sh",
      `echo "$DUET_SEQUENCE" >> ${dir}/out; [ "$DUET_SEQUENCE" = 1 ] && exec sleep 30; exit 0`,
    );
    const lines: string[] = [];
    const r = runner(settings([hook], { timeoutMs: 300 }), lines);
    try {
      const started = Date.now();
      r.enqueue(event(1));
      r.enqueue(event(2));
      await r.idle();
      const took = Date.now() - started;
      assert.ok(took < 5000, `the hanging hook was killed (${took} ms)`);
      const s = r.status();
      assert.deepEqual([s.timedOut, s.succeeded, s.failed], [1, 1, 0]);
      assert.equal(s.lastError, "killed after 300 ms");
      assert.equal((await Deno.readTextFile(`${dir}/out`)).trim(), "1\n2");
      assert.ok(lines.some((l) => /Lease hook timed out: killed/.test(l)), lines.join("\n"));
    } finally {
      await r.stop();
    }
  });
});

Deno.test("HookRunner drops and counts events beyond its queue, and never waits", async () => {
  await withDir(async (dir) => {
    const hook = await script(dir, "hang.sh", "exec sleep 30");
    const lines: string[] = [];
    const r = runner(settings([hook], { queue: 3, timeoutMs: 20_000 }), lines);
    try {
      const started = performance.now();
      for (let i = 1; i <= 50; i++) r.enqueue(event(i));
      const took = performance.now() - started;
      assert.ok(took < 200, `enqueue() does not wait (${took.toFixed(1)} ms for 50)`);
      const s = r.status();
      assert.equal(s.queued, 3);
      assert.equal(s.dropped, 47);
      assert.equal(s.events.new, 3, "only queued events are counted as events");
      // The logger's rate limit: a flood of drops is a few lines, not 47.
      const drops = lines.filter((l) => /Lease hook queue full/.test(l));
      assert.ok(drops.length >= 1 && drops.length <= 20, `${drops.length} lines`);
      // One run starts (concurrency 1); the rest wait.
      const deadline = Date.now() + 5000;
      while (r.status().running === 0 && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 20));
      }
      assert.deepEqual([r.status().running, r.status().queued], [1, 2]);
    } finally {
      await r.stop();
    }
    const s = r.status();
    assert.equal(s.running, 0, "stop() kills the run");
    assert.equal(s.dropped, 49, "stop() drops what was still queued");
  });
});

Deno.test("HookRunner counts failures: exit codes and programs that cannot start", async () => {
  await withDir(async (dir) => {
    const hook = await script(dir, "fail.sh", "echo 'no database' >&2; exit 3");
    const lines: string[] = [];
    const r = runner(settings([hook]), lines);
    try {
      r.enqueue(event(1));
      await r.idle();
      assert.equal(r.status().failed, 1);
      assert.equal(r.status().lastError, "exit code 3");
      assert.ok(lines.some((l) => /Lease hook failed .*stderr="no database"/.test(l)), lines[0]);
      r.configure(settings([`${dir}/missing`]));
      r.enqueue(event(2));
      await r.idle();
      assert.equal(r.status().failed, 2);
      assert.match(r.status().lastError ?? "", /Cannot start/);
    } finally {
      await r.stop();
    }
  });
});

Deno.test("HookRunner without settings, or after configure(null), runs nothing", async () => {
  const off = runner(null);
  off.enqueue(event(1));
  assert.equal(off.enabled, false);
  assert.deepEqual([off.status().queued, off.status().started], [0, 0]);
  await off.stop();
  await withDir(async (dir) => {
    const hook = await script(dir, "hang.sh", "exec sleep 30");
    const r = runner(settings([hook], { queue: 10 }));
    try {
      r.enqueue(event(1));
      r.enqueue(event(2));
      r.configure(null);
      assert.equal(r.status().queued, 0);
      assert.equal(r.status().dropped, 2);
      assert.equal(r.enabled, false);
    } finally {
      await r.stop();
    }
  });
});
