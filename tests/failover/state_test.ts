/**
 * The failover endpoint state machine (draft-12 §9, Fig. 9.2-1; §10 safe period). Expected states
 * and actions are written out per arrow; the transition table is never used as the oracle.
 */
import assert from "node:assert/strict";
import {
  type FailoverMachine,
  type FailoverRole,
  type FailoverState,
  localState,
  type Persisted,
  resume,
  service,
  shiftMachineTimes,
  type StateAction,
  type StateInput,
  transition,
} from "../../lib/failover/state.ts";
import { ServerState as S, serverStateName } from "../../lib/wire/failover.ts";

const T0 = 1_800_000_000;
const MCLT = 300;

/** A machine in `state`, built field by field (no transition involved). */
function machineIn(
  state: FailoverState,
  o: {
    role?: FailoverRole;
    communicating?: boolean;
    partner?: number;
    partnerFlags?: number;
    partnerStos?: number;
    lastOperational?: number;
    timeOfFailure?: number;
    everTalked?: boolean;
    updreqallPending?: boolean;
    safePeriod?: number;
    startupExpiry?: "previous" | "wait" | "partner-down";
    previousState?: FailoverState | null;
    previousStartTime?: number;
    timers?: FailoverMachine["timers"];
  } = {},
): FailoverMachine {
  return {
    role: o.role ?? "primary",
    startupExpiry: o.startupExpiry ?? "previous",
    safePeriod: o.safePeriod ?? 0,
    state,
    startTimeOfState: T0 - 1000,
    previousState: o.previousState ?? null,
    previousStartTime: o.previousStartTime ?? T0 - 1000,
    partner: o.partner === undefined ? null : {
      serverState: o.partner,
      serverFlags: o.partnerFlags ?? 0,
      startTimeOfState: o.partnerStos ?? T0 - 500,
    },
    everTalked: o.everTalked ?? true,
    communicating: o.communicating ?? false,
    commLostAt: o.communicating ? null : T0 - 100,
    lastOperational: o.lastOperational ?? T0 - 10,
    mclt: MCLT,
    learnedMclt: null,
    timeOfFailure: o.timeOfFailure ?? T0 - 10,
    lostStorage: false,
    updreqallPending: o.updreqallPending ?? false,
    timers: o.timers ?? {},
  };
}

/** The non-log actions, as compact strings. */
function acts(actions: StateAction[]): string[] {
  return actions.filter((a) => a.kind !== "log").map((a) => {
    switch (a.kind) {
      case "persist":
        return `persist:${a.persisted.state}`;
      case "send-state":
        return `send-state:${a.local.serverState}/${a.local.serverFlags}`;
      case "start-timer":
        return `start-timer:${a.name}@${a.at - T0}`;
      case "cancel-timer":
        return `cancel-timer:${a.name}`;
      default:
        return a.kind;
    }
  });
}

function up(partner: number, flags = 0, stos = T0 - 500): StateInput {
  return {
    kind: "comm-up",
    now: T0,
    partner: { serverState: partner, serverFlags: flags, startTimeOfState: stos },
  };
}
function st(partner: number, flags = 0): StateInput {
  return {
    kind: "partner-state",
    now: T0,
    partner: { serverState: partner, serverFlags: flags, startTimeOfState: T0 },
  };
}

