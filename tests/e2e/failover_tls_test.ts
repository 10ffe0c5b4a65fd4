/**
 * TLS on the partner link (draft-12 §11.2) between two real `duet serve` processes on loopback,
 * with a throwaway CA made by openssl: the pair comes up over TLS and a lease reaches the
 * secondary; a certificate from another CA is refused with a logged reason; a partner that
 * cannot do TLS (ISC dhcpd 4.4.3 sends TLS-request 0) is refused clearly when TLS is required.
 */
import assert from "node:assert/strict";
import { buildConnect, getRejectReason, MsgType, RejectReason } from "../../lib/wire/failover.ts";
import { formatIpv4 } from "../../lib/wire/ip.ts";
import { requireOrSkip } from "../netns.ts";
import { makeTlsFiles, opensslMissing, type TlsFiles } from "../tls_certs.ts";
import { DuetProcess, freeUdpPort, runDuet } from "./process.ts";
import {
  assertDhcpServes,
  connectParams,
  FakePartner,
  freeTcpPort,
  seedServingSecondary,
  SERVING,
} from "./hostile_partner.ts";

interface Pair {
  dir: string;
  primary: string;
  secondary: string;
  primaryDhcp: number;
  secondaryDhcp: number;
  secondaryPort: number;
}

/** Writes a primary and a secondary configuration with these `tls:` lines (none: no TLS). */
async function writePair(
  dir: string,
  primaryTls: string[] | null,
  secondaryTls: string[] | null,
): Promise<Pair> {
  const pPort = freeTcpPort();
  const sPort = freeTcpPort();
  const primaryDhcp = freeUdpPort();
  const secondaryDhcp = freeUdpPort();
  const side = (
    name: string,
    dhcp: number,
    role: string,
    port: number,
    peerPort: number,
    tls: string[] | null,
  ) =>
    `database: ${dir}/${name}.db
listen:
  - address: 127.0.0.1
    port: ${dhcp}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.250
failover:
  role: ${role}
  address: 127.0.0.1
  port: ${port}
  peer: 127.0.0.1
  peer-port: ${peerPort}
  relationship: pair
  max-response-delay: 6
${role === "primary" ? "  mclt: 300\n  split: 128\n" : ""}${
      tls ? `  tls:\n${tls.map((l) => `    ${l}\n`).join("")}` : ""
    }`;
  const primary = `${dir}/primary.yaml`;
  const secondary = `${dir}/secondary.yaml`;
  await Deno.writeTextFile(
    primary,
    side("primary", primaryDhcp, "primary", pPort, sPort, primaryTls),
  );
  await Deno.writeTextFile(
    secondary,
    side("secondary", secondaryDhcp, "secondary", sPort, pPort, secondaryTls),
  );
  return { dir, primary, secondary, primaryDhcp, secondaryDhcp, secondaryPort: sPort };
}

function serve(config: string): DuetProcess {
  return new DuetProcess(["--config", config, "--log-level", "debug"]);
}

function logs(procs: DuetProcess[]): string {
  return procs.map((p, i) => `--- process ${i} ---\n${p.stderr.slice(-2500)}`).join("\n");
}

