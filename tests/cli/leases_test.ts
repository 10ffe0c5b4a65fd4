import assert from "node:assert/strict";
import { leasesCommand, type LeasesIo, leasesQuery } from "../../lib/cli/leases.ts";
import { ConfigError } from "../../lib/errors.ts";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";

function ip(text: string): number {
  return parseIpv4(text) as number;
}

const T0 = Date.UTC(2026, 10, 29, 5, 0, 0) / 1000; // 2026-11-29T05:00:00Z

/** The fixture leases, in address order. */
const LEASES: Lease[] = [
  {
    ...emptyLease(ip("192.0.2.10"), "active"),
    hwAddress: new Uint8Array([2, 0, 0, 0, 0, 1]),
    clientId: new Uint8Array([1, 2, 0, 0, 0, 0, 1]),
    hostname: "alpha",
    starts: T0,
    ends: T0 + 3600,
    cltt: T0,
    // Told to the failover partner, who acked it (draft-12 §7.2.2).
    tstp: T0 + 5400,
    tsfp: T0 + 5400,
  },
  { ...emptyLease(ip("192.0.2.11"), "free") },
  {
    ...emptyLease(ip("198.51.100.5"), "released"),
    hwAddress: new Uint8Array([2, 0, 0, 0, 0, 2]),
    hostname: 'with,comma "quoted"\r\nline',
    starts: T0 - 60,
    ends: T0 + 1,
    cltt: T0 + 1,
  },
  {
    ...emptyLease(ip("203.0.113.7"), "active"),
    hwAddress: new Uint8Array([2, 0, 0, 0, 0, 1]),
    hostname: "evil\x1b[31mred\u202e",
    starts: T0,
    ends: T0 + 7200,
    cltt: T0 + 5,
    // Renewed since the partner's last ack, and received from the partner before.
    tstp: T0 + 10800,
    tsfp: T0 + 5400,
    atsfp: T0 + 3600,
  },
];

/** What --json must print for LEASES, written out (not computed by the code under test). */
const EXPECTED_JSON = [
  {
    "address": "192.0.2.10",
    "hw-address": "02:00:00:00:00:01",
    "client-id": "01:02:00:00:00:00:01",
    "hostname": "alpha",
    "state": "active",
    "starts": "2026-11-29T05:00:00Z",
    "ends": "2026-11-29T06:00:00Z",
    "acked": true,
    "cltt": "2026-11-29T05:00:00Z",
    "tstp": "2026-11-29T06:30:00Z",
    "tsfp": "2026-11-29T06:30:00Z",
    "atsfp": null,
  },
  {
    "address": "192.0.2.11",
    "hw-address": null,
    "client-id": null,
    "hostname": null,
    "state": "free",
    "starts": null,
    "ends": null,
    "acked": null,
    "cltt": null,
    "tstp": null,
    "tsfp": null,
    "atsfp": null,
  },
  {
    "address": "198.51.100.5",
    "hw-address": "02:00:00:00:00:02",
    "client-id": null,
    "hostname": 'with,comma "quoted"\r\nline',
    "state": "released",
    "starts": "2026-11-29T04:59:00Z",
    "ends": "2026-11-29T05:00:01Z",
    "acked": null,
    "cltt": "2026-11-29T05:00:01Z",
    "tstp": null,
    "tsfp": null,
    "atsfp": null,
  },
  {
    "address": "203.0.113.7",
    "hw-address": "02:00:00:00:00:01",
    "client-id": null,
    "hostname": "evil\x1b[31mred\u202e",
    "state": "active",
    "starts": "2026-11-29T05:00:00Z",
    "ends": "2026-11-29T07:00:00Z",
    "acked": false,
    "cltt": "2026-11-29T05:00:05Z",
    "tstp": "2026-11-29T08:00:00Z",
    "tsfp": "2026-11-29T06:30:00Z",
    "atsfp": "2026-11-29T06:00:00Z",
  },
];

interface Result {
  code: number;
  out: string;
  err: string;
  writes: string[];
}

async function run(args: string[], extra: Partial<LeasesIo> = {}): Promise<Result> {
  const writes: string[] = [];
  let err = "";
  const code = await leasesCommand(args, {
    stdout: (s) => writes.push(s),
    stderr: (s) => err += s,
    ...extra,
  });
  return { code, out: writes.join(""), err, writes };
}

