/**
 * A concurrent DHCP load generator for tests that also keeps its own record of every DHCPACK
 * it received: many simulated clients (distinct chaddrs 02:00:00:xx:xx:xx) share one loopback
 * socket and talk to the server the way a relay agent does (giaddr set, RFC 2131 §4.1), so no
 * root and no raw sockets are needed. Each client runs DISCOVER/OFFER/REQUEST/ACK (SELECTING)
 * and then renews its lease again and again (REQUEST with ciaddr, RFC 2131 §4.3.2); some
 * clients leave and are replaced by new ones, so new addresses keep being leased.
 *
 * perfdhcp counts exchanges but cannot say which client got which address with which lease
 * time, so this generator is the record the crash test compares the database with.
 */
import { buildRequest } from "../../lib/cli/relay_client.ts";
import {
  decodeDhcp,
  type DhcpMessage,
  DhcpType,
  encodeDhcp,
  getLeaseTime,
  getMessageType,
  getServerId,
} from "../../lib/wire/dhcp.ts";
import { formatIpv4, formatMac } from "../../lib/wire/ip.ts";

/** One DHCPACK a client received. Times are epoch milliseconds of the test's wall clock. */
export interface AckRecord {
  chaddr: string;
  address: string;
  /** "select": the ACK that granted the lease; "renew": an ACK of a renewal. */
  kind: "select" | "renew";
  xid: number;
  sentAt: number;
  receivedAt: number;
  /** Option 51 of the ACK, in seconds. */
  leaseTime: number;
  /**
   * The lease end the server wrote cannot be earlier than this: the server's `now` (whole
   * seconds) is not earlier than the second the REQUEST was sent in.
   */
  endsMin: number;
  /** ...nor later than this (the second the ACK arrived in, plus one for rounding). */
  endsMax: number;
}

/** A DHCPNAK a client received (for a bound client: its lease was refused). */
export interface NakRecord {
  chaddr: string;
  address: string;
  kind: "select" | "renew";
  at: number;
}

/** Options of DhcpLoad. */
export interface LoadOptions {
  /** The server's address and port (a loopback `listen` entry). */
  hostname: string;
  port: number;
  /** How many clients run at once. */
  clients: number;
  /** Seeds the PRNG that picks pauses, churn and xids (print it to replay a run). */
  seed: number;
  /** Pause between a client's exchanges, in ms: [min, max]. */
  pauseMs?: [number, number];
  /** How long a client waits for a reply, in ms. */
  replyTimeoutMs?: number;
  /** Chance that a client leaves after an ACK and a new client (new chaddr) takes its place. */
  churn?: number;
  /** The first client number (chaddr 02:00:00 + 24 bits); generators sharing a server differ. */
  firstClient?: number;
}

/** Counters of one run. */
export interface LoadStats {
  sent: number;
  received: number;
  acks: number;
  naks: number;
  timeouts: number;
}

/** mulberry32: a small seeded PRNG (uniform in [0, 1)). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Waiter {
  resolve: (msg: DhcpMessage | undefined) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** The load generator; start(), let it run, stop(), then read its record. */
export class DhcpLoad {
  readonly acks: AckRecord[] = [];
  readonly naks: NakRecord[] = [];
  readonly stats: LoadStats = { sent: 0, received: 0, acks: 0, naks: 0, timeouts: 0 };
  #o: Required<LoadOptions>;
  #random: () => number;
  #conn: Deno.DatagramConn;
  #server: Deno.NetAddr;
  #giaddr = 0x7f000001;
  #waiters = new Map<number, Waiter>();
  #sleepers = new Set<{ timer: ReturnType<typeof setTimeout>; resolve: () => void }>();
  #nextXid: number;
  #nextClient: number;
  #running = false;
  #loops: Promise<void>[] = [];
  #receiver: Promise<void> | null = null;

