/** A Web Worker that runs one range of simulation schedules (run.ts runSchedules). */
import { runBatch } from "./run.ts";

interface Job {
  first: number;
  count: number;
}

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<Job>) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = async (e: MessageEvent<Job>) => {
  scope.postMessage(await runBatch(e.data.first, e.data.count));
};
