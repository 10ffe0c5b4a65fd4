/**
 * The benchmark topology: a server namespace and a client namespace joined by one veth pair,
 * in 198.18.0.0/15 only (RFC 2544 benchmarking range). Names carry the harness pid so
 * parallel runs and other tests never collide.
 */
import { mustRun, runCommand } from "./command.ts";

/** Names and addresses of one server/client namespace pair. */
export interface Topology {
  serverNs: string;
  clientNs: string;
  serverIf: string;
  clientIf: string;
  serverAddress: string;
  clientAddress: string;
  prefixLength: number;
}

/** The names a topology for harness process `pid` uses (veth names fit IFNAMSIZ, 15 chars). */
export function topologyNames(pid: number): Topology {
  return {
    serverNs: `db-srv-${pid}`,
    clientNs: `db-cli-${pid}`,
    serverIf: `db-s${pid}`,
    clientIf: `db-c${pid}`,
    serverAddress: "198.18.0.1",
    clientAddress: "198.18.0.2",
    prefixLength: 15,
  };
}

/** Creates both namespaces and the veth pair, addresses them and brings them up. */
export async function createTopology(t: Topology): Promise<void> {
  await mustRun(["ip", "netns", "add", t.serverNs]);
  await mustRun(["ip", "netns", "add", t.clientNs]);
  for (const ns of [t.serverNs, t.clientNs]) {
    await mustRun(["ip", "-n", ns, "link", "set", "dev", "lo", "up"]);
  }
  // Created directly inside the namespaces: no name ever appears in the root namespace.
  await mustRun([
    "ip",
    "-n",
    t.serverNs,
    "link",
    "add",
    t.serverIf,
    "type",
    "veth",
    "peer",
    "name",
    t.clientIf,
    "netns",
    t.clientNs,
  ]);
  const sides: [string, string, string][] = [
    [t.serverNs, t.serverIf, t.serverAddress],
    [t.clientNs, t.clientIf, t.clientAddress],
  ];
  for (const [ns, dev, address] of sides) {
    await mustRun(["ip", "-n", ns, "addr", "add", `${address}/${t.prefixLength}`, "dev", dev]);
    await mustRun(["ip", "-n", ns, "link", "set", "dev", dev, "up"]);
  }
}

/** Deletes both namespaces (the veth pair goes with them). Idempotent; never throws. */
export async function destroyTopology(t: Topology): Promise<void> {
  for (const ns of [t.serverNs, t.clientNs]) {
    await runCommand(["ip", "netns", "del", ns], { timeoutMs: 10_000 });
  }
}
