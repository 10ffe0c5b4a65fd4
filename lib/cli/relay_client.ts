/**
 * A simulated DHCP client that talks to a server through loopback the way a relay agent
 * does (giaddr set), so it needs no root and no raw sockets. Used by `duet demo` and by
 * tests; it is not a real client and does no ARP probing.
 */
import {
  decodeDhcp,
  type DhcpMessage,
  DhcpType,
  encodeDhcp,
  encodeIp,
  encodeText,
  getMessageType,
  Opt,
} from "../wire/dhcp.ts";
import { formatIpv4, parseIpv4 } from "../wire/ip.ts";

/** Builds a BOOTREQUEST carrying a DHCP message type. */
export function buildRequest(
  type: number,
  mac: Uint8Array,
  options: {
    xid: number;
    giaddr?: number;
    ciaddr?: number;
    requested?: number;
    serverId?: number;
    hostname?: string;
    clientId?: Uint8Array;
    prl?: number[];
  },
): DhcpMessage {
  const chaddr = new Uint8Array(16);
  chaddr.set(mac.subarray(0, 16));
  const opts = new Map<number, Uint8Array>();
  opts.set(Opt.MESSAGE_TYPE, new Uint8Array([type]));
  if (options.clientId) opts.set(Opt.CLIENT_ID, options.clientId);
  if (options.requested !== undefined) opts.set(Opt.REQUESTED_IP, encodeIp(options.requested));
  if (options.serverId !== undefined) opts.set(Opt.SERVER_ID, encodeIp(options.serverId));
  if (options.hostname) opts.set(Opt.HOSTNAME, encodeText(options.hostname));
  opts.set(Opt.PARAMETER_REQUEST_LIST, new Uint8Array(options.prl ?? [1, 3, 6, 15, 28, 51]));
  return {
    op: 1,
    htype: 1,
    hlen: mac.length,
    hops: options.giaddr ? 1 : 0,
    xid: options.xid >>> 0,
    secs: 0,
    flags: 0,
    ciaddr: options.ciaddr ?? 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: options.giaddr ?? 0,
    chaddr,
    sname: new Uint8Array(64),
    file: new Uint8Array(128),
    options: opts,
  };
}

/** A loopback relay-style client endpoint. */
export class RelayClient {
  #conn: Deno.DatagramConn;
  #server: Deno.NetAddr;
  /** The one outstanding receive(), kept across timeouts so no op is abandoned. */
  #pending: Promise<[Uint8Array, Deno.Addr] | null> | null = null;
  readonly giaddr: number;

  constructor(serverAddress: string, serverPort: number, localAddress = "127.0.0.1") {
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: localAddress, port: 0 });
    this.#server = { transport: "udp", hostname: serverAddress, port: serverPort };
    this.giaddr = parseIpv4(localAddress) ?? 0;
  }

  /** Sends a request and waits up to timeoutMs for the reply with its xid. */
  async exchange(request: DhcpMessage, timeoutMs = 2000): Promise<DhcpMessage | undefined> {
    await this.#conn.send(encodeDhcp(request), this.#server);
    return await this.receive(request.xid, timeoutMs);
  }

  /** Sends without waiting for a reply (RELEASE, DECLINE). */
  async send(request: DhcpMessage): Promise<void> {
    await this.#conn.send(encodeDhcp(request), this.#server);
  }

  /** Waits for a reply with this xid; undefined on timeout. */
  async receive(xid: number, timeoutMs: number): Promise<DhcpMessage | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const left = deadline - Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), left);
      });
      this.#pending ??= this.#conn.receive().catch(() => null);
      const got = await Promise.race([this.#pending, timeout]);
      clearTimeout(timer);
      if (!got) return undefined;
      this.#pending = null;
      try {
        const msg = decodeDhcp(got[0]);
        if (msg.xid === xid && msg.op === 2) return msg;
      } catch {
        // Not a DHCP reply; keep waiting.
      }
    }
    return undefined;
  }

  /** Closes the socket and waits for the outstanding receive to finish. */
  async close(): Promise<void> {
    this.#conn.close();
    if (this.#pending) await this.#pending;
    this.#pending = null;
  }
}

/** A short description of a reply: `DHCPACK 198.18.16.1`. */
export function describeReply(msg: DhcpMessage | undefined): string {
  if (!msg) return "no reply";
  const t = getMessageType(msg);
  const name = t === DhcpType.DHCPOFFER
    ? "DHCPOFFER"
    : t === DhcpType.DHCPACK
    ? "DHCPACK"
    : t === DhcpType.DHCPNAK
    ? "DHCPNAK"
    : `type ${t}`;
  return msg.yiaddr ? `${name} ${formatIpv4(msg.yiaddr)}` : name;
}

/** One reply of RelayToAll.ask(): which server sent it, and what. */
export interface ServerReply {
  server: string;
  message: DhcpMessage;
}

/**
 * A relay agent that forwards each request to several servers, as a relay configured with
 * both servers of a failover pair does (RFC 3046 deployments, draft-12 §3.2), and collects
 * every server's reply. Loopback only: the servers reply to the port it sends from.
 */
export class RelayToAll {
  #conn: Deno.DatagramConn;
  #servers: { name: string; addr: Deno.NetAddr }[];
  #replies: { from: string; message: DhcpMessage }[] = [];
  #loop: Promise<void>;
  readonly giaddr: number;

  constructor(servers: { name: string; hostname: string; port: number }[], local = "127.0.0.1") {
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: local, port: 0 });
    this.#servers = servers.map((s) => ({
      name: s.name,
      addr: { transport: "udp", hostname: s.hostname, port: s.port },
    }));
    this.giaddr = parseIpv4(local) ?? 0;
    this.#loop = this.#receive();
  }

  async #receive(): Promise<void> {
    for (;;) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await this.#conn.receive();
      } catch {
        return; // closed
      }
      const from = got[1] as Deno.NetAddr;
      const server = this.#servers.find((s) =>
        s.addr.hostname === from.hostname && s.addr.port === from.port
      );
      try {
        const message = decodeDhcp(got[0]);
        if (message.op === 2) this.#replies.push({ from: server?.name ?? "?", message });
      } catch {
        // Not a DHCP reply.
      }
    }
  }

  /**
   * Sends `request` to every server (or those named in `to`: a RENEWING client unicasts to
   * its server) and returns the replies with its xid that arrive within `waitMs`, waiting the
   * whole time to see whether more than one server answers.
   */
  async ask(request: DhcpMessage, waitMs = 300, to?: readonly string[]): Promise<ServerReply[]> {
    const bytes = encodeDhcp(request);
    for (const s of this.#servers) {
      if (to === undefined || to.includes(s.name)) await this.#conn.send(bytes, s.addr);
    }
    await new Promise((r) => setTimeout(r, waitMs));
    const mine = this.#replies.filter((r) => r.message.xid === request.xid);
    this.#replies = this.#replies.filter((r) => r.message.xid !== request.xid);
    return mine.map((r) => ({ server: r.from, message: r.message }));
  }

  /** Closes the socket and waits for the receive loop to end. */
  async close(): Promise<void> {
    this.#conn.close();
    await this.#loop;
  }
}