async function withTls(
  t: Deno.TestContext,
  body: (files: TlsFiles, dir: string) => Promise<void>,
): Promise<void> {
  if (!requireOrSkip(t, await opensslMissing())) return;
  const dir = await Deno.makeTempDir({ prefix: "duet-tls-e2e-" });
  try {
    await body(await makeTlsFiles(dir), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SECONDARY_TLS = (f: TlsFiles) => [`cert-file: ${f.cert}`, `key-file: ${f.key}`];

Deno.test("duet serve pair over TLS: both sides up with tls=on, and a lease reaches the secondary", async (t) => {
  await withTls(t, async (f, dir) => {
    const pair = await writePair(dir, [`ca-file: ${f.ca}`], SECONDARY_TLS(f));
    const procs: DuetProcess[] = [];
    try {
      procs.push(serve(pair.secondary), serve(pair.primary));
      const [secondary, primary] = procs as [DuetProcess, DuetProcess];
      await primary.waitFor("TLS required");
      await primary.waitFor("Failover communications up", 15_000);
      await secondary.waitFor("Failover communications up", 15_000);
      for (const p of procs) {
        assert.match(p.stderr, /Failover communications up .*tls=on/, logs(procs));
        assert.ok(!p.stderr.includes("tls=off"), logs(procs));
      }
      await primary.waitFor("Failover state RECOVER-DONE -> NORMAL", 15_000);
      // A lease granted by the primary goes to the secondary by BNDUPD over TLS (§7.1).
      const address = formatIpv4(
        await assertDhcpServes({ dhcpPort: pair.primaryDhcp, proc: primary }, "TLS pair"),
      );
      const deadline = Date.now() + 10_000;
      let state: string | undefined;
      while (Date.now() < deadline && state !== "active") {
        const live = await runDuet(["leases", "--live", "--config", pair.secondary, "--json"]);
        assert.equal(live.code, 0, live.stderr);
        const rows = JSON.parse(live.stdout) as { address: string; state: string }[];
        state = rows.find((r) => r.address === address)?.state;
        if (state !== "active") await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(state, "active", `the secondary has ${address}\n${logs(procs)}`);
    } finally {
      for (const p of procs) await p.stop();
    }
  });
});

Deno.test("duet serve pair over TLS: a certificate from another CA is refused with a logged reason on both sides", async (t) => {
  await withTls(t, async (f, dir) => {
    const pair = await writePair(dir, [`ca-file: ${f.otherCa}`], SECONDARY_TLS(f));
    const procs: DuetProcess[] = [];
    try {
      procs.push(serve(pair.secondary), serve(pair.primary));
      const [secondary, primary] = procs as [DuetProcess, DuetProcess];
      await primary.waitFor("Failover TLS handshake failed", 15_000);
      await secondary.waitFor("Failover TLS handshake failed", 15_000);
      assert.match(primary.stderr, /Failover TLS handshake failed .*UnknownIssuer/, logs(procs));
      assert.match(secondary.stderr, /Failover TLS handshake failed .*UnknownCA/, logs(procs));
      await new Promise((r) => setTimeout(r, 1000));
      for (const p of procs) {
        assert.ok(!p.stderr.includes("Failover communications up"), logs(procs));
      }
    } finally {
      for (const p of procs) await p.stop();
    }
  });
});

Deno.test("duet serve pair: a primary that requires TLS is refused by a secondary without TLS (reason 9), logged on both sides", async (t) => {
  await withTls(t, async (f, dir) => {
    const pair = await writePair(dir, [`ca-file: ${f.ca}`], null);
    const procs: DuetProcess[] = [];
    try {
      procs.push(serve(pair.secondary), serve(pair.primary));
      const [secondary, primary] = procs as [DuetProcess, DuetProcess];
      await secondary.waitFor('reason="9 TLS not supported"', 15_000);
      await primary.waitFor("Failover partner rejected our CONNECT", 15_000);
      assert.match(
        primary.stderr,
        /rejected our CONNECT .*reason="9 TLS not supported"/,
        logs(procs),
      );
    } finally {
      for (const p of procs) await p.stop();
    }
  });
});

Deno.test("duet serve secondary that requires TLS refuses an ISC-like partner's TLS-request 0 with reason 11 and keeps serving DHCP", async (t) => {
  await withTls(t, async (f, dir) => {
    const pair = await writePair(dir, null, SECONDARY_TLS(f));
    seedServingSecondary(`${dir}/secondary.db`);
    const secondary = serve(pair.secondary);
    try {
      await secondary.waitFor("duet serving");
      const p = await FakePartner.connect(pair.secondaryPort);
      try {
        // What ISC dhcpd 4.4.3 sends (NOTES §5): TLS-request 0.
        await p.send(
          buildConnect(p.header(), connectParams({ vendorClassIdentifier: "isc-4.4.3-P1" })),
        );
        const ack = await p.receive();
        assert.equal(ack?.type, MsgType.CONNECTACK);
        assert.equal(getRejectReason(ack!), RejectReason.TLS_REQUIRED);
        assert.equal(await p.receive(), null, "then closed");
      } finally {
        p.close();
      }
      await secondary.waitFor('reason="11 TLS required but not supported by partner"');
      await secondary.waitFor(SERVING, 20_000);
      await assertDhcpServes({ dhcpPort: pair.secondaryDhcp, proc: secondary }, "a TLS refusal");
    } finally {
      await secondary.stop();
    }
  });
});
