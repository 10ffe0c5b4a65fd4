/**
 * perfdhcp's receive buffer. perfdhcp stands in for thousands of clients with one socket, and
 * that socket gets the host's net.core.rmem_default (212,992 bytes here; not settable per
 * network namespace on this kernel). A server that sends the replies of one group commit
 * together overflows it whenever perfdhcp, busy on its own core, falls a few milliseconds
 * behind: the replies were sent (the servers' OutDatagrams match the requests) and the
 * client's UDP RcvbufErrors count exactly the missing ones. Real clients each receive their
 * own reply, so that loss belongs to the load generator, not to the server measured.
 *
 * The harness therefore compiles a tiny LD_PRELOAD library that gives every UDP socket
 * perfdhcp opens SO_RCVBUFFORCE bytes, and runs perfdhcp (only perfdhcp, for every server
 * alike) with it. No host setting changes. BENCH_CLIENT_RCVBUF=0 turns it off.
 */
import { findTool, runCommand } from "./command.ts";

/** perfdhcp's receive buffer unless BENCH_CLIENT_RCVBUF says otherwise (bytes). */
export const CLIENT_RCVBUF_DEFAULT = 4 * 1024 * 1024;

/** The environment variable the library reads its size from. */
export const RCVBUF_ENV = "DUET_BENCH_RCVBUF";

/** socket() as libc's, then SO_RCVBUFFORCE on IPv4/IPv6 datagram sockets. */
const SOURCE = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
  static int (*next)(int, int, int);
  if (next == NULL) next = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  if (next == NULL) return -1;
  int fd = next(domain, type, protocol);
  const char *text = getenv("${RCVBUF_ENV}");
  if (fd >= 0 && text != NULL && (domain == AF_INET || domain == AF_INET6) &&
      (type & 0xf) == SOCK_DGRAM) {
    int bytes = atoi(text);
    if (bytes > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
  }
  return fd;
}
`;

/** What perfdhcp runs with: extra environment, and one line saying so. */
export interface ClientBuffer {
  /** LD_PRELOAD and the size; empty when off or when the library could not be built. */
  env: Record<string, string>;
  /** The receive buffer perfdhcp's sockets ask for, or null for the host default. */
  bytes: number | null;
  note: string;
}

/**
 * Builds the library in `dir` with the C compiler on PATH. `bytes` 0 means the host
 * default. Without a compiler (or when it fails) perfdhcp runs with the host default, and
 * the note says why.
 */
export async function prepareClientBuffer(dir: string, bytes: number): Promise<ClientBuffer> {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > 0x7fffffff) {
    throw new RangeError(`Cannot use a client receive buffer of ${bytes} bytes`);
  }
  const fallback = (why: string): ClientBuffer => ({
    env: {},
    bytes: null,
    note: `perfdhcp's receive buffer: the host default (${why})`,
  });
  if (bytes === 0) return fallback("BENCH_CLIENT_RCVBUF=0");
  const cc = findTool("cc") ?? findTool("gcc") ?? findTool("clang");
  if (cc === null) return fallback("no C compiler (cc, gcc or clang) to build the preload");
  const source = `${dir}/rcvbuf.c`;
  const library = `${dir}/rcvbuf.so`;
  await Deno.writeTextFile(source, SOURCE);
  const built = await runCommand([cc, "-shared", "-fPIC", "-O2", "-o", library, source, "-ldl"], {
    timeoutMs: 60_000,
  });
  if (built.code !== 0) {
    return fallback(`${cc} failed: ${built.stderr.trim().split("\n")[0] ?? `exit ${built.code}`}`);
  }
  return {
    env: { LD_PRELOAD: library, [RCVBUF_ENV]: String(bytes) },
    bytes,
    note: `perfdhcp's receive buffer: ${bytes} bytes (SO_RCVBUFFORCE from ${library})`,
  };
}

/** UDP RcvbufErrors from /proc/net/snmp text (the "Udp:" header and value lines), or null. */
export function parseUdpRcvbufErrors(snmp: string): number | null {
  const lines = snmp.split("\n").filter((l) => l.startsWith("Udp:"));
  const [header, values] = lines;
  if (header === undefined || values === undefined) return null;
  const names = header.trim().split(/\s+/);
  const numbers = values.trim().split(/\s+/);
  const i = names.indexOf("RcvbufErrors");
  if (i < 1 || numbers[i] === undefined) return null;
  const n = Number(numbers[i]);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** UDP RcvbufErrors so far in network namespace `ns`, or null when unreadable. */
export async function readRcvbufErrors(ns: string): Promise<number | null> {
  const r = await runCommand(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"], {
    timeoutMs: 10_000,
  });
  return r.code === 0 ? parseUdpRcvbufErrors(r.stdout) : null;
}
