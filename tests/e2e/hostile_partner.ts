/**
 * Helpers for tests that play a hostile failover partner against a real `duet serve`: a raw
 * TCP peer speaking bytes built with lib/wire/failover.ts, a duet secondary to attack, and a
 * DHCP exchange through that server to show service goes on.
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { DhcpType, getMessageType, getServerId } from "../../lib/wire/dhcp.ts";
import {
  buildConnect,
  buildState,
  type ConnectParams,
  decodeFailover,
  encodeFailover,
  type FailoverMessage,
  FrameReader,
  MsgType,
  msgTypeName,
  ServerState,
  signFailover,
} from "../../lib/wire/failover.ts";
import { STATE_META_KEY } from "../../lib/failover/endpoint.ts";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { emptyLease } from "../../lib/store/store.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";
import { DuetProcess, freeUdpPort } from "./process.ts";

/**
 * Makes a secondary's database look like one that was in NORMAL a moment ago, holding the
 * BACKUP half of 198.18.16.10-250: without a partner a fresh failover server stays in RECOVER
 * and answers nobody (draft-12 §9.5), while this one comes up in COMMUNICATIONS-INTERRUPTED
 * after its STARTUP period and serves from its BACKUP addresses (§9.9.2).
 */
export function seedServingSecondary(database: string): void {
  const store = SqliteLeaseStore.open(database);
  try {
    const now = Math.floor(Date.now() / 1000);
    const first = parseIpv4("198.18.16.10") as number;
    for (let a = first; a < first + 120; a++) {
      store.put({ ...emptyLease(a, "backup"), starts: now - 100 });
    }
    store.setMeta(
      STATE_META_KEY,
      JSON.stringify({
        state: ServerState.NORMAL,
        startTimeOfState: now - 100,
        previousState: null,
        partnerState: ServerState.NORMAL,
        partnerStartTimeOfState: now - 100,
        commLostAt: null,
        lastOperational: now,
        mclt: 300,
      }),
    );
    store.commit();
  } finally {
    store.close();
  }
}

/** The log line of a seeded secondary that has left STARTUP and serves (§9.3.2 step 6). */
export const SERVING = "Failover state STARTUP -> COMMUNICATIONS-INTERRUPTED";

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The CONNECT an ISC-like primary sends (NOTES §5), with overrides. */
export function connectParams(extra: Partial<ConnectParams> = {}): ConnectParams {
  return {
    relationshipName: "pair",
    maxUnackedBndupd: 10,
    receiveTimer: 30,
    vendorClassIdentifier: "hostile-test",
    tlsRequest: 0,
    mclt: 300,
    hashBucketAssignment: new Uint8Array(32),
    ...extra,
  };
}

/** One raw connection to duet's failover port, as its partner (the primary). */
export class FakePartner {
  readonly conn: Deno.TcpConn;
  readonly #reader = new FrameReader();
  readonly #buf = new Uint8Array(65536);
  readonly #secret: Uint8Array | null;
  #queue: Uint8Array[] = [];
  #closed = false;
  /** The next xid this partner uses (ISC counts from 0, NOTES §5). */
  xid = 0;

  private constructor(conn: Deno.TcpConn, secret: Uint8Array | null) {
    this.conn = conn;
    this.#secret = secret;
  }

  static async connect(port: number, secret: string | null = null): Promise<FakePartner> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new FakePartner(conn, secret === null ? null : new TextEncoder().encode(secret));
  }

  /** Seconds since the epoch, as a failover time field. */
  static now(): number {
    return Math.floor(Date.now() / 1000);
  }

  /** The header for the next message this partner originates. */
  header(): { time: number; xid: number } {
    return { time: FakePartner.now(), xid: this.xid++ };
  }

  /** The bytes of a message: signed with this partner's secret, if it has one. */
  bytes(m: FailoverMessage, secret: Uint8Array | string | null = this.#secret): Uint8Array {
    return secret === null ? encodeFailover(m) : signFailover(m, secret);
  }

  /** Writes raw bytes (whole messages, garbage, or part of a message). */
  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  async send(m: FailoverMessage): Promise<void> {
    await this.write(this.bytes(m));
  }

  /** The next message duet sends, or null once it closed the connection; throws on timeout. */
  async receive(timeoutMs = 5000): Promise<FailoverMessage | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0) {
      if (this.#closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`No message from duet within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.conn.read(this.#buf).catch(() => null),
        new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
      ]);
      clearTimeout(timer);
      if (n === "timeout") throw new Error(`No message from duet within ${timeoutMs} ms`);
      if (n === null) {
        this.#closed = true;
        continue;
      }
      this.#queue.push(...this.#reader.push(this.#buf.subarray(0, n)));
    }
    return decodeFailover(this.#queue.shift() as Uint8Array, { allowUnknownTypes: true });
  }

  /** Reads until duet closes; returns the types of what came before the close. */
  async untilClosed(timeoutMs = 5000): Promise<number[]> {
    const types: number[] = [];
    for (;;) {
      const m = await this.receive(timeoutMs);
      if (m === null) return types;
      types.push(m.type);
    }
  }

  /** CONNECT, then CONNECTACK and STATE from duet, then our STATE: communications up. */
  async handshake(extra: Partial<ConnectParams> = {}): Promise<void> {
    await this.send(buildConnect(this.header(), connectParams(extra)));
    const ack = await this.receive();
    assert.equal(ack?.type, MsgType.CONNECTACK, `got ${ack ? msgTypeName(ack.type) : "close"}`);
    const state = await this.receive();
    assert.equal(state?.type, MsgType.STATE, `got ${state ? msgTypeName(state.type) : "close"}`);
    const now = FakePartner.now();
    await this.send(buildState(this.header(), {
      serverState: ServerState.NORMAL,
      serverFlags: 0,
      startTimeOfState: now - 60,
    }));
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed by duet.
    }
  }
}

