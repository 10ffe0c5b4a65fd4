/**
 * Binding synchronisation between failover partners (draft-ietf-dhc-failover-12 §6.3, §7.1-§7.5,
 * §8.4, §8.6): the queue of local lease changes not yet sent, the BNDUPDs in flight (bounded by
 * the partner's max-unacked-bndupd), answering BNDUPD with BNDACK, recording BNDACKs, and
 * answering UPDREQ/UPDREQALL with BNDUPDs and then UPDDONE. Pure: no I/O and no clock; `now`
 * is an argument, leases are read through a LeaseView and writes come back as effects.
 */
import { bindingStatusOf, type Lease, leaseStateOf, type LeaseView } from "../store/store.ts";
import {
  type BindingAck,
  type BindingUpdate as WireBindingUpdate,
  bindingUpdateFromOptions,
  bindingUpdateOptions,
  buildBndack,
  buildBndupdFromOptions,
  buildUpddone,
  DIGEST_LENGTH,
  FAILOVER_HEADER_LENGTH,
  FAILOVER_MAX_LENGTH,
  type FailoverMessage,
  type FailoverOption,
  getAssignedIpAddress,
  getBindingAcks,
  IpFlags,
  MsgType,
  RejectReason,
  rejectReasonText,
  splitTransactions,
} from "../wire/failover.ts";
import { smallBytes, smallU32 } from "../wire/bytes.ts";
import { acceptUpdate, type BindingUpdate } from "./binding.ts";
import type { FailoverRole } from "./state.ts";

/** Encodes host names and reject texts (one encoder for the module). */
const TEXT = new TextEncoder();

/** What the engine needs to know about this server. */
export interface BindingSyncOptions {
  role: FailoverRole;
  /** The lease database as committed by the shell (reads only). */
  view: LeaseView;
  /** Whether an address belongs to a pool of this failover endpoint (§7.1.3, reject-reason 1). */
  inPool(address: number): boolean;
  /** Whether this server reserves an address (§7.1.3, reject-reason 19); default never. */
  isReserved?(address: number): boolean;
  /** Largest message to send; default and maximum FAILOVER_MAX_LENGTH (§6.1). */
  maxMessageLength?: number;
  /**
   * Most binding update transactions per BNDUPD (§6.3 batching); default: as many as fit.
   * Use 1 for a partner that cannot take batched updates.
   */
  maxBindingsPerBndupd?: number;
}

/** Inputs; `now` is epoch seconds. */
export type SyncInput =
  /** A local lease was written (and committed): tell the partner (§7.1.1). Latest wins. */
  | { kind: "lease-changed"; now: number; lease: Lease }
  /**
   * Several leases committed together (one group commit): queued first and then sent, so that
   * they share BNDUPDs (§6.3) instead of leaving one binding per BNDUPD while the window allows.
   */
  | { kind: "leases-changed"; now: number; leases: readonly Lease[] }
  /**
   * Communications are up (§8.3). `maxUnackedBndupd` is the partner's CONNECT/CONNECTACK
   * value (§8.4); `nextXid` numbers the messages this end originates on this connection;
   * `maxBindingsPerBndupd`, when given, replaces the option of that name for this connection
   * (see partnerTakesBatches()).
   */
  | {
    kind: "link-up";
    now: number;
    maxUnackedBndupd: number;
    nextXid: () => number;
    maxBindingsPerBndupd?: number;
  }
  /** The connection is gone (§8.6): in-flight BNDUPDs are queued again. */
  | { kind: "link-down"; now: number }
  /** A BNDUPD, BNDACK, UPDREQ, UPDREQALL or UPDDONE from the partner; others are ignored. */
  | { kind: "message"; now: number; message: FailoverMessage }
  /** The state machine's send-updates action (§9.8.1): send every binding not yet acked. */
  | { kind: "send-updates"; now: number };

/** Effects for the shell, run in array order. */
export type SyncEffect =
  /** Send now on the current connection. */
  | { kind: "send"; message: FailoverMessage }
  /** Write a lease into the current batch (LeaseStore.put). */
  | { kind: "persist"; lease: Lease }
  /**
   * The partner acknowledged `lease` as sent: record tsfp on its row if the row still holds
   * that binding (LeaseStore.recordAck; no read needed, §7.2.2).
   */
  | { kind: "record-ack"; lease: Lease; tsfp: number }
  /**
   * Commit the batch (the persists before this effect), then send, but only if `connection`
   * still equals BindingSync.connection: a BNDACK MUST NOT go out on a later connection (§8.6),
   * and like a DHCPACK it MUST NOT go out before what it acknowledges is stable (§7.1.1).
   */
  | { kind: "send-after-commit"; message: FailoverMessage; connection: number }
  /** The partner finished the UPDREQ/UPDREQALL this server sent (§7.5.2): for the state machine. */
  | { kind: "event"; event: "upddone" }
  | {
    kind: "log";
    level: "debug" | "info" | "warn" | "error";
    msg: string;
    fields?: Record<string, string | number>;
  };

