/**
 * One failover TCP connection as a pure state machine (draft-12 §7.8-§7.12, §8): the
 * CONNECT/CONNECTACK/STATE handshake, the tSend/tReceive timers, message digests (§11.1),
 * replay checks and the time delta between partners (§5.10). Inputs carry the time; outputs
 * are effects that lib/peer/tcp.ts runs in order.
 */
import { PeerProtocolError, WireError } from "../errors.ts";
import {
  buildConnect,
  buildConnectAck,
  buildContact,
  buildDisconnect,
  buildState,
  decodeFailover,
  DIGEST_LENGTH,
  encodeFailover,
  FAILOVER_HEADER_LENGTH,
  FAILOVER_MAX_LENGTH,
  type FailoverMessage,
  FoOpt,
  getAssignedIpAddress,
  getHashBucketAssignment,
  getMaxUnackedBndupd,
  getMclt,
  getMessage,
  getProtocolVersion,
  getReceiveTimer,
  getRejectReason,
  getRelationshipName,
  getServerFlags,
  getServerState,
  getStartTimeOfState,
  getTlsReply,
  getTlsRequest,
  getVendorClassIdentifier,
  isIgnoredMsgType,
  MsgType,
  msgTypeName,
  RejectReason,
  rejectReasonText,
  ReplayGuard,
  serverStateName,
  signFailover,
  splitTransactions,
  TlsReply,
  TlsRequest,
  validateFailover,
  verifyFailover,
} from "../wire/failover.ts";

/** The settings of one failover relationship, as this end sees them. */
export interface LinkSettings {
  role: "primary" | "secondary";
  relationship: string;
  /** The primary sends it; a secondary with a value rejects a different one (§7.8.2 step 7). */
  mclt: number | null;
  /**
   * The primary sends it in CONNECT (32 octets, draft §12.11 / RFC 3074). On a secondary, the
   * assignment it expects, if configured: a CONNECT with another one is rejected (§7.8.2 step 8).
   */
  hba: Uint8Array | null;
  maxUnackedBndupd: number;
  /** tReceive in seconds: no message for this long and the link is dropped (§8.3). */
  receiveTimer: number;
  vendorClass: string;
  /** Shared secret for HMAC-MD5 message digests (§11.1), or null. */
  secret: Uint8Array | null;
  /** Largest accepted |partner time - our time| in seconds; 0 accepts any (§5.10). */
  maxClockSkew: number;
  /**
   * Seconds a new connection has to finish its handshake: CONNECT, CONNECTACK, TLS when used,
   * and the partner's STATE (§7.8.2, §7.9.2: wait only a limited time).
   */
  handshakeTimeout: number;
  /** TLS for the link (draft-12 §11.2), or absent/null for none. */
  tls?: LinkTls | null;
}

/**
 * TLS on the partner link (draft-12 §11.2). The primary is the TLS client and checks the
 * secondary's certificate; the secondary is the TLS server. The PEM texts are for the shell.
 */
export interface LinkTls {
  /** Refuse a partner that will not use TLS (TLS-request 2); otherwise TLS-request 1. */
  require: boolean;
  /** The secondary's certificate chain (PEM), for the TLS server. */
  cert: string | null;
  /** The secondary's private key (PEM). */
  key: string | null;
  /** CA certificates (PEM) the primary checks the secondary's certificate against. */
  ca: string | null;
  /** The name the secondary's certificate must carry (default: the partner's address). */
  serverName: string | null;
}

/** This server's failover state, as a STATE message carries it (§7.10). */
export interface LocalState {
  serverState: number;
  serverFlags: number;
  startTimeOfState: number;
}

/** What the partner said about itself during the handshake. */
export interface PartnerInfo {
  relationship: string;
  vendorClass: string | null;
  maxUnackedBndupd: number | null;
  receiveTimer: number | null;
  /** From the primary's CONNECT. */
  mclt: number | null;
  hba: Uint8Array | null;
  serverState: number;
  serverFlags: number;
  startTimeOfState: number;
  /** Whether the link runs over TLS (§11.2); absent means no. */
  tls?: boolean;
}

/** The handshake half of PartnerInfo. */
type ConnectInfo = Omit<
  PartnerInfo,
  "serverState" | "serverFlags" | "startTimeOfState" | "tls"
>;