/** A `duet serve` secondary whose partner is 127.0.0.1 (the test) and a DHCP client for it. */
export interface Target {
  dir: string;
  proc: DuetProcess;
  failoverPort: number;
  dhcpPort: number;
  config: string;
  stop(): Promise<void>;
}

/**
 * Starts a secondary with these extra `failover:` lines from a seeded database
 * (seedServingSecondary); waits until it serves.
 */
export async function startTarget(
  prefix: string,
  extra: string[] = [],
  files: Record<string, { text: string; mode: number }> = {},
): Promise<Target> {
  const dir = await Deno.makeTempDir({ prefix });
  for (const [name, f] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, f.text, { mode: f.mode });
    await Deno.chmod(`${dir}/${name}`, f.mode);
  }
  const failoverPort = freeTcpPort();
  const dhcpPort = freeUdpPort();
  const config = `${dir}/duet.yaml`;
  await Deno.writeTextFile(
    config,
    `database: ${dir}/leases.db
listen:
  - address: 127.0.0.1
    port: ${dhcpPort}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.250
failover:
  role: secondary
  address: 127.0.0.1
  port: ${failoverPort}
  peer: 127.0.0.1
  peer-port: ${freeTcpPort()}
  relationship: pair
${extra.map((l) => `  ${l.replaceAll("$DIR", dir)}\n`).join("")}`,
  );
  seedServingSecondary(`${dir}/leases.db`);
  const proc = new DuetProcess(["--config", config, "--log-level", "debug"]);
  try {
    await proc.waitFor("duet serving");
    await proc.waitFor(SERVING, 20_000);
  } catch (e) {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    dir,
    proc,
    failoverPort,
    dhcpPort,
    config,
    async stop() {
      await proc.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

let macCounter = 0;

/** A DISCOVER/OFFER/REQUEST/ACK through the server: DHCP service is still there. */
export async function assertDhcpServes(
  t: Pick<Target, "dhcpPort" | "proc">,
  what: string,
): Promise<number> {
  const client = new RelayClient("127.0.0.1", t.dhcpPort);
  try {
    const mac = new Uint8Array([2, 0, 0, 0, 0x66, ++macCounter]);
    const xid = 0x4000 + macCounter * 2;
    const offer = await client.exchange(
      buildRequest(DhcpType.DHCPDISCOVER, mac, { xid, giaddr: client.giaddr }),
      3000,
    );
    assert.ok(offer, `no DHCPOFFER after ${what}\n${t.proc.stderr.slice(-3000)}`);
    const ack = await client.exchange(
      buildRequest(DhcpType.DHCPREQUEST, mac, {
        xid: xid + 1,
        giaddr: client.giaddr,
        requested: offer.yiaddr,
        serverId: getServerId(offer) as number,
      }),
      3000,
    );
    assert.ok(ack, `no reply to DHCPREQUEST after ${what}`);
    assert.equal(getMessageType(ack), DhcpType.DHCPACK, `after ${what}`);
    return ack.yiaddr;
  } finally {
    await client.close();
  }
}

/** Waits (bounded) until the server logged `count` lines containing `text`; returns them. */
export async function waitLog(
  t: Target,
  text: string,
  count = 1,
  timeoutMs = 8000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = t.proc.stderr.split("\n").filter((l) => l.includes(text));
    if (lines.length >= count) return lines;
    if (Date.now() > deadline) {
      throw new Error(
        `duet did not log ${count}x "${text}" within ${timeoutMs} ms:\n${
          t.proc.stderr.slice(-4000)
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
