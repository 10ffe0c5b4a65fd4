/**
 * Two PeerServices in one process over real TCP on loopback (draft-12 §8): the handshake,
 * keepalives, a stalled partner, rejections, and reconnection after a restart.
 */
import assert from "node:assert/strict";
import { type Logger } from "../../lib/log.ts";
import type { LinkSettings, PartnerInfo } from "../../lib/peer/link.ts";
import { PeerService } from "../../lib/peer/tcp.ts";
import { hbaFromSplit } from "../../lib/balance/hba.ts";
import { ServerState } from "../../lib/wire/failover.ts";

const LOOPBACK = 0x7f000001;

function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A logger that keeps lines for assertions. */
function memoryLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  };
  return {
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    debugEnabled: true,
  };
}

function settings(role: "primary" | "secondary", extra: Partial<LinkSettings> = {}): LinkSettings {
  return {
    role,
    relationship: "pair",
    mclt: role === "primary" ? 300 : null,
    hba: role === "primary" ? hbaFromSplit(128) : null,
    maxUnackedBndupd: 10,
    receiveTimer: 3,
    vendorClass: "duet-test",
    secret: null,
    maxClockSkew: 0,
    handshakeTimeout: 3,
    ...extra,
  };
}

interface Peer {
  service: PeerService;
  lines: string[];
  ups: PartnerInfo[];
  downs: string[];
}

function makePeer(
  role: "primary" | "secondary",
  port: number,
  peerPort: number,
  extra: Partial<LinkSettings> = {},
  state: number = ServerState.NORMAL,
): Peer {
  const lines: string[] = [];
  const ups: PartnerInfo[] = [];
  const downs: string[] = [];
  const service = new PeerService({
    settings: settings(role, extra),
    addresses: { address: LOOPBACK, port, peer: LOOPBACK, peerPort },
    logger: memoryLogger(lines),
    localState: () => ({ serverState: state, serverFlags: 0, startTimeOfState: 1_800_000_000 }),
    onUp: (p) => ups.push(p),
    onDown: (r) => downs.push(r),
    retrySeconds: 0.2,
    rejectedRetrySeconds: 60,
  });
  return { service, lines, ups, downs };
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

Deno.test("PeerService: primary and secondary reach communications up and exchange CONTACTs", async () => {
  const pPort = freeTcpPort();
  const sPort = freeTcpPort();
  const p = makePeer("primary", pPort, sPort);
  const s = makePeer("secondary", sPort, pPort, {}, ServerState.RECOVER);
  try {
    s.service.start();
    p.service.start();
    await until("both up", () => p.ups.length === 1 && s.ups.length === 1);
    assert.equal(
      p.ups[0]?.serverState,
      ServerState.RECOVER,
      "the primary saw the secondary's STATE",
    );
    assert.equal(s.ups[0]?.serverState, ServerState.NORMAL);
    assert.equal(s.ups[0]?.mclt, 300, "the secondary learned the MCLT from CONNECT");
    assert.deepEqual(s.ups[0]?.hba, hbaFromSplit(128));
    assert.equal(p.ups[0]?.vendorClass, "duet-test");
    assert.equal(p.service.status().link, "up");
    // receive-timer 3 s: CONTACT every second keeps the link up past tReceive.
    await new Promise((r) => setTimeout(r, 3500));
    assert.equal(p.service.status().link, "up");
    assert.equal(s.service.status().link, "up");
    assert.equal(p.downs.length + s.downs.length, 0);
    assert.ok(Math.abs(p.service.status().skew ?? 99) < 2);
  } finally {
    await p.service.stop();
    await s.service.stop();
  }
});

Deno.test("PeerService: a wrong relationship name is rejected with reason 8 and logged on both sides", async () => {
  const pPort = freeTcpPort();
  const sPort = freeTcpPort();
  const p = makePeer("primary", pPort, sPort, { relationship: "other" });
  const s = makePeer("secondary", sPort, pPort);
  try {
    s.service.start();
    p.service.start();
    await until("the rejection", () => p.lines.some((l) => l.includes("rejected our CONNECT")));
    assert.ok(
      p.lines.some((l) => l.includes("8 Invalid failover partner") || l.includes('"reason":"8 ')),
      p.lines.join("\n"),
    );
    assert.ok(s.lines.some((l) => l.includes("Rejected failover CONNECT")), s.lines.join("\n"));
    assert.equal(p.ups.length + s.ups.length, 0);
  } finally {
    await p.service.stop();
    await s.service.stop();
  }
});

Deno.test("PeerService: a shared-secret mismatch is rejected with reason 20 (message digest)", async () => {
  const pPort = freeTcpPort();
  const sPort = freeTcpPort();
  const p = makePeer("primary", pPort, sPort, { secret: new TextEncoder().encode("one") });
  const s = makePeer("secondary", sPort, pPort, { secret: new TextEncoder().encode("two") });
  try {
    s.service.start();
    p.service.start();
    await until("the rejection", () => p.lines.some((l) => l.includes("rejected our CONNECT")));
    assert.ok(p.lines.some((l) => l.includes('"reason":"20 ')), p.lines.join("\n"));
    assert.equal(p.ups.length + s.ups.length, 0);
  } finally {
    await p.service.stop();
    await s.service.stop();
  }
});

Deno.test("PeerService: matching secrets sign every message and come up", async () => {
  const pPort = freeTcpPort();
  const sPort = freeTcpPort();
  const secret = new TextEncoder().encode("s3cret");
  const p = makePeer("primary", pPort, sPort, { secret });
  const s = makePeer("secondary", sPort, pPort, { secret });
  try {
    s.service.start();
    p.service.start();
    await until("both up", () => p.ups.length === 1 && s.ups.length === 1);
  } finally {
    await p.service.stop();
    await s.service.stop();
  }
});

Deno.test("PeerService: a partner that goes away is declared down at once; its restart reconnects", async () => {
  const pPort = freeTcpPort();
  const sPort = freeTcpPort();
  const p = makePeer("primary", pPort, sPort);
  let s = makePeer("secondary", sPort, pPort);
  try {
    s.service.start();
    p.service.start();
    await until("both up", () => p.ups.length === 1 && s.ups.length === 1);
    // A stalled partner: a raw TCP peer that completes the handshake bytes never arrive.
    await s.service.stop();
    await until("the primary sees the link down", () => p.downs.length === 1, 5000);
    s = makePeer("secondary", sPort, pPort);
    s.service.start();
    await until("up again", () => p.ups.length === 2 && s.ups.length === 1, 10_000);
  } finally {
    await p.service.stop();
    await s.service.stop();
  }
});

Deno.test("PeerService: a silent partner (connected, sends nothing) is dropped after the handshake timeout", async () => {
  const sPort = freeTcpPort();
  const pPort = freeTcpPort();
  const s = makePeer("secondary", sPort, pPort);
  try {
    s.service.start();
    // A raw connection from the partner's address that never sends CONNECT.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: sPort });
    const started = Date.now();
    const buf = new Uint8Array(64);
    const n = await conn.read(buf); // the secondary closes it: null
    assert.equal(n, null);
    const waited = (Date.now() - started) / 1000;
    assert.ok(waited >= 2.5 && waited < 6, `closed after ${waited} s`);
    conn.close();
  } finally {
    await s.service.stop();
  }
});

Deno.test("PeerService: garbage and an oversized length get a DISCONNECT and a close, not a crash", async () => {
  const sPort = freeTcpPort();
  const s = makePeer("secondary", sPort, freeTcpPort());
  try {
    s.service.start();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: sPort });
    await conn.write(new Uint8Array([0xff, 0xff, 5, 12, 0, 0, 0, 0, 0, 0, 0, 0]));
    const chunks: number[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(...buf.subarray(0, n));
    }
    conn.close();
    // The DISCONNECT (type 12) came before the close.
    assert.equal(chunks[2], 12, `got ${chunks.length} bytes`);
    assert.ok(s.lines.some((l) => l.includes("bad framing")), s.lines.join("\n"));
  } finally {
    await s.service.stop();
  }
});

