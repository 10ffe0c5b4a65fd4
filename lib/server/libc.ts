/**
 * The few libc calls duet needs for raw sockets, through Deno FFI (`--allow-ffi`).
 *
 * Linux LP64 only (x86_64, aarch64): struct offsets in udp_ffi.ts assume 8-byte pointers and
 * size_t, little-endian host order and the Linux values of the constants below.
 */

/** Address family and socket constants (Linux, <sys/socket.h>, <netinet/in.h>). */
export const AF_INET = 2;
export const AF_PACKET = 17;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_BROADCAST = 6;
export const SO_RCVBUF = 8;
/** SO_RCVBUF beyond net.core.rmem_max; needs CAP_NET_ADMIN, socket(7). */
export const SO_RCVBUFFORCE = 33;
export const SO_BINDTODEVICE = 25;
/** Attach an eBPF socket filter by program fd; detach any filter (asm-generic/socket.h). */
export const SO_ATTACH_BPF = 50;
export const SO_DETACH_FILTER = 27;
export const IPPROTO_IP = 0;
export const IP_PKTINFO = 8;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;
export const MSG_CTRUNC = 0x08;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLNVAL = 0x20;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
/** ioctl: set an ARP (neighbour) entry, <linux/sockios.h>. */
export const SIOCSARP = 0x8955;
/** arpreq.arp_flags: the entry is complete (has a hardware address), <net/if_arp.h>. */
export const ATF_COM = 0x02;
export const ARPHRD_ETHER = 1;
/** ifname buffers, <net/if.h>. */
export const IF_NAMESIZE = 16;

export const EINTR = 4;
export const EAGAIN = 11;
export const EACCES = 13;
export const EPERM = 1;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  /** recvmmsg(fd, msgvec, vlen, flags, timeout): the timeout pointer is always NULL here. */
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "isize",
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  /** syscall(number, a, b, c): bpf(2), which glibc does not wrap. */
  syscall: { parameters: ["i64", "i64", "buffer", "u64"], result: "i64" },
  /** getifaddrs(&list) / freeifaddrs(list): this host's addresses (server identifiers). */
  getifaddrs: { parameters: ["buffer"], result: "i32" },
  freeifaddrs: { parameters: ["pointer"], result: "void" },
  __errno_location: { parameters: [], result: "pointer" },
  /** Runs on a worker thread and returns a Promise; errno is not readable afterwards. */
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const;

/** The loaded symbols. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let loaded: { symbols: LibcSymbols; errnoView: Deno.UnsafePointerView } | null = null;

// Load at import time when FFI is already granted, so the library (a Deno resource that is
// never closed) exists before any test starts and the resource sanitizer does not flag it.
// Without the permission, loading waits for the first use (no permission prompt on import).
if (
  Deno.build.os === "linux" && (Deno.build.arch === "x86_64" || Deno.build.arch === "aarch64") &&
  Deno.permissions.querySync({ name: "ffi" }).state === "granted"
) {
  try {
    load();
  } catch {
    // Reported again, with its reason, on first use.
  }
}

/**
 * Opens libc.so.6 once per isolate (never closed: the symbols live as long as the process);
 * throws an Error naming the platform when it is not Linux x86_64 or aarch64.
 */
export function libc(): LibcSymbols {
  return load().symbols;
}

function load(): { symbols: LibcSymbols; errnoView: Deno.UnsafePointerView } {
  if (loaded) return loaded;
  const { os, arch } = Deno.build;
  if (os !== "linux" || (arch !== "x86_64" && arch !== "aarch64")) {
    throw new Error(
      `Cannot use FFI sockets on ${os}/${arch}: only Linux x86_64 and aarch64 are supported`,
    );
  }
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (e) {
    throw new Error(`Cannot load libc.so.6 through FFI: ${(e as Error).message}`, { cause: e });
  }
  const where = lib.symbols.__errno_location();
  if (where === null) throw new Error("Cannot locate errno: __errno_location returned NULL");
  // errno is thread-local; synchronous FFI calls always run on this (the isolate's) thread.
  loaded = { symbols: lib.symbols, errnoView: new Deno.UnsafePointerView(where) };
  return loaded;
}

