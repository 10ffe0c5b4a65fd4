/**
 * The partner link of the failover simulation: the real pure link engine (lib/peer/link.ts
 * FailoverLink: CONNECT/CONNECTACK/STATE, CONTACT, tReceive, the codec) on both ends of a
 * simulated TCP network. Only the TCP shell of lib/peer/tcp.ts is simulated, and SimPeer mirrors
 * its rules: the primary dials, a secondary's connection is a stimulus, one link is up at a
 * time. The network delivers bytes in order within one connection, with seeded delays; a cut
 * holds every byte until it is restored (TCP retransmits), a reset closes both ends, a killed
 * process's sockets send FIN after what they had written. Connections are independent, so the
 * bytes of an old connection may arrive after those of a newer one (reordering across
 * reconnects, never within one).
 */
import type { PartnerLink, PartnerLinkHandlers } from "../../../lib/failover/endpoint.ts";
import { WireError } from "../../../lib/errors.ts";
import type { Logger } from "../../../lib/log.ts";
import {
  FailoverLink,
  type LinkEffect,
  type LinkInput,
  type LinkSettings,
  type LocalState,
  type PartnerInfo,
} from "../../../lib/peer/link.ts";
import type { PeerStatus } from "../../../lib/peer/tcp.ts";
import { type FailoverMessage, FrameReader, ReplayGuard } from "../../../lib/wire/failover.ts";
import type { Scheduler, TimerHandle } from "./clock.ts";

/** What the network asks of the simulation. */
export interface NetworkOptions {
  sched: Scheduler;
  /** One-way delay of the next segment, milliseconds. */
  delay(): number;
  /** Seen for every message an end sends (sendMessage) and every one its link delivers. */
  onSent?(end: ConnEnd, message: FailoverMessage): void;
  onReceived?(end: ConnEnd, message: FailoverMessage): void;
  /** Called after the received message has been handed to the endpoint. */
  onHandled?(end: ConnEnd, message: FailoverMessage): void;
  /** Any activity (for the simulation's microtask drain). */
  touch(): void;
}

interface Segment {
  /** null: FIN. */
  bytes: Uint8Array | null;
  at: number;
}

/** One direction of a connection: a FIFO of segments. */
class Pipe {
  q: Segment[] = [];
  head = 0;
  lastAt = 0;
  timer: TimerHandle | undefined;
  get size(): number {
    return this.q.length - this.head;
  }
}

/** One end of a simulated TCP connection, owned by one SimPeer. */
export class ConnEnd {
  readonly conn: Connection;
  readonly peer: SimPeer;
  link: FailoverLink | null = null;
  readonly reader = new FrameReader();
  /** Its socket is closed (by the link, a FIN, a reset, or the process dying). */
  closed = false;
  /** Segments from this end to the other. */
  readonly out = new Pipe();
  /** The partner's handshake values once this connection is up. */
  partner: PartnerInfo | null = null;
  /** BNDUPD xids sent on this connection and not yet acked (the §8.4 window). */
  readonly unacked = new Set<number>();

  constructor(conn: Connection, peer: SimPeer) {
    this.conn = conn;
    this.peer = peer;
  }

  get other(): ConnEnd {
    return this.conn.dialer === this ? this.conn.acceptor : this.conn.dialer;
  }
}

/** One simulated TCP connection. */
export class Connection {
  readonly id: number;
  /** The network dropped it (resetAll): what was in flight is gone, the ends learn it later. */
  broken = false;
  readonly dialer: ConnEnd;
  readonly acceptor: ConnEnd;
  constructor(id: number, dialer: SimPeer, acceptor: SimPeer) {
    this.id = id;
    this.dialer = new ConnEnd(this, dialer);
    this.acceptor = new ConnEnd(this, acceptor);
  }
}

/** The simulated network between the two servers. */
export class Network {
  readonly o: NetworkOptions;
  /** True while the path between the servers drops everything. */
  cut = false;
  /** The listening SimPeer of each role (its process is alive). */
  readonly listeners = new Map<"primary" | "secondary", SimPeer>();
  readonly connections = new Set<Connection>();
  #ids = 0;

  constructor(options: NetworkOptions) {
    this.o = options;
  }

