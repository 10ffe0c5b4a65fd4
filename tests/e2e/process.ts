/** Helpers for tests that run duet as a real process. */
import { fileURLToPath } from "node:url";

/** The checkout root (where main.ts is). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** main.ts, for `deno run`. */
export const MAIN = `${ROOT}main.ts`;

/** A UDP port that was free a moment ago on 127.0.0.1. */
export function freeUdpPort(): number {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (conn.addr as Deno.NetAddr).port;
  conn.close();
  return port;
}

/** Runs `duet ARGS` to completion (bounded) and returns its output. */
export async function runDuet(
  args: string[],
  options: { timeoutMs?: number; prefix?: string[] } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = [...(options.prefix ?? []), Deno.execPath(), "run", "--allow-all", MAIN, ...args];
  const child = new Deno.Command(cmd[0] as string, {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, options.timeoutMs ?? 30_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A `duet serve` child process whose stderr is collected. */
export class DuetProcess {
  readonly child: Deno.ChildProcess;
  #stderr = "";
  #reader: Promise<void>;

  constructor(args: string[], prefix: string[] = []) {
    const cmd = [...prefix, Deno.execPath(), "run", "--allow-all", MAIN, "serve", ...args];
    const child = new Deno.Command(cmd[0] as string, {
      args: cmd.slice(1),
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#reader = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.#stderr += dec.decode(chunk);
    })();
  }

  /** Everything the server logged so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Waits (bounded) until the log contains `text`; throws with the log on timeout. */
  async waitFor(text: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.#stderr.includes(text)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`duet serve did not log "${text}" within ${timeoutMs} ms:\n${this.#stderr}`);
  }

  /** Sends a signal and waits (bounded) for the exit code; SIGKILL after the bound. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 10_000): Promise<number> {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }, timeoutMs);
    const status = await this.child.status;
    clearTimeout(timer);
    await this.#reader;
    return status.code;
  }
}
