/**
 * The DHCP server core: a deterministic function of (request, arrival, leases, now) to
 * effects (RFC 2131 §4.3). It keeps only derived in-memory state (free addresses, offers
 * held, the expiry queue); leases are read through LeaseView and written as effects that
 * the shell runs in order.
 */
import type { Config, OptionMap, ReservationConfig, SubnetConfig } from "../config/types.ts";
import { Allocator } from "../alloc/allocator.ts";
import type { Logger } from "../log.ts";
import { emptyLease, type Lease, type LeaseState, type LeaseView } from "../store/store.ts";
import {
  type DhcpMessage,
  DhcpType,
  dhcpTypeName,
  encodeIp,
  encodeText,
  encodeU32,
  getClientId,
  getHostname,
  getLeaseTime,
  getLinkSelection,
  getMaxMessageSize,
  getMessageType,
  getRelayAgentInfo,
  getRequestedIp,
  getServerId,
  getSubnetSelection,
  hwAddress,
  newReply,
  Opt,
} from "../wire/dhcp.ts";
import { cidrBroadcast, cidrContains, formatIpv4, formatMac, toHex } from "../wire/ip.ts";
import { type Arrival, replyTarget } from "./reply.ts";
import type { SendTarget } from "./transport.ts";
import { MinHeap } from "./heap.ts";
import { CLIENT_ID_TAG, SeenFilter } from "./seen.ts";

/** Written to the store by the shell, in order. */
export interface PersistEffect {
  kind: "persist";
  lease: Lease;
}

/** Sent by the shell; `afterCommit` replies wait until every earlier persist is durable. */
export interface ReplyEffect {
  kind: "reply";
  message: DhcpMessage;
  to: SendTarget;
  /** The largest datagram the client accepts (RFC 2132 §9.10). */
  maxSize: number;
  afterCommit: boolean;
}

/** What handling one packet or one tick asks the shell to do. */
export type DhcpEffect = PersistEffect | ReplyEffect;

/** Why a request got no reply; counted in metrics. */
export type DropReason =
  | "not-a-request"
  | "no-message-type"
  | "unknown-message-type"
  | "no-subnet"
  | "pool-exhausted"
  | "other-server"
  | "not-ours"
  | "bad-request"
  | "rate-limited";

/** The result of handling one request. */
export interface DhcpOutcome {
  effects: DhcpEffect[];
  /** Set when nothing was sent, with the reason. */
  dropped?: DropReason;
}

/** Counters the shell exposes in status and metrics. */
export interface DhcpCounters {
  received: Record<string, number>;
  sent: Record<string, number>;
  dropped: Record<string, number>;
}

interface SubnetRuntime {
  config: SubnetConfig;
  /** Global options overlaid with the subnet's, plus the subnet mask and broadcast address. */
  options: OptionMap;
  allocator: Allocator;
  byHw: Map<string, ReservationConfig>;
  byClientId: Map<string, ReservationConfig>;
  reserved: Map<number, ReservationConfig>;
}

interface Offer {
  address: number;
  key: string;
  until: number;
  subnet: SubnetRuntime;
}

/** How long an address stays ABANDONED after a DHCPDECLINE before it is reused (Kea's default). */
export const DECLINE_HOLD_SECONDS = 86_400;
/** The smallest maximum message size a client may announce (RFC 2132 §9.10). */
const MIN_MAX_MESSAGE = 576;
/** IPv4 (20) and UDP (8) header bytes inside a maximum message size. */
const IP_UDP_HEADERS = 28;

/** Client identity for lookups: option 61 when present, else htype + chaddr (RFC 2131 §4.2). */
function clientKey(clientId: Uint8Array | undefined, htype: number, hw: Uint8Array): string {
  return clientId ? `c${toHex(clientId)}` : `h${htype}:${toHex(hw)}`;
}

