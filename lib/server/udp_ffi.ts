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
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  errnoError,
  getIntOption,
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
  SO_ATTACH_BPF,
  SO_BROADCAST,
  SO_DETACH_FILTER,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
  trySetIntOption,
} from "./libc.ts";
import type { Received, SendTarget, Transport } from "./transport.ts";
import { setImmediate } from "node:timers";

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
   * waking through poll() for each one (default 3; 0 turns it off). Fewer wake-ups cost
   * less CPU than the up to 3 ms they add to a reply (each wake-up is an event-loop turn, a
   * burst's commit and a sendmmsg: a pair at 6,000 exchanges/s took 8 % less CPU at 3 ms
   * than at 1 ms); an idle socket goes back to poll(), and a full burst is read again at once.
   */
  coalesceMs?: number;
  /**
   * Socket receive buffer in bytes (default 4 MiB), so a burst that arrives while the event
   * loop is busy (a COMMIT, a GC pause) waits in the kernel instead of being dropped. Set with
   * SO_RCVBUFFORCE (root/CAP_NET_ADMIN), else SO_RCVBUF, which the kernel caps at
   * net.core.rmem_max; 0 keeps the kernel default. Never makes opening fail.
   */
  receiveBuffer?: number;
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
  /**
   * Datagrams the kernel refused, or that send() refused (then it returned false). A datagram
   * queued during a burst is counted here when the kernel refuses it at the burst's end.
   */
  sendFailures: number;
  /** SIOCSARP failures (hwAddress sends that returned false). */
  arpFailures: number;
  /** recvmmsg(2) calls (each reads up to 32 datagrams). */
  receiveCalls: number;
  /** sendmmsg(2) calls (each sends up to 32 queued datagrams). */
  sendCalls: number;
}

/** A Transport on raw libc sockets, with counters. */
export interface FfiTransport extends Transport {
  readonly stats: Readonly<FfiTransportStats>;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /**
   * The effective receive buffer (getsockopt SO_RCVBUF): Linux reports twice the size that
   * was set, the other half being its bookkeeping allowance (socket(7)); 0 if unreadable.
   */
  readonly receiveBuffer: number;
  batch(sends: () => void): void;
  attachSocketFilter(programFd: number): void;
  detachSocketFilter(): void;
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
// struct mmsghdr (64 bytes): struct msghdr, then unsigned int msg_len, then 4 bytes padding
const MMSG_LEN = 56;
const MMSGHDR_SIZE = 64;
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
const SIOCSARP_REQUEST = BigInt(SIOCSARP);
const DEFAULT_RECEIVE_BUFFER = 4 * 1024 * 1024;

/** Datagrams per recvmmsg(2) call. */
const RECV_SLOTS = 32;
/** Bytes of the shared chunk received datagrams are copied into (#copyOut). */
const COPY_CHUNK = 64 * 1024;
/**
 * Receive buffer per slot: DHCP requests fit in one 1500-byte frame; a longer datagram sets
 * MSG_TRUNC and is counted as truncated.
 */
const RECV_SLOT_SIZE = 2048;
/** Datagrams queued for one sendmmsg(2) call. */
const SEND_SLOTS = 32;
/** Send buffer per slot; a longer datagram is sent at once from its own buffer. */
const SEND_SLOT_SIZE = 2048;

// One ArrayBuffer holds every structure the kernel reads or writes. Each array is contiguous
// (recvmmsg/sendmmsg take an array of mmsghdr); slot i of a kind sits at base + i * size.
const RECV_HDRS = 0;
const RECV_IOVS = RECV_HDRS + RECV_SLOTS * MMSGHDR_SIZE;
const RECV_NAMES = RECV_IOVS + RECV_SLOTS * IOVEC_SIZE;
const RECV_CONTROLS = RECV_NAMES + RECV_SLOTS * SOCKADDR_IN_SIZE;
const SEND_HDRS = RECV_CONTROLS + RECV_SLOTS * RECV_CONTROL_SIZE;
const SEND_IOVS = SEND_HDRS + SEND_SLOTS * MMSGHDR_SIZE;
const SEND_NAMES = SEND_IOVS + SEND_SLOTS * IOVEC_SIZE;
const SEND_CONTROLS = SEND_NAMES + SEND_SLOTS * SOCKADDR_IN_SIZE;
const ARP_REQ = SEND_CONTROLS + SEND_SLOTS * PKTINFO_CMSG_SPACE;
const POLL_FDS = ARP_REQ + 72; // ARPREQ_SIZE rounded up to 8
const WAKE_VALUE = POLL_FDS + 2 * POLLFD_SIZE;
const NAME_SCRATCH = WAKE_VALUE + 8;
const BIND_NAME = NAME_SCRATCH + IF_NAMESIZE;
const STRUCTS_SIZE = BIND_NAME + SOCKADDR_IN_SIZE;

/**
 * Opens a UDP socket bound to `address:port` (default 0.0.0.0) with SO_REUSEADDR,
 * SO_BROADCAST, IP_PKTINFO and a large receive buffer; throws an Error with the errno text
 * when the OS refuses.
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
  readonly receiveBuffer: number;
  readonly stats: FfiTransportStats = {
    received: 0,
    filtered: 0,
    truncated: 0,
    sent: 0,
    sendFailures: 0,
    arpFailures: 0,
    receiveCalls: 0,
    sendCalls: 0,
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
  /** Set while run() delivers a burst: send() then queues instead of sending. */
  #inBurst = false;
  /** Datagrams of the current burst handed to onPacket. */
  #delivered = 0;
  /** Datagrams queued in the send slots [0, #queued). */
  #queued = 0;
  /** The shared chunk received datagrams are copied into, and how much of it is used. */
  #chunk = new Uint8Array(0);
  #chunkUsed = 0;

