/**
 * The failover endpoint state machine of draft-ietf-dhc-failover-12 §9 (Figure 9.2-1) and the
 * safe period of §10, as a pure function of (machine, input) -> (machine, actions). The shell
 * stores `Persisted`, runs the actions in order and feeds timers, link events, UPDDONE and
 * operator commands back in. `service()` says what a state may do for DHCP clients.
 */
import { ServerFlags, ServerState, serverStateName } from "../wire/failover.ts";

/** A server-state value as on the wire (§12.24); RECOVER-WAIT is 254 as ISC sends it. */
export type FailoverState = typeof ServerState[keyof typeof ServerState];

/** This end's role in the relationship. */
export type FailoverRole = "primary" | "secondary";

/** The timers the machine asks for (§9.3.2 step 3, §9.6.2, §9.9.1). */
export type TimerName = "startup" | "recover-wait" | "safe-period";

/** Operator commands (§9.8.4, §9.9.3, §9.11.3, §9.13, §9.14). */
export type FailoverCommand = "partner-down" | "pause" | "shutdown";

/** What the partner said about itself in a STATE message (§7.10). */
export interface PartnerState {
  serverState: number;
  serverFlags: number;
  startTimeOfState: number;
}

/** What this end puts in a STATE message (§7.10, §9.3.1); same shape as LocalState in link.ts. */
export interface LocalStateInfo {
  serverState: number;
  serverFlags: number;
  startTimeOfState: number;
}

/** The fields kept in stable storage (§9.2, §9.3.2, §9.13.1, §9.14.1). */
export interface Persisted {
  /** The last recorded state; never STARTUP (STARTUP keeps the previous state, §9.3.2 step 1). */
  state: FailoverState;
  startTimeOfState: number;
  /** In PAUSED or SHUTDOWN: the state to resume on restart (§9.13.1, §9.14.1); else null. */
  previousState: FailoverState | null;
  /** The partner's last known state; null if this server never talked to it (§9.2, §9.5.2). */
  partnerState: number | null;
  partnerStartTimeOfState: number | null;
  /** When communications were last lost, or null while up (safe period, §10). */
  commLostAt: number | null;
  /** Last recorded time of operation (§9.3.2 step 5, §9.14.1). */
  lastOperational: number;
  /** MCLT learned from the primary's CONNECT (secondary) or configured (primary), §7.8. */
  mclt: number | null;
  /**
   * An UPDREQALL was sent and no UPDDONE has answered it yet: ask for everything again
   * (§7.4, §9.5.2). Absent in records written before this field existed: read as false.
   */
  updreqallPending?: boolean;
}

/** Configuration of one endpoint. */
export interface MachineOptions {
  role: FailoverRole;
  /** Configured MCLT in seconds; a value learned from the partner (persisted.mclt) wins. */
  mclt: number;
  /** STARTUP duration in seconds; default 10 if down less than MCLT, else 60 (§5.9). */
  startupTimeout?: number;
  /**
   * What to do when the STARTUP timer expires (§9.3.2 step 6): go to the previous state
   * (default), keep waiting, or go to PARTNER-DOWN (§9.3.2 step 1, newly commissioned server).
   */
  startupExpiry?: "previous" | "wait" | "partner-down";
  /** Safe period in seconds: COMMUNICATIONS-INTERRUPTED -> PARTNER-DOWN after it; 0 = never (§10). */
  safePeriod?: number;
  /**
   * Set by the operator when this server lost its stable storage (§9.3.2 step 1): resume in
   * RECOVER, ask for UPDREQALL, and wait MCLT from this time of failure in RECOVER-WAIT.
   */
  lostStableStorage?: { timeOfFailure: number };
}

/** The running machine; a plain immutable object. */
export interface FailoverMachine {
  readonly role: FailoverRole;
  readonly startupExpiry: "previous" | "wait" | "partner-down";
  readonly safePeriod: number;
  readonly state: FailoverState;
  readonly startTimeOfState: number;
  /** STARTUP: the state to go to (§9.3.2); PAUSED/SHUTDOWN: the state to resume; else null. */
  readonly previousState: FailoverState | null;
  /** start-time-of-state of previousState, kept when STARTUP returns to it. */
  readonly previousStartTime: number;
  readonly partner: PartnerState | null;
  /** True once this server has ever talked to the partner (§9.5.2: UPDREQ vs UPDREQALL). */
  readonly everTalked: boolean;
  readonly communicating: boolean;
  readonly commLostAt: number | null;
  readonly lastOperational: number;
  readonly mclt: number;
  readonly learnedMclt: number | null;
  /** RECOVER-WAIT waits until timeOfFailure + MCLT (§9.6.2). */
  readonly timeOfFailure: number;
  /** The operator said stable storage was lost: always UPDREQALL (§9.5.2). */
  readonly lostStorage: boolean;
  /**
   * An UPDREQALL was sent and no UPDDONE has answered it yet (persisted): every update request
   * is an UPDREQALL until one does (§7.4: the sender "cannot proceed until all of its binding
   * update information is restored"; §9.5.2: re-issue the UPDREQALL when communications return).
   */
  readonly updreqallPending: boolean;
  readonly timers: Readonly<Partial<Record<TimerName, number>>>;
}

/** Inputs; `now` is epoch seconds. */
export type StateInput =
  /** Communications OK (§8.3): CONNECT/CONNECTACK done and the partner's first STATE received. */
  | { kind: "comm-up"; now: number; partner: PartnerState; mclt?: number | null }
  /** Communications failed (§8.3): connection closed or tReceive expired. */
  | { kind: "comm-down"; now: number; reason?: string }
  /** A STATE message while communicating (§7.10, §9.2). */
  | { kind: "partner-state"; now: number; partner: PartnerState }
  /** UPDDONE received: the partner sent and we acked all updates we asked for (§7.7, §9.5.2). */
  | { kind: "upddone"; now: number }
  /** A timer asked for by a start-timer action has fired. */
  | { kind: "timer"; now: number; name: TimerName }
  | { kind: "command"; now: number; command: FailoverCommand }
  /**
   * The server is still operating (serving clients) at `now`: the "last recorded time of
   * operation" that §9.3.2 step 5 compares with the partner's PARTNER-DOWN entry. The shell
   * feeds it every few seconds; it changes no state.
   */
  | { kind: "operational"; now: number };

