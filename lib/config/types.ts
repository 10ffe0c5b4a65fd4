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
  /** Defences against DHCP-level abuse (lib/server/guard.ts): `rate-limit`, `offer-limit`, `relay-allow`. */
  guard: GuardConfig;
  /** The `hooks:` section (lease-event command); absent when no hook is configured. */
  hooks?: HooksConfig;
}

/** A token bucket: `rate` requests per second on average, at most `burst` at once. */
export interface RateLimit {
  rate: number;
  burst: number;
}

/** The abuse defences of lib/server/guard.ts, from the top-level keys that set them. */
export interface GuardConfig {
  /** `rate-limit.per-client`: one bucket per client (option 61, else chaddr), or null for none. */
  perClient: RateLimit | null;
  /**
   * `rate-limit.global`: one bucket shared by every request from a client that has neither a
   * lease nor an offer here (what a flood of made-up MACs consists of), or null for none.
   */
  global: RateLimit | null;
  /** `rate-limit.tracked-clients`: per-client buckets kept; the least recently used goes first. */
  trackedClients: number;
  /** `offer-limit`: the most offers may hold, in percent of a subnet's unleased dynamic addresses. */
  offerLimit: number;
  /**
   * `relay-allow`: the only relays (source address and giaddr) whose packets may choose a subnet
   * other than the arrival link, or null to accept any (the default).
   */
  relayAllow: Cidr[] | null;
}

/** The `hooks:` section: a command run for lease events (lib/hooks/runner.ts). */
export interface HooksConfig {
  /** Program (an absolute path) and its arguments; run directly, without a shell. */
  command: string[];
  /** Where `command` is in the configuration file (0:0 when unknown). */
  commandPos: { line: number; col: number };
  /** A run still going after this many milliseconds is killed (SIGKILL). */
  timeoutMs: number;
  /** Most events waiting for a run; an event beyond this is dropped and counted. */
  queue: number;
  /** Most runs at the same time. */
  concurrency: number;
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
  /**
   * How the hash-bucket-assignment reads on the wire (draft-12 §12.11, RFC 3074): "isc", a
   * one bit means the primary serves the bucket (ISC dhcpd 4.4, and duet's default); "draft",
   * a one bit means the secondary does (the draft's words). `split` and `hba` always count
   * the primary's buckets; the polarity only changes the bits sent and read.
   */
  hbaPolarity: "isc" | "draft";
  /** Serve a client regardless of load balancing once its `secs` exceeds this (RFC 3074 §4). */
  loadBalanceMaxSeconds: number;
  /**
   * Pool balancing (draft-12 §5.4), primary: rebalance when FREE and BACKUP differ by more
   * than this percentage of their sum (ISC `max-lease-misbalance`).
   */
  maxLeaseMisbalance: number;
  /** Seconds between unforced balance checks at least (ISC `min-balance`). */
  minBalance: number;
  /** Seconds between balance checks (primary) and POOLREQs (secondary) at most (ISC `max-balance`). */
  maxBalance: number;
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
  /**
   * Drop the partner's broadcasts in the kernel while NORMAL (an eBPF socket filter,
   * lib/server/bpf.ts) instead of waking for them; needs CAP_BPF, else user space decides.
   */
  kernelFilter: boolean;
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
