/**
 * Binding-status rules of draft-ietf-dhc-failover-12 as pure tables: which binding-status
 * changes this server may make itself (§5.11, Figure 5.11-1), whether to accept a partner's
 * binding update (§7.1.2, §7.1.3, Figure 7.1.3-1) and what to store when it does (§5.11, §7.1.5),
 * and the MCLT limit on lease times (§5.2.1, §7.1.5). No I/O and no clock: `now` is an argument.
 *
 * Lease fields used for the §7.1.5 times: `ends` = lease-expiration-time, `tstp` =
 * sent-potential-expiration-time, `tsfp` = acked-potential-expiration-time, `atsfp` =
 * received-potential-expiration-time, `cltt` = client-last-transaction-time and `starts` =
 * start-time-of-state. A time of 0 means absent.
 */
import { emptyLease, type Lease, LEASE_STATES, type LeaseState } from "../store/store.ts";
import { RejectReason } from "../wire/failover.ts";
import type { FailoverRole } from "./state.ts";

// ---------------------------------------------------------------------------------------------
// 1. Local binding-status transitions (§5.11, Figure 5.11-1)
// ---------------------------------------------------------------------------------------------

/** What makes this server change a binding-status (the labels of Figure 5.11-1's arrows). */
export type TransitionTrigger =
  /** A DHCPACK gives the address to a client. */
  | "dhcp-allocate"
  /** The client sent a DHCPRELEASE. */
  | "dhcp-release"
  /** The lease (plus any grace period) has run out. */
  | "lease-expired"
  /** A DHCPDECLINE, a ping answer or another server-detected problem. */
  | "decline"
  /** An external (operator) command. */
  | "operator"
  /** Implementation-specific handling of an ABANDONED address, note (3). */
  | "abandoned-reclaim"
  /** The partner accepted (BNDACK without reject-reason) this server's BNDUPD for the address. */
  | "partner-ack"
  /** Moving available addresses between the servers' pools (§5.4). */
  | "pool-balance"
  /** In PARTNER-DOWN: the MCLT has passed since the address entered EXPIRED/RELEASED/RESET, note (1). */
  | "partner-down-timeout";

/** Facts the rules need; every time is epoch seconds. */
export interface TransitionContext {
  role: FailoverRole;
  trigger: TransitionTrigger;
  now: number;
  /** The MCLT in seconds (needed for the PARTNER-DOWN rules). */
  mclt?: number;
  /** Set while this server is in PARTNER-DOWN: when it entered that state. */
  partnerDownSince?: number;
  /** start-time-of-state of the binding (when it entered `from`). */
  startTimeOfState?: number;
  /** For "lease-expired": the lease-expiration-time plus any grace period. */
  ends?: number;
  /** For EXPIRED/RELEASED -> ACTIVE: the requesting client is the binding's own client. */
  sameClient?: boolean;
  /** For EXPIRED/RELEASED -> ACTIVE: a BNDUPD with this binding-status was already sent. */
  sentToPartner?: boolean;
}

/** The answer of allowedLocalTransition(), with the rule that decided it. */
export type TransitionResult =
  | { allowed: true; section: string; rule: string }
  | { allowed: false; section: string; reason: string };

/** Who may take an arrow: always, never, or only when a condition holds. */
type Condition =
  | "always"
  | "never"
  /** This server is in PARTNER-DOWN and the MCLT has passed since it entered it. */
  | "partner-down-mclt"
  /** The lease-expiration-time (plus grace) has been reached. */
  | "lease-ended"
  /** In PARTNER-DOWN, MCLT past both the entry into the binding-status and into PARTNER-DOWN. */
  | "state-mclt-in-partner-down"
  /** The same client, and the partner has not been told of the EXPIRED/RELEASED status. */
  | "same-client-unsent";

interface TransitionRow {
  from: readonly LeaseState[];
  to: LeaseState;
  trigger: TransitionTrigger;
  primary: Condition;
  secondary: Condition;
  section: string;
  rule: string;
}

const ALL: readonly LeaseState[] = LEASE_STATES;

