/**
 * A duet failover pair in network namespaces for the real-process tests (draft-12 §5, §9;
 * RFC 3074): a bridge in its own namespace joins the primary (198.18.0.1/15), the secondary
 * (198.18.0.3/15) and client namespaces. Both servers listen on their interface through the
 * FFI transport, so a broadcast from a client reaches both, as on a real LAN. Helpers read
 * each server's control socket (GET /status, /leases) and run the CLI against it.
 */
import { requestControl } from "../../lib/cli/status.ts";
import type { StatusSnapshot } from "../../lib/control/status.ts";
import { hashKey, isMine, loadBalanceHash } from "../../lib/balance/hash.ts";
import { hbaFromSplit } from "../../lib/balance/hba.ts";
import { Lab } from "../netns.ts";
import { DuetProcess, runDuet } from "./process.ts";

/** The two roles, and the addresses they have on the bridge. */
export type Role = "primary" | "secondary";
export const ADDRESS: Record<Role, string> = { primary: "198.18.0.1", secondary: "198.18.0.3" };
const IFNAME: Record<Role, string> = { primary: "p0", secondary: "s0" };

/** One `duet leases --json` row. */
export interface LeaseRow {
  address: string;
  "hw-address": string | null;
  "client-id": string | null;
  hostname: string | null;
  state: string;
  starts: string | null;
  ends: string | null;
  cltt: string | null;
}

/** What differs between the pair's configurations. */
export interface PairOptions {
  /** Pool range, e.g. "198.18.16.10 - 198.18.16.73". */
  pool: string;
  mclt: number;
  split?: number;
  leaseTime: { default: number; max: number };
  maxResponseDelay?: number;
  loadBalanceMaxSeconds?: number;
  /** Extra failover keys for both sides. */
  failoverExtra?: string[];
}

/** Client namespaces to create besides the servers', each with one interface `<name>0`. */
export interface ClientSpec {
  name: string;
  /** CIDR for the interface (perfdhcp needs one), or null for a DHCP client. */
  address: string | null;
  mac: string;
}

function tail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** The pair and its lab; `cleanup()` stops the servers and deletes everything. */
export class PairLab {
  readonly lab: Lab;
  readonly dir: string;
  readonly ns: Record<string, string>;
  readonly options: PairOptions;
  readonly servers: Partial<Record<Role, DuetProcess>> = {};
  /** Every process started, for the logs in failure messages. */
  readonly #history: { name: string; p: DuetProcess }[] = [];

  private constructor(lab: Lab, dir: string, ns: Record<string, string>, options: PairOptions) {
    this.lab = lab;
    this.dir = dir;
    this.ns = ns;
    this.options = options;
  }

