/**
 * Binding-status rules (draft-12 §5.11 Fig. 5.11-1, §7.1.3 Fig. 7.1.3-1, §5.2.1 MCLT). Expected
 * verdicts are written out per arrow and per cell; the tables under test are never the oracle.
 */
import assert from "node:assert/strict";
import {
  type AcceptContext,
  type AcceptResult,
  acceptUpdate,
  allowedLocalTransition,
  type BindingUpdate,
  maxLeaseTime,
  type TransitionContext,
} from "../../lib/failover/binding.ts";
import type { Lease, LeaseState } from "../../lib/store/store.ts";

const T0 = 1_800_000_000;
const MCLT = 300;
const ADDRESS = 0xc000020a; // 192.0.2.10
const MAC_A = new Uint8Array([0x02, 0, 0, 0, 0, 0x01]);
const MAC_B = new Uint8Array([0x02, 0, 0, 0, 0, 0x02]);

/** A stored lease, field by field. Client A, lease running until T0 + 500. */
function leaseIn(state: LeaseState, o: Partial<Lease> = {}): Lease {
  const noClient = state === "free" || state === "backup" || state === "abandoned";
  return {
    address: ADDRESS,
    state,
    htype: 1,
    hwAddress: noClient ? new Uint8Array(0) : MAC_A,
    clientId: null,
    hostname: null,
    starts: T0 - 1000,
    ends: state === "active" ? T0 + 500 : 0,
    cltt: noClient ? 0 : T0 - 1000,
    tstp: 0,
    tsfp: 0,
    atsfp: 0,
    relayInfo: null,
    ...o,
  };
}

/** A partner's update with the options Table 7.1-1 requires for `state` (client A, cltt T0). */
function update(state: LeaseState, o: Partial<BindingUpdate> = {}): BindingUpdate {
  const base: BindingUpdate = { address: ADDRESS, state, startTimeOfState: T0 };
  if (state === "active") {
    Object.assign(base, {
      hwAddress: MAC_A,
      cltt: T0,
      ends: T0 + 3600,
      potentialExpiration: T0 + 5400,
    });
  } else if (state === "expired" || state === "released") {
    Object.assign(base, { hwAddress: MAC_A, cltt: T0 });
  }
  return { ...base, ...o };
}

/** An update without start-time-of-state (a SHOULD of Table 7.1-1). */
function noStartTime(state: LeaseState): BindingUpdate {
  const u = update(state);
  delete u.startTimeOfState;
  return u;
}

function ctx(o: Partial<AcceptContext> = {}): AcceptContext {
  return { role: "secondary", now: T0, inPool: true, ...o };
}

function accepted(r: AcceptResult): Lease {
  if (!r.accept) assert.fail(`expected accept, got reject ${r.rejectReason}: ${r.message}`);
  return r.lease;
}

function rejected(r: AcceptResult, reason: number): void {
  if (r.accept) assert.fail(`expected reject ${reason}, got accept (${r.rule})`);
  assert.equal(r.rejectReason, reason, r.message);
}

// ---------------------------------------------------------------------------------------------