Deno.test("transition() takes each arrow of Figure 9.2-1", async (t) => {
  // ---- STARTUP (§9.3.2) ----
  await t.step(
    "STARTUP, partner PARTNER-DOWN since after our last operation -> RECOVER + UPDREQ",
    () => {
      // §9.3.2 step 5, then RECOVER's comm-ok transition (§9.5.2)
      const m = machineIn(S.STARTUP, {
        previousState: S.NORMAL,
        lastOperational: T0 - 600,
        timers: { startup: T0 + 10 },
      });
      const r = transition(m, up(S.PARTNER_DOWN, 0, T0 - 300));
      assert.equal(r.machine.state, S.RECOVER);
      assert.deepEqual(acts(r.actions), [
        "cancel-timer:startup",
        "persist:6",
        "send-state:6/0",
        "send-updreq",
      ]);
    },
  );
  await t.step(
    "STARTUP, partner PARTNER-DOWN since the second of our last operation -> RECOVER",
    () => {
      // §9.3.2 step 5 in whole seconds: our STATE SHUTDOWN made the partner enter
      // PARTNER-DOWN in the second we stopped, so its entry counts as later.
      const m = machineIn(S.STARTUP, { previousState: S.NORMAL, lastOperational: T0 - 300 });
      const r = transition(m, up(S.PARTNER_DOWN, 0, T0 - 300));
      assert.equal(r.machine.state, S.RECOVER);
    },
  );
  await t.step(
    "STARTUP, partner PARTNER-DOWN since before our last operation -> POTENTIAL-CONFLICT",
    () => {
      // §9.3.2 step 5; §9.10.1 the primary sends UPDREQ on entry
      const m = machineIn(S.STARTUP, {
        previousState: S.COMMUNICATIONS_INTERRUPTED,
        lastOperational: T0 - 60,
      });
      const r = transition(m, up(S.PARTNER_DOWN, 0, T0 - 300));
      assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
      assert.deepEqual(acts(r.actions), ["persist:5", "send-state:5/0", "send-updreq"]);
    },
  );
  await t.step("STARTUP, comm OK -> previous-state, then its comm-ok transition", () => {
    // §9.3.2 step 5: previous COMMUNICATIONS-INTERRUPTED, partner COMMUNICATIONS-INTERRUPTED -> NORMAL
    const m = machineIn(S.STARTUP, { previousState: S.COMMUNICATIONS_INTERRUPTED });
    const r = transition(m, up(S.COMMUNICATIONS_INTERRUPTED));
    assert.equal(r.machine.state, S.NORMAL);
    assert.deepEqual(acts(r.actions), [
      "persist:3",
      "send-state:3/0",
      "persist:2",
      "send-state:2/0",
      "send-updates",
    ]);
  });
  await t.step("STARTUP, timer expires -> previous-state with its old start time", () => {
    // §9.3.2 step 6 (MAY go to previous-state)
    const m = machineIn(S.STARTUP, {
      previousState: S.PARTNER_DOWN,
      previousStartTime: T0 - 5000,
      timers: { startup: T0 },
    });
    const r = transition(m, { kind: "timer", now: T0, name: "startup" });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
    assert.equal(r.machine.startTimeOfState, T0 - 5000);
    assert.deepEqual(acts(r.actions), ["persist:4"]);
  });
  await t.step("STARTUP, timer expires, configured to wait -> stays in STARTUP", () => {
    // §9.3.2 step 6 (or the server MAY wait)
    const m = machineIn(S.STARTUP, {
      previousState: S.RECOVER,
      startupExpiry: "wait",
      timers: { startup: T0 },
    });
    const r = transition(m, { kind: "timer", now: T0, name: "startup" });
    assert.equal(r.machine.state, S.STARTUP);
    assert.deepEqual(acts(r.actions), []);
  });
  await t.step("STARTUP, timer expires, configured for PARTNER-DOWN -> PARTNER-DOWN", () => {
    // §9.3.2 step 1, last paragraph
    const m = machineIn(S.STARTUP, {
      previousState: S.RECOVER,
      startupExpiry: "partner-down",
      timers: { startup: T0 },
    });
    const r = transition(m, { kind: "timer", now: T0, name: "startup" });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
    assert.equal(r.machine.startTimeOfState, T0);
  });
  // ---- PARTNER-DOWN (§9.4.3) ----
  await t.step("PARTNER-DOWN, partner NORMAL -> POTENTIAL-CONFLICT", () => {
    const m = machineIn(S.PARTNER_DOWN, { communicating: true, partner: S.RECOVER });
    const r = transition(m, st(S.NORMAL));
    assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
    assert.deepEqual(acts(r.actions), ["persist:5", "send-state:5/0", "send-updreq"]);
  });
  await t.step("PARTNER-DOWN ignores a STATE with the STARTUP bit", () => {
    const m = machineIn(S.PARTNER_DOWN);
    const r = transition(m, up(S.NORMAL, 0x01));
    assert.equal(r.machine.state, S.PARTNER_DOWN);
    assert.deepEqual(acts(r.actions), ["persist:4"]); // only the partner's state is recorded
  });
  await t.step("PARTNER-DOWN, partner RECOVER -> stays", () => {
    const m = machineIn(S.PARTNER_DOWN);
    const r = transition(m, up(S.RECOVER));
    assert.equal(r.machine.state, S.PARTNER_DOWN);
  });
  await t.step("PARTNER-DOWN, partner RECOVER-DONE -> NORMAL", () => {
    const m = machineIn(S.PARTNER_DOWN, { communicating: true, partner: S.RECOVER });
    const r = transition(m, st(S.RECOVER_DONE));
    assert.equal(r.machine.state, S.NORMAL);
    assert.deepEqual(acts(r.actions), ["persist:2", "send-state:2/0", "send-updates"]);
  });
  // ---- RECOVER (§9.5.2) ----
  await t.step("RECOVER, partner CONFLICT-DONE -> POTENTIAL-CONFLICT", () => {
    const r = transition(machineIn(S.RECOVER, { role: "secondary" }), up(S.CONFLICT_DONE));
    assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
  });
  await t.step("RECOVER, partner PARTNER-DOWN -> UPDREQ, or UPDREQALL if never talked", () => {
    const a = transition(machineIn(S.RECOVER), up(S.PARTNER_DOWN));
    assert.equal(a.machine.state, S.RECOVER);
    assert.deepEqual(acts(a.actions), ["send-updreq", "persist:6"]); // partner's state recorded
    const b = transition(machineIn(S.RECOVER, { everTalked: false }), up(S.PARTNER_DOWN));
    // The pending UPDREQALL (and the partner's state) is stored before the request goes out.
    assert.deepEqual(acts(b.actions), ["persist:6", "send-updreqall"]);
  });
  await t.step(
    "RECOVER: an unanswered UPDREQALL is sent again, across a restart, until UPDDONE",
    () => {
      // §7.4, §9.5.2: the requester keeps asking for everything until an UPDDONE answers it.
      const pendingOf = (actions: StateAction[]) =>
        actions.filter((a) => a.kind === "persist").map((a) =>
          a.kind === "persist" ? a.persisted.updreqallPending : undefined
        );
      const first = transition(
        machineIn(S.RECOVER, { role: "secondary", everTalked: false }),
        up(S.NORMAL),
      );
      assert.ok(acts(first.actions).includes("send-updreqall"));
      assert.equal(first.machine.updreqallPending, true);
      assert.deepEqual(pendingOf(first.actions), [true]);
      assert.equal(first.machine.everTalked, true);
      // The link drops before UPDDONE; it returns: UPDREQALL again, though we have talked now.
      const down = transition(first.machine, { kind: "comm-down", now: T0 + 5 });
      assert.equal(down.machine.updreqallPending, true);
      const again = transition(down.machine, { ...up(S.NORMAL), now: T0 + 30 });
      assert.equal(again.machine.state, S.RECOVER);
      assert.ok(acts(again.actions).includes("send-updreqall"));
      assert.ok(!acts(again.actions).includes("send-updreq"));
      // A restart from the stored record still owes the UPDREQALL.
      const rec = first.actions.filter((a) => a.kind === "persist").at(-1);
      assert.ok(rec?.kind === "persist");
      const restarted = resume(rec.persisted, T0 + 40, { role: "secondary", mclt: MCLT }).machine;
      assert.equal(restarted.updreqallPending, true);
      const afterRestart = transition(restarted, { ...up(S.NORMAL), now: T0 + 41 });
      assert.equal(afterRestart.machine.state, S.RECOVER);
      assert.ok(acts(afterRestart.actions).includes("send-updreqall"));
      // UPDDONE answers it: cleared and stored; the next request is a plain UPDREQ.
      const done = transition(afterRestart.machine, { kind: "upddone", now: T0 + 42 });
      assert.equal(done.machine.updreqallPending, false);
      assert.equal(pendingOf(done.actions).at(-1), false);
      const later = transition(
        { ...done.machine, state: S.RECOVER, communicating: false },
        { ...up(S.NORMAL), now: T0 + 50 },
      );
      assert.deepEqual(acts(later.actions).filter((a) => a.startsWith("send-updreq")), [
        "send-updreq",
      ]);
      // A record written before the field existed reads as nothing pending.
      const { updreqallPending: _, ...old } = rec.persisted;
      const fromOld = resume(old, T0 + 40, { role: "secondary", mclt: MCLT }).machine;
      assert.equal(fromOld.updreqallPending, false);
      const oldUp = transition(fromOld, { ...up(S.NORMAL), now: T0 + 41 });
      assert.ok(acts(oldUp.actions).includes("send-updreq"));
    },
  );
  await t.step(
    "POTENTIAL-CONFLICT: the primary's UPDREQ is an UPDREQALL while one is pending",
    () => {
      // §9.10.1 asks for updates; an unanswered UPDREQALL (§7.4) must not be downgraded by it.
      const m = machineIn(S.RECOVER, { updreqallPending: true });
      const r = transition(m, up(S.POTENTIAL_CONFLICT));
      assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
      assert.deepEqual(acts(r.actions), ["persist:5", "send-state:5/0", "send-updreqall"]);
    },
  );
  await t.step("RECOVER, UPDDONE within MCLT of the failure -> RECOVER-WAIT with its timer", () => {
    const m = machineIn(S.RECOVER, {
      communicating: true,
      partner: S.PARTNER_DOWN,
      timeOfFailure: T0 - 100,
    });
    const r = transition(m, { kind: "upddone", now: T0 });
    assert.equal(r.machine.state, S.RECOVER_WAIT);
    assert.deepEqual(acts(r.actions), [
      "persist:254",
      "send-state:254/0",
      "start-timer:recover-wait@200",
    ]);
  });
  await t.step(
    "RECOVER, UPDDONE after MCLT since the failure -> RECOVER-DONE (wait skipped)",
    () => {
      // §9.6.2
      const m = machineIn(S.RECOVER, {
        communicating: true,
        partner: S.PARTNER_DOWN,
        timeOfFailure: T0 - 301,
      });
      const r = transition(m, { kind: "upddone", now: T0 });
      assert.equal(r.machine.state, S.RECOVER_DONE);
      assert.deepEqual(acts(r.actions), ["persist:9", "send-state:9/0"]);
    },
  );
  // ---- RECOVER-WAIT (§9.6.2) ----
  await t.step("RECOVER-WAIT, timer -> RECOVER-DONE (an early or stale firing is ignored)", () => {
    const m = machineIn(S.RECOVER_WAIT, { timers: { "recover-wait": T0 + 5 } });
    const early = transition(m, { kind: "timer", now: T0, name: "recover-wait" });
    assert.equal(early.machine.state, S.RECOVER_WAIT);
    const r = transition(m, { kind: "timer", now: T0 + 5, name: "recover-wait" });
    assert.equal(r.machine.state, S.RECOVER_DONE);
    assert.deepEqual(acts(r.actions), ["persist:9"]); // not communicating: no STATE
  });
  // ---- RECOVER-DONE (§9.7.2) ----
  await t.step(
    "RECOVER-DONE, comm OK with partner POTENTIAL-CONFLICT -> POTENTIAL-CONFLICT",
    () => {
      const r = transition(machineIn(S.RECOVER_DONE), up(S.POTENTIAL_CONFLICT));
      assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
    },
  );
  await t.step("RECOVER-DONE, partner NORMAL -> NORMAL", () => {
    const m = machineIn(S.RECOVER_DONE, {
      communicating: true,
      partner: S.PARTNER_DOWN,
      role: "secondary",
    });
    const r = transition(m, st(S.NORMAL));
    assert.equal(r.machine.state, S.NORMAL);
    assert.deepEqual(acts(r.actions), [
      "persist:2",
      "send-state:2/0",
      "send-updates",
      "send-poolreq",
    ]);
  });
  // ---- NORMAL (§9.8.4) ----
  await t.step("NORMAL, external command -> PARTNER-DOWN", () => {
    const r = transition(machineIn(S.NORMAL), {
      kind: "command",
      now: T0,
      command: "partner-down",
    });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
    assert.equal(r.machine.startTimeOfState, T0);
  });
  await t.step(
    "NORMAL, communications failed -> COMMUNICATIONS-INTERRUPTED with safe period timer",
    () => {
      const m = machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL, safePeriod: 3600 });
      const r = transition(m, { kind: "comm-down", now: T0 });
      assert.equal(r.machine.state, S.COMMUNICATIONS_INTERRUPTED);
      assert.equal(r.machine.commLostAt, T0);
      assert.deepEqual(acts(r.actions), ["persist:3", "start-timer:safe-period@3600"]);
    },
  );
  await t.step("NORMAL, partner PAUSED -> COMMUNICATIONS-INTERRUPTED", () => {
    const m = machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL });
    const r = transition(m, st(S.PAUSED));
    assert.equal(r.machine.state, S.COMMUNICATIONS_INTERRUPTED);
    assert.deepEqual(acts(r.actions), ["persist:3", "send-state:3/0"]);
  });
  await t.step("NORMAL, partner SHUTDOWN -> PARTNER-DOWN", () => {
    const m = machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL });
    const r = transition(m, st(S.SHUTDOWN));
    assert.equal(r.machine.state, S.PARTNER_DOWN);
  });
  await t.step("NORMAL secondary, primary moves POTENTIAL-CONFLICT -> CONFLICT-DONE: stays", () => {
    // §9.8.4 "expected" change. Found by the simulation (seed 10117): the secondary got its
    // UPDDONE first and went NORMAL, then the primary's STATE CONFLICT-DONE arrived; taken as
    // unexpected, it sent the secondary back to POTENTIAL-CONFLICT, the primary followed from
    // NORMAL, and the two went round the conflict resolution for ever.
    const m = machineIn(S.NORMAL, {
      role: "secondary",
      communicating: true,
      partner: S.POTENTIAL_CONFLICT,
    });
    const r = transition(m, st(S.CONFLICT_DONE));
    assert.equal(r.machine.state, S.NORMAL);
    assert.deepEqual(acts(r.actions), ["persist:2"], "only the partner's new state is stored");
  });
  await t.step(
    "NORMAL, partner moves to PARTNER-DOWN -> through COMM-INT into POTENTIAL-CONFLICT",
    () => {
      // §9.2: communications-failed transition, then the one for the partner's new state
      const m = machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL });
      const r = transition(m, st(S.PARTNER_DOWN));
      assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
      assert.deepEqual(acts(r.actions), [
        "persist:3",
        "send-state:3/0",
        "persist:5",
        "send-state:5/0",
        "send-updreq",
      ]);
    },
  );
  // ---- COMMUNICATIONS-INTERRUPTED (§9.9.3) ----
  await t.step("COMM-INT, safe period expires -> PARTNER-DOWN", () => {
    const m = machineIn(S.COMMUNICATIONS_INTERRUPTED, { timers: { "safe-period": T0 } });
    const r = transition(m, { kind: "timer", now: T0, name: "safe-period" });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
  });
  await t.step("COMM-INT, external command -> PARTNER-DOWN", () => {
    const m = machineIn(S.COMMUNICATIONS_INTERRUPTED, { timers: { "safe-period": T0 + 50 } });
    const r = transition(m, { kind: "command", now: T0, command: "partner-down" });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
    assert.deepEqual(acts(r.actions), ["cancel-timer:safe-period", "persist:4"]);
  });
  const ciCases: [string, number, number][] = [
    ["NORMAL -> NORMAL", S.NORMAL, S.NORMAL],
    ["COMM-INT -> NORMAL", S.COMMUNICATIONS_INTERRUPTED, S.NORMAL],
    ["RECOVER -> stays", S.RECOVER, S.COMMUNICATIONS_INTERRUPTED],
    ["RECOVER-WAIT -> stays (figure)", S.RECOVER_WAIT, S.COMMUNICATIONS_INTERRUPTED],
    ["RECOVER-DONE -> NORMAL", S.RECOVER_DONE, S.NORMAL],
    ["PARTNER-DOWN -> POTENTIAL-CONFLICT", S.PARTNER_DOWN, S.POTENTIAL_CONFLICT],
    ["POTENTIAL-CONFLICT -> POTENTIAL-CONFLICT", S.POTENTIAL_CONFLICT, S.POTENTIAL_CONFLICT],
    ["CONFLICT-DONE -> POTENTIAL-CONFLICT", S.CONFLICT_DONE, S.POTENTIAL_CONFLICT],
    [
      "RESOLUTION-INTERRUPTED -> POTENTIAL-CONFLICT",
      S.RESOLUTION_INTERRUPTED,
      S.POTENTIAL_CONFLICT,
    ],
    ["PAUSED -> stays", S.PAUSED, S.COMMUNICATIONS_INTERRUPTED],
    ["SHUTDOWN -> PARTNER-DOWN", S.SHUTDOWN, S.PARTNER_DOWN],
  ];
  for (const [label, partner, expected] of ciCases) {
    await t.step(`COMM-INT, comm OK with partner ${label}`, () => {
      const r = transition(machineIn(S.COMMUNICATIONS_INTERRUPTED), up(partner));
      assert.equal(r.machine.state, expected);
      assert.equal(r.machine.communicating, true);
      assert.equal(r.machine.commLostAt, null);
    });
  }
  await t.step("COMM-INT waiting on a RECOVER partner -> NORMAL once it is RECOVER-DONE", () => {
    const m = machineIn(S.COMMUNICATIONS_INTERRUPTED, { communicating: true, partner: S.RECOVER });
    const r = transition(m, st(S.RECOVER_DONE));
    assert.equal(r.machine.state, S.NORMAL);
  });
  // ---- POTENTIAL-CONFLICT (§9.10.3) ----
  await t.step("POTENTIAL-CONFLICT, communications failed -> RESOLUTION-INTERRUPTED", () => {
    const m = machineIn(S.POTENTIAL_CONFLICT, {
      communicating: true,
      partner: S.POTENTIAL_CONFLICT,
    });
    const r = transition(m, { kind: "comm-down", now: T0 });
    assert.equal(r.machine.state, S.RESOLUTION_INTERRUPTED);
  });
  await t.step("POTENTIAL-CONFLICT, primary gets UPDDONE -> CONFLICT-DONE", () => {
    const m = machineIn(S.POTENTIAL_CONFLICT, {
      communicating: true,
      partner: S.POTENTIAL_CONFLICT,
    });
    const r = transition(m, { kind: "upddone", now: T0 });
    assert.equal(r.machine.state, S.CONFLICT_DONE);
    assert.deepEqual(acts(r.actions), ["persist:11", "send-state:11/0"]);
  });
  await t.step("POTENTIAL-CONFLICT, secondary gets UPDDONE -> NORMAL", () => {
    const m = machineIn(S.POTENTIAL_CONFLICT, {
      role: "secondary",
      communicating: true,
      partner: S.CONFLICT_DONE,
    });
    const r = transition(m, { kind: "upddone", now: T0 });
    assert.equal(r.machine.state, S.NORMAL);
    assert.deepEqual(acts(r.actions), [
      "persist:2",
      "send-state:2/0",
      "send-updates",
      "send-poolreq",
    ]);
  });
  await t.step("POTENTIAL-CONFLICT, secondary sees the primary in CONFLICT-DONE -> UPDREQ", () => {
    const m = machineIn(S.POTENTIAL_CONFLICT, {
      role: "secondary",
      communicating: true,
      partner: S.POTENTIAL_CONFLICT,
    });
    const r = transition(m, st(S.CONFLICT_DONE));
    assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
    assert.deepEqual(acts(r.actions), ["send-updreq", "persist:5"]);
  });
  // ---- RESOLUTION-INTERRUPTED (§9.11.3) ----
  await t.step("RESOLUTION-INTERRUPTED, external command -> PARTNER-DOWN", () => {
    const r = transition(machineIn(S.RESOLUTION_INTERRUPTED), {
      kind: "command",
      now: T0,
      command: "partner-down",
    });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
  });
  await t.step("RESOLUTION-INTERRUPTED, comm OK -> POTENTIAL-CONFLICT", () => {
    const r = transition(machineIn(S.RESOLUTION_INTERRUPTED), up(S.RESOLUTION_INTERRUPTED));
    assert.equal(r.machine.state, S.POTENTIAL_CONFLICT);
    assert.deepEqual(acts(r.actions), ["persist:5", "send-state:5/0", "send-updreq"]);
  });
  // ---- CONFLICT-DONE (§9.12.3) ----
  await t.step("CONFLICT-DONE, communications failed -> stays", () => {
    const m = machineIn(S.CONFLICT_DONE, { communicating: true, partner: S.POTENTIAL_CONFLICT });
    const r = transition(m, { kind: "comm-down", now: T0 });
    assert.equal(r.machine.state, S.CONFLICT_DONE);
  });
  await t.step("CONFLICT-DONE, secondary enters NORMAL -> NORMAL", () => {
    const m = machineIn(S.CONFLICT_DONE, { communicating: true, partner: S.POTENTIAL_CONFLICT });
    const r = transition(m, st(S.NORMAL));
    assert.equal(r.machine.state, S.NORMAL);
  });
  // ---- PAUSED / SHUTDOWN (§9.13, §9.14) ----
  await t.step("pause command -> PAUSED, previous state stored, STATE sent", () => {
    const m = machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL });
    const r = transition(m, { kind: "command", now: T0, command: "pause" });
    assert.equal(r.machine.state, S.PAUSED);
    assert.deepEqual(acts(r.actions), ["persist:7", "send-state:7/0"]);
    const p = r.actions.find((a) => a.kind === "persist");
    assert.equal(p?.kind === "persist" ? p.persisted.previousState : -1, S.NORMAL);
  });
  await t.step("shutdown command -> SHUTDOWN with last time operational", () => {
    const m = machineIn(S.COMMUNICATIONS_INTERRUPTED);
    const r = transition(m, { kind: "command", now: T0 + 7, command: "shutdown" });
    assert.equal(r.machine.state, S.SHUTDOWN);
    assert.equal(r.machine.lastOperational, T0 + 7);
    assert.equal(r.machine.previousState, S.COMMUNICATIONS_INTERRUPTED);
  });
  await t.step("SHUTDOWN, partner moves to PARTNER-DOWN -> RECOVER recorded as previous", () => {
    const m = machineIn(S.SHUTDOWN, {
      communicating: true,
      partner: S.NORMAL,
      previousState: S.NORMAL,
    });
    const r = transition(m, st(S.PARTNER_DOWN));
    assert.equal(r.machine.state, S.SHUTDOWN);
    assert.equal(r.machine.previousState, S.RECOVER);
    const p = r.actions.find((a) => a.kind === "persist");
    assert.equal(p?.kind === "persist" ? p.persisted.previousState : -1, S.RECOVER);
  });
  await t.step("partner-down command is refused in RECOVER", () => {
    const r = transition(machineIn(S.RECOVER), {
      kind: "command",
      now: T0,
      command: "partner-down",
    });
    assert.equal(r.machine.state, S.RECOVER);
    assert.equal(r.actions[0]?.kind, "log");
  });
});

