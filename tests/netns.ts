/**
 * Test harness for network namespaces (root, iproute2): uniquely named namespaces, veth pairs
 * and bridges that are all deleted by `Lab.cleanup()`, and time-bounded processes inside them.
 * Addresses MUST come from 198.18.0.0/15 (STYLE.md §6).
 *
 * @example
 * const lab = await Lab.create("dx");
 * try {
 *   const a = await lab.addNamespace("a");
 *   const b = await lab.addNamespace("b");
 *   await lab.link(a, "a0", "198.18.1.1/24", b, "b0", "198.18.1.2/24");
 *   const r = await lab.exec(a, ["ping", "-c1", "-W1", "198.18.1.2"]);
 * } finally {
 *   await lab.cleanup();
 * }
 */

import { KernelBalanceFilter } from "../lib/server/bpf.ts";

/** Output of a finished process. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

const IFNAME_MAX = 15;
let probed: string | null | undefined;

/**
 * Returns why namespace tests cannot run here (not Linux, not root, no `ip`, a missing tool,
 * `ip netns add` refused), or null when they can.
 */
export function netnsPrerequisites(tools: string[] = []): string | null {
  if (Deno.build.os !== "linux") return `needs Linux, this is ${Deno.build.os}`;
  if (Deno.uid() !== 0) return "needs root (network namespaces)";
  for (const tool of ["ip", ...tools]) {
    const which = new Deno.Command("which", { args: [tool], stdout: "null", stderr: "null" });
    let found = false;
    try {
      found = which.outputSync().success;
    } catch {
      found = false;
    }
    if (!found) return `needs "${tool}" on PATH`;
  }
  if (probed === undefined) probed = probeNamespaces();
  return probed;
}

function probeNamespaces(): string | null {
  // `deno test --parallel` runs test files as workers of one process: the pid alone is shared.
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  const name = `dprobe${Deno.pid}${random}`;
  const add = new Deno.Command("ip", { args: ["netns", "add", name], stderr: "piped" })
    .outputSync();
  if (!add.success) {
    return `cannot create a network namespace: ${new TextDecoder().decode(add.stderr).trim()}`;
  }
  new Deno.Command("ip", { args: ["netns", "del", name], stderr: "null" }).outputSync();
  return null;
}

/**
 * True when the test may go on. Otherwise prints `SKIP <test>: <reason>` and returns false,
 * or throws (failing the test) when env CI=true, where prerequisites are installed.
 */
/**
 * Why this kernel refuses duet's eBPF load-balancing filter (lib/server/bpf.ts: no CAP_BPF, a
 * seccomp profile that blocks bpf(2)), or null when it takes it.
 */
