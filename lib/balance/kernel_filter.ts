/**
 * The load-balancing decision of a NORMAL pair as an eBPF socket filter (Linux
 * BPF_PROG_TYPE_SOCKET_FILTER), so that the broadcasts the partner serves are dropped in the
 * kernel, before they wake the server: about half of every DISCOVER and SELECTING REQUEST a
 * pair sees (draft-12 §5.3, §9.8.2, RFC 3074). Pure: builds the instructions and the map value
 * they read; lib/server/balance_filter.ts loads and attaches them.
 *
 * The filter only drops what the DHCP core would refuse as "load-balanced" (or as a SELECTING
 * REQUEST for another server); whatever it cannot decide with certainty it passes up:
 * - a BOOTREQUEST with the magic cookie, whose `secs` is at most load-balance-max-seconds;
 * - a DHCPDISCOVER, an INIT-REBOOT DHCPREQUEST (no server identifier, ciaddr 0) or a SELECTING
 *   DHCPREQUEST whose server identifier is none of this host's addresses;
 * - with option 53 and at most one each of options 53, 54 and 61, no option overload (52),
 *   all within the first OPTION_STEPS options, hlen 1..16 and option 61 of 1..32 octets;
 * - whose RFC 3074 bucket (over option 61, else chaddr[0..hlen)) is not this server's.
 * The socket filter sees the datagram from its UDP header, so the DHCP message is at offset 8.
 */

import { MIXING_TABLE } from "./hash.ts";
import { HBA_LENGTH } from "./hba.ts";

/** Options scanned before the filter gives up and passes the request up. */
export const OPTION_STEPS = 24;
/** Local addresses the filter can compare a server identifier with. */
export const MAX_SERVER_IDS = 16;
/** Longest option 61 the filter hashes; longer ones go up to the core. */
export const MAX_KEY = 32;

/** Layout of the map value (entry CONFIG_ENTRY): the mixing table, then the rest. */
export const VALUE = {
  /** RFC 3074 §6 mixing table, 256 octets. */
  table: 0,
  /** 32 octets: bit (i mod 8) of octet i/8 set = this server answers bucket i. */
  mine: 256,
  /** u32: 1 = drop the partner's requests, 0 = pass everything. */
  enabled: 288,
  /** u32: load-balance-max-seconds (whole seconds). */
  maxSeconds: 292,
  /** u32: server identifiers in `ids`; SELECTING REQUESTs are dropped only when it is > 0. */
  idCount: 296,
  /** MAX_SERVER_IDS × 4 octets, network order: this host's addresses. */
  ids: 300,
  size: 300 + 4 * MAX_SERVER_IDS,
} as const;

/** Map entries: the configuration (written by the server), the counters (by the kernel). */
export const CONFIG_ENTRY = 0;
export const COUNTER_ENTRY = 1;
/** Offsets of the u64 counters in the COUNTER_ENTRY value. */
export const COUNTERS = { discover: 0, request: 8 } as const;

/** What the filter needs to decide: built by the server from its failover state. */
export interface KernelBalance {
  /** false outside NORMAL: the filter passes everything. */
  enabled: boolean;
  /** HBA_LENGTH octets, bit i = this server answers bucket i (already resolved for role and polarity). */
  mine: Uint8Array;
  loadBalanceMaxSeconds: number;
  /** This host's IPv4 addresses (numbers); more than MAX_SERVER_IDS turns SELECTING drops off. */
  serverIds: readonly number[];
}

/** The CONFIG_ENTRY value for `b`. */
export function encodeKernelBalance(b: KernelBalance): Uint8Array {
  if (b.mine.length !== HBA_LENGTH) {
    throw new RangeError(`Cannot encode the kernel balance: mine has ${b.mine.length} octets`);
  }
  const out = new Uint8Array(VALUE.size);
  const view = new DataView(out.buffer);
  out.set(MIXING_TABLE, VALUE.table);
  out.set(b.mine, VALUE.mine);
  view.setUint32(VALUE.enabled, b.enabled ? 1 : 0, true);
  const max = Math.floor(b.loadBalanceMaxSeconds);
  view.setUint32(VALUE.maxSeconds, Math.max(0, Math.min(max, 0xffff)), true);
  const ids = b.serverIds.length <= MAX_SERVER_IDS ? b.serverIds : [];
  view.setUint32(VALUE.idCount, ids.length, true);
  ids.forEach((id, i) => view.setUint32(VALUE.ids + 4 * i, id >>> 0, false));
  return out;
}