/** Inputs to a link. `now` is epoch seconds (may be fractional). */
export type LinkInput =
  | { kind: "open"; now: number; local: LocalState }
  | { kind: "frame"; now: number; bytes: Uint8Array }
  | { kind: "tick"; now: number }
  | { kind: "state"; now: number; local: LocalState }
  | { kind: "send"; now: number; message: FailoverMessage }
  | { kind: "closed"; now: number; reason: string }
  /** The byte stream is broken (framing): DISCONNECT and close. */
  | { kind: "fail"; now: number; text: string }
  /** The shell finished the TLS handshake asked for by a start-tls effect (§11.2). */
  | { kind: "tls-up"; now: number }
  /** The TLS handshake failed: close (nothing can be sent in the clear any more). */
  | { kind: "tls-failed"; now: number; text: string };

/** Effects a link asks its shell to run, in order. */
export type LinkEffect =
  | { kind: "write"; bytes: Uint8Array; type: number }
  /** Close the socket after the writes before it. */
  | { kind: "close"; reason: string; rejected: boolean }
  /** Communications are OK (§8.3): CONNECT/CONNECTACK done and the partner's STATE received. */
  | { kind: "up"; partner: PartnerInfo }
  /** A message after the link is up (STATE, BNDUPD, BNDACK, UPDREQ...), for the failover layer. */
  | { kind: "message"; message: FailoverMessage }
  /**
   * Start TLS on this connection after the writes before it (§11.2): stop reading frames in
   * the clear, run the handshake as `role`, then feed tls-up or tls-failed.
   */
  | { kind: "start-tls"; role: "client" | "server" }
  | {
    kind: "log";
    level: "debug" | "info" | "warn" | "error";
    msg: string;
    fields?: Record<string, string | number>;
  };

/** Where a link is in its life. */
export type LinkPhase =
  | "new"
  | "await-connect"
  | "await-connectack"
  /** CONNECT/CONNECTACK agreed on TLS; the shell runs the TLS handshake. */
  | "tls"
  | "await-state"
  | "up"
  | "closed";

/** Octets of a BNDACK answer that rejects one binding without a message (§7.2, §6.3). */
const REJECT_ACK_OCTETS = 8 + 5;
/** Octets the message-digest option adds (§11.1, §12.17). */
const DIGEST_OPTION_OCTETS = 4 + 1 + DIGEST_LENGTH;
/** RFC 2131 §2: chaddr is 16 octets; client-hardware-address adds the htype (§12.5). */
const MAX_HARDWARE_ADDRESS_OCTETS = 1 + 16;

/** One connection's protocol engine. */
export class FailoverLink {
  readonly settings: LinkSettings;
  /** True when this end opened the TCP connection. */
  readonly initiated: boolean;
  #phase: LinkPhase = "new";
  #xid = 0;
  #connectXid = -1;
  #opened = 0;
  #lastReceived = 0;
  #lastSent = 0;
  #replay: ReplayGuard;
  #local: LocalState = { serverState: 1, serverFlags: 0, startTimeOfState: 0 };
  /** What the last STATE on this connection said, or null before the first. */
  #sentLocal: LocalState | null = null;
  #partner: PartnerInfo | null = null;
  #connectInfo: ConnectInfo | null = null;
  /** The handshake finished over TLS (§11.2). */
  #secured = false;
  /** xids of the partner's BNDUPDs not answered yet (§8.4). */
  #unacked = new Set<number>();
  /** Smoothed partner time minus our time, in seconds (§5.10); null before the first message. */
  skew: number | null = null;

  constructor(settings: LinkSettings, options: { initiated: boolean; replay: ReplayGuard }) {
    this.settings = settings;
    this.initiated = options.initiated;
    this.#replay = options.replay;
  }

  get phase(): LinkPhase {
    return this.#phase;
  }

  /** The partner's handshake values and last STATE, once up. */
  get partner(): PartnerInfo | null {
    return this.#partner;
  }

  /** Seconds since the last message arrived. */
  idleFor(now: number): number {
    return now - this.#lastReceived;
  }

