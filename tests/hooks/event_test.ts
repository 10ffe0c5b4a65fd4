/** classifyChange(), hookEnv() and hookJson(): which event a lease change is, and what the hook gets. */
import assert from "node:assert/strict";
import { classifyChange, hookEnv, type HookEvent, hookJson } from "../../lib/hooks/event.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";

const MAC_A = new Uint8Array([2, 0, 0, 0, 0, 1]);
const MAC_B = new Uint8Array([2, 0, 0, 0, 0, 2]);
const T = 1_800_000_000;

function lease(state: Lease["state"], extra: Partial<Lease> = {}): Lease {
  return {
    ...emptyLease(0xc0000264, state),
    hwAddress: MAC_A,
    starts: T,
    ends: T + 600,
    cltt: T,
    ...extra,
  };
}

Deno.test("classifyChange() names the event from the row before and after", async (t) => {
  const cases: [string, Lease | undefined, Lease, string | null][] = [
    // RFC 2131 §4.3.1: a DHCPACK for an address without a row, or a FREE/EXPIRED one.
    ["new: no row before", undefined, lease("active"), "new"],
    ["new: the address was free", lease("free"), lease("active"), "new"],
    ["new: the address was expired", lease("expired"), lease("active"), "new"],
    [
      "new: another client's released address",
      lease("released", { hwAddress: MAC_B }),
      lease(
        "active",
      ),
      "new",
    ],
    [
      "new: another client had it ACTIVE",
      lease("active", { hwAddress: MAC_B }),
      lease(
        "active",
      ),
      "new",
    ],
    // RFC 2131 §4.3.2 RENEWING/REBINDING: the same client, a newer cltt.
    ["renew", lease("active"), lease("active", { cltt: T + 300, ends: T + 900 }), "renew"],
    [
      "renew by client id",
      lease("active", { clientId: new Uint8Array([1, 2]), hwAddress: MAC_B }),
      lease("active", { clientId: new Uint8Array([1, 2]), cltt: T + 1 }),
      "renew",
    ],
    [
      "renew within the same second",
      lease("active"),
      lease("active", { tstp: T + 5 }),
      "renew",
    ],
    // RFC 2131 §4.3.4.
    ["release", lease("active"), lease("released", { ends: T + 60 }), "release"],
    ["expire", lease("active"), lease("expired"), "expire"],
    // RFC 2131 §4.3.3: DHCPDECLINE leaves the address ABANDONED (draft-12 §5.11).
    ["decline", lease("active"), lease("abandoned", { hwAddress: new Uint8Array(0) }), "decline"],
    ["decline of an offered address", undefined, lease("abandoned"), "decline"],
    ["an abandoned address back in the pool", lease("abandoned"), lease("free"), null],
    ["a repeated release", lease("released"), lease("released"), null],
    ["backup (failover bookkeeping)", lease("free"), lease("backup"), null],
  ];
  for (const [name, before, after, want] of cases) {
    await t.step(name, () => assert.equal(classifyChange(before, after), want));
  }
});

const EVENT: HookEvent = {
  event: "new",
  sequence: 7,
  time: T + 1,
  lease: lease("active", {
    clientId: new Uint8Array([1, 2, 0, 0, 0, 0, 1]),
    hostname: "bad\u0000name\u202e",
  }),
  previous: "expired",
  subnet: "192.0.2.0/24",
};

Deno.test("hookEnv() gives every DUET_ variable, and PATH, as strings", () => {
  assert.deepEqual(hookEnv(EVENT), {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    DUET_EVENT: "new",
    DUET_SEQUENCE: "7",
    DUET_TIME: String(T + 1),
    DUET_ADDRESS: "192.0.2.100",
    DUET_SUBNET: "192.0.2.0/24",
    DUET_STATE: "active",
    DUET_PREVIOUS_STATE: "expired",
    DUET_HTYPE: "1",
    DUET_HW_ADDRESS: "02:00:00:00:00:01",
    DUET_CLIENT_ID: "01:02:00:00:00:00:01",
    // A NUL cannot go into an environment variable; neither goes a raw override character.
    DUET_HOSTNAME: "bad\\u{0}name\\u{202e}",
    DUET_STARTS: String(T),
    DUET_ENDS: String(T + 600),
    DUET_CLTT: String(T),
    DUET_LEASE_TIME: "600",
  });
  const released = hookEnv({ ...EVENT, event: "release", previous: null, subnet: null });
  assert.equal(released.DUET_LEASE_TIME, "");
  assert.equal(released.DUET_PREVIOUS_STATE, "");
  assert.equal(released.DUET_SUBNET, "");
});

Deno.test("hookJson() writes one JSON line with the lease as duet leases --json prints it", () => {
  const text = hookJson(EVENT);
  assert.ok(text.endsWith("}\n"));
  assert.equal(text.indexOf("\n"), text.length - 1, "one line");
  assert.deepEqual(JSON.parse(text), {
    event: "new",
    sequence: 7,
    time: "2027-01-15T08:00:01Z",
    subnet: "192.0.2.0/24",
    "previous-state": "expired",
    lease: {
      address: "192.0.2.100",
      "hw-address": "02:00:00:00:00:01",
      "client-id": "01:02:00:00:00:00:01",
      hostname: "bad\u0000name\u202e",
      state: "active",
      starts: "2027-01-15T08:00:00Z",
      ends: "2027-01-15T08:10:00Z",
      acked: null,
      cltt: "2027-01-15T08:00:00Z",
      tstp: null,
      tsfp: null,
      atsfp: null,
    },
  });
});
