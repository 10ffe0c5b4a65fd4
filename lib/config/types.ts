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
}