  /** Builds the namespaces and writes both configurations (servers not started). */
  static async create(prefix: string, options: PairOptions, clients: ClientSpec[]) {
    const lab = await Lab.create(prefix);
    const dir = await Deno.makeTempDir({ prefix: `duet-${prefix}-` });
    const pair = new PairLab(lab, dir, {}, options);
    try {
      const bridge = await lab.addNamespace("br");
      pair.ns.br = bridge;
      await lab.addBridge(bridge, "br0");
      const ends: { name: string; address: string | null; mac: string }[] = [
        { name: "p", address: `${ADDRESS.primary}/15`, mac: "02:00:00:00:f0:01" },
        { name: "s", address: `${ADDRESS.secondary}/15`, mac: "02:00:00:00:f0:03" },
        ...clients,
      ];
      for (const e of ends) {
        const ns = await lab.addNamespace(e.name);
        pair.ns[e.name] = ns;
        await lab.link(bridge, `b${e.name}`, null, ns, `${e.name}0`, e.address);
        await lab.setMac(ns, `${e.name}0`, e.mac);
        await lab.attach(bridge, `b${e.name}`, "br0");
      }
      for (const role of ["primary", "secondary"] as const) {
        await Deno.writeTextFile(pair.configPath(role), pair.#config(role));
      }
    } catch (e) {
      await pair.cleanup();
      throw e;
    }
    return pair;
  }

  configPath(role: Role): string {
    return `${this.dir}/${role}.yaml`;
  }

  database(role: Role): string {
    return `${this.dir}/${role}.db`;
  }

  socket(role: Role): string {
    return `${this.database(role)}.sock`;
  }

  #config(role: Role): string {
    const o = this.options;
    const partner: Role = role === "primary" ? "secondary" : "primary";
    const primaryOnly = role === "primary" ? [`mclt: ${o.mclt}`, `split: ${o.split ?? 128}`] : [];
    const failover = [
      `role: ${role}`,
      `address: ${ADDRESS[role]}`,
      "port: 647",
      `peer: ${ADDRESS[partner]}`,
      "peer-port: 647",
      "relationship: pair",
      ...primaryOnly,
      `load-balance-max-seconds: ${o.loadBalanceMaxSeconds ?? 3}`,
      `max-response-delay: ${o.maxResponseDelay ?? 30}`,
      "max-unacked-bndupd: 10",
      ...(o.failoverExtra ?? []),
    ];
    return `database: ${this.database(role)}
authoritative: true
listen:
  - interface: ${IFNAME[role]}
lease-time: { default: ${o.leaseTime.default}, max: ${o.leaseTime.max}, min: 4 }
subnets:
  - subnet: 198.18.0.0/15
    pools:
      - range: ${o.pool}
failover:
${failover.map((l) => `  ${l}\n`).join("")}`;
  }

  /** Starts (or restarts, with its database) one server and waits for `duet serving`. */
  /** Starts one server; `wrap` runs it through a command first (e.g. setpriv, dropping a capability). */
  async start(role: Role, logLevel = "debug", wrap: string[] = []): Promise<DuetProcess> {
    const ns = this.ns[role === "primary" ? "p" : "s"] as string;
    const p = new DuetProcess(["--config", this.configPath(role), "--log-level", logLevel], [
      "ip",
      "netns",
      "exec",
      ns,
      ...wrap,
    ]);
    this.servers[role] = p;
    this.#history.push({ name: `${role} #${this.#history.length + 1}`, p });
    // Fails at once when the server exits (a bad configuration, a port in use).
    const exited = p.child.status.then((s) => {
      throw new Error(`The ${role} exited with ${s.code} while starting:\n${tail(p.stderr)}`);
    });
    await Promise.race([p.waitFor("duet serving", 30_000), exited]);
    exited.catch(() => {});
    return p;
  }

  /** Stops one server with `signal` (SIGKILL: no STATE SHUTDOWN); returns the exit code. */
  async stop(role: Role, signal: Deno.Signal): Promise<number> {
    const p = this.servers[role];
    if (!p) throw new Error(`Cannot stop the ${role}: it is not running`);
    delete this.servers[role];
    return await p.stop(signal);
  }

  /** GET /status of one server, through its control socket. */
  async status(role: Role): Promise<StatusSnapshot> {
    const r = await requestControl(this.socket(role), "/status");
    if (r.status !== 200) throw new Error(`GET /status on the ${role}: HTTP ${r.status}`);
    return JSON.parse(r.body) as StatusSnapshot;
  }

