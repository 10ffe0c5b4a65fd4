/**
 * The failover partner link's I/O shell (draft-12 §8): listens on the failover port, dials
 * the partner with backoff, accepts only the configured partner address, frames the byte
 * stream, runs one FailoverLink per connection and keeps at most one link up.
 */
import { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { WireError } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  type FailoverMessage,
  FrameReader,
  MsgType,
  msgTypeName,
  ReplayGuard,
} from "../wire/failover.ts";
import { AckLatency, type AckLatencySummary } from "./ack_latency.ts";
import { formatIpv4 } from "../wire/ip.ts";
import { joinParts } from "../wire/bytes.ts";
import {
  FailoverLink,
  type LinkEffect,
  type LinkInput,
  type LinkSettings,
  type LocalState,
  type PartnerInfo,
} from "./link.ts";

/** Where to listen and whom to dial. */
export interface PeerAddresses {
  address: number;
  port: number;
  peer: number;
  peerPort: number;
}

/** Options for PeerService. */
export interface PeerServiceOptions {
  settings: LinkSettings;
  addresses: PeerAddresses;
  logger: Logger;
  /** This server's state for STATE messages. */
  localState: () => LocalState;
  /** Communications OK (§8.3). */
  onUp?: (partner: PartnerInfo) => void;
  /** Communications lost. */
  onDown?: (reason: string) => void;
  /** A message after the link is up. */
  onMessage?: (message: FailoverMessage) => void;
  /** Seconds between dial attempts while the partner is unreachable (ISC: 5). */
  retrySeconds?: number;
  /** Seconds between dial attempts after the partner rejected us (§8.2, §7.9: a minute or two). */
  rejectedRetrySeconds?: number;
  /** Wall clock in epoch seconds (fractions allowed). */
  now?: () => number;
}

/** Bytes queued to a partner that does not read before the link is dropped. */
const MAX_QUEUED_BYTES = 1 << 20;
/**
 * Connections from the partner's address allowed to be in their handshake at once: one is
 * normal, two happen when both sides dial at the same moment; more is a flood.
 */
const MAX_HANDSHAKING = 4;