Deno.test("resume() applies §9.3.2 steps 1-3", async (t) => {
  const opts = { role: "primary" as const, mclt: MCLT };
  function stored(state: FailoverState, extra: Partial<Persisted> = {}): Persisted {
    return {
      state,
      startTimeOfState: T0 - 4000,
      previousState: null,
      partnerState: S.NORMAL,
      partnerStartTimeOfState: T0 - 4000,
      commLostAt: null,
      lastOperational: T0 - 100,
      mclt: null,
      ...extra,
    };
  }
  await t.step("no record: STARTUP with previous RECOVER, long startup timer", () => {
    const r = resume(null, T0, opts);
    assert.equal(r.machine.state, S.STARTUP);
    assert.equal(r.machine.previousState, S.RECOVER);
    assert.equal(r.machine.timeOfFailure, 0);
    assert.deepEqual(acts(r.actions), ["start-timer:startup@60"]); // §5.9: down longer than MCLT
    assert.deepEqual(localState(r.machine), {
      serverState: S.RECOVER,
      serverFlags: 1,
      startTimeOfState: T0,
    });
  });
  await t.step("NORMAL -> previous COMMUNICATIONS-INTERRUPTED (step 2), short timer", () => {
    const r = resume(stored(S.NORMAL), T0, opts);
    assert.equal(r.machine.previousState, S.COMMUNICATIONS_INTERRUPTED);
    assert.deepEqual(acts(r.actions), ["start-timer:startup@10"]); // §5.9: down less than MCLT
  });
  await t.step("POTENTIAL-CONFLICT -> previous RESOLUTION-INTERRUPTED (step 2)", () => {
    assert.equal(
      resume(stored(S.POTENTIAL_CONFLICT), T0, opts).machine.previousState,
      S.RESOLUTION_INTERRUPTED,
    );
  });
  await t.step("PARTNER-DOWN and COMM-INT resume as they were, start time kept", () => {
    const pd = resume(stored(S.PARTNER_DOWN), T0, opts).machine;
    assert.equal(pd.previousState, S.PARTNER_DOWN);
    assert.equal(pd.previousStartTime, T0 - 4000);
    assert.equal(
      resume(stored(S.COMMUNICATIONS_INTERRUPTED), T0, opts).machine.previousState,
      S.COMMUNICATIONS_INTERRUPTED,
    );
  });
  await t.step("PAUSED and SHUTDOWN resume the state before them (§9.13.2, §9.14.2)", () => {
    assert.equal(
      resume(stored(S.PAUSED, { previousState: S.NORMAL }), T0, opts).machine.previousState,
      S.COMMUNICATIONS_INTERRUPTED,
    );
    assert.equal(
      resume(stored(S.SHUTDOWN, { previousState: S.RECOVER }), T0, opts).machine.previousState,
      S.RECOVER,
    );
  });
  await t.step("lost stable storage: RECOVER, then UPDREQALL though the partner is known", () => {
    const r = resume(stored(S.NORMAL), T0, {
      ...opts,
      lostStableStorage: { timeOfFailure: T0 - 50 },
    });
    assert.equal(r.machine.previousState, S.RECOVER);
    const u = transition(r.machine, up(S.PARTNER_DOWN, 0, T0 - 10));
    assert.equal(u.machine.state, S.RECOVER);
    assert.ok(acts(u.actions).includes("send-updreqall"));
    const d = transition(u.machine, { kind: "upddone", now: T0 + 1 });
    assert.equal(d.machine.state, S.RECOVER_WAIT); // §9.6.2: T0-50 + 300 is still ahead
    assert.ok(acts(d.actions).includes("start-timer:recover-wait@250"));
  });
  await t.step("a secondary learns the MCLT from comm-up and persists it", () => {
    const r = resume(null, T0, { role: "secondary", mclt: 60 });
    const u = transition(r.machine, { ...up(S.RECOVER, 1), mclt: 900 } as StateInput);
    assert.equal(u.machine.mclt, 900);
    const p = u.actions.filter((a) => a.kind === "persist").at(-1);
    assert.equal(p?.kind === "persist" ? p.persisted.mclt : -1, 900);
  });
});

