/**
 * Runs the `hooks:` command for lease events, never in the way of DHCP: events are queued
 * after the COMMIT that made them durable (the shell's onLeasesCommitted), the queue is
 * bounded (an event beyond it is dropped and counted), at most `concurrency` runs go at once,
 * and a run still going after `timeout-ms` is killed. The I/O shell of lib/hooks/event.ts.
 */
import type { HooksConfig } from "../config/types.ts";
import type { Logger } from "../log.ts";
import { formatIpv4 } from "../wire/ip.ts";
import { HOOK_EVENTS, hookEnv, type HookEvent, type HookEventName, hookJson } from "./event.ts";

/** What a runner needs of the `hooks:` section. */
export type HookSettings = Pick<HooksConfig, "command" | "timeoutMs" | "queue" | "concurrency">;

/** The hook's counters and queue, for GET /status and /metrics. */
export interface HookStatus {
  /** The program and arguments, or null when no hook is configured. */
  command: string[] | null;
  /** Capacity of the queue (`hooks.queue`). */
  capacity: number;
  /** Events waiting now. */
  queued: number;
  /** Runs going now. */
  running: number;
  /** Events queued since start, by event name. */
  events: Record<HookEventName, number>;
  /** Events dropped because the queue was full (or the hook was removed, or duet stopped). */
  dropped: number;
  /** Runs started, and how they ended. */
  started: number;
  succeeded: number;
  /** Non-zero exit, killed by a signal, or the program could not be started. */
  failed: number;
  /** Killed at the timeout. */
  timedOut: number;
  /** The last failure, for `duet status`, or null. */
  lastError: string | null;
}

/** Bytes of a hook's stderr kept for the log when it fails. */
const STDERR_KEEP = 512;
/** How long to wait for a finished hook's stderr to reach end of file, in milliseconds. */
const STDERR_LINGER_MS = 200;

/**
 * The problem with running `program` under this process's permissions, or null when it may
 * (the bundle and the compiled binary need `--allow-run=PROGRAM` for hooks).
 */
export function hookPermissionProblem(program: string): string | null {
  const state = Deno.permissions.querySync({ name: "run", command: program }).state;
  if (state === "granted") return null;
  return `Cannot run hook program ${JSON.stringify(program)}: duet runs without permission ` +
    `to start it (add --allow-run=${program} to the deno command line)`;
}

function zeroEvents(): Record<HookEventName, number> {
  return Object.fromEntries(HOOK_EVENTS.map((e) => [e, 0])) as Record<HookEventName, number>;
}