/** Actions for the shell, run in array order (persist before STATE: §9.2). */
export type StateAction =
  | { kind: "persist"; persisted: Persisted }
  | { kind: "send-state"; local: LocalStateInfo }
  | { kind: "send-updreq" }
  | { kind: "send-updreqall" }
  /** Send all not yet acknowledged binding updates (§9.8.1). */
  | { kind: "send-updates" }
  /** Secondary entering NORMAL asks for addresses (§9.8.1). */
  | { kind: "send-poolreq" }
  | { kind: "start-timer"; name: TimerName; at: number }
  | { kind: "cancel-timer"; name: TimerName }
  | {
    kind: "log";
    level: "debug" | "info" | "warn" | "error";
    msg: string;
    fields?: Record<string, string | number>;
  };

/** The result of resume() and transition(). */
export interface StepResult {
  machine: FailoverMachine;
  actions: StateAction[];
}

const S = ServerState;

/** Every state a partner can report (STARTUP is never acted on: §9.3.1 sends the previous state). */
const ALL: readonly FailoverState[] = [
  S.NORMAL,
  S.COMMUNICATIONS_INTERRUPTED,
  S.PARTNER_DOWN,
  S.POTENTIAL_CONFLICT,
  S.RECOVER,
  S.PAUSED,
  S.SHUTDOWN,
  S.RECOVER_DONE,
  S.RESOLUTION_INTERRUPTED,
  S.CONFLICT_DONE,
  S.RECOVER_WAIT,
];

function allBut(...except: FailoverState[]): FailoverState[] {
  return ALL.filter((s) => !except.includes(s));
}

/**
 * What makes a row fire:
 * - comm-ok: communications became OK, with the partner in `partner` ("Comm. OK, Other State").
 * - partner-state: a STATE with a new state while communicating (§9.2). If no row matches, the
 *   machine takes the comm-failed row and then the comm-ok rows, as §9.2 says.
 * - partner-in: "Wait for Other State": checked on comm-ok, on partner-state and on entry.
 */
export type Trigger =
  | "comm-ok"
  | "comm-failed"
  | "partner-state"
  | "partner-in"
  | "upddone"
  | "timer-startup"
  | "timer-recover-wait"
  | "timer-safe-period"
  | "command-partner-down"
  | "command-pause"
  | "command-shutdown";

/** Named conditions a row may require; see GUARDS. */
export type Guard =
  | "partner-pd-after-our-last-operation"
  | "partner-pd-not-after-our-last-operation"
  | "partner-not-in-startup"
  | "startup-expiry-previous"
  | "startup-expiry-partner-down"
  | "mclt-passed-since-failure"
  | "mclt-not-passed-since-failure";

/** Row actions beyond entering the target state. */
export type RowAction = "request-updates" | "send-updreq" | "record-recover-as-previous";

/** One arrow of Figure 9.2-1 (or one sentence of the §9 text). */
export interface TransitionRow {
  from: FailoverState | "any";
  on: Trigger | Trigger[];
  /** Partner states this row applies to (triggers that carry a partner state). */
  partner?: readonly FailoverState[];
  role?: FailoverRole;
  guard?: Guard;
  /** Target; null stays in `from` (no state change), "previous" is STARTUP's previous-state. */
  to: FailoverState | "previous" | null;
  actions?: RowAction[];
  cite: string;
}