/** Counters for status and metrics. */
export interface SyncStatus {
  /** Addresses whose change is queued and not yet sent. */
  queued: number;
  /** BNDUPD messages sent and not yet acknowledged. */
  inFlight: number;
  /** The partner's max-unacked-bndupd, or 0 while the link is down. */
  window: number;
  /** An UPDREQ/UPDREQALL/send-updates pass is running. */
  pass: "none" | "updreq" | "updreqall" | "send-updates";
  /** An UPDREQALL was received and no UPDDONE has answered it yet (§7.4.2). */
  updreqallOwed: boolean;
  updatesSent: number;
  updatesAccepted: number;
  updatesRejected: number;
}

/** One binding in a BNDUPD this server sent. */
interface SentItem {
  lease: Lease;
  potentialExpiration: number;
  /**
   * Its transaction's options, built once to measure the message and once only; dropped once
   * the BNDUPD is built, so that what waits for the BNDACK is the lease and no more (an
   * in-flight item outlives a few scavenges, and whatever it holds is copied and promoted).
   */
  options: readonly FailoverOption[];
}

const NO_OPTIONS: readonly FailoverOption[] = [];

interface InFlight {
  items: Map<number, SentItem>;
}

/** The state of answering an UPDREQ / UPDREQALL (or a send-updates action). */
interface Pass {
  /** The request's xid to copy into UPDDONE (§7.5), or null for send-updates (no UPDDONE). */
  xid: number | null;
  all: boolean;
  iterator: Iterator<Lease>;
  /** A lease taken from the iterator that did not fit into the last message. */
  lookahead: Lease | undefined;
  exhausted: boolean;
  /** xids of the BNDUPDs whose BNDACKs the UPDDONE waits for (§7.3.2). */
  outstanding: Set<number>;
}

/** Binding-statuses that wait for the partner's ack before becoming FREE (§5.11). */
const FREE_ON_ACK = new Set(["expired", "released", "reset"]);

/**
 * While a BNDUPD is in flight, local changes wait until this many are queued (or the message
 * is full, or every BNDUPD is acked) before the next one goes out: Nagle's rule (RFC 896) for
 * binding updates. Each BNDUPD costs the partner a commit and an fsync before its BNDACK, and
 * the DHCPACK never waits for it (draft §5.2.1 bounds the lease by MCLT instead), so under
 * load fewer, fuller messages cost less CPU on both sides for the same bindings, and an idle
 * link still sends each change at once. In the benchmark's pair at 3,000 exchanges/s (three
 * alternating runs each) the pair's CPU per exchange went from 225-233 to 211-231 µs.
 */
const HOLD_BELOW = 16;

/** Octets of an option list on the wire (§6.2: code 2, length 2, data). */
function optionsLength(opts: readonly { data: Uint8Array }[]): number {
  let n = 0;
  for (const o of opts) n += 4 + o.data.length;
  return n;
}

/** The potential-expiration-time to send for a lease: never before lease-expiration (§7.1.1). */
export function potentialExpirationOf(lease: Lease): number {
  return Math.max(lease.tstp, lease.ends);
}

/**
 * Whether a partner takes several binding updates in one BNDUPD (draft-12 §6.3), judged by
 * its vendor-class-identifier (§12.28) from CONNECT/CONNECTACK. Only duet is known to: ISC
 * dhcpd 4.4.3 reads a second assigned-IP-address as "duplicate option", calls it a protocol
 * error and drops the connection. Any other partner gets one binding per BNDUPD, the form
 * every implementation reads.
 */
export function partnerTakesBatches(vendorClass: string | null): boolean {
  return vendorClass !== null && vendorClass.startsWith("duet-");
}

/** Whether two rows name the same client: by client identifier if either has one, else chaddr. */
function sameLeaseClient(a: Lease, b: Lease): boolean {
  const eq = (x: Uint8Array, y: Uint8Array) =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  if (a.clientId !== null || b.clientId !== null) {
    return a.clientId !== null && b.clientId !== null && eq(a.clientId, b.clientId);
  }
  return a.htype === b.htype && eq(a.hwAddress, b.hwAddress);
}

/** The magic number of DHCPv4 options embedded in client-request/reply-options (§12.7, §12.8). */
const DHCP_OPTIONS_MAGIC = 0x63825363;
/** DHCP option codes carried in BNDUPDs (Tables 7.1.1-2 and 7.1.1-3). */
const HOST_NAME = 12;
const RELAY_AGENT_INFORMATION = 82;
const RENEWAL_TIME = 58;
const REBINDING_TIME = 59;