/** Figure 5.11-1 and the §5.11 / §5.4 text, one row per arrow. */
const TRANSITIONS: readonly TransitionRow[] = [
  // Fig. 5.11-1 "IP address leased by primary"; §5.11 FREE: the secondary MAY after the MCLT in PARTNER-DOWN.
  {
    from: ["free"],
    to: "active",
    trigger: "dhcp-allocate",
    primary: "always",
    secondary: "partner-down-mclt",
    section: "§5.11",
    rule: "FREE is allocated by the primary (by the secondary only in PARTNER-DOWN after the MCLT)",
  },
  // Fig. 5.11-1 "IP addr leased by secondary"; §5.11 BACKUP: the primary MAY after the MCLT in PARTNER-DOWN.
  {
    from: ["backup"],
    to: "active",
    trigger: "dhcp-allocate",
    primary: "partner-down-mclt",
    secondary: "always",
    section: "§5.11",
    rule:
      "BACKUP is allocated by the secondary (by the primary only in PARTNER-DOWN after the MCLT)",
  },
  // §5.11 EXPIRED/RELEASED: may go back to the same client if no BNDUPD with that status was sent.
  {
    from: ["expired", "released"],
    to: "active",
    trigger: "dhcp-allocate",
    primary: "same-client-unsent",
    secondary: "same-client-unsent",
    section: "§5.11",
    rule: "EXPIRED/RELEASED may return to the same client before the partner was told",
  },
  // Fig. 5.11-1 "IP addr alloc. to sec." (primary, §5.4) and note (2) (secondary in PARTNER-DOWN after MCLT).
  {
    from: ["free"],
    to: "backup",
    trigger: "pool-balance",
    primary: "always",
    secondary: "partner-down-mclt",
    section: "§5.11 Fig. 5.11-1 note (2), §5.4",
    rule: "The primary allocates FREE addresses to the secondary",
  },
  // §5.4: the primary takes an address back with a FREE BNDUPD; it is FREE once the secondary accepts.
  {
    from: ["backup"],
    to: "free",
    trigger: "partner-ack",
    primary: "always",
    secondary: "never",
    section: "§5.4",
    rule: "The primary takes a BACKUP address back once the secondary accepts the FREE update",
  },
  // Fig. 5.11-1 "Lease on IP addr expires" (directly, or when the grace period ends).
  {
    from: ["active"],
    to: "expired",
    trigger: "lease-expired",
    primary: "lease-ended",
    secondary: "lease-ended",
    section: "§5.11",
    rule: "An ACTIVE lease becomes EXPIRED when it (and any grace period) ends",
  },
  // Fig. 5.11-1 "DHCPRELEASE".
  {
    from: ["active"],
    to: "released",
    trigger: "dhcp-release",
    primary: "always",
    secondary: "always",
    section: "§5.11",
    rule: "An ACTIVE lease becomes RELEASED on DHCPRELEASE",
  },
  // Fig. 5.11-1 "Comm w/Partner" (EXPIRED, RELEASED, RESET -> FREE) and the §5.11 closing text.
  {
    from: ["expired", "released", "reset"],
    to: "free",
    trigger: "partner-ack",
    primary: "always",
    secondary: "always",
    section: "§5.11",
    rule: "EXPIRED/RELEASED/RESET become FREE when the partner ACKs the BNDUPD",
  },
  // Fig. 5.11-1 note (1): in PARTNER-DOWN, once the MCLT has passed since entry into the status.
  {
    from: ["expired", "released", "reset"],
    to: "free",
    trigger: "partner-down-timeout",
    primary: "state-mclt-in-partner-down",
    secondary: "state-mclt-in-partner-down",
    section: "§5.11 Fig. 5.11-1 note (1)",
    rule: "In PARTNER-DOWN, EXPIRED/RELEASED/RESET become FREE after the MCLT",
  },
  // Fig. 5.11-1 "DHCP client DECLINE or server detected problem from any state"; §5.11 ABANDONED.
  {
    from: ALL,
    to: "abandoned",
    trigger: "decline",
    primary: "always",
    secondary: "always",
    section: "§5.11",
    rule: "Any address becomes ABANDONED on DHCPDECLINE or a detected problem",
  },
  // Fig. 5.11-1 "External command" into RESET (the figure names no source state).
  {
    from: ALL,
    to: "reset",
    trigger: "operator",
    primary: "always",
    secondary: "always",
    section: "§5.11",
    rule: "An operator command makes an address RESET",
  },
  // Fig. 5.11-1 note (3): implementation-specific handling of ABANDONED addresses.
  {
    from: ["abandoned"],
    to: "reset",
    trigger: "abandoned-reclaim",
    primary: "always",
    secondary: "always",
    section: "§5.11 Fig. 5.11-1 note (3)",
    rule: "An ABANDONED address may be reclaimed through RESET",
  },
];

