/**
 * Defences against DHCP-level abuse, pure and O(1) per packet (README "How a request is
 * served", "DHCP-level abuse"): token buckets per client and for clients the server does not
 * know, the cap on addresses held by offers, the relay allow list with the giaddr checks, and
 * the size bounds of requests and replies. DhcpCore and the shell call into it; it keeps no
 * lease state of its own.
 */
import type { GuardConfig, RateLimit } from "../config/types.ts";
import { type DhcpMessage, getMaxMessageSize, Opt } from "../wire/dhcp.ts";
import { type Cidr, cidrContains } from "../wire/ip.ts";
import type { Arrival } from "./reply.ts";

/**
 * The largest request datagram accepted: a request fits one 1500-octet Ethernet frame
 * (RFC 2131 §2: 576 octets are guaranteed, more only by agreement), option 82 included; the
 * FFI transport's receive slots are this size too, so both transports accept the same.
 */
export const MAX_REQUEST_SIZE = 2048;
/** The smallest maximum message size a client may announce (RFC 2132 §9.10). */
const MIN_MAX_MESSAGE = 576;
/** The largest reply duet sends, whatever the client announces: one Ethernet MTU. */
const MAX_REPLY_DATAGRAM = 1500;
/** IPv4 (20) and UDP (8) header octets inside a maximum message size (RFC 2132 §9.10). */
const IP_UDP_HEADERS = 28;
/** Fixed header (236), magic cookie (4) and END (1) of every reply (RFC 2131 §2). */
const REPLY_FRAME = 241;
/** Options 53 (3 octets) and 54 (6) that every reply carries and the encoder never drops. */
const PROTECTED_OPTIONS = 9;
/** The UDP payload octets duet may send in reply to `msg` (RFC 2132 §9.10, §9.10 minimum 576). */
export function replyMaxSize(msg: DhcpMessage): number {
  const asked = getMaxMessageSize(msg);
  const datagram = asked !== undefined && asked >= MIN_MAX_MESSAGE
    ? Math.min(asked, MAX_REPLY_DATAGRAM)
    : MIN_MAX_MESSAGE;
  return datagram - IP_UDP_HEADERS;
}

/**
 * Whether option 82, which a reply to a relayed request MUST echo unchanged (RFC 3046 §2.2),
 * fits in that reply next to options 53 and 54; when it does not, no correct reply exists.
 */
export function relayInfoFits(msg: DhcpMessage): boolean {
  if (msg.giaddr === 0) return true;
  const v = msg.options.get(Opt.RELAY_AGENT_INFO);
  if (v === undefined) return true;
  // RFC 3396 §5: split into instances of at most 255 octets, two octets of header each.
  const size = v.length === 0 ? 2 : Math.ceil(v.length / 255) * 2 + v.length;
  return size <= replyMaxSize(msg) - REPLY_FRAME - PROTECTED_OPTIONS;
}

/** Why a packet that claims to come from (or through) a relay is refused. */
export type RelayRefusal = "relay-not-allowed" | "spoofed-giaddr";

/** True when `address` is in one of the CIDRs. */
function allowed(list: readonly Cidr[], address: number): boolean {
  for (const c of list) if (cidrContains(c, address)) return true;
  return false;
}

/**
 * Checks a request that names a subnet other than its arrival link (RFC 2131 §4.3.1: giaddr;
 * RFC 3011 option 118; RFC 3527 link selection rides in option 82 with giaddr):
 * - always: giaddr is a unicast address (not 0/8, not multicast, reserved or broadcast), and a
 *   packet with giaddr comes from an address (a relay always has one; RFC 1542 §4.1);
 * - with an allow list: the source address, and giaddr when set, are in the list.
 * Returns the reason to drop, or null.
 */
export function relayRefusal(
  msg: DhcpMessage,
  arrival: Arrival,
  allow: readonly Cidr[] | null,
): RelayRefusal | null {
  const giaddr = msg.giaddr;
  if (giaddr !== 0) {
    const first = giaddr >>> 24;
    if (first === 0 || first >= 224 || arrival.srcAddress === 0) return "spoofed-giaddr";
    if (allow === null) return null;
    return allowed(allow, arrival.srcAddress) && allowed(allow, giaddr)
      ? null
      : "relay-not-allowed";
  }
  if (allow === null || !msg.options.has(Opt.SUBNET_SELECTION)) return null;
  return allowed(allow, arrival.srcAddress) ? null : "relay-not-allowed";
}

/**
 * How many offers a subnet may hold at once: `percent` of its unleased dynamic addresses
 * (free ones plus those held by offers), at least one, so that a flood of DISCOVERs leaves the
 * rest free for real clients.
 */
export function offerCap(unleased: number, percent: number): number {
  return Math.max(1, Math.floor((unleased * percent) / 100));
}

/** What OfferQueue holds: it marks whether the item is still queued. */
export interface Queued {
  queued: boolean;
}

/**
 * The offers of one subnet, oldest first, for `offer-limit`: add, remove and oldest are O(1)
 * amortised; removed items stay in the array until passed or compacted, so memory stays
 * within about twice the live items.
 */
export class OfferQueue<T extends Queued> {
  #items: T[] = [];
  #head = 0;
  #count = 0;

