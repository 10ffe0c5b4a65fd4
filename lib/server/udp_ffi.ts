/**
 * The production DHCP socket: raw libc UDP through Deno FFI, with IP_PKTINFO so the server
 * knows the interface and destination of every request and can send a reply out of a chosen
 * interface (RFC 2131 §4.1: broadcast replies go to the client's link, whatever the routing
 * table says). See /work/shared/platform/deno-notes.md §2 for the measured facts.
 *
 * Linux x86_64 and aarch64 only. Needs `--allow-ffi`; port 67 needs root or
 * CAP_NET_BIND_SERVICE; unicast to a client MAC (SIOCSARP) needs CAP_NET_ADMIN.
 */

import { parseIpv4 } from "../wire/ip.ts";
import {
  addressOf,
  AF_INET,
  ARPHRD_ETHER,
  ATF_COM,
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  errno,
  errnoError,
  IF_NAMESIZE,
  interfaceIndex,
  interfaceName,
  IP_PKTINFO,
  IPPROTO_IP,
  libc,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLIN,
  POLLNVAL,
  setIntOption,
  SIOCSARP,
  SO_BROADCAST,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
  toNumber,
} from "./libc.ts";
import type { Received, SendTarget, Transport } from "./transport.ts";

/** Options of openFfiTransport(). */
export interface FfiTransportOptions {
  /** Deliver only packets that arrived on these interfaces (names); all when absent. */
  interfaces?: string[];
  /** Address to bind; default 0.0.0.0 (needed to receive broadcasts). */
  address?: string;
  port: number;
  /** Upper bound of one `poll` wait; `close()` wakes it at once anyway. Default 250 ms. */
  pollTimeoutMs?: number;
  /** Packets read per burst before `onBurstEnd` and a turn of the event loop. Default 64. */
  maxBurst?: number;
  /**
   * While packets keep coming, read them on a timer every this many milliseconds instead of
   * waking through poll() for each one (default 1; 0 turns it off). Fewer wake-ups cost
   * less CPU than the up to 1 ms they add to a reply; an idle socket goes back to poll().
   */
  coalesceMs?: number;
}

/** Counters of an FfiTransport, for metrics. */
export interface FfiTransportStats {
  /** Datagrams read from the socket. */
  received: number;
  /** Datagrams dropped because they arrived on an interface not in `interfaces`. */
  filtered: number;
  /** Datagrams dropped because they were truncated (payload or control data). */
  truncated: number;
  /** Datagrams handed to the kernel. */
  sent: number;
  /** send() calls the kernel refused (returned false). */
  sendFailures: number;
  /** SIOCSARP failures (hwAddress sends that returned false). */
  arpFailures: number;
}

/** A Transport on raw libc sockets, with counters. */
export interface FfiTransport extends Transport {
  readonly stats: Readonly<FfiTransportStats>;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
}

// Byte layouts, Linux LP64 (x86_64 / aarch64), little-endian host order.
// struct msghdr (56 bytes)
const MSG_NAME = 0; // void *msg_name
const MSG_NAMELEN = 8; // socklen_t msg_namelen
const MSG_IOV = 16; // struct iovec *msg_iov
const MSG_IOVLEN = 24; // size_t msg_iovlen
const MSG_CONTROL = 32; // void *msg_control
const MSG_CONTROLLEN = 40; // size_t msg_controllen
const MSG_FLAGS = 48; // int msg_flags
const MSGHDR_SIZE = 56;
// struct iovec (16 bytes)
const IOV_BASE = 0; // void *iov_base
const IOV_LEN = 8; // size_t iov_len
const IOVEC_SIZE = 16;
// struct sockaddr_in (16 bytes)
const SIN_FAMILY = 0; // sa_family_t, host order
const SIN_PORT = 2; // in_port_t, network order
const SIN_ADDR = 4; // struct in_addr, network order
const SOCKADDR_IN_SIZE = 16;
// struct cmsghdr (16 bytes) followed by data, aligned to 8
const CMSG_LEN = 0; // size_t cmsg_len
const CMSG_LEVEL = 8; // int cmsg_level
const CMSG_TYPE = 12; // int cmsg_type
const CMSG_DATA = 16;
// struct in_pktinfo (12 bytes), after the cmsghdr
const PKTINFO_IFINDEX = 0; // int ipi_ifindex
const PKTINFO_SPEC_DST = 4; // struct in_addr ipi_spec_dst (local address of the interface)
const PKTINFO_ADDR = 8; // struct in_addr ipi_addr (IP header destination)
const PKTINFO_CMSG_LEN = CMSG_DATA + 12; // CMSG_LEN(sizeof(in_pktinfo)) = 28
const PKTINFO_CMSG_SPACE = 32; // CMSG_SPACE(sizeof(in_pktinfo))
const RECV_CONTROL_SIZE = 64;
// struct arpreq (68 bytes)
const ARP_PA = 0; // struct sockaddr arp_pa (sockaddr_in of the protocol address)
const ARP_HA = 16; // struct sockaddr arp_ha { sa_family = ARPHRD_ETHER, sa_data = MAC }
const ARP_FLAGS = 32; // int arp_flags
const ARP_DEV = 52; // char arp_dev[16]
const ARPREQ_SIZE = 68;
// struct pollfd (8 bytes)
const POLL_FD = 0; // int fd
const POLL_EVENTS = 4; // short events
const POLL_REVENTS = 6; // short revents
const POLLFD_SIZE = 8;

