/**
 * The DHCP server core: a deterministic function of (request, arrival, leases, now) to
 * effects (RFC 2131 §4.3). It keeps only derived in-memory state (free addresses, offers
 * held, the expiry queue); leases are read through LeaseView and written as effects that
 * the shell runs in order.
 */
import type { Config, OptionMap, ReservationConfig, SubnetConfig } from "../config/types.ts";
import { Allocator } from "../alloc/allocator.ts";
import { maxLeaseTime } from "../failover/binding.ts";
import type { FailoverRole, Service } from "../failover/state.ts";
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
import {
  offerCap,
  OfferQueue,
  RateLimiter,
  relayInfoFits,
  relayRefusal,
  replyMaxSize,
} from "./guard.ts";

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
  /** A token bucket of `rate-limit` is empty (guard.ts). */
  | "rate-limited"
  /** `relay-allow` is set and the source or giaddr of a relayed request is not in it. */
  | "relay-not-allowed"
  /** giaddr is not a unicast address, or the packet came from 0.0.0.0 (guard.ts). */
  | "spoofed-giaddr"
  /** Longer than MAX_REQUEST_SIZE, or option 82 too long to echo in any reply (RFC 3046 §2.2). */
  | "oversized"
  /** The failover state serves no such request now (draft-12 §9, state.ts service()). */
  | "failover-state"
  /** In NORMAL the partner serves this client's hash bucket (draft-12 §9.8.2, RFC 3074). */
  | "load-balanced"
  /** The address is available to the partner, not to this server (draft-12 §5.4, §9.9.2). */
  | "partner-address";

/**
 * What the DHCP core asks of the failover endpoint (draft-12 §5, §9); the core is standalone
 * without one. Reads only, like LeaseView: the answers depend on the endpoint's state.
 */
export interface FailoverView {
  readonly role: FailoverRole;
  /** The MCLT in force, seconds (§5.2.1). */
  mclt(): number;
  /** What the current state lets this server do for clients (§5.5-§5.9, state.ts service()). */
  service(now: number): Service;
  /** When this server entered PARTNER-DOWN, or null in any other state (§9.4.2). */
  partnerDownSince(): number | null;
  /** NORMAL only: whether this server answers this load-balanced request (§9.8.2, RFC 3074). */
  isMine(msg: DhcpMessage): boolean;
  /** §5.11: the binding's EXPIRED/RELEASED status has not been sent to the partner yet. */
  unsent(address: number): boolean;
}

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
  /** Offers taken back before their hold ended because `offer-limit` was reached. */
  offersRecycled: number;
}

interface SubnetRuntime {
  config: SubnetConfig;
  /** Global options overlaid with the subnet's, plus the subnet mask and broadcast address. */
  options: OptionMap;
  /**
   * Available addresses owned by the primary: FREE rows and pool addresses without a row
   * (draft-12 §5.4). A standalone server keeps every reusable address here.
   */
  free: Allocator;
  /** Available addresses owned by the secondary: BACKUP rows (draft-12 §5.4); failover only. */
  backup: Allocator;
  byHw: Map<string, ReservationConfig>;
  byClientId: Map<string, ReservationConfig>;
  reserved: Map<number, ReservationConfig>;
  /** Offers of dynamic addresses, oldest first, for `offer-limit` (guard.ts offerCap()). */
  offered: OfferQueue<Offer>;
  /** ABANDONED addresses in the order they were declined; entries may be stale. */
  abandoned: number[];
}

interface Offer {
  address: number;
  key: string;
  until: number;
  subnet: SubnetRuntime;
  /** In `subnet.offered` (guard.ts OfferQueue). */
  queued: boolean;
  /** The address's binding-status when offered (no row: null). */
  state: LeaseState | null;
}

/**
 * How long a declined address must have been ABANDONED before an exhausted pool takes it back
 * early (ISC dhcpd reuses abandoned addresses as a last resort): long enough that the address
 * in use by someone else is not offered again at once.
 */
export const ABANDONED_REUSE_AFTER = 600;
/** How long an address stays ABANDONED after a DHCPDECLINE before it is reused (Kea's default). */
export const DECLINE_HOLD_SECONDS = 86_400;

/** Client identity for lookups: option 61 when present, else htype + chaddr (RFC 2131 §4.2). */
function clientKey(clientId: Uint8Array | undefined, htype: number, hw: Uint8Array): string {
  return clientId ? `c${toHex(clientId)}` : `h${htype}:${toHex(hw)}`;
}