Deno.test("transition() runs the ISC fresh-pair sequence from both ends", () => {
  // NOTES.md §7 a1: both meet in RECOVER with the STARTUP flag, UPDREQALL both ways,
  // UPDDONE, RECOVER-DONE, NORMAL. Each machine's send-state feeds the other.
  const a = { m: resume(null, T0, { role: "primary", mclt: MCLT }).machine, sent: [] as string[] };
  const b = {
    m: resume(null, T0 + 5, { role: "secondary", mclt: MCLT }).machine,
    sent: [] as string[],
  };
  const queue: { to: typeof a; input: StateInput }[] = [];
  function run(side: typeof a, other: typeof a, input: StateInput): void {
    const r = transition(side.m, input);
    side.m = r.machine;
    for (const act of r.actions) {
      if (act.kind === "send-state") {
        side.sent.push(`STATE ${act.local.serverState}/${act.local.serverFlags}`);
        queue.push({
          to: other,
          input: { kind: "partner-state", now: T0 + 6, partner: act.local },
        });
      } else if (act.kind === "send-updreqall" || act.kind === "send-updreq") {
        side.sent.push(act.kind);
        // The partner answers with its updates, then UPDDONE.
        queue.push({ to: side, input: { kind: "upddone", now: T0 + 6 } });
      } else if (act.kind === "send-updates" || act.kind === "send-poolreq") {
        side.sent.push(act.kind);
      }
    }
  }
  // The link comes up: each side sees the other's STARTUP-flagged STATE.
  const la = localState(a.m);
  const lb = localState(b.m);
  assert.deepEqual(la, { serverState: S.RECOVER, serverFlags: 1, startTimeOfState: T0 });
  run(a, b, { kind: "comm-up", now: T0 + 6, partner: lb });
  run(b, a, { kind: "comm-up", now: T0 + 6, partner: la });
  for (let i = 0; i < 20 && queue.length > 0; i++) {
    const q = queue.shift()!;
    run(q.to, q.to === a ? b : a, q.input);
  }
  assert.equal(queue.length, 0);
  assert.equal(a.m.state, S.NORMAL);
  assert.equal(b.m.state, S.NORMAL);
  assert.deepEqual(a.sent, [
    "STATE 6/0",
    "send-updreqall",
    "STATE 9/0",
    "STATE 2/0",
    "send-updates",
  ]);
  assert.deepEqual(b.sent, [
    "STATE 6/0",
    "send-updreqall",
    "STATE 9/0",
    "STATE 2/0",
    "send-updates",
    "send-poolreq",
  ]);
});