/** errno after the last failed synchronous call on this thread. */
export function errno(): number {
  return load().errnoView.getInt32(0);
}

/** strerror(code) text, e.g. "Address already in use". */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** `"<action>: <strerror> (errno N)"` as an Error, for the errno of the last failed call. */
export function errnoError(action: string, code: number = errno()): Error {
  const error = new Error(`${action}: ${strerror(code)} (errno ${code})`);
  (error as Error & { errno: number }).errno = code;
  return error;
}

/** The pointer value (for struct fields) of a buffer allocated with `new ArrayBuffer`. */
export function addressOf(bytes: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

/** Number of an isize/usize result, which FFI may hand back as a bigint. */
export function toNumber(v: number | bigint): number {
  return typeof v === "bigint" ? Number(v) : v;
}

/** Sets an integer socket option; throws `Cannot set <name> …` on failure. */
export function setIntOption(
  fd: number,
  level: number,
  option: number,
  value: number,
  name: string,
): void {
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setInt32(0, value, true);
  if (libc().setsockopt(fd, level, option, buf, 4) !== 0) {
    throw errnoError(`Cannot set ${name}`);
  }
}

/** Sets an integer socket option; false (errno set) when the OS refuses. */
export function trySetIntOption(fd: number, level: number, option: number, value: number): boolean {
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setInt32(0, value, true);
  return libc().setsockopt(fd, level, option, buf, 4) === 0;
}

/** Reads an integer socket option; null (errno set) when the OS refuses. */
export function getIntOption(fd: number, level: number, option: number): number | null {
  const buf = new Uint8Array(4);
  const length = new Uint32Array([4]);
  if (libc().getsockopt(fd, level, option, buf, length) !== 0) return null;
  return new DataView(buf.buffer).getInt32(0, true);
}

/** if_nametoindex(name), 0 when there is no such interface. */
export function interfaceIndex(name: string): number {
  const bytes = new TextEncoder().encode(name + "\0");
  return libc().if_nametoindex(bytes);
}

/** if_indextoname(index), null when there is no such interface. */
export function interfaceName(index: number, scratch = new Uint8Array(IF_NAMESIZE)): string | null {
  const p = libc().if_indextoname(index, scratch);
  if (p === null) return null;
  const end = scratch.indexOf(0);
  return new TextDecoder().decode(scratch.subarray(0, end < 0 ? scratch.length : end));
}

/**
 * This host's IPv4 addresses (getifaddrs(3)), as numbers, without duplicates: what a DHCP
 * reply's server identifier can be (lib/server/dhcp.ts uses the arrival interface's).
 */
export function localIpv4Addresses(): number[] {
  const lib = libc();
  const head = new BigUint64Array(1);
  if (lib.getifaddrs(new Uint8Array(head.buffer)) !== 0) {
    throw errnoError("Cannot list this host's addresses (getifaddrs)");
  }
  const first = Deno.UnsafePointer.create(head[0] as bigint);
  const out = new Set<number>();
  try {
    // struct ifaddrs (LP64): ifa_next @0, ifa_name @8, ifa_flags @16, ifa_addr @24.
    for (let p = first, n = 0; p !== null && n < 65536; n++) {
      const entry = new Deno.UnsafePointerView(p);
      const addr = entry.getPointer(24);
      if (addr !== null) {
        const sa = new Deno.UnsafePointerView(addr);
        // struct sockaddr_in: sin_family @0 (host order), sin_addr @4 (network order).
        if (sa.getUint16(0) === AF_INET) {
          out.add(
            ((sa.getUint8(4) << 24) | (sa.getUint8(5) << 16) | (sa.getUint8(6) << 8) |
              sa.getUint8(7)) >>> 0,
          );
        }
      }
      p = entry.getPointer(0);
    }
  } finally {
    if (first !== null) lib.freeifaddrs(first);
  }
  return [...out];
}