Deno.test("acceptUpdate() follows Figure 7.1.3-1 cell by cell", async (t) => {
  // Row ACTIVE -----------------------------------------------------------------------------
  await t.step("ACTIVE <- ACTIVE: accept(5), same client accepted by either role", () => {
    for (const role of ["primary", "secondary"] as const) {
      accepted(acceptUpdate(leaseIn("active"), update("active"), ctx({ role })));
    }
  });
  await t.step(
    "ACTIVE <- ACTIVE: accept(5), other client: secondary accepts, primary rejects 2",
    () => {
      const other = update("active", { hwAddress: MAC_B });
      const stored = accepted(acceptUpdate(leaseIn("active"), other, ctx({ role: "secondary" })));
      assert.deepEqual(stored.hwAddress, MAC_B);
      assert.equal(stored.ends, T0 + 3600); // the new binding's time, not max with the old client's
      rejected(acceptUpdate(leaseIn("active"), other, ctx({ role: "primary" })), 2);
      // A client-identifier on one side only names different clients (§7.1.1).
      const withId = update("active", { clientId: new Uint8Array([1, 2, 3]) });
      rejected(acceptUpdate(leaseIn("active"), withId, ctx({ role: "primary" })), 2);
    },
  );
  await t.step(
    "ACTIVE <- EXPIRED: time(2), accept only after the local lease-expiration-time",
    () => {
      rejected(acceptUpdate(leaseIn("active"), update("expired"), ctx({ now: T0 + 499 })), 15);
      // Whole seconds: the second of the lease-expiration-time is later than its instant (ISC
      // dhcpd 4.4.3 sends EXPIRED in that second).
      accepted(acceptUpdate(leaseIn("active"), update("expired"), ctx({ now: T0 + 500 })));
      accepted(acceptUpdate(leaseIn("active"), update("expired"), ctx({ now: T0 + 501 })));
    },
  );
  await t.step(
    "ACTIVE <- RELEASED: time(1), accept only a later client-last-transaction-time",
    () => {
      accepted(acceptUpdate(leaseIn("active"), update("released", { cltt: T0 - 999 }), ctx()));
      rejected(acceptUpdate(leaseIn("active"), update("released", { cltt: T0 - 2000 }), ctx()), 15);
      // An equal cltt: the same client's binding being released, as ISC dhcpd 4.4.3 sends it
      // (the cltt of the ACTIVE binding, not of the DHCPRELEASE): accepted. For another
      // client, or with no cltt on record, it is not later and is rejected.
      for (const role of ["primary", "secondary"] as const) {
        accepted(
          acceptUpdate(leaseIn("active"), update("released", { cltt: T0 - 1000 }), ctx({ role })),
        );
      }
      rejected(
        acceptUpdate(
          leaseIn("active"),
          update("released", { cltt: T0 - 1000, hwAddress: MAC_B }),
          ctx(),
        ),
        15,
      );
      // No cltt in the BNDUPD: "MUST NOT be considered later".
      const noCltt = update("released");
      delete noCltt.cltt;
      rejected(acceptUpdate(leaseIn("active"), noCltt, ctx()), 15);
      // No cltt in the local binding, one in the BNDUPD: "MUST be considered later".
      accepted(
        acceptUpdate(leaseIn("active", { cltt: 0 }), update("released", { cltt: 5 }), ctx()),
      );
    },
  );
  await t.step("ACTIVE <- FREE/BACKUP: time(2)", () => {
    for (const s of ["free", "backup"] as const) {
      rejected(acceptUpdate(leaseIn("active"), update(s), ctx({ now: T0 })), 15);
      accepted(acceptUpdate(leaseIn("active"), update(s), ctx({ now: T0 + 501 })));
    }
  });
  await t.step("ACTIVE <- RESET/ABANDONED: accept", () => {
    for (const s of ["reset", "abandoned"] as const) {
      accepted(acceptUpdate(leaseIn("active"), update(s), ctx()));
    }
  });

  // Row EXPIRED ----------------------------------------------------------------------------
  await t.step("EXPIRED <- ACTIVE: time(1)", () => {
    accepted(acceptUpdate(leaseIn("expired"), update("active", { cltt: T0 }), ctx()));
    rejected(acceptUpdate(leaseIn("expired"), update("active", { cltt: T0 - 1000 }), ctx()), 15);
  });
  await t.step("EXPIRED <- EXPIRED: accept", () => {
    accepted(acceptUpdate(leaseIn("expired"), update("expired", { cltt: 1 }), ctx()));
  });
  await t.step("EXPIRED <- RELEASED: accept", () => {
    accepted(acceptUpdate(leaseIn("expired"), update("released", { cltt: 1 }), ctx()));
  });
  await t.step("EXPIRED <- FREE/BACKUP: accept", () => {
    for (const s of ["free", "backup"] as const) {
      accepted(acceptUpdate(leaseIn("expired"), update(s), ctx()));
    }
  });
  await t.step("EXPIRED <- RESET/ABANDONED: accept", () => {
    for (const s of ["reset", "abandoned"] as const) {
      accepted(acceptUpdate(leaseIn("expired"), update(s), ctx()));
    }
  });

  // Row RELEASED ---------------------------------------------------------------------------
  await t.step("RELEASED <- ACTIVE: time(1)", () => {
    accepted(acceptUpdate(leaseIn("released"), update("active", { cltt: T0 }), ctx()));
    rejected(acceptUpdate(leaseIn("released"), update("active", { cltt: T0 - 1500 }), ctx()), 15);
  });
  await t.step("RELEASED <- EXPIRED: time(1)", () => {
    accepted(acceptUpdate(leaseIn("released"), update("expired", { cltt: T0 }), ctx()));
    rejected(acceptUpdate(leaseIn("released"), update("expired", { cltt: T0 - 1000 }), ctx()), 15);
  });
  await t.step("RELEASED <- RELEASED: accept", () => {
    accepted(acceptUpdate(leaseIn("released"), update("released", { cltt: 1 }), ctx()));
  });
  await t.step("RELEASED <- FREE/BACKUP: accept", () => {
    for (const s of ["free", "backup"] as const) {
      accepted(acceptUpdate(leaseIn("released"), update(s), ctx()));
    }
  });
  await t.step("RELEASED <- RESET/ABANDONED: accept", () => {
    for (const s of ["reset", "abandoned"] as const) {
      accepted(acceptUpdate(leaseIn("released"), update(s), ctx()));
    }
  });

  // Row FREE/BACKUP ------------------------------------------------------------------------
  for (const row of ["free", "backup"] as const) {
    const R = row.toUpperCase();
    await t.step(`${R} <- ACTIVE: accept (either role)`, () => {
      for (const role of ["primary", "secondary"] as const) {
        accepted(acceptUpdate(leaseIn(row), update("active", { cltt: 1 }), ctx({ role })));
      }
    });
    await t.step(`${R} <- EXPIRED: accept`, () => {
      accepted(acceptUpdate(leaseIn(row), update("expired", { cltt: 1 }), ctx()));
    });
    await t.step(`${R} <- RELEASED: accept`, () => {
      accepted(acceptUpdate(leaseIn(row), update("released", { cltt: 1 }), ctx()));
    });
    await t.step(`${R} <- FREE/BACKUP: accept`, () => {
      for (const s of ["free", "backup"] as const) {
        accepted(acceptUpdate(leaseIn(row), update(s), ctx()));
      }
    });
    await t.step(`${R} <- RESET/ABANDONED: accept`, () => {
      for (const s of ["reset", "abandoned"] as const) {
        accepted(acceptUpdate(leaseIn(row), update(s), ctx()));
      }
    });
  }

  // Row RESET ------------------------------------------------------------------------------
  await t.step("RESET <- ACTIVE: time(3), cltt against the local start-time-of-state", () => {
    // leaseIn("reset") entered RESET at T0 - 1000 and has cltt T0 - 1000.
    accepted(acceptUpdate(leaseIn("reset"), update("active", { cltt: T0 - 999 }), ctx()));
    rejected(acceptUpdate(leaseIn("reset"), update("active", { cltt: T0 - 1000 }), ctx()), 15);
    // time(3) reads start-time-of-state, not cltt: an old cltt with a newer RESET still rejects.
    const reset = leaseIn("reset", { cltt: T0 - 5000, starts: T0 - 10 });
    rejected(acceptUpdate(reset, update("active", { cltt: T0 - 20 }), ctx()), 15);
  });
  await t.step("RESET <- EXPIRED: accept", () => {
    accepted(acceptUpdate(leaseIn("reset"), update("expired", { cltt: 1 }), ctx()));
  });
  await t.step("RESET <- RELEASED: accept", () => {
    accepted(acceptUpdate(leaseIn("reset"), update("released", { cltt: 1 }), ctx()));
  });
  await t.step("RESET <- FREE/BACKUP: accept", () => {
    for (const s of ["free", "backup"] as const) {
      accepted(acceptUpdate(leaseIn("reset"), update(s), ctx()));
    }
  });
  await t.step("RESET <- RESET/ABANDONED: accept", () => {
    for (const s of ["reset", "abandoned"] as const) {
      accepted(acceptUpdate(leaseIn("reset"), update(s), ctx()));
    }
  });

  // Row ABANDONED --------------------------------------------------------------------------
  await t.step("ABANDONED <- ACTIVE: reject(4) with 16", () => {
    rejected(acceptUpdate(leaseIn("abandoned"), update("active", { cltt: T0 + 99 }), ctx()), 16);
  });
  await t.step("ABANDONED <- EXPIRED: reject(4) with 16", () => {
    rejected(acceptUpdate(leaseIn("abandoned"), update("expired"), ctx()), 16);
  });
  await t.step("ABANDONED <- RELEASED: reject(4) with 16", () => {
    rejected(acceptUpdate(leaseIn("abandoned"), update("released"), ctx()), 16);
  });
  await t.step("ABANDONED <- FREE/BACKUP: reject(4) with 16", () => {
    for (const s of ["free", "backup"] as const) {
      for (const role of ["primary", "secondary"] as const) {
        rejected(acceptUpdate(leaseIn("abandoned"), update(s), ctx({ role })), 16);
      }
    }
  });
  await t.step("ABANDONED <- RESET/ABANDONED: accept", () => {
    for (const s of ["reset", "abandoned"] as const) {
      accepted(acceptUpdate(leaseIn("abandoned"), update(s), ctx()));
    }
  });
});

