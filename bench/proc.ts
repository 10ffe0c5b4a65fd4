/** Readings from /proc: CPU time of a process tree, peak RSS, whole-machine busy time. */

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux build we run on). */
export const CLOCK_TICKS = 100;

/** The fields of /proc/<pid>/stat after "(comm)", which may itself contain spaces and ")". */
function statFields(pid: number): string[] | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  // index 0 here is field 3 (state) of proc(5)
  return text.slice(close + 2).trim().split(/\s+/);
}

/**
 * CPU ticks of `pid` (fields 14-17 of proc(5): utime, stime, cutime, cstime; utime/stime cover
 * all threads) plus those of its live descendants.
 */
export function readTreeCpuTicks(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    const f = statFields(p);
    if (!f) continue;
    total += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return total;
}

/** utime + stime of one process, in ticks (0 when it is gone). */
export function readCpuTicks(pid: number): number {
  const f = statFields(pid);
  return f ? Number(f[11]) + Number(f[12]) : 0;
}

/** Live descendants of `pid`, found through the ppid field (4) of every /proc/<n>/stat. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const n = Number(entry.name);
    const f = statFields(n);
    if (!f) continue;
    const ppid = Number(f[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), n]);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = children.get(queue.shift()!) ?? [];
    out.push(...next);
    queue.push(...next);
  }
  return out;
}

/** Peak resident set size (VmHWM) of `pid` and its live descendants, in KiB. */
export function readPeakRssKib(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${p}/status`));
      if (m) total += Number(m[1]);
    } catch {
      // gone
    }
  }
  return total;
}

/** Busy ticks summed over all CPUs (user, nice, system, irq, softirq) from /proc/stat. */
export function readSystemBusyTicks(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0] ?? "";
  const f = line.trim().split(/\s+/).map(Number);
  return (f[1] ?? 0) + (f[2] ?? 0) + (f[3] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
}
