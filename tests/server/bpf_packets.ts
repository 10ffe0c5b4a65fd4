/**
 * Crafted DHCP requests for the kernel filter's tests (tests/server/bpf_test.ts,
 * kernel_balance_test.ts), and their delivery over loopback to a real socket.
 */
import { openFfiTransport } from "../../lib/server/udp_ffi.ts";

/** A request as the test builds it; `bytes()` lays it out. */
export interface Spec {
  xid: number;
  op: number;
  hlen: number;
  chaddr: Uint8Array;
  secs: number;
  ciaddr: number;
  cookie: boolean;
  /** Options in order: [code, value]; code 0 is a pad (no length), 255 ends. */
  options: [number, Uint8Array][];
  /** Leave the end option out. */
  noEnd?: boolean;
}

export function bytes(s: Spec): Uint8Array {
  const parts: number[] = [];
  for (const [code, value] of s.options) {
    if (code === 0) parts.push(0);
    else parts.push(code, value.length, ...value);
  }
  if (!s.noEnd) parts.push(255);
  const out = new Uint8Array(240 + parts.length);
  const v = new DataView(out.buffer);
  out[0] = s.op;
  out[1] = 1;
  out[2] = s.hlen;
  v.setUint32(4, s.xid);
  v.setUint16(8, s.secs);
  v.setUint32(12, s.ciaddr);
  out.set(s.chaddr.subarray(0, 16), 28);
  if (s.cookie) out.set([99, 130, 83, 99], 236);
  out.set(parts, 240);
  return out;
}

/** A DHCPDISCOVER of the client with `mac` (six octets), secs 0. */
export function discover(xid: number, mac: Uint8Array): Spec {
  const chaddr = new Uint8Array(16);
  chaddr.set(mac);
  return {
    xid,
    op: 1,
    hlen: 6,
    chaddr,
    secs: 0,
    ciaddr: 0,
    cookie: true,
    options: [[53, Uint8Array.of(1)]],
  };
}

/**
 * Sends every request to a filtered socket on loopback, then a marker that always passes, and
 * returns the xids that arrived (each request is sent once; loopback does not lose them).
 */
export async function deliver(
  specs: Spec[],
  attach: (transport: ReturnType<typeof openFfiTransport>) => void,
): Promise<Set<number>> {
  const transport = openFfiTransport({ address: "127.0.0.1", port: 0 });
  const sender = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const arrived = new Set<number>();
  const MARKER = 0xffffffff;
  let sawMarker: () => void = () => {};
  const marker = new Promise<void>((r) => (sawMarker = r));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    attach(transport);
    const running = transport.run((p) => {
      const xid = new DataView(p.data.buffer, p.data.byteOffset).getUint32(4);
      if (xid === MARKER) sawMarker();
      else arrived.add(xid);
    });
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: transport.port };
    for (const s of specs) await sender.send(bytes(s), to);
    const end: Spec = {
      xid: MARKER,
      op: 2,
      hlen: 6,
      chaddr: new Uint8Array(16),
      secs: 0,
      ciaddr: 0,
      cookie: true,
      options: [],
    };
    await sender.send(bytes(end), to);
    await Promise.race([
      marker,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the marker did not arrive in 10 s")), 10_000);
      }),
    ]);
    transport.close();
    await running;
  } finally {
    clearTimeout(timer);
    transport.close();
    sender.close();
  }
  return arrived;
}