/** Figure 9.2-1 and §9.3-§9.14 as data, one row per arrow, first match wins. */
export const TRANSITIONS: readonly TransitionRow[] = [
  // ---- STARTUP (§9.3.2) ----
  {
    from: S.STARTUP,
    on: "comm-ok",
    partner: [S.PARTNER_DOWN],
    guard: "partner-pd-after-our-last-operation",
    to: S.RECOVER,
    cite: "§9.3.2 step 5: partner entered PARTNER-DOWN later than our last operation -> RECOVER",
  },
  {
    from: S.STARTUP,
    on: "comm-ok",
    partner: [S.PARTNER_DOWN],
    guard: "partner-pd-not-after-our-last-operation",
    to: S.POTENTIAL_CONFLICT,
    cite: "§9.3.2 step 5: partner entered PARTNER-DOWN earlier -> POTENTIAL-CONFLICT",
  },
  {
    from: S.STARTUP,
    on: "comm-ok",
    partner: allBut(S.PARTNER_DOWN),
    to: "previous",
    cite: "§9.3.2 step 5: communications okay -> previous-state, then its comm-ok transition",
  },
  {
    from: S.STARTUP,
    on: "timer-startup",
    guard: "startup-expiry-previous",
    to: "previous",
    cite: "§9.3.2 step 6: startup time expired, the server MAY go to the previous-state",
  },
  {
    from: S.STARTUP,
    on: "timer-startup",
    guard: "startup-expiry-partner-down",
    to: S.PARTNER_DOWN,
    cite: "§9.3.2 step 1: configurable move to PARTNER-DOWN when the startup period expires",
  },
  // ---- PARTNER-DOWN (§9.4.3): on connect and on any later STATE; STARTUP bit -> ignored ----
  {
    from: S.PARTNER_DOWN,
    on: ["comm-ok", "partner-state"],
    partner: [
      S.NORMAL,
      S.COMMUNICATIONS_INTERRUPTED,
      S.PARTNER_DOWN,
      S.POTENTIAL_CONFLICT,
      S.RESOLUTION_INTERRUPTED,
      S.CONFLICT_DONE,
    ],
    guard: "partner-not-in-startup",
    to: S.POTENTIAL_CONFLICT,
    cite: "§9.4.3: partner in NORMAL, COMM-INT, PARTNER-DOWN, POT-CONFLICT, RES-INT or " +
      "CONFLICT-DONE -> POTENTIAL-CONFLICT",
  },
  {
    from: S.PARTNER_DOWN,
    on: ["comm-ok", "partner-state"],
    partner: [S.RECOVER, S.RECOVER_WAIT, S.SHUTDOWN, S.PAUSED],
    guard: "partner-not-in-startup",
    to: null,
    cite: "§9.4.3: partner in RECOVER, RECOVER-WAIT, SHUTDOWN or PAUSED -> stay in PARTNER-DOWN",
  },
  {
    from: S.PARTNER_DOWN,
    on: ["comm-ok", "partner-state"],
    partner: [S.RECOVER_DONE],
    guard: "partner-not-in-startup",
    to: S.NORMAL,
    cite: "§9.4.3: partner in RECOVER-DONE -> NORMAL",
  },
  // ---- RECOVER (§9.5.2); communications failed: stay (no row) ----
  {
    from: S.RECOVER,
    on: "comm-ok",
    partner: [S.POTENTIAL_CONFLICT, S.RESOLUTION_INTERRUPTED, S.CONFLICT_DONE],
    to: S.POTENTIAL_CONFLICT,
    cite: "§9.5.2: other server in POT-CONFLICT, RES-INT or CONFLICT-DONE -> POTENTIAL-CONFLICT",
  },
  {
    from: S.RECOVER,
    on: "comm-ok",
    partner: allBut(S.POTENTIAL_CONFLICT, S.RESOLUTION_INTERRUPTED, S.CONFLICT_DONE),
    to: null,
    actions: ["request-updates"],
    cite: "§9.5.2: other server in any other state -> send UPDREQ (UPDREQALL if storage lost " +
      "or never talked to the partner); re-issued when communications return",
  },
  {
    from: S.RECOVER,
    on: "upddone",
    guard: "mclt-not-passed-since-failure",
    to: S.RECOVER_WAIT,
    cite: "§9.5.2: upon receipt of UPDDONE -> RECOVER-WAIT",
  },
  {
    from: S.RECOVER,
    on: "upddone",
    guard: "mclt-passed-since-failure",
    to: S.RECOVER_DONE,
    cite: "§9.6.2: the MCLT since the failure has passed, so the wait is skipped -> RECOVER-DONE",
  },
  // ---- RECOVER-WAIT (§9.6.2); communications changes: no effect (no row) ----
  {
    from: S.RECOVER_WAIT,
    on: "timer-recover-wait",
    to: S.RECOVER_DONE,
    cite: "§9.6.2: timer (time of failure + MCLT) goes off -> RECOVER-DONE",
  },
  // ---- RECOVER-DONE (§9.7.2); communications failed: stay (no row) ----
  {
    from: S.RECOVER_DONE,
    on: "comm-ok",
    partner: [S.POTENTIAL_CONFLICT],
    to: S.POTENTIAL_CONFLICT,
    cite: "Fig. 9.2-1: RECOVER-DONE, Comm. OK, Other State: POTENTIAL-CONFLICT",
  },
  {
    from: S.RECOVER_DONE,
    on: "partner-in",
    partner: [S.NORMAL, S.RECOVER_DONE],
    to: S.NORMAL,
    cite: "§9.7.2: partner has entered NORMAL or RECOVER-DONE -> NORMAL",
  },
  // ---- NORMAL (§9.8.4) ----
  {
    from: S.NORMAL,
    on: "command-partner-down",
    to: S.PARTNER_DOWN,
    cite: "§9.8.4: external command that the partner is down -> PARTNER-DOWN",
  },
  {
    from: S.NORMAL,
    on: "comm-failed",
    to: S.COMMUNICATIONS_INTERRUPTED,
    cite: "§9.8.4: communications not ok -> COMMUNICATIONS-INTERRUPTED",
  },
  {
    from: S.NORMAL,
    on: "partner-state",
    partner: [S.PAUSED],
    to: S.COMMUNICATIONS_INTERRUPTED,
    cite: "§9.8.4: partner changed into PAUSED -> COMMUNICATIONS-INTERRUPTED",
  },
  {
    from: S.NORMAL,
    on: "partner-state",
    partner: [S.SHUTDOWN],
    to: S.PARTNER_DOWN,
    cite: "§9.8.4: partner changed into SHUTDOWN -> PARTNER-DOWN",
  },
  {
    from: S.NORMAL,
    on: "partner-state",
    partner: [S.CONFLICT_DONE],
    role: "secondary",
    to: null,
    cite: "§9.8.4: an expected change: the secondary resolved the conflict first (§9.10.3) " +
      "and the primary passes CONFLICT-DONE on its way to NORMAL (§9.12.3) -> stay in NORMAL",
  },
  // ---- COMMUNICATIONS-INTERRUPTED (§9.9.3) ----
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "timer-safe-period",
    to: S.PARTNER_DOWN,
    cite: "§9.9.3, §10: safe period timer expires -> PARTNER-DOWN",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "command-partner-down",
    to: S.PARTNER_DOWN,
    cite: "§9.9.3: external command that the partner is down -> PARTNER-DOWN",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [S.NORMAL, S.COMMUNICATIONS_INTERRUPTED],
    to: S.NORMAL,
    cite: "§9.9.3: partner in NORMAL or COMMUNICATIONS-INTERRUPTED -> NORMAL",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [S.RECOVER],
    to: null,
    cite: "§9.9.3: partner in RECOVER -> stay in COMMUNICATIONS-INTERRUPTED",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [S.RECOVER_WAIT],
    to: null,
    cite: "Fig. 9.2-1: Other State RECOVER-WAIT -> wait for Other State RECOVER-DONE",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [S.RECOVER_DONE],
    to: S.NORMAL,
    cite: "§9.9.3: partner in RECOVER-DONE -> NORMAL",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [
      S.PARTNER_DOWN,
      S.POTENTIAL_CONFLICT,
      S.CONFLICT_DONE,
      S.RESOLUTION_INTERRUPTED,
    ],
    to: S.POTENTIAL_CONFLICT,
    cite: "§9.9.3: partner in PARTNER-DOWN, POT-CONFLICT, CONFLICT-DONE or RES-INT -> " +
      "POTENTIAL-CONFLICT",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [S.PAUSED],
    to: null,
    cite: "§9.9.3: partner in PAUSED -> stay in COMMUNICATIONS-INTERRUPTED",
  },
  {
    from: S.COMMUNICATIONS_INTERRUPTED,
    on: "comm-ok",
    partner: [S.SHUTDOWN],
    to: S.PARTNER_DOWN,
    cite: "§9.9.3: partner in SHUTDOWN -> PARTNER-DOWN",
  },
  // ---- POTENTIAL-CONFLICT (§9.10.3) ----
  {
    from: S.POTENTIAL_CONFLICT,
    on: "comm-failed",
    to: S.RESOLUTION_INTERRUPTED,
    cite: "§9.10.3: communications fail -> RESOLUTION-INTERRUPTED",
  },
  {
    from: S.POTENTIAL_CONFLICT,
    on: "upddone",
    role: "primary",
    to: S.CONFLICT_DONE,
    cite: "§9.10.3: UPDDONE received, the primary MUST go to CONFLICT-DONE",
  },
  {
    from: S.POTENTIAL_CONFLICT,
    on: "upddone",
    role: "secondary",
    to: S.NORMAL,
    cite: "§9.10.3: UPDDONE received, the secondary MUST go to NORMAL",
  },
  {
    from: S.POTENTIAL_CONFLICT,
    on: "partner-in",
    partner: [S.CONFLICT_DONE],
    role: "secondary",
    to: null,
    actions: ["send-updreq"],
    cite: "§9.10.3: secondary sees the primary in CONFLICT-DONE -> SHOULD send UPDREQ",
  },
  // ---- RESOLUTION-INTERRUPTED (§9.11.3) ----
  {
    from: S.RESOLUTION_INTERRUPTED,
    on: "command-partner-down",
    to: S.PARTNER_DOWN,
    cite: "§9.11.3: external command that the partner is down -> PARTNER-DOWN",
  },
  {
    from: S.RESOLUTION_INTERRUPTED,
    on: "comm-ok",
    partner: ALL,
    to: S.POTENTIAL_CONFLICT,
    cite: "§9.11.3: communications restored -> POTENTIAL-CONFLICT",
  },
  // ---- CONFLICT-DONE (§9.12.3); communications failed: stay (no row) ----
  {
    from: S.CONFLICT_DONE,
    on: "partner-in",
    partner: [S.NORMAL],
    to: S.NORMAL,
    cite: "§9.12.3: the secondary has entered NORMAL -> NORMAL",
  },
  // ---- PAUSED and SHUTDOWN (§9.13, §9.14; not drawn in Fig. 9.2-1, see §9.2) ----
  {
    from: S.SHUTDOWN,
    on: ["comm-ok", "partner-state"],
    partner: [S.PARTNER_DOWN],
    to: null,
    actions: ["record-recover-as-previous"],
    cite: "§9.14.2: partner moved to PARTNER-DOWN -> record RECOVER as the previous state",
  },
  {
    from: "any",
    on: "command-pause",
    to: S.PAUSED,
    cite: "§9.13.1: entering PAUSED stores the previous state for the restart",
  },
  {
    from: "any",
    on: "command-shutdown",
    to: S.SHUTDOWN,
    cite: "§9.14.1: entering SHUTDOWN records the previous state and the last time operational",
  },
];