  /** Bytes (or FIN) from `end` to its other end, after what it sent before. */
  write(end: ConnEnd, bytes: Uint8Array | null): void {
    this.o.touch();
    const p = end.out;
    const at = Math.max(p.lastAt, this.o.sched.nowMs + this.o.delay());
    p.lastAt = at;
    p.q.push({ bytes, at });
    this.#pump(end);
  }

  /** Bytes in flight on any connection. */
  get inFlight(): number {
    let n = 0;
    for (const c of this.connections) n += c.dialer.out.size + c.acceptor.out.size;
    return n;
  }

  #pump(end: ConnEnd): void {
    const p = end.out;
    if (p.timer !== undefined || this.cut) return;
    const seg = p.q[p.head];
    if (seg === undefined) return;
    p.timer = this.o.sched.at(seg.at, () => {
      p.timer = undefined;
      if (this.cut) return;
      p.q[p.head] = undefined as unknown as Segment;
      p.head++;
      if (p.head > 64 && p.head * 2 > p.q.length) {
        p.q = p.q.slice(p.head);
        p.head = 0;
      }
      this.#deliver(end.other, seg.bytes);
      this.#forget(end.conn);
      this.#pump(end);
    });
  }

  #deliver(to: ConnEnd, bytes: Uint8Array | null): void {
    this.o.touch();
    if (to.closed) return; // data for a closed socket is dropped (the kernel answers RST)
    if (bytes === null) to.peer.closeEnd(to, "Partner closed the connection", false);
    else to.peer.receive(to, bytes);
  }

  /** A connection whose ends are both closed and whose pipes are empty is gone. */
  #forget(c: Connection): void {
    if (
      c.dialer.closed && c.acceptor.closed && c.dialer.out.size === 0 && c.acceptor.out.size === 0
    ) {
      this.connections.delete(c);
    }
  }

  /** Starts a cut: nothing is delivered until restore(). */
  startCut(): void {
    if (this.cut) return;
    this.cut = true;
    for (const c of this.connections) {
      for (const e of [c.dialer, c.acceptor]) {
        this.o.sched.cancel(e.out.timer);
        e.out.timer = undefined;
      }
    }
  }

  /** Ends a cut: what was held is delivered, in order, after fresh delays. */
  restore(): void {
    if (!this.cut) return;
    this.cut = false;
    for (const c of this.connections) {
      for (const e of [c.dialer, c.acceptor]) {
        const p = e.out;
        let t = this.o.sched.nowMs;
        for (let i = p.head; i < p.q.length; i++) {
          const seg = p.q[i] as Segment;
          t = Math.max(t, this.o.sched.nowMs + this.o.delay());
          seg.at = t;
        }
        p.lastAt = Math.max(p.lastAt, t);
        this.#pump(e);
      }
    }
  }

  /** The network drops every connection (a router lost their state): both ends see a reset. */
  resetAll(): void {
    for (const c of [...this.connections]) {
      c.broken = true;
      for (const e of [c.dialer, c.acceptor]) {
        this.o.sched.cancel(e.out.timer);
        e.out.timer = undefined;
        e.out.q = [];
        e.out.head = 0;
      }
      for (const e of [c.dialer, c.acceptor]) {
        if (e.closed) continue;
        this.o.sched.after(this.o.delay(), () => {
          this.o.touch();
          if (!e.closed) e.peer.closeEnd(e, "Read failed: connection reset by peer", false);
          this.#forget(c);
        });
      }
    }
  }

  /**
   * A dial from `from` to the other role: refused at once by a host with nothing listening,
   * lost in a cut (the dialer gives up after a while), otherwise a connection whose acceptor
   * end appears after one delay and whose dialer end after a second one.
   */
  dial(from: SimPeer, done: (end: ConnEnd | null) => void): void {
    const sched = this.o.sched;
    const target = this.listeners.get(from.role === "primary" ? "secondary" : "primary");
    if (this.cut) {
      sched.after(3000, () => done(null));
      return;
    }
    if (target === undefined) {
      sched.after(2 * this.o.delay(), () => done(null));
      return;
    }
    const c = new Connection(++this.#ids, from, target);
    this.connections.add(c);
    sched.after(this.o.delay(), () => {
      this.o.touch();
      if (this.cut || this.listeners.get(target.role) !== target) {
        // SYN lost or nobody there any more: the dialer times out or is refused.
        c.dialer.closed = true;
        c.acceptor.closed = true;
        this.connections.delete(c);
        sched.after(this.cut ? 3000 : this.o.delay(), () => done(null));
        return;
      }
      target.accept(c.acceptor);
      sched.after(this.o.delay(), () => {
        this.o.touch();
        done(c.dialer);
      });
    });
  }
}

