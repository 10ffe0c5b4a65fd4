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
  encodeFailover,
  type FailoverMessage,
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
  /** The primary sends it in CONNECT (32 octets, draft §12.11 / RFC 3074). */
  hba: Uint8Array | null;
  maxUnackedBndupd: number;
  /** tReceive in seconds: no message for this long and the link is dropped (§8.3). */
  receiveTimer: number;
  vendorClass: string;
  /** Shared secret for HMAC-MD5 message digests (§11.1), or null. */
  secret: Uint8Array | null;
  /** Largest accepted |partner time - our time| in seconds; 0 accepts any (§5.10). */
  maxClockSkew: number;
  /** Seconds to wait for CONNECT (secondary) or CONNECTACK (primary) on a new connection. */
  handshakeTimeout: number;
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
}

/** The handshake half of PartnerInfo. */
type ConnectInfo = Omit<PartnerInfo, "serverState" | "serverFlags" | "startTimeOfState">;

/** Inputs to a link. `now` is epoch seconds (may be fractional). */
export type LinkInput =
  | { kind: "open"; now: number; local: LocalState }
  | { kind: "frame"; now: number; bytes: Uint8Array }
  | { kind: "tick"; now: number }
  | { kind: "state"; now: number; local: LocalState }
  | { kind: "send"; now: number; message: FailoverMessage }
  | { kind: "closed"; now: number; reason: string }
  /** The byte stream is broken (framing): DISCONNECT and close. */
  | { kind: "fail"; now: number; text: string };

/** Effects a link asks its shell to run, in order. */
export type LinkEffect =
  | { kind: "write"; bytes: Uint8Array; type: number }
  /** Close the socket after the writes before it. */
  | { kind: "close"; reason: string; rejected: boolean }
  /** Communications are OK (§8.3): CONNECT/CONNECTACK done and the partner's STATE received. */
  | { kind: "up"; partner: PartnerInfo }
  /** A message after the link is up (STATE, BNDUPD, BNDACK, UPDREQ...), for the failover layer. */
  | { kind: "message"; message: FailoverMessage }
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
  | "await-state"
  | "up"
  | "closed";

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
      const s = this.settings;
      const h = this.#h(now);
      this.#connectXid = h.xid;
      this.#send(
        now,
        buildConnect(h, {
          relationshipName: s.relationship,
          maxUnackedBndupd: s.maxUnackedBndupd,
          receiveTimer: s.receiveTimer,
          vendorClassIdentifier: s.vendorClass,
          tlsRequest: TlsRequest.NONE,
          mclt: s.mclt ?? 0,
          hashBucketAssignment: s.hba ?? new Uint8Array(32),
        }),
        out,
      );
      this.#phase = "await-connectack";
    } else {
      // §7.8.2: a secondary sends nothing before CONNECT.
      this.#phase = "await-connect";
    }
  }

  #sendState(now: number, out: LinkEffect[]): void {
    this.#sentLocal = this.#local;
    this.#send(now, buildState(this.#h(now), this.#local), out);
  }

  #send(now: number, msg: FailoverMessage, out: LinkEffect[]): void {
    const bytes = this.settings.secret
      ? signFailover(msg, this.settings.secret)
      : encodeFailover(msg);
    this.#lastSent = now;
    out.push({ kind: "write", bytes, type: msg.type });
  }

  /** Sends DISCONNECT with a reason (§7.12, §8.6) and closes. */
  #disconnect(now: number, reason: number, text: string, out: LinkEffect[]): void {
    this.#send(now, buildDisconnect(this.#h(now), { rejectReason: reason, message: text }), out);
    this.#close(`${rejectReasonText(reason)}: ${text}`, false, out);
  }

  #close(reason: string, rejected: boolean, out: LinkEffect[]): void {
    this.#phase = "closed";
    out.push({ kind: "close", reason, rejected });
  }

  #tick(now: number, out: LinkEffect[]): void {
    const s = this.settings;
    if (
      (this.#phase === "await-connect" || this.#phase === "await-connectack") &&
      now - this.#opened >= s.handshakeTimeout
    ) {
      // §7.8.2, §7.9.2: wait for the handshake only a limited time.
      this.#close(
        this.#phase === "await-connect" ? "No CONNECT in time" : "No CONNECTACK in time",
        false,
        out,
      );
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
    const verdict = verifyFailover(bytes, this.settings.secret ?? undefined);
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
        // BNDUPD problems are answered per binding with BNDACK by the failover layer.
        out.push({ kind: "message", message: msg });
        return;
      default:
        return;
    }
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
        ...(getTlsRequest(connect) !== undefined ? { tlsReply: TlsReply.NONE } : {}),
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
    const tls = getTlsRequest(msg);
    if (tls === TlsRequest.REQUIRED) {
      // §7.8.2 step 3 table: request 2, reply 0 -> 9 or 10; duet has no TLS at all, so 9.
      this.#rejectConnect(
        now,
        msg,
        RejectReason.TLS_NOT_SUPPORTED,
        "TLS is not supported by this server",
        out,
      );
      return;
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
    this.#connectInfo = connectInfo(msg, name, mclt, getHashBucketAssignment(msg) ?? null);
    this.#send(
      now,
      buildConnectAck(
        { time: Math.floor(now), xid: msg.xid },
        {
          relationshipName: s.relationship,
          maxUnackedBndupd: s.maxUnackedBndupd,
          receiveTimer: s.receiveTimer,
          vendorClassIdentifier: s.vendorClass,
          ...(tls !== undefined ? { tlsReply: TlsReply.NONE } : {}),
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
    if (getProtocolVersion(msg) !== 1) {
      this.#disconnect(
        now,
        RejectReason.PROTOCOL_VERSION_MISMATCH,
        "Protocol version is not 1",
        out,
      );
      return;
    }
    const s = this.settings;
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