/** DHCPv4 options as code, length, value (RFC 2132 §2); values over 255 octets are left out. */
function packOptions(options: readonly [number, Uint8Array][]): Uint8Array {
  const fit = options.filter(([, v]) => v.length <= 255);
  const out = smallBytes(fit.reduce((n, [, v]) => n + 2 + v.length, 0));
  let i = 0;
  for (const [code, v] of fit) {
    out[i++] = code;
    out[i++] = v.length;
    out.set(v, i);
    i += v.length;
  }
  return out;
}

/**
 * The options of an embedded block (§12.7, §12.8), first instance of each; reading stops at
 * END or at an option that runs past the block (the partner's bytes are not trusted).
 */
export function unpackOptions(bytes: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  let i = 0;
  while (i < bytes.length) {
    const code = bytes[i] as number;
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    const len = bytes[i + 1];
    if (len === undefined || i + 2 + len > bytes.length) break;
    if (!out.has(code)) out.set(code, bytes.slice(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}

/**
 * A lease as one binding update transaction (§7.1.1, Table 7.1.1-1): client information for
 * every status except ABANDONED, potential-expiration-time = tstp (at least `ends`), and the
 * "interesting" options of Tables 7.1.1-2 and 7.1.1-3 that the lease remembers: the client's
 * host-name and relay-agent-information, and for an ACTIVE lease the T1/T2 it was given, so
 * the partner can answer the client the same way and knows its name.
 */
export function leaseToBindingUpdate(lease: Lease): WireBindingUpdate {
  const b: WireBindingUpdate = {
    assignedIpAddress: lease.address,
    bindingStatus: bindingStatusOf(lease.state),
  };
  // Table 7.1.1-1: client information MUST for ACTIVE, MUST NOT for ABANDONED, else when known.
  if (lease.state !== "abandoned") {
    if (lease.clientId !== null) b.clientIdentifier = lease.clientId;
    if (lease.state === "active" || lease.hwAddress.length > 0 || lease.clientId !== null) {
      b.clientHardwareAddress = { htype: lease.htype, chaddr: lease.hwAddress };
    }
  }
  b.leaseExpirationTime = lease.ends;
  b.potentialExpirationTime = potentialExpirationOf(lease);
  b.startTimeOfState = lease.starts;
  if (lease.cltt > 0) b.clientLastTransactionTime = lease.cltt;
  if (lease.state !== "abandoned") {
    const request: [number, Uint8Array][] = [];
    if (lease.hostname !== null) {
      request.push([HOST_NAME, TEXT.encode(lease.hostname)]);
    }
    if (lease.relayInfo !== null) request.push([RELAY_AGENT_INFORMATION, lease.relayInfo]);
    if (request.length > 0) {
      b.clientRequestOptions = { magic: DHCP_OPTIONS_MAGIC, options: packOptions(request) };
    }
  }
  if (lease.state === "active" && lease.cltt > 0 && lease.ends > lease.cltt) {
    // The renewal and rebinding times of the DHCPACK (50 % and 87.5 %, lib/server/dhcp.ts).
    const interval = lease.ends - lease.cltt;
    b.clientReplyOptions = {
      magic: DHCP_OPTIONS_MAGIC,
      options: packOptions([
        [RENEWAL_TIME, smallU32(Math.floor(interval * 0.5))],
        [REBINDING_TIME, smallU32(Math.floor(interval * 0.875))],
      ]),
    };
  }
  return b;
}

/**
 * A decoded transaction as acceptUpdate()'s BindingUpdate, or undefined when its
 * binding-status is not one of §12.3's (the caller rejects it).
 */
export function bindingUpdateFromWire(w: WireBindingUpdate): BindingUpdate | undefined {
  const state = leaseStateOf(w.bindingStatus);
  if (state === undefined) return undefined;
  const b: BindingUpdate = { address: w.assignedIpAddress, state };
  if (w.clientHardwareAddress !== undefined) {
    b.htype = w.clientHardwareAddress.htype;
    b.hwAddress = w.clientHardwareAddress.chaddr;
  }
  if (w.clientIdentifier !== undefined) b.clientId = w.clientIdentifier;
  if (w.clientLastTransactionTime !== undefined) b.cltt = w.clientLastTransactionTime;
  if (w.startTimeOfState !== undefined) b.startTimeOfState = w.startTimeOfState;
  if (w.leaseExpirationTime !== undefined) b.ends = w.leaseExpirationTime;
  if (w.potentialExpirationTime !== undefined) b.potentialExpiration = w.potentialExpirationTime;
  if (w.ipFlags !== undefined) b.reserved = (w.ipFlags & IpFlags.RESERVED) !== 0;
  // §7.1.4: keep what the partner told of the client's request (host-name, option 82).
  if (w.clientRequestOptions?.magic === DHCP_OPTIONS_MAGIC) {
    const o = unpackOptions(w.clientRequestOptions.options);
    const name = o.get(HOST_NAME);
    if (name !== undefined && name.length > 0) {
      b.hostname = new TextDecoder("utf-8", { fatal: false }).decode(name);
    }
    const relay = o.get(RELAY_AGENT_INFORMATION);
    if (relay !== undefined) b.relayInfo = relay;
  }
  return b;
}

/**
 * The binding-update engine of one failover endpoint (draft-12 §7.1-§7.5). Feed it inputs
 * with step(); it returns effects to run in order.
 */
export class BindingSync {
  readonly #o: BindingSyncOptions;
  readonly #maxLength: number;
  /** maxBindingsPerBndupd of the options, and of the current connection. */
  readonly #defaultMaxBindings: number;
  #maxBindings: number;
  /**
   * Local changes not yet sent, by address; Map order is the sending order. The lease is kept
   * only for the step that queued it (or one sent and to be sent again): after that the entry
   * is null and the row is read when the change goes out. Under load, or while the partner is
   * away, changes wait here long, and a lease kept that long is copied and promoted by V8's
   * scavenges where a row read at sending time dies young.
   */
  #queue = new Map<number, Lease | null>();
  #inFlight = new Map<number, InFlight>();
  /** address -> xid of the BNDUPD carrying it (at most one per address). */
  #inFlightByAddress = new Map<number, number>();
  #window = 0;
  #nextXid: (() => number) | null = null;
  #connection = 0;
  #pass: Pass | null = null;
  /** §7.4.2: an UPDREQALL is owed until its UPDDONE is sent; UPDREQ counts as UPDREQALL. */
  #updreqallOwed = false;
  /**
   * Addresses whose EXPIRED, RELEASED or RESET status went out in a BNDUPD (whatever became of
   * it) since this server last made them ACTIVE: never "unsent" again (§5.11).
   */
  #statusSent = new Set<number>();
  /** Leases written by the effects of the step being run (see #persist). */
  #written = new Map<number, Lease>();
  /** Addresses whose BNDACK this step recorded (a record-ack effect, not yet applied). */
  #ackedInStep = new Set<number>();
  /**
   * Addresses queued by the current step's lease-changed input: the queued copy is the row
   * the caller just read, so the pump need not read it again.
   */
  #fresh = new Set<number>();
  #sent = 0;
  #accepted = 0;
  #rejected = 0;

  constructor(options: BindingSyncOptions) {
    this.#o = options;
    const max = options.maxMessageLength ?? FAILOVER_MAX_LENGTH;
    if (!Number.isInteger(max) || max < 64 || max > FAILOVER_MAX_LENGTH) {
      throw new RangeError(`maxMessageLength must be 64-${FAILOVER_MAX_LENGTH}, got ${max}`);
    }
    this.#maxLength = max;
    const per = options.maxBindingsPerBndupd ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isInteger(per) || per < 1) {
      throw new RangeError(`maxBindingsPerBndupd must be a positive integer, got ${per}`);
    }
    this.#defaultMaxBindings = per;
    this.#maxBindings = per;
  }

  /** The current connection number; a send-after-commit for another one MUST be dropped (§8.6). */
  get connection(): number {
    return this.#connection;
  }

  /** Whether the link is up. */
  get up(): boolean {
    return this.#nextXid !== null;
  }

  /**
   * Whether this server's change of `address` is waiting to be sent: queued, not in a BNDUPD
   * in flight, and no EXPIRED/RELEASED/RESET of the address sent since this server last made
   * it ACTIVE (§5.11: an EXPIRED/RELEASED binding may go back to the same client until the
   * partner is told; one that was on the wire when a connection dropped may have been told).
   */
  isUnsent(address: number): boolean {
    return this.#queue.has(address) && !this.#inFlightByAddress.has(address) &&
      !this.#statusSent.has(address);
  }

  /** Counters for status pages and metrics. */
  get status(): SyncStatus {
    const p = this.#pass;
    return {
      queued: this.#queue.size,
      inFlight: this.#inFlight.size,
      window: this.#window,
      pass: p === null ? "none" : p.xid === null ? "send-updates" : p.all ? "updreqall" : "updreq",
      updreqallOwed: this.#updreqallOwed,
      updatesSent: this.#sent,
      updatesAccepted: this.#accepted,
      updatesRejected: this.#rejected,
    };
  }

  /** Feeds one input; returns the effects to run in order. */
  step(input: SyncInput): SyncEffect[] {
    const out: SyncEffect[] = [];
    this.#written.clear();
    this.#ackedInStep.clear();
    switch (input.kind) {
      case "lease-changed":
        this.#queue.delete(input.lease.address);
        this.#queue.set(input.lease.address, input.lease);
        if (input.lease.state === "active") this.#statusSent.delete(input.lease.address);
        this.#fresh.add(input.lease.address);
        break;
      case "leases-changed":
        for (const lease of input.leases) {
          this.#queue.delete(lease.address);
          this.#queue.set(lease.address, lease);
          if (lease.state === "active") this.#statusSent.delete(lease.address);
          this.#fresh.add(lease.address);
        }
        break;
      case "link-up": {
        const per = input.maxBindingsPerBndupd;
        if (per !== undefined && (!Number.isInteger(per) || per < 1)) {
          throw new RangeError(`maxBindingsPerBndupd must be a positive integer, got ${per}`);
        }
        this.#linkUp(input.maxUnackedBndupd, input.nextXid, out);
        this.#maxBindings = per ?? this.#defaultMaxBindings;
        break;
      }
      case "link-down":
        this.#linkDown(out);
        break;
      case "message":
        this.#message(input.now, input.message, out);
        break;
      case "send-updates":
        if (this.up && this.#pass === null) this.#startPass(null, false, out);
        break;
    }
    this.#pump(input.now, out);
    this.#written.clear();
    this.#ackedInStep.clear();
    for (const address of this.#fresh) if (this.#queue.has(address)) this.#queue.set(address, null);
    this.#fresh.clear();
    return out;
  }

  /**
   * Writes a lease (an effect) and remembers it for the rest of this step: the shell applies
   * effects only after step() returns, and what this step sends must see what it wrote (an ack
   * that freed an EXPIRED binding, then an update pass over the same address).
   */
  #persist(lease: Lease, out: SyncEffect[]): void {
    this.#written.set(lease.address, lease);
    out.push({ kind: "persist", lease });
  }

  /** The binding as this step sees it: the store, with this step's writes. */
  #read(address: number): Lease | undefined {
    return this.#written.get(address) ?? this.#o.view.get(address);
  }

  #linkUp(maxUnacked: number, nextXid: () => number, out: SyncEffect[]): void {
    if (this.up) this.#linkDown(out);
    this.#connection++;
    // §8.4: never more unacked BNDUPDs than the partner said it can take (at least one).
    this.#window = Number.isInteger(maxUnacked) && maxUnacked > 0 ? maxUnacked : 1;
    this.#nextXid = nextXid;
    out.push({
      kind: "log",
      level: "debug",
      msg: "Binding sync connected",
      fields: { window: this.#window, queued: this.#queue.size },
    });
  }

  #linkDown(out: SyncEffect[]): void {
    if (!this.up) return;
    // §8.6 / §7.1: unacked BNDUPDs are sent again on the next connection; a newer queued
    // change for the same address wins.
    let requeued = 0;
    const again = new Map<number, Lease>();
    for (const f of this.#inFlight.values()) {
      for (const item of f.items.values()) {
        if (!this.#queue.has(item.lease.address)) {
          again.set(item.lease.address, item.lease);
          requeued++;
        }
      }
    }
    this.#queue = new Map([...again, ...this.#queue]);
    this.#inFlight.clear();
    this.#inFlightByAddress.clear();
    // §8.6: an UPDDONE answers a request on the same connection only; §7.4.2 keeps the UPDREQALL owed.
    this.#pass = null;
    this.#window = 0;
    this.#nextXid = null;
    this.#connection++;
    out.push({
      kind: "log",
      level: "info",
      msg: "Binding sync disconnected",
      fields: { requeued, queued: this.#queue.size },
    });
  }

  #message(now: number, msg: FailoverMessage, out: SyncEffect[]): void {
    switch (msg.type) {
      case MsgType.BNDUPD:
        this.#receiveBndupd(now, msg, out);
        break;
      case MsgType.BNDACK:
        this.#receiveBndack(now, msg, out);
        break;
      case MsgType.UPDREQ:
      case MsgType.UPDREQALL: {
        if (!this.up) return;
        const all = msg.type === MsgType.UPDREQALL || this.#updreqallOwed;
        if (msg.type === MsgType.UPDREQALL) this.#updreqallOwed = true;
        if (this.#pass !== null && this.#pass.xid !== null) {
          out.push({
            kind: "log",
            level: "info",
            msg: "Update request received while another is running: restarting",
            fields: { xid: msg.xid, old: this.#pass.xid },
          });
        }
        this.#startPass(msg.xid, all, out);
        break;
      }
      case MsgType.UPDDONE:
        // §7.5.2: everything asked for is sent and acked; the state machine decides what next.
        out.push({ kind: "event", event: "upddone" });
        break;
    }
  }

  #startPass(xid: number | null, all: boolean, out: SyncEffect[]): void {
    // §7.3.2: the UPDDONE also waits for unacked updates already in flight.
    this.#pass = {
      xid,
      all,
      iterator: this.#o.view.iterate(),
      lookahead: undefined,
      exhausted: false,
      outstanding: new Set(this.#inFlight.keys()),
    };
    out.push({
      kind: "log",
      level: "info",
      msg: xid === null
        ? "Sending unacked binding updates"
        : `Answering ${all ? "UPDREQALL" : "UPDREQ"}`,
      fields: xid === null
        ? { inFlight: this.#inFlight.size }
        : { xid, inFlight: this.#inFlight.size },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Receiving BNDUPD (§7.1.2-§7.1.5) and answering with BNDACK (§7.2.1, §6.3)

  #receiveBndupd(now: number, msg: FailoverMessage, out: SyncEffect[]): void {
    const acks: BindingAck[] = [];
    /** Leases accepted earlier in this message, for a repeated address. */
    const written = new Map<number, Lease>();
    for (const group of splitTransactions(msg).transactions) {
      const address = getAssignedIpAddress(group);
      if (address === undefined) {
        out.push({
          kind: "log",
          level: "warn",
          msg: "Cannot answer a BNDUPD transaction: malformed assigned-IP-address",
          fields: { xid: msg.xid },
        });
        continue;
      }
      const wire = bindingUpdateFromOptions(group);
      const update = wire === undefined ? undefined : bindingUpdateFromWire(wire);
      if (update === undefined) {
        // §7.1.3: insufficient information to process the update -> reason 3.
        acks.push({
          assignedIpAddress: address,
          rejectReason: RejectReason.MISSING_BINDING_INFORMATION,
          message: "Missing binding information: no valid binding-status",
        });
        continue;
      }
      const local = written.get(address) ?? this.#read(address);
      const context = {
        role: this.#o.role,
        now,
        inPool: this.#o.inPool(address),
        ...(this.#o.isReserved?.(address) === true ? { reserved: true } : {}),
      };
      const verdict = acceptUpdate(local, update, context);
      if (verdict.accept && verdict.lease === local) {
        // Accepted as old news (binding.ts: older than this server's pool decision): acked,
        // nothing stored, and our own change of the address still goes out.
        acks.push({ assignedIpAddress: address });
      } else if (verdict.accept) {
        // §7.1.1: a binding the partner sent is known to it, so no pass of ours may send it
        // back: a FREE or BACKUP row takes any update without a time check (Fig. 7.1.3-1), and
        // a stale FREE would undo the partner's newer move to BACKUP (§5.4). It counts as
        // acknowledged. An ACTIVE binding keeps tsfp: the MCLT rule reads it (§5.2.1).
        const lease = verdict.lease.state === "active"
          ? verdict.lease
          : { ...verdict.lease, tsfp: potentialExpirationOf(verdict.lease) };
        written.set(address, lease);
        this.#persist(lease, out);
        // §7.1.1: storage updates caused by a BNDUPD SHOULD NOT cause BNDUPDs of our own; the
        // partner's binding replaces our queued change, unless the merged binding still holds
        // something of ours the partner lacks: the same client's later lease-expiration or
        // transaction time (§7.1.5 keeps the later one), i.e. an older update crossed ours.
        const ours = lease.state === "active" && update.state === "active" &&
          (lease.ends > (update.ends ?? 0) || lease.cltt > (update.cltt ?? 0));
        if (!ours) this.#queue.delete(address);
        acks.push({ assignedIpAddress: address });
      } else {
        out.push({
          kind: "log",
          level: "info",
          msg: "Rejected binding update",
          fields: {
            address,
            reason: verdict.rejectReason,
            text: verdict.message,
            section: verdict.section,
          },
        });
        acks.push({
          assignedIpAddress: address,
          rejectReason: verdict.rejectReason,
          message: verdict.message,
        });
      }
    }
    if (acks.length === 0) return;
    // §8.6: a BNDUPD of a connection that is gone may be processed but MUST NOT be acked.
    if (!this.up) return;
    // §7.2.1: the BNDACK copies the BNDUPD's xid; §6.3: one ack per transaction, same order.
    const ack = buildBndack({ time: Math.floor(now), xid: msg.xid }, this.#fitAcks(acks));
    if (written.size > 0) {
      out.push({ kind: "send-after-commit", message: ack, connection: this.#connection });
    } else {
      out.push({ kind: "send", message: ack });
    }
  }

  /** Drops message texts (SHOULD, §7.2.1) from the end until the BNDACK fits (§6.1). */
  #fitAcks(acks: BindingAck[]): BindingAck[] {
    const size = (list: BindingAck[]) =>
      FAILOVER_HEADER_LENGTH +
      list.reduce(
        (n, a) =>
          n + 8 + (a.rejectReason === undefined
            ? 0
            : 5 + (a.message === undefined ? 0 : 4 + TEXT.encode(a.message).length)),
        0,
      );
    const list = acks.map((a) => ({ ...a }));
    // Room for the message-digest option a shared secret adds (§11.1: code, length, type, MD5).
    const limit = this.#maxLength - (4 + 1 + DIGEST_LENGTH);
    for (let i = list.length - 1; i >= 0 && size(list) > limit; i--) {
      delete (list[i] as BindingAck).message;
    }
    return list;
  }

  // -------------------------------------------------------------------------------------------
  // Receiving BNDACK (§7.2.2)

  #receiveBndack(now: number, msg: FailoverMessage, out: SyncEffect[]): void {
    const f = this.#inFlight.get(msg.xid);
    if (f === undefined) {
      out.push({
        kind: "log",
        level: "warn",
        msg: "Ignoring a BNDACK for no BNDUPD in flight",
        fields: { xid: msg.xid },
      });
      return;
    }
    this.#inFlight.delete(msg.xid);
    this.#pass?.outstanding.delete(msg.xid);
    for (const address of f.items.keys()) this.#inFlightByAddress.delete(address);

    for (const ack of getBindingAcks(msg)) {
      const item = f.items.get(ack.assignedIpAddress);
      if (item === undefined) {
        out.push({
          kind: "log",
          level: "warn",
          msg: "BNDACK names an address its BNDUPD did not carry",
          fields: { xid: msg.xid, address: ack.assignedIpAddress },
        });
        continue;
      }
      f.items.delete(ack.assignedIpAddress);
      if (ack.rejectReason !== undefined) {
        // §7.2.2: log it and MUST NOT resend at once; the next UPDREQ may carry it again.
        this.#rejected++;
        out.push({
          kind: "log",
          level: "warn",
          msg: "Partner rejected binding update",
          fields: {
            address: ack.assignedIpAddress,
            reason: ack.rejectReason,
            text: ack.message ?? rejectReasonText(ack.rejectReason),
            section: "§7.2.2",
          },
        });
        continue;
      }
      this.#accepted++;
      this.#recordAck(now, item, out);
    }
    // §6.3: every transaction MUST be answered; an unanswered one is sent again later.
    for (const item of f.items.values()) {
      out.push({
        kind: "log",
        level: "warn",
        msg: "BNDACK did not answer an address of its BNDUPD: queued again",
        fields: { xid: msg.xid, address: item.lease.address },
      });
      if (!this.#queue.has(item.lease.address)) this.#queue.set(item.lease.address, item.lease);
    }
    this.#maybeDone(now, out);
  }

  /** An accepted update: record tsfp (§7.2.2) and free EXPIRED/RELEASED/RESET (§5.11). */
  #recordAck(now: number, item: SentItem, out: SyncEffect[]): void {
    if (!FREE_ON_ACK.has(item.lease.state)) {
      // The store sets tsfp only if the row still has this status and client: a binding that
      // has moved on since it was sent (another status, another client, the partner's own
      // update meanwhile) is not what this ack is about (§7.1.5, §5.2.1).
      out.push({ kind: "record-ack", lease: item.lease, tsfp: item.potentialExpiration });
      this.#ackedInStep.add(item.lease.address);
      return;
    }
    const current = this.#read(item.lease.address);
    if (current === undefined) return;
    // The binding has moved on since it was sent (another status, another client, or the
    // partner's own update taken meanwhile): this ack says nothing about what is stored now,
    // and its older potential expiration time must not replace tsfp (§7.1.5, §5.2.1).
    if (current.state !== item.lease.state || !sameLeaseClient(current, item.lease)) return;
    // The same status again, but a later one (EXPIRED, then the partner's ACTIVE, then EXPIRED
    // once more): this ack is for the earlier one; the later one is still to be sent and acked
    // before the address may be freed (§5.11).
    if (
      FREE_ON_ACK.has(item.lease.state) &&
      (current.cltt !== item.lease.cltt || current.starts !== item.lease.starts)
    ) {
      return;
    }
    const next: Lease = { ...current, tsfp: item.potentialExpiration };
    // §5.11 (Fig. 5.11-1 "Comm w/Partner"): EXPIRED, RELEASED and RESET become FREE once the
    // partner acks them.
    if (FREE_ON_ACK.has(item.lease.state)) {
      next.state = "free";
      next.starts = now;
    }
    if (next.tsfp !== current.tsfp || next.state !== current.state) this.#persist(next, out);
  }

  // -------------------------------------------------------------------------------------------
  // Sending BNDUPD (§7.1.1, §6.3, §8.4) and UPDDONE (§7.5.1)

  /** Whether the partner has not acked this binding yet (§7.3.2). */
  #isUnacked(lease: Lease): boolean {
    if (this.#queue.has(lease.address) || FREE_ON_ACK.has(lease.state)) return true;
    // Acked in this step: the store has not applied the record-ack yet. A row that moved on
    // since it was sent is queued (a local change) or the partner's own (known to it).
    if (this.#ackedInStep.has(lease.address)) return false;
    return lease.tsfp !== potentialExpirationOf(lease);
  }

  #pump(now: number, out: SyncEffect[]): void {
    const nextXid = this.#nextXid;
    if (nextXid === null) return;
    // An update pass (§7.4) has a table to send and is never held.
    const hold = this.#pass === null ? Math.min(HOLD_BELOW, this.#maxBindings) : 0;
    while (this.#inFlight.size < this.#window) {
      if (this.#inFlight.size > 0 && this.#queue.size < hold) break;
      const batch = new Map<number, SentItem>();
      let length = FAILOVER_HEADER_LENGTH;
      let full = false;
      let forPass = false;
      const tryAdd = (lease: Lease): boolean => {
        if (batch.size >= this.#maxBindings) return false;
        const update = leaseToBindingUpdate(lease);
        const options = bindingUpdateOptions(update);
        const n = optionsLength(options);
        if (length + n > this.#maxLength) {
          if (batch.size === 0) {
            throw new RangeError(
              `Cannot send a binding update for ${lease.address}: ${n} octets do not fit`,
            );
          }
          return false;
        }
        length += n;
        batch.set(lease.address, {
          lease,
          potentialExpiration: update.potentialExpirationTime ?? 0,
          options,
        });
        if (FREE_ON_ACK.has(lease.state)) this.#statusSent.add(lease.address);
        return true;
      };
      // Local changes first: they are what a DHCP client was just told.
      for (const [address, queued] of this.#queue) {
        // One BNDUPD per address in flight: the next waits for the ack (§7.2.2 records tsfp).
        if (this.#inFlightByAddress.has(address) || batch.has(address)) continue;
        // The committed row is the latest; a queued copy (one sent before, queued again) only
        // stands in for a row that is gone. A lease queued in this very step was read from the
        // committed row a moment ago, unless this step has written it since. No row and no
        // copy: nothing of ours to tell.
        const lease = this.#written.get(address) ??
          (this.#fresh.has(address) ? queued : this.#o.view.get(address) ?? queued) ??
          undefined;
        if (lease === undefined) {
          this.#queue.delete(address);
          continue;
        }
        if (!tryAdd(lease)) {
          full = true;
          break;
        }
        this.#queue.delete(address);
      }
      const pass = this.#pass;
      while (!full && pass !== null && !pass.exhausted) {
        let lease = pass.lookahead;
        pass.lookahead = undefined;
        if (lease === undefined) {
          const r = pass.iterator.next();
          if (r.done === true) {
            pass.exhausted = true;
            break;
          }
          lease = r.value;
          // A row the cursor has just read, acked, and not written by this step, in flight or
          // in this message: nothing to send and nothing to re-read (an UPDREQ pass after a
          // connect walks the whole table; a local change since is queued anyway).
          if (
            !pass.all && !this.#written.has(lease.address) &&
            !this.#inFlightByAddress.has(lease.address) && !batch.has(lease.address) &&
            !this.#isUnacked(lease)
          ) {
            continue;
          }
        }
        // The row as it is now: this step may have written it, a lookahead may be old.
        lease = this.#read(lease.address) ?? lease;
        const busy = this.#inFlightByAddress.get(lease.address);
        if (busy !== undefined) {
          // Already on its way: the UPDDONE waits for that BNDACK too.
          pass.outstanding.add(busy);
          continue;
        }
        if (batch.has(lease.address)) {
          forPass = true;
          continue;
        }
        if (!pass.all && !this.#isUnacked(lease)) continue;
        if (!tryAdd(lease)) {
          pass.lookahead = lease;
          full = true;
          break;
        }
        this.#queue.delete(lease.address);
        forPass = true;
      }
      if (batch.size === 0) break;
      const xid = nextXid();
      const items = [...batch.values()];
      // §7.1.1: the potential-expiration-time sent MUST be recoverable: store it first.
      let stored = false;
      for (const item of items) {
        if (item.lease.tstp !== item.potentialExpiration) {
          this.#persist({ ...item.lease, tstp: item.potentialExpiration }, out);
          stored = true;
        }
      }
      const message = buildBndupdFromOptions(
        { time: Math.floor(now), xid },
        items.map((i) => i.options),
      );
      for (const item of items) item.options = NO_OPTIONS;
      out.push(
        stored
          ? { kind: "send-after-commit", message, connection: this.#connection }
          : { kind: "send", message },
      );
      this.#inFlight.set(xid, { items: batch });
      for (const address of batch.keys()) this.#inFlightByAddress.set(address, xid);
      if (forPass && pass !== null) pass.outstanding.add(xid);
      this.#sent += batch.size;
    }
    this.#maybeDone(now, out);
  }

  /** §7.5.1: UPDDONE once the pass has sent everything and every BNDUPD of it is acked. */
  #maybeDone(now: number, out: SyncEffect[]): void {
    const pass = this.#pass;
    if (pass === null || !pass.exhausted || pass.lookahead !== undefined) return;
    if (pass.outstanding.size > 0 || this.#nextXid === null) return;
    this.#pass = null;
    if (pass.xid === null) return;
    if (pass.all) this.#updreqallOwed = false;
    // §7.5: the UPDDONE copies the request's xid.
    out.push({ kind: "send", message: buildUpddone({ time: Math.floor(now), xid: pass.xid }) });
    out.push({
      kind: "log",
      level: "info",
      msg: `Sent UPDDONE for ${pass.all ? "UPDREQALL" : "UPDREQ"}`,
      fields: { xid: pass.xid },
    });
  }
}