/** Whether `c` holds, or why not. */
function checkCondition(c: Condition, ctx: TransitionContext): string | null {
  switch (c) {
    case "always":
      return null;
    case "never":
      return "not made by this role";
    case "lease-ended":
      if (ctx.ends === undefined) return "context.ends is required";
      // Strictly after the end, so that a partner applying §7.1.3 time(2) ("later than")
      // accepts the EXPIRED update however it rounds the time.
      return ctx.now > ctx.ends ? null : `lease ends at ${ctx.ends}, now is ${ctx.now}`;
    case "partner-down-mclt": {
      if (ctx.partnerDownSince === undefined) return "only in PARTNER-DOWN after the MCLT";
      if (ctx.mclt === undefined) return "context.mclt is required";
      const at = ctx.partnerDownSince + ctx.mclt;
      return ctx.now >= at ? null : `only in PARTNER-DOWN after the MCLT (from ${at})`;
    }
    case "state-mclt-in-partner-down": {
      if (ctx.partnerDownSince === undefined) return "only in PARTNER-DOWN";
      if (ctx.mclt === undefined || ctx.startTimeOfState === undefined) {
        return "context.mclt and context.startTimeOfState are required";
      }
      // The later entry counts: §5.2.1 also forbids reuse before the MCLT after PARTNER-DOWN.
      const at = Math.max(ctx.startTimeOfState, ctx.partnerDownSince) + ctx.mclt;
      return ctx.now >= at ? null : `only after the MCLT in PARTNER-DOWN (from ${at})`;
    }
    case "same-client-unsent":
      if (ctx.sameClient !== true) return "only for the same client";
      return ctx.sentToPartner === false ? null : "the partner was already told";
  }
}

/**
 * Whether this server may itself move an address from `from` to `to` on `context.trigger`
 * (draft-12 §5.11, Figure 5.11-1; §5.4). Unchanged status (e.g. a renewal) is always allowed.
 */
export function allowedLocalTransition(
  from: LeaseState,
  to: LeaseState,
  context: TransitionContext,
): TransitionResult {
  if (from === to) {
    return { allowed: true, section: "§5.11", rule: "No binding-status change" };
  }
  const arrows = TRANSITIONS.filter((r) => r.from.includes(from) && r.to === to);
  if (arrows.length === 0) {
    return {
      allowed: false,
      section: "§5.11",
      reason: `Figure 5.11-1 has no ${from.toUpperCase()} -> ${to.toUpperCase()} transition`,
    };
  }
  const row = arrows.find((r) => r.trigger === context.trigger);
  if (row === undefined) {
    const triggers = arrows.map((r) => r.trigger).join(", ");
    return {
      allowed: false,
      section: arrows[0]?.section ?? "§5.11",
      reason:
        `${from.toUpperCase()} -> ${to.toUpperCase()} happens on ${triggers}, not ${context.trigger}`,
    };
  }
  const problem = checkCondition(row[context.role], context);
  if (problem !== null) {
    return { allowed: false, section: row.section, reason: `${row.rule}: ${problem}` };
  }
  return { allowed: true, section: row.section, rule: row.rule };
}

// ---------------------------------------------------------------------------------------------
// 2. Accepting a binding update (§7.1.2, §7.1.3, Figure 7.1.3-1)
// ---------------------------------------------------------------------------------------------

