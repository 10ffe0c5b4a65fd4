/** Starts one server pinned to a CPU inside the server namespace, waits until it is bound, stops it. */
import { runCommand, sleep } from "./command.ts";
import type { ServerSpec } from "./servers.ts";
import type { Topology } from "./topology.ts";

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

/** A server process this harness started. */
export interface ServerProcess {
  /** The server's own pid: `ip netns exec`, `taskset` and `sh -c exec` all exec in place. */
  pid: number;
  child: Deno.ChildProcess;
  /** Its stdout and stderr. */
  logFile: string;
  /** True once the process has exited. */
  exited: () => boolean;
}

/**
 * Runs `spec` in `t.serverNs` pinned to `cpu`, with output appended to `<dir>/server.out`.
 * Resolves once the server is ready (its ready text appeared, or it owns UDP :67 in the
 * namespace) plus 0.5 s; throws with the tail of its output when it exits or never gets ready.
 */
export async function startServer(
  spec: ServerSpec,
  dir: string,
  options: { topology: Topology; cpu: number; onSpawn?: (server: ServerProcess) => void },
): Promise<ServerProcess> {
  const t = options.topology;
  const logFile = `${dir}/server.out`;
  await Deno.writeTextFile(logFile, "");
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      t.serverNs,
      "taskset",
      "-c",
      String(options.cpu),
      "sh",
      "-c",
      'exec "$@" >>"$0" 2>&1',
      logFile,
      ...spec.command(dir, t),
    ],
    cwd: spec.cwd ?? dir,
    env: spec.env ?? {},
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let done = false;
  child.status.then(() => done = true);
  const server: ServerProcess = { pid: child.pid, child, logFile, exited: () => done };
  options.onSpawn?.(server);
  try {
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (!(await isReady(spec, server, t))) {
      if (done) throw new Error(`${spec.name} exited while starting:\n${await tail(logFile)}`);
      if (performance.now() > deadline) {
        throw new Error(`${spec.name} not ready after 60 s:\n${await tail(logFile)}`);
      }
      await sleep(100);
    }
  } catch (e) {
    await stopServer(server);
    throw e;
  }
  await sleep(500);
  return server;
}

async function isReady(spec: ServerSpec, server: ServerProcess, t: Topology): Promise<boolean> {
  if (spec.readyText !== undefined) {
    return (await Deno.readTextFile(server.logFile)).includes(spec.readyText);
  }
  const r = await runCommand([
    "ip",
    "netns",
    "exec",
    t.serverNs,
    "ss",
    "-H",
    "-uapn",
    "sport = :67",
  ], {
    timeoutMs: 5_000,
  });
  return r.stdout.includes(`pid=${server.pid},`);
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. Never throws. */
export async function stopServer(server: ServerProcess): Promise<void> {
  if (server.exited()) return;
  try {
    server.child.kill("SIGTERM");
  } catch {
    return;
  }
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  while (!server.exited() && performance.now() < deadline) await sleep(50);
  if (!server.exited()) {
    try {
      server.child.kill("SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  await server.child.status;
}

/** The last lines of a log file (for error reports). */
export async function tail(path: string, lines = 20): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no output)";
  }
}