/** §5.9: short STARTUP if down less than MCLT, longer otherwise. */
const STARTUP_SHORT = 10;
const STARTUP_LONG = 60;
/** Bound on chained transitions from one input (each §9.2 "immediately moves through"). */
const MAX_CHAIN = 6;

interface Ctx {
  now: number;
  partner: PartnerState | null;
  out: StateAction[];
  lastPersisted: string;
}

function name(s: number): string {
  return serverStateName(s);
}

function triggers(row: TransitionRow): Trigger[] {
  return Array.isArray(row.on) ? row.on : [row.on];
}

function isState(v: number): v is FailoverState {
  return ALL.includes(v as FailoverState) || v === S.STARTUP;
}

function mcltPassed(m: FailoverMachine, now: number): boolean {
  return now >= m.timeOfFailure + m.mclt;
}

function guardHolds(g: Guard, m: FailoverMachine, c: Ctx): boolean {
  const p = c.partner;
  switch (g) {
    // Times are whole seconds: a partner that entered PARTNER-DOWN because of our STATE
    // SHUTDOWN did so in the second we stopped, so "not earlier" counts as later.
    case "partner-pd-after-our-last-operation":
      return p !== null && p.startTimeOfState >= m.lastOperational;
    case "partner-pd-not-after-our-last-operation":
      return p !== null && p.startTimeOfState < m.lastOperational;
    case "partner-not-in-startup":
      return p !== null && (p.serverFlags & ServerFlags.STARTUP) === 0;
    case "startup-expiry-previous":
      return m.startupExpiry === "previous";
    case "startup-expiry-partner-down":
      return m.startupExpiry === "partner-down";
    case "mclt-passed-since-failure":
      return mcltPassed(m, c.now);
    case "mclt-not-passed-since-failure":
      return !mcltPassed(m, c.now);
  }
}

function findRow(m: FailoverMachine, on: Trigger, c: Ctx): TransitionRow | undefined {
  return TRANSITIONS.find((r) => {
    if (r.from !== "any" && r.from !== m.state) return false;
    if (r.from === "any" && (m.state === S.PAUSED || m.state === S.SHUTDOWN)) return false;
    if (!triggers(r).includes(on)) return false;
    if (r.role !== undefined && r.role !== m.role) return false;
    if (r.partner !== undefined) {
      if (c.partner === null || !r.partner.includes(c.partner.serverState as FailoverState)) {
        return false;
      }
    }
    return r.guard === undefined || guardHolds(r.guard, m, c);
  });
}