/** The bounded queue and the runs of the lease-event hook. */
export class HookRunner {
  #settings: HookSettings | null;
  #log: Logger;
  #queue: HookEvent[] = [];
  #head = 0;
  #running = new Set<Promise<void>>();
  #children = new Set<Deno.ChildProcess>();
  #sequence = 0;
  #stopped = false;
  #pumpTimer: ReturnType<typeof setTimeout> | undefined;
  #idle: { promise: Promise<void>; resolve: () => void } | null = null;
  #counts = {
    events: zeroEvents(),
    dropped: 0,
    started: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    lastError: null as string | null,
  };

  constructor(options: { settings: HookSettings | null; logger: Logger }) {
    this.#settings = options.settings;
    this.#log = options.logger;
  }

  /** True when a hook is configured (otherwise enqueue() does nothing). */
  get enabled(): boolean {
    return this.#settings !== null && !this.#stopped;
  }

  /**
   * Takes new settings (`duet reload`). Runs going keep theirs; queued events run with the new
   * command, or are dropped (and counted) when the hook is removed.
   */
  configure(settings: HookSettings | null): void {
    this.#settings = settings;
    if (settings === null) {
      this.#counts.dropped += this.#queue.length - this.#head;
      this.#queue = [];
      this.#head = 0;
    } else {
      this.#pump();
    }
    this.#checkIdle();
  }

  /** Queues one event; never waits. When the queue is full the event is dropped and counted. */
  enqueue(e: Omit<HookEvent, "sequence">): void {
    const s = this.#settings;
    if (s === null || this.#stopped) return;
    const event: HookEvent = { ...e, sequence: ++this.#sequence };
    if (this.#queue.length - this.#head >= s.queue) {
      this.#counts.dropped++;
      // The logger's rate limit keeps a flood of drops to a few lines.
      this.#log.warn("Lease hook queue full: event dropped", {
        event: e.event,
        address: formatIpv4(e.lease.address),
        dropped: this.#counts.dropped,
      });
      return;
    }
    this.#counts.events[e.event]++;
    this.#queue.push(event);
    // Started from a timer, never inside the caller (the shell's commit): spawning takes time.
    this.#pumpTimer ??= setTimeout(() => {
      this.#pumpTimer = undefined;
      this.#pump();
    }, 0);
  }

  /** Counters and queue. */
  status(): HookStatus {
    return {
      command: this.#settings ? [...this.#settings.command] : null,
      capacity: this.#settings?.queue ?? 0,
      queued: this.#queue.length - this.#head,
      running: this.#running.size,
      events: { ...this.#counts.events },
      dropped: this.#counts.dropped,
      started: this.#counts.started,
      succeeded: this.#counts.succeeded,
      failed: this.#counts.failed,
      timedOut: this.#counts.timedOut,
      lastError: this.#counts.lastError,
    };
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.#running.size === 0 && this.#queue.length === this.#head) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /**
   * Lets queued events run for up to `graceMs`, then drops what is still queued, kills the runs
   * going and waits for them to end.
   */
  async stop(graceMs = 0): Promise<void> {
    if (this.#stopped) return;
    if (graceMs > 0 && this.#settings !== null) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => {
        timer = setTimeout(r, graceMs);
      });
      await Promise.race([this.idle(), late]);
      clearTimeout(timer);
    }
    this.#stopped = true;
    if (this.#pumpTimer !== undefined) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    const left = this.#queue.length - this.#head;
    if (left > 0) {
      this.#counts.dropped += left;
      this.#log.warn("Lease hook events not run: duet is stopping", { dropped: left });
    }
    this.#queue = [];
    this.#head = 0;
    for (const child of this.#children) kill(child);
    await Promise.all([...this.#running]);
  }

  #pump(): void {
    const s = this.#settings;
    if (s === null || this.#stopped) return;
    while (this.#running.size < s.concurrency && this.#head < this.#queue.length) {
      const e = this.#queue[this.#head++] as HookEvent;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      const run: Promise<void> = this.#run(e, s).finally(() => {
        this.#running.delete(run);
        this.#pump();
        this.#checkIdle();
      });
      this.#running.add(run);
    }
  }

  #checkIdle(): void {
    if (this.#idle && this.#running.size === 0 && this.#queue.length === this.#head) {
      this.#idle.resolve();
      this.#idle = null;
    }
  }

  #fail(e: HookEvent, why: string, stderr: string): void {
    this.#counts.failed++;
    this.#counts.lastError = why;
    this.#log.warn("Lease hook failed", {
      event: e.event,
      address: formatIpv4(e.lease.address),
      error: why,
      stderr: stderr === "" ? undefined : stderr,
    });
  }

  async #run(e: HookEvent, s: HookSettings): Promise<void> {
    const [program, ...args] = s.command as [string, ...string[]];
    this.#counts.started++;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, {
        args,
        env: hookEnv(e),
        clearEnv: true,
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      this.#fail(e, `Cannot start ${program}: ${err instanceof Error ? err.message : err}`, "");
      return;
    }
    this.#children.add(child);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kill(child);
    }, s.timeoutMs);
    const stderr = collect(child.stderr);
    // The hook may exit without reading stdin: a broken pipe is its business, not an error.
    const writer = child.stdin.getWriter();
    const fed = writer.write(new TextEncoder().encode(hookJson(e)))
      .then(() => writer.close())
      .catch(() => {});
    const status = await child.status;
    clearTimeout(timer);
    this.#children.delete(child);
    await fed;
    const text = await stderr.finish();
    if (timedOut) {
      this.#counts.timedOut++;
      this.#counts.lastError = `killed after ${s.timeoutMs} ms`;
      this.#log.warn("Lease hook timed out: killed", {
        event: e.event,
        address: formatIpv4(e.lease.address),
        timeoutMs: s.timeoutMs,
      });
    } else if (status.success) {
      this.#counts.succeeded++;
      if (this.#log.debugEnabled) {
        this.#log.debug("Ran lease hook", {
          event: e.event,
          address: formatIpv4(e.lease.address),
          sequence: e.sequence,
        });
      }
    } else {
      const why = status.signal !== null
        ? `killed by ${status.signal}`
        : `exit code ${status.code}`;
      this.#fail(e, why, text);
    }
  }
}

function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // Already exited.
  }
}

/**
 * Reads a stream to its end, keeping the first STDERR_KEEP bytes. finish() waits briefly for
 * the end (a process the hook left behind may hold the pipe open) and then cancels the read.
 */
function collect(stream: ReadableStream<Uint8Array>): { finish(): Promise<string> } {
  const reader = stream.getReader();
  const kept: Uint8Array[] = [];
  let size = 0;
  const done = (async () => {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        if (size < STDERR_KEEP) {
          kept.push(value.subarray(0, STDERR_KEEP - size));
          size += Math.min(value.length, STDERR_KEEP - size);
        }
      }
    } catch {
      // Cancelled, or the pipe broke: what was read is kept.
    }
  })();
  return {
    async finish() {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => {
        timer = setTimeout(() => r("late"), STDERR_LINGER_MS);
      });
      const won = await Promise.race([done.then(() => "done" as const), late]);
      clearTimeout(timer);
      if (won === "late") await reader.cancel().catch(() => {});
      await done;
      const bytes = new Uint8Array(size);
      let off = 0;
      for (const k of kept) {
        bytes.set(k, off);
        off += k.length;
      }
      return new TextDecoder().decode(bytes).trim().split("\n")[0] ?? "";
    },
  };
}