/** SimPeer options. */
export interface SimPeerOptions {
  net: Network;
  role: "primary" | "secondary";
  settings: LinkSettings;
  handlers: PartnerLinkHandlers;
  logger: Logger;
  /** The process's clock (its timers die with it). */
  now(): number;
  schedule(fn: () => void, ms: number): TimerHandle;
  cancel(h: TimerHandle | undefined): void;
  /** Seconds between dials of an unreachable partner (tcp.ts: 5). */
  retrySeconds: number;
  /** Milliseconds between link ticks (tcp.ts: 500). */
  tickMs: number;
}

/** A PartnerLink over the simulated network, with tcp.ts's connection rules. */
export class SimPeer implements PartnerLink {
  readonly role: "primary" | "secondary";
  readonly #o: SimPeerOptions;
  readonly #h: PartnerLinkHandlers;
  readonly ends = new Set<ConnEnd>();
  up: ConnEnd | null = null;
  #replay = new ReplayGuard();
  #tick: TimerHandle | undefined;
  #nextDial = 0;
  #dialing = false;
  #stopped = false;
  #started = false;

  constructor(options: SimPeerOptions) {
    this.#o = options;
    this.#h = options.handlers;
    this.role = options.role;
  }

  start(): void {
    this.#started = true;
    this.#o.net.listeners.set(this.role, this);
    this.#scheduleTick();
    this.#onTick();
  }