/** One binding update transaction of a BNDUPD, decoded (§7.1, Table 7.1-1). */
export interface BindingUpdate {
  /** assigned-IP-address as uint32. */
  address: number;
  /** binding-status. */
  state: LeaseState;
  /** Hardware type of client-hardware-address (default 1). */
  htype?: number;
  /** client-hardware-address without the type octet. */
  hwAddress?: Uint8Array;
  /** client-identifier; present iff the client sent option 61 (§7.1.1). */
  clientId?: Uint8Array;
  /** client-last-transaction-time. */
  cltt?: number;
  startTimeOfState?: number;
  /** lease-expiration-time. */
  ends?: number;
  /** potential-expiration-time. */
  potentialExpiration?: number;
  /** The R (reserved) bit of IP-flags (§12.12). */
  reserved?: boolean;
  /** From client-request-options, if the caller extracted them (§7.1.4). */
  hostname?: string;
  relayInfo?: Uint8Array;
}

/** What the receiving server knows about itself. */
export interface AcceptContext {
  role: FailoverRole;
  now: number;
  /** The address belongs to a pool of this failover endpoint (§7.1.3, reason 1). */
  inPool: boolean;
  /** This server shows the address as reserved (§7.1.3, reason 19). */
  reserved?: boolean;
}

/** The verdict of acceptUpdate(): the lease to store, or the BNDACK reject-reason. */
export type AcceptResult =
  | { accept: true; lease: Lease; section: string; rule: string }
  | { accept: false; rejectReason: number; message: string; section: string };

/** Figure 7.1.3-1 rows: binding-status in the receiving server (FREE and BACKUP share a row). */
type AcceptRow = "active" | "expired" | "released" | "free-backup" | "reset" | "abandoned";
/** Figure 7.1.3-1 columns: binding-status in the BNDUPD. */
type AcceptColumn = "active" | "expired" | "released" | "free-backup" | "reset-abandoned";
/** A cell: accept, reject(4), accept(5), or one of the time rules. */
type Cell = "accept" | "accept(5)" | "time(1)" | "time(2)" | "time(3)" | "reject(4)";

const ROW_OF: Record<LeaseState, AcceptRow> = {
  active: "active",
  expired: "expired",
  released: "released",
  free: "free-backup",
  backup: "free-backup",
  reset: "reset",
  abandoned: "abandoned",
};

const COLUMN_OF: Record<LeaseState, AcceptColumn> = {
  active: "active",
  expired: "expired",
  released: "released",
  free: "free-backup",
  backup: "free-backup",
  reset: "reset-abandoned",
  abandoned: "reset-abandoned",
};

/** Figure 7.1.3-1, row by row (receiving server's binding-status). */
const ACCEPT_TABLE: Record<AcceptRow, Record<AcceptColumn, Cell>> = {
  // Fig. 7.1.3-1 row ACTIVE: accept(5) time(2) time(1) time(2) accept
  active: {
    active: "accept(5)",
    expired: "time(2)",
    released: "time(1)",
    "free-backup": "time(2)",
    "reset-abandoned": "accept",
  },
  // Fig. 7.1.3-1 row EXPIRED: time(1) accept accept accept accept
  expired: {
    active: "time(1)",
    expired: "accept",
    released: "accept",
    "free-backup": "accept",
    "reset-abandoned": "accept",
  },
  // Fig. 7.1.3-1 row RELEASED: time(1) time(1) accept accept accept
  released: {
    active: "time(1)",
    expired: "time(1)",
    released: "accept",
    "free-backup": "accept",
    "reset-abandoned": "accept",
  },
  // Fig. 7.1.3-1 row FREE/BACKUP: accept everything
  "free-backup": {
    active: "accept",
    expired: "accept",
    released: "accept",
    "free-backup": "accept",
    "reset-abandoned": "accept",
  },
  // Fig. 7.1.3-1 row RESET: time(3) accept accept accept accept
  reset: {
    active: "time(3)",
    expired: "accept",
    released: "accept",
    "free-backup": "accept",
    "reset-abandoned": "accept",
  },
  // Fig. 7.1.3-1 row ABANDONED: reject(4) x4, accept for RESET/ABANDONED
  abandoned: {
    active: "reject(4)",
    expired: "reject(4)",
    released: "reject(4)",
    "free-backup": "reject(4)",
    "reset-abandoned": "accept",
  },
};