/** Option 53 values, one shared array per type (an array per reply costs an allocation). */
const MESSAGE_TYPE_BYTES = Array.from({ length: 256 }, (_, t) => Uint8Array.of(t));

function messageTypeBytes(type: number): Uint8Array {
  return MESSAGE_TYPE_BYTES[type] as Uint8Array;
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

/**
 * Whether `lease` is the client's running binding: ACTIVE, its client's, and not past its end.
 * One that has ended (and was not yet marked EXPIRED) is over: a request for it starts a new
 * binding, which the partner's times for the old one do not cover (draft-12 §5.2.1, §5.11).
 */
function isCurrent(lease: Lease | undefined, c: Client, now: number): lease is Lease {
  return lease !== undefined && lease.state === "active" && lease.ends >= now &&
    leaseIsClients(lease, c);
}

/** The standalone DHCPv4 server core. */
export class DhcpCore {
  readonly config: Config;
  readonly counters: DhcpCounters = { received: {}, sent: {}, dropped: {}, offersRecycled: 0 };
  #view: LeaseView;
  #log: Logger;
  #subnets: SubnetRuntime[];
  #offers = new Map<number, Offer>();
  #offerByKey = new Map<string, number>();
  /** (ends, address) of ACTIVE and ABANDONED leases, for expiry; entries may be stale. */
  #expiry = new MinHeap();
  /**
   * Failover: (earliest reuse time, address) of EXPIRED, RELEASED and RESET bindings, which
   * PARTNER-DOWN frees after the MCLT (draft-12 §9.4.2, Fig. 5.11-1 note 1); may be stale.
   */
  #reclaim = new MinHeap();
  #failover: FailoverView | null = null;
  /** Clients that may have a lease row, so that new clients cost no lookup. */
  #seen = new SeenFilter();
  #u32Cache = new Map<number, Uint8Array>();
  /** `rate-limit`, or null when both its buckets are off. */
  #limiter: RateLimiter | null;

  constructor(
    config: Config,
    view: LeaseView,
    options: { logger: Logger; failover?: FailoverView | null },
  ) {
    this.config = config;
    this.#view = view;
    this.#log = options.logger;
    this.#failover = options.failover ?? null;
    const g = config.guard;
    this.#limiter = g.perClient !== null || g.global !== null ? new RateLimiter(g) : null;
    this.#subnets = config.subnets.map((s) => buildSubnet(s, config.options));
    this.#loadLeases();
  }

  #loadLeases(): void {
    for (const lease of this.#view.iterate()) {
      this.#remember(lease);
      const subnet = this.#subnetOf(lease.address);
      if (subnet) this.#place(subnet, lease.address, lease);
    }
  }

  /**
   * Puts an address where its binding says (draft-12 §5.4, §5.11): taken while ACTIVE or
   * ABANDONED (and queued for expiry), available to the primary when FREE or without a row,
   * to the secondary when BACKUP. With failover, EXPIRED, RELEASED and RESET addresses wait
   * for the partner's ack (or PARTNER-DOWN's MCLT) before anyone may reuse them; standalone,
   * they are reusable at once.
   */
  #place(subnet: SubnetRuntime, address: number, lease: Lease | undefined): void {
    subnet.free.markUsed(address);
    subnet.backup.markUsed(address);
    if (this.#offers.has(address)) return;
    const state = lease?.state ?? "free";
    if (state === "active" || state === "abandoned") {
      this.#expiry.push((lease as Lease).ends, address);
      if (state === "abandoned") subnet.abandoned.push(address);
      return;
    }
    if (this.#failover === null || state === "free") {
      subnet.free.release(address);
    } else if (state === "backup") {
      subnet.backup.release(address);
    } else {
      // Freed by the partner's ack, or in PARTNER-DOWN by tick() (§9.4.2).
      this.#reclaim.push(reclaimAt(lease as Lease, this.#failover.mclt()), address);
    }
  }

  /** Takes an address out of both pools (offered, leased or declined). */
  #claim(subnet: SubnetRuntime, address: number): void {
    subnet.free.markUsed(address);
    subnet.backup.markUsed(address);
  }

  /**
   * The pools this server may allocate from now, in order (draft-12 §9.9.2, §9.4.2): its own
   * (FREE on the primary, BACKUP on the secondary), then the partner's once PARTNER-DOWN has
   * lasted the MCLT. Standalone: the one pool.
   */
  #pools(subnet: SubnetRuntime, service: Service | null): Allocator[] {
    const fo = this.#failover;
    if (fo === null || service === null) return [subnet.free];
    const own = fo.role === "primary" ? subnet.free : subnet.backup;
    const other = fo.role === "primary" ? subnet.backup : subnet.free;
    return service.partnerPool ? [own, other] : [own];
  }

  /** Whether this server may give `address` to a new binding now. */
  #mayAllocate(subnet: SubnetRuntime, address: number, service: Service | null): boolean {
    for (const pool of this.#pools(subnet, service)) if (pool.isFree(address)) return true;
    return false;
  }

  #remember(lease: Lease): void {
    if (lease.hwAddress.length > 0) this.#seen.add(lease.htype, lease.hwAddress);
    if (lease.clientId) this.#seen.add(CLIENT_ID_TAG, lease.clientId);
  }

  /**
   * Free and total dynamic addresses per subnet, for status and metrics: `free` counts what
   * either server may hand out; `backup` (failover) the part of it that is the secondary's.
   */
  utilisation(): { subnet: string; size: number; free: number; backup: number }[] {
    return this.#subnets.map((s) => ({
      subnet: `${formatIpv4(s.config.subnet.network)}/${s.config.subnet.prefix}`,
      size: s.free.size,
      free: s.free.freeCount + s.backup.freeCount,
      backup: s.backup.freeCount,
    }));
  }

  /**
   * Pool balancing (draft-12 §5.4), primary only: hands `count` of its available FREE
   * addresses in subnet `index` (utilisation() order) to the secondary as BACKUP bindings.
   * Returns the leases to persist; the BNDUPDs follow their commit like any lease change.
   */
  giveToBackup(index: number, count: number, now: number): DhcpEffect[] {
    const subnet = this.#subnets[index];
    if (subnet === undefined || this.#failover?.role !== "primary") return [];
    const out: DhcpEffect[] = [];
    for (let i = 0; i < count; i++) {
      const address = subnet.free.take();
      if (address === undefined) break;
      const old = this.#view.get(address);
      // §5.11 BACKUP: client information MAY appear; the last client's identity is kept.
      const base = old ?? emptyLease(address);
      const lease: Lease = { ...base, state: "backup", starts: now, tstp: unsentMark(base, now) };
      subnet.backup.release(address);
      out.push({ kind: "persist", lease });
    }
    return out;
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

  /** Counts a request the shell dropped before decoding it (a datagram over MAX_REQUEST_SIZE). */
  countDropped(reason: DropReason): void {
    this.#count(this.counters.dropped, reason);
  }

  /** False only when this client has no lease row here (the Bloom filter has no false negatives). */
  #mayKnow(c: Client): boolean {
    return this.#seen.mayHave(c.htype, c.hw) ||
      (c.clientId !== undefined && this.#seen.mayHave(CLIENT_ID_TAG, c.clientId));
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
    // Failover first (draft-12 §5.3, §9): in NORMAL the partner answers about half of the
    // broadcasts this server sees, and finding that out is all the work they are worth here
    // (no client key, guard or subnet selection for a request someone else serves).
    const service = this.#failover?.service(now) ?? null;
    if (service !== null) {
      const refused = this.#refuse(type, msg, arrival, service);
      if (refused !== null) return this.#drop(refused, msg, service.cite.answer);
    }
    const hw = hwAddress(msg);
    const clientId = getClientId(msg);
    const client: Client = {
      key: clientKey(clientId, msg.htype, hw),
      clientId,
      htype: msg.htype,
      hw,
    };
    // DHCP-level abuse (guard.ts): who may pick a subnet, what fits in a reply, and how often.
    const relay = relayRefusal(msg, arrival, this.config.guard.relayAllow);
    if (relay !== null) return this.#drop(relay, msg, formatIpv4(arrival.srcAddress));
    if (!relayInfoFits(msg)) return this.#drop("oversized", msg, "option 82 does not fit a reply");
    if (type === DhcpType.DHCPREQUEST) {
      // SELECTING for another server (RFC 2131 §4.3.2): the client declines this server's
      // offer, if it had one, and nothing is answered; no rate limit or subnet is needed for
      // that (in a failover pair, about half of the REQUESTs each server sees).
      const serverId = getServerId(msg);
      if (serverId !== undefined && serverId !== this.#serverId(arrival)) {
        const held = this.#offerByKey.get(client.key);
        if (held !== undefined) this.#dropOffer(held, true);
        return this.#drop("other-server", msg, formatIpv4(serverId));
      }
    }
    if (this.#limiter !== null) {
      const isNew = this.#limiter.limitsNewClients && !this.#offerByKey.has(client.key) &&
        !this.#mayKnow(client);
      const refusal = this.#limiter.admit(client.key, isNew, now);
      if (refusal !== null) {
        if (refusal.first) {
          this.#log.warn("Rate limit reached; dropping requests", {
            limit: refusal.limit,
            chaddr: formatMac(hw),
          });
        }
        return this.#drop("rate-limited", msg, refusal.limit);
      }
    }
    const subnet = this.#selectSubnet(msg, arrival);
    if (!subnet) return this.#drop("no-subnet", msg);
    switch (type) {
      case DhcpType.DHCPDISCOVER:
        return this.#discover(msg, arrival, client, subnet, now, service);
      case DhcpType.DHCPREQUEST:
        return this.#request(msg, arrival, client, subnet, now, service);
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

  /**
   * Whether the failover state lets this server take a request (draft-12 §9, state.ts
   * service()), and in NORMAL whether load balancing gives it this client (§5.5, §9.8.2):
   * every RENEWING/REBINDING REQUEST is answered; DISCOVER, INIT-REBOOT REQUEST and INFORM go
   * by the client's hash bucket; a SELECTING REQUEST, DECLINE or RELEASE by its server
   * identifier. Returns the drop reason, or null to go on.
   */
  #refuse(type: number, msg: DhcpMessage, arrival: Arrival, service: Service): DropReason | null {
    if (service.answer === "none") return "failover-state";
    const serverId = getServerId(msg);
    const renewal = type === DhcpType.DHCPREQUEST && serverId === undefined &&
      getRequestedIp(msg) === undefined && msg.ciaddr !== 0;
    if (service.answer === "renewals") return renewal ? null : "failover-state";
    if (type === DhcpType.DHCPDISCOVER && !service.allocate) return "failover-state";
    if (service.answer !== "balanced" || renewal) return null;
    if (type !== DhcpType.DHCPDISCOVER && type !== DhcpType.DHCPINFORM && serverId !== undefined) {
      // The client names the server it talks to; #request drops a SELECTING for the partner.
      return type === DhcpType.DHCPREQUEST || serverId === this.#serverId(arrival)
        ? null
        : "other-server";
    }
    return (this.#failover as FailoverView).isMine(msg) ? null : "load-balanced";
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
    service: Service | null,
    lease: Lease | undefined,
  ): boolean {
    const reserved = subnet.reserved.get(address);
    if (reserved) return this.#reservationFor(subnet, c) === reserved;
    const offer = this.#offers.get(address);
    if (offer && offer.key !== c.key && offer.until > now) return false;
    if (lease && (lease.state === "active" || lease.state === "abandoned")) {
      // An expired binding stays its client's until tick() turns it EXPIRED.
      return lease.state === "active" && leaseIsClients(lease, c);
    }
    if (!subnet.free.contains(address)) return false;
    if (this.#mayAllocate(subnet, address, service)) return true;
    const ended = lease !== undefined && (lease.state === "expired" || lease.state === "released");
    // An offer held for this client keeps the address for it. With failover only while the
    // binding is as it was when offered, and not an ended one (the partner may have freed the
    // address since: an EXPIRED sent and acked, or taken it), and an address of the partner's
    // pool only while this server may still use that pool (an offer made in PARTNER-DOWN is
    // not the secondary's once NORMAL is back, §9.4.2, §5.4); else the rules below decide.
    const fo = this.#failover;
    const partnersPool = fo !== null && offer !== undefined &&
      (fo.role === "primary"
        ? offer.state === "backup"
        : offer.state === "free" || offer.state === null);
    const held = offer !== undefined && offer.key === c.key &&
      (fo === null ||
        (offer.state === (lease?.state ?? null) && !ended &&
          (!partnersPool || service?.partnerPool === true)));
    if (held) return true;
    if (lease === undefined || !leaseIsClients(lease, c)) return false;
    if (this.#failover === null) return true;
    // draft-12 §5.11: EXPIRED or RELEASED may go back to the same client until the partner
    // has been told; a FREE or BACKUP row is only the owner's to give (§5.4).
    return ended && this.#failover.unsent(address);
  }

  /** Allocation order of the issue: reservation, current binding, requested, previous, any free. */
  #chooseAddress(
    msg: DhcpMessage,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
    service: Service | null,
  ): number | undefined {
    const reservation = this.#reservationFor(subnet, c);
    if (reservation) return reservation.address;
    const held = this.#offerByKey.get(c.key);
    if (
      held !== undefined &&
      this.#availableFor(subnet, held, c, now, service, this.#view.get(held))
    ) {
      return held;
    }
    const leases = this.#clientLeases(subnet, c);
    const current = leases.find((l) => l.state === "active" && l.ends > now);
    if (current) return current.address;
    const requested = getRequestedIp(msg);
    if (
      requested !== undefined && subnet.free.contains(requested) &&
      this.#availableFor(subnet, requested, c, now, service, this.#view.get(requested))
    ) {
      return requested;
    }
    for (const l of leases) {
      if (
        subnet.free.contains(l.address) &&
        this.#availableFor(subnet, l.address, c, now, service, l)
      ) {
        return l.address;
      }
    }
    for (const pool of this.#pools(subnet, service)) {
      const address = pool.take();
      if (address !== undefined) return address;
    }
    return undefined;
  }

  #holdOffer(
    subnet: SubnetRuntime,
    address: number,
    lease: Lease | undefined,
    c: Client,
    now: number,
  ): void {
    const previous = this.#offerByKey.get(c.key);
    if (previous !== undefined && previous !== address) this.#dropOffer(previous, true);
    this.#claim(subnet, address);
    const replaced = this.#offers.get(address);
    if (replaced !== undefined) subnet.offered.remove(replaced);
    const offer: Offer = {
      address,
      key: c.key,
      until: now + this.config.offerHold,
      subnet,
      queued: false,
      state: lease?.state ?? null,
    };
    this.#offers.set(address, offer);
    this.#offerByKey.set(c.key, address);
  }

  /**
   * `offer-limit` (guard.ts offerCap()): the newest offer of a dynamic address goes to the end
   * of its subnet's queue, and the oldest offers go back to the pool while the subnet holds
   * more than its cap. A client whose offer was taken back still gets its REQUEST ACKed if the
   * address is still free when it comes (#availableFor).
   */
  #limitOffers(subnet: SubnetRuntime, address: number, service: Service | null): void {
    const offer = this.#offers.get(address);
    if (offer === undefined || subnet.reserved.has(address)) return;
    const queue = subnet.offered;
    queue.add(offer);
    let free = 0;
    for (const pool of this.#pools(subnet, service)) free += pool.freeCount;
    const cap = offerCap(free + queue.size, this.config.guard.offerLimit);
    while (queue.size > cap) {
      const oldest = queue.oldest();
      if (oldest === undefined || oldest === offer) break;
      this.#dropOffer(oldest.address, true);
      this.counters.offersRecycled++;
    }
  }

  /** Forgets an offer; when `free`, the address goes back to the pool unless leased. */
  #dropOffer(address: number, free: boolean): void {
    const offer = this.#offers.get(address);
    if (!offer) return;
    this.#offers.delete(address);
    offer.subnet.offered.remove(offer);
    if (this.#offerByKey.get(offer.key) === address) this.#offerByKey.delete(offer.key);
    if (!free) return;
    this.#place(offer.subnet, address, this.#view.get(address));
  }

  /** The lease time the configuration and the client's request (option 51) give. */
  #desiredLeaseTime(msg: DhcpMessage, subnet: SubnetRuntime): number {
    const t = subnet.config.leaseTime;
    const asked = getLeaseTime(msg);
    if (asked === undefined) return t.default;
    return Math.min(t.max, Math.max(t.min, asked));
  }

  /**
   * The lease time to give and, with failover, the potential-expiration-time to tell the
   * partner (draft-12 §5.2.1, §7.1.5): never more than the MCLT beyond what the partner has
   * acknowledged for this client's binding, so a new client first gets at most the MCLT.
   * PARTNER-DOWN keeps the rule (§9.4.2's first option: protection if storage is lost).
   */
  #leaseTimes(
    msg: DhcpMessage,
    subnet: SubnetRuntime,
    c: Client,
    old: Lease | undefined,
    now: number,
  ): { leaseTime: number; potential: number } {
    const desired = this.#desiredLeaseTime(msg, subnet);
    const fo = this.#failover;
    if (fo === null) return { leaseTime: desired, potential: 0 };
    const own = isCurrent(old, c, now) ? old : undefined;
    const t = maxLeaseTime({ now, mclt: fo.mclt(), desired, ...(own ? { lease: own } : {}) });
    return { leaseTime: t.leaseTime, potential: t.potentialExpiration };
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
      messageTypeBytes(type === DhcpType.DHCPINFORM ? DhcpType.DHCPACK : type),
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
    reply.options.set(Opt.MESSAGE_TYPE, messageTypeBytes(DhcpType.DHCPNAK));
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
    return {
      kind: "reply",
      message: reply,
      to: replyTarget(msg, reply, arrival),
      maxSize: replyMaxSize(msg),
      afterCommit,
    };
  }

  #discover(
    msg: DhcpMessage,
    arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
    service: Service | null,
  ): DhcpOutcome {
    let address = this.#chooseAddress(msg, c, subnet, now, service);
    const reclaimed: DhcpEffect[] = [];
    if (address === undefined) {
      const cidr = `${formatIpv4(subnet.config.subnet.network)}/${subnet.config.subnet.prefix}`;
      const old = this.#reclaimAbandoned(subnet, now);
      if (old !== undefined) {
        // As ISC dhcpd does: an exhausted pool takes back the address declined longest ago,
        // so that DECLINEs cannot empty it for a day. Standalone it is FREE at once; with
        // failover it goes through RESET, which the partner's ack frees (draft-12 §5.11 note 3).
        const next: Lease = { ...old, state: this.#failover ? "reset" : "free", starts: now };
        reclaimed.push({ kind: "persist", lease: next });
        this.#place(subnet, old.address, next);
        this.#log.warn("Pool exhausted: reusing a declined address", {
          subnet: cidr,
          address: formatIpv4(old.address),
          declined: old.starts,
        });
        address = this.#chooseAddress(msg, c, subnet, now, service);
      }
      if (address === undefined) {
        this.#log.warn("No free address to offer", { subnet: cidr });
        const out = this.#drop("pool-exhausted", msg);
        return reclaimed.length > 0 ? { ...out, effects: reclaimed } : out;
      }
    }
    // One read of the address's binding serves the offer hold and the lease time.
    const lease = this.#view.get(address);
    this.#holdOffer(subnet, address, lease, c, now);
    this.#limitOffers(subnet, address, service);
    const reply = this.#reply(
      msg,
      DhcpType.DHCPOFFER,
      arrival,
      subnet,
      address,
      this.#leaseTimes(msg, subnet, c, lease, now).leaseTime,
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
    return { effects: [...reclaimed, this.#send(msg, reply, arrival, false)] };
  }

  /** RFC 2131 §4.3.2: SELECTING, INIT-REBOOT, RENEWING and REBINDING. */
  #request(
    msg: DhcpMessage,
    arrival: Arrival,
    c: Client,
    subnet: SubnetRuntime,
    now: number,
    service: Service | null,
  ): DhcpOutcome {
    const serverId = getServerId(msg);
    const requested = getRequestedIp(msg);
    const authoritative = subnet.config.authoritative;
    let address: number;
    if (serverId !== undefined) {
      // SELECTING: the client chose this server (handle() took those for another one).
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
    if (!this.#availableFor(subnet, address, c, now, service, existing)) {
      if (this.#failover !== null && this.#partnerMayHold(subnet, address, existing)) {
        // The partner may have granted it without our knowing yet (a lazy update in flight,
        // or the link down): a NAK could take a valid lease away (draft-12 §9.9.2). Silence.
        return this.#drop("partner-address", msg, formatIpv4(address));
      }
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
    if (!reservation && !subnet.free.contains(address)) {
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
    const { leaseTime, potential } = this.#leaseTimes(msg, subnet, c, old, now);
    const renewing = isCurrent(old, c, now);
    // What we told the partner about this client stays a promise (tstp only grows).
    const same = old !== undefined && leaseIsClients(old, c);
    const lease: Lease = {
      ...emptyLease(address, "active"),
      htype: c.htype,
      // Copies: the client's fields are views into the datagram, and a lease may be kept for
      // long (queued for a partner that is away) without keeping the datagram with it.
      hwAddress: c.hw.slice(),
      clientId: c.clientId?.slice() ?? null,
      // A renewal without option 12 keeps the name the client gave before.
      hostname: getHostname(msg) ?? reservation?.hostname ?? (same ? old.hostname : null),
      starts: renewing ? old.starts : now,
      ends: now + leaseTime,
      // Never behind the binding's own (a RELEASE may have counted one second on), never
      // ahead of it: a client renewing many times a second must not push it into the future.
      cltt: same ? Math.max(now, old.cltt) : now,
      // §7.1.1: the potential-expiration-time to send is stored with the lease.
      tstp: this.#failover === null ? old?.tstp ?? 0 : Math.max(potential, same ? old.tstp : 0),
      // draft-12 §5.2.1, §7.1.5: the partner's acknowledged and received potential expiration
      // times belong to the ACTIVE binding they were given for. A new binding, even to the same
      // client after EXPIRED or RELEASED (which the partner stores as FREE and may give away),
      // starts with none, or a renewal of it could reach beyond the MCLT.
      tsfp: renewing ? old.tsfp : 0,
      atsfp: renewing ? old.atsfp : 0,
      relayInfo: msg.giaddr !== 0 ? getRelayAgentInfo(msg)?.slice() ?? null : null,
    };
    this.#dropOffer(address, false);
    const held = this.#offerByKey.get(c.key);
    if (held !== undefined) this.#dropOffer(held, true);
    this.#claim(subnet, address);
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

  /**
   * The ABANDONED address of this subnet declined longest ago, if that was at least
   * ABANDONED_REUSE_AFTER seconds ago (an address just declined is likely in use).
   */
  #reclaimAbandoned(subnet: SubnetRuntime, now: number): Lease | undefined {
    const q = subnet.abandoned;
    while (q.length > 0) {
      const lease = this.#view.get(q[0] as number);
      if (lease === undefined || lease.state !== "abandoned" || this.#offers.has(lease.address)) {
        q.shift();
        continue;
      }
      if (lease.starts + ABANDONED_REUSE_AFTER > now) return undefined;
      q.shift();
      return lease;
    }
    return undefined;
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
    if (!mine || !subnet.free.contains(address)) {
      return this.#drop("not-ours", msg, formatIpv4(address));
    }
    this.#dropOffer(address, false);
    this.#claim(subnet, address);
    // draft §5.11: an ABANDONED address carries no client identification.
    const abandoned: Lease = {
      ...emptyLease(address, "abandoned"),
      starts: now,
      ends: now + DECLINE_HOLD_SECONDS,
      cltt: now,
    };
    this.#expiry.push(abandoned.ends, address);
    subnet.abandoned.push(address);
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
    const released: Lease = {
      ...lease,
      state: "released",
      ends: now,
      cltt: transactionTime(lease, now),
    };
    // Standalone: reusable at once. Failover: after the partner's ack (draft-12 §5.11).
    this.#place(subnet, address, released);
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
   * Time passes (returned as effects): offers past their hold return to the pool, ACTIVE
   * leases past their end become EXPIRED, ABANDONED ones past their hold become FREE (RESET
   * with failover, which the partner's ack frees: draft-12 §5.11 note 3), and in PARTNER-DOWN
   * EXPIRED, RELEASED and RESET addresses become FREE once the MCLT rules allow (§9.4.2).
   */
  tick(now: number): DhcpEffect[] {
    for (const offer of [...this.#offers.values()]) {
      if (offer.until <= now) this.#dropOffer(offer.address, true);
    }
    const fo = this.#failover;
    const effects: DhcpEffect[] = [];
    const change = (lease: Lease, state: LeaseState, message: string): void => {
      // start-time-of-state (draft-12 §7.1.1): when the binding took on its new status.
      const next: Lease = {
        ...lease,
        state,
        starts: now,
        ...(fo !== null && state === "free" ? { tstp: unsentMark(lease, now) } : {}),
      };
      effects.push({ kind: "persist", lease: next });
      const subnet = this.#subnetOf(lease.address);
      if (subnet) this.#place(subnet, lease.address, next);
      this.#log.info(message, { address: formatIpv4(lease.address) });
    };
    // A lease is over once now is later than its end (draft §7.1.3 time(2) uses "later than",
    // so the partner accepts the EXPIRED update).
    while (this.#expiry.size > 0 && (this.#expiry.peekKey() as number) < now) {
      const address = this.#expiry.pop() as number;
      const lease = this.#view.get(address);
      if (!lease || lease.ends >= now) continue;
      if (lease.state === "active") change(lease, "expired", "Lease expired");
      else if (lease.state === "abandoned") {
        change(lease, fo ? "reset" : "free", "Abandoned address returned to pool");
      }
    }
    const since = fo?.partnerDownSince() ?? null;
    if (fo !== null && since !== null && now >= since + fo.mclt()) {
      // Fig. 5.11-1 note (1), §9.4.2: in PARTNER-DOWN, reusable once the MCLT has passed
      // beyond both the entry into PARTNER-DOWN and every time the partner may have known.
      while (this.#reclaim.size > 0 && (this.#reclaim.peekKey() as number) <= now) {
        const address = this.#reclaim.pop() as number;
        const lease = this.#view.get(address);
        if (!lease || !RECLAIMABLE.has(lease.state)) continue;
        const at = reclaimAt(lease, fo.mclt());
        if (at > now) this.#reclaim.push(at, address);
        else change(lease, "free", "Address reclaimed in PARTNER-DOWN");
      }
    }
    return effects;
  }

  /**
   * Re-reads addresses from the store: after a failed commit rolled their writes back, and
   * after the failover partner changed them (its BNDUPDs, or the BNDACKs of ours).
   */
  resync(addresses: Iterable<number>): void {
    for (const address of addresses) {
      const subnet = this.#subnetOf(address);
      if (!subnet) continue;
      const lease = this.#view.get(address);
      if (lease) this.#remember(lease);
      this.#place(subnet, address, lease);
    }
  }

  /**
   * The store now holds `lease` (a partner's BNDUPD, or the acked times of a BNDACK, draft-12
   * §7.1-§7.2): puts its address where its binding says, like resync() without reading the
   * row back.
   */
  place(lease: Lease): void {
    const subnet = this.#subnetOf(lease.address);
    if (!subnet) return;
    this.#remember(lease);
    this.#place(subnet, lease.address, lease);
  }

  /**
   * Whether the partner may hold a binding on `address` this server has not heard of: the
   * address is available to the partner by this server's records (draft-12 §5.4).
   */
  #partnerMayHold(subnet: SubnetRuntime, address: number, lease: Lease | undefined): boolean {
    const fo = this.#failover;
    if (
      fo === null || (lease !== undefined && lease.state !== "free" && lease.state !== "backup")
    ) {
      return false;
    }
    return fo.role === "primary" ? subnet.backup.isFree(address) : subnet.free.isFree(address);
  }
}

/**
 * tstp for a change to FREE or BACKUP (draft-12 §7.1.1, §5.4): these carry no new expiration
 * time, so with the old sent-potential-expiration-time the row could look acked (tsfp equal to
 * its potential expiration), and after a restart no update pass would send it: the partner
 * would never learn of the move, and the address would be nobody's. A tstp later than anything
 * acked keeps it unacked until the partner acks this change.
 */
function unsentMark(lease: Lease, now: number): number {
  return Math.max(lease.tstp, lease.tsfp + 1, now);
}

/**
 * The client-last-transaction-time of a client transaction at `now` on a binding (draft-12
 * §7.1.3): the partner takes a change over its binding only when this time is later than the
 * binding's (time(1)), and times are whole seconds. A second transaction in the same second
 * (a renewal, then the RELEASE) therefore counts one second on; otherwise the partner would
 * reject the RELEASED update and both would keep the address from every client.
 */
function transactionTime(old: Lease | undefined, now: number): number {
  return old !== undefined && old.cltt >= now ? old.cltt + 1 : now;
}

/** Binding-statuses that PARTNER-DOWN frees after the MCLT (draft-12 Fig. 5.11-1 note 1). */
const RECLAIMABLE = new Set<LeaseState>(["expired", "released", "reset"]);

/**
 * draft-12 §9.4.2: the MCLT beyond the latest of the client's expiration, the potential
 * expiration times sent, acked and received, and the start of the binding's status.
 */
function reclaimAt(lease: Lease, mclt: number): number {
  return Math.max(lease.ends, lease.tstp, lease.tsfp, lease.atsfp, lease.starts) + mclt;
}

function buildSubnet(config: SubnetConfig, global: OptionMap): SubnetRuntime {
  const options: OptionMap = new Map(global);
  for (const [k, v] of config.options) options.set(k, v);
  if (!options.has(Opt.SUBNET_MASK)) options.set(Opt.SUBNET_MASK, encodeU32(config.subnet.mask));
  if (!options.has(Opt.BROADCAST_ADDRESS)) {
    options.set(Opt.BROADCAST_ADDRESS, encodeIp(cidrBroadcast(config.subnet)));
  }
  const ranges = config.pools.map((p) => ({ start: p.start, end: p.end }));
  const free = new Allocator(ranges);
  const backup = new Allocator(ranges, { empty: true });
  const byHw = new Map<string, ReservationConfig>();
  const byClientId = new Map<string, ReservationConfig>();
  const reserved = new Map<number, ReservationConfig>();
  // Reserved addresses, and the network and broadcast addresses, are never handed out.
  const excluded = [config.subnet.network, cidrBroadcast(config.subnet)];
  for (const r of config.reservations) {
    if (r.hwAddress) byHw.set(toHex(r.hwAddress), r);
    if (r.clientId) byClientId.set(toHex(r.clientId), r);
    reserved.set(r.address, r);
    excluded.push(r.address);
  }
  for (const address of excluded) {
    free.exclude(address);
    backup.exclude(address);
  }
  return {
    config,
    options,
    free,
    backup,
    byHw,
    byClientId,
    reserved,
    offered: new OfferQueue(),
    abandoned: [],
  };
}