Deno.test("transition() moves to PARTNER-DOWN after the safe period or by command", async (t) => {
  await t.step("auto: COMM-INT after restart, timer from the time communication was lost", () => {
    const p: Persisted = {
      state: S.NORMAL,
      startTimeOfState: T0 - 9000,
      previousState: null,
      partnerState: S.NORMAL,
      partnerStartTimeOfState: T0 - 9000,
      commLostAt: T0 - 1000,
      lastOperational: T0 - 20,
      mclt: null,
    };
    let m = resume(p, T0, { role: "primary", mclt: MCLT, safePeriod: 3600 }).machine;
    const s = transition(m, { kind: "timer", now: T0 + 10, name: "startup" });
    m = s.machine;
    assert.equal(m.state, S.COMMUNICATIONS_INTERRUPTED);
    assert.ok(acts(s.actions).includes("start-timer:safe-period@2600"));
    const early = transition(m, { kind: "timer", now: T0 + 2599, name: "safe-period" });
    assert.equal(early.machine.state, S.COMMUNICATIONS_INTERRUPTED);
    const d = transition(m, { kind: "timer", now: T0 + 2600, name: "safe-period" });
    assert.equal(d.machine.state, S.PARTNER_DOWN);
    assert.equal(d.machine.startTimeOfState, T0 + 2600);
  });
  await t.step("safe period 0 (default) starts no timer", () => {
    const m = machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL });
    const r = transition(m, { kind: "comm-down", now: T0 });
    assert.equal(r.machine.state, S.COMMUNICATIONS_INTERRUPTED);
    assert.deepEqual(r.machine.timers, {});
  });
  await t.step("operator command in COMM-INT", () => {
    const r = transition(machineIn(S.COMMUNICATIONS_INTERRUPTED), {
      kind: "command",
      now: T0,
      command: "partner-down",
    });
    assert.equal(r.machine.state, S.PARTNER_DOWN);
  });
});

