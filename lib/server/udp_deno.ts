/**
 * A Transport on `Deno.listenDatagram` (needs `"unstable": ["net"]` or `--unstable-net`), for
 * loopback tests and relay-only set-ups. It cannot tell the interface or destination of a
 * datagram, cannot choose the outgoing interface, and cannot unicast to a client without an
 * address (hwAddress is ignored: the datagram goes to `address` through the routing table).
 * Use udp_ffi.ts when clients are on directly attached links (deno-notes.md §1).
 */

import { formatIpv4, parseIpv4 } from "../wire/ip.ts";
import type { Received, SendTarget, Transport } from "./transport.ts";

/** Options of openDenoTransport(). */
export interface DenoTransportOptions {
  address: string;
  port: number;
  /** Sends allowed in flight before send() refuses (returns false). Default 256. */
  maxInFlight?: number;
}

/** Counters of a DenoTransport, for metrics. */
export interface DenoTransportStats {
  received: number;
  sent: number;
  /** Sends that rejected asynchronously (after send() returned true). */
  sendFailures: number;
  /** Sends refused at once: closed, oversized, or too many in flight. */
  sendRefused: number;
  inFlight: number;
}

/** A Transport on Deno.listenDatagram, with counters. */
export interface DenoTransport extends Transport {
  readonly stats: Readonly<DenoTransportStats>;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Resolves once no send is in flight (run() waits for this before resolving). */
  idle(): Promise<void>;
}

const MAX_DATAGRAM = 65507;

/** Binds `address:port` with SO_REUSEADDR; throws Deno's error (e.g. AddrInUse) on failure. */
export function openDenoTransport(options: DenoTransportOptions): DenoTransport {
  return new DenoUdpTransport(options);
}

class DenoUdpTransport implements DenoTransport {
  readonly name: string;
  readonly port: number;
  readonly stats: DenoTransportStats = {
    received: 0,
    sent: 0,
    sendFailures: 0,
    sendRefused: 0,
    inFlight: 0,
  };
  readonly #conn: Deno.DatagramConn;
  readonly #localAddress: number | null;
  readonly #maxInFlight: number;
  readonly #buffer = new Uint8Array(65536);
  #running = false;
  #closed = false;
  /** Resolves when the last in-flight send settles (set while some are in flight). */
  #idle: PromiseWithResolvers<void> | null = null;

  constructor(options: DenoTransportOptions) {
    const bound = parseIpv4(options.address);
    if (bound === undefined) {
      throw new TypeError(
        `Cannot open UDP transport: "${options.address}" is not an IPv4 address`,
      );
    }
    this.#localAddress = bound === 0 ? null : bound;
    this.#maxInFlight = options.maxInFlight ?? 256;
    this.#conn = Deno.listenDatagram({
      transport: "udp",
      hostname: options.address,
      port: options.port,
      reuseAddress: true,
    });
    this.port = (this.#conn.addr as Deno.NetAddr).port;
    this.name = `deno ${options.address}:${this.port}`;
  }

  async run(onPacket: (packet: Received) => void, onBurstEnd?: () => void): Promise<void> {
    if (this.#running) throw new Error(`Cannot run ${this.name}: already running`);
    this.#running = true;
    try {
      while (!this.#closed) {
        let result: [Uint8Array, Deno.Addr];
        try {
          result = await this.#conn.receive(this.#buffer);
        } catch (e) {
          if (this.#closed) break;
          // ICMP-derived errors (e.g. ECONNREFUSED after sending to a closed port) surface
          // on the next receive on some systems; they say nothing about incoming data.
          if (e instanceof Deno.errors.ConnectionRefused) continue;
          throw e;
        }
        const [data, from] = result;
        const src = parseIpv4((from as Deno.NetAddr).hostname);
        if (src === undefined) continue;
        this.stats.received++;
        onPacket({
          data: data.slice(),
          srcAddress: src,
          srcPort: (from as Deno.NetAddr).port,
          ifindex: 0,
          ifname: null,
          localAddress: this.#localAddress,
          dstAddress: null,
        });
        // Deno offers no way to see whether more datagrams are ready: every packet is a burst.
        onBurstEnd?.();
      }
    } finally {
      this.#running = false;
      this.close();
      // Leave no pending op behind: wait for the sends still in flight to settle.
      await this.idle();
    }
  }

  idle(): Promise<void> {
    return this.#idle ? this.#idle.promise : Promise.resolve();
  }

  send(data: Uint8Array, to: SendTarget): boolean {
    if (this.#closed || data.length > MAX_DATAGRAM || this.stats.inFlight >= this.#maxInFlight) {
      this.stats.sendRefused++;
      return false;
    }
    // to.ifindex, to.srcAddress and to.hwAddress cannot be honoured with this API.
    let pending: Promise<number>;
    try {
      // Deno reads the buffer after send() returns, and callers reuse theirs: copy it.
      pending = this.#conn.send(data.slice(), {
        transport: "udp",
        hostname: formatIpv4(to.address >>> 0),
        port: to.port,
      });
    } catch {
      this.stats.sendRefused++;
      return false;
    }
    this.stats.inFlight++;
    this.#idle ??= Promise.withResolvers<void>();
    pending.then(
      () => this.stats.sent++,
      () => this.stats.sendFailures++,
    ).finally(() => {
      if (--this.stats.inFlight === 0 && this.#idle) {
        this.#idle.resolve();
        this.#idle = null;
      }
    });
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime.
    }
  }
}
