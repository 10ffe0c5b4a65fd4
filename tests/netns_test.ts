import assert from "node:assert/strict";
import { Lab, netnsPrerequisites, parseJsonLines, requireOrSkip, waitForLine } from "./netns.ts";

async function namespaces(): Promise<string[]> {
  const out = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n !== "");
}

Deno.test("requireOrSkip() goes on, skips with a reason, or fails under CI=true", () => {
  const saved = Deno.env.get("CI");
  try {
    assert.equal(requireOrSkip(undefined, null), true);
    Deno.env.set("CI", "false");
    const printed: string[] = [];
    assert.equal(requireOrSkip(undefined, "needs a unicorn", (l) => printed.push(l)), false);
    assert.deepEqual(printed, ["SKIP test: needs a unicorn"]);
    Deno.env.set("CI", "true");
    assert.throws(() => requireOrSkip(undefined, "needs a unicorn"), /CI=true: needs a unicorn/);
  } finally {
    if (saved === undefined) Deno.env.delete("CI");
    else Deno.env.set("CI", saved);
  }
});

Deno.test("netnsPrerequisites() names a missing tool", () => {
  const reason = netnsPrerequisites(["no-such-tool-duet"]);
  assert.ok(reason !== null);
  assert.match(reason, /no-such-tool-duet|root|Linux|namespace/);
});

Deno.test("parseJsonLines() keeps only JSON object lines", () => {
  assert.deepEqual(parseJsonLines('noise\n{"a":1}\n{broken\n {"b":2} \n'), [{ a: 1 }, { b: 2 }]);
});

Deno.test("Lab links namespaces, bounds processes and removes everything", async (t) => {
  if (!requireOrSkip(t, netnsPrerequisites(["sleep", "busybox"]))) return;
  const lab = await Lab.create("nt");
  let created: string[] = [];
  try {
    const a = await lab.addNamespace("a");
    const b = await lab.addNamespace("b");
    created = [a, b];
    assert.ok(a.startsWith(lab.id) && b.startsWith(lab.id));
    await lab.link(a, "a0", "198.18.3.1/24", b, "b0", "198.18.3.2/24");
    await lab.setMac(b, "b0", "02:00:00:00:03:02");
    assert.equal((await lab.interfaceInfo(b, "b0")).mac, "02:00:00:00:03:02");

    await t.step("exec() runs inside the namespace", async () => {
      const ping = await lab.exec(a, ["busybox", "ping", "-c", "1", "-W", "2", "198.18.3.2"]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      const links = await lab.exec(b, ["ip", "-o", "link"]);
      assert.match(links.stdout, /b0@/);
      assert.doesNotMatch(links.stdout, /a0@/);
    });

    await t.step("exec() kills a command at its timeout", async () => {
      const started = performance.now();
      const r = await lab.exec(a, ["sleep", "30"], { timeoutMs: 300 });
      assert.notEqual(r.code, 0);
      assert.ok(performance.now() - started < 3000);
    });

    await t.step("waitForLine() sees a line; spawn() children die in cleanup()", async () => {
      const child = lab.spawn(a, ["sh", "-c", "echo started; exec sleep 30"]);
      const { line } = await waitForLine(child, (l) => l === "started", 5000);
      assert.equal(line, "started");
      // Left running on purpose: cleanup() below must kill it (sleep 30 would block the ns).
    });

    await t.step("bridge: two namespaces on one bridge reach each other", async () => {
      const c = await lab.addNamespace("c");
      created.push(c);
      await lab.addBridge(a, "br0", "198.18.4.1/24");
      await lab.link(a, "ab", null, b, "b1", "198.18.4.2/24");
      await lab.link(a, "ac", null, c, "c1", "198.18.4.3/24");
      await lab.attach(a, "ab", "br0");
      await lab.attach(a, "ac", "br0");
      const ping = await lab.exec(b, ["busybox", "ping", "-c", "1", "-W", "2", "198.18.4.3"]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    });
  } finally {
    const started = performance.now();
    await lab.cleanup();
    assert.ok(performance.now() - started < 5000);
  }
  const left = await namespaces();
  for (const ns of created) assert.ok(!left.includes(ns), `${ns} still exists`);
});