/**
 * The machine after this server's clock stepped by `delta` seconds (lib/server/clock.ts): its
 * own times (start-time-of-state, when communications were lost, the last time of operation,
 * the time of failure, the timers) move with the stored lease times, so that every wait keeps
 * the time it had left: the MCLT in PARTNER-DOWN (§9.4.2), RECOVER-WAIT (§9.6.2), the safe
 * period (§10). The partner's start-time-of-state is on the partner's clock and stays.
 */
export function shiftMachineTimes(m: FailoverMachine, delta: number): FailoverMachine {
  if (!Number.isSafeInteger(delta)) throw new RangeError(`Cannot shift by ${delta} s`);
  if (delta === 0) return m;
  const timers: Partial<Record<TimerName, number>> = {};
  for (const [name, at] of Object.entries(m.timers) as [TimerName, number][]) {
    timers[name] = at + delta;
  }
  return {
    ...m,
    startTimeOfState: m.startTimeOfState + delta,
    previousStartTime: m.previousStartTime + delta,
    commLostAt: m.commLostAt === null ? null : m.commLostAt + delta,
    lastOperational: m.lastOperational + delta,
    // 0: no failure known (a fresh start, §9.3.2 step 1), nothing to wait for.
    timeOfFailure: m.timeOfFailure === 0 ? 0 : m.timeOfFailure + delta,
    timers,
  };
}

/**
 * A stored state record after the clock stepped by `delta` seconds while the server was down
 * (lib/cli/serve.ts moves the lease times at start): this server's times move, the partner's
 * start-time-of-state stays (shiftMachineTimes, for a running machine).
 */
export function shiftPersistedTimes(p: Persisted, delta: number): Persisted {
  if (!Number.isSafeInteger(delta)) throw new RangeError(`Cannot shift by ${delta} s`);
  return {
    ...p,
    startTimeOfState: p.startTimeOfState + delta,
    commLostAt: p.commLostAt === null ? null : p.commLostAt + delta,
    lastOperational: p.lastOperational + delta,
  };
}

/** The stored form of a machine (§9.2): STARTUP is stored as its previous state (§9.3.2). */
export function persisted(m: FailoverMachine): Persisted {
  const inStartup = m.state === S.STARTUP;
  return {
    state: inStartup ? (m.previousState ?? S.RECOVER) : m.state,
    startTimeOfState: inStartup ? m.previousStartTime : m.startTimeOfState,
    previousState: m.state === S.PAUSED || m.state === S.SHUTDOWN ? m.previousState : null,
    partnerState: m.partner?.serverState ?? null,
    partnerStartTimeOfState: m.partner?.startTimeOfState ?? null,
    commLostAt: m.commLostAt,
    lastOperational: m.lastOperational,
    mclt: m.learnedMclt,
    updreqallPending: m.updreqallPending,
  };
}

/** What a STATE message carries now: in STARTUP the previous state with the STARTUP flag (§9.3.1). */
export function localState(m: FailoverMachine): LocalStateInfo {
  if (m.state === S.STARTUP) {
    return {
      serverState: m.previousState ?? S.RECOVER,
      serverFlags: ServerFlags.STARTUP,
      startTimeOfState: m.previousStartTime,
    };
  }
  return { serverState: m.state, serverFlags: 0, startTimeOfState: m.startTimeOfState };
}

function persist(m: FailoverMachine, c: Ctx): void {
  const p = persisted(m);
  c.lastPersisted = JSON.stringify(p);
  c.out.push({ kind: "persist", persisted: p });
}

function startTimer(m: FailoverMachine, timer: TimerName, at: number, c: Ctx): FailoverMachine {
  c.out.push({ kind: "start-timer", name: timer, at });
  return { ...m, timers: { ...m.timers, [timer]: at } };
}

/** The comm-failed row's target (§9.3.2 step 2), or the state itself when it has none. */
function commFailedTarget(state: FailoverState): FailoverState {
  const row = TRANSITIONS.find((r) => r.from === state && triggers(r).includes("comm-failed"));
  return row !== undefined && typeof row.to === "number" ? row.to : state;
}

/** Entering a state: §9.2 record and STATE, then the per-state "upon entry" actions. */
function enter(
  m0: FailoverMachine,
  to: FailoverState,
  reason: string,
  c: Ctx,
): FailoverMachine {
  const from = m0.state;
  for (const t of Object.keys(m0.timers) as TimerName[]) {
    c.out.push({ kind: "cancel-timer", name: t });
  }
  const backToPrevious = from === S.STARTUP && to === m0.previousState;
  let previousState: FailoverState | null = null;
  if (to === S.PAUSED || to === S.SHUTDOWN) {
    // §9.13.1, §9.14.1: the state before PAUSED/SHUTDOWN is the one to resume.
    previousState = from === S.STARTUP ? (m0.previousState ?? S.RECOVER) : from;
  }
  let m: FailoverMachine = {
    ...m0,
    state: to,
    startTimeOfState: backToPrevious ? m0.previousStartTime : c.now,
    previousState,
    previousStartTime: backToPrevious ? m0.previousStartTime : c.now,
    lastOperational: c.now,
    timers: {},
  };
  persist(m, c);
  if (m.communicating) c.out.push({ kind: "send-state", local: localState(m) });
  log(c, "info", `Failover state ${name(from)} -> ${name(to)}`, {
    from: name(from),
    to: name(to),
    reason,
  });
  switch (to) {
    case S.NORMAL:
      // §9.8.1: send unacked updates; then the secondary asks for addresses.
      c.out.push({ kind: "send-updates" });
      if (m.role === "secondary") c.out.push({ kind: "send-poolreq" });
      break;
    case S.COMMUNICATIONS_INTERRUPTED:
      // §9.9.1: start the safe period timer if one is configured (§10).
      if (m.safePeriod > 0) {
        m = startTimer(m, "safe-period", (m.commLostAt ?? c.now) + m.safePeriod, c);
      }
      if (from === S.NORMAL) {
        log(c, "warn", "Failover partner unreachable: serving alone until it returns", {
          section: "§9.9.1",
        });
      }
      break;
    case S.POTENTIAL_CONFLICT:
      // §9.10.1: the primary asks for updates; the secondary waits for the primary's UPDREQ.
      if (m.role === "primary" && m.communicating) m = requestUpdates(m, false, c);
      break;
    case S.RESOLUTION_INTERRUPTED:
      log(c, "error", "Failover conflict resolution interrupted: operator attention needed", {
        section: "§9.11.1",
      });
      break;
    case S.RECOVER_WAIT:
      // §9.6.2: wait until the time of failure (or start) plus MCLT.
      m = startTimer(m, "recover-wait", m.timeOfFailure + m.mclt, c);
      break;
    case S.CONFLICT_DONE:
      if (m.role === "secondary") {
        log(c, "warn", "Secondary entered CONFLICT-DONE, which it should never do", {
          section: "§9.12.1",
        });
      }
      break;
  }
  return m;
}