/** Largest UDP payload over IPv4. */
const MAX_DATAGRAM = 65507;
const BUFFER_SIZE = 65536;
const SIOCSARP_REQUEST = BigInt(SIOCSARP);

/**
 * Opens a UDP socket bound to `address:port` (default 0.0.0.0) with SO_REUSEADDR,
 * SO_BROADCAST and IP_PKTINFO; throws an Error with the errno text when the OS refuses.
 */
export function openFfiTransport(options: FfiTransportOptions): FfiTransport {
  return new FfiUdpTransport(options);
}

/** Writes a size_t below 2^32 without allocating a BigInt (per-packet path). */
function setSize(v: DataView, offset: number, value: number): void {
  v.setUint32(offset, value, true);
  v.setUint32(offset + 4, 0, true);
}

/** Reads a size_t that is known to be below 2^32 (lengths of our own buffers). */
function getSize(v: DataView, offset: number): number {
  return v.getUint32(offset + 4, true) === 0 ? v.getUint32(offset, true) : 0xffffffff;
}

/** Rounds a cmsg length up to the next multiple of 8 (CMSG_ALIGN on LP64). */
function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}

class FfiUdpTransport implements FfiTransport {
  readonly name: string;
  readonly port: number;
  readonly stats: FfiTransportStats = {
    received: 0,
    filtered: 0,
    truncated: 0,
    sent: 0,
    sendFailures: 0,
    arpFailures: 0,
  };

  readonly #lib = libc();
  readonly #fd: number;
  readonly #wakeFd: number;
  readonly #filter: Set<number> | null;
  readonly #pollTimeoutMs: number;
  readonly #maxBurst: number;
  readonly #coalesceMs: number;
  readonly #names = new Map<number, { name: string; bytes: Uint8Array }>();
  #running = false;
  #closed = false;
  #fdsClosed = false;

  // All structures live in one ArrayBuffer (off the V8 heap, never moved), created once and
  // referenced for the life of the transport so their pointers stay valid.
  readonly #structs = new ArrayBuffer(1024);
  readonly #view = new DataView(this.#structs);
  readonly #recvBuf = new Uint8Array(new ArrayBuffer(BUFFER_SIZE));
  readonly #sendBuf = new Uint8Array(new ArrayBuffer(BUFFER_SIZE));
  readonly #recvMsg = new Uint8Array(this.#structs, 0, MSGHDR_SIZE);
  readonly #recvIov = new Uint8Array(this.#structs, 64, IOVEC_SIZE);
  readonly #recvName = new Uint8Array(this.#structs, 80, SOCKADDR_IN_SIZE);
  readonly #recvControl = new Uint8Array(this.#structs, 96, RECV_CONTROL_SIZE);
  readonly #sendMsg = new Uint8Array(this.#structs, 160, MSGHDR_SIZE);
  readonly #sendIov = new Uint8Array(this.#structs, 224, IOVEC_SIZE);
  readonly #sendName = new Uint8Array(this.#structs, 240, SOCKADDR_IN_SIZE);
  readonly #sendControl = new Uint8Array(this.#structs, 256, PKTINFO_CMSG_SPACE);
  readonly #arpReq = new Uint8Array(this.#structs, 288, ARPREQ_SIZE);
  readonly #pollFds = new Uint8Array(this.#structs, 360, 2 * POLLFD_SIZE);
  readonly #wakeValue = new Uint8Array(this.#structs, 376, 8);
  readonly #nameScratch = new Uint8Array(this.#structs, 384, IF_NAMESIZE);

