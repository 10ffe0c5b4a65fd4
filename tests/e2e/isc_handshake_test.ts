/**
 * The failover handshake against ISC dhcpd 4.4.3 (draft-12 §7.8-§7.10, §8) and the fresh
 * pair's way to NORMAL (§9.5-§9.8: UPDREQALL, UPDDONE, RECOVER-DONE) in two network
 * namespaces joined by a veth pair (198.18.0.0/15): duet as primary with ISC as secondary, and
 * duet as secondary with ISC as primary. Needs root, iproute2 and Debian's isc-dhcp-server.
 */
import assert from "node:assert/strict";
import { Lab, netnsPrerequisites, requireOrSkip } from "../netns.ts";
import { makeTlsFiles, opensslMissing, type TlsFiles } from "../tls_certs.ts";
import { DuetProcess } from "./process.ts";

const DUET_ADDR = "198.18.0.1";
const ISC_ADDR = "198.18.0.2";

/** The ISC side of the pair, as dhcpd.conf(5) wants it: split and mclt on the primary only. */
function iscConfig(role: "primary" | "secondary"): string {
  const primaryOnly = role === "primary" ? "  mclt 300;\n  split 128;\n" : "";
  return `authoritative;
ddns-update-style none;
default-lease-time 600;
max-lease-time 7200;

failover peer "pair" {
  ${role};
  address ${ISC_ADDR};
  port 647;
  peer address ${DUET_ADDR};
  peer port 647;
  max-response-delay 30;
  max-unacked-updates 10;
  load balance max seconds 3;
${primaryOnly}}

subnet 198.18.0.0 netmask 255.254.0.0 {
  pool {
    failover peer "pair";
    range 198.18.16.1 198.18.16.200;
  }
}
`;
}

/** duet's side: the same relationship, MCLT, split (primary only), ports and timers. */
function duetConfig(dir: string, role: "primary" | "secondary", extra: string[] = []): string {
  const primaryOnly = role === "primary" ? "  mclt: 300\n  split: 128\n" : "";
  return `database: ${dir}/duet.db
authoritative: true
listen:
  - address: ${DUET_ADDR}
    port: 67
lease-time: { default: 600, max: 7200 }
subnets:
  - subnet: 198.18.0.0/15
    pools:
      - range: 198.18.16.1 - 198.18.16.200
failover:
  role: ${role}
  address: ${DUET_ADDR}
  port: 647
  peer: ${ISC_ADDR}
  peer-port: 647
  relationship: pair
${primaryOnly}  load-balance-max-seconds: 3
  max-unacked-bndupd: 10
  max-response-delay: 30
${extra.map((l) => `  ${l}\n`).join("")}`;
}

/** ISC dhcpd in the foreground (-f -d: log on stderr), its log collected. */
class IscProcess {
  readonly child: Deno.ChildProcess;
  #log = "";
  #reader: Promise<void>;

  constructor(lab: Lab, ns: string, dir: string, iface: string) {
    this.child = lab.spawn(ns, [
      "dhcpd",
      "-4",
      "-f",
      "-d",
      "-cf",
      `${dir}/dhcpd.conf`,
      "-lf",
      `${dir}/dhcpd.leases`,
      "-pf",
      `${dir}/dhcpd.pid`,
      iface,
    ]);
    const read = async (stream: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of stream) this.#log += dec.decode(chunk, { stream: true });
    };
    this.#reader = Promise.all([read(this.child.stdout), read(this.child.stderr)]).then(() => {});
  }

  get log(): string {
    return this.#log;
  }

  /** SIGTERM, bounded; SIGKILL after 5 s. */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 5_000);
    await this.child.status;
    clearTimeout(timer);
    await this.#reader;
  }
}

function tail(text: string, lines = 30): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** Waits (bounded) until `check()`; the failure message carries both logs' tails. */
async function waitUntil(
  what: string,
  check: () => boolean,
  timeoutMs: number,
  isc: IscProcess,
  duet: DuetProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `Timed out after ${timeoutMs} ms waiting for ${what}\n--- ISC dhcpd ---\n${
      tail(isc.log)
    }\n--- duet ---\n${tail(duet.stderr)}`,
  );
}