  // Allocated once, off the V8 heap (never moved) and referenced for the life of the
  // transport, so the pointers written into the structures stay valid.
  readonly #structs = new ArrayBuffer(STRUCTS_SIZE);
  readonly #view = new DataView(this.#structs);
  readonly #recvData = new Uint8Array(new ArrayBuffer(RECV_SLOTS * RECV_SLOT_SIZE));
  readonly #sendData = new Uint8Array(new ArrayBuffer(SEND_SLOTS * SEND_SLOT_SIZE));
  /** For the rare datagram longer than a send slot. */
  readonly #bigSend = new Uint8Array(new ArrayBuffer(MAX_DATAGRAM));
  readonly #recvVec = new Uint8Array(this.#structs, RECV_HDRS, RECV_SLOTS * MMSGHDR_SIZE);
  /** #sendVecs[i]: the mmsghdr array from send slot i to the end (sendmmsg from slot i). */
  readonly #sendVecs: Uint8Array[] = [];
  /** iov_base of each send slot, and of #bigSend, as pointer values. */
  readonly #sendDataPointers: bigint[] = [];
  readonly #bigSendPointer: bigint;
  readonly #arpReq = new Uint8Array(this.#structs, ARP_REQ, ARPREQ_SIZE);
  readonly #pollFds = new Uint8Array(this.#structs, POLL_FDS, 2 * POLLFD_SIZE);
  readonly #wakeValue = new Uint8Array(this.#structs, WAKE_VALUE, 8);
  readonly #nameScratch = new Uint8Array(this.#structs, NAME_SCRATCH, IF_NAMESIZE);
  readonly #bindName = new Uint8Array(this.#structs, BIND_NAME, SOCKADDR_IN_SIZE);