/** Queues one log line (an action; the shell writes it). */
function log(
  c: Ctx,
  level: "debug" | "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, string | number>,
): void {
  c.out.push(
    fields === undefined ? { kind: "log", level, msg } : { kind: "log", level, msg, fields },
  );
}

/**
 * Sends UPDREQ, or UPDREQALL when `all` or when an earlier UPDREQALL is still unanswered
 * (§7.4, §9.5.2: the requester keeps asking for everything until an UPDDONE answers it; the
 * answerer's own memory of it, §7.4.2, does not survive its crash). The pending mark is
 * stored before the request goes out, so a restart asks again too.
 */
function requestUpdates(m: FailoverMachine, all: boolean, c: Ctx): FailoverMachine {
  if (!all && !m.updreqallPending) {
    c.out.push({ kind: "send-updreq" });
    return m;
  }
  let next = m;
  if (!m.updreqallPending) {
    next = { ...m, updreqallPending: true };
    persist(next, c);
  }
  c.out.push({ kind: "send-updreqall" });
  return next;
}

function runRowActions(m: FailoverMachine, row: TransitionRow, c: Ctx): FailoverMachine {
  for (const a of row.actions ?? []) {
    switch (a) {
      case "request-updates":
        // §9.5.2: UPDREQALL if storage was lost or we never talked to the partner.
        m = requestUpdates(m, m.lostStorage || !m.everTalked, c);
        break;
      case "send-updreq":
        m = requestUpdates(m, false, c);
        break;
      case "record-recover-as-previous":
        if (m.previousState !== S.RECOVER) {
          m = { ...m, previousState: S.RECOVER };
          persist(m, c);
          log(c, "info", "Partner entered PARTNER-DOWN: will restart in RECOVER", {
            section: "§9.14.2",
          });
        }
        break;
    }
  }
  return m;
}

/** Applies one row; returns the machine and whether the state changed. */
function applyRow(m: FailoverMachine, row: TransitionRow, c: Ctx): [FailoverMachine, boolean] {
  if (row.to === null) return [runRowActions(m, row, c), false];
  const target = row.to === "previous" ? (m.previousState ?? S.RECOVER) : row.to;
  if (target === m.state) return [runRowActions(m, row, c), false];
  const next = enter(m, target, row.cite, c);
  return [runRowActions(next, row, c), true];
}

/** §9.2: after a transition while communicating, take whatever the partner's state implies. */
function settle(m: FailoverMachine, c: Ctx, depth: number): FailoverMachine {
  if (!m.communicating || c.partner === null || depth >= MAX_CHAIN) return m;
  const row = findRow(m, "partner-in", c);
  if (row === undefined) return m;
  const [next, changed] = applyRow(m, row, c);
  return changed ? settle(next, c, depth + 1) : next;
}

/** comm-ok handling for the current state: comm-ok rows, then partner-in rows. */
function commOk(m: FailoverMachine, c: Ctx, depth: number): FailoverMachine {
  const row = findRow(m, "comm-ok", c) ?? findRow(m, "partner-in", c);
  if (row === undefined) return m;
  const wasStartup = m.state === S.STARTUP;
  const [next, changed] = applyRow(m, row, c);
  if (!changed) return next;
  // §9.3.2 step 5: after leaving STARTUP, take the comm-ok transition of the new state.
  if (wasStartup && depth < MAX_CHAIN) return commOk(next, c, depth + 1);
  return settle(next, c, depth + 1);
}

/** §9.2: a changed partner state while communicating. */
function partnerChanged(m: FailoverMachine, c: Ctx): FailoverMachine {
  const row = findRow(m, "partner-state", c) ?? findRow(m, "partner-in", c);
  if (row !== undefined) {
    const [next, changed] = applyRow(m, row, c);
    return changed ? settle(next, c, 1) : next;
  }
  // No row for this state: move through the communications-failed transition, then the
  // comm-ok transition for the partner's new state; only a net change of state is taken.
  const through = commFailedTarget(m.state);
  const probe: FailoverMachine = { ...m, state: through };
  const okRow = findRow(probe, "comm-ok", c) ?? findRow(probe, "partner-in", c);
  const target = okRow === undefined || okRow.to === null
    ? through
    : okRow.to === "previous"
    ? through
    : okRow.to;
  if (target === m.state) return m;
  const why = `§9.2: partner changed state to ${name(c.partner?.serverState ?? 0)}`;
  let next = m;
  if (through !== m.state) next = enter(next, through, why, c);
  if (target !== next.state) {
    next = enter(next, target, okRow?.cite ?? why, c);
    if (okRow !== undefined) next = runRowActions(next, okRow, c);
  }
  return settle(next, c, 1);
}

function defaultStartupTimeout(downFor: number, mclt: number): number {
  return downFor < mclt ? STARTUP_SHORT : STARTUP_LONG;
}

/**
 * Builds the machine after a (re)start: STARTUP with the previous state of §9.3.2 steps 1-3.
 * `stored` is null when there is no record in stable storage.
 */
