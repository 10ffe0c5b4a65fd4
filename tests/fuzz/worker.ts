/** Runs one fuzz loop off the main thread, so that a watchdog can end a run that hangs. */
import { fuzzLoop } from "./engine.ts";
import { TARGETS } from "./targets.ts";

/** What the runner sends. */
export interface WorkerJob {
  target: string;
  seed: number;
  inputs: number;
  timeLimitMs?: number;
  progress: SharedArrayBuffer;
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WorkerJob>) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = (e) => {
  const job = e.data;
  const target = TARGETS[job.target];
  if (!target) {
    scope.postMessage({ error: `Unknown fuzz target "${job.target}"` });
    return;
  }
  try {
    const result = fuzzLoop(target, {
      seed: job.seed,
      inputs: job.inputs,
      progress: job.progress,
      ...(job.timeLimitMs !== undefined ? { timeLimitMs: job.timeLimitMs } : {}),
    });
    scope.postMessage(result);
  } catch (err) {
    scope.postMessage({ error: err instanceof Error ? err.stack ?? err.message : String(err) });
  }
};