/** What the read loop reads from and writes to: the TCP connection, or TLS over it. */
interface PeerStream {
  read(buf: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

interface Connection {
  conn: Deno.TcpConn;
  /** The TCP connection until TLS is up (draft-12 §11.2), then the TLS stream over it. */
  stream: PeerStream;
  link: FailoverLink;
  remote: string;
  queued: number;
  /** Messages not yet handed to the stream; one write takes all of them (one send(2)). */
  outbox: Uint8Array[];
  writing: Promise<void>;
  closed: boolean;
  /** A start-tls effect asked for TLS in this role; the read loop starts it. */
  upgrade: "client" | "server" | null;
  /** When the connection opened (for the handshake deadline). */
  opened: number;
}

/** What `status()` reports. */
export interface PeerStatus {
  link: "down" | "connecting" | "up";
  partner: PartnerInfo | null;
  /** Partner clock minus ours, smoothed, seconds (draft §5.10). */
  skew: number | null;
  /** Seconds since the partner last sent anything, or null. */
  sinceContact: number | null;
  connections: number;
  /** BNDUPD -> BNDACK round trips (draft-12 §7.1-§7.2), measured on this side. */
  bndupdAck?: AckLatencySummary;
}

/** The partner link of one failover relationship. */
export class PeerService {
  #o: PeerServiceOptions;
  #now: () => number;
  #listener: Deno.TcpListener | null = null;
  #connections = new Set<Connection>();
  #up: Connection | null = null;
  #replay = new ReplayGuard();
  #tick: ReturnType<typeof setInterval> | undefined;
  #nextDial = 0;
  #dialing = false;
  #stopped = false;
  #tasks = new Set<Promise<unknown>>();
  readonly #ackLatency = new AckLatency();

  constructor(options: PeerServiceOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => Date.now() / 1000);
  }

  /** Opens the listening socket and starts dialing; throws when the port cannot be bound. */
  start(): void {
    const a = this.#o.addresses;
    const hostname = formatIpv4(a.address);
    try {
      this.#listener = Deno.listen({ transport: "tcp", hostname, port: a.port });
    } catch (e) {
      throw new Error(
        `Cannot listen for the failover partner on ${hostname}:${a.port}: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    this.#track(this.#acceptLoop(this.#listener));
    this.#tick = setInterval(() => this.#onTick(), 500);
    this.#onTick();
  }

  /** The listening port (useful when started on port 0). */
  get port(): number {
    return (this.#listener?.addr as Deno.NetAddr | undefined)?.port ?? this.#o.addresses.port;
  }

  /** Link state for `duet status` and metrics. */
  status(): PeerStatus {
    const now = this.#now();
    const up = this.#up;
    const any = up ?? [...this.#connections][0];
    return {
      link: up ? "up" : this.#connections.size > 0 ? "connecting" : "down",
      partner: up?.link.partner ?? null,
      skew: any?.link.skew ?? null,
      sinceContact: any ? any.link.idleFor(now) : null,
      connections: this.#connections.size,
      bndupdAck: this.#ackLatency.summary(),
    };
  }

  /** Tells the partner about a new local state (§7.10). */
  sendState(local: LocalState): void {
    if (this.#up) this.#input(this.#up, { kind: "state", now: this.#now(), local });
  }

  /** Sends a message on the up link; false when the link is down. */
  send(build: (header: { time: number; xid: number }) => FailoverMessage): boolean {
    const c = this.#up;
    if (!c) return false;
    const now = this.#now();
    const message = build({ time: Math.floor(now), xid: c.link.nextXid() });
    this.#input(c, { kind: "send", now, message });
    return true;
  }

  /**
   * The next xid on the up link, for a message built ahead of sendMessage() (a BNDUPD whose
   * xid the binding sync records, draft-12 §7.2.2); null when the link is down.
   */
  nextXid(): number | null {
    return this.#up ? this.#up.link.nextXid() : null;
  }

  /** Sends a message built with nextXid() on the up link; false when the link is down. */
  sendMessage(message: FailoverMessage): boolean {
    const c = this.#up;
    if (!c) return false;
    if (message.type === MsgType.BNDUPD) this.#ackLatency.sent(message.xid, performance.now());
    this.#input(c, { kind: "send", now: this.#now(), message });
    return true;
  }

  /** Ends the up connection with a DISCONNECT and `reason` (§7.12); it is dialled again. */
  drop(reason: string): void {
    const c = this.#up;
    if (c) this.#input(c, { kind: "fail", now: this.#now(), text: reason });
  }

  /** Closes every connection and the listener; waits for the loops to end. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#tick !== undefined) clearInterval(this.#tick);
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
    for (const c of [...this.#connections]) this.#closeConnection(c, "Server stopping", false);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  #track(p: Promise<unknown>): void {
    const t = p.catch((e) => {
      this.#o.logger.error("Failover link task failed", { error: (e as Error).message });
    }).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // listener closed
      }
      const remote = conn.remoteAddr as Deno.NetAddr;
      if (this.#stopped) {
        conn.close();
        return;
      }
      if (remote.hostname !== formatIpv4(this.#o.addresses.peer)) {
        // Only the configured partner may connect (§7.8.2 step 5, weak form of security).
        this.#o.logger.warn("Refused failover connection: not the configured partner", {
          from: `${remote.hostname}:${remote.port}`,
        });
        conn.close();
        continue;
      }
      if (this.#handshaking() >= MAX_HANDSHAKING) {
        // Each connection in its handshake holds a link until its deadline: bound them.
        this.#o.logger.warn("Refused failover connection: too many connections in handshake", {
          from: `${remote.hostname}:${remote.port}`,
          handshaking: MAX_HANDSHAKING,
        });
        conn.close();
        continue;
      }
      if (this.#o.settings.role === "primary") {
        // §8.2: a primary sends CONNECT only on a connection it opened; the partner's
        // connection is a stimulus to dial now.
        this.#o.logger.debug("Failover partner connected to us; dialing it", {
          from: `${remote.hostname}:${remote.port}`,
        });
        conn.close();
        if (!this.#up) this.#nextDial = 0;
        this.#onTick();
        continue;
      }
      this.#adopt(conn, false);
    }
  }

  #onTick(): void {
    if (this.#stopped) return;
    const now = this.#now();
    for (const c of [...this.#connections]) this.#input(c, { kind: "tick", now });
    if (!this.#up && !this.#dialing && now >= this.#nextDial && this.#handshaking() === 0) {
      this.#nextDial = now + (this.#o.retrySeconds ?? 5);
      this.#track(this.#dial());
    }
  }

  #handshaking(): number {
    let n = 0;
    for (const c of this.#connections) if (c.link.phase !== "up" && c.link.phase !== "closed") n++;
    return n;
  }

  async #dial(): Promise<void> {
    this.#dialing = true;
    const a = this.#o.addresses;
    try {
      const conn = await Deno.connect({
        transport: "tcp",
        hostname: formatIpv4(a.peer),
        port: a.peerPort,
      });
      if (this.#stopped || this.#up) {
        conn.close();
        return;
      }
      // A secondary's connection is a stimulus (§8.2); it still accepts CONNECT on it,
      // as an ISC primary sends CONNECT on whichever connection comes up first.
      this.#adopt(conn, true);
    } catch (e) {
      this.#o.logger.debug("Cannot reach the failover partner", {
        partner: `${formatIpv4(a.peer)}:${a.peerPort}`,
        error: (e as Error).message,
      });
    } finally {
      this.#dialing = false;
    }
  }

  #adopt(conn: Deno.TcpConn, initiated: boolean): void {
    try {
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
    } catch {
      // Not fatal.
    }
    const remote = conn.remoteAddr as Deno.NetAddr;
    const c: Connection = {
      conn,
      stream: conn,
      link: new FailoverLink(this.#o.settings, { initiated, replay: this.#replay }),
      remote: `${remote.hostname}:${remote.port}`,
      queued: 0,
      outbox: [],
      writing: Promise.resolve(),
      closed: false,
      upgrade: null,
      opened: this.#now(),
    };
    this.#connections.add(c);
    this.#o.logger.debug("Failover connection open", {
      remote: c.remote,
      initiated: String(initiated),
    });
    this.#input(c, { kind: "open", now: this.#now(), local: this.#o.localState() });
    this.#track(this.#readLoop(c));
  }

  async #readLoop(c: Connection): Promise<void> {
    let reader = new FrameReader();
    const buf = new Uint8Array(16384);
    for (;;) {
      if (c.upgrade !== null) {
        // §11.2: the CONNECT/CONNECTACK that agreed on TLS was the last message in the clear.
        const role = c.upgrade;
        c.upgrade = null;
        if (!await this.#startTls(c, role, reader.takeBuffered())) return;
        reader = new FrameReader();
        continue;
      }
      let n: number | null;
      try {
        n = await c.stream.read(buf);
      } catch (e) {
        this.#closeConnection(c, `Read failed: ${(e as Error).message}`, false);
        return;
      }
      if (n === null) {
        this.#closeConnection(c, "Partner closed the connection", false);
        return;
      }
      if (c.closed) return;
      let frames: Uint8Array[];
      try {
        frames = reader.push(buf.subarray(0, n));
      } catch (e) {
        if (!(e instanceof WireError)) throw e;
        // A length below 12 or above 2048 (§6.1): the stream cannot be resynchronised.
        this.#o.logger.warn("Dropping failover connection: bad framing", {
          remote: c.remote,
          error: e.message,
        });
        this.#input(c, { kind: "fail", now: this.#now(), text: e.message });
        this.#closeConnection(c, e.message, false);
        return;
      }
      for (const bytes of frames) {
        if (c.closed) return;
        this.#input(c, { kind: "frame", now: this.#now(), bytes });
      }
    }
  }

  /** Runs the TLS handshake on a connection; feeds tls-up or tls-failed to its link. */
  async #startTls(c: Connection, role: "client" | "server", early: Uint8Array): Promise<boolean> {
    const tls = this.#o.settings.tls;
    const left = Math.max(0.5, this.#o.settings.handshakeTimeout - (this.#now() - c.opened));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`not finished within ${Math.round(left)} s`)),
        left * 1000,
      );
    });
    deadline.catch(() => {}); // raced below; never an unhandled rejection when not raced
    let stream: PeerStream | null = null;
    try {
      if (!tls) throw new Error("TLS is not configured");
      // The CONNECTACK (or CONNECT) before the switch goes out in the clear first.
      await Promise.race([c.writing, deadline]);
      if (c.closed) return false;
      if (role === "client") {
        // A TLS server speaks only after the client's hello: early bytes are a broken partner.
        if (early.length > 0) throw new Error(`${early.length} octets arrived before TLS`);
        const name = tls.serverName ?? formatIpv4(this.#o.addresses.peer);
        const tlsConn = await Promise.race([
          Deno.startTls(c.conn, { hostname: name, ...(tls.ca ? { caCerts: [tls.ca] } : {}) }),
          deadline,
        ]);
        stream = tlsConn;
        await Promise.race([tlsConn.handshake(), deadline]);
      } else {
        if (!tls.cert || !tls.key) throw new Error("No certificate or key configured");
        const socket = new TLSSocket(duplexOf(c.conn, early), {
          isServer: true,
          cert: tls.cert,
          key: tls.key,
        });
        stream = nodeTlsStream(socket);
        await Promise.race([
          new Promise<void>((resolve, reject) => {
            socket.once("secure", () => resolve());
            socket.once("error", reject);
            socket.once("close", () => reject(new Error("the partner closed the connection")));
          }),
          deadline,
        ]);
      }
    } catch (e) {
      if (stream !== null) c.stream = stream;
      const text = e instanceof Error ? e.message : String(e);
      this.#input(c, { kind: "tls-failed", now: this.#now(), text });
      this.#closeConnection(c, `TLS handshake failed: ${text}`, false);
      return false;
    } finally {
      clearTimeout(timer);
    }
    c.stream = stream;
    if (c.closed) {
      stream.close();
      return false;
    }
    this.#input(c, { kind: "tls-up", now: this.#now() });
    return !c.closed;
  }

  #input(c: Connection, i: LinkInput): void {
    if (c.closed) return;
    try {
      this.#run(c, c.link.input(i));
    } catch (e) {
      // A bug on our side (the link, or the failover layer behind onMessage) must not leave a
      // connection that looks up but no longer reads: drop it; the partner reconnects.
      this.#o.logger.error("Failover link failed: closing the connection", {
        remote: c.remote,
        input: i.kind,
        error: e instanceof Error ? e.message : String(e),
      });
      this.#closeConnection(c, "Internal error", false);
    }
  }

  #run(c: Connection, effects: LinkEffect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case "write":
          this.#write(c, e.bytes, e.type);
          break;
        case "close":
          this.#closeConnection(c, e.reason, e.rejected);
          break;
        case "up":
          this.#becameUp(c, e.partner);
          break;
        case "message":
          if (e.message.type === MsgType.BNDACK) {
            this.#ackLatency.acked(e.message.xid, performance.now());
          }
          this.#o.onMessage?.(e.message);
          break;
        case "log":
          this.#o.logger[e.level](e.msg, { remote: c.remote, ...e.fields });
          break;
        case "start-tls":
          c.upgrade = e.role;
          break;
      }
    }
  }

  #becameUp(c: Connection, partner: PartnerInfo): void {
    // §8.2: one connection per relationship; the others are closed.
    for (const other of [...this.#connections]) {
      if (other !== c) this.#closeConnection(other, "Another connection is up", false);
    }
    this.#up = c;
    this.#o.onUp?.(partner);
  }

  #write(c: Connection, bytes: Uint8Array, type: number): void {
    if (c.closed) return;
    c.queued += bytes.length;
    if (c.queued > MAX_QUEUED_BYTES) {
      // §8.3: a partner that does not read would block CONTACT; drop it instead.
      this.#closeConnection(c, "Partner does not read its messages", false);
      return;
    }
    c.outbox.push(bytes);
    // Messages written while a write is under way go out together with the next one: a BNDACK
    // burst is one syscall, not one per message.
    if (c.outbox.length === 1) c.writing = c.writing.then(() => this.#drain(c));
    // (During a write the outbox starts empty again, so a message then chains one more
    // drain; the running drain usually takes it first and the chained one finds nothing.)
    if (this.#o.logger.debugEnabled) {
      this.#o.logger.debug("Sent failover message", { remote: c.remote, type: msgTypeName(type) });
    }
  }

  /** Writes what the outbox holds, in order, until it is empty. */
  async #drain(c: Connection): Promise<void> {
    while (c.outbox.length > 0) {
      // Messages queued during this write join the next one.
      const parts = c.outbox;
      c.outbox = [];
      const bytes = parts.length === 1 ? parts[0] as Uint8Array : joinParts(parts);
      let off = 0;
      try {
        while (off < bytes.length) off += await c.stream.write(bytes.subarray(off));
      } catch {
        // The read loop reports the failure.
      } finally {
        c.queued -= bytes.length;
      }
    }
  }

  #closeConnection(c: Connection, reason: string, rejected: boolean): void {
    if (c.closed) return;
    c.closed = true;
    this.#connections.delete(c);
    if (c.link.phase !== "closed") c.link.input({ kind: "closed", now: this.#now(), reason });
    // Writes already queued (a DISCONNECT, a rejecting CONNECTACK) go out before the close.
    this.#track(c.writing.then(() => {
      try {
        c.stream.close();
      } catch {
        // Already closed.
      }
      if (c.stream !== c.conn && c.upgrade === null) {
        try {
          c.conn.close();
        } catch {
          // Consumed by TLS or already closed.
        }
      }
    }));
    if (rejected) this.#nextDial = this.#now() + (this.#o.rejectedRetrySeconds ?? 60);
    if (this.#up === c) {
      this.#up = null;
      this.#ackLatency.connectionLost();
      this.#o.logger.warn("Failover communications down", { remote: c.remote, reason });
      this.#o.onDown?.(reason);
    } else {
      this.#o.logger.debug("Failover connection closed", { remote: c.remote, reason });
    }
  }
}

/**
 * A Deno TCP connection as a node stream, for node:tls's server side (Deno has no server-side
 * startTls). `early` holds bytes already read from the connection; they come out first.
 */
function duplexOf(conn: Deno.TcpConn, early: Uint8Array): Duplex {
  let reading = false;
  const d: Duplex = new Duplex({
    read() {
      if (reading) return;
      reading = true;
      (async () => {
        const buf = new Uint8Array(16384);
        for (;;) {
          let n: number | null;
          try {
            n = await conn.read(buf);
          } catch (e) {
            d.destroy(e as Error);
            return;
          }
          if (n === null) {
            d.push(null);
            return;
          }
          if (!d.push(buf.slice(0, n))) {
            reading = false;
            return;
          }
        }
      })();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      (async () => {
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
      })().then(() => callback(), (e) => callback(e as Error));
    },
    destroy(error, callback) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      callback(error);
    },
  });
  if (early.length > 0) d.unshift(early);
  return d;
}

/** A node TLS socket as a PeerStream: reads pull from what its data events delivered. */
function nodeTlsStream(socket: TLSSocket): PeerStream {
  const chunks: Uint8Array[] = [];
  let buffered = 0;
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  socket.on("data", (d: Uint8Array) => {
    chunks.push(new Uint8Array(d));
    buffered += d.length;
    // A partner that floods faster than the link reads is held back by TCP, not our memory.
    if (buffered > MAX_QUEUED_BYTES) socket.pause();
    notify();
  });
  socket.on("end", () => {
    ended = true;
    notify();
  });
  socket.on("close", () => {
    ended = true;
    notify();
  });
  socket.on("error", (e: Error) => {
    failure = e;
    notify();
  });
  return {
    async read(buf: Uint8Array): Promise<number | null> {
      while (chunks.length === 0 && !ended && failure === null) {
        await new Promise<void>((resolve) => (wake = resolve));
      }
      const first = chunks[0];
      if (first === undefined) {
        if (failure !== null) throw failure;
        return null;
      }
      const n = Math.min(first.length, buf.length);
      buf.set(first.subarray(0, n));
      if (n === first.length) chunks.shift();
      else chunks[0] = first.subarray(n);
      buffered -= n;
      if (buffered <= MAX_QUEUED_BYTES / 2 && socket.isPaused()) socket.resume();
      return n;
    },
    write(bytes: Uint8Array): Promise<number> {
      return new Promise((resolve, reject) => {
        socket.write(bytes, (e?: Error | null) => e ? reject(e) : resolve(bytes.length));
      });
    },
    close(): void {
      socket.destroy();
    },
  };
}
