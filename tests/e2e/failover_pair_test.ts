/**
 * Two real `duet serve` processes as a failover pair on loopback (draft-12 §8; no root needed):
 * communications up, down when the secondary dies, up again after a restart; a SIGTERM that
 * tells the partner SHUTDOWN (§9.14) and the recovery after it; and rejected CONNECTs for a
 * mismatched relationship name and a mismatched shared secret.
 */
import assert from "node:assert/strict";
import { DuetProcess, freeUdpPort } from "./process.ts";

function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface Side {
  dhcpPort: number;
  /** The `failover:` section's lines, without the header. */
  failover: string[];
}

function configText(dir: string, name: string, side: Side): string {
  return `database: ${dir}/${name}.db
authoritative: true
listen:
  - address: 127.0.0.1
    port: ${side.dhcpPort}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.250
failover:
${side.failover.map((l) => `  ${l}\n`).join("")}`;
}

interface Pair {
  dir: string;
  primaryPort: number;
  secondaryPort: number;
  /** Starts (or restarts) the secondary. */
  startSecondary(): DuetProcess;
  /** Starts the primary. */
  startPrimary(): DuetProcess;
}

/**
 * Writes both configurations. The secondary's file has the whole failover section. The
 * primary's file has its own address/port, relationship and MCLT, while its role and the
 * partner address come from `--peer 127.0.0.1:PORT --role primary`: the flag-only path (no
 * section at all) always listens on port 647, which needs root on a shared loopback.
 */
async function makePair(
  options: {
    primaryRelationship?: string;
    secondaryRelationship?: string;
    primarySecret?: string;
    secondarySecret?: string;
    mclt?: number;
  } = {},
): Promise<Pair> {
  const dir = await Deno.makeTempDir({ prefix: "duet-fo-pair-" });
  const primaryPort = freeTcpPort();
  let secondaryPort = freeTcpPort();
  while (secondaryPort === primaryPort) secondaryPort = freeTcpPort();
  const secretLine = async (name: string, secret: string | undefined): Promise<string[]> => {
    if (secret === undefined) return [];
    const path = `${dir}/${name}.secret`;
    await Deno.writeTextFile(path, `${secret}\n`, { mode: 0o600 });
    await Deno.chmod(path, 0o600);
    return [`shared-secret-file: ${path}`];
  };
  const common = ["max-response-delay: 6", "max-unacked-bndupd: 10"];
  const primary: Side = {
    dhcpPort: freeUdpPort(),
    failover: [
      "role: secondary # overridden by --role primary",
      "address: 127.0.0.1",
      `port: ${primaryPort}`,
      "peer: 127.0.0.1",
      "peer-port: 1 # overridden by --peer",
      `relationship: ${options.primaryRelationship ?? "pair"}`,
      `mclt: ${options.mclt ?? 300}`,
      ...common,
      ...await secretLine("primary", options.primarySecret),
    ],
  };
  const secondary: Side = {
    dhcpPort: freeUdpPort(),
    failover: [
      "role: secondary",
      "address: 127.0.0.1",
      `port: ${secondaryPort}`,
      "peer: 127.0.0.1",
      `peer-port: ${primaryPort}`,
      `relationship: ${options.secondaryRelationship ?? "pair"}`,
      ...common,
      ...await secretLine("secondary", options.secondarySecret),
    ],
  };
  await Deno.writeTextFile(`${dir}/primary.yaml`, configText(dir, "primary", primary));
  await Deno.writeTextFile(`${dir}/secondary.yaml`, configText(dir, "secondary", secondary));
  return {
    dir,
    primaryPort,
    secondaryPort,
    startSecondary: () =>
      new DuetProcess(["--config", `${dir}/secondary.yaml`, "--log-level", "debug"]),
    startPrimary: () =>
      new DuetProcess([
        "--config",
        `${dir}/primary.yaml`,
        "--log-level",
        "debug",
        "--peer",
        `127.0.0.1:${secondaryPort}`,
        "--role",
        "primary",
      ]),
  };
}

function tail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines).join("\n");
}

function logs(procs: Record<string, DuetProcess | undefined>): string {
  return Object.entries(procs).map(([name, p]) =>
    `--- ${name} ---\n${p ? tail(p.stderr) : "(not started)"}`
  ).join("\n");
}

/** Waits (bounded) until `p` logged `text` at least `count` times; the message has both logs. */
async function waitCount(
  p: DuetProcess,
  text: string,
  count: number,
  timeoutMs: number,
  all: Record<string, DuetProcess | undefined>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.stderr.split(text).length - 1 >= count) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`No ${count}x "${text}" within ${timeoutMs} ms\n${logs(all)}`);
}

const UP = "Failover communications up";
const DOWN = "Failover communications down";