/** §5.11: on accepting an EXPIRED, RELEASED or RESET update the receiver sets FREE. */
const STORED_AS: Record<LeaseState, LeaseState> = {
  active: "active",
  expired: "free",
  released: "free",
  reset: "free",
  free: "free",
  backup: "backup",
  abandoned: "abandoned",
};

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** §7.1.1: a client is named by client-identifier if it used one, else by client-hardware-address. */
function sameClient(local: Lease, update: BindingUpdate): boolean {
  const localId = local.clientId;
  const updateId = update.clientId ?? null;
  if (localId !== null || updateId !== null) {
    return localId !== null && updateId !== null && bytesEqual(localId, updateId);
  }
  return (update.htype ?? 1) === local.htype &&
    bytesEqual(update.hwAddress ?? new Uint8Array(0), local.hwAddress);
}

/** Table 7.1-1 / §5.11: what an update MUST carry to be processed; null if complete. */
function missingInformation(update: BindingUpdate): string | null {
  // RFC 2131 §2: chaddr is 16 octets; a longer client-hardware-address fits no lease.
  if (update.hwAddress !== undefined && update.hwAddress.length > 16) {
    return `a client-hardware-address of at most 16 octets (got ${update.hwAddress.length})`;
  }
  if (update.state !== "active") return null;
  const missing: string[] = [];
  // §5.11 ACTIVE: "Client identification MUST appear"; Table 7.1-1: client-hardware-address MUST.
  if (update.hwAddress === undefined) missing.push("client-hardware-address");
  // Table 7.1-1: lease-expiration-time and potential-expiration-time MUST appear for ACTIVE.
  if (update.ends === undefined) missing.push("lease-expiration-time");
  if (update.potentialExpiration === undefined) missing.push("potential-expiration-time");
  return missing.length === 0 ? null : missing.join(", ");
}

function reject(rejectReason: number, message: string, section = "§7.1.3"): AcceptResult {
  return { accept: false, rejectReason, message, section };
}

/** "Later" for the time rules: an absent BNDUPD time is never later; an absent local time always loses. */
function isLater(updateTime: number | undefined, localTime: number): boolean {
  if (updateTime === undefined || updateTime === 0) return false;
  if (localTime === 0) return true;
  return updateTime > localTime;
}

/** The lease to store after accepting `update` (§5.11, §7.1.4, §7.1.5). */
function storedLease(local: Lease | undefined, update: BindingUpdate, now: number): Lease {
  const base = local ?? emptyLease(update.address);
  const same = local !== undefined &&
    (update.hwAddress === undefined && update.clientId === undefined || sameClient(local, update));
  const state = STORED_AS[update.state];
  const lease: Lease = { ...base, state };

  if (state === "abandoned") {
    // §5.11 ABANDONED: "Client identification MUST NOT appear."
    lease.htype = 1;
    lease.hwAddress = new Uint8Array(0);
    lease.clientId = null;
    lease.hostname = null;
    lease.relayInfo = null;
  } else if (update.hwAddress !== undefined || update.clientId !== undefined) {
    lease.htype = update.htype ?? 1;
    lease.hwAddress = update.hwAddress ?? new Uint8Array(0);
    lease.clientId = update.clientId ?? null;
    lease.hostname = update.hostname ?? (same ? base.hostname : null);
    // §7.1.4: relay-agent-information SHOULD be stored.
    lease.relayInfo = update.relayInfo ?? (same ? base.relayInfo : null);
  }

  // §7.1.5: keep the later lease-expiration-time of the same binding.
  lease.ends = same ? Math.max(base.ends, update.ends ?? 0) : update.ends ?? 0;
  lease.cltt = same ? Math.max(base.cltt, update.cltt ?? 0) : update.cltt ?? 0;
  // §7.1.5 received-potential-expiration-time: the latest time received and ACKed. The
  // acknowledged and received times of §5.2.1 belong to one ACTIVE binding: when the update
  // starts a new one (this client's binding here was not ACTIVE, or another client's was),
  // what was acked or received for the old one does not carry over, or a renewal here could
  // reach beyond the MCLT past anything the partner holds.
  const continues = local !== undefined && local.state === "active" && same;
  lease.atsfp = Math.max(continues ? base.atsfp : 0, update.potentialExpiration ?? 0);
  // tstp describes what this server sent; a received update leaves it alone.
  if (state === "active" && !continues) lease.tsfp = 0;

  // start-time-of-state (§7.1.1): when the binding first took on its current status.
  if (state !== update.state) {
    lease.starts = local !== undefined && local.state === state ? base.starts : now;
  } else if (update.startTimeOfState !== undefined) {
    lease.starts = update.startTimeOfState;
  } else {
    lease.starts = local !== undefined && local.state === state && same ? base.starts : now;
  }
  return lease;
}

