/**
 * A Bloom filter over client identities: "has this client ever had a lease here?". A
 * DISCOVER from a client that was never seen (every one in a flood or a benchmark) then
 * costs no lease lookup. False positives only cost that lookup; nothing is ever removed.
 */

/** 2^21 bits = 256 KiB: about 1 % false positives at 100,000 clients with two hashes. */
const BITS_LOG2 = 21;
const MASK = (1 << BITS_LOG2) - 1;

/** FNV-1a over a tag byte and the bytes, with a second hash derived by remixing. */
function hash(tag: number, bytes: Uint8Array): number {
  let h = 0x811c9dc5 ^ tag;
  h = Math.imul(h, 0x01000193);
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] as number;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Membership with no false negatives. */
export class SeenFilter {
  #bits = new Uint32Array((1 << BITS_LOG2) / 32);

  #positions(tag: number, bytes: Uint8Array): [number, number] {
    const h = hash(tag, bytes);
    const h2 = Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0;
    return [h & MASK, (h2 ^ (h2 >>> 13)) & MASK];
  }

  /** Records an identity (`tag` separates hardware addresses of each htype and client ids). */
  add(tag: number, bytes: Uint8Array): void {
    for (const p of this.#positions(tag, bytes)) {
      const w = p >>> 5;
      this.#bits[w] = (this.#bits[w] as number) | (1 << (p & 31));
    }
  }

  /** False only when the identity was never added. */
  mayHave(tag: number, bytes: Uint8Array): boolean {
    for (const p of this.#positions(tag, bytes)) {
      if (((this.#bits[p >>> 5] as number) & (1 << (p & 31))) === 0) return false;
    }
    return true;
  }
}

/** The tag for option 61 client identifiers (htype values are 0..255). */
export const CLIENT_ID_TAG = 256;