  constructor(options: FfiTransportOptions) {
    const address = options.address ?? "0.0.0.0";
    const bindAddress = parseIpv4(address);
    if (bindAddress === undefined) {
      throw new TypeError(`Cannot open UDP transport: "${address}" is not an IPv4 address`);
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new RangeError(`Cannot open UDP transport: port ${options.port} is out of range`);
    }
    const receiveBuffer = options.receiveBuffer ?? DEFAULT_RECEIVE_BUFFER;
    if (!Number.isInteger(receiveBuffer) || receiveBuffer < 0 || receiveBuffer > 0x7fffffff) {
      throw new RangeError(
        `Cannot open UDP transport: receive buffer ${receiveBuffer} is out of range`,
      );
    }
    this.#pollTimeoutMs = options.pollTimeoutMs ?? 250;
    this.#maxBurst = options.maxBurst ?? 64;
    this.#coalesceMs = options.coalesceMs ?? 3;
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
      if (receiveBuffer > 0 && !trySetIntOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, receiveBuffer)) {
        // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows; the default otherwise.
        trySetIntOption(fd, SOL_SOCKET, SO_RCVBUF, receiveBuffer);
      }
      const sin = this.#bindName;
      this.#writeSockaddr(BIND_NAME, bindAddress, options.port);
      if (lib.bind(fd, sin, SOCKADDR_IN_SIZE) !== 0) throw errnoError(`Cannot bind UDP ${where}`);
      const length = new Uint32Array([SOCKADDR_IN_SIZE]);
      if (lib.getsockname(fd, sin, length) !== 0) throw errnoError(`Cannot read UDP ${where}`);
      this.port = this.#view.getUint16(BIND_NAME + SIN_PORT, false);
      wakeFd = lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (wakeFd < 0) throw errnoError(`Cannot create eventfd for UDP ${where}`);
    } catch (e) {
      lib.close(fd);
      throw e;
    }
    this.#fd = fd;
    this.#wakeFd = wakeFd;
    this.receiveBuffer = getIntOption(fd, SOL_SOCKET, SO_RCVBUF) ?? 0;
    const on = options.interfaces?.length ? options.interfaces.join(",") : address;
    this.name = `ffi ${on}:${this.port}`;
    this.#bigSendPointer = addressOf(this.#bigSend);
    this.#initStructs();
  }

  #initStructs(): void {
    const v = this.#view;
    const base = addressOf(new Uint8Array(this.#structs));
    const at = (offset: number) => base + BigInt(offset);
    const recvData = addressOf(this.#recvData);
    const sendData = addressOf(this.#sendData);
    for (let i = 0; i < RECV_SLOTS; i++) {
      // Receive slot i: msghdr -> its sockaddr, one iovec over its slice, its control buffer.
      const m = RECV_HDRS + i * MMSGHDR_SIZE;
      const iov = RECV_IOVS + i * IOVEC_SIZE;
      v.setBigUint64(m + MSG_NAME, at(RECV_NAMES + i * SOCKADDR_IN_SIZE), true);
      v.setBigUint64(m + MSG_IOV, at(iov), true);
      v.setBigUint64(m + MSG_IOVLEN, 1n, true);
      v.setBigUint64(m + MSG_CONTROL, at(RECV_CONTROLS + i * RECV_CONTROL_SIZE), true);
      v.setBigUint64(iov + IOV_BASE, recvData + BigInt(i * RECV_SLOT_SIZE), true);
      v.setBigUint64(iov + IOV_LEN, BigInt(RECV_SLOT_SIZE), true);
    }
    for (let i = 0; i < SEND_SLOTS; i++) {
      // Send slot i: msghdr -> its sockaddr, one iovec (base set per datagram), an
      // IP_PKTINFO cmsg.
      const m = SEND_HDRS + i * MMSGHDR_SIZE;
      const c = SEND_CONTROLS + i * PKTINFO_CMSG_SPACE;
      v.setBigUint64(m + MSG_NAME, at(SEND_NAMES + i * SOCKADDR_IN_SIZE), true);
      v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
      v.setBigUint64(m + MSG_IOV, at(SEND_IOVS + i * IOVEC_SIZE), true);
      v.setBigUint64(m + MSG_IOVLEN, 1n, true);
      v.setBigUint64(m + MSG_CONTROL, at(c), true);
      v.setBigUint64(c + CMSG_LEN, BigInt(PKTINFO_CMSG_LEN), true);
      v.setInt32(c + CMSG_LEVEL, IPPROTO_IP, true);
      v.setInt32(c + CMSG_TYPE, IP_PKTINFO, true);
      this.#sendDataPointers.push(sendData + BigInt(i * SEND_SLOT_SIZE));
      this.#sendVecs.push(
        new Uint8Array(this.#structs, m, (SEND_SLOTS - i) * MMSGHDR_SIZE),
      );
    }
    // pollfd[0] = socket, pollfd[1] = eventfd (close() wakes the pending poll through it).
    v.setInt32(POLL_FDS + POLL_FD, this.#fd, true);
    v.setInt16(POLL_FDS + POLL_EVENTS, POLLIN, true);
    v.setInt32(POLL_FDS + POLLFD_SIZE + POLL_FD, this.#wakeFd, true);
    v.setInt16(POLL_FDS + POLLFD_SIZE + POLL_EVENTS, POLLIN, true);
    v.setBigUint64(WAKE_VALUE, 1n, true);
  }

  /** Writes a struct sockaddr_in at `o` in the structures buffer. */
  #writeSockaddr(o: number, address: number, port: number): void {
    const v = this.#view;
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
    const p = POLL_FDS;
    try {
      // "hot": packets arrived recently, so read again after coalesceMs without poll(); after
      // a full burst, read again at the next turn of the event loop. That turn is
      // setImmediate, not setTimeout(0): Deno's timers fire no sooner than about 2 ms, which
      // capped a backlogged socket at 64 datagrams per 2 ms plus their handling (about
      // 20,000/s with the CPU half idle) while the kernel queue filled up.
      let hot = false;
      let full = false;
      while (!this.#closed) {
        if (hot) {
          await (full ? nextTurn() : new Promise((r) => setTimeout(r, this.#coalesceMs)));
          if (this.#closed) break;
          const n = this.#burst(onPacket, onBurstEnd);
          full = n === this.#maxBurst;
          if (n === 0) hot = false;
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
        const n = this.#burst(onPacket, onBurstEnd);
        full = n === this.#maxBurst;
        if (n > 0) hot = this.#coalesceMs > 0 || full;
      }
    } finally {
      this.#running = false;
      this.#closed = true;
      this.#closeFds();
    }
  }

  /**
   * Reads one burst, calls onBurstEnd when something was delivered, then sends every reply
   * queued meanwhile with one sendmmsg (even when close() was called during the burst: the
   * socket stays open until run() ends). Returns how many datagrams were read.
   */
  #burst(onPacket: (packet: Received) => void, onBurstEnd?: () => void): number {
    this.#inBurst = true;
    try {
      this.#delivered = 0;
      const read = this.#drain(onPacket);
      if (this.#delivered > 0) onBurstEnd?.();
      return read;
    } finally {
      this.#inBurst = false;
      this.#flush();
    }
  }

  /**
   * Reads up to maxBurst datagrams without waiting, RECV_SLOTS per recvmmsg call; returns how
   * many were read and counts the delivered ones in #delivered.
   */
  #drain(onPacket: (packet: Received) => void): number {
    const v = this.#view;
    let read = 0;
    while (read < this.#maxBurst && !this.#closed) {
      const want = Math.min(RECV_SLOTS, this.#maxBurst - read);
      for (let i = 0; i < want; i++) {
        // The kernel rewrites these per message; msg_name, msg_iov and msg_control stay.
        const m = RECV_HDRS + i * MMSGHDR_SIZE;
        v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
        setSize(v, m + MSG_CONTROLLEN, RECV_CONTROL_SIZE);
        v.setInt32(m + MSG_FLAGS, 0, true);
        v.setUint32(m + MMSG_LEN, 0, true);
      }
      this.stats.receiveCalls++;
      const got = this.#lib.recvmmsg(this.#fd, this.#recvVec, want, MSG_DONTWAIT, null);
      // -1: EAGAIN (nothing queued), EINTR, or a pending ICMP-derived error; all mean
      // "nothing to read now" (MSG_DONTWAIT never blocks, so EINTR is not worth a retry).
      if (got <= 0) break;
      read += got;
      this.stats.received += got;
      for (let i = 0; i < got && !this.#closed; i++) {
        if (this.#deliver(i, onPacket)) this.#delivered++;
      }
      // Fewer than asked: the socket queue is empty, so spare the call that says EAGAIN.
      if (got < want) break;
    }
    return read;
  }

  /** Parses receive slot `i` and hands it to onPacket; false when it was dropped. */
  #deliver(i: number, onPacket: (packet: Received) => void): boolean {
    const v = this.#view;
    const m = RECV_HDRS + i * MMSGHDR_SIZE;
    const flags = v.getInt32(m + MSG_FLAGS, true);
    if (flags & (MSG_TRUNC | MSG_CTRUNC)) {
      this.stats.truncated++;
      return false;
    }
    const control = RECV_CONTROLS + i * RECV_CONTROL_SIZE;
    let ifindex = 0;
    let localAddress: number | null = null;
    let dstAddress: number | null = null;
    const controlLength = Math.min(getSize(v, m + MSG_CONTROLLEN), RECV_CONTROL_SIZE);
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
      return false;
    }
    const name = RECV_NAMES + i * SOCKADDR_IN_SIZE;
    const nameLength = v.getUint32(m + MSG_NAMELEN, true);
    if (nameLength < 8 || v.getUint16(name + SIN_FAMILY, true) !== AF_INET) return false;
    const length = Math.min(v.getUint32(m + MMSG_LEN, true), RECV_SLOT_SIZE);
    const start = i * RECV_SLOT_SIZE;
    onPacket({
      data: this.#copyOut(start, length),
      srcAddress: v.getUint32(name + SIN_ADDR, false),
      srcPort: v.getUint16(name + SIN_PORT, false),
      ifindex,
      ifname: ifindex > 0 ? this.#ifname(ifindex) : null,
      localAddress,
      dstAddress,
    });
    return true;
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

  /**
   * Inside a burst of run() the datagram is copied into a send slot and goes out with the
   * others after onBurstEnd (true means queued; a later refusal is counted in
   * stats.sendFailures); anywhere else, and for datagrams longer than a slot, it is sent now.
   */
  send(data: Uint8Array, to: SendTarget): boolean {
    if (this.#closed || data.length > MAX_DATAGRAM) {
      this.stats.sendFailures++;
      return false;
    }
    if (to.hwAddress) {
      // A queued datagram to the same address would pick up this entry, not its own.
      if (this.#isQueuedFor(to.address)) this.#flush();
      if (!this.#setArp(to.address, to.hwAddress, to.ifindex)) {
        this.stats.arpFailures++;
        this.stats.sendFailures++;
        return false;
      }
    }
    const now = !this.#inBurst || data.length > SEND_SLOT_SIZE;
    if (now || this.#queued === SEND_SLOTS) this.#flush();
    this.#enqueue(data, to);
    return now ? this.#flush() === 0 : true;
  }

  batch(sends: () => void): void {
    // Inside a burst the burst's own flush sends them.
    if (this.#inBurst) return sends();
    this.#inBurst = true;
    try {
      sends();
    } finally {
      this.#inBurst = false;
      this.#flush();
    }
  }

  /**
   * A copy of receive-slot bytes that outlives the slot. Copies are carved from a shared
   * chunk (never reused; a copy keeps its chunk alive): in Deno each `new Uint8Array` has its
   * own off-heap store, a calloc and three mallocs, about 0.8 µs per datagram.
   */
  #copyOut(start: number, length: number): Uint8Array {
    if (this.#chunkUsed + length > this.#chunk.length) {
      this.#chunk = new Uint8Array(Math.max(COPY_CHUNK, length));
      this.#chunkUsed = 0;
    }
    const out = this.#chunk.subarray(this.#chunkUsed, this.#chunkUsed + length);
    out.set(this.#recvData.subarray(start, start + length));
    this.#chunkUsed += length;
    return out;
  }

  #isQueuedFor(address: number): boolean {
    for (let i = 0; i < this.#queued; i++) {
      if (this.#view.getUint32(SEND_NAMES + i * SOCKADDR_IN_SIZE + SIN_ADDR, false) === address) {
        return true;
      }
    }
    return false;
  }

  /** Copies `data` and its destination into the next free send slot. */
  #enqueue(data: Uint8Array, to: SendTarget): void {
    const v = this.#view;
    const i = this.#queued++;
    const m = SEND_HDRS + i * MMSGHDR_SIZE;
    const iov = SEND_IOVS + i * IOVEC_SIZE;
    if (data.length > SEND_SLOT_SIZE) {
      this.#bigSend.set(data);
      v.setBigUint64(iov + IOV_BASE, this.#bigSendPointer, true);
    } else {
      this.#sendData.set(data, i * SEND_SLOT_SIZE);
      v.setBigUint64(iov + IOV_BASE, this.#sendDataPointers[i]!, true);
    }
    setSize(v, iov + IOV_LEN, data.length);
    this.#writeSockaddr(SEND_NAMES + i * SOCKADDR_IN_SIZE, to.address >>> 0, to.port);
    const src = to.srcAddress ?? 0;
    if (to.ifindex > 0 || src !== 0) {
      // IP_PKTINFO: leave through ipi_ifindex with source ipi_spec_dst (ip(7)).
      const d = SEND_CONTROLS + i * PKTINFO_CMSG_SPACE + CMSG_DATA;
      v.setInt32(d + PKTINFO_IFINDEX, to.ifindex, true);
      v.setUint32(d + PKTINFO_SPEC_DST, src >>> 0, false);
      v.setUint32(d + PKTINFO_ADDR, 0, false);
      setSize(v, m + MSG_CONTROLLEN, PKTINFO_CMSG_SPACE);
    } else {
      setSize(v, m + MSG_CONTROLLEN, 0);
    }
    v.setInt32(m + MSG_FLAGS, 0, true);
  }

  /**
   * Sends the queued datagrams with sendmmsg, which stops at the first one the kernel refuses
   * (returning the count before it, or -1 when it is the first): that one is retried once and
   * then counted as failed, and the rest go on. Returns how many failed.
   */
  #flush(): number {
    const n = this.#queued;
    this.#queued = 0;
    if (n === 0) return 0;
    let failed = 0;
    if (this.#fdsClosed) {
      failed = n;
    } else {
      let next = 0;
      let retried = -1;
      while (next < n) {
        this.stats.sendCalls++;
        const r = this.#lib.sendmmsg(this.#fd, this.#sendVecs[next]!, n - next, MSG_DONTWAIT);
        if (r > 0) {
          this.stats.sent += r;
          next += r;
        } else if (retried !== next) {
          retried = next;
        } else {
          failed++;
          next++;
        }
      }
    }
    this.stats.sendFailures += failed;
    return failed;
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
    const o = ARP_REQ;
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

  attachSocketFilter(programFd: number): void {
    setIntOption(this.#fd, SOL_SOCKET, SO_ATTACH_BPF, programFd, `SO_ATTACH_BPF on ${this.name}`);
  }

  detachSocketFilter(): void {
    if (!this.#fdsClosed) trySetIntOption(this.#fd, SOL_SOCKET, SO_DETACH_FILTER, 0);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#running) {
      // The pending poll returns at once; run() closes the fds after it (and after the
      // current burst's queued replies, when close() came from inside a burst).
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

/** Resolves at the next turn of the event loop, after pending I/O and timers had theirs. */
function nextTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