/** A value that turns the filter off. */
export function disabledKernelBalance(): Uint8Array {
  return encodeKernelBalance({
    enabled: false,
    mine: new Uint8Array(HBA_LENGTH),
    loadBalanceMaxSeconds: 0,
    serverIds: [],
  });
}

// eBPF instruction encoding (linux/bpf.h, Documentation/bpf/standardization).
const OP = {
  movK: 0xb7,
  movX: 0xbf,
  addK: 0x07,
  addX: 0x0f,
  andK: 0x57,
  rshK: 0x77,
  rshX: 0x7f,
  lshK: 0x67,
  orX: 0x4f,
  xorX: 0xaf,
  ldxB: 0x71,
  ldxW: 0x61,
  ldxDW: 0x79,
  stxDW: 0x7b,
  stW: 0x62,
  stDW: 0x7a,
  atomicAddDW: 0xdb,
  ja: 0x05,
  jeqK: 0x15,
  jneK: 0x55,
  jgtK: 0x25,
  jleK: 0xb5,
  jltK: 0xa5,
  jeqX: 0x1d,
  jgtX: 0x2d,
  call: 0x85,
  exit: 0x95,
  ldImm64: 0x18,
} as const;

/** bpf_map_lookup_elem and bpf_skb_load_bytes (linux/bpf.h enum bpf_func_id). */
const FN_MAP_LOOKUP = 1;
const FN_SKB_LOAD_BYTES = 26;
/** src_reg of a BPF_LD_IMM64 that names a map by file descriptor. */
const PSEUDO_MAP_FD = 1;
/** The DHCP message's offset in what a UDP socket filter sees (after the 8-octet UDP header). */
const DHCP = 8;

interface Insn {
  op: number;
  dst: number;
  src: number;
  off: number | string;
  imm: number;
}

/** A tiny assembler: instructions with symbolic jump targets, resolved by bytes(). */
class Asm {
  readonly insns: Insn[] = [];
  readonly #labels = new Map<string, number>();
  #n = 0;

  i(op: number, dst: number, src: number, off: number | string, imm: number): this {
    this.insns.push({ op, dst, src, off, imm });
    return this;
  }
  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.#labels.set(name, this.insns.length);
    return this;
  }
  /** A fresh label name. */
  fresh(stem: string): string {
    return `${stem}.${this.#n++}`;
  }
  jmp(op: number, dst: number, imm: number, to: string): this {
    return this.i(op, dst, 0, to, imm);
  }
  jmpX(op: number, dst: number, src: number, to: string): this {
    return this.i(op, dst, src, to, 0);
  }
  goto(to: string): this {
    return this.i(OP.ja, 0, 0, to, 0);
  }
  /** r1 = the map (two slots). */
  loadMap(mapFd: number): this {
    this.i(OP.ldImm64, 1, PSEUDO_MAP_FD, 0, mapFd);
    return this.i(0, 0, 0, 0, 0);
  }
  /** r0 = bpf_skb_load_bytes(ctx=r6, offset=r<reg> + add, fp+at, len) (r1-r5 clobbered). */
  loadBytes(offsetReg: number | null, add: number, at: number, len: number): this {
    this.i(OP.movX, 1, 6, 0, 0);
    if (offsetReg === null) this.i(OP.movK, 2, 0, 0, add);
    else this.i(OP.movX, 2, offsetReg, 0, 0).i(OP.addK, 2, 0, 0, add);
    this.i(OP.movX, 3, 10, 0, 0).i(OP.addK, 3, 0, 0, at);
    return this.i(OP.movK, 4, 0, 0, len).i(OP.call, 0, 0, 0, FN_SKB_LOAD_BYTES);
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.insns.length * 8);
    const view = new DataView(out.buffer);
    this.insns.forEach((x, at) => {
      let off = x.off;
      if (typeof off === "string") {
        const target = this.#labels.get(off);
        if (target === undefined) throw new Error(`label ${off} is not defined`);
        off = target - (at + 1);
      }
      view.setUint8(at * 8, x.op);
      view.setUint8(at * 8 + 1, (x.src << 4) | x.dst);
      view.setInt16(at * 8 + 2, off, true);
      view.setInt32(at * 8 + 4, x.imm, true);
    });
    return out;
  }
}