  constructor(options: FfiTransportOptions) {
    const address = options.address ?? "0.0.0.0";
    const bindAddress = parseIpv4(address);
    if (bindAddress === undefined) {
      throw new TypeError(`Cannot open UDP transport: "${address}" is not an IPv4 address`);
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new RangeError(`Cannot open UDP transport: port ${options.port} is out of range`);
    }
    this.#pollTimeoutMs = options.pollTimeoutMs ?? 250;
    this.#maxBurst = options.maxBurst ?? 64;
    this.#coalesceMs = options.coalesceMs ?? 1;
    const where = `${address}:${options.port}`;
    if (options.interfaces && options.interfaces.length > 0) {
      this.#filter = new Set();
      for (const name of options.interfaces) {
        const index = interfaceIndex(name);
        if (index === 0) throw new Error(`Cannot open UDP ${where}: no interface "${name}"`);
        this.#filter.add(index);
      }
    } else {
      this.#filter = null;
    }

    const lib = this.#lib;
    const fd = lib.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw errnoError(`Cannot create UDP socket for ${where}`);
    let wakeFd = -1;
    try {
      setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, `SO_REUSEADDR on UDP ${where}`);
      setIntOption(fd, SOL_SOCKET, SO_BROADCAST, 1, `SO_BROADCAST on UDP ${where}`);
      setIntOption(fd, IPPROTO_IP, IP_PKTINFO, 1, `IP_PKTINFO on UDP ${where}`);
      const sin = this.#sendName; // scratch for bind; rewritten by every send
      this.#writeSockaddr(sin, bindAddress, options.port);
      if (lib.bind(fd, sin, SOCKADDR_IN_SIZE) !== 0) throw errnoError(`Cannot bind UDP ${where}`);
      const length = new Uint32Array([SOCKADDR_IN_SIZE]);
      if (lib.getsockname(fd, sin, length) !== 0) throw errnoError(`Cannot read UDP ${where}`);
      this.port = this.#view.getUint16(sin.byteOffset + SIN_PORT, false);
      wakeFd = lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (wakeFd < 0) throw errnoError(`Cannot create eventfd for UDP ${where}`);
    } catch (e) {
      lib.close(fd);
      throw e;
    }
    this.#fd = fd;
    this.#wakeFd = wakeFd;
    const on = options.interfaces?.length ? options.interfaces.join(",") : address;
    this.name = `ffi ${on}:${this.port}`;
    this.#initStructs();
  }

  #initStructs(): void {
    const v = this.#view;
    const base = (b: Uint8Array) => b.byteOffset;
    // Receive msghdr -> sockaddr, one iovec over #recvBuf, control buffer.
    let m = base(this.#recvMsg);
    v.setBigUint64(m + MSG_NAME, addressOf(this.#recvName), true);
    v.setBigUint64(m + MSG_IOV, addressOf(this.#recvIov), true);
    v.setBigUint64(m + MSG_IOVLEN, 1n, true);
    v.setBigUint64(m + MSG_CONTROL, addressOf(this.#recvControl), true);
    v.setBigUint64(base(this.#recvIov) + IOV_BASE, addressOf(this.#recvBuf), true);
    v.setBigUint64(base(this.#recvIov) + IOV_LEN, BigInt(BUFFER_SIZE), true);
    // Send msghdr -> sockaddr, one iovec over #sendBuf, an IP_PKTINFO cmsg.
    m = base(this.#sendMsg);
    v.setBigUint64(m + MSG_NAME, addressOf(this.#sendName), true);
    v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
    v.setBigUint64(m + MSG_IOV, addressOf(this.#sendIov), true);
    v.setBigUint64(m + MSG_IOVLEN, 1n, true);
    v.setBigUint64(m + MSG_CONTROL, addressOf(this.#sendControl), true);
    v.setBigUint64(base(this.#sendIov) + IOV_BASE, addressOf(this.#sendBuf), true);
    const c = base(this.#sendControl);
    v.setBigUint64(c + CMSG_LEN, BigInt(PKTINFO_CMSG_LEN), true);
    v.setInt32(c + CMSG_LEVEL, IPPROTO_IP, true);
    v.setInt32(c + CMSG_TYPE, IP_PKTINFO, true);
    // pollfd[0] = socket, pollfd[1] = eventfd (close() wakes the pending poll through it).
    const p = base(this.#pollFds);
    v.setInt32(p + POLL_FD, this.#fd, true);
    v.setInt16(p + POLL_EVENTS, POLLIN, true);
    v.setInt32(p + POLLFD_SIZE + POLL_FD, this.#wakeFd, true);
    v.setInt16(p + POLLFD_SIZE + POLL_EVENTS, POLLIN, true);
    v.setBigUint64(base(this.#wakeValue), 1n, true);
  }

  #writeSockaddr(sin: Uint8Array, address: number, port: number): void {
    const v = this.#view;
    const o = sin.byteOffset;
    v.setUint16(o + SIN_FAMILY, AF_INET, true);
    v.setUint16(o + SIN_PORT, port, false);
    v.setUint32(o + SIN_ADDR, address, false);
    v.setUint32(o + 8, 0); // sin_zero
    v.setUint32(o + 12, 0);
  }

  async run(onPacket: (packet: Received) => void, onBurstEnd?: () => void): Promise<void> {
    if (this.#running) throw new Error(`Cannot run ${this.name}: already running`);
    if (this.#closed) return;
    this.#running = true;
    const v = this.#view;
    const p = this.#pollFds.byteOffset;
    try {
      // "hot": packets arrived recently, so read again after coalesceMs without poll(); after
      // a full burst, read again at the next turn of the event loop.
      let hot = false;
      let full = false;
      while (!this.#closed) {
        if (hot) {
          await new Promise((r) => setTimeout(r, full ? 0 : this.#coalesceMs));
          if (this.#closed) break;
          const n = this.#drain(onPacket);
          full = n === this.#maxBurst;
          if (n > 0) onBurstEnd?.();
          else hot = false;
          continue;
        }
        v.setInt16(p + POLL_REVENTS, 0, true);
        v.setInt16(p + POLLFD_SIZE + POLL_REVENTS, 0, true);
        // Worker thread; errno is not readable for it, and a -1 (EINTR) just loops.
        const ready = await this.#lib.poll(this.#pollFds, 2n, this.#pollTimeoutMs);
        if (this.#closed) break;
        if (ready <= 0) continue;
        const revents = v.getInt16(p + POLL_REVENTS, true);
        if (revents & POLLNVAL) throw new Error(`Cannot poll ${this.name}: socket is invalid`);
        const n = this.#drain(onPacket);
        full = n === this.#maxBurst;
        if (n > 0) {
          onBurstEnd?.();
          hot = this.#coalesceMs > 0 || full;
        }
      }
    } finally {
      this.#running = false;
      this.#closed = true;
      this.#closeFds();
    }
  }

  /** Reads up to maxBurst datagrams without waiting; returns how many were delivered. */
  #drain(onPacket: (packet: Received) => void): number {
    const v = this.#view;
    const lib = this.#lib;
    const m = this.#recvMsg.byteOffset;
    const name = this.#recvName.byteOffset;
    const control = this.#recvControl.byteOffset;
    let delivered = 0;
    for (let i = 0; i < this.#maxBurst && !this.#closed; i++) {
      v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
      setSize(v, m + MSG_CONTROLLEN, RECV_CONTROL_SIZE);
      v.setInt32(m + MSG_FLAGS, 0, true);
      const n = toNumber(lib.recvmsg(this.#fd, this.#recvMsg, MSG_DONTWAIT));
      if (n < 0) {
        const code = errno();
        if (code === EINTR) continue;
        if (code === EAGAIN) break;
        // Pending ICMP-derived errors and the like: nothing to read now.
        break;
      }
      this.stats.received++;
      const flags = v.getInt32(m + MSG_FLAGS, true);
      if (flags & (MSG_TRUNC | MSG_CTRUNC)) {
        this.stats.truncated++;
        continue;
      }
      let ifindex = 0;
      let localAddress: number | null = null;
      let dstAddress: number | null = null;
      const controlLength = getSize(v, m + MSG_CONTROLLEN);
      let c = 0;
      while (c + CMSG_DATA <= controlLength) {
        const len = getSize(v, control + c + CMSG_LEN);
        if (len < CMSG_DATA || c + len > controlLength) break;
        if (
          len >= PKTINFO_CMSG_LEN &&
          v.getInt32(control + c + CMSG_LEVEL, true) === IPPROTO_IP &&
          v.getInt32(control + c + CMSG_TYPE, true) === IP_PKTINFO
        ) {
          const d = control + c + CMSG_DATA;
          ifindex = v.getInt32(d + PKTINFO_IFINDEX, true);
          localAddress = v.getUint32(d + PKTINFO_SPEC_DST, false);
          dstAddress = v.getUint32(d + PKTINFO_ADDR, false);
        }
        c += cmsgAlign(len);
      }
      if (this.#filter !== null && !this.#filter.has(ifindex)) {
        this.stats.filtered++;
        continue;
      }
      const nameLength = v.getUint32(m + MSG_NAMELEN, true);
      if (nameLength < 8 || v.getUint16(name + SIN_FAMILY, true) !== AF_INET) continue;
      delivered++;
      onPacket({
        data: this.#recvBuf.slice(0, n),
        srcAddress: v.getUint32(name + SIN_ADDR, false),
        srcPort: v.getUint16(name + SIN_PORT, false),
        ifindex,
        ifname: ifindex > 0 ? this.#ifname(ifindex) : null,
        localAddress,
        dstAddress,
      });
    }
    return delivered;
  }

  /** Interface name and its NUL-terminated bytes, cached per index. */
  #interface(index: number): { name: string; bytes: Uint8Array } | null {
    const cached = this.#names.get(index);
    if (cached) return cached;
    const name = interfaceName(index, this.#nameScratch);
    if (name === null) return null; // not cached: the interface may appear later
    const entry = { name, bytes: new TextEncoder().encode(name + "\0") };
    this.#names.set(index, entry);
    return entry;
  }

  #ifname(index: number): string | null {
    return this.#interface(index)?.name ?? null;
  }

  send(data: Uint8Array, to: SendTarget): boolean {
    if (this.#closed || data.length > MAX_DATAGRAM) {
      this.stats.sendFailures++;
      return false;
    }
    if (to.hwAddress && !this.#setArp(to.address, to.hwAddress, to.ifindex)) {
      this.stats.arpFailures++;
      this.stats.sendFailures++;
      return false;
    }
    const v = this.#view;
    this.#sendBuf.set(data);
    setSize(v, this.#sendIov.byteOffset + IOV_LEN, data.length);
    this.#writeSockaddr(this.#sendName, to.address >>> 0, to.port);
    const m = this.#sendMsg.byteOffset;
    const src = to.srcAddress ?? 0;
    if (to.ifindex > 0 || src !== 0) {
      // IP_PKTINFO: leave through ipi_ifindex with source ipi_spec_dst (ip(7)).
      const d = this.#sendControl.byteOffset + CMSG_DATA;
      v.setInt32(d + PKTINFO_IFINDEX, to.ifindex, true);
      v.setUint32(d + PKTINFO_SPEC_DST, src >>> 0, false);
      v.setUint32(d + PKTINFO_ADDR, 0, false);
      setSize(v, m + MSG_CONTROLLEN, PKTINFO_CMSG_SPACE);
    } else {
      setSize(v, m + MSG_CONTROLLEN, 0);
    }
    v.setInt32(m + MSG_FLAGS, 0, true);
    const n = toNumber(this.#lib.sendmsg(this.#fd, this.#sendMsg, MSG_DONTWAIT));
    if (n < 0) {
      this.stats.sendFailures++;
      return false;
    }
    this.stats.sent++;
    return true;
  }

  /**
   * dnsmasq's method for RFC 2131 §4.1 unicast to a client without an address: a neighbour
   * entry (address -> MAC on the device) so a normal send resolves without ARP. The entry is
   * ATF_COM without ATF_PERM, so the kernel makes it REACHABLE, lets it go STALE and
   * garbage-collects it like any learned entry; a later SIOCSARP or real ARP replaces it.
   */
  #setArp(address: number, mac: Uint8Array, ifindex: number): boolean {
    if (mac.length !== 6 || address === 0xffffffff || address === 0) return false;
    const v = this.#view;
    const a = this.#arpReq;
    a.fill(0);
    const o = a.byteOffset;
    v.setUint16(o + ARP_PA + SIN_FAMILY, AF_INET, true);
    v.setUint32(o + ARP_PA + SIN_ADDR, address >>> 0, false);
    v.setUint16(o + ARP_HA, ARPHRD_ETHER, true);
    a.set(mac, ARP_HA + 2);
    v.setInt32(o + ARP_FLAGS, ATF_COM, true);
    if (ifindex > 0) {
      const entry = this.#interface(ifindex);
      if (entry === null) return false;
      a.set(entry.bytes.subarray(0, IF_NAMESIZE), ARP_DEV);
    }
    return this.#lib.ioctl(this.#fd, SIOCSARP_REQUEST, a) === 0;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#running) {
      // The pending poll returns at once; run() closes the fds after it.
      this.#lib.write(this.#wakeFd, this.#wakeValue, 8n);
    } else {
      this.#closeFds();
    }
  }

  #closeFds(): void {
    if (this.#fdsClosed) return;
    this.#fdsClosed = true;
    this.#lib.close(this.#fd);
    this.#lib.close(this.#wakeFd);
  }
}