  /** Items queued now. */
  get size(): number {
    return this.#count;
  }

  /** Queues an item as the newest. */
  add(item: T): void {
    if (item.queued) return;
    item.queued = true;
    this.#items.push(item);
    this.#count++;
    const held = this.#items.length - this.#head;
    if (held > 2 * this.#count + 64) {
      this.#items = this.#items.slice(this.#head).filter((o) => o.queued);
      this.#head = 0;
    }
  }

  /** Takes an item out (a no-op if it is not queued). */
  remove(item: T): void {
    if (!item.queued) return;
    item.queued = false;
    this.#count--;
  }

  /** The oldest queued item, left in the queue. */
  oldest(): T | undefined {
    const items = this.#items;
    while (this.#head < items.length && !(items[this.#head] as T).queued) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return this.#items[this.#head];
  }
}

/** One token bucket's state. */
interface Bucket {
  tokens: number;
  /** When tokens were last counted (the caller's clock, seconds). */
  at: number;
  /** Refusing since the bucket was last full: the next refusal is not the first. */
  limited: boolean;
}

/** Counts the tokens earned since `b.at`; a clock that went back earns none. */
function refill(b: Bucket, limit: RateLimit, now: number): void {
  const dt = now - b.at;
  if (dt > 0) b.tokens = Math.min(limit.burst, b.tokens + dt * limit.rate);
  b.at = now;
  if (b.tokens >= limit.burst) b.limited = false;
}

/** Takes one token; false when the bucket is empty. */
function take(b: Bucket, limit: RateLimit, now: number): boolean {
  refill(b, limit, now);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  return false;
}

/** Which limit refused a request, and whether it is the first refusal since it was last full. */
export interface Refusal {
  readonly limit: "per-client" | "global";
  readonly first: boolean;
}

const CLIENT_FIRST: Refusal = { limit: "per-client", first: true };
const CLIENT_AGAIN: Refusal = { limit: "per-client", first: false };
const GLOBAL_FIRST: Refusal = { limit: "global", first: true };
const GLOBAL_AGAIN: Refusal = { limit: "global", first: false };

/** Marks the bucket as refusing and says whether this is the first refusal of the episode. */
function refuse(b: Bucket): boolean {
  const first = !b.limited;
  b.limited = true;
  return first;
}

/** A 53-bit hash of a client key (FNV-1a and a remix), so that the table holds no long keys. */
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  let g = 0x6b43a9b5;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h = Math.imul(h ^ c, 0x01000193);
    g = Math.imul(g ^ c, 0x5bd1e995);
  }
  return (h >>> 0) * 0x200000 + ((g >>> 0) & 0x1fffff);
}

/**
 * Token buckets (README "Top-level keys", `rate-limit`): one per client, kept for roughly the
 * `trackedClients` most recently seen (forgetting a client only forgives it), and one for
 * every client the caller says is new to it. O(1) per request.
 *
 * The per-client table is two generations of at most half the size each: a client found in
 * the older one moves to the newer, and when the newer is full the older is dropped whole.
 * (A Map used as an LRU, with delete and re-insert, costs time linear in its size in V8.)
 */
export class RateLimiter {
  #perClient: RateLimit | null;
  #global: RateLimit | null;
  #half: number;
  #current = new Map<number, Bucket>();
  #previous = new Map<number, Bucket>();
  #shared: Bucket;

  constructor(config: Pick<GuardConfig, "perClient" | "global" | "trackedClients">) {
    this.#perClient = config.perClient;
    this.#global = config.global;
    this.#half = Math.max(1, Math.floor(config.trackedClients / 2));
    // Full from the start: the first refill (from time 0) is capped at the burst anyway.
    this.#shared = { tokens: config.global?.burst ?? 0, at: 0, limited: false };
  }

  /** Whether `admit` looks at its `isNew` argument (the caller may skip working it out). */
  get limitsNewClients(): boolean {
    return this.#global !== null;
  }

  /** Buckets held now (a client may be counted in both generations); at most trackedClients. */
  get tracked(): number {
    return this.#current.size + this.#previous.size;
  }

  /**
   * Takes a token from the client's bucket and, when `isNew` (no lease, no offer), from the
   * shared one. Returns null to go on, or which limit refused the request.
   */
  admit(key: string, isNew: boolean, now: number): Refusal | null {
    const per = this.#perClient;
    if (per !== null) {
      const b = this.#bucket(hashKey(key), per, now);
      if (!take(b, per, now)) return refuse(b) ? CLIENT_FIRST : CLIENT_AGAIN;
    }
    const global = this.#global;
    if (global !== null && isNew) {
      const b = this.#shared;
      if (!take(b, global, now)) return refuse(b) ? GLOBAL_FIRST : GLOBAL_AGAIN;
    }
    return null;
  }

  /** The client's bucket, in the newer generation; a new one starts full. */
  #bucket(h: number, limit: RateLimit, now: number): Bucket {
    const found = this.#current.get(h);
    if (found !== undefined) return found;
    const b = this.#previous.get(h) ?? { tokens: limit.burst, at: now, limited: false };
    if (this.#current.size >= this.#half) {
      this.#previous = this.#current;
      this.#current = new Map();
    }
    this.#current.set(h, b);
    return b;
  }
}