Deno.test("service() says what each state may do for clients", async (t) => {
  const o = { now: T0, startTimeOfState: T0 - 100, mclt: MCLT };
  await t.step("unresponsive states", () => {
    for (
      const s of [S.STARTUP, S.RECOVER, S.RECOVER_WAIT, S.POTENTIAL_CONFLICT, S.PAUSED, S.SHUTDOWN]
    ) {
      const v = service(s, "primary", o);
      assert.equal(v.answer, "none", `state ${s}`);
      assert.equal(v.allocate, false);
      assert.equal(v.renewals, false);
    }
  });
  await t.step("NORMAL is balanced from the own pool", () => {
    const v = service(S.NORMAL, "secondary", o);
    assert.deepEqual([v.answer, v.renewals, v.allocate, v.ownPool, v.partnerPool], [
      "balanced",
      true,
      true,
      "BACKUP",
      false,
    ]);
  });
  await t.step("COMM-INT answers all: primary FREE, secondary BACKUP", () => {
    const p = service(S.COMMUNICATIONS_INTERRUPTED, "primary", o);
    assert.deepEqual([p.answer, p.ownPool, p.partnerPool], ["all", "FREE", false]);
    assert.equal(service(S.COMMUNICATIONS_INTERRUPTED, "secondary", o).ownPool, "BACKUP");
    assert.match(p.cite.ownPool, /§9\.9\.2/);
  });
  await t.step("RESOLUTION-INTERRUPTED and primary CONFLICT-DONE answer all", () => {
    assert.equal(service(S.RESOLUTION_INTERRUPTED, "secondary", o).answer, "all");
    assert.equal(service(S.CONFLICT_DONE, "primary", o).answer, "all");
    assert.equal(service(S.CONFLICT_DONE, "secondary", o).answer, "none");
  });
  await t.step("RECOVER-DONE answers renewals only", () => {
    const v = service(S.RECOVER_DONE, "primary", o);
    assert.deepEqual([v.answer, v.renewals, v.allocate], ["renewals", true, false]);
  });
  await t.step("PARTNER-DOWN uses the partner's addresses only MCLT after entry", () => {
    const before = service(S.PARTNER_DOWN, "primary", o);
    assert.deepEqual([before.answer, before.ownPool, before.partnerPool, before.partnerPoolAt], [
      "all",
      "FREE",
      false,
      T0 + 200,
    ]);
    const after = service(S.PARTNER_DOWN, "primary", { ...o, now: T0 + 200 });
    assert.equal(after.partnerPool, true);
  });
});