Deno.test("acceptUpdate(): of a RESET and an ABANDONED that crossed, the later one wins on both sides", async (t) => {
  // The simulation's seed 1592592079 (with STATE sent after its sync): the secondary's RESET
  // of a reclaimed address, sent again on a new connection, crossed the primary's newer
  // ABANDONED; each side took the other's status and a lease was later lost.
  const reclaimedAt = T0 - 300;
  const declinedAt = T0 - 100;
  await t.step("an older RESET does not undo a newer ABANDONED (15)", () => {
    const here = leaseIn("abandoned", { starts: declinedAt });
    rejected(acceptUpdate(here, update("reset", { startTimeOfState: reclaimedAt }), ctx()), 15);
  });
  await t.step("and the newer ABANDONED replaces the older RESET on the other side", () => {
    const there = leaseIn("reset", { starts: reclaimedAt });
    const stored = accepted(
      acceptUpdate(there, update("abandoned", { startTimeOfState: declinedAt }), ctx()),
    );
    assert.equal(stored.state, "abandoned");
  });
  await t.step("a newer RESET (an operator's) frees an older ABANDONED", () => {
    const here = leaseIn("abandoned", { starts: reclaimedAt });
    const stored = accepted(
      acceptUpdate(here, update("reset", { startTimeOfState: declinedAt }), ctx()),
    );
    assert.equal(stored.state, "free");
    rejected(
      acceptUpdate(
        leaseIn("reset", { starts: declinedAt }),
        update("abandoned", {
          startTimeOfState: reclaimedAt,
        }),
        ctx(),
      ),
      15,
    );
  });
  await t.step("a tie goes to ABANDONED on both sides", () => {
    rejected(
      acceptUpdate(
        leaseIn("abandoned", { starts: T0 }),
        update("reset", { startTimeOfState: T0 }),
        ctx(),
      ),
      15,
    );
    assert.equal(
      accepted(
        acceptUpdate(
          leaseIn("reset", { starts: T0 }),
          update("abandoned", { startTimeOfState: T0 }),
          ctx(),
        ),
      ).state,
      "abandoned",
    );
  });
  await t.step("without a start-time-of-state the figure's accept stands", () => {
    accepted(
      acceptUpdate(leaseIn("abandoned", { starts: declinedAt }), noStartTime("reset"), ctx()),
    );
    accepted(
      acceptUpdate(leaseIn("reset", { starts: declinedAt }), noStartTime("abandoned"), ctx()),
    );
  });
});