export function resume(
  stored: Persisted | null,
  now: number,
  options: MachineOptions,
): StepResult {
  const out: StateAction[] = [];
  const mclt = stored?.mclt ?? options.mclt;
  let previous: FailoverState;
  let previousStartTime: number;
  let timeOfFailure: number;
  let why: string;
  if (options.lostStableStorage !== undefined) {
    previous = S.RECOVER;
    previousStartTime = now;
    timeOfFailure = options.lostStableStorage.timeOfFailure;
    why = "§9.3.2 step 1: configured as having lost stable storage";
  } else if (stored === null) {
    previous = S.RECOVER;
    previousStartTime = now;
    timeOfFailure = 0;
    why = "§9.3.2 step 1: no previous failover state in stable storage";
  } else {
    previous = stored.state;
    previousStartTime = stored.startTimeOfState;
    // §9.13.2, §9.14.3: restart from PAUSED/SHUTDOWN resumes the state before it.
    if ((previous === S.PAUSED || previous === S.SHUTDOWN) && stored.previousState !== null) {
      previous = stored.previousState;
    }
    // §9.6.2: the time the server went down, as well as it is known.
    timeOfFailure = stored.lastOperational;
    why = "§9.3.2 step 1: previous state from stable storage";
  }
  // §9.3.2 step 2: a state that needs communications becomes its comm-failed result.
  const converted = commFailedTarget(previous);
  if (converted !== previous) {
    previous = converted;
    previousStartTime = now;
    why += `; step 2: comm-failed transition gives ${name(converted)}`;
  }
  // With storage lost, the configured time of failure is the last known operation (§9.3.2 step 1).
  const lastOperational = options.lostStableStorage?.timeOfFailure ?? stored?.lastOperational ?? 0;
  let m: FailoverMachine = {
    role: options.role,
    startupExpiry: options.startupExpiry ?? "previous",
    safePeriod: options.safePeriod ?? 0,
    state: S.STARTUP,
    startTimeOfState: now,
    previousState: previous,
    previousStartTime,
    partner: stored?.partnerState != null && isState(stored.partnerState)
      ? {
        serverState: stored.partnerState,
        serverFlags: 0,
        startTimeOfState: stored.partnerStartTimeOfState ?? 0,
      }
      : null,
    everTalked: options.lostStableStorage === undefined && stored?.partnerState != null,
    communicating: false,
    commLostAt: stored?.commLostAt ?? null,
    lastOperational,
    mclt,
    learnedMclt: stored?.mclt ?? null,
    timeOfFailure,
    lostStorage: options.lostStableStorage !== undefined,
    // Older records lack the field (false); with storage lost the first request is an UPDREQALL.
    updreqallPending: options.lostStableStorage === undefined && stored?.updreqallPending === true,
    timers: {},
  };
  const c: Ctx = { now, partner: null, out, lastPersisted: "" };
  const timeout = options.startupTimeout ?? defaultStartupTimeout(now - lastOperational, mclt);
  m = startTimer(m, "startup", now + timeout, c);
  out.unshift({
    kind: "log",
    level: "info",
    msg: `Failover STARTUP, previous state ${name(previous)}`,
    fields: { previous: name(previous), reason: why },
  });
  return { machine: m, actions: out };
}

/** Feeds one input to the machine (§9); returns the next machine and the actions to run. */
export function transition(m0: FailoverMachine, input: StateInput): StepResult {
  const c: Ctx = {
    now: input.now,
    partner: m0.partner,
    out: [],
    lastPersisted: JSON.stringify(persisted(m0)),
  };
  let m = m0;
  switch (input.kind) {
    case "comm-up": {
      const p = input.partner;
      c.partner = p;
      const learned = m.role === "secondary" && typeof input.mclt === "number"
        ? input.mclt
        : m.learnedMclt;
      m = {
        ...m,
        partner: p,
        everTalked: m.everTalked,
        communicating: true,
        commLostAt: null,
        learnedMclt: learned,
        mclt: learned ?? m.mclt,
      };
      log(c, "info", "Failover communications OK", {
        partner: name(p.serverState),
        startup: (p.serverFlags & ServerFlags.STARTUP) !== 0 ? 1 : 0,
      });
      m = commOk(m, c, 0);
      // §9.2: the partner's state is recorded; from now on we have talked to it (§9.5.2).
      m = { ...m, everTalked: true };
      break;
    }
    case "comm-down": {
      if (!m.communicating) break;
      m = { ...m, communicating: false, commLostAt: m.commLostAt ?? input.now };
      log(c, "info", "Failover communications failed", { reason: input.reason ?? "closed" });
      const row = findRow(m, "comm-failed", c);
      if (row !== undefined) m = applyRow(m, row, c)[0];
      break;
    }
    case "partner-state": {
      if (!m.communicating) {
        log(c, "debug", "STATE ignored: not communicating");
        break;
      }
      const p = input.partner;
      const before = m.partner;
      const startupCleared = before !== null &&
        (before.serverFlags & ServerFlags.STARTUP) !== 0 &&
        (p.serverFlags & ServerFlags.STARTUP) === 0;
      const changed = before === null || before.serverState !== p.serverState;
      m = { ...m, partner: p };
      c.partner = p;
      if (!changed && !startupCleared) break;
      log(
        c,
        "info",
        `Failover partner state ${name(before?.serverState ?? 0)} -> ${name(p.serverState)}`,
        {
          partner: name(p.serverState),
        },
      );
      m = partnerChanged(m, c);
      break;
    }
    case "upddone": {
      // §7.5.2: what was asked for has arrived; while an UPDREQALL was pending every request
      // sent was one, so this UPDDONE answers it.
      if (m.updreqallPending) m = { ...m, updreqallPending: false };
      const row = findRow(m, "upddone", c);
      if (row === undefined) {
        log(c, "debug", `UPDDONE ignored in ${name(m.state)}`);
        break;
      }
      const [next, changed] = applyRow(m, row, c);
      m = changed ? settle(next, c, 1) : next;
      break;
    }
    case "timer": {
      const at = m.timers[input.name];
      if (at === undefined || input.now < at) break; // stale or early: ignored
      const timers = { ...m.timers };
      delete timers[input.name];
      m = { ...m, timers };
      const row = findRow(m, `timer-${input.name}`, c);
      if (row === undefined) {
        if (input.name === "startup") {
          log(c, "info", "STARTUP timer expired: waiting for the partner", {
            section: "§9.3.2 step 6",
          });
        }
        break;
      }
      const [next, changed] = applyRow(m, row, c);
      m = changed ? settle(next, c, 1) : next;
      break;
    }
    case "operational":
      if (
        service(m.state, m.role, { now: input.now, startTimeOfState: 0, mclt: m.mclt })
            .answer !== "none" && input.now > m.lastOperational
      ) {
        m = { ...m, lastOperational: input.now };
      }
      break;
    case "command": {
      const row = findRow(m, `command-${input.command}`, c);
      if (row === undefined) {
        log(c, "warn", `Refused command ${input.command} in ${name(m.state)}`, {
          state: name(m.state),
        });
        break;
      }
      m = applyRow(m, row, c)[0];
      break;
    }
  }
  const p = JSON.stringify(persisted(m));
  if (p !== c.lastPersisted) c.out.push({ kind: "persist", persisted: persisted(m) });
  return { machine: m, actions: c.out };
}

