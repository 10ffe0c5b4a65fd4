/**
 * DHCP clients for the failover simulation: the RFC 2131 §4.4 client state machine (INIT,
 * SELECTING, REQUESTING, BOUND, RENEWING, REBINDING, INIT-REBOOT) on simulated time, sending
 * real DHCP messages (lib/cli/relay_client.ts buildRequest, encoded and decoded by
 * lib/wire/dhcp.ts). Broadcasts go through a relay to both servers; renewals are unicast to
 * the server that granted the lease. `secs` counts from the start of each exchange, so a
 * client its load-balancing owner ignores is answered by the other server after
 * load-balance-max-seconds (RFC 3074 §4).
 */
import { buildRequest } from "../../../lib/cli/relay_client.ts";
import {
  type DhcpMessage,
  DhcpType,
  encodeDhcp,
  getLeaseTime,
  getMessageType,
  getRebindingTime,
  getRenewalTime,
  getServerId,
} from "../../../lib/wire/dhcp.ts";
import type { Scheduler, TimerHandle } from "./clock.ts";

/** RFC 2131 Figure 5 states, plus powered off. */
export type ClientState =
  | "off"
  | "init"
  | "selecting"
  | "requesting"
  | "rebooting"
  | "bound"
  | "renewing"
  | "rebinding";

/** What a client holds after a DHCPACK, in server seconds (the lease's cltt and ends). */
export interface ClientLease {
  address: number;
  serverId: number;
  /** When the server made the DHCPACK, exactly (start is its whole second). */
  since: number;
  start: number;
  end: number;
  t1: number;
  t2: number;
}

/** How a client reaches the servers, and what the simulation learns from it. */
export interface ClientNet {
  readonly sched: Scheduler;
  rand(): number;
  /** Through the relay to both servers. */
  broadcast(client: SimClient, bytes: Uint8Array, msg: DhcpMessage): void;
  /** To one server, by its server identifier. */
  unicast(client: SimClient, serverId: number, bytes: Uint8Array, msg: DhcpMessage): void;
  /** The client accepted a DHCPACK: it uses `lease` from now on. */
  granted(client: SimClient, lease: ClientLease, ack: DhcpMessage): void;
  /** The client stopped using its address (expired, released, declined, NAKed). */
  ended(client: SimClient, why: string): void;
  note(text: string): void;
}

/** The relay's address (giaddr), inside the clients' subnet. */
export const RELAY = 0xc0000201; // 192.0.2.1

/** One simulated DHCP client. */
export class SimClient {
  readonly index: number;
  readonly mac: Uint8Array;
  /** Option 61, for some clients (RFC 2132 §9.14). */
  readonly clientId: Uint8Array | undefined;
  state: ClientState = "off";
  /** The lease in use, or the one remembered while off. */
  lease: ClientLease | null = null;
  /** Chance to send DHCPDECLINE for an address just acknowledged. */
  declineRate = 0.02;
  readonly #net: ClientNet;
  #xid = 0;
  /** When the current exchange began, ms (for `secs`). */
  #started = 0;
  #tries = 0;
  #offers: DhcpMessage[] = [];
  #chosen: DhcpMessage | null = null;
  #timer: TimerHandle | undefined;
  /** The address of the lease before this one, asked for again in DISCOVER. */
  #previous: number | undefined;

  constructor(net: ClientNet, index: number, withClientId: boolean) {
    this.#net = net;
    this.index = index;
    this.mac = new Uint8Array([2, 0, 0, 0, (index >> 8) & 0xff, index & 0xff]);
    this.clientId = withClientId ? new Uint8Array([0xff, 0, 0, 0x5e, index & 0xff]) : undefined;
    this.#xid = ((index + 1) * 0x10000) >>> 0;
  }

  /** The key the server's lease rows use for this client. */
  owns(hw: Uint8Array, clientId: Uint8Array | null): boolean {
    if (this.clientId !== undefined && clientId !== null) return equal(this.clientId, clientId);
    return equal(hw, this.mac);
  }