Deno.test("acceptUpdate() applies the §7.1.3 checks before the table", async (t) => {
  await t.step("an address outside every pool is rejected with 1", () => {
    const r = acceptUpdate(undefined, update("free"), ctx({ inPool: false }));
    rejected(r, 1);
    assert.equal(!r.accept && r.message, "Illegal IP address (not part of any address pool)");
  });
  await t.step("an ACTIVE update without client or times is rejected with 3", () => {
    for (const field of ["hwAddress", "ends", "potentialExpiration"] as const) {
      const u = update("active");
      delete u[field];
      rejected(acceptUpdate(leaseIn("free"), u, ctx()), 3);
    }
  });
  await t.step(
    "a client-hardware-address longer than chaddr's 16 octets is rejected with 3",
    () => {
      for (const state of ["active", "released", "free"] as const) {
        const u = update(state, { hwAddress: new Uint8Array(17) });
        rejected(acceptUpdate(leaseIn("free"), u, ctx()), 3);
      }
      accepted(
        acceptUpdate(leaseIn("free"), update("active", { hwAddress: new Uint8Array(16) }), ctx()),
      );
    },
  );
  await t.step("FREE without client or times is complete (Table 7.1-1: all MAY)", () => {
    accepted(acceptUpdate(leaseIn("backup"), { address: ADDRESS, state: "free" }, ctx()));
  });
  await t.step("a reserved BACKUP the receiver does not reserve is rejected with 19", () => {
    rejected(acceptUpdate(leaseIn("free"), update("backup", { reserved: true }), ctx()), 19);
    accepted(
      acceptUpdate(leaseIn("free"), update("backup", { reserved: true }), ctx({ reserved: true })),
    );
  });
  await t.step("a pool address with no stored row is treated as FREE", () => {
    const stored = accepted(acceptUpdate(undefined, update("backup"), ctx()));
    assert.equal(stored.state, "backup");
    assert.equal(stored.address, ADDRESS);
    assert.equal(stored.starts, T0);
  });
});

