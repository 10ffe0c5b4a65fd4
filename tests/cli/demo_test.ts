/**
 * `duet demo` (issue #4): a failover pair on loopback that survives its primary's crash.
 * Runs the real demo in-process and checks the story it tells against the draft's states.
 */
import assert from "node:assert/strict";
import { demoCommand } from "../../lib/cli/demo.ts";

function freePort(): number {
  // The demo uses the number for UDP and TCP on 127.0.0.1 and 127.0.0.2.
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    try {
      const sockets = [
        Deno.listen({ hostname: "127.0.0.1", port }),
        Deno.listen({ hostname: "127.0.0.2", port }),
      ];
      for (const s of sockets) s.close();
      return port;
    } catch {
      // In use: try another.
    }
  }
  throw new Error("no free port pair found");
}

Deno.test("duet demo runs a pair through a crash, PARTNER-DOWN and recovery, and the tables agree", async () => {
  let out = "";
  let err = "";
  const code = await demoCommand(["--clients", "4", "--port", String(freePort())], {
    stdout: (s) => out += s,
    stderr: (s) => err += s,
  });
  assert.equal(code, 0, `${out}\n${err}`);
  assert.equal(err, "", err);
  const lines = out.split("\n");
  const line = (re: RegExp) => lines.find((l) => re.test(l)) ?? `(no line matching ${re})`;
  // §9.3.2, §9.5.2, §9.7.2: a fresh pair meets in RECOVER and goes to NORMAL.
  assert.match(line(/^ {3}primary: /), /STARTUP -> RECOVER -> RECOVER-DONE -> NORMAL$/);
  // §5.4: pool balancing gave the secondary half of the 40 addresses.
  assert.match(out, /The primary gave 20 of the 40 free addresses to the secondary/);
  // Every client got exactly one ACK, the first for the MCLT, the renewal for lease-time.
  assert.equal(out.match(/ACK 198\.18\.16\.\d+ +4 s, renewed for 600 s/g)?.length, 4, out);
  // §9.9.2: the secondary keeps serving in COMMUNICATIONS-INTERRUPTED.
  assert.match(out, /secondary: NORMAL -> COMMUNICATIONS-INTERRUPTED/);
  assert.match(out, /the secondary renews 198\.18\.16\.\d+: ACK/);
  assert.match(out, /A new client gets 198\.18\.16\.1\d from the secondary's own \(BACKUP\)/);
  // §9.4.2: the partner's addresses only after the MCLT in PARTNER-DOWN.
  assert.match(out, /secondary: COMMUNICATIONS-INTERRUPTED -> PARTNER-DOWN/);
  assert.match(out, /offered 198\.18\.16\.1\d \(not before the MCLT/);
  assert.match(out, /later another client asking for it is offered 198\.18\.16\.49/);
  // §9.4.3, §9.5: the primary recovers; both back to NORMAL with the same bindings.
  assert.match(out, /secondary: PARTNER-DOWN -> NORMAL/);
  assert.match(out, /6\. Both lease tables agree: yes/);
});