Deno.test("PeerService: a partner that completes the handshake and then stalls is dropped within tReceive with reason 17", async () => {
  const { buildConnectAck, buildState, encodeFailover, FrameReader, decodeFailover, MsgType } =
    await import("../../lib/wire/failover.ts");
  const sPort = freeTcpPort();
  const pPort = freeTcpPort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: sPort });
  const p = makePeer("primary", pPort, sPort);
  try {
    p.service.start();
    const conn = await listener.accept();
    const reader = new FrameReader();
    const buf = new Uint8Array(4096);
    let connect;
    while (!connect) {
      const n = await conn.read(buf);
      assert.ok(n !== null);
      for (const f of reader.push(buf.subarray(0, n))) connect = decodeFailover(f);
    }
    assert.equal(connect.type, MsgType.CONNECT);
    const now = Math.floor(Date.now() / 1000);
    await conn.write(encodeFailover(buildConnectAck({ time: now, xid: connect.xid }, {
      relationshipName: "pair",
      maxUnackedBndupd: 10,
      receiveTimer: 3,
      vendorClassIdentifier: "stalling-peer",
      tlsReply: 0,
    })));
    await conn.write(encodeFailover(buildState({ time: now, xid: 0 }, {
      serverState: ServerState.NORMAL,
      serverFlags: 0,
      startTimeOfState: now,
    })));
    await until("up", () => p.ups.length === 1);
    const upAt = Date.now();
    // Read (and discard) what the primary sends until it disconnects; send nothing back.
    const seen: number[] = [];
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (const f of reader.push(buf.subarray(0, n))) seen.push(decodeFailover(f).type);
    }
    const after = (Date.now() - upAt) / 1000;
    assert.ok(after >= 2.5 && after < 5, `dropped after ${after} s`);
    assert.ok(seen.includes(MsgType.CONTACT), `saw ${seen}`);
    assert.equal(seen.at(-1), MsgType.DISCONNECT);
    assert.equal(p.downs.length, 1);
    assert.match(p.downs[0] ?? "", /No traffic|Nothing received/);
    conn.close();
  } finally {
    listener.close();
    await p.service.stop();
  }
});

Deno.test("PeerService: connections from any address but the partner's are refused and logged", async () => {
  const port = freeTcpPort();
  const lines: string[] = [];
  const service = new PeerService({
    settings: settings("secondary"),
    // Listen on every address; the partner is 127.0.0.2, the stranger connects from 127.0.0.1.
    addresses: { address: 0, port, peer: 0x7f000002, peerPort: freeTcpPort() },
    logger: memoryLogger(lines),
    localState: () => ({ serverState: ServerState.NORMAL, serverFlags: 0, startTimeOfState: 0 }),
    retrySeconds: 60,
  });
  try {
    service.start();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const n = await conn.read(new Uint8Array(16));
    assert.equal(n, null, "closed at once");
    conn.close();
    await until("the log line", () => lines.some((l) => l.includes("not the configured partner")));
    assert.equal(service.status().connections, 0);
  } finally {
    await service.stop();
  }
});
