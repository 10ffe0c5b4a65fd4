/** The validated configuration that the rest of duet consumes (parsed by lib/config/config.ts). */
import type { Cidr } from "../wire/ip.ts";

/** DHCP options to send, by code, in configuration order; values are encoded wire bytes. */
export type OptionMap = Map<number, Uint8Array>;

/** Where DHCP packets arrive. */
export type ListenSpec =
  | { kind: "interface"; interface: string; port: number }
  | { kind: "address"; address: number; port: number };

/** Lease times in seconds. */
export interface LeaseTimes {
  default: number;
  max: number;
  min: number;
}

/** One dynamic range, inclusive. */
export interface PoolConfig {
  start: number;
  end: number;
  options: OptionMap;
}

/** A fixed address for one client, matched by hardware address or client id. */
export interface ReservationConfig {
  hwAddress: Uint8Array | null;
  clientId: Uint8Array | null;
  address: number;
  hostname: string | null;
  options: OptionMap;
}

/** One IPv4 subnet that duet serves. */
export interface SubnetConfig {
  /** Position in the file (for messages). */
  index: number;
  subnet: Cidr;
  pools: PoolConfig[];
  options: OptionMap;
  reservations: ReservationConfig[];
  /** Interface this subnet is on, when set; otherwise matched by the interface's address. */
  interface: string | null;
  /** Relay addresses (giaddr) that select this subnet besides those inside it. */
  relays: number[];
  leaseTime: LeaseTimes;
  authoritative: boolean;
}

/** The whole validated configuration. */
export interface Config {
  /** The file it came from, for messages. */
  file: string;
  database: string;
  authoritative: boolean;
  listen: ListenSpec[];
  leaseTime: LeaseTimes;
  /** Seconds an offered address is held for the client that was offered it. */
  offerHold: number;
  /** Server identifier to use instead of the receiving interface's address. */
  serverId: number | null;
  options: OptionMap;
  subnets: SubnetConfig[];
  /** Group commit: the longest a lease waits for its COMMIT, in milliseconds. */
  commitDelayMs: number;
  /** Group commit: the most leases in one transaction. */
  commitBatch: number;
  /** Minimum log level. */
  logLevel: "debug" | "info" | "warn" | "error";
  /** The failover relationship (draft-ietf-dhc-failover-12), or null for a standalone server. */
  failover: FailoverConfig | null;
  /** The `control:` section; absent means the defaults (socket `<database>.sock`, no metrics). */
  control?: ControlConfig;
}

/** The `control:` section: the local control endpoint of `duet serve` (lib/control/http.ts). */
export interface ControlConfig {
  /** Path of the Unix-domain control socket, or null for `<database>.sock`. */
  socket: string | null;
  /** TCP address that serves only GET /metrics (Prometheus), or null for none. */
  metrics: { address: number; port: number } | null;
}

/** Which end of the failover relationship this server is (draft-12 §5.1). */
export type FailoverRole = "primary" | "secondary";

/** The `failover:` section: one relationship with one partner (draft-ietf-dhc-failover-12). */
export interface FailoverConfig {
  role: FailoverRole;
  /** Local address for the partner link (uint32); 0 (0.0.0.0) listens on every address. */
  address: number;
  /** Local TCP port for the partner link (draft-12 §8.1: 647). */
  port: number;
  /** The partner's address (uint32). */
  peer: number;
  /** The partner's TCP port. */
  peerPort: number;
  /** relationship-name sent in CONNECT/CONNECTACK (draft-12 §12.22); both sides must match. */
  relationship: string;
  /**
   * Maximum Client Lead Time in seconds (draft-12 §5.2.1). Always set on the primary; on the
   * secondary null unless configured, since it learns the MCLT from CONNECT (§7.8.1).
   */
  mclt: number | null;
  /** Primary only: how many of the 256 RFC 3074 hash buckets the primary serves, or null. */
  split: number | null;
  /** Primary only: the 32-byte hash-bucket-assignment sent to the secondary (§12.11), or null. */
  hba: Uint8Array | null;
  /** Serve a client regardless of load balancing once its `secs` exceeds this (RFC 3074 §4). */
  loadBalanceMaxSeconds: number;
  /** Sent as max-unacked-bndupd in CONNECT/CONNECTACK (draft-12 §12.14). */
  maxUnackedBndupd: number;
  /** Seconds without any message from the partner before the link is declared down (§8.3). */
  maxResponseDelay: number;
  /** Path of the shared secret for message digests (draft-12 §11.1), or null for none. */
  sharedSecretFile: string | null;
  /** Where `shared-secret-file` is in the configuration file (0:0 when unknown). */
  sharedSecretFilePos: { line: number; col: number };
  /** Seconds in COMMUNICATIONS-INTERRUPTED before going to PARTNER-DOWN by itself; 0 = never. */
  autoPartnerDown: number;
  /** Largest accepted clock difference with the partner in seconds (§11.1); 0 = no limit. */
  maxClockSkew: number;
  /** TLS on the partner link (draft-12 §11.2), or null for none. */
  tls: FailoverTlsConfig | null;
}

/** Where a key is in the configuration file (0:0 when unknown). */
export interface ConfigPos {
  line: number;
  col: number;
}

/**
 * The `failover.tls` section (draft-12 §11.2). The primary is the TLS client: it needs
 * `ca-file` to check the secondary's certificate. The secondary is the TLS server: it needs
 * `cert-file` and `key-file`. The files are read by checkFailoverFiles()/readFailoverTls().
 */
export interface FailoverTlsConfig {
  /** Secondary: its certificate chain (PEM). */
  certFile: string | null;
  /** Secondary: its private key (PEM), mode 0600 or stricter. */
  keyFile: string | null;
  /** Primary: the CA certificates (PEM) that signed the secondary's certificate. */
  caFile: string | null;
  /** Refuse a partner that cannot use TLS (default true); false uses TLS when both can. */
  require: boolean;
  /** Primary: the name the secondary's certificate must carry; default the `peer` address. */
  serverName: string | null;
  /** Where each file key is, for problems found when reading the files. */
  pos: { certFile: ConfigPos; keyFile: ConfigPos; caFile: ConfigPos };
}
