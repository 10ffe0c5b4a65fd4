/**
 * Helper processes for udp_ffi_test.ts, run inside network namespaces (not a test file):
 *
 *   server --port 67 --expect c1,c2 [--interfaces r1] [--route] --timeout-ms N
 *     an FFI transport on 0.0.0.0:port; prints every request as JSON, answers each with a
 *     broadcast to 255.255.255.255:68 out of the arrival interface, and, when the request
 *     carries `yiaddr`, a unicast to yiaddr:68 with hwAddress = the request's MAC
 *     (RFC 2131 §4.1). Exits once every expected client was answered, or at the timeout.
 *
 *   client --if IF --name c1 [--yiaddr A] --timeout-ms N --linger-ms M
 *     Deno.listenDatagram on 0.0.0.0:68 plus an AF_PACKET capture on IF; prints "ready" and
 *     waits for SIGUSR1 (so that all clients listen before any answer); broadcasts a request
 *     to 255.255.255.255:67 every 300 ms until its answer(s) arrived, keeps listening for
 *     linger-ms more and prints every UDP datagram and captured IPv4/UDP frame to port 68.
 *
 * Output is one JSON object per line on stdout.
 */

import { parseArgs } from "node:util";
import { formatIpv4, formatMac, parseIpv4, parseMac } from "../../lib/wire/ip.ts";
import { openFfiTransport } from "../../lib/server/udp_ffi.ts";
import {
  AF_PACKET,
  errnoError,
  interfaceIndex,
  libc,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  toNumber,
} from "../../lib/server/libc.ts";

const ETH_P_IP = 0x0800;
const PACKET_OUTGOING = 4;
const BROADCAST = 0xffffffff;

function emit(event: Record<string, unknown>): void {
  // deno-lint-ignore no-console
  console.log(JSON.stringify(event));
}

async function server(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string", default: "67" },
      expect: { type: "string", default: "" },
      interfaces: { type: "string" },
      route: { type: "boolean", default: false },
      "timeout-ms": { type: "string", default: "10000" },
    },
  });
  const expected = new Set(values.expect.split(",").filter((s) => s !== ""));
  const transport = openFfiTransport({
    port: Number(values.port),
    ...(values.interfaces ? { interfaces: values.interfaces.split(",") } : {}),
  });
  // --route: the negative control, replies without ipi_ifindex (routing table decides).
  const replyIfindex = (ifindex: number) => values.route ? 0 : ifindex;
  const timer = setTimeout(() => {
    emit({ event: "timeout" });
    transport.close();
  }, Number(values["timeout-ms"]));
  emit({ event: "ready", name: transport.name });
  await transport.run((packet) => {
    let request: { name?: string; mac?: string; yiaddr?: string };
    try {
      request = JSON.parse(new TextDecoder().decode(packet.data));
    } catch {
      return;
    }
    const name = request.name ?? "?";
    emit({
      event: "recv",
      name,
      src: formatIpv4(packet.srcAddress),
      srcPort: packet.srcPort,
      ifindex: packet.ifindex,
      ifname: packet.ifname,
      localAddress: packet.localAddress === null ? null : formatIpv4(packet.localAddress),
      dstAddress: packet.dstAddress === null ? null : formatIpv4(packet.dstAddress),
    });
    const broadcast = new TextEncoder().encode(JSON.stringify({ reply: "broadcast", to: name }));
    const ok = transport.send(broadcast, {
      address: BROADCAST,
      port: 68,
      ifindex: replyIfindex(packet.ifindex),
    });
    emit({ event: "sent", kind: "broadcast", to: name, ok });
    const yiaddr = request.yiaddr ? parseIpv4(request.yiaddr) : undefined;
    const mac = request.mac ? parseMac(request.mac) : undefined;
    if (yiaddr !== undefined && mac !== undefined) {
      const unicast = new TextEncoder().encode(JSON.stringify({ reply: "unicast", to: name }));
      const sent = transport.send(unicast, {
        address: yiaddr,
        port: 68,
        ifindex: replyIfindex(packet.ifindex),
        hwAddress: mac,
      });
      emit({ event: "sent", kind: "unicast", to: name, ok: sent });
    }
    expected.delete(name);
    if (expected.size === 0) transport.close();
  });
  clearTimeout(timer);
  emit({ event: "stats", ...transport.stats });
  return 0;
}

