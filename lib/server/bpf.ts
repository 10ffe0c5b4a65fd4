/**
 * The kernel half of load balancing: loads lib/balance/kernel_filter.ts's eBPF socket filter
 * with bpf(2) and attaches it to the DHCP sockets, so a NORMAL pair's broadcasts for the
 * partner are dropped before they wake this server. Linux only; loading needs CAP_BPF (or
 * root). When it cannot load, the server balances in user space alone, as before.
 */

import {
  balanceFilterProgram,
  CONFIG_ENTRY,
  COUNTER_ENTRY,
  COUNTERS,
  disabledKernelBalance,
  encodeKernelBalance,
  type KernelBalance,
  VALUE,
} from "../balance/kernel_filter.ts";
import { addressOf, errno, errnoError, libc, strerror, toNumber } from "./libc.ts";

/** bpf(2) command numbers and types (linux/bpf.h). */
const BPF_MAP_CREATE = 0;
const BPF_MAP_LOOKUP_ELEM = 1;
const BPF_MAP_UPDATE_ELEM = 2;
const BPF_PROG_LOAD = 5;
const BPF_MAP_TYPE_ARRAY = 2;
const BPF_PROG_TYPE_SOCKET_FILTER = 1;
/** The bpf system call's number (asm/unistd.h). */
const SYS_BPF = Deno.build.arch === "aarch64" ? 280 : 321;
/** Bytes of union bpf_attr passed: every field used here lies in the first 72. */
const ATTR_SIZE = 128;

/** The filter could not be loaded or attached; `reason` says why (the verifier's log, or errno). */
export class KernelFilterError extends Error {
  override readonly name = "KernelFilterError";
}

/** Requests the filter dropped since it was loaded. */
export interface KernelFilterCounters {
  discover: number;
  request: number;
}

function bpf(cmd: number, attr: Uint8Array): number {
  return toNumber(libc().syscall(BigInt(SYS_BPF), BigInt(cmd), attr, BigInt(ATTR_SIZE)));
}

/** A loaded filter: one map and one program, attached to any number of sockets. */
export class KernelBalanceFilter {
  readonly #mapFd: number;
  readonly #progFd: number;
  readonly #key = new Uint32Array(1);
  readonly #counters = new Uint8Array(VALUE.size);
  #last: Uint8Array = disabledKernelBalance();
  #closed = false;

  private constructor(mapFd: number, progFd: number) {
    this.#mapFd = mapFd;
    this.#progFd = progFd;
  }

  /** Creates the map (filter off) and loads the program; throws KernelFilterError. */
  static open(): KernelBalanceFilter {
    if (Deno.build.os !== "linux") {
      throw new KernelFilterError(`eBPF socket filters need Linux, not ${Deno.build.os}`);
    }
    const attr = new Uint8Array(ATTR_SIZE);
    const v = new DataView(attr.buffer);
    v.setUint32(0, BPF_MAP_TYPE_ARRAY, true);
    v.setUint32(4, 4, true); // key_size
    v.setUint32(8, VALUE.size, true); // value_size
    v.setUint32(12, 2, true); // max_entries: CONFIG_ENTRY, COUNTER_ENTRY
    const mapFd = bpf(BPF_MAP_CREATE, attr);
    if (mapFd < 0) {
      const code = errno();
      throw new KernelFilterError(
        `Cannot create the eBPF map: ${strerror(code)} (errno ${code}; needs CAP_BPF or root)`,
      );
    }
    try {
      const progFd = loadProgram(balanceFilterProgram(mapFd));
      const filter = new KernelBalanceFilter(mapFd, progFd);
      filter.#write(CONFIG_ENTRY, filter.#last);
      return filter;
    } catch (e) {
      libc().close(mapFd);
      throw e;
    }
  }

  /** Attaches the filter to a socket (SO_ATTACH_BPF); throws KernelFilterError. */
  attach(attachTo: (progFd: number) => void): void {
    try {
      attachTo(this.#progFd);
    } catch (e) {
      throw new KernelFilterError((e as Error).message, { cause: e });
    }
  }

  /** Makes the filter decide by `b` (null: pass everything); writes the map only on change. */
  update(b: KernelBalance | null): void {
    if (this.#closed) return;
    const value = b === null ? disabledKernelBalance() : encodeKernelBalance(b);
    if (sameBytes(value, this.#last)) return;
    this.#write(CONFIG_ENTRY, value);
    this.#last = value;
  }

  /** Whether the filter is dropping the partner's requests now. */
  get enabled(): boolean {
    return new DataView(this.#last.buffer).getUint32(VALUE.enabled, true) === 1;
  }

  /** The requests dropped so far (counted by the kernel). */
  counters(): KernelFilterCounters {
    if (this.#closed) return { discover: 0, request: 0 };
    const attr = this.#elemAttr(COUNTER_ENTRY, this.#counters);
    if (bpf(BPF_MAP_LOOKUP_ELEM, attr) !== 0) throw errnoError("Cannot read the eBPF counters");
    const v = new DataView(this.#counters.buffer);
    return {
      discover: Number(v.getBigUint64(COUNTERS.discover, true)),
      request: Number(v.getBigUint64(COUNTERS.request, true)),
    };
  }

  /** Releases the map and program; attached sockets keep the program until they close. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.#progFd);
    libc().close(this.#mapFd);
  }

  #elemAttr(entry: number, value: Uint8Array): Uint8Array {
    this.#key[0] = entry;
    const attr = new Uint8Array(ATTR_SIZE);
    const v = new DataView(attr.buffer);
    v.setUint32(0, this.#mapFd, true);
    v.setBigUint64(8, addressOf(new Uint8Array(this.#key.buffer)), true);
    v.setBigUint64(16, addressOf(value), true);
    return attr;
  }

  #write(entry: number, value: Uint8Array): void {
    const attr = this.#elemAttr(entry, value);
    if (bpf(BPF_MAP_UPDATE_ELEM, attr) !== 0) {
      throw errnoError("Cannot write the eBPF filter's configuration");
    }
  }
}

/** Loads `insns` as a socket filter; on refusal, loads again with the verifier's log. */
function loadProgram(insns: Uint8Array): number {
  const license = new TextEncoder().encode("MIT\0");
  const attempt = (log: Uint8Array | null): number => {
    const attr = new Uint8Array(ATTR_SIZE);
    const v = new DataView(attr.buffer);
    v.setUint32(0, BPF_PROG_TYPE_SOCKET_FILTER, true);
    v.setUint32(4, insns.length / 8, true);
    v.setBigUint64(8, addressOf(insns), true);
    v.setBigUint64(16, addressOf(license), true);
    if (log !== null) {
      v.setUint32(24, 1, true); // log_level
      v.setUint32(28, log.length, true);
      v.setBigUint64(32, addressOf(log), true);
    }
    attr.set(new TextEncoder().encode("duet_balance"), 48); // prog_name
    return bpf(BPF_PROG_LOAD, attr);
  };
  const fd = attempt(null);
  if (fd >= 0) return fd;
  const code = errno();
  const log = new Uint8Array(1 << 16);
  const again = attempt(log);
  if (again >= 0) return again;
  const end = log.indexOf(0);
  const text = new TextDecoder().decode(log.subarray(0, end < 0 ? log.length : end)).trim();
  const tail = text.split("\n").slice(-6).join("\n");
  throw new KernelFilterError(
    `Cannot load the eBPF load-balancing filter: ${strerror(code)} (errno ${code})` +
      (tail ? `\n${tail}` : ""),
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