Deno.test("duet serve pair on loopback: up, down when the secondary dies, up again after its restart", async () => {
  const pair = await makePair();
  const procs: Record<string, DuetProcess | undefined> = {};
  try {
    procs.secondary = pair.startSecondary();
    procs.primary = pair.startPrimary();
    await procs.primary.waitFor("duet serving");
    assert.match(
      procs.primary.stderr,
      new RegExp(
        `failover="primary of \\\\"pair\\\\", partner 127\\.0\\.0\\.1:${pair.secondaryPort}"`,
      ),
      "the --peer/--role flags set the primary's role and partner",
    );
    await waitCount(procs.primary, UP, 1, 15_000, procs);
    await waitCount(procs.secondary, UP, 1, 15_000, procs);
    assert.match(procs.secondary.stderr, /Failover communications up .*partnerVendor=duet-/);
    // A fresh pair recovers, then both go to NORMAL (draft-12 §9.5.2, §9.7.2).
    await waitCount(procs.primary, "Failover state RECOVER-DONE -> NORMAL", 1, 15_000, procs);
    await waitCount(procs.secondary, "Failover state RECOVER-DONE -> NORMAL", 1, 15_000, procs);

    // CONTACTs every 2 s (max-response-delay 6) keep the link up past tReceive.
    await new Promise((r) => setTimeout(r, 7_000));
    assert.ok(!procs.primary.stderr.includes(DOWN), logs(procs));
    assert.ok(!procs.secondary.stderr.includes(DOWN), logs(procs));

    // A crash (no STATE SHUTDOWN): the primary cannot tell a dead partner from a cut link.
    await procs.secondary.stop("SIGKILL");
    await waitCount(procs.primary, DOWN, 1, 10_000, procs);
    // §9.9.1: the primary serves alone until the partner returns.
    await waitCount(
      procs.primary,
      "Failover state NORMAL -> COMMUNICATIONS-INTERRUPTED",
      1,
      10_000,
      procs,
    );

    procs.secondary2 = pair.startSecondary();
    // The primary redials every 5 s (ISC's period).
    await waitCount(procs.secondary2, UP, 1, 20_000, procs);
    await waitCount(procs.primary, UP, 2, 20_000, procs);
    // §9.3.2 steps 1-2 and §9.9.3: both back to NORMAL, the secondary from its stored state.
    await waitCount(
      procs.primary,
      "Failover state COMMUNICATIONS-INTERRUPTED -> NORMAL",
      1,
      10_000,
      procs,
    );
    await waitCount(
      procs.secondary2,
      "Failover state COMMUNICATIONS-INTERRUPTED -> NORMAL",
      1,
      10_000,
      procs,
    );
    assert.match(procs.secondary2.stderr, /Failover STARTUP, previous state COMMUNICATIONS-INTER/);
  } finally {
    for (const p of Object.values(procs)) await p?.stop("SIGTERM");
    await Deno.remove(pair.dir, { recursive: true });
  }
});

Deno.test("duet serve pair on loopback: SIGTERM tells the partner SHUTDOWN, which takes over and later recovers the pair", async () => {
  // A short MCLT: the returning server waits it out in RECOVER-WAIT (draft-12 §9.6).
  const pair = await makePair({ mclt: 4 });
  const procs: Record<string, DuetProcess | undefined> = {};
  try {
    procs.secondary = pair.startSecondary();
    procs.primary = pair.startPrimary();
    await waitCount(procs.primary, "Failover state RECOVER-DONE -> NORMAL", 1, 15_000, procs);
    await waitCount(procs.secondary, "Failover state RECOVER-DONE -> NORMAL", 1, 15_000, procs);

    const code = await procs.secondary.stop("SIGTERM");
    assert.equal(code, 0, logs(procs));
    assert.match(procs.secondary.stderr, /Failover state NORMAL -> SHUTDOWN/, logs(procs));
    // §9.8.4: a partner that moved to SHUTDOWN is down: PARTNER-DOWN at once.
    await waitCount(procs.primary, "Failover state NORMAL -> PARTNER-DOWN", 1, 10_000, procs);

    // §9.14.1: the restart resumes from the state before SHUTDOWN; the partner is in
    // PARTNER-DOWN since after our last operation, so RECOVER (§9.3.2 step 5), then back.
    procs.secondary2 = pair.startSecondary();
    await waitCount(procs.secondary2, "Failover state STARTUP -> RECOVER", 1, 20_000, procs);
    await waitCount(procs.secondary2, "-> RECOVER-DONE", 1, 20_000, procs);
    await waitCount(procs.primary, "Failover state PARTNER-DOWN -> NORMAL", 1, 20_000, procs);
    await waitCount(procs.secondary2, "Failover state RECOVER-DONE -> NORMAL", 1, 20_000, procs);
  } finally {
    for (const p of Object.values(procs)) await p?.stop("SIGTERM");
    await Deno.remove(pair.dir, { recursive: true });
  }
});

/** Starts a pair expected to be rejected and checks both sides' logs. */
async function assertRejectedPair(
  options: Parameters<typeof makePair>[0],
  reason: string,
): Promise<void> {
  const pair = await makePair(options);
  const procs: Record<string, DuetProcess | undefined> = {};
  try {
    procs.secondary = pair.startSecondary();
    procs.primary = pair.startPrimary();
    await waitCount(procs.secondary, "Rejected failover CONNECT", 1, 15_000, procs);
    await waitCount(procs.primary, "Failover partner rejected our CONNECT", 1, 15_000, procs);
    const quoted = `reason=${JSON.stringify(reason)}`;
    assert.ok(procs.secondary.stderr.includes(quoted), `secondary: ${quoted}\n${logs(procs)}`);
    assert.ok(procs.primary.stderr.includes(quoted), `primary: ${quoted}\n${logs(procs)}`);
    // Give a wrong "up" time to show; a rejected primary waits a minute before redialing.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.ok(!procs.primary.stderr.includes(UP), logs(procs));
    assert.ok(!procs.secondary.stderr.includes(UP), logs(procs));
  } finally {
    for (const p of Object.values(procs)) await p?.stop("SIGTERM");
    await Deno.remove(pair.dir, { recursive: true });
  }
}

Deno.test("duet serve pair on loopback: another relationship name is rejected with reason 8 on both sides", async () => {
  await assertRejectedPair(
    { primaryRelationship: "pair", secondaryRelationship: "other" },
    "8 Connection rejected, invalid failover partner",
  );
});

Deno.test("duet serve pair on loopback: another shared secret is rejected with reason 20 on both sides", async () => {
  await assertRejectedPair(
    { primarySecret: "primary-secret-1", secondarySecret: "secondary-secret-2" },
    "20 Message digest failed to compare",
  );
});