Deno.test("acceptUpdate() stores what §5.11 and §7.1.5 say", async (t) => {
  await t.step("ACTIVE records lease-expiration and received potential-expiration (atsfp)", () => {
    const local = leaseIn("active", { tstp: T0 + 7000, tsfp: T0 + 6000, atsfp: T0 + 100 });
    const stored = accepted(acceptUpdate(local, update("active"), ctx({ now: T0 + 1 })));
    assert.deepEqual(stored, {
      ...local,
      ends: T0 + 3600,
      cltt: T0,
      starts: T0, // the BNDUPD's start-time-of-state
      atsfp: T0 + 5400,
      tstp: T0 + 7000, // what this server sent is untouched
      tsfp: T0 + 6000,
    });
  });
  await t.step("lease-expiration-time only grows for the same client (§7.1.5 SHOULD)", () => {
    const local = leaseIn("active", { ends: T0 + 9000, atsfp: T0 + 9999 });
    const stored = accepted(acceptUpdate(local, update("active"), ctx()));
    assert.equal(stored.ends, T0 + 9000);
    assert.equal(stored.atsfp, T0 + 9999);
  });
  await t.step(
    "a new ACTIVE binding starts without the old one's acked and received times (§5.2.1)",
    () => {
      // Found by the simulation (seed 237): the client released, the partner gave it the same
      // address again, and the renewal here counted the RELEASED update's acked time.
      const local = leaseIn("free", {
        hwAddress: MAC_A,
        tstp: T0 + 7000,
        tsfp: T0 + 7000,
        atsfp: T0 + 8000,
      });
      const stored = accepted(acceptUpdate(local, update("active"), ctx()));
      assert.equal(stored.tsfp, 0);
      assert.equal(stored.atsfp, T0 + 5400, "only the new binding's potential expiration");
      assert.equal(stored.tstp, T0 + 7000, "what this server sent is untouched");
      const other = leaseIn("active", { hwAddress: MAC_B, tsfp: T0 + 7000, atsfp: T0 + 8000 });
      const taken = accepted(acceptUpdate(other, update("active"), ctx({ role: "secondary" })));
      assert.deepEqual([taken.tsfp, taken.atsfp], [0, T0 + 5400], "another client's binding");
    },
  );
  await t.step("an ACTIVE binding past its lease-expiration-time counts as EXPIRED (§5.11)", () => {
    // Found by the simulation (seed 963): the primary restarted with an ACTIVE row whose lease
    // had ended while it was down (not yet marked EXPIRED). It refused the secondary's live
    // binding of another client with reason 2, then sent its ended one, and the secondary,
    // yielding to the primary (rule 5), dropped the lease its client held.
    const ended = leaseIn("active", { hwAddress: MAC_B, ends: T0 - 100 });
    const live = update("active", { cltt: T0, ends: T0 + 3600 });
    const stored = accepted(acceptUpdate(ended, live, ctx({ role: "primary" })));
    assert.equal(stored.state, "active");
    assert.deepEqual(stored.hwAddress, MAC_A);
    const liveHere = leaseIn("active", { ends: T0 + 3600 });
    const old = update("active", { hwAddress: MAC_B, cltt: T0 - 400, ends: T0 - 100 });
    const verdict = acceptUpdate(liveHere, old, ctx({ role: "secondary" }));
    assert.equal(verdict.accept, false);
    assert.equal(!verdict.accept && verdict.rejectReason, 15); // Outdated binding information
    // Over a binding that is not live here, an ended ACTIVE update is stored as it came, not as
    // FREE (seed 2498: its renewal was still on the way; FREE here let the primary give the
    // address to another client while the secondary's client held it).
    const expired = leaseIn("expired", { cltt: T0 - 400, ends: T0 - 300 });
    const newer = update("active", { cltt: T0 - 200, ends: T0 - 100 });
    const kept = accepted(acceptUpdate(expired, newer, ctx()));
    assert.equal(kept.state, "active");
    assert.equal(kept.ends, T0 - 100);
  });
  await t.step("an availability update older than a BACKUP row keeps it BACKUP (§5.4)", () => {
    // Found by the simulation (seed 537): on a new connection the secondary's EXPIRED update
    // crossed the primary's move of the same (then FREE) address to BACKUP. Stored as FREE,
    // it left the primary with FREE and the secondary with BACKUP: both gave the address out.
    const backup = leaseIn("backup", { starts: T0 + 100 });
    for (const s of ["expired", "released", "reset", "free"] as const) {
      const kept = accepted(acceptUpdate(backup, update(s, { startTimeOfState: T0 + 50 }), ctx()));
      assert.deepEqual(kept, backup, s);
    }
    // A binding that ended after the move (the secondary's client on a BACKUP address, its
    // ACTIVE update folded into the EXPIRED one) is news: FREE, as its sender will store.
    const later = accepted(
      acceptUpdate(backup, update("expired", { startTimeOfState: T0 + 150 }), ctx()),
    );
    assert.equal(later.state, "free");
    // Seed 9075: an ACTIVE binding that had ended before the move, sent back by the secondary
    // after a restart, is old news too.
    const endedBefore = update("active", { cltt: T0 - 200, ends: T0 + 80 });
    assert.deepEqual(accepted(acceptUpdate(backup, endedBefore, ctx({ now: T0 + 200 }))), backup);
    const endedAfter = update("active", { cltt: T0 + 110, ends: T0 + 150 });
    assert.equal(
      accepted(acceptUpdate(backup, endedAfter, ctx({ now: T0 + 200 }))).state,
      "active",
    );
    // Seed 2182: an EXPIRED marked late (start-time-of-state after the move) of a lease that
    // ended before it is old news as well: the binding ended at its lease-expiration-time.
    const lateMark = update("expired", { startTimeOfState: T0 + 150, ends: T0 + 90 });
    assert.deepEqual(accepted(acceptUpdate(backup, lateMark, ctx({ now: T0 + 200 }))), backup);
    // A time of 0 is absent (ISC sends 0): it says nothing.
    const zero = update("released", { startTimeOfState: T0 + 150, ends: 0 });
    assert.equal(accepted(acceptUpdate(backup, zero, ctx({ now: T0 + 200 }))).state, "free");
    // Without a start-time-of-state nothing says it is old.
    assert.equal(
      accepted(acceptUpdate(backup, noStartTime("released"), ctx()))
        .state,
      "free",
    );
  });
  await t.step(
    "a FREE or BACKUP update older than an ended binding here keeps the row (§5.4)",
    () => {
      // Found by the simulation (seed 1592598749): the secondary gave a BACKUP address to a
      // client while the primary was down; the restarted primary resent its old move to BACKUP,
      // which crossed the secondary's EXPIRED. Stored, it left the secondary with BACKUP and the
      // primary (after the EXPIRED) with FREE: both gave the address out.
      const mine = leaseIn("expired", { cltt: T0 + 100, ends: T0 + 150, starts: T0 + 151 });
      const oldMove = update("backup", { startTimeOfState: T0 + 20 });
      assert.deepEqual(accepted(acceptUpdate(mine, oldMove, ctx({ now: T0 + 200 }))), mine);
      // A move after the binding's last transaction (our EXPIRED's ack was lost) is news.
      const newMove = update("backup", { startTimeOfState: T0 + 160 });
      assert.equal(accepted(acceptUpdate(mine, newMove, ctx({ now: T0 + 200 }))).state, "backup");
    },
  );
  await t.step("accepted EXPIRED, RELEASED and RESET are stored as FREE (§5.11)", () => {
    for (const s of ["expired", "released", "reset"] as const) {
      const stored = accepted(
        acceptUpdate(leaseIn("active"), update(s, { cltt: T0 + 5 }), ctx({ now: T0 + 600 })),
      );
      assert.equal(stored.state, "free", s);
      assert.equal(stored.starts, T0 + 600, s); // FREE began when this server set it
      assert.deepEqual(stored.hwAddress, MAC_A, s); // the client may be kept (MAY)
    }
  });
  await t.step("ABANDONED drops the client (§5.11: MUST NOT appear)", () => {
    const stored = accepted(acceptUpdate(leaseIn("released"), update("abandoned"), ctx()));
    assert.equal(stored.state, "abandoned");
    assert.equal(stored.hwAddress.length, 0);
    assert.equal(stored.clientId, null);
  });
});