/** Runs fn with a lease database holding `leases` in a temp directory. */
async function withDb(
  fn: (path: string, dir: string) => Promise<void>,
  leases: Lease[] = LEASES,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "duet-leases-" });
  try {
    const path = `${dir}/leases.db`;
    const store = SqliteLeaseStore.open(path);
    try {
      for (const l of leases) store.put(l);
      store.commit();
    } finally {
      store.close();
    }
    await fn(path, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A small RFC 4180 reader: CRLF records, quoted fields with doubled quotes. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = "";
  let record: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === '"') {
      i++;
      while (true) {
        if (i >= text.length) throw new Error("unterminated quoted field");
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
    } else if (text[i] === ",") {
      record.push(field);
      field = "";
      i++;
    } else if (text.startsWith("\r\n", i)) {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      i += 2;
    } else {
      if (text[i] === "\n" || text[i] === "\r") throw new Error(`bare line break at ${i}`);
      field += text[i++];
    }
  }
  if (field !== "" || record.length > 0) throw new Error("last record lacks CRLF");
  return records;
}

const CSV_HEADER = [
  "address",
  "hw-address",
  "client-id",
  "hostname",
  "state",
  "starts",
  "ends",
  "acked",
  "cltt",
  "tstp",
  "tsfp",
  "atsfp",
];

Deno.test("leasesCommand() --json prints one array with every lease in address order", async () => {
  await withDb(async (path) => {
    const r = await run(["--db", path, "--json"]);
    assert.equal(r.code, 0);
    assert.equal(r.err, "");
    assert.deepEqual(JSON.parse(r.out), EXPECTED_JSON);
    assert.ok(r.out.endsWith("]\n"));
  });
});

Deno.test("leasesCommand() --csv prints a header row and RFC 4180 records", async () => {
  await withDb(async (path) => {
    const r = await run(["--db", path, "--csv"]);
    assert.equal(r.code, 0);
    const records = parseCsv(r.out);
    assert.deepEqual(records[0], CSV_HEADER);
    const expected = EXPECTED_JSON.map((o) =>
      CSV_HEADER.map((k) => {
        const v = (o as Record<string, string | boolean | null>)[k] ?? "";
        return typeof v === "boolean" ? String(v) : v;
      })
    );
    assert.deepEqual(records.slice(1), expected);
    assert.ok(r.out.includes('"with,comma ""quoted""\r\nline"'), "quotes doubled, field quoted");
  });
});

Deno.test("leasesCommand() prints an aligned table by default", async () => {
  await withDb(async (path) => {
    const r = await run(["--db", path]);
    assert.equal(r.code, 0);
    const lines = r.out.split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    assert.equal(lines.length, 1 + LEASES.length);
    const header = lines[0] as string;
    const columns = [
      "address",
      "hw-address",
      "client-id",
      "hostname",
      "state",
      "starts",
      "ends",
      "acked",
    ];
    const starts = columns.map((c) => header.indexOf(c));
    assert.deepEqual(starts, [0, 17, 36, 58, 80, 91, 113, 135]);
    assert.ok(!header.includes("cltt") && !header.includes("tstp"));
    const row = (i: number) => lines[i] as string;
    // Each cell starts at its header's column (rows whose cells fit their widths).
    const cells = (line: string) => starts.map((s, i) => line.slice(s, starts[i + 1]).trim());
    assert.deepEqual(cells(row(1)), [
      "192.0.2.10",
      "02:00:00:00:00:01",
      "01:02:00:00:00:00:01",
      "alpha",
      "active",
      "2026-11-29T05:00:00Z",
      "2026-11-29T06:00:00Z",
      "yes",
    ]);
    assert.deepEqual(cells(row(2)), ["192.0.2.11", "-", "-", "-", "free", "-", "-", "-"]);
    // Control and bidi characters from the client never reach the terminal raw.
    assert.ok(row(4).includes("evil\\u{1b}[31mred\\u{202e}"), row(4));
    // deno-lint-ignore no-control-regex
    assert.ok(!/[\x00-\x08\x0b-\x1f\u202e]/.test(r.out));
    assert.ok(row(3).includes("\\u{d}\\u{a}line"));
  });
});