  #scheduleTick(): void {
    this.#tick = this.#o.schedule(() => {
      if (this.#stopped) return;
      this.#onTick();
      this.#scheduleTick();
    }, this.#o.tickMs);
  }

  status(): PeerStatus {
    const now = this.#o.now();
    const up = this.up;
    const any = up ?? [...this.ends][0];
    return {
      link: up ? "up" : this.ends.size > 0 ? "connecting" : "down",
      partner: up?.link?.partner ?? null,
      skew: any?.link?.skew ?? null,
      sinceContact: any?.link ? any.link.idleFor(now) : null,
      connections: this.ends.size,
    };
  }

  sendState(local: LocalState): void {
    if (this.up) this.#input(this.up, { kind: "state", now: this.#o.now(), local });
  }

  nextXid(): number | null {
    return this.up?.link ? this.up.link.nextXid() : null;
  }

  sendMessage(message: FailoverMessage): boolean {
    const c = this.up;
    if (!c) return false;
    this.#o.net.o.onSent?.(c, message);
    this.#input(c, { kind: "send", now: this.#o.now(), message });
    return true;
  }

  /** Ends the up connection with a DISCONNECT, as tcp.ts does. */
  drop(reason: string): void {
    const c = this.up;
    if (c) this.#input(c, { kind: "fail", now: this.#o.now(), text: reason });
  }

  /** SIGTERM path (endpoint.stop): every connection closed, FIN after what was written. */
  stop(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#stopped = true;
    this.#o.cancel(this.#tick);
    if (this.#o.net.listeners.get(this.role) === this) this.#o.net.listeners.delete(this.role);
    for (const e of [...this.ends]) this.closeEnd(e, "Server stopping", false);
    return Promise.resolve();
  }

  /** kill -9: the kernel closes the sockets; the link engine runs no more. */
  kill(): void {
    this.#stopped = true;
    this.#o.cancel(this.#tick);
    if (this.#o.net.listeners.get(this.role) === this) this.#o.net.listeners.delete(this.role);
    for (const e of this.ends) {
      e.closed = true;
      this.#o.net.write(e, null);
    }
    this.ends.clear();
    this.up = null;
  }

  get stopped(): boolean {
    return this.#stopped || !this.#started;
  }

  #onTick(): void {
    if (this.#stopped) return;
    const now = this.#o.now();
    for (const e of [...this.ends]) this.#input(e, { kind: "tick", now });
    if (!this.up && !this.#dialing && now >= this.#nextDial && this.#handshaking() === 0) {
      this.#nextDial = now + this.#o.retrySeconds;
      this.#dial();
    }
  }

  #handshaking(): number {
    let n = 0;
    for (const e of this.ends) {
      const phase = e.link?.phase;
      if (phase !== "up" && phase !== "closed") n++;
    }
    return n;
  }

  #dial(): void {
    this.#dialing = true;
    this.#o.net.dial(this, (end) => {
      this.#dialing = false;
      if (end === null) return;
      if (this.#stopped || this.up) {
        this.#closeSocket(end);
        return;
      }
      // tcp.ts: a secondary's own connection is a stimulus, but it accepts CONNECT on it.
      this.#adopt(end, true);
    });
  }

  /** A connection arrives at this listener (tcp.ts #acceptLoop). */
  accept(end: ConnEnd): void {
    if (this.#stopped) {
      this.#closeSocket(end);
      return;
    }
    if (this.role === "primary") {
      // §8.2: a primary sends CONNECT only on a connection it opened; dial back now.
      this.#closeSocket(end);
      if (!this.up) this.#nextDial = 0;
      this.#onTick();
      return;
    }
    this.#adopt(end, false);
  }

  #closeSocket(end: ConnEnd): void {
    if (end.closed) return;
    end.closed = true;
    this.#o.net.write(end, null);
  }

  #adopt(end: ConnEnd, initiated: boolean): void {
    if (end.closed) return;
    end.link = new FailoverLink(this.#o.settings, { initiated, replay: this.#replay });
    this.ends.add(end);
    this.#input(end, { kind: "open", now: this.#o.now(), local: this.#h.localState() });
  }

  /** Bytes from the network (tcp.ts #readLoop). */
  receive(end: ConnEnd, bytes: Uint8Array): void {
    if (end.closed || end.link === null) return;
    let frames: Uint8Array[];
    try {
      frames = end.reader.push(bytes);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      this.#input(end, { kind: "fail", now: this.#o.now(), text: e.message });
      this.closeEnd(end, e.message, false);
      return;
    }
    for (const f of frames) {
      if (end.closed) return;
      this.#input(end, { kind: "frame", now: this.#o.now(), bytes: f });
    }
  }

  #input(end: ConnEnd, i: LinkInput): void {
    if (end.closed || end.link === null) return;
    this.#run(end, end.link.input(i));
  }

  #run(end: ConnEnd, effects: LinkEffect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case "write":
          if (!end.closed) this.#o.net.write(end, e.bytes);
          break;
        case "close":
          this.closeEnd(end, e.reason, e.rejected);
          break;
        case "up":
          this.#becameUp(end, e.partner);
          break;
        case "message":
          this.#o.net.o.onReceived?.(end, e.message);
          this.#h.onMessage(e.message);
          this.#o.net.o.onHandled?.(end, e.message);
          break;
        case "log":
          if (e.level !== "debug") this.#o.logger[e.level](e.msg, e.fields);
          break;
      }
    }
  }

  #becameUp(end: ConnEnd, partner: PartnerInfo): void {
    for (const other of [...this.ends]) {
      if (other !== end) this.closeEnd(other, "Another connection is up", false);
    }
    end.partner = partner;
    this.up = end;
    this.#h.onUp(partner);
  }

  /** tcp.ts #closeConnection: writes already made go out, then FIN. */
  closeEnd(end: ConnEnd, reason: string, rejected: boolean): void {
    if (end.closed) return;
    end.closed = true;
    this.ends.delete(end);
    if (end.link !== null && end.link.phase !== "closed") {
      end.link.input({ kind: "closed", now: this.#o.now(), reason });
    }
    this.#o.net.write(end, null);
    if (rejected) this.#nextDial = this.#o.now() + 60;
    if (this.up === end) {
      this.up = null;
      this.#o.logger.warn("Failover communications down", { reason });
      this.#h.onDown(reason);
    }
  }
}