/** The earlier of two optional times (0 is absent, as ISC sends it), or undefined. */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  const known = [a, b].filter((t): t is number => t !== undefined && t > 0);
  return known.length === 0 ? undefined : Math.min(...known);
}

/**
 * Fig. 7.1.3-1 has RESET and ABANDONED accept each other whatever their times. When the
 * RESET of a reclaimed ABANDONED address (§5.11 note 3) and a new ABANDONED of the same
 * address cross on the wire, or an old RESET is sent again on a new connection, each server
 * would take the other's status: one ends FREE and leases the address, the other keeps it
 * ABANDONED, rejects that lease (reason 16) and later reclaims the address from under the
 * client (found by the simulation). So of the two the one whose start-time-of-state is later
 * wins, ABANDONED on a tie; an update or row without that time is accepted as the figure says.
 */
function crossedReclaim(
  localState: LeaseState,
  local: Lease | undefined,
  update: BindingUpdate,
): string | null {
  const theirs = update.startTimeOfState ?? 0;
  const ours = local?.starts ?? 0;
  if (theirs === 0 || ours === 0) return null;
  const older = localState === "abandoned" && update.state === "reset"
    ? theirs <= ours
    : localState === "reset" && update.state === "abandoned"
    ? theirs < ours
    : false;
  if (!older) return null;
  return `Outdated binding information: ${localState.toUpperCase()} <- ${update.state.toUpperCase()}, ` +
    `start-time-of-state ${theirs} is not later than ${ours} here`;
}

/**
 * Decides one binding update transaction from the partner (draft-12 §7.1.2, §7.1.3,
 * Figure 7.1.3-1) and, when accepted, returns the lease to store before the BNDACK.
 * `local` is this server's binding, or undefined when the store has no row for the address.
 */
