/**
 * Lease events for the `hooks:` command, like dnsmasq's --dhcp-script: which event a committed
 * lease change is, and how it reaches the hook (environment variables and one JSON document
 * on stdin). Pure; lib/hooks/runner.ts runs the command.
 */
import { printable, toRecord } from "../cli/leases.ts";
import type { Lease, LeaseState } from "../store/store.ts";
import { formatIpv4, formatMac } from "../wire/ip.ts";

/**
 * `new`: a client got a lease (RFC 2131 §4.3.1, DHCPACK to a new binding); `renew`: a client
 * extended its own ACTIVE lease; `release`: DHCPRELEASE (§4.3.4); `expire`: an ACTIVE lease
 * ran out; `decline`: DHCPDECLINE (§4.3.3), the address is ABANDONED.
 */
export type HookEventName = "new" | "renew" | "release" | "expire" | "decline";

/** Every event name, in the order the README lists them. */
export const HOOK_EVENTS: readonly HookEventName[] = [
  "new",
  "renew",
  "release",
  "expire",
  "decline",
];

/** One lease event, as queued for the hook. */
export interface HookEvent {
  event: HookEventName;
  /** 1, 2, 3, ... since the server started; a gap means events were dropped. */
  sequence: number;
  /** Epoch seconds of the COMMIT that made the change durable. */
  time: number;
  /** The lease as committed. */
  lease: Lease;
  /** The state of the row before, or null when the address had no row. */
  previous: LeaseState | null;
  /** The subnet of the address as CIDR, or null when no subnet contains it. */
  subnet: string | null;
}

/** PATH for the hook: a clean environment, not duet's. */
export const HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function sameClient(a: Lease, b: Lease): boolean {
  if (a.clientId !== null && b.clientId !== null) return bytesEqual(a.clientId, b.clientId);
  return a.htype === b.htype && bytesEqual(a.hwAddress, b.hwAddress);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The event a committed change is, from the row before and after it; null when the change is
 * no client event (an abandoned address returning to the pool, a repeated state).
 */
export function classifyChange(before: Lease | undefined, after: Lease): HookEventName | null {
  switch (after.state) {
    case "active":
      // The core writes an ACTIVE row only for a DHCPACK: to the same client, a renewal.
      return before?.state === "active" && sameClient(before, after) ? "renew" : "new";
    case "released":
      return before?.state === "released" ? null : "release";
    case "expired":
      return before?.state === "expired" ? null : "expire";
    case "abandoned":
      return before?.state === "abandoned" ? null : "decline";
    default:
      return null;
  }
}

/** The environment of one hook run: DUET_* variables (README, "Lease-event hooks") and PATH. */
export function hookEnv(e: HookEvent): Record<string, string> {
  const l = e.lease;
  const lived = e.event === "new" || e.event === "renew";
  return {
    PATH: HOOK_PATH,
    DUET_EVENT: e.event,
    DUET_SEQUENCE: String(e.sequence),
    DUET_TIME: String(e.time),
    DUET_ADDRESS: formatIpv4(l.address),
    DUET_SUBNET: e.subnet ?? "",
    DUET_STATE: l.state,
    DUET_PREVIOUS_STATE: e.previous ?? "",
    DUET_HTYPE: String(l.htype),
    DUET_HW_ADDRESS: l.hwAddress.length > 0 ? formatMac(l.hwAddress) : "",
    DUET_CLIENT_ID: l.clientId === null ? "" : formatMac(l.clientId),
    // The client chooses its host name: control characters arrive as \u{NN} escapes.
    DUET_HOSTNAME: l.hostname === null ? "" : printable(l.hostname),
    DUET_STARTS: String(l.starts),
    DUET_ENDS: String(l.ends),
    DUET_CLTT: String(l.cltt),
    DUET_LEASE_TIME: lived ? String(Math.max(0, l.ends - l.cltt)) : "",
  };
}

/** The JSON document written to the hook's stdin, one line ending in a line feed. */
export function hookJson(e: HookEvent): string {
  return JSON.stringify({
    event: e.event,
    sequence: e.sequence,
    time: new Date(e.time * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
    subnet: e.subnet,
    "previous-state": e.previous,
    lease: toRecord(e.lease),
  }) + "\n";
}