Deno.test("acceptUpdate() in the ISC RECOVER exchange follows the draft, not ISC", () => {
  // ISC 4.4.3 (NOTES §7 a1): a fresh pair in RECOVER; the secondary sends FREE for every address
  // and the ISC primary rejects each with 16 "incoming update is less critical than outgoing
  // update" because its own FREE update for the address is still outstanding. Figure 7.1.3-1
  // has FREE <- FREE = accept in every server state, so duet as primary accepts.
  const secondaryFree: BindingUpdate = {
    address: ADDRESS,
    state: "free",
    startTimeOfState: T0 - 5,
  };
  const stored = accepted(acceptUpdate(leaseIn("free"), secondaryFree, ctx({ role: "primary" })));
  assert.equal(stored.state, "free");
  assert.equal(stored.starts, T0 - 5);
  // And with no row yet (fresh store): still accepted.
  accepted(acceptUpdate(undefined, secondaryFree, ctx({ role: "primary" })));
});

// ---------------------------------------------------------------------------------------------

function tc(
  o: Partial<TransitionContext> & Pick<TransitionContext, "role" | "trigger">,
): TransitionContext {
  return { now: T0, mclt: MCLT, ...o };
}

function allowed(from: LeaseState, to: LeaseState, c: TransitionContext): boolean {
  return allowedLocalTransition(from, to, c).allowed;
}