  get #sched(): Scheduler {
    return this.#net.sched;
  }

  #setTimer(ms: number, fn: () => void): void {
    this.#sched.cancel(this.#timer);
    this.#timer = this.#sched.after(ms, () => {
      this.#timer = undefined;
      fn();
    });
  }

  #newXid(): void {
    this.#xid = (this.#xid + 1) >>> 0;
  }

  #secs(): number {
    return Math.min(65535, Math.floor((this.#sched.nowMs - this.#started) / 1000));
  }

  #build(
    type: number,
    options: { ciaddr?: number; requested?: number; serverId?: number; giaddr?: number },
  ): DhcpMessage {
    const msg = buildRequest(type, this.mac, {
      xid: this.#xid,
      ...(this.clientId !== undefined ? { clientId: this.clientId } : {}),
      ...options,
    });
    msg.secs = this.#secs();
    return msg;
  }

  #broadcast(msg: DhcpMessage): void {
    this.#net.broadcast(this, encodeDhcp(msg), msg);
  }

  /** Powers on: INIT-REBOOT with a remembered, unexpired lease, else INIT (RFC 2131 §3.2, §3.1). */
  powerOn(): void {
    if (this.state !== "off") return;
    const l = this.lease;
    if (l !== null && l.end > this.#sched.now) {
      this.#reboot();
    } else {
      this.lease = null;
      this.#init();
    }
  }

  /** Powers off without a word: the lease is remembered (and counts as in use until its end). */
  powerOff(): void {
    if (this.state === "off") return;
    this.#sched.cancel(this.#timer);
    this.#net.note(`c${this.index} powers off`);
    if (this.state !== "bound" && this.state !== "renewing" && this.state !== "rebinding") {
      if (this.lease !== null && this.state !== "rebooting") this.lease = null;
    }
    this.state = "off";
  }

  /** DHCPRELEASE to the server that granted the lease (RFC 2131 §4.4.6), then INIT later. */
  release(): void {
    const l = this.lease;
    if (l === null || (this.state !== "bound" && this.state !== "renewing")) return;
    this.#newXid();
    this.#started = this.#sched.nowMs;
    const msg = this.#build(DhcpType.DHCPRELEASE, { ciaddr: l.address, serverId: l.serverId });
    this.#net.ended(this, "released");
    this.#net.unicast(this, l.serverId, encodeDhcp(msg), msg);
    this.#previous = l.address;
    this.lease = null;
    this.state = "init";
    this.#setTimer(1000 + this.#net.rand() * 20_000, () => this.#init());
  }

  #init(): void {
    this.state = "init";
    this.#tries = 0;
    this.#newXid();
    this.#started = this.#sched.nowMs;
    this.#discover();
  }

  #discover(): void {
    this.state = "selecting";
    this.#offers = [];
    const msg = this.#build(DhcpType.DHCPDISCOVER, {
      giaddr: RELAY,
      ...(this.#previous !== undefined ? { requested: this.#previous } : {}),
    });
    this.#broadcast(msg);
    this.#setTimer(500 + this.#net.rand() * 1000, () => this.#selected());
  }

  #selected(): void {
    const offer = this.#offers[0];
    if (offer === undefined) {
      // RFC 2131 §4.1: retransmit with a randomised exponential backoff, 4 s doubling to 64 s.
      const wait = Math.min(64, 4 * 2 ** this.#tries) * 1000 + (this.#net.rand() * 2 - 1) * 1000;
      this.#tries++;
      this.state = "init";
      this.#setTimer(wait, () => this.#discover());
      return;
    }
    this.#chosen = offer;
    this.#tries = 0;
    this.#request();
  }

  #request(): void {
    const offer = this.#chosen as DhcpMessage;
    this.state = "requesting";
    const msg = this.#build(DhcpType.DHCPREQUEST, {
      giaddr: RELAY,
      requested: offer.yiaddr,
      serverId: getServerId(offer) ?? 0,
    });
    this.#broadcast(msg);
    this.#setTimer(4000, () => {
      if (++this.#tries <= 2) this.#request();
      else this.#init();
    });
  }

  #reboot(): void {
    const l = this.lease as ClientLease;
    this.state = "rebooting";
    this.#tries = 0;
    this.#newXid();
    this.#started = this.#sched.nowMs;
    this.#rebootSend(l);
  }

  #rebootSend(l: ClientLease): void {
    const msg = this.#build(DhcpType.DHCPREQUEST, { giaddr: RELAY, requested: l.address });
    this.#broadcast(msg);
    this.#setTimer(2000 + this.#net.rand() * 2000, () => {
      if (this.lease !== l) return;
      if (l.end <= this.#sched.now) {
        this.#expired();
      } else if (++this.#tries <= 3) {
        this.#rebootSend(l);
      } else {
        // RFC 2131 §3.2: no answer; MAY use the address for the rest of the unexpired lease.
        this.#bound(l);
      }
    });
  }

  #bound(l: ClientLease): void {
    this.state = "bound";
    const now = this.#sched.now;
    if (now >= l.end) {
      this.#expired();
      return;
    }
    if (now < l.t1) this.#setTimer((l.t1 - now) * 1000, () => this.#renew());
    else if (now < l.t2) this.#renew();
    else this.#rebind();
  }

  #renew(): void {
    const l = this.lease as ClientLease;
    this.state = "renewing";
    this.#newXid();
    this.#started = this.#sched.nowMs;
    this.#renewSend(l);
  }

  #renewSend(l: ClientLease): void {
    const msg = this.#build(DhcpType.DHCPREQUEST, { ciaddr: l.address });
    this.#net.unicast(this, l.serverId, encodeDhcp(msg), msg);
    const now = this.#sched.now;
    // RFC 2131 §4.4.5: wait half the time left to T2 (at least a few seconds) before again.
    const next = Math.min(l.t2, now + Math.max(5, (l.t2 - now) / 2));
    this.#setTimer((next - now) * 1000, () => {
      if (this.lease !== l) return;
      if (this.#sched.now >= l.t2) this.#rebind();
      else this.#renewSend(l);
    });
  }

  #rebind(): void {
    const l = this.lease as ClientLease;
    this.state = "rebinding";
    this.#newXid();
    this.#started = this.#sched.nowMs;
    this.#rebindSend(l);
  }

  #rebindSend(l: ClientLease): void {
    const msg = this.#build(DhcpType.DHCPREQUEST, { giaddr: RELAY, ciaddr: l.address });
    this.#broadcast(msg);
    const now = this.#sched.now;
    const next = Math.min(l.end, now + Math.max(5, (l.end - now) / 2));
    this.#setTimer((next - now) * 1000, () => {
      if (this.lease !== l) return;
      if (this.#sched.now >= l.end) this.#expired();
      else this.#rebindSend(l);
    });
  }

  #expired(): void {
    this.#net.ended(this, "expired");
    this.#previous = this.lease?.address;
    this.lease = null;
    this.#init();
  }

  /** A reply for this client arrives, made at `madeAt` (its whole second: `handledAt`). */
  receive(reply: DhcpMessage, handledAt: number, madeAt: number): void {
    if (reply.xid !== this.#xid || this.state === "off") return;
    const type = getMessageType(reply);
    switch (this.state) {
      case "selecting":
        if (type === DhcpType.DHCPOFFER) this.#offers.push(reply);
        return;
      case "requesting":
        if (getServerId(reply) !== getServerId(this.#chosen as DhcpMessage)) return;
        if (type === DhcpType.DHCPACK) this.#acked(reply, handledAt, madeAt);
        else if (type === DhcpType.DHCPNAK) this.#naked();
        return;
      case "rebooting":
      case "renewing":
      case "rebinding":
        if (type === DhcpType.DHCPACK) this.#acked(reply, handledAt, madeAt);
        else if (type === DhcpType.DHCPNAK) this.#naked();
        return;
      default:
        return;
    }
  }

  #acked(ack: DhcpMessage, handledAt: number, madeAt: number): void {
    const leaseTime = getLeaseTime(ack) ?? 0;
    const l: ClientLease = {
      address: ack.yiaddr,
      serverId: getServerId(ack) ?? 0,
      since: madeAt,
      start: handledAt,
      end: handledAt + leaseTime,
      t1: handledAt + (getRenewalTime(ack) ?? Math.floor(leaseTime / 2)),
      t2: handledAt + (getRebindingTime(ack) ?? Math.floor(leaseTime * 0.875)),
    };
    const fresh = this.state === "requesting";
    this.lease = l;
    this.#net.granted(this, l, ack);
    if (fresh && this.#net.rand() < this.declineRate) {
      // RFC 2131 §4.4.1: the client found the address in use (ARP): DHCPDECLINE, INIT later.
      this.#newXid();
      this.#started = this.#sched.nowMs;
      const msg = this.#build(DhcpType.DHCPDECLINE, {
        giaddr: RELAY,
        requested: l.address,
        serverId: l.serverId,
      });
      this.#net.ended(this, "declined");
      this.#broadcast(msg);
      this.lease = null;
      this.#previous = undefined;
      this.state = "init";
      this.#setTimer(10_000, () => this.#init());
      return;
    }
    this.#bound(l);
  }

  #naked(): void {
    if (this.lease !== null) this.#net.ended(this, "NAKed");
    this.#previous = undefined;
    this.lease = null;
    this.state = "init";
    this.#setTimer(1000 + this.#net.rand() * 3000, () => this.#init());
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