Deno.test("leasesCommand() filters by --state, --mac and --ip", async (t) => {
  await withDb(async (path) => {
    const cases: [string, string[], string[]][] = [
      ["state", ["--state", "active"], ["192.0.2.10", "203.0.113.7"]],
      ["state, any case", ["--state", "RELEASED"], ["198.51.100.5"]],
      ["mac", ["--mac", "02:00:00:00:00:01"], ["192.0.2.10", "203.0.113.7"]],
      ["mac with dashes", ["--mac", "02-00-00-00-00-02"], ["198.51.100.5"]],
      ["ip", ["--ip", "192.0.2.11"], ["192.0.2.11"]],
      [
        "state and mac",
        ["--state", "active", "--mac", "02:00:00:00:00:01", "--ip", "203.0.113.7"],
        [
          "203.0.113.7",
        ],
      ],
      ["nothing matches", ["--state", "backup"], []],
      ["unknown ip", ["--ip", "192.0.2.99"], []],
    ];
    for (const [name, flags, want] of cases) {
      await t.step(name, async () => {
        const json = await run(["--db", path, "--json", ...flags]);
        assert.equal(json.code, 0);
        assert.deepEqual(JSON.parse(json.out).map((o: { address: string }) => o.address), want);
        const csv = await run(["--db", path, "--csv", ...flags]);
        assert.deepEqual(parseCsv(csv.out).slice(1).map((rec) => rec[0]), want);
        const table = await run(["--db", path, ...flags]);
        assert.equal(table.out.split("\n").length - 2, want.length);
      });
    }
  });
});

Deno.test("leasesCommand() prints an empty array, a lone header or table header for no rows", async () => {
  await withDb(async (path) => {
    const json = await run(["--db", path, "--json"]);
    assert.equal(json.code, 0);
    assert.deepEqual(JSON.parse(json.out), []);
    const csv = await run(["--db", path, "--csv"]);
    assert.deepEqual(parseCsv(csv.out), [CSV_HEADER]);
    const table = await run(["--db", path]);
    assert.equal(table.code, 0);
    assert.match(table.out, /^address +hw-address .* ends +acked\n$/);
  }, []);
});

Deno.test("leasesCommand() writes in chunks of at most 500 rows", async () => {
  const many: Lease[] = [];
  for (let i = 0; i < 1201; i++) many.push({ ...emptyLease(ip("198.51.100.0") + i, "free") });
  await withDb(async (path) => {
    const r = await run(["--db", path, "--json"]);
    assert.equal(r.code, 0);
    assert.equal(JSON.parse(r.out).length, 1201);
    assert.ok(r.writes.length >= 3, `${r.writes.length} writes`);
    for (const w of r.writes) assert.ok(w.split("\n").length <= 502, "one chunk is bounded");
    const csv = await run(["--db", path, "--csv"]);
    assert.equal(parseCsv(csv.out).length, 1202);
  }, many);
});

Deno.test("leasesCommand() reads while a writer holds an uncommitted batch", async () => {
  await withDb(async (path) => {
    const server = SqliteLeaseStore.open(path);
    try {
      server.put({ ...emptyLease(ip("192.0.2.99"), "active") });
      const before = await run(["--db", path, "--json"]);
      assert.equal(before.code, 0);
      assert.equal(JSON.parse(before.out).length, LEASES.length);
      server.commit();
      const after = await run(["--db", path, "--json", "--ip", "192.0.2.99"]);
      assert.equal(JSON.parse(after.out)[0].state, "active");
    } finally {
      server.close();
    }
  });
});

Deno.test("leasesCommand() --config takes the database path from loadConfig", async () => {
  await withDb(async (path) => {
    const asked: string[] = [];
    const loadConfig = (file: string) => {
      asked.push(file);
      return Promise.resolve({ database: path });
    };
    for (const flag of ["--config", "-c"]) {
      const r = await run([flag, "/etc/duet/duet.yaml", "--json"], { loadConfig });
      assert.equal(r.code, 0, r.err);
      assert.equal(JSON.parse(r.out).length, LEASES.length);
    }
    assert.deepEqual(asked, ["/etc/duet/duet.yaml", "/etc/duet/duet.yaml"]);
  });
});

Deno.test("leasesCommand() --config errors: invalid config 3, unreadable 1, unsupported 2", async () => {
  const invalid = await run(["-c", "bad.yaml"], {
    loadConfig: () =>
      Promise.reject(
        new ConfigError("bad.yaml", [{
          path: "database",
          line: 2,
          col: 3,
          message: "must be a string",
        }]),
      ),
  });
  assert.equal(invalid.code, 3);
  assert.match(invalid.err, /bad\.yaml:2:3: must be a string/);
  assert.equal(invalid.out, "");
  const missing = await run(["-c", "none.yaml"], {
    loadConfig: () => Promise.reject(new Deno.errors.NotFound("none.yaml: no such file")),
  });
  assert.equal(missing.code, 1);
  assert.match(missing.err, /none\.yaml/);
  const unsupported = await run(["-c", "x.yaml"]);
  assert.equal(unsupported.code, 2);
  assert.match(unsupported.err, /--config is not available/);
});

