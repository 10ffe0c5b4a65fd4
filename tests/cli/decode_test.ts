/** Tests of `duet decode` (lib/cli/decode.ts) on our ISC captures and on hex input. */
import assert from "node:assert/strict";
import { decodeCommand, type DecodedItem, decodeHexText } from "../../lib/cli/decode.ts";
import { buildContact, encodeFailover } from "../../lib/wire/failover.ts";
import { toHex } from "../../lib/wire/ip.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url);
const path = (p: string) => new URL(p, FIXTURES).pathname;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await decodeCommand(args, {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
  });
  return { code, out, err };
}

Deno.test("decodeCommand() prints every failover message of a capture with draft names", async () => {
  const r = await run([path("failover/b-leases.pcap")]);
  assert.equal(r.code, 0);
  assert.equal(r.out.match(/^frame \d+ /gm)?.length, 18); // tshark lists 18 messages
  assert.match(
    r.out,
    /^frame 1 {2}1795926500\.348551 {2}198\.18\.0\.2:647 > 198\.18\.0\.1:45061 {2}failover BNDUPD\(3\) len=68 xid=0xd1 /m,
  );
  assert.match(r.out, /^ {2}binding-status\(3\) = ACTIVE\(2\)$/m);
  assert.match(r.out, /^ {2}client-hardware-address\(5\) = htype 1 02:00:00:00:00:01$/m);
  assert.match(r.out, /^ {2}binding-status\(3\) = BACKUP\(7\)$/m);
});

Deno.test("decodeCommand() names states, reject reasons and CONNECT options", async () => {
  const r = await run([path("failover/a1-startup-primary-first.pcap")]);
  assert.equal(r.code, 0);
  assert.match(r.out, /failover CONNECT\(5\) len=106 xid=0x0/);
  assert.match(r.out, /^ {2}server-state\(24\) = RECOVER\(6\)$/m);
  assert.match(r.out, /^ {2}server-flags\(23\) = 0x01 STARTUP$/m);
  assert.match(r.out, /^ {2}reject-reason\(21\) = 16 Less critical binding information$/m);
  assert.match(r.out, /^ {2}MCLT\(15\) = 300 seconds$/m);
  assert.doesNotMatch(r.out, /UNDECODABLE/);
});

Deno.test("decodeCommand() --json prints one array with stable keys, DHCP included", async () => {
  const r = await run(["--json", path("dhcp/dhcp-dora.pcap")]);
  assert.equal(r.code, 0);
  const items = JSON.parse(r.out) as DecodedItem[];
  assert.deepEqual(items.map((i) => i.type), [
    "DHCPDISCOVER",
    "DHCPOFFER",
    "DHCPREQUEST",
    "DHCPACK",
    "DHCPRELEASE",
  ]);
  assert.deepEqual(Object.keys(items[0] as DecodedItem), [
    "frame",
    "time",
    "src",
    "dst",
    "protocol",
    "length",
    "type",
    "header",
    "options",
    "problems",
    "error",
    "hex",
  ]);
  assert.equal((items[0] as DecodedItem).header?.xid, 0x37754713);
});

Deno.test("decodeHexText() shows undecodable messages with the typed error and goes on", () => {
  const good = toHex(encodeFailover(buildContact({ time: 1, xid: 2 })));
  const items = decodeHexText(
    [
      "# comment line",
      good,
      "000d0b0c000000010000000200", // length 13, one byte of a truncated option header
      "000c0d0c0000000100000002", // undefined type 13
      "zz",
      "0005",
    ].join("\n"),
  );
  assert.deepEqual(items.map((i) => [i.frame, i.type, i.error?.name ?? null]), [
    [2, "CONTACT", null],
    [3, null, "WireError"],
    [4, "unknown(13)", null], // shown, with the problem the peer would close the link for
    [5, null, "SyntaxError"],
    [6, null, "WireError"],
  ]);
  assert.equal(items[1]?.error?.offset, 12);
  assert.match(items[2]?.problems[0] ?? "", /undefined message type 0-127/);
});

Deno.test("decodeCommand() --hex reads a file of DHCP and failover lines", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-decode-" });
  try {
    const dhcp = Deno.readTextFileSync(path("dhcp/dora-ack.hex")).split("\n").map((l) =>
      l.replace(/#.*$/, "").replace(/\s/g, "")
    ).join("");
    const fo = toHex(encodeFailover(buildContact({ time: 1, xid: 2 })));
    await Deno.writeTextFile(`${dir}/in.hex`, `${dhcp}\n${fo}\n`);
    const r = await run(["--hex", `${dir}/in.hex`]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^line 1 {2}DHCP DHCPACK len=300/m);
    assert.match(r.out, /^line 2 {2}failover CONTACT\(11\) len=12 xid=0x2/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeCommand() exit codes: 1 unreadable, 2 usage", async () => {
  assert.equal((await run(["/nonexistent/x.pcap"])).code, 1);
  const dir = await Deno.makeTempDir({ prefix: "duet-decode-" });
  try {
    await Deno.writeFile(
      `${dir}/ng.pcapng`,
      new Uint8Array([0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, ...new Array(20).fill(0)]),
    );
    const r = await run([`${dir}/ng.pcapng`]);
    assert.equal(r.code, 1);
    assert.match(r.err, /byte-order magic is 0x00000000/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal((await run([])).code, 2);
  assert.equal((await run(["--bogus", "x"])).code, 2);
  assert.equal((await run(["a", "b"])).code, 2);
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /^Usage: duet decode/);
});
