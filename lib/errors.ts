/**
 * Every error class duet throws on purpose. Catch sites are fixed (STYLE.md §5):
 * the UDP shell drops and counts WireError, main.ts maps ConfigError to exit 3.
 */

/** Malformed bytes from the network, with the offset where decoding stopped. */
export class WireError extends SyntaxError {
  /** Which decoder failed: "dhcp" or "failover". */
  readonly protocol: string;
  /** Byte offset into the input where the problem was found. */
  readonly offset: number;
  constructor(protocol: string, offset: number, message: string, options?: ErrorOptions) {
    super(`${message} (at offset ${offset})`, options);
    this.name = "WireError";
    this.protocol = protocol;
    this.offset = offset;
  }
}

/** One problem in a configuration file, located by dotted path and line:column. */
export interface ConfigProblem {
  /** Dotted path of the key, e.g. `subnets.0.pools.1.range`. */
  path: string;
  /** 1-based line, or 0 when unknown. */
  line: number;
  /** 1-based column, or 0 when unknown. */
  col: number;
  message: string;
}

/** An invalid configuration; carries every problem found, not just the first. */
export class ConfigError extends Error {
  readonly file: string;
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[], options?: ErrorOptions) {
    super(
      problems.map((p) => `${file}:${p.line}:${p.col}: ${p.message}`).join("\n") ||
        `Invalid configuration ${file}`,
      options,
    );
    this.name = "ConfigError";
    this.file = file;
    this.problems = problems;
  }
}

/** The lease database cannot be opened, read or written. */
export class StoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
  }
}

/** The failover partner broke the protocol; the link is closed. */
export class PeerProtocolError extends Error {
  readonly messageType: number;
  constructor(messageType: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PeerProtocolError";
    this.messageType = messageType;
  }
}

/** Bad command-line usage (exit code 2). */
export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}
