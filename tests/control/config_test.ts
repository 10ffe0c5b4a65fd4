/** The `control:` configuration section and the paths derived from it. */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { controlSocketPath, metricsAddress } from "../../lib/control/http.ts";
import { ConfigError } from "../../lib/errors.ts";

const HEAD = `database: /var/lib/duet/leases.db
listen:
  - address: 192.0.2.1
subnets:
  - subnet: 192.0.2.0/24
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, "t.yaml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.line}:${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

Deno.test("parseConfig() without control: the socket is next to the database, no metrics", () => {
  const c = parseConfig(HEAD, "t.yaml");
  assert.equal(c.control, undefined);
  assert.equal(controlSocketPath(c), "/var/lib/duet/leases.db.sock");
  assert.equal(metricsAddress(c), null);
});

Deno.test("parseConfig() reads control.socket and control.metrics", () => {
  const c = parseConfig(
    HEAD + "control:\n  socket: /run/duet/control.sock\n  metrics: 127.0.0.1:9467\n",
    "t.yaml",
  );
  assert.deepEqual(c.control, {
    socket: "/run/duet/control.sock",
    metrics: { address: 0x7f000001, port: 9467 },
  });
  assert.equal(controlSocketPath(c), "/run/duet/control.sock");
  assert.deepEqual(metricsAddress(c), { hostname: "127.0.0.1", port: 9467 });
});

Deno.test("parseConfig() reports bad control values at their line", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["metrics without a port", "  metrics: 127.0.0.1\n", /^7:control\.metrics: Expected ADDR:PORT/],
    ["metrics port 0", "  metrics: 127.0.0.1:0\n", /^7:control\.metrics: Expected ADDR:PORT/],
    ["metrics port too big", "  metrics: 127.0.0.1:70000\n", /^7:control\.metrics: /],
    ["metrics not an address", "  metrics: localhost:9467\n", /^7:control\.metrics: /],
    ["metrics as a number", "  metrics: 9467\n", /^7:control\.metrics: .*got 9467/],
    ["empty socket", '  socket: ""\n', /^7:control\.socket: Expected a non-empty string/],
    ["unknown key", "  sockett: /x\n", /^7:control\.sockett: Unknown key .*did you mean "socket"/],
  ];
  for (const [name, body, want] of cases) {
    await t.step(name, () => {
      const got = problems(HEAD + "control:\n" + body);
      assert.equal(got.length, 1, got.join("\n"));
      assert.match(got[0] as string, want);
    });
  }
  await t.step("control as a list", () => {
    assert.match(problems(HEAD + "control: [a]\n")[0] ?? "", /Expected a map for "control"/);
  });
});