export function acceptUpdate(
  local: Lease | undefined,
  update: BindingUpdate,
  context: AcceptContext,
): AcceptResult {
  // §7.1.3: "insufficient information in the BNDUPD to process it" -> reason 3.
  const missing = missingInformation(update);
  if (missing !== null) {
    return reject(
      RejectReason.MISSING_BINDING_INFORMATION,
      `Missing binding information: ${update.state.toUpperCase()} update lacks ${missing}`,
    );
  }
  // §7.1.3: an address not associated with this failover endpoint -> reason 1.
  if (!context.inPool) {
    return reject(
      RejectReason.ILLEGAL_IP_ADDRESS,
      "Illegal IP address (not part of any address pool)",
    );
  }

  const now = context.now;
  // A pool address without a row has never been used: the FREE/BACKUP row (§5.4: owned by the
  // primary). An ACTIVE binding whose lease-expiration-time has passed is over (§5.11 ACTIVE ->
  // EXPIRED), whether or not its server has marked it yet (a server that just started has
  // not): judged as EXPIRED, it does not refuse a live binding from the partner (rule 5 on
  // the primary), and an ended ACTIVE update does not take the address from a live binding
  // here (rule 5 on the secondary; time(2) refuses it). What is stored is the update as sent:
  // an ended ACTIVE becomes FREE only through EXPIRED and the partner's ack (§5.11), since a
  // newer renewal of it may still be on its way.
  const localState: LeaseState = local === undefined
    ? "free"
    : local.state === "active" && local.ends < now
    ? "expired"
    : local.state;
  const ended = update.state === "active" && update.ends !== undefined && update.ends < now;
  const column: LeaseState = ended && localState === "active" ? "expired" : update.state;
  const cell = ACCEPT_TABLE[ROW_OF[localState]][COLUMN_OF[column]];
  const pair = `${localState.toUpperCase()} <- ${column.toUpperCase()}`;

  switch (cell) {
    case "reject(4)":
      return reject(
        RejectReason.LESS_CRITICAL_BINDING,
        `Less critical binding information: ${pair}, the address is ABANDONED here`,
      );
    case "time(1)": {
      const localCltt = local?.cltt ?? 0;
      // ISC dhcpd 4.4.3 sends RELEASED with the client-last-transaction-time of the ACTIVE
      // binding it releases, not of the DHCPRELEASE, so the strict "later" of time(1) would
      // keep every lease ISC releases ACTIVE here until it ends. The same client's binding
      // with the same cltt is the binding being released: accept it. A later local cltt (a
      // renewal the partner had not seen) still wins.
      const releasesThisBinding = localState === "active" && update.state === "released" &&
        local !== undefined && localCltt !== 0 && update.cltt === localCltt &&
        sameClient(local, update);
      if (!isLater(update.cltt, localCltt) && !releasesThisBinding) {
        return reject(
          RejectReason.OUTDATED_BINDING,
          `Outdated binding information: ${pair}, client-last-transaction-time ` +
            `${update.cltt ?? "absent"} is not later than ${localCltt}`,
        );
      }
      break;
    }
    case "time(2)": {
      const ends = local?.ends ?? 0;
      // "Later than the lease-expiration-time": `now` is whole seconds, so any instant of the
      // second `ends` itself is later than the instant `ends` names. ISC dhcpd 4.4.3 expires
      // a lease and sends its EXPIRED update within that second; `now > ends` refused them all.
      if (!(now >= ends)) {
        return reject(
          RejectReason.OUTDATED_BINDING,
          `Outdated binding information: ${pair}, the lease here runs until ${ends}`,
        );
      }
      break;
    }
    case "time(3)": {
      const stos = local?.starts ?? 0;
      if (!isLater(update.cltt, stos)) {
        return reject(
          RejectReason.OUTDATED_BINDING,
          `Outdated binding information: ${pair}, client-last-transaction-time ` +
            `${update.cltt ?? "absent"} is not later than start-time-of-state ${stos}`,
        );
      }
      break;
    }
    case "accept(5)":
      // Rule (5): different clients -> the secondary yields, the primary rejects with 2.
      if (local !== undefined && !sameClient(local, update) && context.role === "primary") {
        return reject(
          RejectReason.FATAL_CONFLICT,
          "Fatal conflict exists: address in use by other client",
        );
      }
      break;
    case "accept": {
      const outdated = crossedReclaim(localState, local, update);
      if (outdated !== null) return reject(RejectReason.OUTDATED_BINDING, outdated);
      break;
    }
  }

  // §7.1.3 after Figure 7.1.3-1: a reserved BACKUP the receiver does not reserve -> 19 (SHOULD).
  if (update.state === "backup" && update.reserved === true && context.reserved !== true) {
    return reject(RejectReason.IP_NOT_RESERVED, "IP not reserved on this server");
  }

  // §5.4: which server may allocate an available address is the primary's pool decision. An
  // update that tells of a binding that had ended before this FREE or BACKUP row began
  // predates that decision: it is acked, and the row stays as it is. Storing it would undo a
  // move to BACKUP that crossed it on the wire, and both servers would take the address. A
  // binding ended at its lease-expiration-time (EXPIRED, RELEASED, an ACTIVE past its end; a
  // server may mark it EXPIRED late) or when it took its status (RESET, FREE).
  const endedAt = ended ? update.ends : STORED_AS[update.state] === "free"
    ? earliest(
      update.state === "expired" || update.state === "released" ? update.ends : undefined,
      update.startTimeOfState,
    )
    : undefined;
  if (
    local !== undefined && (local.state === "free" || local.state === "backup") &&
    endedAt !== undefined && endedAt <= local.starts
  ) {
    return {
      accept: true,
      lease: local,
      section: "§5.4",
      rule: `Figure 7.1.3-1 ${pair}: accept; older than this server's pool decision, kept`,
    };
  }

  // The other way round: a FREE or BACKUP update (a pool decision) made before the last
  // client transaction of this server's binding, which has ended here but is not yet acked
  // (EXPIRED, RELEASED), is older than that binding. It is acked and the row kept: its own
  // EXPIRED or RELEASED will take the address back to the pool on both servers (§5.11).
  const decidedAt = update.state === "free" || update.state === "backup"
    ? update.startTimeOfState
    : undefined;
  if (
    local !== undefined && (localState === "expired" || localState === "released") &&
    decidedAt !== undefined && decidedAt > 0 && decidedAt <= local.cltt
  ) {
    return {
      accept: true,
      lease: local,
      section: "§5.4",
      rule: `Figure 7.1.3-1 ${pair}: accept; older than this server's binding, kept`,
    };
  }

  return {
    accept: true,
    lease: storedLease(local, update, now),
    section: "§7.1.3",
    rule: `Figure 7.1.3-1 ${pair}: ${cell}`,
  };
}

