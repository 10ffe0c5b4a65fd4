/** What a CLI command writes to; main.ts passes the real streams, tests capture them. */
export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** Exit codes of every duet command (README, "Exit codes"). */
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  INVALID_CONFIG: 3,
} as const;