export function kernelFilterRefusal(): string | null {
  try {
    KernelBalanceFilter.open().close();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

export function requireOrSkip(
  t: Deno.TestContext | undefined,
  reason: string | null,
  // deno-lint-ignore no-console
  print: (line: string) => void = console.log,
): boolean {
  if (reason === null) return true;
  const test = t?.name ?? "test";
  if (Deno.env.get("CI") === "true") {
    throw new Error(`Cannot run "${test}" under CI=true: ${reason}`);
  }
  print(`SKIP ${test}: ${reason}`);
  return false;
}

interface Tracked {
  child: Deno.ChildProcess;
  piped: boolean;
  done: boolean;
}

/** A set of namespaces and links owned by one test; `cleanup()` removes everything. */
export class Lab {
  readonly id: string;
  readonly #namespaces: string[] = [];
  readonly #children = new Set<Tracked>();
  readonly #byChild = new Map<Deno.ChildProcess, Tracked>();

  private constructor(id: string) {
    this.id = id;
  }

  /** A lab whose names start with `prefix`, a random id and the pid (parallel-safe). */
  static create(prefix: string): Promise<Lab> {
    if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) {
      throw new RangeError(`Cannot create lab "${prefix}": use 1-6 lowercase letters/digits`);
    }
    const random = crypto.getRandomValues(new Uint8Array(2));
    const id = `${prefix}${random[0]!.toString(36)}${random[1]!.toString(36)}${
      Deno.pid.toString(36)
    }`;
    return Promise.resolve(new Lab(id));
  }

  /** Creates namespace `<id>-<name>` with lo up; returns its real name. */
  async addNamespace(name: string): Promise<string> {
    const real = `${this.id}-${name}`;
    await run(["ip", "netns", "add", real]);
    this.#namespaces.push(real);
    await run(["ip", "-n", real, "link", "set", "dev", "lo", "up"]);
    return real;
  }

  /**
   * Creates a veth pair `ifA` (in nsA) <-> `ifB` (in nsB), adds the addresses (CIDR, e.g.
   * "198.18.1.1/24") and brings both ends up. The pair is created inside the namespaces, so
   * interface names only need to be unique per namespace.
   */
  async link(
    nsA: string,
    ifA: string,
    addrA: string | null,
    nsB: string,
    ifB: string,
    addrB: string | null,
  ): Promise<void> {
    checkIfname(ifA);
    checkIfname(ifB);
    await run([
      "ip",
      "-n",
      nsA,
      "link",
      "add",
      "name",
      ifA,
      "type",
      "veth",
      "peer",
      "name",
      ifB,
      "netns",
      nsB,
    ]);
    for (const [ns, ifname, addr] of [[nsA, ifA, addrA], [nsB, ifB, addrB]] as const) {
      if (addr !== null) await run(["ip", "-n", ns, "addr", "add", addr, "dev", ifname]);
      await run(["ip", "-n", ns, "link", "set", "dev", ifname, "up"]);
    }
  }

  /** Creates a bridge in `ns` (with an optional address) and brings it up. */
  async addBridge(ns: string, name: string, addr: string | null = null): Promise<void> {
    checkIfname(name);
    await run(["ip", "-n", ns, "link", "add", "name", name, "type", "bridge"]);
    if (addr !== null) await run(["ip", "-n", ns, "addr", "add", addr, "dev", name]);
    await run(["ip", "-n", ns, "link", "set", "dev", name, "up"]);
  }

  /** Puts interface `ifname` of `ns` into `bridge`. */
  async attach(ns: string, ifname: string, bridge: string): Promise<void> {
    await run(["ip", "-n", ns, "link", "set", "dev", ifname, "master", bridge]);
  }

  /** Sets the MAC address of an interface (use 02:00:00:xx:xx:xx). */
  async setMac(ns: string, ifname: string, mac: string): Promise<void> {
    await run(["ip", "-n", ns, "link", "set", "dev", ifname, "address", mac]);
  }

  /** Runs an `ip` command inside `ns` (e.g. `["route", "add", …]`); throws on failure. */
  async ip(ns: string, args: string[]): Promise<string> {
    return await run(["ip", "-n", ns, ...args]);
  }

  /** The MAC address ("02:…") and ifindex of an interface. */
  async interfaceInfo(ns: string, ifname: string): Promise<{ mac: string; ifindex: number }> {
    const out = await run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname]);
    const [info] = JSON.parse(out) as { address: string; ifindex: number }[];
    if (!info) throw new Error(`Cannot read interface "${ifname}" in ${ns}: no output`);
    return { mac: info.address, ifindex: info.ifindex };
  }

  /** Runs `cmd` inside `ns` (ip netns exec) and waits, killing it after timeoutMs (10 s). */
  async exec(ns: string, cmd: string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const child = this.spawn(ns, cmd);
    return await this.collect(child, { timeoutMs: opts.timeoutMs ?? 10_000 });
  }

  /**
   * Starts `cmd` inside `ns` with piped stdin/stdout/stderr (stdin null); it is killed by
   * `cleanup()` unless collected first.
   */
  spawn(
    ns: string,
    cmd: string[],
    opts: { env?: Record<string, string>; cwd?: string } = {},
  ): Deno.ChildProcess {
    const options: Deno.CommandOptions = {
      args: ["netns", "exec", ns, ...cmd],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    };
    if (opts.env) options.env = opts.env;
    if (opts.cwd) options.cwd = opts.cwd;
    const child = new Deno.Command("ip", options).spawn();
    const tracked = { child, piped: true, done: false };
    this.#children.add(tracked);
    this.#byChild.set(child, tracked);
    return child;
  }

  /**
   * Runs a Deno script inside `ns`: `ip netns exec NS deno run --allow-all --unstable-net
   * <file> args…`, with the same Deno binary as the test.
   */
  spawnDeno(
    ns: string,
    file: string | URL,
    args: string[] = [],
    opts: { env?: Record<string, string>; cwd?: string; denoFlags?: string[] } = {},
  ): Deno.ChildProcess {
    const path = file instanceof URL ? file.pathname : file;
    const flags = opts.denoFlags ?? ["--allow-all", "--unstable-net"];
    const spawnOpts: { env?: Record<string, string>; cwd?: string } = {};
    if (opts.env) spawnOpts.env = opts.env;
    if (opts.cwd) spawnOpts.cwd = opts.cwd;
    return this.spawn(ns, [Deno.execPath(), "run", ...flags, path, ...args], spawnOpts);
  }

  /**
   * Waits for a process started by spawn() and returns its output; after timeoutMs (10 s)
   * it is killed with SIGKILL and its output so far is returned (code 137).
   */
  async collect(child: Deno.ChildProcess, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const tracked = this.#byChild.get(child);
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, opts.timeoutMs ?? 10_000);
    try {
      const out = await child.output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    } finally {
      clearTimeout(timer);
      if (tracked) {
        tracked.done = true;
        this.#children.delete(tracked);
      }
    }
  }

  /**
   * Kills every process still tracked and deletes every namespace (which removes their
   * interfaces). Problems are printed, not thrown, so they never hide the test's own error.
   */
  async cleanup(): Promise<void> {
    for (const tracked of this.#children) {
      try {
        tracked.child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      for (const stream of [tracked.child.stdout, tracked.child.stderr]) {
        if (!stream.locked) await stream.cancel().catch(() => {});
      }
      await tracked.child.status;
    }
    this.#children.clear();
    this.#byChild.clear();
    for (const ns of this.#namespaces.reverse()) {
      try {
        await run(["ip", "netns", "del", ns]);
      } catch (e) {
        // deno-lint-ignore no-console
        console.error(`Cannot delete namespace ${ns}: ${(e as Error).message}`);
      }
    }
    this.#namespaces.length = 0;
  }
}