  constructor(options: LoadOptions) {
    this.#o = {
      pauseMs: [20, 200],
      replyTimeoutMs: 400,
      churn: 0.05,
      firstClient: 1,
      ...options,
    };
    this.#random = seededRandom(options.seed);
    this.#nextXid = (this.#random() * 0x7fffffff) >>> 0;
    this.#nextClient = this.#o.firstClient;
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#server = { transport: "udp", hostname: options.hostname, port: options.port };
  }

  /** Starts the receive loop and every client. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#receiver ??= this.#receive();
    for (let i = 0; i < this.#o.clients; i++) this.#loops.push(this.#client());
  }

  /** Stops every client (each finishes its current wait) and closes the socket. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const s of this.#sleepers) {
      clearTimeout(s.timer);
      s.resolve();
    }
    this.#sleepers.clear();
    await Promise.all(this.#loops);
    this.#loops = [];
    for (const w of this.#waiters.values()) {
      clearTimeout(w.timer);
      w.resolve(undefined);
    }
    this.#waiters.clear();
    this.#conn.close();
    await this.#receiver;
  }

  /** The newest ACK of every client that ever got one, by chaddr. */
  latest(): Map<string, AckRecord> {
    const out = new Map<string, AckRecord>();
    for (const a of this.acks) {
      const seen = out.get(a.chaddr);
      if (!seen || a.receivedAt >= seen.receivedAt) out.set(a.chaddr, a);
    }
    return out;
  }

  /**
   * Sends a DHCPINFORM and resolves true once the server answers it (the server is up),
   * false at the deadline. INFORM needs no storage (RFC 2131 §4.3.5).
   */
  async answering(timeoutMs: number): Promise<boolean> {
    this.#receiver ??= this.#receive();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const reply = await this.inform(Math.min(200, Math.max(1, deadline - Date.now())));
      if (reply && getMessageType(reply) === DhcpType.DHCPACK) return true;
    }
    return false;
  }

  /** One DHCPINFORM from a configured client address; the reply, or undefined on timeout. */
  async inform(timeoutMs: number, ciaddr = 0xc6120002): Promise<DhcpMessage | undefined> {
    this.#receiver ??= this.#receive();
    const mac = new Uint8Array([2, 0, 0, 0xff, 0xff, 0xfe]);
    return await this.#exchange(
      buildRequest(DhcpType.DHCPINFORM, mac, { xid: this.#xid(), giaddr: this.#giaddr, ciaddr }),
      timeoutMs,
    );
  }

  /** A DHCPDISCOVER alone; the reply (an OFFER) or undefined. */
  async discover(mac: Uint8Array, timeoutMs: number): Promise<DhcpMessage | undefined> {
    this.#receiver ??= this.#receive();
    return await this.#exchange(
      buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: this.#xid(), giaddr: this.#giaddr }),
      timeoutMs,
    );
  }

  /** A full DISCOVER/OFFER/REQUEST exchange for one new client; the final reply or undefined. */
  async lease(mac: Uint8Array, timeoutMs: number): Promise<DhcpMessage | undefined> {
    this.#receiver ??= this.#receive();
    const chaddr = formatMac(mac);
    const offer = await this.#exchange(
      buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: this.#xid(), giaddr: this.#giaddr }),
      timeoutMs,
    );
    if (!offer || getMessageType(offer) !== DhcpType.DHCPOFFER) return offer;
    return await this.#request(chaddr, mac, "select", offer.yiaddr, getServerId(offer), timeoutMs);
  }

  /** A renewal (REQUEST with ciaddr) for a bound client; the reply or undefined. */
  async renew(
    mac: Uint8Array,
    address: number,
    timeoutMs: number,
  ): Promise<DhcpMessage | undefined> {
    this.#receiver ??= this.#receive();
    return await this.#request(formatMac(mac), mac, "renew", address, undefined, timeoutMs);
  }

  #xid(): number {
    this.#nextXid = (this.#nextXid + 1) >>> 0;
    return this.#nextXid;
  }

  #mac(): Uint8Array {
    const n = this.#nextClient++;
    return new Uint8Array([2, 0, 0, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
  }

  async #client(): Promise<void> {
    let mac = this.#mac();
    let bound: number | null = null;
    while (this.#running) {
      await this.#pause();
      if (!this.#running) break;
      const reply: DhcpMessage | undefined = bound === null
        ? await this.lease(mac, this.#o.replyTimeoutMs)
        : await this.renew(mac, bound, this.#o.replyTimeoutMs);
      const type = reply && getMessageType(reply);
      if (type === DhcpType.DHCPACK && reply) {
        bound = reply.yiaddr;
        if (this.#random() < this.#o.churn) {
          // This client goes away holding its lease; a new one arrives.
          mac = this.#mac();
          bound = null;
        }
      } else if (type === DhcpType.DHCPNAK) {
        bound = null;
      }
    }
  }

  async #request(
    chaddr: string,
    mac: Uint8Array,
    kind: "select" | "renew",
    address: number,
    serverId: number | undefined,
    timeoutMs: number,
  ): Promise<DhcpMessage | undefined> {
    const xid = this.#xid();
    const msg = kind === "select"
      ? buildRequest(DhcpType.DHCPREQUEST, mac, {
        xid,
        giaddr: this.#giaddr,
        requested: address,
        ...(serverId !== undefined ? { serverId } : {}),
      })
      : buildRequest(DhcpType.DHCPREQUEST, mac, { xid, giaddr: this.#giaddr, ciaddr: address });
    const sentAt = Date.now();
    const reply = await this.#exchange(msg, timeoutMs);
    const receivedAt = Date.now();
    const type = reply && getMessageType(reply);
    if (reply && type === DhcpType.DHCPACK) {
      const leaseTime = getLeaseTime(reply) ?? 0;
      this.stats.acks++;
      this.acks.push({
        chaddr,
        address: formatIpv4(reply.yiaddr),
        kind,
        xid,
        sentAt,
        receivedAt,
        leaseTime,
        endsMin: Math.floor(sentAt / 1000) + leaseTime,
        endsMax: Math.floor(receivedAt / 1000) + leaseTime + 1,
      });
    } else if (type === DhcpType.DHCPNAK) {
      this.stats.naks++;
      this.naks.push({ chaddr, address: formatIpv4(address), kind, at: receivedAt });
    }
    return reply;
  }

  async #exchange(msg: DhcpMessage, timeoutMs: number): Promise<DhcpMessage | undefined> {
    const { promise, resolve } = Promise.withResolvers<DhcpMessage | undefined>();
    const timer = setTimeout(() => {
      this.#waiters.delete(msg.xid);
      this.stats.timeouts++;
      resolve(undefined);
    }, timeoutMs);
    this.#waiters.set(msg.xid, { resolve, timer });
    try {
      this.stats.sent++;
      await this.#conn.send(encodeDhcp(msg), this.#server);
    } catch {
      // The socket refused (closed while stopping): the wait ends by its timer.
    }
    return await promise;
  }

  async #pause(): Promise<void> {
    const [min, max] = this.#o.pauseMs;
    const ms = min + this.#random() * (max - min);
    const { promise, resolve } = Promise.withResolvers<void>();
    const sleeper = { timer: setTimeout(() => resolve(), ms), resolve };
    this.#sleepers.add(sleeper);
    await promise;
    this.#sleepers.delete(sleeper);
  }

  async #receive(): Promise<void> {
    while (true) {
      let data: Uint8Array;
      try {
        [data] = await this.#conn.receive();
      } catch {
        return; // closed
      }
      let msg: DhcpMessage;
      try {
        msg = decodeDhcp(data);
      } catch {
        continue;
      }
      if (msg.op !== 2) continue;
      this.stats.received++;
      const w = this.#waiters.get(msg.xid);
      if (!w) continue;
      this.#waiters.delete(msg.xid);
      clearTimeout(w.timer);
      w.resolve(msg);
    }
  }
}
