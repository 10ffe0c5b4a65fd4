/** The injected logger: human text or NDJSON on stderr, with rate limiting of repeated lines. */

/** Log levels in increasing severity. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Structured fields attached to one log line. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** What the code outside main.ts logs through. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** True when a debug line would be written (to skip building expensive fields). */
  readonly debugEnabled: boolean;
}

/** A logger whose level can change while it runs (`duet reload` applies `log-level`). */
export interface LevelLogger extends Logger {
  readonly level: LogLevel;
  setLevel(level: LogLevel): void;
}

/** Options for createLogger. */
export interface LoggerOptions {
  level?: LogLevel;
  format?: "text" | "json";
  /** Where lines go; defaults to stderr. */
  write?: (line: string) => void;
  /** Wall clock in epoch milliseconds, for the timestamps (default Date.now). */
  now?: () => number;
  /**
   * Monotonic milliseconds, for the rate limit's windows (default performance.now): a step of
   * the system clock must neither silence a message for as long as the step nor unmute it.
   */
  monoNow?: () => number;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** A logger that suppresses more than 20 identical messages per 10 s, then says how many it dropped. */
export function createLogger(options: LoggerOptions = {}): LevelLogger {
  let level: LogLevel = options.level ?? "info";
  let min = RANK[level];
  const format = options.format ?? "text";
  const write = options.write ?? writeStderr;
  const now = options.now ?? (() => Date.now());
  const monoNow = options.monoNow ?? (() => performance.now());
  const windows = new Map<string, { start: number; count: number; dropped: number }>();
  const WINDOW_MS = 10_000;
  const LIMIT = 20;

  function emit(level: LogLevel, msg: string, fields?: LogFields): void {
    if (RANK[level] < min) return;
    const m = monoNow();
    let w = windows.get(msg);
    if (!w || m - w.start >= WINDOW_MS) {
      if (w && w.dropped > 0) {
        line("warn", `Suppressed ${w.dropped} repeats of a log message`, { message: msg }, now());
      }
      if (windows.size > 1000) windows.clear();
      w = { start: m, count: 0, dropped: 0 };
      windows.set(msg, w);
    }
    if (++w.count > LIMIT) {
      w.dropped++;
      return;
    }
    line(level, msg, fields, now());
  }

  function line(level: LogLevel, msg: string, fields: LogFields | undefined, t: number): void {
    const ts = new Date(t).toISOString();
    if (format === "json") {
      write(JSON.stringify({ ts, level, msg, ...fields }));
      return;
    }
    let s = `${ts} ${level.toUpperCase().padEnd(5)} ${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        const text = String(v);
        s += /[\s"=]/.test(text) ? ` ${k}=${JSON.stringify(text)}` : ` ${k}=${text}`;
      }
    }
    write(s);
  }

  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    get debugEnabled() {
      return min <= RANK.debug;
    },
    get level() {
      return level;
    },
    setLevel(next: LogLevel) {
      level = next;
      min = RANK[next];
    },
  };
}

/** A logger that writes nothing (for tests). */
export function silentLogger(): Logger {
  const noop = () => {};
  return { debug: noop, info: noop, warn: noop, error: noop, debugEnabled: false };
}