// ---------------------------------------------------------------------------------------------
// 3. MCLT control of lease times (§5.2.1, §7.1.5)
// ---------------------------------------------------------------------------------------------

/** Inputs of maxLeaseTime(). */
export interface LeaseTimeOptions {
  now: number;
  mclt: number;
  /** The desired lease interval (configuration), seconds. */
  desired: number;
  /**
   * The address's current binding. Its tsfp/atsfp count only while it is ACTIVE (a renewal);
   * for a new binding the acknowledged potential lease interval is zero (§5.2.1 example).
   */
  lease?: Lease;
  /** The renewal (T1) fraction of the actual lease interval; default 0.5 (§5.2.1 example). */
  renewalFraction?: number;
}

/** The lease time to give the client and the times to send in the BNDUPD. */
export interface LeaseTimes {
  /** Actual lease interval for option 51, seconds. */
  leaseTime: number;
  /** lease-expiration-time for the BNDUPD: now + leaseTime. */
  leaseExpiration: number;
  /** potential-expiration-time for the BNDUPD: now + renewal interval + desired interval. */
  potentialExpiration: number;
  /** "desired" when the desired interval fits, "mclt" when the MCLT rule cut it. */
  limitedBy: "desired" | "mclt";
  section: string;
}

/**
 * The longest lease this server may give and what to tell the partner (draft-12 §5.2.1,
 * §7.1.5): at most the MCLT beyond max(acked, received potential-expiration-time).
 */
export function maxLeaseTime(options: LeaseTimeOptions): LeaseTimes {
  const { now, mclt, desired } = options;
  const fraction = options.renewalFraction ?? 0.5;
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`renewalFraction must be in (0, 1], got ${fraction}`);
  }
  const lease = options.lease;
  // §7.1.5: "no longer than the MCLT beyond the max(received-, acked-potential-expiration-time)".
  const potential = lease !== undefined && lease.state === "active"
    ? Math.max(lease.tsfp, lease.atsfp)
    : 0;
  // §5.2.1: "Take the remainder of the acknowledged potential lease interval" (zero if new).
  const remainder = Math.max(0, potential - now);
  const cap = remainder + mclt;
  const leaseTime = Math.max(0, Math.min(desired, cap));
  // §5.2.1: potential-expiration-time = now + renewal interval + desired lease interval.
  const potentialExpiration = now + Math.floor(leaseTime * fraction) + desired;
  return {
    leaseTime,
    leaseExpiration: now + leaseTime,
    potentialExpiration: Math.max(potentialExpiration, now + leaseTime),
    limitedBy: desired <= cap ? "desired" : "mclt",
    section: "§5.2.1",
  };
}