Deno.test("allowedLocalTransition() follows Figure 5.11-1 arrow by arrow", async (t) => {
  const pdLong = { partnerDownSince: T0 - MCLT }; // MCLT has just passed
  const pdShort = { partnerDownSince: T0 - MCLT + 1 }; // one second short

  await t.step(
    "FREE -> ACTIVE 'leased by primary': primary yes; secondary only PARTNER-DOWN + MCLT",
    () => {
      assert.equal(
        allowed("free", "active", tc({ role: "primary", trigger: "dhcp-allocate" })),
        true,
      );
      assert.equal(
        allowed("free", "active", tc({ role: "secondary", trigger: "dhcp-allocate" })),
        false,
      );
      assert.equal(
        allowed("free", "active", tc({ role: "secondary", trigger: "dhcp-allocate", ...pdShort })),
        false,
      );
      assert.equal(
        allowed("free", "active", tc({ role: "secondary", trigger: "dhcp-allocate", ...pdLong })),
        true,
      );
    },
  );
  await t.step(
    "BACKUP -> ACTIVE 'leased by secondary': secondary yes; primary only PARTNER-DOWN + MCLT",
    () => {
      assert.equal(
        allowed("backup", "active", tc({ role: "secondary", trigger: "dhcp-allocate" })),
        true,
      );
      assert.equal(
        allowed("backup", "active", tc({ role: "primary", trigger: "dhcp-allocate" })),
        false,
      );
      assert.equal(
        allowed("backup", "active", tc({ role: "primary", trigger: "dhcp-allocate", ...pdShort })),
        false,
      );
      assert.equal(
        allowed("backup", "active", tc({ role: "primary", trigger: "dhcp-allocate", ...pdLong })),
        true,
      );
    },
  );
  await t.step("FREE -> BACKUP 'alloc. to sec.': primary yes; secondary only by note (2)", () => {
    assert.equal(allowed("free", "backup", tc({ role: "primary", trigger: "pool-balance" })), true);
    assert.equal(
      allowed("free", "backup", tc({ role: "secondary", trigger: "pool-balance" })),
      false,
    );
    assert.equal(
      allowed("free", "backup", tc({ role: "secondary", trigger: "pool-balance", ...pdLong })),
      true,
    );
  });
  await t.step(
    "BACKUP -> FREE (§5.4 take-back): primary on the secondary's ACK; never the secondary",
    () => {
      assert.equal(
        allowed("backup", "free", tc({ role: "primary", trigger: "partner-ack" })),
        true,
      );
      assert.equal(
        allowed("backup", "free", tc({ role: "secondary", trigger: "partner-ack" })),
        false,
      );
      assert.equal(
        allowed("backup", "free", tc({ role: "primary", trigger: "pool-balance" })),
        false,
      );
    },
  );
  await t.step(
    "ACTIVE -> EXPIRED 'lease expires': either role, once ends (+grace) is reached",
    () => {
      for (const role of ["primary", "secondary"] as const) {
        assert.equal(
          allowed("active", "expired", tc({ role, trigger: "lease-expired", ends: T0 - 1 })),
          true,
        );
        // At the end second itself the partner would refuse it (§7.1.3 time(2): "later than").
        assert.equal(
          allowed("active", "expired", tc({ role, trigger: "lease-expired", ends: T0 })),
          false,
        );
        assert.equal(allowed("active", "expired", tc({ role, trigger: "lease-expired" })), false);
      }
    },
  );
  await t.step("ACTIVE -> RELEASED 'DHCPRELEASE': either role", () => {
    for (const role of ["primary", "secondary"] as const) {
      assert.equal(allowed("active", "released", tc({ role, trigger: "dhcp-release" })), true);
      assert.equal(
        allowed("active", "released", tc({ role, trigger: "lease-expired", ends: 0 })),
        false,
      );
    }
  });
  for (const from of ["expired", "released", "reset"] as const) {
    const F = from.toUpperCase();
    await t.step(`${F} -> FREE 'Comm w/Partner': either role on the partner's ACK`, () => {
      for (const role of ["primary", "secondary"] as const) {
        assert.equal(allowed(from, "free", tc({ role, trigger: "partner-ack" })), true);
      }
    });
    await t.step(
      `${F} -> FREE note (1): in PARTNER-DOWN after the MCLT since entering ${F}`,
      () => {
        for (const role of ["primary", "secondary"] as const) {
          const base = {
            role,
            trigger: "partner-down-timeout" as const,
            partnerDownSince: T0 - 5000,
          };
          assert.equal(allowed(from, "free", tc({ ...base, startTimeOfState: T0 - MCLT })), true);
          assert.equal(
            allowed(from, "free", tc({ ...base, startTimeOfState: T0 - MCLT + 1 })),
            false,
          );
          // Not in PARTNER-DOWN: no.
          assert.equal(
            allowed(
              from,
              "free",
              tc({ role, trigger: "partner-down-timeout", startTimeOfState: T0 - 9999 }),
            ),
            false,
          );
          // Entered the status long ago but PARTNER-DOWN only just began: wait the MCLT from PARTNER-DOWN.
          assert.equal(
            allowed(
              from,
              "free",
              tc({
                role,
                trigger: "partner-down-timeout",
                startTimeOfState: T0 - 9999,
                partnerDownSince: T0 - 10,
              }),
            ),
            false,
          );
        }
      },
    );
  }
  await t.step("any -> ABANDONED 'DECLINE or server detected problem': either role", () => {
    for (const role of ["primary", "secondary"] as const) {
      for (const from of ["free", "active", "expired", "released", "reset", "backup"] as const) {
        assert.equal(
          allowed(from, "abandoned", tc({ role, trigger: "decline" })),
          true,
          `${role} ${from}`,
        );
      }
      assert.equal(allowed("active", "abandoned", tc({ role, trigger: "operator" })), false);
    }
  });
  await t.step("'External command' -> RESET: either role, from any status", () => {
    for (const role of ["primary", "secondary"] as const) {
      for (
        const from of ["free", "active", "expired", "released", "abandoned", "backup"] as const
      ) {
        assert.equal(
          allowed(from, "reset", tc({ role, trigger: "operator" })),
          true,
          `${role} ${from}`,
        );
      }
    }
  });
  await t.step("ABANDONED -> RESET note (3): either role", () => {
    for (const role of ["primary", "secondary"] as const) {
      assert.equal(allowed("abandoned", "reset", tc({ role, trigger: "abandoned-reclaim" })), true);
      assert.equal(allowed("active", "reset", tc({ role, trigger: "abandoned-reclaim" })), false);
    }
  });
  await t.step("EXPIRED/RELEASED -> ACTIVE (§5.11 text): same client, partner not yet told", () => {
    for (const role of ["primary", "secondary"] as const) {
      for (const from of ["expired", "released"] as const) {
        const c = { role, trigger: "dhcp-allocate" as const };
        assert.equal(
          allowed(from, "active", tc({ ...c, sameClient: true, sentToPartner: false })),
          true,
        );
        assert.equal(
          allowed(from, "active", tc({ ...c, sameClient: true, sentToPartner: true })),
          false,
        );
        assert.equal(
          allowed(from, "active", tc({ ...c, sameClient: false, sentToPartner: false })),
          false,
        );
        assert.equal(allowed(from, "active", tc(c)), false);
      }
    }
  });
  await t.step(
    "no arrow: ACTIVE -> FREE/BACKUP, EXPIRED -> BACKUP, RESET -> ACTIVE, ABANDONED -> FREE",
    () => {
      for (const role of ["primary", "secondary"] as const) {
        for (
          const trigger of ["partner-ack", "pool-balance", "dhcp-allocate", "operator"] as const
        ) {
          const c = tc({ role, trigger, ...pdLong });
          assert.equal(allowed("active", "free", c), false);
          assert.equal(allowed("active", "backup", c), false);
          assert.equal(allowed("expired", "backup", c), false);
          assert.equal(allowed("reset", "active", c), false);
          assert.equal(allowed("abandoned", "free", c), false);
        }
      }
    },
  );
  await t.step("unchanged status (a renewal) is allowed; results name the section", () => {
    const r = allowedLocalTransition(
      "active",
      "active",
      tc({ role: "secondary", trigger: "dhcp-allocate" }),
    );
    assert.deepEqual(r, { allowed: true, section: "§5.11", rule: "No binding-status change" });
    const no = allowedLocalTransition(
      "free",
      "active",
      tc({ role: "secondary", trigger: "dhcp-allocate" }),
    );
    assert.equal(no.allowed, false);
    assert.equal(no.section, "§5.11");
  });
});

