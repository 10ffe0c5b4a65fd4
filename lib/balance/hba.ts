/**
 * Hash bucket assignments (draft-12 §12.11, RFC 3074): 256 buckets, one bit each, 32 octets,
 * bucket i in octet i/8 at bit (i mod 8) counted from the least significant bit, as ISC
 * dhcpd 4.4 puts them on the wire (shared/interop NOTES §6).
 */

/** Octets in a hash-bucket-assignment. */
export const HBA_LENGTH = 32;

/**
 * The CONNECT bitmap for `split` (0..256): buckets 0..split-1 set, the way ISC dhcpd 4.4
 * encodes `split N` (its primary serves the set buckets; draft §12.11 words it the other way
 * round, which the load-balancing work reconciles).
 */
export function hbaFromSplit(split: number): Uint8Array {
  if (!Number.isInteger(split) || split < 0 || split > 256) {
    throw new RangeError(`Cannot build a hash bucket assignment: split ${split} is not 0..256`);
  }
  const out = new Uint8Array(HBA_LENGTH);
  for (let i = 0; i < split; i++) out[i >> 3] = (out[i >> 3] as number) | (1 << (i & 7));
  return out;
}

/** True when bucket `bucket` (0..255) is set in the bitmap. */
export function hbaHas(hba: Uint8Array, bucket: number): boolean {
  return (((hba[bucket >> 3] ?? 0) >> (bucket & 7)) & 1) === 1;
}

/**
 * The bitmap to send for `primaryBuckets` (a one bit = the primary serves the bucket, as
 * `split` and `hba` are configured): unchanged for ISC dhcpd 4.4's reading, inverted for the
 * draft's (draft-12 §12.11: a one bit means the secondary serves the bucket).
 */
export function wireHba(primaryBuckets: Uint8Array, polarity: "isc" | "draft"): Uint8Array {
  if (polarity === "isc") return primaryBuckets;
  return primaryBuckets.map((b) => ~b & 0xff);
}
