/** A binary min-heap of (key, value) number pairs, for lease expiry times. */
export class MinHeap {
  #keys: number[] = [];
  #values: number[] = [];

  get size(): number {
    return this.#keys.length;
  }

  /** The smallest key, or undefined when empty. */
  peekKey(): number | undefined {
    return this.#keys[0];
  }

  push(key: number, value: number): void {
    const k = this.#keys;
    const v = this.#values;
    let i = k.length;
    k.push(key);
    v.push(value);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((k[p] as number) <= key) break;
      k[i] = k[p] as number;
      v[i] = v[p] as number;
      i = p;
    }
    k[i] = key;
    v[i] = value;
  }

  /** Removes and returns the value with the smallest key. */
  pop(): number | undefined {
    const k = this.#keys;
    const v = this.#values;
    if (k.length === 0) return undefined;
    const top = v[0];
    const lastKey = k.pop() as number;
    const lastValue = v.pop() as number;
    const n = k.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && (k[r] as number) < (k[l] as number) ? r : l;
        if ((k[c] as number) >= lastKey) break;
        k[i] = k[c] as number;
        v[i] = v[c] as number;
        i = c;
      }
      k[i] = lastKey;
      v[i] = lastValue;
    }
    return top;
  }
}