/** Which DHCP client traffic a state allows (§5.5-§5.9, §9); `cite` names the rule per field. */
export interface Service {
  /** none, renewals only, balanced (RFC 3074 hash for new clients), or all. */
  answer: "none" | "renewals" | "balanced" | "all";
  /** DHCPREQUEST/RENEWAL and REBINDING of any client's current lease. */
  renewals: boolean;
  /** New allocations at all. */
  allocate: boolean;
  /** The pool new allocations come from: FREE on the primary, BACKUP on the secondary. */
  ownPool: "FREE" | "BACKUP" | null;
  /** Addresses available to the partner may be allocated (PARTNER-DOWN after MCLT). */
  partnerPool: boolean;
  /** When partnerPool becomes true (PARTNER-DOWN entry + MCLT), else null. */
  partnerPoolAt: number | null;
  cite: Record<"answer" | "allocate" | "ownPool" | "partnerPool", string>;
}

/** What a server in `state` may do for DHCP clients (§5.5-§5.9, §9). */
export function service(
  state: number,
  role: FailoverRole,
  options: { now: number; startTimeOfState: number; mclt: number },
): Service {
  const own = role === "primary" ? "FREE" : "BACKUP";
  const ownCite = "§9.9.2: the primary allocates only FREE, the secondary only BACKUP addresses";
  const none = (why: string): Service => ({
    answer: "none",
    renewals: false,
    allocate: false,
    ownPool: null,
    partnerPool: false,
    partnerPoolAt: null,
    cite: { answer: why, allocate: why, ownPool: why, partnerPool: why },
  });
  const alone = (answerCite: string): Service => ({
    answer: "all",
    renewals: true,
    allocate: true,
    ownPool: own,
    partnerPool: false,
    partnerPoolAt: null,
    cite: {
      answer: answerCite,
      allocate: answerCite,
      ownPool: ownCite,
      partnerPool: "§9.9.2: only its own pool; the partner may be operating",
    },
  });
  switch (state) {
    case S.NORMAL:
      return {
        answer: "balanced",
        renewals: true,
        allocate: true,
        ownPool: own,
        partnerPool: false,
        partnerPoolAt: null,
        cite: {
          answer: "§9.8.2, §5.5: every RENEWAL/REBINDING; other requests per the RFC 3074 hash",
          allocate: "§9.8.2: new clients only when load balancing says this server",
          ownPool: "§5.4: each server allocates from its own available addresses",
          partnerPool: "§5.4: addresses available to the partner are its own",
        },
      };
    case S.COMMUNICATIONS_INTERRUPTED:
      return alone("§9.9.2: MUST respond to all DHCP client requests, no load balancing");
    case S.RESOLUTION_INTERRUPTED:
      return alone("§9.11.2: MUST respond to all DHCP client requests, no load balancing");
    case S.CONFLICT_DONE:
      if (role === "secondary") {
        return none("§9.12.1: a secondary should never be in CONFLICT-DONE");
      }
      return alone("§9.12.2: the primary is fully responsive, as in COMMUNICATIONS-INTERRUPTED");
    case S.PARTNER_DOWN: {
      const at = options.startTimeOfState + options.mclt;
      return {
        answer: "all",
        renewals: true,
        allocate: true,
        ownPool: own,
        partnerPool: options.now >= at,
        partnerPoolAt: at,
        cite: {
          answer: "§9.4.2: MUST respond to DHCP client requests",
          allocate: "§9.4.2: allocates from its own pool",
          ownPool: "§9.4.2: its own pool at once",
          partnerPool: "§9.4.2: addresses available to the partner only after MCLT from entry",
        },
      };
    }
    case S.RECOVER_DONE:
      return {
        answer: "renewals",
        renewals: true,
        allocate: false,
        ownPool: null,
        partnerPool: false,
        partnerPoolAt: null,
        cite: {
          answer: "§9.7.1: MUST respond only to DHCPREQUEST/RENEWAL and REBINDING",
          allocate: "§9.7.1: no new allocations",
          ownPool: "§9.7.1: no new allocations",
          partnerPool: "§9.7.1: no new allocations",
        },
      };
    case S.STARTUP:
      return none("§9.3.1: MUST be unresponsive to DHCP client requests");
    case S.RECOVER:
      return none("§9.5.1: MUST NOT respond to DHCP client requests");
    case S.RECOVER_WAIT:
      return none("§9.6.1: MUST NOT respond to DHCP client requests");
    case S.POTENTIAL_CONFLICT:
      return none("§9.10.2: MUST NOT process any incoming DHCP requests");
    case S.SHUTDOWN:
      return none("§9.14.2: MUST NOT respond to any DHCP client input");
    case S.PAUSED:
      return none("§9.13: the server is out of service while PAUSED");
    default:
      return none(`unknown state ${state}: serve nothing`);
  }
}