  /** Feeds one input; returns the effects to run. */
  input(i: LinkInput): LinkEffect[] {
    const out: LinkEffect[] = [];
    if (this.#phase === "closed") return out;
    switch (i.kind) {
      case "open":
        this.#open(i.now, i.local, out);
        break;
      case "frame":
        this.#frame(i.now, i.bytes, out);
        break;
      case "tick":
        this.#tick(i.now, out);
        break;
      case "state":
        this.#local = i.local;
        // §7.10: the partner hears of a change; the same state again is no news.
        if (this.#phase === "up" && !sameLocal(i.local, this.#sentLocal)) {
          this.#sendState(i.now, out);
        }
        break;
      case "send":
        if (this.#phase === "up") this.#send(i.now, i.message, out);
        break;
      case "fail":
        this.#disconnect(i.now, RejectReason.UNKNOWN, i.text, out);
        break;
      case "tls-up":
        if (this.#phase === "tls") this.#tlsUp(i.now, out);
        break;
      case "tls-failed":
        if (this.#phase === "tls") {
          out.push({
            kind: "log",
            level: "error",
            msg: "Failover TLS handshake failed",
            fields: { error: i.text },
          });
          this.#close(`TLS handshake failed: ${i.text}`, false, out);
        }
        break;
      case "closed":
        this.#phase = "closed";
        out.push({
          kind: "log",
          level: "info",
          msg: "Failover connection closed",
          fields: { reason: i.reason },
        });
        break;
    }
    return out;
  }

  /** The next xid for a message this end originates (§6.1: ISC counts from 0). */
  nextXid(): number {
    const x = this.#xid;
    this.#xid = (this.#xid + 1) >>> 0;
    return x;
  }

  #h(now: number): { time: number; xid: number } {
    return { time: Math.floor(now), xid: this.nextXid() };
  }

  #open(now: number, local: LocalState, out: LinkEffect[]): void {
    this.#local = local;
    this.#opened = now;
    this.#lastReceived = now;
    this.#lastSent = now;
    this.#replay.newConnection();
    if (this.settings.role === "primary") {
      // §8.2, §7.8.1: the primary's first message on a connection is CONNECT.
      this.#sendConnect(now, this.#h(now), out);
    } else {
      // §7.8.2: a secondary sends nothing before CONNECT.
      this.#phase = "await-connect";
    }
  }

  /** §7.8.1: CONNECT; TLS-request only before TLS (§8.2: not on the secured connection). */
  #sendConnect(now: number, h: { time: number; xid: number }, out: LinkEffect[]): void {
    const s = this.settings;
    this.#connectXid = h.xid;
    const tlsRequest = this.#secured
      ? undefined
      : !s.tls
      ? TlsRequest.NONE
      : s.tls.require
      ? TlsRequest.REQUIRED
      : TlsRequest.DESIRED;
    this.#send(
      now,
      buildConnect(h, {
        relationshipName: s.relationship,
        maxUnackedBndupd: s.maxUnackedBndupd,
        receiveTimer: s.receiveTimer,
        vendorClassIdentifier: s.vendorClass,
        tlsRequest,
        mclt: s.mclt ?? 0,
        hashBucketAssignment: s.hba ?? new Uint8Array(32),
      }),
      out,
    );
    this.#phase = "await-connectack";
  }

  #sendState(now: number, out: LinkEffect[]): void {
    this.#sentLocal = this.#local;
    this.#send(now, buildState(this.#h(now), this.#local), out);
  }

  #send(now: number, msg: FailoverMessage, out: LinkEffect[]): void {
    if (msg.type === MsgType.BNDACK) this.#unacked.delete(msg.xid);
    const bytes = this.#encode(msg);
    if (bytes === null) {
      // Our own message cannot be sent (a bug, not the partner's doing): drop the link rather
      // than leave it half working; the failover layer sends again on the next connection.
      out.push({
        kind: "log",
        level: "error",
        msg: "Cannot encode a failover message: closing the connection",
        fields: { type: msgTypeName(msg.type) },
      });
      this.#close(`Cannot encode ${msgTypeName(msg.type)}`, false, out);
      return;
    }
    this.#lastSent = now;
    out.push({ kind: "write", bytes, type: msg.type });
  }

  /**
   * The message's bytes, signed when there is a secret (§11.1). A BNDACK that the digest
   * pushes past 2048 octets loses its message texts from the end (SHOULD, §7.2.1) until it
   * fits; null when a message cannot be encoded at all.
   */
  #encode(msg: FailoverMessage): Uint8Array | null {
    let m = msg;
    for (;;) {
      try {
        return this.settings.secret ? signFailover(m, this.settings.secret) : encodeFailover(m);
      } catch (e) {
        if (!(e instanceof RangeError)) throw e;
        const last = m.options.findLastIndex((o) => o.code === FoOpt.MESSAGE);
        if (m.type !== MsgType.BNDACK || last < 0) return null;
        m = { ...m, options: m.options.filter((_, i) => i !== last) };
      }
    }
  }

  /** Sends DISCONNECT with a reason (§7.12, §8.6), logs it and closes. */
  #disconnect(now: number, reason: number, text: string, out: LinkEffect[]): void {
    const handshake = this.#phase !== "up";
    this.#send(now, buildDisconnect(this.#h(now), { rejectReason: reason, message: text }), out);
    // Every DISCONNECT is logged: an up link's end also shows as "communications down", but a
    // failed handshake would otherwise go unseen (e.g. ISC's unsigned CONNECTACK to a primary
    // with a secret).
    out.push({
      kind: "log",
      level: "warn",
      msg: handshake
        ? "Failover handshake failed: sent DISCONNECT"
        : "Disconnecting the failover partner",
      fields: {
        reason: `${reason} ${rejectReasonText(reason)}`,
        message: text,
        phase: this.#phase,
      },
    });
    this.#close(`${rejectReasonText(reason)}: ${text}`, false, out);
  }

  #close(reason: string, rejected: boolean, out: LinkEffect[]): void {
    this.#phase = "closed";
    out.push({ kind: "close", reason, rejected });
  }

  #tick(now: number, out: LinkEffect[]): void {
    const s = this.settings;
    if (this.#phase !== "up" && now - this.#opened >= s.handshakeTimeout) {
      // §7.8.2, §7.9.2: wait for the handshake only a limited time. The deadline covers the
      // whole handshake, so that a partner trickling bytes, or sending CONTACTs instead of its
      // STATE, cannot hold a connection half open.
      const what = this.#phase === "await-connect"
        ? "No CONNECT"
        : this.#phase === "await-connectack"
        ? "No CONNECTACK"
        : this.#phase === "tls"
        ? "No TLS handshake"
        : "No STATE";
      out.push({
        kind: "log",
        level: "warn",
        msg: "Dropping failover connection: handshake not finished in time",
        fields: { phase: this.#phase, seconds: s.handshakeTimeout },
      });
      this.#close(`${what} within ${s.handshakeTimeout} s`, false, out);
      return;
    }
    if (this.#phase === "await-state" || this.#phase === "up") {
      if (now - this.#lastReceived >= s.receiveTimer) {
        // §8.3: tReceive expired.
        this.#disconnect(
          now,
          RejectReason.NO_TRAFFIC,
          `Nothing received for ${s.receiveTimer} s`,
          out,
        );
        return;
      }
      // §7.9.1: tSend is about a third of the partner's receive timer (ours if unknown).
      const partnerTimer = this.#connectInfo?.receiveTimer ?? s.receiveTimer;
      if (now - this.#lastSent >= Math.max(1, partnerTimer / 3)) {
        this.#send(now, buildContact(this.#h(now)), out);
      }
    }
  }

  #frame(now: number, bytes: Uint8Array, out: LinkEffect[]): void {
    // Nothing may arrive in the clear while the shell starts TLS.
    if (this.#phase === "tls") return;
    this.#lastReceived = now;
    let msg: FailoverMessage;
    try {
      msg = decodeFailover(bytes);
    } catch (e) {
      if (e instanceof WireError || e instanceof PeerProtocolError) {
        this.#disconnect(now, RejectReason.UNKNOWN, e.message, out);
        return;
      }
      throw e;
    }
    if (isIgnoredMsgType(msg.type)) return; // §6.1: types 128-255 are ignored
    this.#observeSkew(now, msg.time);

    // §11.1: the digest is checked before anything else in the message is believed.
    const verdict = verifyFailover(bytes, this.settings.secret ?? undefined, msg);
    if (
      verdict.status !== "ok" && verdict.status !== "unsigned" &&
      msg.type === MsgType.CONNECTACK && this.#phase === "await-connectack" &&
      getRejectReason(msg) !== undefined
    ) {
      // A partner whose secret differs cannot sign its rejection in a way we accept; report
      // it anyway (it only closes this connection) and say it is unauthenticated.
      this.#receiveConnectAck(now, msg, null, out, `digest ${verdict.status}`);
      return;
    }
    if (verdict.status !== "ok" && verdict.status !== "unsigned") {
      const text = `Message digest ${verdict.status} on ${msgTypeName(msg.type)}`;
      if (msg.type === MsgType.CONNECT) {
        this.#rejectConnect(now, msg, verdict.rejectReason, text, out);
      } else this.#disconnect(now, verdict.rejectReason, text, out);
      return;
    }
    // §11.1: replay protection means something only for authenticated messages.
    const replay = this.settings.secret ? this.#replay.check(msg) : "ok";
    if (replay !== "ok") {
      const text = replay === "stale-connect"
        ? `CONNECT time ${msg.time} is not newer than the last one`
        : `xid ${msg.xid} does not increase`;
      if (msg.type === MsgType.CONNECT) {
        this.#rejectConnect(now, msg, RejectReason.UNKNOWN, text, out);
      } else this.#disconnect(now, RejectReason.UNKNOWN, text, out);
      return;
    }
    if (msg.type === MsgType.DISCONNECT) {
      const reason = getRejectReason(msg);
      const text = getMessage(msg);
      out.push({
        kind: "log",
        level: "warn",
        msg: "Failover partner disconnected",
        fields: {
          reason: reason === undefined ? "none" : `${reason} ${rejectReasonText(reason)}`,
          ...(text ? { message: text } : {}),
        },
      });
      this.#close(`Partner sent DISCONNECT${text ? `: ${text}` : ""}`, true, out);
      return;
    }
    const problem = validateFailover(msg);
    switch (this.#phase) {
      case "await-connect":
        if (msg.type !== MsgType.CONNECT) {
          this.#disconnect(
            now,
            RejectReason.UNKNOWN_CONNECTION_REASON,
            `Expected CONNECT, got ${msgTypeName(msg.type)}`,
            out,
          );
          return;
        }
        if (problem && problem.level === "error") {
          this.#rejectConnect(now, msg, problem.rejectReason, problem.message, out);
          return;
        }
        this.#receiveConnect(now, msg, out);
        return;
      case "await-connectack":
        if (msg.type === MsgType.CONNECT) {
          // Both ends think they are primary.
          this.#rejectConnect(
            now,
            msg,
            RejectReason.INVALID_PARTNER,
            "This server is the primary too",
            out,
          );
          return;
        }
        if (msg.type !== MsgType.CONNECTACK) {
          this.#disconnect(
            now,
            RejectReason.UNKNOWN_CONNECTION_REASON,
            `Expected CONNECTACK, got ${msgTypeName(msg.type)}`,
            out,
          );
          return;
        }
        if (msg.xid !== this.#connectXid) return; // §7.9.2: SHOULD be ignored
        this.#receiveConnectAck(now, msg, problem?.level === "error" ? problem.message : null, out);
        return;
      case "await-state":
        if (msg.type === MsgType.CONTACT) return;
        if (msg.type !== MsgType.STATE) {
          this.#disconnect(
            now,
            RejectReason.UNKNOWN_CONNECTION_REASON,
            `Expected STATE, got ${msgTypeName(msg.type)}`,
            out,
          );
          return;
        }
        if (problem && problem.level === "error") {
          this.#disconnect(now, problem.rejectReason, problem.message, out);
          return;
        }
        this.#partner = {
          ...(this.#connectInfo as ConnectInfo),
          serverState: getServerState(msg) ?? 0,
          serverFlags: getServerFlags(msg) ?? 0,
          startTimeOfState: getStartTimeOfState(msg) ?? 0,
          tls: this.#secured,
        };
        this.#phase = "up";
        out.push({
          kind: "log",
          level: "info",
          msg: "Failover communications up",
          fields: {
            role: this.settings.role,
            partnerState: serverStateName(this.#partner.serverState),
            partnerVendor: this.#partner.vendorClass ?? "-",
            skew: Math.round(this.skew ?? 0),
            tls: this.#secured ? "on" : "off",
          },
        });
        out.push({ kind: "up", partner: this.#partner });
        return;
      case "up":
        if (msg.type === MsgType.CONTACT) return;
        if (msg.type === MsgType.CONNECT || msg.type === MsgType.CONNECTACK) {
          this.#disconnect(
            now,
            RejectReason.DUPLICATE_CONNECTION,
            `Unexpected ${msgTypeName(msg.type)}`,
            out,
          );
          return;
        }
        if (msg.type === MsgType.STATE && this.#partner) {
          if (problem && problem.level === "error") {
            this.#disconnect(now, problem.rejectReason, problem.message, out);
            return;
          }
          this.#partner = {
            ...this.#partner,
            serverState: getServerState(msg) ?? this.#partner.serverState,
            serverFlags: getServerFlags(msg) ?? 0,
            startTimeOfState: getStartTimeOfState(msg) ?? this.#partner.startTimeOfState,
          };
        }
        if (msg.type === MsgType.BNDUPD) {
          const abuse = this.#bndupdAbuse(msg);
          if (abuse !== null) {
            this.#disconnect(now, RejectReason.UNKNOWN, abuse, out);
            return;
          }
          this.#unacked.add(msg.xid);
        }
        // BNDUPD problems are answered per binding with BNDACK by the failover layer.
        out.push({ kind: "message", message: msg });
        return;
      default:
        return;
    }
  }

  /**
   * Why a BNDUPD breaks the link's rules rather than a binding's (those get a BNDACK reject,
   * §7.1.3), or null. Each is a partner that is broken or hostile:
   * - §8.4: the sender MUST NOT have more BNDUPDs unacknowledged than our max-unacked-bndupd.
   *   The draft names no remedy; the receiver only promises to take that many (§8.3), so one
   *   more is a protocol violation and the link is dropped.
   * - §6.3: every transaction MUST be answered in one BNDACK, which cannot exceed 2048 octets
   *   (§6.1): a BNDUPD with more transactions than that BNDACK can hold, or without any, or
   *   with an assigned-IP-address that is not 4 octets, cannot be answered.
   * - §12.5, RFC 2131 §2: a client hardware address is at most 16 octets.
   */
  #bndupdAbuse(msg: FailoverMessage): string | null {
    const limit = this.settings.maxUnackedBndupd;
    if (this.#unacked.size >= limit) {
      return `Partner sent more than ${limit} BNDUPD messages without waiting for BNDACK ` +
        `(max-unacked-bndupd, draft-12 §8.4)`;
    }
    const { transactions } = splitTransactions(msg);
    if (transactions.length === 0) return "BNDUPD without assigned-IP-address cannot be answered";
    const room = FAILOVER_MAX_LENGTH - FAILOVER_HEADER_LENGTH -
      (this.settings.secret ? DIGEST_OPTION_OCTETS : 0);
    const most = Math.floor(room / REJECT_ACK_OCTETS);
    if (transactions.length > most) {
      return `BNDUPD carries ${transactions.length} binding updates: one BNDACK can answer at ` +
        `most ${most} (draft-12 §6.3)`;
    }
    for (const group of transactions) {
      if (getAssignedIpAddress(group) === undefined) {
        return "BNDUPD has an assigned-IP-address that is not 4 octets";
      }
      for (const o of group) {
        if (
          o.code === FoOpt.CLIENT_HARDWARE_ADDRESS && o.data.length > MAX_HARDWARE_ADDRESS_OCTETS
        ) {
          return `BNDUPD client-hardware-address is ${o.data.length} octets, at most ` +
            `${MAX_HARDWARE_ADDRESS_OCTETS}`;
        }
      }
    }
    return null;
  }

  /** §8.2: TLS is up; the primary sends CONNECT again, the secondary waits for it. */
  #tlsUp(now: number, out: LinkEffect[]): void {
    this.#secured = true;
    out.push({ kind: "log", level: "debug", msg: "Failover TLS handshake done" });
    if (this.settings.role === "primary") this.#sendConnect(now, this.#h(now), out);
    else this.#phase = "await-connect";
  }

  /** §5.10: an exponentially smoothed delta, reset on a drastic change. */
  #observeSkew(now: number, time: number): void {
    const delta = time - now;
    if (this.skew === null || Math.abs(delta - this.skew) > 60) this.skew = delta;
    else this.skew = this.skew * 0.9 + delta * 0.1;
  }

  /** §7.8.2: answer a CONNECT we will not accept, then close. */
  #rejectConnect(
    now: number,
    connect: FailoverMessage,
    reason: number,
    text: string,
    out: LinkEffect[],
  ): void {
    const ack = buildConnectAck(
      { time: Math.floor(now), xid: connect.xid },
      {
        relationshipName: getRelationshipName(connect) ?? this.settings.relationship,
        // Table 7.9-1 (2), and the §7.8.2 step 3 table: reason 11 goes with TLS-reply 1.
        ...(getTlsRequest(connect) !== undefined && !this.#secured
          ? { tlsReply: reason === RejectReason.TLS_REQUIRED ? TlsReply.TLS : TlsReply.NONE }
          : {}),
        rejectReason: reason,
        message: text,
      },
    );
    this.#send(now, ack, out);
    out.push({
      kind: "log",
      level: "warn",
      msg: "Rejected failover CONNECT",
      fields: { reason: `${reason} ${rejectReasonText(reason)}`, message: text },
    });
    this.#close(`Rejected CONNECT: ${text}`, true, out);
  }

  /** §7.8.2: the secondary checks the primary's CONNECT, then CONNECTACK and STATE (§7.9.1). */
  #receiveConnect(now: number, msg: FailoverMessage, out: LinkEffect[]): void {
    const s = this.settings;
    const version = getProtocolVersion(msg);
    if (version !== 1) {
      this.#rejectConnect(
        now,
        msg,
        RejectReason.PROTOCOL_VERSION_MISMATCH,
        `Protocol version ${version} is not 1`,
        out,
      );
      return;
    }
    // §7.8.2 step 3 and its table; over TLS the second CONNECT carries no TLS-request (§8.2).
    const tls = this.#secured ? undefined : getTlsRequest(msg) ?? TlsRequest.NONE;
    const mine = s.tls ?? null;
    if (tls !== undefined) {
      if (mine === null && tls === TlsRequest.REQUIRED) {
        // Request 2, reply 0 -> 9 (no TLS configured here at all).
        this.#rejectConnect(
          now,
          msg,
          RejectReason.TLS_NOT_SUPPORTED,
          "TLS is not configured on this server",
          out,
        );
        return;
      }
      if (mine !== null && mine.require && tls === TlsRequest.NONE) {
        // Request 0, reply 1 -> 11: this server requires TLS, the primary will not use it.
        this.#rejectConnect(
          now,
          msg,
          RejectReason.TLS_REQUIRED,
          "This server requires TLS and the partner does not offer it (TLS-request 0)",
          out,
        );
        return;
      }
      if (mine !== null && tls !== TlsRequest.NONE) {
        // Reply 1: accept at once and start TLS; the checks below run on the second CONNECT,
        // over TLS (§7.8.2 step 5: after any TLS processing).
        this.#send(
          now,
          buildConnectAck(
            { time: Math.floor(now), xid: msg.xid },
            {
              relationshipName: s.relationship,
              maxUnackedBndupd: s.maxUnackedBndupd,
              receiveTimer: s.receiveTimer,
              vendorClassIdentifier: s.vendorClass,
              tlsReply: TlsReply.TLS,
            },
          ),
          out,
        );
        this.#phase = "tls";
        out.push({ kind: "start-tls", role: "server" });
        return;
      }
    }
    const name = getRelationshipName(msg);
    if (name !== s.relationship) {
      this.#rejectConnect(
        now,
        msg,
        RejectReason.INVALID_PARTNER,
        `Relationship "${name ?? ""}" is not "${s.relationship}"`,
        out,
      );
      return;
    }
    if (s.maxClockSkew > 0 && Math.abs(msg.time - now) > s.maxClockSkew) {
      this.#rejectConnect(
        now,
        msg,
        RejectReason.TIME_MISMATCH,
        `Clocks differ by ${Math.round(msg.time - now)} s, more than ${s.maxClockSkew} s`,
        out,
      );
      return;
    }
    const mclt = getMclt(msg) ?? null;
    if (s.mclt !== null && mclt !== s.mclt) {
      this.#rejectConnect(
        now,
        msg,
        RejectReason.INVALID_MCLT,
        `MCLT ${mclt} is not the configured ${s.mclt}`,
        out,
      );
      return;
    }
    const hba = getHashBucketAssignment(msg) ?? null;
    if (s.hba !== null && (hba === null || !sameBytes(hba, s.hba))) {
      // §7.8.2 step 8 names reason 19, but §12.21 gives 19 to "IP not reserved" and 18 to
      // "Hash bucket assignment conflict", which is what ISC dhcpd 4.4 sends: 18.
      this.#rejectConnect(
        now,
        msg,
        RejectReason.HASH_BUCKET_CONFLICT,
        hba === null
          ? "No hash-bucket-assignment in CONNECT, and one is configured"
          : "The hash-bucket-assignment is not the configured one",
        out,
      );
      return;
    }
    this.#connectInfo = connectInfo(msg, name, mclt, hba);
    this.#send(
      now,
      buildConnectAck(
        { time: Math.floor(now), xid: msg.xid },
        {
          relationshipName: s.relationship,
          maxUnackedBndupd: s.maxUnackedBndupd,
          receiveTimer: s.receiveTimer,
          vendorClassIdentifier: s.vendorClass,
          // Table 7.9-1 (1): TLS-reply when the CONNECT had TLS-request, never over TLS.
          ...(tls !== undefined && getTlsRequest(msg) !== undefined
            ? { tlsReply: TlsReply.NONE }
            : {}),
        },
      ),
      out,
    );
    this.#sendState(now, out);
    this.#phase = "await-state";
  }

  /** §7.9.2: the primary reads the CONNECTACK, then sends STATE. */
  #receiveConnectAck(
    now: number,
    msg: FailoverMessage,
    problem: string | null,
    out: LinkEffect[],
    unauthenticated?: string,
  ): void {
    const reason = getRejectReason(msg);
    if (reason !== undefined) {
      const text = getMessage(msg);
      out.push({
        kind: "log",
        level: "error",
        msg: "Failover partner rejected our CONNECT",
        fields: {
          reason: `${reason} ${rejectReasonText(reason)}`,
          ...(text ? { message: text } : {}),
          ...(unauthenticated ? { unauthenticated } : {}),
        },
      });
      this.#close(
        `CONNECT rejected: ${rejectReasonText(reason)}${text ? ` (${text})` : ""}`,
        true,
        out,
      );
      return;
    }
    if (problem !== null) {
      this.#disconnect(now, RejectReason.UNKNOWN_CONNECTION_REASON, problem, out);
      return;
    }
    const s = this.settings;
    if (!this.#secured) {
      // §7.9.2 step 4: TLS-reply 1 means TLS now, before anything else of the CONNECTACK.
      const reply = getTlsReply(msg) ?? TlsReply.NONE;
      if (reply === TlsReply.TLS) {
        if (!s.tls) {
          // We sent TLS-request 0: the table allows TLS-reply 1 only with reject-reason 11.
          this.#disconnect(
            now,
            RejectReason.TLS_REQUIRED,
            "Partner requires TLS, which is not configured on this server",
            out,
          );
          return;
        }
        this.#phase = "tls";
        out.push({ kind: "start-tls", role: "client" });
        return;
      }
      if (s.tls?.require) {
        // Request 2 answered with reply 0 and no rejection: the partner cannot do TLS.
        out.push({
          kind: "log",
          level: "error",
          msg: "Failover partner does not use TLS, which this server requires",
          fields: { partnerVendor: getVendorClassIdentifier(msg) ?? "-" },
        });
        this.#disconnect(
          now,
          RejectReason.TLS_REQUIRED,
          "This server requires TLS and the partner answered TLS-reply 0",
          out,
        );
        return;
      }
    }
    if (getProtocolVersion(msg) !== 1) {
      this.#disconnect(
        now,
        RejectReason.PROTOCOL_VERSION_MISMATCH,
        "Protocol version is not 1",
        out,
      );
      return;
    }
    if (s.maxClockSkew > 0 && Math.abs(msg.time - now) > s.maxClockSkew) {
      this.#disconnect(
        now,
        RejectReason.TIME_MISMATCH,
        `Clocks differ by ${Math.round(msg.time - now)} s`,
        out,
      );
      return;
    }
    const name = getRelationshipName(msg);
    if (name !== s.relationship) {
      this.#disconnect(
        now,
        RejectReason.INVALID_PARTNER,
        `Relationship "${name ?? ""}" is not "${s.relationship}"`,
        out,
      );
      return;
    }
    this.#connectInfo = connectInfo(msg, name, s.mclt, s.hba);
    this.#sendState(now, out);
    this.#phase = "await-state";
  }
}

function sameLocal(a: LocalState, b: LocalState | null): boolean {
  return b !== null && a.serverState === b.serverState && a.serverFlags === b.serverFlags &&
    a.startTimeOfState === b.startTimeOfState;
}

/** The partner's handshake values from its CONNECT or CONNECTACK. */
function connectInfo(
  msg: FailoverMessage,
  relationship: string,
  mclt: number | null,
  hba: Uint8Array | null,
): ConnectInfo {
  return {
    relationship,
    vendorClass: getVendorClassIdentifier(msg) ?? null,
    maxUnackedBndupd: getMaxUnackedBndupd(msg) ?? null,
    receiveTimer: getReceiveTimer(msg) ?? null,
    mclt,
    hba,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