Deno.test("leasesCommand() usage errors exit 2 with usage on stderr", async (t) => {
  const cases: [string, string[], RegExp][] = [
    ["unknown flag", ["--db", "x.db", "--frobnicate"], /Unknown option '--frobnicate'/],
    ["unknown short flag", ["--db", "x.db", "-x"], /Unknown option '-x'/],
    ["positional argument", ["--db", "x.db", "extra"], /Unexpected argument 'extra'/],
    ["neither --config nor --db", ["--json"], /exactly one of --config and --db/],
    [
      "both --config and --db",
      ["-c", "a.yaml", "--db", "x.db"],
      /exactly one of --config and --db/,
    ],
    ["--json with --csv", ["--db", "x.db", "--json", "--csv"], /at most one of --json and --csv/],
    ["--db without value", ["--db"], /argument missing/],
    ["bad --state", ["--db", "x.db", "--state", "bound"], /Unknown state "bound"/],
    ["bad --mac", ["--db", "x.db", "--mac", "zz:00"], /Invalid --mac "zz:00"/],
    ["bad --ip", ["--db", "x.db", "--ip", "192.0.2.300"], /Invalid --ip "192.0.2.300"/],
    ["--live with --db", ["--live", "--db", "x.db"], /not --db/],
    ["--live alone", ["--live", "--json"], /exactly one of --config and --socket with --live/],
    [
      "--live with --config and --socket",
      ["--live", "-c", "a.yaml", "--socket", "/run/duet/control.sock"],
      /exactly one of --config and --socket with --live/,
    ],
    ["--socket without --live", ["--socket", "/run/duet/c.sock"], /--socket only with --live/],
    ["bad --state with --live", ["--live", "--socket", "s", "--state", "x"], /Unknown state/],
  ];
  for (const [name, args, pattern] of cases) {
    await t.step(name, async () => {
      const r = await run(args, { loadConfig: () => Promise.reject(new Error("not called")) });
      assert.equal(r.code, 2);
      assert.equal(r.out, "");
      assert.match(r.err, pattern);
      assert.match(r.err, /Usage: duet leases/);
    });
  }
});

Deno.test("leasesCommand() -h and --help print help on stdout and exit 0", async () => {
  for (const flag of ["-h", "--help"]) {
    const r = await run([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.err, "");
    assert.match(r.out, /^Usage: duet leases/);
    for (
      const option of [
        "--config",
        "--db",
        "--live",
        "--socket",
        "--json",
        "--csv",
        "--state",
        "--mac",
        "--ip",
      ]
    ) {
      assert.ok(r.out.includes(option), option);
    }
  }
});

Deno.test("leasesCommand() database errors exit 1 with the reason on stderr", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "duet-leases-" });
  try {
    await t.step("missing file", async () => {
      const r = await run(["--db", `${dir}/none.db`]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.match(r.err, /^duet leases: Cannot open lease database ".*none\.db": no such file\n$/);
    });
    await t.step("not an SQLite file", async () => {
      await Deno.writeTextFile(`${dir}/text.db`, "lease 192.0.2.1 {\n}\n".repeat(200));
      const r = await run(["--db", `${dir}/text.db`, "--json"]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.match(r.err, /file is not a database/);
    });
    await t.step("an SQLite file of another program", async () => {
      const { DatabaseSync } = await import("node:sqlite");
      const db = new DatabaseSync(`${dir}/other.db`);
      db.exec("CREATE TABLE t (x)");
      db.close();
      const r = await run(["--db", `${dir}/other.db`, "--csv"]);
      assert.equal(r.code, 1);
      assert.match(r.err, /not a duet lease database/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leasesQuery() puts the --state, --mac and --ip filter in the GET /leases query", () => {
  assert.equal(leasesQuery({}), "/leases");
  assert.equal(leasesQuery({ state: "active" }), "/leases?state=active");
  assert.equal(
    leasesQuery({
      state: "released",
      hwAddress: new Uint8Array([2, 0, 0, 0, 0, 0xab]),
      address: ip("192.0.2.10"),
    }),
    "/leases?state=released&mac=02%3A00%3A00%3A00%3A00%3Aab&ip=192.0.2.10",
  );
});

Deno.test("leasesCommand() --live --config without loadConfig is a usage error", async () => {
  const r = await run(["--live", "-c", "x.yaml"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--config is not available here; use --socket/);
});