function bytesEqual(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The identity of the client that sent a request. */
interface Client {
  key: string;
  clientId: Uint8Array | undefined;
  htype: number;
  hw: Uint8Array;
}

/** True when a lease belongs to this client: by client id when both have one, else by chaddr. */
function leaseIsClients(lease: Lease, c: Client): boolean {
  if (c.clientId && lease.clientId) return bytesEqual(c.clientId, lease.clientId);
  return lease.htype === c.htype && bytesEqual(lease.hwAddress, c.hw);
}

/** The standalone DHCPv4 server core. */
export class DhcpCore {
  readonly config: Config;
  readonly counters: DhcpCounters = { received: {}, sent: {}, dropped: {} };
  #view: LeaseView;
  #log: Logger;
  #subnets: SubnetRuntime[];
  #offers = new Map<number, Offer>();
  #offerByKey = new Map<string, number>();
  /** (ends, address) of ACTIVE and ABANDONED leases, for expiry; entries may be stale. */
  #expiry = new MinHeap();
  /** Clients that may have a lease row, so that new clients cost no lookup. */
  #seen = new SeenFilter();
  #u32Cache = new Map<number, Uint8Array>();

  constructor(config: Config, view: LeaseView, options: { logger: Logger }) {
    this.config = config;
    this.#view = view;
    this.#log = options.logger;
    this.#subnets = config.subnets.map((s) => buildSubnet(s, config.options));
    this.#loadLeases();
  }

  #loadLeases(): void {
    for (const lease of this.#view.iterate()) {
      this.#remember(lease);
      const subnet = this.#subnetOf(lease.address);
      if (!subnet) continue;
      if (lease.state === "active" || lease.state === "abandoned") {
        subnet.allocator.markUsed(lease.address);
        this.#expiry.push(lease.ends, lease.address);
      } else {
        subnet.allocator.release(lease.address);
      }
    }
  }

  #remember(lease: Lease): void {
    if (lease.hwAddress.length > 0) this.#seen.add(lease.htype, lease.hwAddress);
    if (lease.clientId) this.#seen.add(CLIENT_ID_TAG, lease.clientId);
  }

  /** Free and total dynamic addresses per subnet, for status and metrics. */
  utilisation(): { subnet: string; size: number; free: number }[] {
    return this.#subnets.map((s) => ({
      subnet: `${formatIpv4(s.config.subnet.network)}/${s.config.subnet.prefix}`,
      size: s.allocator.size,
      free: s.allocator.freeCount,
    }));
  }

  #subnetOf(address: number): SubnetRuntime | undefined {
    for (const s of this.#subnets) if (cidrContains(s.config.subnet, address)) return s;
    return undefined;
  }

  /**
   * The subnet a request belongs to (RFC 2131 §4.3.1): link selection (RFC 3527), subnet
   * selection (RFC 3011), the relay's giaddr, then the interface it arrived on, then
   * ciaddr for unicast renewals.
   */
  #selectSubnet(msg: DhcpMessage, arrival: Arrival): SubnetRuntime | undefined {
    if (msg.giaddr !== 0) {
      const link = getLinkSelection(msg) ?? getSubnetSelection(msg);
      if (link !== undefined) return this.#subnetOf(link);
      for (const s of this.#subnets) if (s.config.relays.includes(msg.giaddr)) return s;
      return this.#subnetOf(msg.giaddr);
    }
    const selection = getSubnetSelection(msg);
    if (selection !== undefined) return this.#subnetOf(selection);
    if (arrival.ifname !== null) {
      for (const s of this.#subnets) if (s.config.interface === arrival.ifname) return s;
    }
    if (arrival.localAddress !== null) {
      const s = this.#subnetOf(arrival.localAddress);
      if (s) return s;
    }
    if (msg.ciaddr !== 0 && arrival.srcAddress === msg.ciaddr) return this.#subnetOf(msg.ciaddr);
    return undefined;
  }

  #serverId(arrival: Arrival): number {
    return this.config.serverId ?? arrival.localAddress ?? 0;
  }

  #count(table: Record<string, number>, key: string): void {
    table[key] = (table[key] ?? 0) + 1;
  }

  #drop(reason: DropReason, msg: DhcpMessage, detail?: string): DhcpOutcome {
    this.#count(this.counters.dropped, reason);
    if (this.#log.debugEnabled) {
      this.#log.debug("Dropped DHCP request", {
        reason,
        type: dhcpTypeName(getMessageType(msg)),
        chaddr: formatMac(hwAddress(msg)),
        xid: msg.xid.toString(16),
        detail,
      });
    }
    return { effects: [], dropped: reason };
  }

  /** Handles one decoded request (RFC 2131 §4.3). */
  handle(msg: DhcpMessage, arrival: Arrival, now: number): DhcpOutcome {
    if (msg.op !== 1) return this.#drop("not-a-request", msg);
    const type = getMessageType(msg);
    if (type === undefined) return this.#drop("no-message-type", msg);
    this.#count(this.counters.received, dhcpTypeName(type));
    const hw = hwAddress(msg);
    const clientId = getClientId(msg);
    const client: Client = {
      key: clientKey(clientId, msg.htype, hw),
      clientId,
      htype: msg.htype,
      hw,
    };
    const subnet = this.#selectSubnet(msg, arrival);
    if (!subnet) return this.#drop("no-subnet", msg);
    switch (type) {
      case DhcpType.DHCPDISCOVER:
        return this.#discover(msg, arrival, client, subnet, now);
      case DhcpType.DHCPREQUEST:
        return this.#request(msg, arrival, client, subnet, now);
      case DhcpType.DHCPDECLINE:
        return this.#decline(msg, arrival, client, subnet, now);
      case DhcpType.DHCPRELEASE:
        return this.#release(msg, arrival, client, subnet, now);
      case DhcpType.DHCPINFORM:
        return this.#inform(msg, arrival, subnet);
      default:
        return this.#drop("unknown-message-type", msg);
    }
  }

  #reservationFor(subnet: SubnetRuntime, c: Client): ReservationConfig | undefined {
    if (subnet.reserved.size === 0) return undefined;
    if (c.clientId && subnet.byClientId.size > 0) {
      const r = subnet.byClientId.get(toHex(c.clientId));
      if (r) return r;
    }
    return subnet.byHw.size > 0 ? subnet.byHw.get(toHex(c.hw)) : undefined;
  }

  /** The client's leases in this subnet, newest first. */
  #clientLeases(subnet: SubnetRuntime, c: Client): Lease[] {
    const byHw = this.#seen.mayHave(c.htype, c.hw);
    if (!byHw && !(c.clientId && this.#seen.mayHave(CLIENT_ID_TAG, c.clientId))) return [];
    const found = c.clientId
      ? this.#view.findByClientId(c.clientId)
      : this.#view.findByHw(c.htype, c.hw);
    const out: Lease[] = [];
    for (const l of found) {
      if (cidrContains(subnet.config.subnet, l.address) && leaseIsClients(l, c)) out.push(l);
    }
    if (c.clientId && out.length === 0) {
      // A client that started sending option 61 keeps the binding it had by chaddr.
      for (const l of this.#view.findByHw(c.htype, c.hw)) {
        if (cidrContains(subnet.config.subnet, l.address) && l.clientId === null) out.push(l);
      }
    }
    return out;
  }

  /**
   * May this client have this address now? True when reserved for it, when its own
   * binding, or when a free pool address (not offered to someone else).
   */
  #availableFor(
    subnet: SubnetRuntime,
    address: number,
    c: Client,
    now: number,
    lease: Lease | undefined = this.#view.get(address),
  ): boolean {
    const reserved = subnet.reserved.get(address);
    if (reserved) return this.#reservationFor(subnet, c) === reserved;
    const offer = this.#offers.get(address);
    if (offer && offer.key !== c.key && offer.until > now) return false;
    if (lease && (lease.state === "active" || lease.state === "abandoned")) {
      // An expired binding stays its client's until tick() turns it EXPIRED.
      return lease.state === "active" && leaseIsClients(lease, c);
    }
    if (!subnet.allocator.contains(address)) return false;
    return subnet.allocator.isFree(address) || (offer !== undefined && offer.key === c.key) ||
      (lease !== undefined && leaseIsClients(lease, c));
  }

  /** Allocation order of the issue: reservation, current binding, requested, previous, any free. */
  #chooseAddress(
    msg: DhcpMessage,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
  ): number | undefined {
    const reservation = this.#reservationFor(subnet, c);
    if (reservation) return reservation.address;
    const held = this.#offerByKey.get(c.key);
    if (held !== undefined && this.#availableFor(subnet, held, c, now)) return held;
    const leases = this.#clientLeases(subnet, c);
    const current = leases.find((l) => l.state === "active" && l.ends > now);
    if (current) return current.address;
    const requested = getRequestedIp(msg);
    if (
      requested !== undefined && subnet.allocator.contains(requested) &&
      this.#availableFor(subnet, requested, c, now)
    ) {
      return requested;
    }
    for (const l of leases) {
      if (this.#availableFor(subnet, l.address, c, now) && subnet.allocator.contains(l.address)) {
        return l.address;
      }
    }
    return subnet.allocator.take();
  }

  #holdOffer(subnet: SubnetRuntime, address: number, c: Client, now: number): void {
    const previous = this.#offerByKey.get(c.key);
    if (previous !== undefined && previous !== address) this.#dropOffer(previous, true);
    subnet.allocator.takeAddress(address);
    const offer = { address, key: c.key, until: now + this.config.offerHold, subnet };
    this.#offers.set(address, offer);
    this.#offerByKey.set(c.key, address);
  }

  /** Forgets an offer; when `free`, the address goes back to the pool unless leased. */
  #dropOffer(address: number, free: boolean): void {
    const offer = this.#offers.get(address);
    if (!offer) return;
    this.#offers.delete(address);
    if (this.#offerByKey.get(offer.key) === address) this.#offerByKey.delete(offer.key);
    if (!free) return;
    const lease = this.#view.get(address);
    if (!lease || (lease.state !== "active" && lease.state !== "abandoned")) {
      offer.subnet.allocator.release(address);
    }
  }

  #leaseTime(msg: DhcpMessage, subnet: SubnetRuntime): number {
    const t = subnet.config.leaseTime;
    const asked = getLeaseTime(msg);
    if (asked === undefined) return t.default;
    return Math.min(t.max, Math.max(t.min, asked));
  }

  /** Builds a reply with the options of RFC 2131 Table 3 and the configured ones. */
  #reply(
    msg: DhcpMessage,
    type: number,
    arrival: Arrival,
    subnet: SubnetRuntime,
    yiaddr: number,
    leaseTime: number | null,
    reservation?: ReservationConfig,
  ): DhcpMessage {
    const reply = newReply(msg);
    reply.yiaddr = yiaddr;
    if (type === DhcpType.DHCPINFORM) reply.ciaddr = msg.ciaddr;
    const o = reply.options;
    o.set(
      Opt.MESSAGE_TYPE,
      new Uint8Array([type === DhcpType.DHCPINFORM ? DhcpType.DHCPACK : type]),
    );
    o.set(Opt.SERVER_ID, this.#u32(this.#serverId(arrival)));
    if (leaseTime !== null) {
      o.set(Opt.LEASE_TIME, this.#u32(leaseTime));
      o.set(Opt.RENEWAL_TIME, this.#u32(Math.floor(leaseTime * 0.5)));
      o.set(Opt.REBINDING_TIME, this.#u32(Math.floor(leaseTime * 0.875)));
    }
    let configured: OptionMap = subnet.options;
    if (yiaddr !== 0) {
      for (const pool of subnet.config.pools) {
        if (yiaddr >= pool.start && yiaddr <= pool.end && pool.options.size > 0) {
          configured = new Map(configured);
          for (const [k, v] of pool.options) configured.set(k, v);
        }
      }
    }
    if (reservation) {
      configured = new Map(configured);
      for (const [k, v] of reservation.options) configured.set(k, v);
      if (reservation.hostname !== null && !configured.has(Opt.HOSTNAME)) {
        configured.set(Opt.HOSTNAME, encodeText(reservation.hostname));
      }
    }
    // RFC 2131 §4.3.1: the subnet mask always; the rest as the client asked, in its order.
    o.set(Opt.SUBNET_MASK, configured.get(Opt.SUBNET_MASK) as Uint8Array);
    // Option 55 read in place (its raw octets), the client's order kept (RFC 2132 §9.8).
    const prl = msg.options.get(Opt.PARAMETER_REQUEST_LIST);
    if (prl !== undefined && prl.length > 0) {
      for (const code of prl) {
        const v = configured.get(code);
        if (v !== undefined && !o.has(code)) o.set(code, v);
      }
    } else {
      for (const [k, v] of configured) if (!o.has(k) && k !== Opt.BROADCAST_ADDRESS) o.set(k, v);
    }
    const relay = getRelayAgentInfo(msg);
    if (relay !== undefined && msg.giaddr !== 0) o.set(Opt.RELAY_AGENT_INFO, relay);
    return reply;
  }

  /**
   * Four-octet option values (server id, lease times) repeat in every reply: encode each
   * once. Cached arrays are shared between replies and only ever read by the encoder.
   */
  #u32(v: number): Uint8Array {
    let b = this.#u32Cache.get(v);
    if (b === undefined) {
      if (this.#u32Cache.size >= 1024) this.#u32Cache.clear();
      b = encodeU32(v);
      this.#u32Cache.set(v, b);
    }
    return b;
  }

  #nak(msg: DhcpMessage, arrival: Arrival, text: string): DhcpOutcome {
    const reply = newReply(msg);
    reply.options.set(Opt.MESSAGE_TYPE, new Uint8Array([DhcpType.DHCPNAK]));
    reply.options.set(Opt.SERVER_ID, this.#u32(this.#serverId(arrival)));
    reply.options.set(Opt.MESSAGE, encodeText(text));
    const relay = getRelayAgentInfo(msg);
    if (relay !== undefined && msg.giaddr !== 0) reply.options.set(Opt.RELAY_AGENT_INFO, relay);
    if (msg.giaddr !== 0) reply.flags |= 0x8000; // RFC 2131 §4.3.2: relays broadcast a NAK
    this.#count(this.counters.sent, "DHCPNAK");
    this.#log.info("Sent DHCPNAK", {
      chaddr: formatMac(hwAddress(msg)),
      reason: text,
      giaddr: msg.giaddr ? formatIpv4(msg.giaddr) : undefined,
    });
    return { effects: [this.#send(msg, reply, arrival, false)] };
  }

  #send(msg: DhcpMessage, reply: DhcpMessage, arrival: Arrival, afterCommit: boolean): ReplyEffect {
    const asked = getMaxMessageSize(msg);
    // RFC 2132 §9.10 counts the whole IP datagram: take off the IP and UDP headers.
    const maxSize =
      (asked !== undefined && asked >= MIN_MAX_MESSAGE ? Math.min(asked, 1500) : MIN_MAX_MESSAGE) -
      IP_UDP_HEADERS;
    return {
      kind: "reply",
      message: reply,
      to: replyTarget(msg, reply, arrival),
      maxSize,
      afterCommit,
    };
  }

  #discover(
    msg: DhcpMessage,
    arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
  ): DhcpOutcome {
    const address = this.#chooseAddress(msg, c, subnet, now);
    if (address === undefined) {
      this.#log.warn("No free address to offer", {
        subnet: `${formatIpv4(subnet.config.subnet.network)}/${subnet.config.subnet.prefix}`,
      });
      return this.#drop("pool-exhausted", msg);
    }
    this.#holdOffer(subnet, address, c, now);
    const reply = this.#reply(
      msg,
      DhcpType.DHCPOFFER,
      arrival,
      subnet,
      address,
      this.#leaseTime(msg, subnet),
      this.#reservationFor(subnet, c),
    );
    this.#count(this.counters.sent, "DHCPOFFER");
    if (this.#log.debugEnabled) {
      this.#log.debug("DHCPDISCOVER -> DHCPOFFER", {
        chaddr: formatMac(c.hw),
        address: formatIpv4(address),
        xid: msg.xid.toString(16),
      });
    }
    return { effects: [this.#send(msg, reply, arrival, false)] };
  }

  /** RFC 2131 §4.3.2: SELECTING, INIT-REBOOT, RENEWING and REBINDING. */
  #request(
    msg: DhcpMessage,
    arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
  ): DhcpOutcome {
    const serverId = getServerId(msg);
    const requested = getRequestedIp(msg);
    const authoritative = subnet.config.authoritative;
    let address: number;
    if (serverId !== undefined) {
      // SELECTING: the client chose a server.
      if (serverId !== this.#serverId(arrival)) {
        const held = this.#offerByKey.get(c.key);
        if (held !== undefined) this.#dropOffer(held, true);
        return this.#drop("other-server", msg, formatIpv4(serverId));
      }
      if (requested === undefined) return this.#drop("bad-request", msg, "no requested address");
      address = requested;
    } else if (requested !== undefined) {
      // INIT-REBOOT: ciaddr is 0 and the client asks for the address it remembers.
      address = requested;
    } else if (msg.ciaddr !== 0) {
      // RENEWING (unicast) or REBINDING (broadcast).
      address = msg.ciaddr;
    } else {
      return this.#drop("bad-request", msg, "no requested address and no ciaddr");
    }

    if (!cidrContains(subnet.config.subnet, address)) {
      if (authoritative) return this.#nak(msg, arrival, "Address is not on this network");
      return this.#drop("not-ours", msg, formatIpv4(address));
    }
    const existing = this.#view.get(address);
    if (!this.#availableFor(subnet, address, c, now, existing)) {
      const known = authoritative || this.#offerByKey.has(c.key) ||
        this.#reservationFor(subnet, c) !== undefined ||
        this.#clientLeases(subnet, c).length > 0;
      if (known) return this.#nak(msg, arrival, "Address is not available");
      return this.#drop("not-ours", msg, formatIpv4(address));
    }
    const reservation = this.#reservationFor(subnet, c);
    if (reservation && reservation.address !== address) {
      return this.#nak(msg, arrival, "Address is reserved for another client");
    }
    if (!reservation && !subnet.allocator.contains(address)) {
      // In the subnet but outside every pool and not reserved: not ours to give.
      if (authoritative) return this.#nak(msg, arrival, "Address is not in a pool");
      return this.#drop("not-ours", msg, formatIpv4(address));
    }
    return this.#ack(msg, arrival, c, subnet, address, now, reservation, existing);
  }

  #ack(
    msg: DhcpMessage,
    arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    address: number,
    now: number,
    reservation: ReservationConfig | undefined,
    old: Lease | undefined,
  ): DhcpOutcome {
    const leaseTime = this.#leaseTime(msg, subnet);
    const renewing = old !== undefined && old.state === "active" && leaseIsClients(old, c);
    const lease: Lease = {
      ...emptyLease(address, "active"),
      htype: c.htype,
      hwAddress: c.hw,
      clientId: c.clientId ?? null,
      hostname: getHostname(msg) ?? reservation?.hostname ?? null,
      starts: renewing ? old.starts : now,
      ends: now + leaseTime,
      cltt: now,
      tstp: old?.tstp ?? 0,
      tsfp: old?.tsfp ?? 0,
      atsfp: old?.atsfp ?? 0,
      relayInfo: msg.giaddr !== 0 ? getRelayAgentInfo(msg) ?? null : null,
    };
    this.#dropOffer(address, false);
    const held = this.#offerByKey.get(c.key);
    if (held !== undefined) this.#dropOffer(held, true);
    subnet.allocator.markUsed(address);
    this.#expiry.push(lease.ends, address);
    this.#remember(lease);
    const reply = this.#reply(
      msg,
      DhcpType.DHCPACK,
      arrival,
      subnet,
      address,
      leaseTime,
      reservation,
    );
    this.#count(this.counters.sent, "DHCPACK");
    this.#log.info(renewing ? "Renewed lease" : "Leased address", {
      address: formatIpv4(address),
      chaddr: formatMac(c.hw),
      hostname: lease.hostname ?? undefined,
      ends: lease.ends,
    });
    return {
      effects: [{ kind: "persist", lease }, this.#send(msg, reply, arrival, true)],
    };
  }

  /** RFC 2131 §4.3.3: the client found the address in use; it is ABANDONED for a while. */
  #decline(
    msg: DhcpMessage,
    _arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
  ): DhcpOutcome {
    const address = getRequestedIp(msg);
    if (address === undefined) return this.#drop("bad-request", msg, "no requested address");
    const lease = this.#view.get(address);
    const offered = this.#offers.get(address);
    const mine = (lease && lease.state === "active" && leaseIsClients(lease, c)) ||
      (offered !== undefined && offered.key === c.key);
    if (!mine || !subnet.allocator.contains(address)) {
      return this.#drop("not-ours", msg, formatIpv4(address));
    }
    this.#dropOffer(address, false);
    subnet.allocator.markUsed(address);
    // draft §5.11: an ABANDONED address carries no client identification.
    const abandoned: Lease = {
      ...emptyLease(address, "abandoned"),
      starts: now,
      ends: now + DECLINE_HOLD_SECONDS,
      cltt: now,
    };
    this.#expiry.push(abandoned.ends, address);
    this.#log.warn("Address declined by client, abandoned", {
      address: formatIpv4(address),
      chaddr: formatMac(c.hw),
      until: abandoned.ends,
    });
    return { effects: [{ kind: "persist", lease: abandoned }] };
  }

  /** RFC 2131 §4.3.4: the client gives the address back. */
  #release(
    msg: DhcpMessage,
    _arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
  ): DhcpOutcome {
    const address = msg.ciaddr;
    const lease = address !== 0 ? this.#view.get(address) : undefined;
    if (!lease || lease.state !== "active" || !leaseIsClients(lease, c)) {
      return this.#drop("not-ours", msg, formatIpv4(address));
    }
    const released: Lease = { ...lease, state: "released", ends: now, cltt: now };
    subnet.allocator.release(address);
    this.#log.info("Released lease", { address: formatIpv4(address), chaddr: formatMac(c.hw) });
    return { effects: [{ kind: "persist", lease: released }] };
  }

  /** RFC 2131 §4.3.5: configuration only, no address. */
  #inform(msg: DhcpMessage, arrival: Arrival, subnet: SubnetRuntime): DhcpOutcome {
    const reply = this.#reply(msg, DhcpType.DHCPINFORM, arrival, subnet, 0, null);
    this.#count(this.counters.sent, "DHCPACK");
    return { effects: [this.#send(msg, reply, arrival, false)] };
  }

  /**
   * Time passes: offers past their hold return to the pool, ACTIVE leases past their end
   * become EXPIRED and ABANDONED ones past their hold become FREE (returned as effects).
   */
  tick(now: number): DhcpEffect[] {
    for (const offer of [...this.#offers.values()]) {
      if (offer.until <= now) this.#dropOffer(offer.address, true);
    }
    const effects: DhcpEffect[] = [];
    // A lease is over once now is later than its end (draft §7.1.3 time(2) uses "later than",
    // so the partner accepts the EXPIRED update).
    while (this.#expiry.size > 0 && (this.#expiry.peekKey() as number) < now) {
      const address = this.#expiry.pop() as number;
      const lease = this.#view.get(address);
      if (!lease || lease.ends >= now) continue;
      let next: LeaseState;
      if (lease.state === "active") next = "expired";
      else if (lease.state === "abandoned") next = "free";
      else continue;
      effects.push({ kind: "persist", lease: { ...lease, state: next } });
      if (!this.#offers.has(address)) this.#subnetOf(address)?.allocator.release(address);
      this.#log.info(next === "expired" ? "Lease expired" : "Abandoned address returned to pool", {
        address: formatIpv4(address),
      });
    }
    return effects;
  }

  /** Re-reads addresses from the store after a failed commit rolled their writes back. */
  resync(addresses: Iterable<number>): void {
    for (const address of addresses) {
      const subnet = this.#subnetOf(address);
      if (!subnet) continue;
      const lease = this.#view.get(address);
      if (lease && (lease.state === "active" || lease.state === "abandoned")) {
        subnet.allocator.markUsed(address);
      } else if (!this.#offers.has(address)) {
        subnet.allocator.release(address);
      }
    }
  }
}