// Stack slots (offsets from r10, the frame pointer).
const HDR = -16; // DHCP octets 0..15: op, htype, hlen, hops, xid, secs, flags, ciaddr
const KEY = -48; // up to MAX_KEY octets of the hash key
const OPTHDR = -56; // one option's code and length (or one value octet)
const WORD = -64; // the magic cookie, then option 54's value
const MAPKEY = -72; // u32 map key
const TYPE = -80; // u64: option 53, 0 when absent
const HAS_SID = -88; // u64: 1 when option 54 was seen
const SID = -96; // u64: option 54 as read (network order, loaded as a little-endian u32)
const CID_OFF = -104; // u64: offset of option 61's value in the DHCP message
const CID_LEN = -112; // u64: option 61's length, 0 when absent

/** The magic cookie 99.130.83.99 read as a little-endian u32. */
const COOKIE_LE = 0x63538263;

/**
 * The socket filter's instructions (8 octets each) for a map whose file descriptor is
 * `mapFd` (an ARRAY of 2 entries of VALUE.size octets). Returns the skb length (keep) or 0.
 */
export function balanceFilterProgram(mapFd: number): Uint8Array {
  const a = new Asm();
  const { movK, movX, addK, addX, andK, rshK, rshX, lshK, orX, xorX } = OP;
  const { ldxB, ldxW, ldxDW, stxDW, stW, stDW } = OP;
  const { jeqK, jneK, jgtK, jleK, jltK, jeqX, jgtX } = OP;

  a.i(movX, 6, 1, 0, 0); // r6 = ctx
  for (const slot of [TYPE, HAS_SID, SID, CID_OFF, CID_LEN]) a.i(stDW, 10, 0, slot, 0);
  // r7 = the configuration; off when absent or disabled.
  a.i(stW, 10, 0, MAPKEY, CONFIG_ENTRY).loadMap(mapFd);
  a.i(movX, 2, 10, 0, 0).i(addK, 2, 0, 0, MAPKEY).i(OP.call, 0, 0, 0, FN_MAP_LOOKUP);
  a.jmp(jeqK, 0, 0, "pass").i(movX, 7, 0, 0, 0);
  a.i(ldxW, 1, 7, VALUE.enabled, 0).jmp(jeqK, 1, 0, "pass");
  // The fixed header: a BOOTREQUEST (RFC 2131 §2), hlen 1..16, secs <= max seconds.
  a.loadBytes(null, DHCP, HDR, 16).jmp(jneK, 0, 0, "pass");
  a.i(ldxB, 1, 10, HDR, 0).jmp(jneK, 1, 1, "pass");
  a.i(ldxB, 1, 10, HDR + 2, 0).jmp(jeqK, 1, 0, "pass").jmp(jgtK, 1, 16, "pass");
  a.i(ldxB, 1, 10, HDR + 8, 0).i(lshK, 1, 0, 0, 8).i(ldxB, 2, 10, HDR + 9, 0).i(orX, 1, 2, 0, 0);
  a.i(ldxW, 2, 7, VALUE.maxSeconds, 0).jmpX(jgtX, 1, 2, "pass");
  // The magic cookie (RFC 2131 §3), then the options from octet 240 (RFC 2132 §2).
  a.loadBytes(null, DHCP + 236, WORD, 4).jmp(jneK, 0, 0, "pass");
  a.i(ldxW, 1, 10, WORD, 0).jmp(jneK, 1, COOKIE_LE, "pass");
  a.i(movK, 8, 0, 0, 240); // r8 = the next option's offset
  for (let step = 0; step < OPTION_STEPS; step++) {
    const next = a.fresh("next");
    const advance = a.fresh("advance");
    const not53 = a.fresh("not53");
    const not54 = a.fresh("not54");
    a.loadBytes(8, DHCP, OPTHDR, 2).jmp(jneK, 0, 0, "last");
    a.i(ldxB, 1, 10, OPTHDR, 0);
    const notPad = a.fresh("not-pad");
    a.jmp(jneK, 1, 0, notPad).i(addK, 8, 0, 0, 1).goto(next); // pad: one octet
    a.label(notPad);
    a.jmp(jeqK, 1, 255, "options-end").jmp(jeqK, 1, 52, "pass");
    a.i(ldxB, 2, 10, OPTHDR + 1, 0); // r2 = length
    // Option 53, message type (RFC 2132 §9.6): once, one octet.
    a.jmp(jneK, 1, 53, not53).jmp(jneK, 2, 1, "pass");
    a.i(ldxDW, 1, 10, TYPE, 0).jmp(jneK, 1, 0, "pass");
    a.loadBytes(8, DHCP + 2, OPTHDR, 1).jmp(jneK, 0, 0, "pass");
    a.i(ldxB, 1, 10, OPTHDR, 0).jmp(jeqK, 1, 0, "pass").i(stxDW, 10, 1, TYPE, 0);
    a.i(movK, 2, 0, 0, 1).goto(advance);
    // Option 54, server identifier (RFC 2132 §9.7): once, four octets.
    a.label(not53).jmp(jneK, 1, 54, not54).jmp(jneK, 2, 4, "pass");
    a.i(ldxDW, 1, 10, HAS_SID, 0).jmp(jneK, 1, 0, "pass");
    a.loadBytes(8, DHCP + 2, WORD, 4).jmp(jneK, 0, 0, "pass");
    a.i(ldxW, 1, 10, WORD, 0).i(stxDW, 10, 1, SID, 0);
    a.i(movK, 1, 0, 0, 1).i(stxDW, 10, 1, HAS_SID, 0);
    a.i(movK, 2, 0, 0, 4).goto(advance);
    // Option 61, client identifier (RFC 2132 §9.14): once, 1..MAX_KEY octets.
    a.label(not54).jmp(jneK, 1, 61, advance);
    a.jmp(jeqK, 2, 0, "pass").jmp(jgtK, 2, MAX_KEY, "pass");
    a.i(ldxDW, 1, 10, CID_LEN, 0).jmp(jneK, 1, 0, "pass");
    a.i(stxDW, 10, 2, CID_LEN, 0).i(movX, 1, 8, 0, 0).i(addK, 1, 0, 0, 2);
    a.i(stxDW, 10, 1, CID_OFF, 0);
    a.label(advance).i(addK, 8, 0, 0, 2).i(addX, 8, 2, 0, 0);
    a.label(next);
  }
  a.goto("pass"); // more options than the filter scans
  // Two octets could not be read: the end option may be the datagram's last octet.
  a.label("last").loadBytes(8, DHCP, OPTHDR, 1).jmp(jneK, 0, 0, "pass");
  a.i(ldxB, 1, 10, OPTHDR, 0).jmp(jneK, 1, 255, "pass");
  // Which requests load balancing decides (lib/server/dhcp.ts #refuse, draft-12 §9.8.2).
  a.label("options-end");
  a.i(ldxDW, 1, 10, TYPE, 0).jmp(jeqK, 1, 1, "balanced").jmp(jneK, 1, 3, "pass");
  a.i(ldxDW, 1, 10, HAS_SID, 0).jmp(jneK, 1, 0, "selecting");
  // A DHCPREQUEST without a server identifier: INIT-REBOOT only when ciaddr is 0 (RFC 2131
  // §4.3.2); a RENEWING or REBINDING one is answered by whoever it reaches.
  a.i(ldxW, 1, 10, HDR + 12, 0).jmp(jneK, 1, 0, "pass").goto("balanced");
  // SELECTING: one that names this host goes up, whoever's client it is.
  a.label("selecting").i(ldxDW, 1, 10, SID, 0).i(ldxW, 2, 7, VALUE.idCount, 0);
  a.jmp(jeqK, 2, 0, "pass");
  for (let i = 0; i < MAX_SERVER_IDS; i++) {
    a.jmp(jleK, 2, i, "balanced");
    a.i(ldxW, 3, 7, VALUE.ids + 4 * i, 0).jmpX(jeqX, 1, 3, "pass");
  }
  // The RFC 3074 key: option 61 when present, else chaddr[0..hlen) (lib/balance/hash.ts).
  a.label("balanced").i(ldxDW, 4, 10, CID_LEN, 0).i(ldxDW, 2, 10, CID_OFF, 0);
  a.jmp(jneK, 4, 0, "have-key").i(ldxB, 4, 10, HDR + 2, 0).i(movK, 2, 0, 0, 28);
  a.label("have-key").jmp(jltK, 4, 1, "pass").jmp(jgtK, 4, MAX_KEY, "pass");
  a.i(movX, 9, 4, 0, 0); // r9 = key length
  a.i(addK, 2, 0, 0, DHCP).i(movX, 1, 6, 0, 0).i(movX, 3, 10, 0, 0).i(addK, 3, 0, 0, KEY);
  a.i(OP.call, 0, 0, 0, FN_SKB_LOAD_BYTES).jmp(jneK, 0, 0, "pass");
  // RFC 3074 §5: start from the length, fold in from the last octet to the first.
  a.i(movX, 0, 9, 0, 0);
  for (let i = MAX_KEY - 1; i >= 0; i--) {
    const skip = a.fresh("short");
    a.jmp(jleK, 9, i, skip);
    a.i(ldxB, 1, 10, KEY + i, 0).i(xorX, 0, 1, 0, 0).i(andK, 0, 0, 0, 0xff);
    a.i(movX, 1, 7, 0, 0).i(addX, 1, 0, 0, 0).i(ldxB, 0, 1, VALUE.table, 0);
    a.label(skip);
  }
  // Bucket r0: this server's when its bit is set in `mine`.
  a.i(movX, 1, 0, 0, 0).i(rshK, 1, 0, 0, 3).i(movX, 2, 7, 0, 0).i(addX, 2, 1, 0, 0);
  a.i(ldxB, 2, 2, VALUE.mine, 0).i(movX, 1, 0, 0, 0).i(andK, 1, 0, 0, 7).i(rshX, 2, 1, 0, 0);
  a.i(andK, 2, 0, 0, 1).jmp(jneK, 2, 0, "pass");
  // The partner's: count it and drop it.
  a.i(stW, 10, 0, MAPKEY, COUNTER_ENTRY).loadMap(mapFd);
  a.i(movX, 2, 10, 0, 0).i(addK, 2, 0, 0, MAPKEY).i(OP.call, 0, 0, 0, FN_MAP_LOOKUP);
  a.jmp(jeqK, 0, 0, "drop");
  a.i(ldxDW, 1, 10, TYPE, 0).i(movK, 2, 0, 0, COUNTERS.discover).jmp(jeqK, 1, 1, "count");
  a.i(movK, 2, 0, 0, COUNTERS.request);
  a.label("count").i(addX, 0, 2, 0, 0).i(movK, 1, 0, 0, 1).i(OP.atomicAddDW, 0, 1, 0, 0);
  a.label("drop").i(movK, 0, 0, 0, 0).i(OP.exit, 0, 0, 0, 0);
  a.label("pass").i(ldxW, 0, 6, 0, 0).i(OP.exit, 0, 0, 0, 0); // __sk_buff.len: keep it all
  return a.bytes();
}

/**
 * The bitmap of buckets this server answers: bit i of `mine` set when `isMine(bucket i)`.
 * The caller resolves role and polarity (lib/balance/hash.ts isMine).
 */
export function mineBitmap(isMine: (bucket: number) => boolean): Uint8Array {
  const out = new Uint8Array(HBA_LENGTH);
  for (let b = 0; b < 256; b++) {
    if (isMine(b)) out[b >> 3] = (out[b >> 3] as number) | (1 << (b & 7));
  }
  return out;
}