  /** `duet status --socket … --json` (the CLI), parsed. */
  async statusCli(role: Role): Promise<StatusSnapshot> {
    const r = await runDuet(["status", "--socket", this.socket(role), "--json"]);
    if (r.code !== 0) throw new Error(`duet status on the ${role}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as StatusSnapshot;
  }

  /** `duet leases --live --socket … --json` (the CLI), parsed. */
  async leases(role: Role): Promise<LeaseRow[]> {
    const r = await runDuet(["leases", "--live", "--socket", this.socket(role), "--json"]);
    if (r.code !== 0) throw new Error(`duet leases on the ${role}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as LeaseRow[];
  }

  /** Waits (bounded) until both `state` and `partner-state` of `role` are as given. */
  async waitState(
    role: Role,
    state: string,
    partnerState: string | null,
    timeoutMs: number,
  ): Promise<StatusSnapshot> {
    const deadline = Date.now() + timeoutMs;
    let last: StatusSnapshot | undefined;
    while (Date.now() < deadline) {
      try {
        last = await this.status(role);
        if (
          last.state === state && (partnerState === null || last["partner-state"] === partnerState)
        ) {
          return last;
        }
      } catch {
        // Not answering yet.
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(
      `The ${role} is not in ${state}/${partnerState} after ${timeoutMs} ms: it is in ${last?.state}/${
        last?.["partner-state"]
      }\n${this.logs()}`,
    );
  }

  /** Waits (bounded) until `check()` holds; the error carries both logs. */
  async waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}\n${this.logs()}`);
  }

  /** The tails of every server log of this lab. */
  logs(lines = 40): string {
    return this.#history.map(({ name, p }) => `--- ${name} ---\n${tail(p.stderr, lines)}`).join(
      "\n",
    );
  }

  /** Captures the DHCP traffic on the bridge into `path` (debugging; killed by cleanup()). */
  capture(path: string): void {
    this.lab.spawn(this.ns.br as string, [
      "dumpcap",
      "-q",
      "-i",
      "br0",
      "-f",
      "udp port 67 or udp port 68",
      "-w",
      path,
    ]);
  }

  /** Writes every server log into `dir` (for a failure to be read afterwards). */
  async saveLogs(dir: string): Promise<void> {
    for (const [i, { name, p }] of this.#history.entries()) {
      await Deno.writeTextFile(`${dir}/${i}-${name.replace(/\W+/g, "-")}.log`, p.stderr);
    }
  }

  /** Stops every server still running, deletes the namespaces and the directory. */
  async cleanup(): Promise<void> {
    for (const role of ["primary", "secondary"] as const) {
      await this.servers[role]?.stop("SIGKILL");
    }
    await this.lab.cleanup();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * DUET_E2E_KEEP=DIR: where a test keeps its server logs and a capture of the DHCP traffic
 * (DIR/<lab id>, created), or null when unset.
 */
export async function keepDir(pair: PairLab): Promise<string | null> {
  const root = Deno.env.get("DUET_E2E_KEEP");
  if (!root) return null;
  const dir = `${root}/${pair.lab.id}`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.chmod(dir, 0o777); // dumpcap drops its privileges to write
  return dir;
}

function hexBytes(text: string): Uint8Array {
  return Uint8Array.from(text.split(":").map((h) => parseInt(h, 16)));
}

/**
 * Which server answers a client in NORMAL under `split` (RFC 3074 §4, ISC bit order): the hash
 * is over its client identifier (option 61) when it sends one, else over chaddr.
 */
export function ownerOf(mac: string, split = 128, clientId: string | null = null): Role {
  const key = hashKey({
    htype: 1,
    hlen: 6,
    chaddr: hexBytes(mac),
    clientId: clientId === null ? undefined : hexBytes(clientId),
  });
  return isMine("primary", hbaFromSplit(split), loadBalanceHash(key), "isc")
    ? "primary"
    : "secondary";
}

/** ownerOf() for a lease row: perfdhcp, for one, sends option 61 (01 + its MAC). */
export function ownerOfLease(row: LeaseRow, split = 128): Role {
  return ownerOf(row["hw-address"] as string, split, row["client-id"]);
}

/** The first MAC `02:00:00:00:<hi>:NN` whose client the given server serves in NORMAL. */
export function macServedBy(role: Role, hi: number, split = 128): string {
  for (let n = 1; n < 256; n++) {
    const mac = `02:00:00:00:${hi.toString(16).padStart(2, "0")}:${
      n.toString(16).padStart(2, "0")
    }`;
    if (ownerOf(mac, split) === role) return mac;
  }
  throw new Error(`No MAC 02:00:00:00:${hi}:xx hashes to the ${role}`);
}

/**
 * ISC dhclient with a private lease file and our own script: it only sets the interface
 * address and logs each event (reason, address, server identifier) to `<dir>/<name>.events`;
 * never the host's resolv.conf.
 */
export const DHCLIENT_SCRIPT = `#!/bin/sh
echo "$reason $new_ip_address $new_dhcp_server_identifier" >> "$(dirname "$0")/$(basename "$0" .sh).events"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    ip -4 addr flush dev "$interface" ;;
esac
exit 0
`;

/** busybox udhcpc's script: the same, events to `<dir>/<name>.events`. */
export const UDHCPC_SCRIPT = `#!/bin/sh
echo "$1 $ip $serverid" >> "$(dirname "$0")/$(basename "$0" .sh).events"
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
`;

/** Parses perfdhcp's two exchange sections: [sent, received, drops] of DO and RA. */
export function perfdhcpCounts(out: string): { do: number[]; ra: number[] } {
  const sections = [
    ...out.matchAll(/sent packets: (\d+)[\s\S]*?received packets: (\d+)[\s\S]*?drops: (\d+)/g),
  ].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
  return { do: sections[0] ?? [0, 0, 0], ra: sections[1] ?? [0, 0, 0] };
}

/** The rows that matter for agreement (draft-12 §7.1.1): state, client and lease end. */
interface Binding {
  state: string;
  hw: string | null;
  clientId: string | null;
  ends: number | null;
}

/** Every pool address's binding; an address without a row is FREE (draft-12 §5.4). */
function bindings(pool: readonly string[], rows: LeaseRow[]): Map<string, Binding> {
  const out = new Map<string, Binding>();
  for (const a of pool) {
    out.set(a, { state: "free", hw: null, clientId: null, ends: null });
  }
  for (const r of rows) {
    if (!out.has(r.address)) continue;
    out.set(r.address, {
      state: r.state,
      hw: r["hw-address"],
      clientId: r["client-id"],
      ends: r.ends === null ? null : Date.parse(r.ends) / 1000,
    });
  }
  return out;
}

/**
 * What differs between the two tables, over every address of `pool`: state, hardware address or client id, or a lease end
 * more than 2 s apart (the partners' clocks are the same here; §5.10 allows for skew).
 */
export function differences(
  pool: readonly string[],
  a: LeaseRow[],
  b: LeaseRow[],
): string[] {
  const x = bindings(pool, a);
  const y = bindings(pool, b);
  const out: string[] = [];
  for (const address of pool) {
    const p = x.get(address) as Binding;
    const s = y.get(address) as Binding;
    // Only ACTIVE bindings carry a client whose lease end both must know.
    const endsApart = p.state === "active" && p.ends !== null && s.ends !== null &&
      Math.abs(p.ends - s.ends) > 2;
    if (
      p.state !== s.state ||
      (p.state === "active" && (p.hw !== s.hw || p.clientId !== s.clientId)) ||
      endsApart
    ) {
      out.push(`${address}: primary ${JSON.stringify(p)} secondary ${JSON.stringify(s)}`);
    }
  }
  return out;
}

/** Every address from `first` to `last` (inclusive), as dotted strings. */
export function addressRange(first: string, last: string): string[] {
  const n = (a: string) => a.split(".").reduce((x, o) => x * 256 + Number(o), 0);
  const out: string[] = [];
  for (let v = n(first); v <= n(last); v++) {
    out.push([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join("."));
  }
  return out;
}

/** The leases of `rows` whose state is `state`, by address. */
export function byState(rows: LeaseRow[], state: string): Map<string, LeaseRow> {
  return new Map(rows.filter((r) => r.state === state).map((r) => [r.address, r]));
}
