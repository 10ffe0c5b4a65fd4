/**
 * RFC 3074 load balancing: the Pearson hash of a client's service transaction ID, and who
 * serves its bucket under a hash bucket assignment (draft-12 §5.3, §9.8.2, §12.11). Pure.
 */

import { HBA_LENGTH, hbaHas } from "./hba.ts";

/** RFC 3074 §6: the Pearson mixing table, a permutation of 0..255. */
// deno-fmt-ignore
export const MIXING_TABLE: Uint8Array = Uint8Array.of(
  251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
  31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
  59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
  180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
  40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
  207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
  20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
  230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
  39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
  82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
  195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
  137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
  56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
  33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
  96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
  216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
);

/** Number of hash buckets (RFC 3074 §5: the hash is one octet). */
export const BUCKET_COUNT = 256;

/**
 * How a hash bucket assignment is read. "draft": a set bit means the secondary serves the
 * bucket (draft-12 §12.11). "isc": a set bit means the primary serves it, as ISC dhcpd 4.4
 * sends and reads its `split` (shared/interop NOTES §6).
 */
export type Polarity = "draft" | "isc";

/** A failover server's role (draft-12 §5.1). */
export type FailoverRole = "primary" | "secondary";

/** The DHCPv4 fields the service transaction ID is taken from (RFC 2131 §2). */
export interface HashKeySource {
  /** Not part of the key (RFC 3074 §4 and ISC hash `chaddr` alone); kept for callers' types. */
  htype: number;
  hlen: number;
  chaddr: Uint8Array;
  /** The payload of option 61 as received, when the request carries one. */
  clientId?: Uint8Array | undefined;
}

/** What shouldAnswer() needs to decide one broadcast request. */
export interface ShouldAnswerOptions {
  role: FailoverRole;
  /** The 32-octet hash bucket assignment in force (draft-12 §12.11). */
  hba: Uint8Array;
  polarity: Polarity;
  /** The service transaction ID, from hashKey(). */
  key: Uint8Array;
  /** The request's `secs` field (RFC 2131 §2). */
  secs: number;
  /** ISC `load balance max seconds`: above this `secs`, answer clients of either bucket. */
  loadBalanceMaxSeconds: number;
}

/**
 * The RFC 3074 §5 Pearson hash of `key`, a bucket 0..255: start from the key length (as an
 * octet), then fold the key in from its last octet to its first through MIXING_TABLE.
 */
export function loadBalanceHash(key: Uint8Array): number {
  let hash = key.length & 0xff;
  for (let i = key.length - 1; i >= 0; i--) {
    hash = MIXING_TABLE[hash ^ (key[i] as number)] as number;
  }
  return hash;
}

/**
 * The service transaction ID of a request (RFC 3074 §4, draft-12 §9.8.2): the option 61
 * payload when present, else `chaddr[0 .. hlen)`, exactly the octets ISC dhcpd 4.4 hashes.
 * To match ISC, pass option 61's raw bytes (ISC hashes even a malformed one-octet value).
 * Returns a view into the caller's bytes, not a copy.
 */
export function hashKey(msg: HashKeySource): Uint8Array {
  if (msg.clientId !== undefined) return msg.clientId;
  if (!Number.isInteger(msg.hlen) || msg.hlen < 0 || msg.hlen > msg.chaddr.length) {
    throw new RangeError(
      `Cannot take the load balancing key: hlen is ${msg.hlen}, chaddr has ${msg.chaddr.length} octets`,
    );
  }
  return msg.chaddr.subarray(0, msg.hlen);
}

/**
 * Which server serves `bucket` under `hba` (draft-12 §12.11 for "draft", ISC dhcpd 4.4 for
 * "isc"); bucket i is octet i/8, bit i mod 8 from the least significant bit.
 */
export function bucketServedBy(
  hba: Uint8Array,
  bucket: number,
  polarity: Polarity,
): FailoverRole {
  checkHba(hba);
  if (!Number.isInteger(bucket) || bucket < 0 || bucket >= BUCKET_COUNT) {
    throw new RangeError(`Cannot look up hash bucket ${bucket}: expected 0..255`);
  }
  const set = hbaHas(hba, bucket);
  if (polarity === "draft") return set ? "secondary" : "primary";
  return set ? "primary" : "secondary";
}

/** True when the server in `role` serves `bucket` under `hba` (RFC 3074 §5, draft-12 §5.3). */
export function isMine(
  role: FailoverRole,
  hba: Uint8Array,
  bucket: number,
  polarity: Polarity,
): boolean {
  return bucketServedBy(hba, bucket, polarity) === role;
}

/**
 * Whether to answer a load-balanced request (a DHCPDISCOVER or a SELECTING/INIT-REBOOT
 * DHCPREQUEST; draft-12 §9.8.2): when its bucket is ours, or when its `secs` exceeds
 * `loadBalanceMaxSeconds`, so a client of a silent partner is still served (RFC 3074 delayed
 * service, draft-12 §12.10, ISC `load balance max seconds`). Requests outside load balancing MUST NOT be passed here.
 */
export function shouldAnswer(opts: ShouldAnswerOptions): boolean {
  if (opts.secs > opts.loadBalanceMaxSeconds) return true;
  return isMine(opts.role, opts.hba, loadBalanceHash(opts.key), opts.polarity);
}

/** The parts of a decoded DHCP request shouldAnswerRequest() reads (lib/wire/dhcp.ts). */
export interface BalancedRequest {
  htype: number;
  hlen: number;
  chaddr: Uint8Array;
  secs: number;
  options: { get(code: number): Uint8Array | undefined };
}

/** RFC 2132 §9.14: the client identifier option. */
const CLIENT_ID = 61;

/**
 * shouldAnswer() for a decoded request: its key is option 61 when present, else
 * chaddr[0..hlen) (hashKey), its `secs` the request's (FailoverEndpoint.isMine).
 */
export function shouldAnswerRequest(
  msg: BalancedRequest,
  opts: Omit<ShouldAnswerOptions, "key" | "secs">,
): boolean {
  return shouldAnswer({
    ...opts,
    key: hashKey({
      htype: msg.htype,
      hlen: msg.hlen,
      chaddr: msg.chaddr,
      clientId: msg.options.get(CLIENT_ID),
    }),
    secs: msg.secs,
  });
}

function checkHba(hba: Uint8Array): void {
  if (hba.length !== HBA_LENGTH) {
    throw new RangeError(
      `Cannot read hash bucket assignment: length is ${hba.length}, expected ${HBA_LENGTH}`,
    );
  }
}
