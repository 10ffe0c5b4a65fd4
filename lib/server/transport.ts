/**
 * The small interface between the DHCP shell and a UDP socket implementation:
 * lib/server/udp_ffi.ts (production: libc via FFI, knows the interface of arrival and
 * sends out of a chosen interface) and lib/server/udp_deno.ts (Deno.listenDatagram,
 * for loopback tests and relay-only set-ups).
 */

/** One received datagram and where it came from. */
export interface Received {
  data: Uint8Array;
  /** Source IPv4 address (uint32) and port. */
  srcAddress: number;
  srcPort: number;
  /** Interface index of arrival, or 0 when the transport cannot tell. */
  ifindex: number;
  /** Interface name of arrival, or null when unknown. */
  ifname: string | null;
  /** The local address of the arrival interface (IP_PKTINFO ipi_spec_dst), or the bound address. */
  localAddress: number | null;
  /** The IP header destination (e.g. 255.255.255.255), or null when unknown. */
  dstAddress: number | null;
}

/** Where to send one datagram. */
export interface SendTarget {
  address: number;
  port: number;
  /** Interface to send out of; 0 lets routing decide. */
  ifindex: number;
  /**
   * Set when unicasting to a client that has no address yet (RFC 2131 §4.1): the
   * transport delivers the datagram to this hardware address on `ifindex`.
   */
  hwAddress?: Uint8Array | null;
  /** Source address to use, when the transport can choose it. */
  srcAddress?: number | null;
}

/** A bound UDP endpoint for DHCP. */
export interface Transport {
  /** A short description for logs, e.g. `ffi eth1:67`. */
  readonly name: string;
  /**
   * Delivers datagrams to `onPacket` until `close()`; after each burst of packets read
   * without waiting, calls `onBurstEnd` (the shell's chance to group-commit and send).
   * Resolves once closed.
   */
  run(onPacket: (packet: Received) => void, onBurstEnd?: () => void): Promise<void>;
  /**
   * Sends one datagram; returns false (and never throws) when the OS refused it. `data` may
   * be reused by the caller as soon as send() returns: a transport that sends later copies it.
   */
  send(data: Uint8Array, to: SendTarget): boolean;
  /**
   * Runs `sends` (calls of send()) and sends what they queued together, as the replies of a
   * burst are: the ACKs released by one fdatasync go out in one system call instead of one
   * each. send() inside it returns true once the datagram is queued; a datagram the kernel
   * refuses later only counts in the transport's own statistics. Optional: a transport
   * without it sends each datagram at once.
   */
  batch?(sends: () => void): void;
  /**
   * Attaches an eBPF socket filter (lib/server/bpf.ts) by its program's file descriptor;
   * throws when the kernel refuses. Only transports on raw sockets (udp_ffi.ts) have it.
   */
  attachSocketFilter?(programFd: number): void;
  /** Removes the attached socket filter, if any (SO_DETACH_FILTER); never throws. */
  detachSocketFilter?(): void;
  /** Stops `run` and releases the socket(s). Idempotent. */
  close(): void;
}
