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

/**
 * The pair topology (pair mode): a bridge in its own namespace joins the primary's namespace
 * (`serverNs`, 198.18.0.1), the secondary's (`secondNs`, 198.18.0.3) and the client's
 * (198.18.0.2), so that perfdhcp's broadcasts reach both servers, as on one LAN. A single
 * server measured in pair mode runs in `serverNs` alone.
 */
export interface PairTopology extends Topology {
  bridgeNs: string;
  /** The bridge device inside bridgeNs. */
  bridge: string;
  secondNs: string;
  secondIf: string;
  secondAddress: string;
}

/** The names the pair topology of harness process `pid` uses (all within 15 characters). */
export function pairTopologyNames(pid: number): PairTopology {
  return {
    ...topologyNames(pid),
    bridgeNs: `db-br-${pid}`,
    bridge: `db-br${pid}`,
    secondNs: `db-srv2-${pid}`,
    secondIf: `db-t${pid}`,
    secondAddress: "198.18.0.3",
  };
}

/** The bridge-side name of the veth whose namespace end is `ifname` ("db-s1" -> "db-bs1"). */
export function bridgePort(ifname: string): string {
  return ifname.replace(/^db-/, "db-b");
}

/** Creates the four namespaces, the bridge and the three veth pairs; addresses them. */
export async function createPairTopology(t: PairTopology): Promise<void> {
  for (const ns of [t.bridgeNs, t.serverNs, t.secondNs, t.clientNs]) {
    await mustRun(["ip", "netns", "add", ns]);
    await mustRun(["ip", "-n", ns, "link", "set", "dev", "lo", "up"]);
  }
  await mustRun(["ip", "-n", t.bridgeNs, "link", "add", t.bridge, "type", "bridge"]);
  await mustRun(["ip", "-n", t.bridgeNs, "link", "set", "dev", t.bridge, "up"]);
  const ends: [string, string, string][] = [
    [t.serverNs, t.serverIf, t.serverAddress],
    [t.secondNs, t.secondIf, t.secondAddress],
    [t.clientNs, t.clientIf, t.clientAddress],
  ];
  for (const [ns, dev, address] of ends) {
    const port = bridgePort(dev);
    await mustRun([
      "ip",
      "-n",
      t.bridgeNs,
      "link",
      "add",
      port,
      "type",
      "veth",
      "peer",
      "name",
      dev,
      "netns",
      ns,
    ]);
    await mustRun(["ip", "-n", t.bridgeNs, "link", "set", "dev", port, "master", t.bridge]);
    await mustRun(["ip", "-n", t.bridgeNs, "link", "set", "dev", port, "up"]);
    await mustRun(["ip", "-n", ns, "addr", "add", `${address}/${t.prefixLength}`, "dev", dev]);
    await mustRun(["ip", "-n", ns, "link", "set", "dev", dev, "up"]);
  }
}

/** Deletes the four namespaces (their interfaces go with them). Idempotent; never throws. */
export async function destroyPairTopology(t: PairTopology): Promise<void> {
  for (const ns of [t.clientNs, t.secondNs, t.serverNs, t.bridgeNs]) {
    await runCommand(["ip", "netns", "del", ns], { timeoutMs: 10_000 });
  }
}
