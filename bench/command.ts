/** Process helpers for the benchmark: run a command with a deadline, find tools, write lines. */

/** Output of a finished command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Runs `args` to completion; kills it (SIGKILL) after `timeoutMs`. Never throws on exit codes. */
export async function runCommand(
  args: string[],
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<CommandResult> {
  const [cmd, ...rest] = args;
  if (cmd === undefined) throw new TypeError("Cannot run an empty command");
  const child = new Deno.Command(cmd, {
    args: rest,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, options.timeoutMs ?? 30_000);
  try {
    const out = await child.output();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `args` and throws with its stderr when it fails. */
export async function mustRun(args: string[], timeoutMs = 30_000): Promise<string> {
  const r = await runCommand(args, { timeoutMs });
  if (r.code !== 0) {
    throw new Error(`Cannot run "${args.join(" ")}": exit ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** The absolute path of `tool` on PATH (or in the sbin directories), or null. */
export function findTool(tool: string): string | null {
  const path = Deno.env.get("PATH") ?? "";
  const dirs = [...path.split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const full = `${dir}/${tool}`;
    try {
      const info = Deno.statSync(full);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return full;
    } catch {
      // not in this directory
    }
  }
  return null;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes one progress line to stderr, prefixed with the wall-clock time. */
export function progress(line: string): void {
  const time = new Date().toTimeString().slice(0, 8);
  Deno.stderr.writeSync(encoder.encode(`[${time}] ${line}\n`));
}

/** Writes text to stdout (results only). */
export function output(text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}
