/**
 * `duet leases --live` against a real server in this process (loopback, control socket):
 * every format and filter prints exactly what `duet leases --db` prints, GET /leases filters
 * by query, and no server means exit 1.
 */
import assert from "node:assert/strict";
import { leasesCommand, type LeasesIo } from "../../lib/cli/leases.ts";
import { startServer } from "../../lib/cli/serve.ts";
import { requestControl } from "../../lib/cli/status.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { startControl } from "../../lib/control/http.ts";
import { silentLogger } from "../../lib/log.ts";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";
import { freeUdpPort } from "../e2e/process.ts";

const T0 = Date.UTC(2026, 10, 29, 5, 0, 0) / 1000;

function ip(text: string): number {
  return parseIpv4(text) as number;
}

function configText(db: string, port: number): string {
  return `database: ${db}
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.20.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.20.10 - 198.18.20.250
`;
}

/** Leases with every column kind: a hostname needing CSV quoting and terminal escaping. */
function seedLeases(): Lease[] {
  const leases: Lease[] = [
    {
      ...emptyLease(ip("198.18.20.10"), "active"),
      hwAddress: new Uint8Array([2, 0, 0, 0, 9, 1]),
      clientId: new Uint8Array([1, 2, 0, 0, 0, 9, 1]),
      hostname: 'comma, "quoted"\x1b[31m',
      starts: T0,
      ends: T0 + 3600,
      cltt: T0,
    },
    {
      ...emptyLease(ip("198.18.20.11"), "released"),
      hwAddress: new Uint8Array([2, 0, 0, 0, 9, 2]),
      starts: T0 - 60,
      ends: T0 + 1,
      cltt: T0 + 1,
    },
  ];
  // Enough rows for several 500-row chunks of GET /leases.
  for (let i = 0; i < 1200; i++) {
    leases.push({
      ...emptyLease(ip("198.18.21.0") + i, i % 3 === 0 ? "expired" : "active"),
      hwAddress: new Uint8Array([2, 0, 0, 1, (i >> 8) & 0xff, i & 0xff]),
      starts: T0,
      ends: T0 + 600,
      cltt: T0,
    });
  }
  return leases;
}

async function run(
  args: string[],
  extra: Partial<LeasesIo> = {},
): Promise<{ code: number; out: string; err: string; writes: number }> {
  let out = "";
  let err = "";
  let writes = 0;
  const code = await leasesCommand(args, {
    stdout: (s) => {
      out += s;
      writes++;
    },
    stderr: (s) => err += s,
    ...extra,
  });
  return { code, out, err, writes };
}

Deno.test("leasesCommand() --live prints what --db prints, in every format and filter", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "duet-leases-live-" });
  const db = `${dir}/leases.db`;
  const socket = `${dir}/control.sock`;
  const seed = SqliteLeaseStore.open(db);
  for (const l of seedLeases()) seed.put(l);
  seed.commit();
  seed.close();
  const config = parseConfig(configText(db, freeUdpPort()), `${dir}/duet.yaml`);
  const server = startServer(config, { logger: silentLogger(), transport: "deno" });
  let control;
  try {
    control = await startControl(server, { socket, config, logger: silentLogger() });
    const filters: [string, string[]][] = [
      ["no filter", []],
      ["state", ["--state", "released"]],
      ["state, any case", ["--state", "EXPIRED"]],
      ["mac", ["--mac", "02-00-00-00-09-01"]],
      ["ip", ["--ip", "198.18.21.7"]],
      ["state and mac", ["--state", "active", "--mac", "02:00:00:01:00:01"]],
      ["nothing matches", ["--state", "backup"]],
    ];
    for (const [name, flags] of filters) {
      for (const format of [["--json"], ["--csv"], []]) {
        await t.step(`${name} ${format[0] ?? "table"}`, async () => {
          const want = await run(["--db", db, ...format, ...flags]);
          assert.equal(want.code, 0, want.err);
          const got = await run(["--live", "--socket", socket, ...format, ...flags]);
          assert.equal(got.err, "");
          assert.equal(got.code, 0);
          assert.equal(got.out, want.out);
        });
      }
    }
    await t.step("the full list arrives in several writes", async () => {
      const r = await run(["--live", "--socket", socket, "--json"]);
      assert.equal(JSON.parse(r.out).length, 1202);
      assert.ok(r.writes >= 3, `${r.writes} writes`);
    });
    await t.step("--config finds the socket from control.socket", async () => {
      const r = await run(["--live", "-c", "/etc/duet/duet.yaml", "--ip", "198.18.20.11"], {
        loadConfig: () => Promise.resolve({ database: db, control: { socket, metrics: null } }),
      });
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^198\.18\.20\.11 +02:00:00:00:09:02 +- +- +released /m);
    });
    await t.step("GET /leases filters by query and rejects a bad one", async () => {
      const one = await requestControl(socket, "/leases?state=released&ip=198.18.20.11");
      assert.equal(one.status, 200);
      assert.deepEqual(JSON.parse(one.body).map((r: { address: string }) => r.address), [
        "198.18.20.11",
      ]);
      const cases: [string, RegExp][] = [
        ["/leases?state=bound", /Unknown state "bound"/],
        ["/leases?mac=zz", /Invalid mac "zz"/],
        ["/leases?ip=198.18.20.300", /Invalid ip/],
        ["/leases?limit=3", /Unknown query parameter "limit"/],
      ];
      for (const [path, pattern] of cases) {
        const r = await requestControl(socket, path);
        assert.equal(r.status, 400, path);
        assert.match(JSON.parse(r.body).error, pattern);
      }
    });
    await control.stop();
    await t.step("no server: exit 1 with the reason on stderr", async () => {
      const r = await run(["--live", "--socket", socket, "--json"]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.match(r.err, /^duet leases: duet serve is not running: no control socket at ".*"\n$/);
    });
  } finally {
    await control?.stop();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leasesCommand() --live exits 1 when the socket path exists but nothing answers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-leases-live-" });
  const socket = `${dir}/stale.sock`;
  try {
    // A plain file where the socket should be: the path exists, connecting fails.
    await Deno.writeTextFile(socket, "");
    const r = await run(["--live", "--socket", socket]);
    assert.equal(r.code, 1);
    assert.equal(r.out, "");
    assert.match(r.err, /^duet leases: Cannot reach duet serve on ".*stale\.sock": /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