async function client(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      if: { type: "string" },
      name: { type: "string" },
      yiaddr: { type: "string" },
      "timeout-ms": { type: "string", default: "5000" },
      "linger-ms": { type: "string", default: "500" },
    },
  });
  const ifname = values.if ?? "";
  const name = values.name ?? "client";
  const ifindex = interfaceIndex(ifname);
  if (ifindex === 0) throw new Error(`Cannot find interface "${ifname}"`);
  const mac = formatMac(await readMac(ifname));
  const capture = openCapture(ifindex);
  const udp = Deno.listenDatagram({
    transport: "udp",
    hostname: "0.0.0.0",
    port: 68,
    reuseAddress: true,
  });
  let gotBroadcast = false;
  let gotUnicast = values.yiaddr === undefined;
  let stop = false;

  const udpLoop = (async () => {
    while (!stop) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await udp.receive();
      } catch {
        return;
      }
      const text = new TextDecoder().decode(got[0]);
      emit({ event: "udp", src: (got[1] as Deno.NetAddr).hostname, payload: text });
      if (text.includes(`"broadcast"`) && text.includes(`"to":"${name}"`)) gotBroadcast = true;
    }
  })();

  const captureLoop = (async () => {
    while (!stop) {
      for (const frame of await capture.next(100)) {
        emit({ event: "packet", ...frame });
        if (
          frame.pkttype === 0 && frame.dst === values.yiaddr &&
          frame.payload.includes(`"unicast"`) && frame.payload.includes(`"to":"${name}"`)
        ) gotUnicast = true;
      }
    }
  })();

  // Start only on SIGUSR1, once every client of the test listens (else an early answer could
  // reach a client that has no socket yet). The listener exists before "ready" is printed.
  const go = Promise.withResolvers<void>();
  const onGo = () => go.resolve();
  Deno.addSignalListener("SIGUSR1", onGo);
  emit({ event: "ready" });
  const goTimer = setTimeout(onGo, Number(values["timeout-ms"]));
  await go.promise;
  clearTimeout(goTimer);
  Deno.removeSignalListener("SIGUSR1", onGo);

  const request = new TextEncoder().encode(
    JSON.stringify({ name, mac, ...(values.yiaddr ? { yiaddr: values.yiaddr } : {}) }),
  );
  const deadline = Date.now() + Number(values["timeout-ms"]);
  let lastSend = 0;
  while (!(gotBroadcast && gotUnicast) && Date.now() < deadline) {
    if (Date.now() - lastSend >= 300) {
      lastSend = Date.now();
      try {
        await udp.send(request, { transport: "udp", hostname: "255.255.255.255", port: 67 });
        emit({ event: "request" });
      } catch (e) {
        emit({ event: "request-error", error: String(e) });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  emit({ event: gotBroadcast && gotUnicast ? "complete" : "timeout" });
  await new Promise((resolve) => setTimeout(resolve, Number(values["linger-ms"])));
  stop = true;
  udp.close();
  await udpLoop;
  await captureLoop;
  capture.close();
  return 0;
}

async function readMac(ifname: string): Promise<Uint8Array> {
  const text = (await Deno.readTextFile(`/sys/class/net/${ifname}/address`)).trim();
  const mac = parseMac(text);
  if (!mac) throw new Error(`Cannot read the MAC of ${ifname}: "${text}"`);
  return mac;
}

interface Frame {
  pkttype: number;
  src: string;
  dst: string;
  dport: number;
  payload: string;
}

/** An AF_PACKET/SOCK_DGRAM socket on one interface that yields IPv4/UDP frames to port 68. */
function openCapture(ifindex: number): { next(ms: number): Promise<Frame[]>; close(): void } {
  const lib = libc();
  const fd = lib.socket(
    AF_PACKET,
    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    ((ETH_P_IP & 0xff) << 8) | (ETH_P_IP >> 8), // htons
  );
  if (fd < 0) throw errnoError("Cannot open AF_PACKET socket");
  // struct sockaddr_ll (20 bytes)
  const ll = new Uint8Array(new ArrayBuffer(20));
  const v = new DataView(ll.buffer);
  v.setUint16(0, AF_PACKET, true); // sll_family
  v.setUint16(2, ETH_P_IP, false); // sll_protocol, network order
  v.setInt32(4, ifindex, true); // sll_ifindex
  if (lib.bind(fd, ll, 20) !== 0) throw errnoError("Cannot bind AF_PACKET socket");
  const pollfd = new Uint8Array(new ArrayBuffer(8));
  new DataView(pollfd.buffer).setInt32(0, fd, true);
  new DataView(pollfd.buffer).setInt16(4, POLLIN, true);
  const buf = new Uint8Array(new ArrayBuffer(65536));
  const from = new Uint8Array(new ArrayBuffer(20));
  const fromLength = new Uint32Array(1);
  return {
    async next(ms: number): Promise<Frame[]> {
      await lib.poll(pollfd, 1n, ms);
      const frames: Frame[] = [];
      for (let i = 0; i < 64; i++) {
        fromLength[0] = 20;
        const n = toNumber(lib.recvfrom(fd, buf, 65536n, 0x40, from, fromLength));
        if (n < 0) break;
        const pkttype = from[10] ?? 255;
        const ihl = ((buf[0] ?? 0) & 0x0f) * 4;
        if (pkttype === PACKET_OUTGOING || buf[9] !== 17 || n < ihl + 8) continue;
        const b = new DataView(buf.buffer);
        const dport = b.getUint16(ihl + 2, false);
        if (dport !== 68) continue;
        frames.push({
          pkttype,
          src: formatIpv4(b.getUint32(12, false)),
          dst: formatIpv4(b.getUint32(16, false)),
          dport,
          payload: new TextDecoder().decode(buf.subarray(ihl + 8, n)),
        });
      }
      return frames;
    },
    close(): void {
      lib.close(fd);
    },
  };
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  const code = mode === "server"
    ? await server(rest)
    : mode === "client"
    ? await client(rest)
    : (emit({ event: "usage", error: `unknown mode "${mode}"` }), 2);
  Deno.exit(code);
}