/** Builds the two namespaces, starts both servers and runs `check`; tears everything down. */
async function withPair(
  duetRole: "primary" | "secondary",
  check: (isc: IscProcess, duet: DuetProcess) => Promise<void>,
  /** Extra `failover:` lines for duet, given the TLS files (made only when this is set). */
  extra?: (tls: TlsFiles) => string[],
): Promise<void> {
  const lab = await Lab.create("fo");
  const dir = await Deno.makeTempDir({ prefix: "duet-isc-fo-" });
  let isc: IscProcess | undefined;
  let duet: DuetProcess | undefined;
  try {
    const d = await lab.addNamespace("d");
    const i = await lab.addNamespace("i");
    await lab.link(d, "d0", `${DUET_ADDR}/15`, i, "i0", `${ISC_ADDR}/15`);
    await lab.setMac(d, "d0", "02:00:00:00:fd:01");
    await lab.setMac(i, "i0", "02:00:00:00:fd:02");
    await Deno.writeTextFile(
      `${dir}/dhcpd.conf`,
      iscConfig(duetRole === "primary" ? "secondary" : "primary"),
    );
    await Deno.writeTextFile(`${dir}/dhcpd.leases`, ""); // ISC needs the file to exist
    const lines = extra ? extra(await makeTlsFiles(dir)) : [];
    await Deno.writeTextFile(`${dir}/duet.yaml`, duetConfig(dir, duetRole, lines));
    isc = new IscProcess(lab, i, dir, "i0");
    duet = new DuetProcess(["--config", `${dir}/duet.yaml`, "--log-level", "debug"], [
      "ip",
      "netns",
      "exec",
      d,
    ]);
    await check(isc, duet);
  } finally {
    await duet?.stop("SIGTERM");
    await isc?.stop();
    await lab.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}

const UP = "Failover communications up";

/**
 * A fresh pair (empty lease files, new duet database) recovers and goes to NORMAL on both
 * sides, as two ISC servers do (draft-12 §9.5.2 UPDREQALL/UPDDONE, §9.7.2, §9.8).
 */
async function bothNormal(isc: IscProcess, duet: DuetProcess): Promise<void> {
  await waitUntil(
    "ISC: Both servers normal",
    () => /failover peer pair: Both servers normal/.test(isc.log),
    30_000,
    isc,
    duet,
  );
  await waitUntil(
    "duet: RECOVER-DONE -> NORMAL",
    () => duet.stderr.includes("Failover state RECOVER-DONE -> NORMAL"),
    10_000,
    isc,
    duet,
  );
  // ISC saw duet go through recover-done to normal, and duet answered its UPDREQALL.
  assert.match(isc.log, /failover peer pair: peer moves from recover-done to normal/);
  assert.match(duet.stderr, /Sent UPDDONE for UPDREQALL/);
  assert.match(duet.stderr, /Failover state RECOVER -> RECOVER-DONE/);
}

Deno.test({
  name: "ISC dhcpd 4.4.3 handshake: duet primary, ISC secondary",
  sanitizeResources: false,
  async fn(t) {
    if (!requireOrSkip(t, netnsPrerequisites(["dhcpd"]))) return;
    await withPair("primary", async (isc, duet) => {
      // ISC retries its connect every 5 s; duet dials at once. Allow a few rounds.
      await waitUntil("duet: communications up", () => duet.stderr.includes(UP), 20_000, isc, duet);
      await bothNormal(isc, duet);
      assert.match(duet.stderr, /Failover communications up .*partnerVendor=isc-/);
      assert.ok(!duet.stderr.includes("Rejected failover CONNECT"), tail(duet.stderr));
      assert.ok(!duet.stderr.includes("rejected our CONNECT"), tail(duet.stderr));
    });
  },
});

Deno.test({
  name: "ISC dhcpd 4.4.3 handshake: duet secondary, ISC primary",
  sanitizeResources: false,
  async fn(t) {
    if (!requireOrSkip(t, netnsPrerequisites(["dhcpd"]))) return;
    await withPair("secondary", async (isc, duet) => {
      await waitUntil("duet: communications up", () => duet.stderr.includes(UP), 20_000, isc, duet);
      await bothNormal(isc, duet);
      assert.match(duet.stderr, /Failover communications up .*partnerVendor=isc-/);
      assert.ok(!duet.stderr.includes("Rejected failover CONNECT"), tail(duet.stderr));
      // The ISC primary moves half its pool to BACKUP by BNDUPD; duet accepts every one.
      assert.ok(!duet.stderr.includes("Rejected binding update"), tail(duet.stderr));
    });
  },
});

/** Why a TLS test cannot run: the namespace tools, dhcpd or openssl missing; or null. */
async function tlsPrerequisites(): Promise<string | null> {
  return netnsPrerequisites(["dhcpd"]) ?? await opensslMissing();
}

Deno.test({
  name:
    "ISC dhcpd 4.4.3 and duet secondary that requires TLS: ISC's TLS-request 0 is refused with reason 11, logged",
  sanitizeResources: false,
  async fn(t) {
    if (!requireOrSkip(t, await tlsPrerequisites())) return;
    await withPair("secondary", async (isc, duet) => {
      await waitUntil(
        "duet: the refusal",
        () => duet.stderr.includes('reason="11 TLS required but not supported by partner"'),
        20_000,
        isc,
        duet,
      );
      assert.match(duet.stderr, /Rejected failover CONNECT .*reason="11 /);
      assert.ok(!duet.stderr.includes(UP), tail(duet.stderr));
    }, (f) => ["tls:", `  cert-file: ${f.cert}`, `  key-file: ${f.key}`]);
  },
});

Deno.test({
  name:
    "ISC dhcpd 4.4.3 and duet primary that requires TLS: the pair never comes up, and duet says why",
  sanitizeResources: false,
  async fn(t) {
    if (!requireOrSkip(t, await tlsPrerequisites())) return;
    await withPair("primary", async (isc, duet) => {
      // ISC 4.4.3 cannot do TLS, yet answers TLS-request 2 with an accepting CONNECTACK and
      // TLS-reply 0 (the §7.8.2 table wants reason 9 or 10): duet sends DISCONNECT 11.
      await waitUntil(
        "duet: the refusal",
        () => duet.stderr.includes("Failover partner does not use TLS, which this server requires"),
        20_000,
        isc,
        duet,
      );
      await waitUntil(
        "ISC: the DISCONNECT",
        () => isc.log.includes("TLS required but not supported by partner"),
        10_000,
        isc,
        duet,
      );
      assert.match(duet.stderr, /Failover handshake failed: sent DISCONNECT .*reason="11 /);
      assert.ok(!duet.stderr.includes(UP), tail(duet.stderr));
    }, (f) => ["tls:", `  ca-file: ${f.ca}`]);
  },
});