function buildSubnet(config: SubnetConfig, global: OptionMap): SubnetRuntime {
  const options: OptionMap = new Map(global);
  for (const [k, v] of config.options) options.set(k, v);
  if (!options.has(Opt.SUBNET_MASK)) options.set(Opt.SUBNET_MASK, encodeU32(config.subnet.mask));
  if (!options.has(Opt.BROADCAST_ADDRESS)) {
    options.set(Opt.BROADCAST_ADDRESS, encodeIp(cidrBroadcast(config.subnet)));
  }
  const allocator = new Allocator(config.pools.map((p) => ({ start: p.start, end: p.end })));
  const byHw = new Map<string, ReservationConfig>();
  const byClientId = new Map<string, ReservationConfig>();
  const reserved = new Map<number, ReservationConfig>();
  for (const r of config.reservations) {
    if (r.hwAddress) byHw.set(toHex(r.hwAddress), r);
    if (r.clientId) byClientId.set(toHex(r.clientId), r);
    reserved.set(r.address, r);
    allocator.exclude(r.address);
  }
  // The network and broadcast addresses are never handed out.
  allocator.exclude(config.subnet.network);
  allocator.exclude(cidrBroadcast(config.subnet));
  return { config, options, allocator, byHw, byClientId, reserved };
}