// ---------------------------------------------------------------------------------------------

Deno.test("maxLeaseTime() follows the §5.2.1 examples", async (t) => {
  const HOUR = 3600;
  const DAYS3 = 3 * 24 * HOUR;
  await t.step("new lease: MCLT 1 h, desired 3 d -> 1 h; partner told t + 3 d + 1/2 h", () => {
    const r = maxLeaseTime({ now: T0, mclt: HOUR, desired: DAYS3 });
    assert.deepEqual(r, {
      leaseTime: HOUR,
      leaseExpiration: T0 + HOUR,
      potentialExpiration: T0 + DAYS3 + HOUR / 2,
      limitedBy: "mclt",
      section: "§5.2.1",
    });
  });
  await t.step(
    "renewal at t + 1/2 h after the ACK: remainder 3 d + MCLT > 3 d -> 3 d; partner told +4.5 d",
    () => {
      const t1 = T0 + HOUR / 2;
      const lease = leaseIn("active", { tstp: T0 + DAYS3 + HOUR / 2, tsfp: T0 + DAYS3 + HOUR / 2 });
      const r = maxLeaseTime({ now: t1, mclt: HOUR, desired: DAYS3, lease });
      assert.equal(r.leaseTime, DAYS3);
      assert.equal(r.limitedBy, "desired");
      assert.equal(r.leaseExpiration, t1 + DAYS3);
      assert.equal(r.potentialExpiration, t1 + 4.5 * 24 * HOUR);
    },
  );
  await t.step(
    "ISC 4.4.3 (NOTES §7 b): MCLT 300, default 600 -> 300 s, potential now + 750",
    () => {
      const r = maxLeaseTime({ now: T0, mclt: 300, desired: 600 });
      assert.equal(r.leaseTime, 300);
      assert.equal(r.potentialExpiration, T0 + 750);
    },
  );
  await t.step("a short acked remainder caps the lease at remainder + MCLT", () => {
    const lease = leaseIn("active", { tsfp: T0 + 100 });
    const r = maxLeaseTime({ now: T0, mclt: MCLT, desired: 3600, lease });
    assert.equal(r.leaseTime, 400);
    assert.equal(r.limitedBy, "mclt");
  });
  await t.step("the received potential time counts too (§7.1.5 max(received, acked))", () => {
    const lease = leaseIn("active", { tsfp: 0, atsfp: T0 + 4000 });
    assert.equal(maxLeaseTime({ now: T0, mclt: MCLT, desired: 3600, lease }).leaseTime, 3600);
  });
  await t.step("times of a binding that is no longer ACTIVE do not count (new lease)", () => {
    const lease = leaseIn("released", { tsfp: T0 + 90_000, atsfp: T0 + 90_000 });
    assert.equal(maxLeaseTime({ now: T0, mclt: MCLT, desired: 3600, lease }).leaseTime, MCLT);
  });
  await t.step("an acked time in the past leaves just the MCLT", () => {
    const lease = leaseIn("active", { tsfp: T0 - 50 });
    assert.equal(maxLeaseTime({ now: T0, mclt: MCLT, desired: 3600, lease }).leaseTime, MCLT);
  });
  await t.step("a bad renewal fraction is a caller bug", () => {
    assert.throws(
      () => maxLeaseTime({ now: T0, mclt: MCLT, desired: 60, renewalFraction: 0 }),
      RangeError,
    );
  });
});