function checkIfname(name: string): void {
  if (name.length === 0 || name.length > IFNAME_MAX || /[\s/:]/.test(name)) {
    throw new RangeError(`Cannot use interface name "${name}": 1-15 chars, no space, / or :`);
  }
}

/** Runs a command outside any namespace (bounded to 10 s); throws with stderr on failure. */
async function run(cmd: string[]): Promise<string> {
  const [program, ...args] = cmd;
  const child = new Deno.Command(program!, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 10_000);
  try {
    const out = await child.output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim();
      throw new Error(`Cannot run "${cmd.join(" ")}": exit ${out.code}: ${err}`);
    }
    return new TextDecoder().decode(out.stdout);
  } finally {
    clearTimeout(timer);
  }
}

/** Parses newline-delimited JSON output of a helper script, ignoring non-JSON lines. */
export function parseJsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    const s = line.trim();
    if (!s.startsWith("{")) continue;
    try {
      out.push(JSON.parse(s) as Record<string, unknown>);
    } catch {
      // Not ours.
    }
  }
  return out;
}

/**
 * Reads lines from a spawned process's stdout until one satisfies `match` (returned) or
 * timeoutMs passes (throws). The reader lock is released afterwards, and the unread rest stays
 * available to `collect()` except for what was already buffered here (returned as `seen`).
 */
export async function waitForLine(
  child: Deno.ChildProcess,
  match: (line: string) => boolean,
  timeoutMs: number,
): Promise<{ line: string; seen: string }> {
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Cannot see the expected line within ${timeoutMs} ms: ${seen}`)),
      timeoutMs,
    );
  });
  try {
    while (true) {
      const chunk = await Promise.race([reader.read(), timeout]);
      if (chunk.done) throw new Error(`Process ended before the expected line: ${seen}`);
      seen += decoder.decode(chunk.value, { stream: true });
      const lines = seen.split("\n");
      for (const line of lines.slice(0, -1)) {
        if (match(line)) return { line, seen };
      }
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}
