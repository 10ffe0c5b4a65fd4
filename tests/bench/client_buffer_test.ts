/** perfdhcp's receive-buffer preload (bench/client_buffer.ts), built and used for real. */
import assert from "node:assert/strict";
import {
  parseUdpRcvbufErrors,
  prepareClientBuffer,
  RCVBUF_ENV,
} from "../../bench/client_buffer.ts";
import { findTool } from "../../bench/command.ts";
import { requireOrSkip } from "../netns.ts";

const SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 400
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 198077 0 1909 199986 1909 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 7 0 0 0 0
`;

Deno.test("parseUdpRcvbufErrors() reads the Udp line, not UdpLite", () => {
  assert.equal(parseUdpRcvbufErrors(SNMP), 1909);
  assert.equal(parseUdpRcvbufErrors("Ip: Forwarding\nIp: 1\n"), null);
  assert.equal(parseUdpRcvbufErrors("Udp: InDatagrams NoPorts\nUdp: 1 2\n"), null);
  assert.equal(parseUdpRcvbufErrors("Udp: InDatagrams RcvbufErrors\nUdp: 1 x\n"), null);
});

Deno.test("prepareClientBuffer(0) changes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await prepareClientBuffer(dir, 0);
    assert.deepEqual(b.env, {});
    assert.equal(b.bytes, null);
    assert.match(b.note, /host default/);
    await assert.rejects(() => prepareClientBuffer(dir, -5), RangeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// The preload must give a real UDP socket of a real process the buffer asked for: python3
// opens one and reads SO_RCVBUF back (the kernel reports twice what was set). SO_RCVBUFFORCE
// needs root; without it the kernel keeps its default.
const python = findTool("python3");
const cc = findTool("cc") ?? findTool("gcc") ?? findTool("clang");
const skip = python === null
  ? "no python3 to open a socket under the preload"
  : cc === null
  ? "no C compiler to build the preload"
  : Deno.uid() !== 0
  ? "SO_RCVBUFFORCE needs root"
  : null;
Deno.test({
  name: "prepareClientBuffer() makes every UDP socket of the process take the buffer",
  fn: async (t) => {
    if (!requireOrSkip(t, skip)) return;
    const dir = await Deno.makeTempDir();
    try {
      const bytes = 3 * 1024 * 1024;
      const b = await prepareClientBuffer(dir, bytes);
      assert.equal(b.bytes, bytes, b.note);
      assert.equal(b.env[RCVBUF_ENV], String(bytes));
      const script = "import socket\n" +
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n" +
        "t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n" +
        "print(u.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), " +
        "t.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))\n";
      const run = (env: Record<string, string>) =>
        new Deno.Command(python as string, { args: ["-c", script], env, stdout: "piped" })
          .output();
      const withIt = new TextDecoder().decode((await run(b.env)).stdout).trim().split(" ");
      const without = new TextDecoder().decode((await run({})).stdout).trim().split(" ");
      assert.equal(Number(withIt[0]), 2 * bytes, "UDP socket under the preload");
      assert.notEqual(Number(without[0]), 2 * bytes, "UDP socket without it");
      assert.equal(withIt[1], without[1], "a TCP socket is left alone");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