Deno.test("transition() 'operational' records the time of operation while serving, and only then (§9.3.2 step 5)", async (t) => {
  await t.step("NORMAL: lastOperational moves to now and is persisted", () => {
    const r = transition(machineIn(S.NORMAL, { communicating: true, partner: S.NORMAL }), {
      kind: "operational",
      now: T0 + 5,
    });
    assert.equal(r.machine.state, S.NORMAL);
    assert.equal(r.machine.lastOperational, T0 + 5);
    assert.deepEqual(acts(r.actions), ["persist:2"]);
  });
  for (const state of [S.RECOVER, S.STARTUP, S.POTENTIAL_CONFLICT, S.SHUTDOWN] as const) {
    await t.step(`${serverStateName(state)}: serves nobody, so nothing changes`, () => {
      const m = machineIn(state, { previousState: S.NORMAL });
      const r = transition(m, { kind: "operational", now: T0 + 5 });
      assert.equal(r.machine.lastOperational, m.lastOperational);
      assert.deepEqual(acts(r.actions), []);
    });
  }
});

Deno.test("shiftMachineTimes() moves this server's times and timers, not the partner's", () => {
  const m = machineIn(S.PARTNER_DOWN, {
    partner: S.COMMUNICATIONS_INTERRUPTED,
    timers: { "recover-wait": T0 + 50 },
  });
  const d = -86_400;
  const moved = shiftMachineTimes(m, d);
  assert.equal(moved.startTimeOfState, m.startTimeOfState + d);
  assert.equal(moved.previousStartTime, m.previousStartTime + d);
  assert.equal(moved.commLostAt, (m.commLostAt as number) + d);
  assert.equal(moved.lastOperational, m.lastOperational + d);
  assert.equal(moved.timeOfFailure, m.timeOfFailure + d);
  assert.deepEqual(moved.timers, { "recover-wait": T0 + 50 + d });
  assert.deepEqual(moved.partner, m.partner, "the partner's start-time-of-state is its own");
  assert.equal(m.startTimeOfState, T0 - 1000, "the input is not changed");
  // PARTNER-DOWN's partner pool opens MCLT after it began, on the moved timeline.
  const at = (x: FailoverMachine, now: number) =>
    service(x.state, x.role, { now, startTimeOfState: x.startTimeOfState, mclt: x.mclt })
      .partnerPool;
  assert.equal(at(moved, m.startTimeOfState + MCLT - 1 + d), false);
  assert.equal(at(moved, m.startTimeOfState + MCLT + d), true);
  assert.equal(shiftMachineTimes(m, 0), m);
  const fresh = machineIn(S.RECOVER, { timeOfFailure: 0 });
  assert.equal(shiftMachineTimes(fresh, 86_400).timeOfFailure, 0, "no failure known stays none");
  assert.throws(() => shiftMachineTimes(m, 0.5), RangeError);
});
